#pragma once

/// @file
/// Test support: HTTP at the level of bytes, for tests that must send what
/// no well-behaved client sends and serve what no well-behaved server
/// serves. A raw client connection (from a chosen loopback address), a
/// response reader, and a scripted upstream server. Plain POSIX sockets: no
/// Beast, no CAF.

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace maritaca::test {

/// A connected TCP socket to 127.0.0.1:`port`, closed on destruction.
class raw_conn {
public:
  /// Connects, from `source` (a loopback address such as "127.0.0.2"; all
  /// of 127/8 is local on Linux) when not empty. Throws on failure.
  explicit raw_conn(int port, const std::string& source = {});

  ~raw_conn();

  raw_conn(const raw_conn&) = delete;
  raw_conn& operator=(const raw_conn&) = delete;

  /// Closes the socket now.
  void close();

  /// Sends all of `data`; false when the peer is gone.
  bool send(std::string_view data);

  /// Reads what arrives within `timeout`: "" at EOF or timeout (`eof`
  /// tells which).
  std::string read_some(std::chrono::milliseconds timeout, bool& eof);

  /// Reads until the peer closes or `timeout` passes; returns the bytes.
  std::string read_until_close(std::chrono::milliseconds timeout);

  /// Returns whether the peer closes the connection within `timeout`.
  bool closed_within(std::chrono::milliseconds timeout);

  /// The socket.
  int fd() const noexcept { return fd_; }

private:
  int fd_ = -1;
};

/// One response as received.
struct raw_result {
  int status = 0;
  std::string head;
  std::string body;
  /// Arrival times (since sending) of the reads that carried body bytes.
  std::vector<double> arrivals;
  /// The body was complete (its length or last chunk arrived).
  bool complete = false;

  /// Returns a header's value (case-insensitive name), or "".
  std::string header(const std::string& name) const;
};

/// Builds a request. `headers` are complete lines ending in "\r\n".
std::string make_request(const std::string& method, const std::string& target,
                         const std::string& headers = {},
                         const std::string& body = {}, bool keep_alive = false);

/// Undoes the chunked coding of `raw`; sets `complete` when the last chunk
/// was there.
std::string dechunk(const std::string& raw, bool& complete);

/// Parses the head and the (maybe chunked) body of `raw`, the first
/// response in it. `head_only`: the answer to HEAD (no body follows).
void parse_response(const std::string& raw, raw_result& r,
                    bool head_only = false);

/// Sends `raw` on a fresh connection and reads until the server closes.
raw_result roundtrip(int port, const std::string& raw,
                     std::chrono::milliseconds timeout = std::chrono::seconds{
                         30});

/// A scripted HTTP server on 127.0.0.1 that answers no request on its own:
/// for each connection it reads the request head (and a Content-Length
/// body), then hands the socket to the script, which writes whatever it
/// wants. Each connection has a thread; the destructor closes the listener,
/// shuts every connection down and joins the threads.
class scripted_server {
public:
  /// Writes to the connection `fd`; return to close it. `stopping` turns
  /// true when the server shuts down (loops must watch it).
  using script = std::function<void(int fd, const std::atomic<bool>& stopping)>;

  explicit scripted_server(script fn);

  ~scripted_server();

  scripted_server(const scripted_server&) = delete;
  scripted_server& operator=(const scripted_server&) = delete;

  /// The listening port.
  int port() const noexcept { return port_; }

  /// "http://127.0.0.1:PORT/api".
  std::string base_url() const;

  /// The request heads read so far (a copy).
  std::vector<std::string> heads() const;

  /// Writes all of `data` to `fd`; false when the peer is gone.
  static bool write_all(int fd, std::string_view data);

private:
  void accept_loop();
  void serve(int fd);

  script fn_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  mutable std::mutex mtx_;
  std::vector<std::thread> workers_;
  std::vector<int> fds_;
  std::vector<std::string> heads_;
};

} // namespace maritaca::test
