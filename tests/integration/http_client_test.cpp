// Integration tests of http_client over real loopback sockets, against
// maritaca-sim (and, for the stale-connection retry, a tiny scripted
// server).

#include "maritaca/transport/http_client.hpp"

#include "support/process.hpp"
#include "support/wait.hpp"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <thread>

using namespace maritaca;
using namespace maritaca::transport;
using namespace std::chrono_literals;

namespace {

using clock_type = std::chrono::steady_clock;

/// Records the events of one exchange and lets the test wait for them.
struct recorder : observer {
  std::mutex mtx;
  std::condition_variable cv;
  int heads = 0;
  response_head head;
  std::string body;
  std::vector<clock_type::time_point> data_times;
  int dones = 0;
  int failures = 0;
  failure what;
  clock_type::time_point end_time;
  /// Decides what on_data returns (default: keep reading).
  std::function<bool(std::string_view)> on_data_hook;

  void on_head(const response_head& x) override {
    std::lock_guard<std::mutex> guard{mtx};
    ++heads;
    head = x;
    cv.notify_all();
  }

  transport::data_verdict on_data(std::string_view bytes) override {
    std::function<bool(std::string_view)> hook;
    {
      std::lock_guard<std::mutex> guard{mtx};
      body.append(bytes);
      data_times.push_back(clock_type::now());
      hook = on_data_hook;
      cv.notify_all();
    }
    return hook ? hook(bytes) : true;
  }

  void on_done() override {
    std::lock_guard<std::mutex> guard{mtx};
    ++dones;
    end_time = clock_type::now();
    cv.notify_all();
  }

  void on_failure(const failure& x) override {
    std::lock_guard<std::mutex> guard{mtx};
    ++failures;
    what = x;
    end_time = clock_type::now();
    cv.notify_all();
  }

  /// Waits until `pred` holds (under the lock), at most `timeout`.
  template <class Pred>
  bool wait_until(Pred pred, std::chrono::milliseconds timeout = 10s) {
    std::unique_lock<std::mutex> guard{mtx};
    return cv.wait_for(guard, timeout, [&] { return pred(); });
  }

  /// Waits for the terminal event.
  bool wait_end(std::chrono::milliseconds timeout = 10s) {
    return wait_until([this] { return dones + failures > 0; }, timeout);
  }

  std::size_t pieces() {
    std::lock_guard<std::mutex> guard{mtx};
    return data_times.size();
  }
};

using test::eventually;

std::string chat_body(bool stream, const std::string& text = "hello") {
  return R"({"model":"sabia-4","messages":[{"role":"user","content":")" + text +
         "\"}]" + (stream ? R"(,"stream":true)" : "") + "}";
}

request chat_request(const std::string& base, bool stream,
                     header_list extra = {}) {
  request req;
  req.url = base + "/chat/completions";
  req.fields = std::move(extra);
  req.fields.push_back({"Content-Type", "application/json"});
  req.body = chat_body(stream);
  req.stream = stream;
  return req;
}

/// Runs one exchange to its end and returns the recorder.
std::shared_ptr<recorder> run(http_client& client, request req,
                              std::chrono::milliseconds timeout = 10s) {
  auto rec = std::make_shared<recorder>();
  client.start(std::move(req), rec);
  REQUIRE(rec->wait_end(timeout));
  return rec;
}

} // namespace

TEST_CASE("a plain answer over HTTP") {
  test::sim_process sim;
  http_client client;
  auto rec = run(client, chat_request(sim.base_url(), false));
  CHECK(rec->failures == 0);
  CHECK(rec->dones == 1);
  CHECK(rec->heads == 1);
  CHECK(rec->head.status == 200);
  CHECK(rec->data_times.size() == 1); // a non-stream body comes once
  CHECK(rec->body.find("\"chat.completion\"") != std::string::npos);
  CHECK(find_header(rec->head.fields, "CONTENT-TYPE").find("json") !=
        std::string_view::npos);
  CHECK(eventually([&] { return client.stats().active == 0; }));
}

