#pragma once

/// @file
/// The Asio plumbing shared by the HTTP servers under apps/: the listening
/// socket with its accept loop, the I/O threads, and the test for an
/// ordinary connection end. Include it from Beast-side code only.

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/system/error_code.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace maritaca::apps {

/// Whether `ec` is the ordinary end of a plain TCP connection (not worth a
/// log line).
bool is_ordinary_end(const boost::system::error_code& ec);

/// A listening socket and its accept loop. The acceptor and its backoff
/// timer share a strand (several threads may run the io_context).
class listener {
public:
  /// Receives each accepted socket (with TCP_NODELAY set) on the
  /// acceptor's strand; each socket has a strand of its own.
  using socket_handler = std::function<void(boost::asio::ip::tcp::socket)>;

  /// Prepares a listener on `ioc`. `name` prefixes log lines (e.g.
  /// "maritaca-sim"); accept errors are logged when `verbose`.
  listener(boost::asio::io_context& ioc, std::string name, bool verbose,
           socket_handler fn);

  /// Resolves `host`, binds and listens. Throws `std::runtime_error` when
  /// the address cannot be resolved or bound.
  void listen(const std::string& host, uint16_t port);

  /// Returns "HOST:PORT" under which a client reaches the bound address
  /// (loopback for an unspecified host, IPv6 in brackets).
  std::string client_address() const;

  /// Starts accepting (asynchronously).
  void start();

  /// Stops accepting. Posts to the acceptor's strand while the io_context
  /// runs; closes at once after it stopped.
  void close();

private:
  void do_accept();
  void on_accept(boost::system::error_code ec,
                 boost::asio::ip::tcp::socket socket);
  void on_backoff(boost::system::error_code ec);
  void close_now();

  boost::asio::io_context& ioc_;
  std::string name_;
  bool verbose_;
  socket_handler fn_;
  /// The host as asked for (printed URLs keep a host name).
  std::string host_;
  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  std::optional<boost::asio::ip::tcp::acceptor> acceptor_;
  boost::asio::steady_timer backoff_;
};

/// The threads that run one io_context, kept busy by a work guard.
class io_threads {
public:
  /// Starts `n` threads running `ioc`.
  void start(boost::asio::io_context& ioc, unsigned n);

  /// Releases the work guard, stops `ioc` and joins the threads.
  void stop(boost::asio::io_context& ioc);

private:
  using work_guard =
      boost::asio::executor_work_guard<boost::asio::io_context::executor_type>;

  std::optional<work_guard> work_;
  std::vector<std::thread> threads_;
};

} // namespace maritaca::apps
