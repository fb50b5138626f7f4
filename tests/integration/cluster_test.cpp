// Integration tests of cluster admission (docs/cluster.md), all on
// loopback against one maritaca-sim:
// - chat models of separate actor systems (separate CAF nodes) share one
//   limiter: the simulator never sees more requests at once than its
//   budget;
// - a model whose limiter is unreachable admits on its fallback limit,
//   joins once the limiter appears and falls back again when it goes;
// - three maritaca-gateway processes joined to a maritaca-limiter with a
//   global limit of 4, driven with many concurrent asks: the simulator's
//   max_in_flight never exceeds 4, killing the gateway that holds every
//   slot frees them for the others, and every ask ends.
//
// Time bounds here are only timeouts against hangs.

#include "support/actors.hpp"
#include "support/process.hpp"
#include "support/wait.hpp"

#include "maritaca/chat_model.hpp"
#include "maritaca/limiter.hpp"

#include <caf/scoped_actor.hpp>

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace maritaca;
using namespace std::chrono_literals;
using maritaca::test::bin_path;
using maritaca::test::child_process;
using maritaca::test::sim_process;

namespace {

/// Waits for `pred`, bounded (the cluster takes its time to settle).
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds bound = 20s) {
  return test::eventually(pred, bound, 20ms);
}

/// The model's dispatcher counters.
dispatcher_stats stats_of(const chat_model& model) {
  dispatcher_stats result;
  caf::scoped_actor self{model.system()};
  self->request(model.dispatcher(), 5s, stats_atom::value)
      .receive([&](dispatcher_stats& s) { result = s; }, [&](caf::error&) {});
  return result;
}

/// A model configuration whose streamed answers take a while (10 chunks,
/// 20 ms apart), so that asks overlap.
model_config slow_config(const sim_process& sim) {
  auto cfg = test::with_header(test::sim_config(sim), "x-sim-chunks", "10");
  return test::with_header(std::move(cfg), "x-sim-token-delay-ms", "20");
}

/// Streams `n` asks at once through `model`; returns how many succeeded.
int stream_all(const chat_model& model, int n) {
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i)
    threads.emplace_back([&, i] {
      auto s = model.stream("pergunta " + std::to_string(i));
      for (auto& chunk : s)
        (void)chunk;
      if (s.result()) ++ok;
    });
  for (auto& t : threads)
    t.join();
  return ok.load();
}

/// The port of a gateway, from its first stdout line "http://HOST:PORT".
int port_of(const child_process& p) {
  auto& url = p.first_line();
  return std::atoi(url.substr(url.rfind(':') + 1).c_str());
}

/// Whether the gateway on `port` says it is joined to the limiter.
bool gateway_joined(int port) {
  std::string body;
  return test::http_get(port, "/metrics", body) == 200 &&
         body.find("maritaca_gateway_cluster_state{state=\"joined\"} 1") !=
             std::string::npos;
}

/// How asks against one gateway ended.
struct outcomes {
  std::atomic<int> answered{0};
  std::atomic<int> typed_errors{0};
  std::atomic<int> no_answer{0};
};

/// One streamed ask against the gateway on `port`.
void ask_gateway(int port, int i, outcomes& out) {
  std::string body;
  auto status =
      test::http_get(port, "/stream?question=q" + std::to_string(i), body);
  if (status == 200 && !body.empty() &&
      body.find("\"error\"") == std::string::npos)
    ++out.answered;
  else if (status >= 400 && body.find("\"code\"") != std::string::npos)
    ++out.typed_errors;
  else
    ++out.no_answer;
}

} // namespace

TEST_CASE("models on separate nodes share one limiter") {
  sim_process sim;
  auto cfg_a = slow_config(sim);
  cfg_a.limits.cluster.listen = "127.0.0.1:0";
  cfg_a.limits.cluster.global_concurrency = 2;
  chat_model a{cfg_a};
  REQUIRE(a.cluster_port() != 0);
  auto cfg_b = slow_config(sim);
  cfg_b.limits.cluster.join = "127.0.0.1:" + std::to_string(a.cluster_port());
  chat_model b{cfg_b};
  REQUIRE(eventually(
      [&] { return stats_of(b).cluster == cluster_status::joined; }));
  CHECK(stats_of(a).cluster == cluster_status::joined);
  test::reset_stats(sim);
  std::thread other{[&] { CHECK(stream_all(a, 4) == 4); }};
  CHECK(stream_all(b, 8) == 8);
  other.join();
  auto s = test::read_stats(sim);
  CHECK(s.max_in_flight >= 1);
  CHECK(s.max_in_flight <= 2);
  CHECK(stats_of(b).admitted == 8);
  // Every lease went back once its ask ended.
  CHECK(eventually([&] { return stats_of(b).leases == 0; }));
}

