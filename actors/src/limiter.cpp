#include "maritaca/limiter.hpp"

#include "bucket.hpp"

#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/io/middleman.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include <algorithm>
#include <deque>
#include <map>
#include <tuple>
#include <unordered_map>

namespace maritaca {

namespace {

using clock_type = std::chrono::steady_clock;

/// A granted slot.
struct lease {
  /// Tokens taken from the token bucket for it.
  double tokens = 0;
  /// Taken back unless renewed before.
  clock_type::time_point deadline;
};

/// A process's dispatcher and what it holds.
struct client {
  caf::actor handle;
  /// Lease id -> lease.
  std::map<uint64_t, lease> leases;
};

/// An acquire waiting for a slot.
struct waiter {
  caf::actor_addr who;
  uint64_t lease = 0;
  double tokens = 0;
};

struct limiter_state {
  limiter_config cfg;
  std::unordered_map<caf::actor_addr, client> clients;
  std::deque<waiter> waiting;
  std::size_t in_use = 0;
  std::size_t max_in_use = 0;
  uint64_t expired = 0;
  /// The global rate limits.
  detail::rate_budget budget;
  bool tick_scheduled = false;

  static inline const char* name = "maritaca.limiter";
};

using limiter_self = caf::stateful_actor<limiter_state>;

/// Returns the client record of the current sender, monitoring it the
/// first time (its down message releases everything it holds).
client* sender_client(limiter_self* self) {
  auto& sender = self->current_sender();
  if (!sender) return nullptr;
  auto handle = caf::actor_cast<caf::actor>(sender);
  auto addr = handle.address();
  auto& st = self->state;
  auto i = st.clients.find(addr);
  if (i == st.clients.end()) {
    self->monitor(handle);
    i = st.clients.emplace(addr, client{handle, {}}).first;
  }
  return &i->second;
}

/// Grants waiting acquires while slots and the rate budget allow.
void pump(limiter_self* self) {
  auto& st = self->state;
  while (!st.waiting.empty() && st.in_use < st.cfg.max_concurrency) {
    auto& w = st.waiting.front();
    auto i = st.clients.find(w.who);
    if (i == st.clients.end()) {
      st.waiting.pop_front();
      continue;
    }
    auto wait = st.budget.wait_for(w.tokens);
    if (wait.count() > 0) {
      if (!st.tick_scheduled) {
        st.tick_scheduled = true;
        self->delayed_send(self, wait, tick_atom::value);
      }
      return;
    }
    st.budget.take(w.tokens);
    i->second.leases[w.lease] =
        lease{w.tokens, clock_type::now() + st.cfg.lease_ttl};
    ++st.in_use;
    st.max_in_use = std::max(st.max_in_use, st.in_use);
    self->send(i->second.handle, grant_atom::value, w.lease,
               static_cast<int64_t>(st.cfg.lease_ttl.count()));
    st.waiting.pop_front();
  }
}

/// Frees one lease of `c`; settles the token budget with `used` (< 0: keep
/// the estimate).
void free_lease(limiter_self* self, client& c, uint64_t id, int64_t used) {
  auto& st = self->state;
  auto i = c.leases.find(id);
  if (i == c.leases.end()) return;
  if (used >= 0) st.budget.settle(i->second.tokens, static_cast<double>(used));
  c.leases.erase(i);
  --st.in_use;
}

/// Drops a client with everything it holds or waits for.
void drop_client(limiter_self* self, const caf::actor_addr& who) {
  auto& st = self->state;
  auto i = st.clients.find(who);
  if (i == st.clients.end()) return;
  st.in_use -= i->second.leases.size();
  st.clients.erase(i);
  st.waiting.erase(std::remove_if(st.waiting.begin(), st.waiting.end(),
                                  [&](auto& w) { return w.who == who; }),
                   st.waiting.end());
}

/// Takes back leases past their deadline.
void expire(limiter_self* self) {
  auto& st = self->state;
  auto now = clock_type::now();
  for (auto& [addr, c] : st.clients)
    for (auto i = c.leases.begin(); i != c.leases.end();) {
      if (i->second.deadline <= now) {
        i = c.leases.erase(i);
        --st.in_use;
        ++st.expired;
      } else {
        ++i;
      }
    }
}

caf::behavior limiter_impl(limiter_self* self, limiter_config cfg) {
  auto& st = self->state;
  cfg.max_concurrency = std::max<std::size_t>(cfg.max_concurrency, 1);
  cfg.lease_ttl = std::max(cfg.lease_ttl, std::chrono::milliseconds{30});
  st.cfg = cfg;
  st.budget = detail::rate_budget{static_cast<double>(cfg.requests_per_minute),
                                  static_cast<double>(cfg.tokens_per_minute)};
  self->set_down_handler([=](caf::down_msg& msg) {
    // A client ended, or the connection to its node dropped.
    drop_client(self, msg.source);
    pump(self);
  });
  // Deadlines are checked a few times per TTL.
  auto period = std::max(cfg.lease_ttl / 4, std::chrono::milliseconds{10});
  self->delayed_send(self, period, expiry_atom::value);
  return {
      [=](acquire_atom, uint64_t id, int64_t tokens) {
        auto c = sender_client(self);
        if (!c) return;
        auto& st = self->state;
        st.waiting.push_back(
            waiter{c->handle.address(), id,
                   static_cast<double>(std::max<int64_t>(tokens, 0))});
        pump(self);
      },
      [=](release_atom, uint64_t id, int64_t used) {
        auto c = sender_client(self);
        if (!c) return;
        auto& st = self->state;
        if (c->leases.count(id) != 0) {
          free_lease(self, *c, id, used);
        } else {
          auto addr = c->handle.address();
          auto i =
              std::find_if(st.waiting.begin(), st.waiting.end(), [&](auto& w) {
                return w.who == addr && w.lease == id;
              });
          if (i != st.waiting.end()) st.waiting.erase(i);
        }
        pump(self);
      },
      [=](renew_atom) -> std::tuple<uint64_t, int64_t> {
        auto& st = self->state;
        auto c = sender_client(self);
        auto ttl = static_cast<int64_t>(st.cfg.lease_ttl.count());
        if (!c) return {0, ttl};
        auto deadline = clock_type::now() + st.cfg.lease_ttl;
        for (auto& [id, l] : c->leases)
          l.deadline = deadline;
        return {static_cast<uint64_t>(c->leases.size()), ttl};
      },
      [=](stats_atom) {
        auto& st = self->state;
        return std::make_tuple(static_cast<uint64_t>(st.in_use),
                               static_cast<uint64_t>(st.max_in_use),
                               static_cast<uint64_t>(st.waiting.size()),
                               static_cast<uint64_t>(st.clients.size()),
                               st.expired);
      },
      [=](tick_atom) {
        self->state.tick_scheduled = false;
        pump(self);
      },
      [=](expiry_atom) {
        expire(self);
        pump(self);
        self->delayed_send(self, period, expiry_atom::value);
      },
  };
}

} // namespace

caf::actor spawn_limiter(caf::actor_system& sys, limiter_config cfg) {
  return sys.spawn(limiter_impl, cfg);
}

bool parse_host_port(const std::string& address, std::string& host,
                     uint16_t& port) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos || colon + 1 >= address.size()) return false;
  host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  auto digits = address.substr(colon + 1);
  if (digits.size() > 5 ||
      digits.find_first_not_of("0123456789") != std::string::npos)
    return false;
  auto n = std::stoul(digits);
  if (n > 65535) return false;
  port = static_cast<uint16_t>(n);
  return !host.empty();
}

caf::expected<uint16_t> publish_limiter(caf::actor_system& sys,
                                        const caf::actor& limiter,
                                        const std::string& address) {
  std::string host;
  uint16_t port = 0;
  if (!parse_host_port(address, host, port))
    return caf::make_error(caf::sec::invalid_argument,
                           "bad cluster address (want HOST:PORT): " + address);
  if (!sys.has_middleman())
    return caf::make_error(caf::sec::invalid_argument,
                           "the actor system has no middleman (see "
                           "maritaca::configure_cluster)");
  // Reuse the address: a restarted limiter must get its port back at once.
  return sys.middleman().publish(limiter, port, host.c_str(), true);
}

void configure_cluster(caf::actor_system_config& cfg) {
  cfg.load<caf::io::middleman>();
  // Heartbeats keep idle links visibly alive (and find dead ones).
  cfg.set("middleman.heartbeat-interval",
          caf::timespan{std::chrono::seconds{1}});
}

} // namespace maritaca
