/// @file
/// The listener and I/O threads shared by the HTTP servers under apps/.

#include "maritaca/apps/listener.hpp"

#include <boost/asio/post.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>

#include <chrono>
#include <cstdio>
#include <stdexcept>

namespace maritaca::apps {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;
using namespace std::chrono_literals;

bool is_ordinary_end(const error_code& ec) {
  return ec == net::error::operation_aborted || ec == net::error::eof ||
         ec == net::error::connection_reset || ec == net::error::broken_pipe ||
         ec == beast::error::timeout || ec == http::error::end_of_stream;
}

// -- listener
// -------------------------------------------------------------------

listener::listener(net::io_context& ioc, std::string name, bool verbose,
                   socket_handler fn)
    : ioc_(ioc), name_(std::move(name)), verbose_(verbose), fn_(std::move(fn)),
      strand_(net::make_strand(ioc)), backoff_(strand_) {
  // nop
}

void listener::listen(const std::string& host, uint16_t port) {
  host_ = host;
  error_code ec;
  tcp::resolver resolver{ioc_};
  auto results =
      resolver.resolve(host, std::to_string(port), tcp::resolver::passive, ec);
  if (ec || results.empty())
    throw std::runtime_error("cannot resolve " + host + ": " + ec.message());
  auto endpoint = results.begin()->endpoint();
  acceptor_.emplace(strand_);
  acceptor_->open(endpoint.protocol(), ec);
  if (!ec) acceptor_->set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_->bind(endpoint, ec);
  if (!ec) acceptor_->listen(net::socket_base::max_listen_connections, ec);
  if (ec)
    throw std::runtime_error("cannot listen on " + host + ":" +
                             std::to_string(port) + ": " + ec.message());
}

std::string listener::client_address() const {
  auto bound = acceptor_->local_endpoint();
  std::string host = host_;
  if (bound.address().is_unspecified())
    host = bound.address().is_v6() ? "[::1]" : "127.0.0.1";
  else if (host.find(':') != std::string::npos)
    host = "[" + host + "]";
  return host + ":" + std::to_string(bound.port());
}

void listener::start() {
  do_accept();
}

void listener::close() {
  // After the io_context stopped, nothing would run a posted close.
  if (ioc_.stopped()) return close_now();
  net::post(strand_, [this] { close_now(); });
}

void listener::close_now() {
  if (!acceptor_) return;
  error_code ec;
  acceptor_->close(ec);
  backoff_.cancel();
}

void listener::do_accept() {
  acceptor_->async_accept(net::make_strand(ioc_),
                          [this](error_code ec, tcp::socket socket) {
                            on_accept(ec, std::move(socket));
                          });
}

void listener::on_accept(error_code ec, tcp::socket socket) {
  if (ec == net::error::operation_aborted || !acceptor_->is_open()) return;
  if (ec) {
    // E.g. out of file descriptors: wait a little instead of spinning.
    if (verbose_)
      std::fprintf(stderr, "%s: accept: %s\n", name_.c_str(),
                   ec.message().c_str());
    backoff_.expires_after(50ms);
    backoff_.async_wait([this](error_code wait_ec) { on_backoff(wait_ec); });
    return;
  }
  error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  fn_(std::move(socket));
  do_accept();
}

void listener::on_backoff(error_code ec) {
  if (!ec) do_accept();
}

// -- io_threads
// -----------------------------------------------------------------

void io_threads::start(net::io_context& ioc, unsigned n) {
  work_.emplace(ioc.get_executor());
  for (unsigned i = 0; i < n; ++i)
    threads_.emplace_back([&ioc] { ioc.run(); });
}

void io_threads::stop(net::io_context& ioc) {
  work_.reset();
  ioc.stop();
  for (auto& t : threads_)
    t.join();
  threads_.clear();
}

} // namespace maritaca::apps