TEST_CASE("an unreachable limiter means the fallback limit and a re-join") {
  sim_process sim;
  auto port = static_cast<uint16_t>(test::free_port());
  auto cfg_b = slow_config(sim);
  cfg_b.limits.cluster.join = "127.0.0.1:" + std::to_string(port);
  cfg_b.limits.cluster.fallback_concurrency = 1;
  cfg_b.limits.cluster.join_timeout = 1s;
  cfg_b.limits.cluster.rejoin_interval = 100ms;
  chat_model b{cfg_b};
  REQUIRE(eventually(
      [&] { return stats_of(b).cluster == cluster_status::fallback; }));
  test::reset_stats(sim);
  CHECK(stream_all(b, 4) == 4);
  CHECK(test::read_stats(sim).max_in_flight == 1);
  {
    // The limiter appears: the model joins it and its budget applies.
    auto cfg_a = slow_config(sim);
    cfg_a.limits.cluster.listen = "127.0.0.1:" + std::to_string(port);
    cfg_a.limits.cluster.global_concurrency = 3;
    chat_model a{cfg_a};
    REQUIRE(eventually(
        [&] { return stats_of(b).cluster == cluster_status::joined; }));
    test::reset_stats(sim);
    CHECK(stream_all(b, 9) == 9);
    auto s = test::read_stats(sim);
    CHECK(s.max_in_flight >= 1);
    CHECK(s.max_in_flight <= 3);
    CHECK(stats_of(b).cluster_losses == 0);
  }
  // The limiter's process is gone: fallback again, and asks still end.
  REQUIRE(eventually(
      [&] { return stats_of(b).cluster == cluster_status::fallback; }));
  CHECK(stats_of(b).cluster_losses == 1);
  CHECK(stream_all(b, 2) == 2);
}

TEST_CASE("three gateways share a limit of 4; a killed one frees its slots") {
  // Answers of a dozen words, 25 ms apart: each ask holds its slot a while.
  sim_process sim{{"--token-delay-ms", "25"}};
  // A long TTL: only the dropped link can free a killed gateway's leases in
  // time for the client timeouts below (30 s).
  child_process limiter{{bin_path("maritaca-limiter"), "--listen",
                         "127.0.0.1:0", "--max-concurrency", "4", "--lease-ttl",
                         "120"},
                        "127.0.0.1:"};
  auto join = limiter.first_line();
  auto start_gateway = [&] {
    return std::make_unique<child_process>(
        std::vector<std::string>{bin_path("maritaca-gateway"), "--listen",
                                 "127.0.0.1:0", "--upstream", sim.base_url(),
                                 "--cluster-join", join, "--max-concurrency",
                                 "16", "--max-retries", "0",
                                 "--cluster-fallback", "1"},
        "http");
  };
  auto gw_a = start_gateway();
  auto gw_b = start_gateway();
  auto gw_c = start_gateway();
  int port_a = port_of(*gw_a), port_b = port_of(*gw_b), port_c = port_of(*gw_c);
  for (int port : {port_a, port_b, port_c})
    REQUIRE(eventually([&] { return gateway_joined(port); }));
  test::reset_stats(sim);
  // Gateway C takes every slot: 8 clients asking again and again.
  outcomes out_c;
  std::atomic<bool> stop_c{false};
  std::vector<std::thread> clients_c;
  for (int t = 0; t < 8; ++t)
    clients_c.emplace_back([&, t] {
      for (int i = 0; !stop_c && i < 1000; ++i)
        ask_gateway(port_c, t * 1000 + i, out_c);
    });
  REQUIRE(eventually([&] { return test::read_stats(sim).in_flight == 4; }));
  // A and B get 8 clients with 3 asks each; they wait behind C's leases.
  outcomes out_ab;
  std::vector<std::thread> clients_ab;
  for (int port : {port_a, port_b})
    for (int t = 0; t < 8; ++t)
      clients_ab.emplace_back([&, port, t] {
        for (int i = 0; i < 3; ++i)
          ask_gateway(port, t * 10 + i, out_ab);
      });
  std::this_thread::sleep_for(200ms);
  // Kill C mid-run: the limiter sees its link drop and frees its slots.
  gw_c->kill(SIGKILL);
  gw_c->wait();
  stop_c = true;
  for (auto& t : clients_c)
    t.join();
  for (auto& t : clients_ab)
    t.join();
  // No ask is lost: each of A's and B's asks got an answer or a typed
  // error (C's clients lost their connection with C).
  CHECK(out_ab.answered + out_ab.typed_errors == 48);
  CHECK(out_ab.no_answer == 0);
  CHECK(out_ab.answered > 0);
  auto s = test::read_stats(sim);
  CHECK(s.max_in_flight >= 1);
  CHECK(s.max_in_flight <= 4);
  // The survivors are still joined.
  CHECK(gateway_joined(port_a));
  CHECK(gateway_joined(port_b));
}