TEST_CASE("GET of the models list") {
  test::sim_process sim;
  http_client client;
  request req;
  req.method = "GET";
  req.url = sim.base_url() + "/models";
  auto rec = run(client, req);
  REQUIRE(rec->dones == 1);
  CHECK(rec->head.status == 200);
  CHECK(rec->body.find("sabia-4") != std::string::npos);
}

TEST_CASE("a plain answer over TLS with a CA file") {
  auto cert = test::make_test_cert("localhost");
  test::sim_process sim{
      {"--tls-cert", cert.cert_file, "--tls-key", cert.key_file}};
  REQUIRE(sim.base_url().rfind("https://", 0) == 0);
  client_config cfg;
  cfg.ca_file = cert.cert_file;
  http_client client{cfg};
  SECTION("by IP address") {
    auto rec = run(client, chat_request(sim.base_url(), false));
    INFO(rec->what.describe());
    REQUIRE(rec->dones == 1);
    CHECK(rec->head.status == 200);
    CHECK(rec->body.find("\"chat.completion\"") != std::string::npos);
  }
  SECTION("by host name (SNI), kept alive") {
    auto base = "https://localhost:" + std::to_string(sim.port()) + "/api";
    for (int i = 0; i < 3; ++i) {
      auto rec = run(client, chat_request(base, true));
      INFO(rec->what.describe());
      REQUIRE(rec->dones == 1);
      CHECK(rec->body.find("[DONE]") != std::string::npos);
    }
    CHECK(client.stats().connections_opened == 1);
    CHECK(client.stats().connections_reused == 2);
  }
}

TEST_CASE("a self-signed server is refused without its CA, accepted with") {
  auto cert = test::make_test_cert("localhost");
  test::sim_process sim{
      {"--tls-cert", cert.cert_file, "--tls-key", cert.key_file}};
  {
    http_client client;
    auto rec = run(client, chat_request(sim.base_url(), false));
    REQUIRE(rec->failures == 1);
    CHECK(rec->what.code == errc::tls_failed);
    CHECK(rec->what.message.find("certificate verification failed") !=
          std::string::npos);
    CHECK_FALSE(rec->what.response_started);
  }
  {
    client_config cfg;
    cfg.ca_file = cert.cert_file;
    http_client client{cfg};
    auto rec = run(client, chat_request(sim.base_url(), false));
    CHECK(rec->dones == 1);
  }
  {
    client_config cfg;
    cfg.verify_peer = false;
    http_client client{cfg};
    auto rec = run(client, chat_request(sim.base_url(), false));
    CHECK(rec->dones == 1);
  }
}

TEST_CASE("a certificate for another host name is refused") {
  auto cert = test::make_test_cert("other.test");
  test::sim_process sim{
      {"--tls-cert", cert.cert_file, "--tls-key", cert.key_file}};
  client_config cfg;
  cfg.ca_file = cert.cert_file; // the chain is trusted, the name is not
  http_client client{cfg};
  auto base = "https://localhost:" + std::to_string(sim.port()) + "/api";
  auto rec = run(client, chat_request(base, false));
  REQUIRE(rec->failures == 1);
  CHECK(rec->what.code == errc::tls_failed);
  CHECK(rec->what.message.find("certificate verification failed") !=
        std::string::npos);
  CHECK(rec->what.message.find("localhost") != std::string::npos);
}

TEST_CASE("a streamed answer arrives incrementally") {
  test::sim_process sim;
  http_client client;
  auto rec = run(client, chat_request(sim.base_url(), true,
                                      {{"x-sim-token-delay-ms", "20"},
                                       {"x-sim-chunks", "12"}}));
  REQUIRE(rec->dones == 1);
  CHECK(rec->head.status == 200);
  CHECK(find_header(rec->head.fields, "content-type").find("event-stream") !=
        std::string_view::npos);
  CHECK(rec->data_times.size() >= 6);
  // 12 chunks 20 ms apart: the first piece comes long before the end.
  CHECK(rec->end_time - rec->data_times.front() >= 150ms);
  CHECK(rec->body.find("data: [DONE]") != std::string::npos);
}

