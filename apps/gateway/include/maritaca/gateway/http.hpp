#pragma once

/// @file
/// The gateway's HTTP server behind a plain C++ interface: no Beast, Asio or
/// CAF here. The server parses requests (with limits and timeouts) and hands
/// each one to a `handler` together with a `responder`, which answers it --
/// at once, later, or as a chunked stream -- from any thread.

#include "maritaca/transport/http_client.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace maritaca::gateway {

/// Header fields (name, value), in order.
using header_list = transport::header_list;

/// One parsed HTTP request.
struct request {
  /// "GET", "POST", ...
  std::string method;
  /// The request target as sent, e.g. "/stream?question=Oi".
  std::string target;
  /// The target's path, e.g. "/stream" (not percent-decoded).
  std::string path;
  /// The target's query without '?', e.g. "question=Oi".
  std::string query;
  /// Header fields as sent.
  header_list headers;
  /// The body.
  std::string body;
  /// 10 for HTTP/1.0, 11 for HTTP/1.1.
  unsigned version = 11;
  /// The peer, "ADDRESS:PORT".
  std::string remote;
  /// Set by the router: the pattern that matched, e.g. "/sessions/{id}".
  std::string route;
  /// Set by the router: values of the pattern's `{name}` segments.
  std::vector<std::pair<std::string, std::string>> params;

  /// Returns the first field named `name` (case-insensitive), or "".
  std::string_view header(std::string_view name) const noexcept;

  /// Returns the percent-decoded value of query parameter `name` ('+' is a
  /// space), or `nullopt` when absent.
  std::optional<std::string> query_param(std::string_view name) const;

  /// Returns the value of route parameter `name`, or "".
  std::string_view param(std::string_view name) const noexcept;
};

/// A complete response.
struct response {
  /// HTTP status code.
  int status = 200;
  /// Header fields (Content-Length and Server are set by the server).
  header_list headers;
  /// The body.
  std::string body;

  /// Makes a response with `Content-Type: application/json`.
  static response json(int status, std::string body);

  /// Makes a response with `Content-Type: text/plain; charset=utf-8`.
  static response text(int status, std::string body);
};

/// Answers one request. Every member function is thread-safe and returns at
/// once: the work is posted to the connection's strand. Calls after the
/// response ended (or the connection closed) are ignored.
class responder {
public:
  virtual ~responder();

  /// Sends a complete response.
  virtual void send(response res) = 0;

  /// Sends the head of a streamed response: chunked transfer coding on
  /// HTTP/1.1, a close-delimited body on HTTP/1.0.
  virtual void start_stream(int status, header_list headers) = 0;

  /// Queues `data` as the next piece of a streamed response (written as one
  /// chunk as soon as possible; empty data is ignored). `on_written` runs on
  /// an I/O thread once the piece is on the wire; it must not block.
  virtual void write(std::string data,
                     std::function<void()> on_written = {}) = 0;

  /// Ends a streamed response (the last chunk), after the queued pieces.
  virtual void finish() = 0;

  /// Drops the connection now: the client sees a truncated response.
  virtual void abort() = 0;

  /// Registers `fn` to run (once, on an I/O thread; it must not block) when
  /// the client goes away or the connection fails before the response is
  /// complete. Runs at once when that already happened.
  virtual void on_disconnect(std::function<void()> fn) = 0;

  /// The status sent so far, 0 before any.
  virtual int status() const noexcept = 0;

  /// Notes how the answer really ended when its status does not say it
  /// (e.g. "error event: shutting_down" for a stream that began with 200),
  /// for the access log. Does nothing unless a wrapper records it.
  virtual void annotate(std::string note);
};

/// What answers requests: called on an I/O thread for every request; it
/// must not block (hand long work to another thread or an actor).
using handler = std::function<void(request, std::shared_ptr<responder>)>;

/// Looks at a request before its body is read (its `body` is empty): a
/// response to send instead of reading the body (e.g. 401 for a missing
/// token), or nullopt to go on. A refused request with a body pending
/// closes its connection after the answer. Called on an I/O thread; it
/// must not block.
using head_check = std::function<std::optional<response>(const request&)>;

/// Limits and timeouts of the server.
struct server_options {
  /// Host (name or address) to listen on.
  std::string host = "127.0.0.1";
  /// Port to listen on; 0 picks an ephemeral one.
  uint16_t port = 8080;
  /// Threads running the I/O context.
  unsigned threads = 1;
  /// Largest request body; larger gets 413.
  std::size_t max_body_bytes = 1u << 20;
  /// Largest request head (request line and fields); larger gets 431.
  std::size_t max_header_bytes = 16u << 10;
  /// Longest request target; longer gets 414.
  std::size_t max_url_bytes = 8u << 10;
  /// Connections at once. At the cap, a new connection displaces one that
  /// only waits for a request head, or is closed right after accepting.
  std::size_t max_connections = 1024;
  /// Connections at once from one client address (0: no cap), enforced
  /// like `max_connections` among that address's connections. Behind a
  /// proxy or load balancer every client has its address: raise or
  /// disable it there.
  std::size_t max_connections_per_client = 256;
  /// Time for a request head to arrive completely (slow clients).
  std::chrono::milliseconds header_timeout{10'000};
  /// Time for a request body to arrive completely.
  std::chrono::milliseconds body_timeout{30'000};
  /// Time a keep-alive connection may wait for its next request.
  std::chrono::milliseconds idle_timeout{60'000};
  /// Time one write may take (a client that stops reading is dropped).
  std::chrono::milliseconds write_timeout{30'000};
  /// Log connection errors to stderr.
  bool verbose = false;
};

/// The HTTP/1.1 server. Not copyable; stops when destroyed.
///
/// Shutdown order: `stop()` closes every connection (so `on_disconnect`
/// callbacks run), then let the handlers' work end, then destroy the
/// server: responders must not be used after the server is gone.
class http_server {
public:
  /// Prepares a server (nothing listens yet). `check`, when given, sees
  /// each request head before its body is read.
  http_server(server_options opts, handler h, head_check check = {});

  /// Stops the server (see `stop`).
  ~http_server();

  http_server(const http_server&) = delete;
  http_server& operator=(const http_server&) = delete;

  /// Binds, listens and starts the I/O threads. Returns the base URL, e.g.
  /// "http://127.0.0.1:40123". Throws `std::runtime_error` when the address
  /// cannot be bound.
  std::string start();

  /// Returns the base URL (empty before `start`).
  const std::string& url() const noexcept;

  /// Blocks until SIGINT or SIGTERM arrives.
  void wait_for_signal();

  /// Graceful shutdown, first part: stops accepting, closes connections
  /// that wait for a request head, and lets the others finish the answer
  /// they are giving (then they close; `Connection: close` on the answer).
  /// Returns the number of connections still open after waiting up to
  /// `timeout` for them. May be called again (e.g. after the handlers
  /// ended the remaining answers).
  std::size_t drain(std::chrono::milliseconds timeout);

  /// Stops accepting, closes every connection and joins the I/O threads.
  /// Idempotent.
  void stop();

  /// Returns the number of open connections.
  std::size_t connections() const noexcept;

  /// Returns the number of connections closed to make room for others
  /// (see `server_options::max_connections`).
  std::size_t shed_connections() const noexcept;

  /// Internal: the implementation.
  struct impl;

private:
  std::shared_ptr<impl> impl_;
};

} // namespace maritaca::gateway
