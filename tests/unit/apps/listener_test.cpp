// The accept loop and I/O threads shared by maritaca-sim and
// maritaca-gateway (apps/common/include/maritaca/apps/listener.hpp), over
// real loopback sockets.

#include "maritaca/apps/listener.hpp"

#include <boost/asio/error.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>

#include "support/wait.hpp"

#include <catch2/catch.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace net = boost::asio;
using maritaca::apps::io_threads;
using maritaca::apps::is_ordinary_end;
using maritaca::apps::listener;
using net::ip::tcp;
using namespace std::chrono_literals;

namespace {

/// Returns the port of a "HOST:PORT" address.
uint16_t port_of(const std::string& address) {
  return static_cast<uint16_t>(
      std::stoi(address.substr(address.rfind(':') + 1)));
}

/// Connects a blocking client socket to 127.0.0.1:`port`; returns whether
/// the connection was accepted by the kernel.
bool connect_to(net::io_context& ioc, uint16_t port, tcp::socket& out) {
  boost::system::error_code ec;
  out = tcp::socket{ioc};
  out.connect({net::ip::make_address("127.0.0.1"), port}, ec);
  return !ec;
}

using maritaca::test::eventually;

} // namespace

TEST_CASE("a listener hands over every accepted socket with TCP_NODELAY") {
  net::io_context ioc;
  std::mutex mtx;
  std::vector<tcp::socket> accepted;
  std::vector<int> nodelay;
  listener l{ioc, "test", false, [&](tcp::socket s) {
               int flag = 0;
               socklen_t len = sizeof(flag);
               ::getsockopt(s.native_handle(), IPPROTO_TCP, TCP_NODELAY, &flag,
                            &len);
               std::lock_guard<std::mutex> guard{mtx};
               nodelay.push_back(flag);
               accepted.push_back(std::move(s));
             }};
  l.listen("127.0.0.1", 0);
  auto address = l.client_address();
  CHECK(address.rfind("127.0.0.1:", 0) == 0);
  auto port = port_of(address);
  REQUIRE(port != 0);
  l.start();
  io_threads threads;
  threads.start(ioc, 2);
  net::io_context client_ctx;
  std::vector<tcp::socket> clients;
  for (int i = 0; i < 20; ++i) {
    tcp::socket s{client_ctx};
    REQUIRE(connect_to(client_ctx, port, s));
    clients.push_back(std::move(s));
  }
  CHECK(eventually([&] {
    std::lock_guard<std::mutex> guard{mtx};
    return accepted.size() == 20;
  }));
  {
    std::lock_guard<std::mutex> guard{mtx};
    for (auto flag : nodelay)
      CHECK(flag != 0);
    // Each accepted socket is the peer of one client.
    for (auto& s : accepted)
      CHECK(s.remote_endpoint().address().to_string() == "127.0.0.1");
  }
  // After close, nothing accepts on the port any more.
  l.close();
  CHECK(eventually([&] {
    tcp::socket s{client_ctx};
    return !connect_to(client_ctx, port, s);
  }));
  threads.stop(ioc);
  std::lock_guard<std::mutex> guard{mtx};
  CHECK(accepted.size() == 20);
}

TEST_CASE("a listener refuses an address it cannot use") {
  net::io_context ioc;
  listener first{ioc, "test", false, [](tcp::socket) {}};
  first.listen("127.0.0.1", 0);
  auto port = port_of(first.client_address());
  SECTION("a port another socket listens on") {
    listener second{ioc, "test", false, [](tcp::socket) {}};
    CHECK_THROWS_AS(second.listen("127.0.0.1", port), std::runtime_error);
  }
  SECTION("a host that does not resolve") {
    listener second{ioc, "test", false, [](tcp::socket) {}};
    CHECK_THROWS_AS(second.listen("no-such-host.invalid", 0),
                    std::runtime_error);
  }
}

TEST_CASE("a listener closed after its io_context stopped closes at once") {
  // No thread runs a posted close any more: close() must act itself.
  net::io_context ioc;
  listener l{ioc, "test", false, [](tcp::socket) {}};
  l.listen("127.0.0.1", 0);
  auto port = port_of(l.client_address());
  l.start();
  io_threads threads;
  threads.start(ioc, 1);
  threads.stop(ioc);
  REQUIRE(ioc.stopped());
  l.close();
  net::io_context client_ctx;
  tcp::socket s{client_ctx};
  CHECK_FALSE(connect_to(client_ctx, port, s));
}

TEST_CASE("ordinary connection ends are told apart from failures") {
  CHECK(is_ordinary_end(net::error::eof));
  CHECK(is_ordinary_end(net::error::connection_reset));
  CHECK(is_ordinary_end(net::error::operation_aborted));
  CHECK(is_ordinary_end(net::error::broken_pipe));
  CHECK(is_ordinary_end(boost::beast::error::timeout));
  CHECK(is_ordinary_end(boost::beast::http::error::end_of_stream));
  CHECK_FALSE(is_ordinary_end(net::error::connection_refused));
  CHECK_FALSE(is_ordinary_end(net::error::no_buffer_space));
  CHECK_FALSE(is_ordinary_end(boost::beast::http::error::bad_version));
}