TEST_CASE("injected faults give typed failures") {
  test::sim_process sim;
  http_client client;
  auto with_fault = [&](std::string fault, bool stream = true) {
    return chat_request(
        sim.base_url(), stream,
        {{"x-sim-fault", std::move(fault)}, {"x-sim-token-delay-ms", "10"}});
  };
  SECTION("status faults reach the observer as a head") {
    auto rec = run(client, with_fault("429;retry-after=3", false));
    REQUIRE(rec->dones == 1);
    CHECK(rec->head.status == 429);
    CHECK(find_header(rec->head.fields, "retry-after") == "3");
    rec = run(client, with_fault("503", false));
    CHECK(rec->head.status == 503);
  }
  SECTION("reset-before") {
    auto rec = run(client, with_fault("reset-before"));
    REQUIRE(rec->failures == 1);
    CHECK(rec->what.code == errc::connection_lost);
    CHECK_FALSE(rec->what.response_started);
    CHECK(rec->heads == 0);
  }
  SECTION("reset-mid") {
    auto rec = run(client, with_fault("reset-mid"));
    REQUIRE(rec->failures == 1);
    CHECK(rec->what.code == errc::connection_lost);
    CHECK(rec->what.response_started);
    CHECK(rec->heads == 1);
    CHECK_FALSE(rec->body.empty());
  }
  SECTION("stall-first") {
    auto req = with_fault("stall-first");
    req.limits.first_byte = 300ms;
    auto start = clock_type::now();
    auto rec = run(client, req);
    REQUIRE(rec->failures == 1);
    CHECK(rec->what.code == errc::timeout);
    CHECK(rec->what.which == deadline::first_byte);
    CHECK(rec->end_time - start >= 250ms);
    CHECK(rec->end_time - start < 3s);
  }
  SECTION("stall-mid") {
    auto req = with_fault("stall-mid");
    req.limits.idle = 300ms;
    auto rec = run(client, req);
    REQUIRE(rec->failures == 1);
    CHECK(rec->what.code == errc::timeout);
    CHECK(rec->what.which == deadline::idle);
    CHECK(rec->what.response_started);
    CHECK_FALSE(rec->body.empty());
  }
  SECTION("the total deadline") {
    auto req = with_fault("stall-first");
    req.limits.total = 300ms;
    auto rec = run(client, req);
    REQUIRE(rec->failures == 1);
    CHECK(rec->what.code == errc::timeout);
    CHECK(rec->what.which == deadline::total);
  }
  // Every failed connection is closed, never pooled.
  CHECK(eventually([&] { return test::read_stats(sim).in_flight == 0; }));
  CHECK(client.stats().active == 0);
}

TEST_CASE("connect failures and invalid requests") {
  http_client client;
  SECTION("nobody listens") {
    request req;
    req.url = "http://127.0.0.1:" + std::to_string(test::free_port()) + "/";
    auto rec = run(client, req);
    REQUIRE(rec->failures == 1);
    CHECK(rec->what.code == errc::connect_failed);
  }
  SECTION("a header value with CR LF") {
    request req;
    req.url = "http://127.0.0.1:9/";
    req.fields.push_back({"x-evil", "a\r\nInjected: yes"});
    auto rec = run(client, req);
    REQUIRE(rec->failures == 1);
    CHECK(rec->what.code == errc::invalid_argument);
  }
  SECTION("a header value with NUL") {
    request req;
    req.url = "http://127.0.0.1:9/";
    req.fields.push_back({"x-evil", std::string{"a\0b", 3}});
    auto rec = run(client, req);
    REQUIRE(rec->failures == 1);
    CHECK(rec->what.code == errc::invalid_argument);
  }
  SECTION("an unparsable URL") {
    request req;
    req.url = "ftp://example.com/";
    auto rec = run(client, req);
    REQUIRE(rec->failures == 1);
    CHECK(rec->what.code == errc::invalid_argument);
  }
  CHECK(eventually([&] { return client.stats().active == 0; }));
}