TEST_CASE("the gateway refuses to both hold and join a limiter") {
  child_process gw{{bin_path("maritaca-gateway"), "--cluster-listen",
                    "127.0.0.1:0", "--cluster-join", "127.0.0.1:1"}};
  CHECK(gw.wait() == 2);
  child_process bad{{bin_path("maritaca-gateway"), "--cluster-join", "nohost"}};
  CHECK(bad.wait() == 2);
}

TEST_CASE("a gateway can hold the limiter that another gateway joins") {
  sim_process sim{{"--token-delay-ms", "10"}};
  auto cluster = "127.0.0.1:" + std::to_string(test::free_port());
  child_process holder{{bin_path("maritaca-gateway"), "--listen", "127.0.0.1:0",
                        "--upstream", sim.base_url(), "--cluster-listen",
                        cluster, "--cluster-concurrency", "2"},
                       "http"};
  child_process joiner{{bin_path("maritaca-gateway"), "--listen", "127.0.0.1:0",
                        "--upstream", sim.base_url(), "--cluster-join",
                        cluster},
                       "http"};
  int ports[] = {port_of(holder), port_of(joiner)};
  for (int port : ports)
    REQUIRE(eventually([&] { return gateway_joined(port); }));
  test::reset_stats(sim);
  outcomes out;
  std::vector<std::thread> clients;
  for (int port : ports)
    for (int t = 0; t < 4; ++t)
      clients.emplace_back([&, port, t] {
        for (int i = 0; i < 2; ++i)
          ask_gateway(port, t * 10 + i, out);
      });
  for (auto& t : clients)
    t.join();
  CHECK(out.answered == 16);
  auto s = test::read_stats(sim);
  CHECK(s.max_in_flight >= 1);
  CHECK(s.max_in_flight <= 2);
}

TEST_CASE("a gateway says when it falls back and when it re-joins") {
  sim_process sim;
  auto cluster = "127.0.0.1:" + std::to_string(test::free_port());
  auto start_limiter = [&] {
    return std::make_unique<child_process>(
        std::vector<std::string>{bin_path("maritaca-limiter"), "--listen",
                                 cluster, "--max-concurrency", "2"},
        "127.0.0.1:");
  };
  auto limiter = start_limiter();
  child_process gw{{bin_path("maritaca-gateway"), "--listen", "127.0.0.1:0",
                    "--upstream", sim.base_url(), "--cluster-join", cluster,
                    "--cluster-fallback", "1"},
                   "http"};
  auto port = port_of(gw);
  REQUIRE(eventually([&] { return gateway_joined(port); }));
  auto metric = [&](const std::string& line) {
    std::string body;
    return test::http_get(port, "/metrics", body) == 200 &&
           body.find(line) != std::string::npos;
  };
  // The limiter goes: /metrics says fallback, and asks still get answers.
  limiter->kill(SIGKILL);
  limiter->wait();
  REQUIRE(eventually([&] {
    return metric("maritaca_gateway_cluster_state{state=\"fallback\"} 1");
  }));
  CHECK(metric("maritaca_gateway_cluster_losses_total 1"));
  outcomes out;
  ask_gateway(port, 1, out);
  CHECK(out.answered == 1);
  // It comes back on the same address: the gateway re-joins.
  limiter = start_limiter();
  REQUIRE(eventually([&] { return gateway_joined(port); }));
  ask_gateway(port, 2, out);
  CHECK(out.answered == 2);
}
