// Unit tests of the cluster limiter: grants within the budget, FIFO waits,
// releases, TTL expiry, clients that end, and a client on another node
// (a second actor system in this process, over loopback) whose link drops.

#include "maritaca/chat_model.hpp"
#include "maritaca/limiter.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/io/middleman.hpp>
#include <caf/scoped_actor.hpp>

#include "support/wait.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <thread>

using namespace maritaca;
using namespace std::chrono_literals;

namespace {

/// The limiter's figures.
struct figures {
  uint64_t in_use = 0;
  uint64_t max_in_use = 0;
  uint64_t waiting = 0;
  uint64_t clients = 0;
  uint64_t expired = 0;
};

figures read_figures(caf::scoped_actor& self, const caf::actor& limiter) {
  figures f;
  self->request(limiter, 5s, stats_atom::value)
      .receive(
          [&](uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t e) {
            f = figures{a, b, c, d, e};
          },
          [&](caf::error&) { FAIL("no stats from the limiter"); });
  return f;
}

/// Waits (bounded) for a grant; returns its lease id.
std::optional<uint64_t> next_grant(caf::scoped_actor& self,
                                   std::chrono::milliseconds bound = 5s) {
  std::optional<uint64_t> result;
  self->receive([&](grant_atom, uint64_t id, int64_t) { result = id; },
                caf::after(bound) >> [] {});
  return result;
}

/// Waits for `pred`, bounded by 10 s (against hangs only).
template <class Pred>
bool eventually(Pred pred) {
  return test::eventually(pred, 10s, 10ms);
}

std::unique_ptr<caf::actor_system_config> cluster_cfg() {
  auto cfg = std::make_unique<caf::actor_system_config>();
  configure(*cfg);
  configure_cluster(*cfg);
  return cfg;
}

} // namespace

TEST_CASE("parse_host_port splits host and port") {
  std::string host;
  uint16_t port = 0;
  CHECK(parse_host_port("127.0.0.1:4000", host, port));
  CHECK(host == "127.0.0.1");
  CHECK(port == 4000);
  CHECK(parse_host_port("[::1]:0", host, port));
  CHECK(host == "::1");
  CHECK(port == 0);
  CHECK_FALSE(parse_host_port("127.0.0.1", host, port));
  CHECK_FALSE(parse_host_port(":80", host, port));
  CHECK_FALSE(parse_host_port("h:99999", host, port));
  CHECK_FALSE(parse_host_port("h:8x", host, port));
}

TEST_CASE("the limiter grants at most its budget, FIFO") {
  caf::actor_system_config cfg;
  configure(cfg);
  caf::actor_system sys{cfg};
  limiter_config lc;
  lc.max_concurrency = 2;
  auto limiter = spawn_limiter(sys, lc);
  caf::scoped_actor self{sys};
  for (uint64_t id = 1; id <= 3; ++id)
    self->send(limiter, acquire_atom::value, id, int64_t{10});
  CHECK(next_grant(self) == uint64_t{1});
  CHECK(next_grant(self) == uint64_t{2});
  CHECK_FALSE(next_grant(self, 100ms));
  auto f = read_figures(self, limiter);
  CHECK(f.in_use == 2);
  CHECK(f.waiting == 1);
  self->send(limiter, release_atom::value, uint64_t{1}, int64_t{5});
  CHECK(next_grant(self) == uint64_t{3});
  // Releasing a waiting acquire drops it; unknown ids are ignored.
  self->send(limiter, acquire_atom::value, uint64_t{4}, int64_t{0});
  self->send(limiter, release_atom::value, uint64_t{4}, int64_t{-1});
  self->send(limiter, release_atom::value, uint64_t{99}, int64_t{-1});
  f = read_figures(self, limiter);
  CHECK(f.in_use == 2);
  CHECK(f.waiting == 0);
  CHECK(f.max_in_use == 2);
  self->send_exit(limiter, caf::exit_reason::user_shutdown);
}

TEST_CASE("renewals keep leases; without them leases expire") {
  caf::actor_system_config cfg;
  configure(cfg);
  caf::actor_system sys{cfg};
  limiter_config lc;
  lc.max_concurrency = 1;
  lc.lease_ttl = 200ms;
  auto limiter = spawn_limiter(sys, lc);
  caf::scoped_actor self{sys};
  self->send(limiter, acquire_atom::value, uint64_t{1}, int64_t{0});
  REQUIRE(next_grant(self) == uint64_t{1});
  self->request(limiter, 5s, renew_atom::value)
      .receive(
          [&](uint64_t held, int64_t ttl) {
            CHECK(held == 1);
            CHECK(ttl == 200);
          },
          [&](caf::error&) { FAIL("no renew answer"); });
  // A second client waits; the first one stops renewing, so its lease comes
  // back and the second one gets it.
  caf::scoped_actor other{sys};
  other->send(limiter, acquire_atom::value, uint64_t{7}, int64_t{0});
  CHECK(next_grant(other, 10s) == uint64_t{7});
  CHECK(read_figures(self, limiter).expired == 1);
  self->send_exit(limiter, caf::exit_reason::user_shutdown);
}

TEST_CASE("a client that ends releases its leases and acquires") {
  caf::actor_system_config cfg;
  configure(cfg);
  caf::actor_system sys{cfg};
  limiter_config lc;
  lc.max_concurrency = 1;
  auto limiter = spawn_limiter(sys, lc);
  caf::scoped_actor self{sys};
  {
    caf::scoped_actor holder{sys};
    holder->send(limiter, acquire_atom::value, uint64_t{1}, int64_t{0});
    REQUIRE(next_grant(holder) == uint64_t{1});
    self->send(limiter, acquire_atom::value, uint64_t{2}, int64_t{0});
    CHECK_FALSE(next_grant(self, 50ms));
  }
  CHECK(next_grant(self) == uint64_t{2});
  CHECK(eventually([&] { return read_figures(self, limiter).clients == 1; }));
  self->send_exit(limiter, caf::exit_reason::user_shutdown);
}

TEST_CASE("a remote client's leases come back when its link drops") {
  auto cfg = cluster_cfg();
  caf::actor_system sys{*cfg};
  limiter_config lc;
  lc.max_concurrency = 2;
  auto limiter = spawn_limiter(sys, lc);
  auto port = publish_limiter(sys, limiter, "127.0.0.1:0");
  REQUIRE(port);
  REQUIRE(*port != 0);
  caf::scoped_actor self{sys};
  {
    // Another node: its own actor system, connected over loopback.
    auto cfg2 = cluster_cfg();
    caf::actor_system sys2{*cfg2};
    auto remote = sys2.middleman().remote_actor("127.0.0.1", *port);
    REQUIRE(remote);
    caf::scoped_actor client{sys2};
    client->send(*remote, acquire_atom::value, uint64_t{1}, int64_t{0});
    client->send(*remote, acquire_atom::value, uint64_t{2}, int64_t{0});
    CHECK(next_grant(client) == uint64_t{1});
    CHECK(next_grant(client) == uint64_t{2});
    client->request(*remote, 5s, renew_atom::value)
        .receive([&](uint64_t held, int64_t) { CHECK(held == 2); },
                 [&](caf::error&) { FAIL("no renew answer"); });
    CHECK(read_figures(self, limiter).in_use == 2);
    // Leaving the scope shuts the other node down: its link drops.
  }
  CHECK(eventually([&] { return read_figures(self, limiter).in_use == 0; }));
  self->send_exit(limiter, caf::exit_reason::user_shutdown);
}