TEST_CASE("cancelling a stream frees its connection") {
  test::sim_process sim;
  client_config cfg;
  cfg.max_connections_per_origin = 1;
  http_client client{cfg};
  auto rec = std::make_shared<recorder>();
  auto id = client.start(
      chat_request(sim.base_url(), true,
                   {{"x-sim-token-delay-ms", "50"}, {"x-sim-chunks", "100"}}),
      rec);
  REQUIRE(rec->wait_until([&] { return !rec->data_times.empty(); }));
  CHECK(test::read_stats(sim).in_flight == 1);
  client.cancel(id);
  REQUIRE(rec->wait_end(2s));
  CHECK(rec->failures == 1);
  CHECK(rec->dones == 0);
  CHECK(rec->what.code == errc::cancelled);
  CHECK(rec->what.response_started);
  // The server sees the connection go away.
  CHECK(eventually([&] { return test::read_stats(sim).in_flight == 0; }));
  // Cancelling again, or after the end, does nothing.
  client.cancel(id);
  std::this_thread::sleep_for(20ms);
  CHECK(rec->failures == 1);
  // The only slot of the origin is free again.
  auto next = run(client, chat_request(sim.base_url(), false));
  CHECK(next->dones == 1);
  CHECK(client.stats().connections_opened == 2);
}

TEST_CASE("cancelling a queued exchange") {
  test::sim_process sim;
  client_config cfg;
  cfg.max_connections_per_origin = 1;
  http_client client{cfg};
  auto first = std::make_shared<recorder>();
  auto first_id = client.start(
      chat_request(sim.base_url(), true,
                   {{"x-sim-token-delay-ms", "20"}, {"x-sim-chunks", "20"}}),
      first);
  auto queued = std::make_shared<recorder>();
  auto queued_id = client.start(chat_request(sim.base_url(), false), queued);
  client.cancel(queued_id);
  REQUIRE(queued->wait_end(2s));
  CHECK(queued->what.code == errc::cancelled);
  CHECK_FALSE(queued->what.response_started);
  CHECK(queued->heads == 0);
  REQUIRE(first->wait_end());
  CHECK(first->dones == 1);
  client.cancel(first_id); // after the end: nothing happens
  std::this_thread::sleep_for(20ms);
  CHECK(first->failures == 0);
}

TEST_CASE("keep-alive reuses one connection") {
  test::sim_process sim;
  http_client client;
  for (int i = 0; i < 10; ++i) {
    auto rec = run(client, chat_request(sim.base_url(), i % 2 == 0));
    REQUIRE(rec->dones == 1);
    REQUIRE(rec->head.status == 200);
  }
  auto stats = client.stats();
  CHECK(stats.connections_opened == 1);
  CHECK(stats.connections_reused == 9);
  CHECK(stats.idle == 1);
  CHECK(stats.active == 0);
  // Ask the simulator over the same pooled connection.
  request req;
  req.method = "GET";
  req.url = sim.origin() + "/sim/stats";
  auto rec = run(client, req);
  REQUIRE(rec->dones == 1);
  CHECK(test::parse_sim_stats(rec->body).connections == 1);
  CHECK(test::parse_sim_stats(rec->body).requests == 10); // chat requests only
}

TEST_CASE("idle connections expire after keep_alive") {
  test::sim_process sim;
  client_config cfg;
  cfg.keep_alive = 200ms;
  http_client client{cfg};
  run(client, chat_request(sim.base_url(), false));
  CHECK(client.stats().idle == 1);
  CHECK(eventually([&] { return client.stats().idle == 0; }, 2s));
  CHECK(eventually([&] { return test::read_stats(sim).in_flight == 0; }));
  auto rec = run(client, chat_request(sim.base_url(), false));
  CHECK(rec->dones == 1);
  CHECK(client.stats().connections_opened == 2);
  CHECK(client.stats().connections_reused == 0);
}

TEST_CASE("max_connections_per_origin bounds concurrency") {
  test::sim_process sim;
  client_config cfg;
  cfg.max_connections_per_origin = 2;
  http_client client{cfg};
  std::vector<std::shared_ptr<recorder>> recs;
  for (int i = 0; i < 6; ++i) {
    recs.push_back(std::make_shared<recorder>());
    client.start(
        chat_request(sim.base_url(), true,
                     {{"x-sim-token-delay-ms", "10"}, {"x-sim-chunks", "8"}}),
        recs.back());
  }
  CHECK(client.stats().active == 6);
  for (auto& rec : recs) {
    REQUIRE(rec->wait_end());
    CHECK(rec->dones == 1);
  }
  CHECK(test::read_stats(sim).max_in_flight == 2);
  CHECK(client.stats().connections_opened == 2);
  CHECK(client.stats().connections_reused == 4);
}

TEST_CASE("many exchanges on several I/O threads") {
  test::sim_process sim;
  client_config cfg;
  cfg.io_threads = 3;
  cfg.max_connections_per_origin = 4;
  http_client client{cfg};
  std::vector<std::shared_ptr<recorder>> recs;
  std::vector<exchange_id> ids;
  for (int i = 0; i < 24; ++i) {
    recs.push_back(std::make_shared<recorder>());
    ids.push_back(client.start(
        chat_request(sim.base_url(), i % 3 != 0,
                     {{"x-sim-token-delay-ms", "2"}, {"x-sim-chunks", "5"}}),
        recs.back()));
  }
  // Cancel a few while they run or wait.
  for (int i = 1; i < 24; i += 6)
    client.cancel(ids[i]);
  int dones = 0;
  int cancelled = 0;
  for (auto& rec : recs) {
    REQUIRE(rec->wait_end());
    std::this_thread::sleep_for(1ms);
    CHECK(rec->dones + rec->failures == 1);
    dones += rec->dones;
    if (rec->failures == 1) {
      CHECK(rec->what.code == errc::cancelled);
      ++cancelled;
    }
  }
  CHECK(dones + cancelled == 24);
  CHECK(dones >= 20);
  // The pool limit holds on the client's side exactly.
  auto stats = client.stats();
  CHECK(stats.max_open <= 4);
  CHECK(stats.max_open >= 2); // the limit was used
  // The client closes a cancelled exchange's connection at once; the sim
  // counts that exchange until its next write fails, so each cancel may
  // overlap one exchange on a new connection there.
  CHECK(test::read_stats(sim).max_in_flight <= 4 + cancelled);
  CHECK(eventually([&] { return client.stats().active == 0; }));
  CHECK(eventually([&] { return test::read_stats(sim).in_flight == 0; }));
}

TEST_CASE("on_data returning false pauses reading until resume") {
  test::sim_process sim;
  http_client client;
  auto rec = std::make_shared<recorder>();
  std::atomic<bool> pause{true};
  rec->on_data_hook = [&](std::string_view) { return !pause.exchange(false); };
  auto req =
      chat_request(sim.base_url(), true,
                   {{"x-sim-token-delay-ms", "5"}, {"x-sim-chunks", "20"}});
  // The idle deadline does not run while paused.
  req.limits.idle = 150ms;
  auto id = client.start(std::move(req), rec);
  REQUIRE(rec->wait_until([&] { return !rec->data_times.empty(); }));
  // Paused: nothing more arrives although the server keeps sending.
  std::this_thread::sleep_for(400ms);
  CHECK(rec->pieces() == 1);
  CHECK(rec->dones + rec->failures == 0);
  client.resume(id);
  REQUIRE(rec->wait_end());
  INFO(rec->what.describe());
  CHECK(rec->dones == 1);
  CHECK(rec->pieces() > 1);
  CHECK(rec->body.find("data: [DONE]") != std::string::npos);
}

TEST_CASE("destroying the client cancels running exchanges promptly") {
  test::sim_process sim;
  std::vector<std::shared_ptr<recorder>> recs;
  auto client = std::make_unique<http_client>([] {
    client_config cfg;
    cfg.max_connections_per_origin = 2;
    return cfg;
  }());
  for (int i = 0; i < 3; ++i) {
    recs.push_back(std::make_shared<recorder>());
    client->start(
        chat_request(sim.base_url(), true, {{"x-sim-fault", "stall-first"}}),
        recs.back());
  }
  recs.push_back(std::make_shared<recorder>());
  client->start(
      chat_request(sim.base_url(), true,
                   {{"x-sim-token-delay-ms", "50"}, {"x-sim-chunks", "100"}}),
      recs.back());
  CHECK(eventually([&] { return test::read_stats(sim).in_flight == 2; }));
  auto start = clock_type::now();
  client.reset();
  CHECK(clock_type::now() - start < 1s);
  for (auto& rec : recs) {
    CHECK(rec->dones == 0);
    CHECK(rec->failures == 1);
    CHECK(rec->what.code == errc::cancelled);
  }
  CHECK(eventually([&] { return test::read_stats(sim).in_flight == 0; }));
}

namespace {

/// A scripted HTTP server on loopback: it answers the first request of its
/// first connection with keep-alive, closes that connection when the
/// second request arrives on it (like a server dropping an idle
/// connection just as it is reused), and answers every request on later
/// connections.
class flaky_server {
public:
  flaky_server() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    listen(fd_, 8);
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }

  ~flaky_server() {
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
  }

  int port() const { return port_; }

  int connections() const { return connections_; }

private:
  static bool read_request(int fd) {
    std::string data;
    char buf[1024];
    while (data.find("\r\n\r\n") == std::string::npos) {
      auto n = read(fd, buf, sizeof(buf));
      if (n <= 0) return false;
      data.append(buf, static_cast<size_t>(n));
    }
    return true;
  }

  static void answer(int fd) {
    std::string res = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      "Content-Length: 11\r\n\r\n{\"ok\":true}";
    auto n = write(fd, res.data(), res.size());
    (void)n;
  }

  void serve() {
    for (;;) {
      int conn = accept(fd_, nullptr, nullptr);
      if (conn < 0) return;
      auto index = ++connections_;
      std::thread([conn, index] {
        if (read_request(conn)) {
          answer(conn);
          while (read_request(conn)) {
            if (index == 1) break; // drop the reused connection without a byte
            answer(conn);
          }
        }
        close(conn);
      }).detach();
    }
  }

  int fd_ = -1;
  int port_ = 0;
  std::atomic<int> connections_{0};
  std::thread thread_;
};

} // namespace

TEST_CASE("a pooled connection the server dropped is retried once") {
  flaky_server server;
  http_client client;
  request req;
  req.method = "GET";
  req.url = "http://127.0.0.1:" + std::to_string(server.port()) + "/x";
  auto first = run(client, req);
  REQUIRE(first->dones == 1);
  CHECK(client.stats().idle == 1);
  auto second = run(client, req);
  INFO(second->what.describe());
  REQUIRE(second->dones == 1);
  CHECK(second->body == "{\"ok\":true}");
  CHECK(server.connections() == 2);
  CHECK(client.stats().connections_opened == 2);
}

// -- through an HTTP proxy (tinyproxy)
// -----------------------------------------

TEST_CASE("exchanges tunnel through an HTTP proxy") {
  test::proxy_process proxy;
  test::sim_process sim;
  client_config cfg;
  cfg.proxy = proxy.url();
  http_client client{cfg};
  auto rec = run(client, chat_request(sim.base_url(), false));
  INFO(rec->what.describe());
  REQUIRE(rec->dones == 1);
  CHECK(rec->head.status == 200);
  CHECK(rec->body.find("\"chat.completion\"") != std::string::npos);
  // A stream, on the same tunnel (kept alive through the proxy).
  rec = run(client, chat_request(sim.base_url(), true));
  INFO(rec->what.describe());
  REQUIRE(rec->dones == 1);
  CHECK(rec->body.find("[DONE]") != std::string::npos);
  CHECK(client.stats().connections_opened == 1);
  CHECK(client.stats().connections_reused == 1);
}

TEST_CASE("TLS goes end to end through a proxy tunnel") {
  auto cert = test::make_test_cert("localhost");
  test::proxy_process proxy;
  test::sim_process sim{
      {"--tls-cert", cert.cert_file, "--tls-key", cert.key_file}};
  client_config cfg;
  cfg.proxy = proxy.url();
  cfg.ca_file = cert.cert_file;
  http_client client{cfg};
  // By host name: SNI and the certificate check are the origin's, not the
  // proxy's.
  auto base = "https://localhost:" + std::to_string(sim.port()) + "/api";
  auto rec = run(client, chat_request(base, true));
  INFO(rec->what.describe());
  REQUIRE(rec->dones == 1);
  CHECK(rec->body.find("[DONE]") != std::string::npos);
  // Without the CA the origin's certificate is refused through the tunnel.
  client_config strict = cfg;
  strict.ca_file.clear();
  http_client refusing{strict};
  rec = run(refusing, chat_request(base, false));
  REQUIRE(rec->failures == 1);
  CHECK(rec->what.code == errc::tls_failed);
}

TEST_CASE("proxy credentials, refusals and bypass") {
  test::proxy_process proxy{"maritaca", "s3cret"};
  test::sim_process sim;
  auto with_proxy = [&](std::string url, std::vector<std::string> bypass = {}) {
    client_config cfg;
    cfg.proxy = std::move(url);
    cfg.no_proxy = std::move(bypass);
    return cfg;
  };
  auto authority = "127.0.0.1:" + std::to_string(proxy.port());
  SECTION("the right credentials open the tunnel") {
    http_client client{with_proxy("http://maritaca:s3cret@" + authority)};
    auto rec = run(client, chat_request(sim.base_url(), false));
    INFO(rec->what.describe());
    CHECK(rec->dones == 1);
  }
  SECTION("percent-escaped credentials are decoded") {
    http_client client{with_proxy("http://mar%69taca:s3cr%65t@" + authority)};
    auto rec = run(client, chat_request(sim.base_url(), false));
    INFO(rec->what.describe());
    CHECK(rec->dones == 1);
  }
  SECTION("missing or wrong credentials: 407, not retried, no password") {
    for (auto url :
         {"http://" + authority, "http://maritaca:wrong@" + authority}) {
      http_client client{with_proxy(url)};
      auto rec = run(client, chat_request(sim.base_url(), false));
      REQUIRE(rec->failures == 1);
      CHECK(rec->what.code == errc::connect_failed);
      // tinyproxy answers a CONNECT without valid credentials with 401
      // (RFC 9110 says 407); either reads as the proxy's refusal.
      CHECK((rec->what.status == 407 || rec->what.status == 401));
      CHECK(rec->what.should_retry == 0);
      CHECK(rec->what.message.find("proxy") != std::string::npos);
      CHECK(rec->what.message.find("credentials") != std::string::npos);
      CHECK(rec->what.message.find("badpass") == std::string::npos);
      CHECK(rec->what.message.find("s3cret") == std::string::npos);
      CHECK(test::read_stats(sim).requests == 0);
    }
  }
  SECTION("an unreachable proxy fails to connect; no_proxy goes direct") {
    auto dead = "http://127.0.0.1:" + std::to_string(test::free_port());
    http_client via{with_proxy(dead)};
    auto rec = run(via, chat_request(sim.base_url(), false));
    REQUIRE(rec->failures == 1);
    CHECK(rec->what.code == errc::connect_failed);
    CHECK(rec->what.message.find("proxy") != std::string::npos);
    for (auto bypass : {"127.0.0.1", "*", ".0.0.1"}) {
      INFO(bypass);
      http_client direct{with_proxy(dead, {"example.com", bypass})};
      rec = run(direct, chat_request(sim.base_url(), false));
      INFO(rec->what.describe());
      CHECK(rec->dones == 1);
    }
  }
  SECTION("a malformed proxy URL fails every exchange, secrets unsaid") {
    for (auto url : {"https://u:hidden@127.0.0.1:1", "socks5://127.0.0.1:1",
                     "http://u:hidden@", "http://127.0.0.1:99999",
                     "http://u%zz:hidden@127.0.0.1:1", "http://h/path"}) {
      INFO(url);
      http_client client{with_proxy(url)};
      auto rec = run(client, chat_request(sim.base_url(), false));
      REQUIRE(rec->failures == 1);
      CHECK(rec->what.code == errc::invalid_argument);
      CHECK(rec->what.message.rfind("proxy: ", 0) == 0);
      CHECK(rec->what.message.find("hidden") == std::string::npos);
    }
  }
}

TEST_CASE("the total deadline also bounds the wait for a connection") {
  test::sim_process sim;
  client_config cfg;
  cfg.max_connections_per_origin = 1;
  http_client client{cfg};
  // The only connection is held by a stalled exchange (first byte: 5 s).
  auto stalled =
      chat_request(sim.base_url(), false, {{"x-sim-fault", "stall-first"}});
  stalled.limits.first_byte = 5s;
  auto first = std::make_shared<recorder>();
  client.start(std::move(stalled), first);
  REQUIRE(eventually([&] { return test::read_stats(sim).in_flight == 1; }));
  // The second waits for it and ends at its own total deadline.
  auto waiting = chat_request(sim.base_url(), false);
  waiting.limits.total = 300ms;
  auto start = clock_type::now();
  auto rec = run(client, std::move(waiting));
  REQUIRE(rec->failures == 1);
  CHECK(rec->what.code == errc::timeout);
  CHECK(rec->what.which == deadline::total);
  CHECK(rec->end_time - start >= 250ms);
  CHECK(rec->end_time - start < 3s);
  CHECK(rec->heads == 0);
  // The first one still ends (at its first-byte deadline).
  REQUIRE(first->wait_end(10s));
  CHECK(first->what.which == deadline::first_byte);
}

TEST_CASE("idle I/O threads poll at most idle_spin and then block") {
  test::sim_process sim;
  for (auto spin : {0us, 50us, 5'000us}) {
    for (std::size_t threads : {1u, 2u}) {
      CAPTURE(spin.count(), threads);
      client_config cfg;
      cfg.idle_spin = spin;
      cfg.io_threads = threads;
      http_client client{cfg};
      // One at a time (between them the threads poll, if they do) ...
      for (int i = 0; i < 3; ++i) {
        auto rec = run(client, chat_request(sim.base_url(), i % 2 == 1));
        CHECK(rec->dones == 1);
      }
      // ... and more at once than there are threads (they do not).
      std::vector<std::shared_ptr<recorder>> recs;
      for (int i = 0; i < 6; ++i) {
        recs.push_back(std::make_shared<recorder>());
        client.start(
            chat_request(sim.base_url(), true, {{"x-sim-token-delay-ms", "1"}}),
            recs.back());
      }
      for (auto& rec : recs) {
        REQUIRE(rec->wait_end());
        CHECK(rec->dones == 1);
      }
      // A thread that kept polling would use the whole window.
      CHECK(test::idle_cpu(50ms, 300ms) < 100ms);
    }
  }
}
