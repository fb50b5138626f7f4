#include "maritaca/dispatcher.hpp"

#include "bucket.hpp"
#include "deadline_timer.hpp"

#include "maritaca/error.hpp"
#include "maritaca/transport/wire.hpp"
#include "request.hpp"

#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/exit_reason.hpp>
#include <caf/io/middleman.hpp>
#include <caf/send.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <algorithm>
#include <chrono>
#include <deque>
#include <iostream>
#include <set>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace maritaca {

namespace {

using clock_type = std::chrono::steady_clock;

using detail::rate_budget;

/// No deadline.
constexpr auto never = clock_type::time_point::max();

/// An ask waiting for a slot.
struct pending {
  maritaca::ask ask;
  caf::typed_response_promise<ai_message> rp;
  /// End of the whole ask (`ask_options::timeout`).
  clock_type::time_point deadline = never;
  /// End of its wait in the queue (`limits::max_queue_wait`).
  clock_type::time_point queue_deadline = never;
};

/// A running request actor.
struct running {
  caf::actor worker;
  /// End of the whole ask; `never` once the worker was told that it passed.
  clock_type::time_point deadline = never;
  /// Tokens taken from the token bucket at admission.
  double estimate = 0;
  /// The cluster lease it holds (0: none).
  uint64_t lease = 0;
  /// Whether `estimate` is the usage the server reported.
  bool settled = false;
};

/// The dispatcher's side of a cluster: its link to the shared limiter.
struct cluster_link {
  cluster_config cfg;
  /// Where the limiter is published (joiners).
  std::string host;
  uint16_t port = 0;
  /// The limiter while joined (or during the handshake); null otherwise.
  caf::actor limiter;
  /// A limiter of this process, given at spawn (never re-joined).
  caf::actor local;
  cluster_status status = cluster_status::none;
  /// Bumped whenever the link fails, so that late answers of an old link
  /// are ignored.
  uint64_t epoch = 0;
  /// Last lease id used (ids are never reused).
  uint64_t next_lease = 0;
  /// Acquires sent and not yet granted.
  std::unordered_set<uint64_t> asked;
  /// Leases granted but not bound to an ask yet.
  std::vector<uint64_t> spare;
  /// Renew the leases this often (a third of the limiter's TTL).
  std::chrono::milliseconds renew_every{1'000};

  bool joined() const noexcept { return status == cluster_status::joined; }

  /// Says `what` on stderr when logging is on.
  void log(const std::string& what) const {
    if (cfg.log) std::clog << "maritaca: cluster: " << what << std::endl;
  }

  /// The limiter's address for messages.
  std::string where() const {
    return local ? std::string{"in this process"} : "at " + cfg.join;
  }
};

struct dispatcher_state {
  transport::transport_actor wire;
  maritaca::endpoint where;
  maritaca::limits admission;
  /// Queued asks per lane; `ready` lists the lanes with queued asks in the
  /// order they take turns.
  std::unordered_map<uint64_t, std::deque<pending>> lanes;
  std::deque<uint64_t> ready;
  /// Queued ask id -> lane (for cancel).
  std::unordered_map<uint64_t, uint64_t> queued_lane;
  std::size_t queued = 0;
  /// Running ask id -> its request actor.
  std::unordered_map<uint64_t, running> active;
  /// Every request actor of this dispatcher -> the id of the ask it runs
  /// (0: idle). Monitored: a down message frees a slot whose actor died.
  std::unordered_map<caf::actor_addr, uint64_t> by_worker;
  /// Request actors waiting for their next ask (at most max_concurrency).
  std::vector<caf::actor> idle;
  /// The local rate limits (`limits::requests_per_minute`, ...).
  rate_budget budget;
  bool tick_scheduled = false;
  /// When the armed deadline sweep fires (`never`: none armed) and the
  /// generation of that timer (older timers are ignored).
  clock_type::time_point sweep_at = never;
  uint64_t sweep_generation = 0;
  dispatcher_stats stats;
  cluster_link cluster;

  /// On exit every queued ask gets `cancelled`, and every request actor an
  /// exit message (a running one cancels its exchange and answers with
  /// `cancelled`). Runs on the actor's own thread.
  ~dispatcher_state() {
    for (auto& [id, r] : active)
      caf::anon_send_exit(r.worker, caf::exit_reason::user_shutdown);
    for (auto& worker : idle)
      caf::anon_send_exit(worker, caf::exit_reason::user_shutdown);
    auto err = make_error(errc::cancelled, "the dispatcher shut down");
    for (auto& [lane, q] : lanes)
      for (auto& p : q)
        fail_pending(p, err);
  }

  /// Ends the queued ask `p` with `err` (its subscribers too).
  static void fail_pending(pending& p, const caf::error& err) {
    for (auto& s : p.ask.subscribers)
      caf::anon_send(s, stream_failed{p.ask.id, err});
    p.rp.deliver(err);
  }

  static inline const char* name = "maritaca.dispatcher";
};

using dispatcher_self =
    caf::stateful_actor<dispatcher_state, detail::dispatcher_impl::base>;

/// Estimates the tokens of an ask before it runs: ~4 bytes per token of
/// prompt, plus the answer bound.
double estimate_tokens(const ask& x) {
  std::size_t bytes = 0;
  for (auto& m : x.body.messages) {
    bytes += m.text().size();
    for (auto& p : m.parts)
      bytes += p.text.size();
  }
  return static_cast<double>(bytes / 4 + 1) +
         static_cast<double>(x.body.max_tokens.value_or(256));
}

/// Sends `xs` to the (dynamically typed) limiter `to` under the
/// dispatcher's identity, so that the limiter knows its client.
template <class... Ts>
void tell(dispatcher_self* self, const caf::actor& to, Ts&&... xs) {
  caf::send_as(caf::actor_cast<caf::actor>(self), to, std::forward<Ts>(xs)...);
}

void pump(dispatcher_self* self);

void admit(dispatcher_self* self, pending&& p, double estimate,
           uint64_t lease) {
  auto& st = self->state;
  request_job job;
  job.kind = request_kind::chat;
  job.ask = std::move(p.ask);
  job.where = st.where;
  job.wire = st.wire;
  // The actor reports back when the ask ended (`settle_atom`).
  job.owner = caf::actor_cast<detail::dispatcher_impl>(self);
  auto id = job.ask.id;
  caf::actor worker;
  if (!st.idle.empty()) {
    worker = std::move(st.idle.back());
    st.idle.pop_back();
  } else {
    worker = spawn_request(self->system());
    // Monitored, not linked: a request actor that dies takes nothing else
    // down, and its down message frees its slot. When the dispatcher goes,
    // its state's destructor stops them all.
    self->monitor(worker);
  }
  st.by_worker[worker.address()] = id;
  st.active.emplace(id, running{worker, p.deadline, estimate, lease, false});
  ++st.stats.admitted;
  st.stats.in_flight = st.active.size();
  st.stats.max_in_flight = std::max(st.stats.max_in_flight, st.active.size());
  // The worker answers the original requester directly.
  p.rp.delegate(worker, run_atom::value, std::move(job));
}

/// The running ask `id` ended: give its lease back and free its slot. Its
/// request actor goes back to the idle ones when `reuse` is set.
void finish_active(dispatcher_self* self, uint64_t id, bool reuse) {
  auto& st = self->state;
  auto j = st.active.find(id);
  if (j == st.active.end()) return;
  auto& r = j->second;
  if (r.lease != 0 && st.cluster.joined()) {
    auto used = r.settled ? static_cast<int64_t>(r.estimate) : int64_t{-1};
    tell(self, st.cluster.limiter, release_atom::value, r.lease, used);
  }
  if (reuse) {
    st.by_worker[r.worker.address()] = 0;
    if (st.idle.size() < st.admission.max_concurrency)
      st.idle.push_back(std::move(r.worker));
    else
      caf::anon_send_exit(r.worker, caf::exit_reason::user_shutdown);
  }
  st.active.erase(j);
  ++st.stats.completed;
  st.stats.in_flight = st.active.size();
  pump(self);
}

// -- cluster admission
// ----------------------------------------------------------

/// Requests on the wire allowed at once now: the local limit, cut to the
/// fallback limit while the shared limiter is unreachable (and to nothing
/// before the first attempt to join it has ended).
std::size_t capacity(dispatcher_self* self) {
  auto& st = self->state;
  auto max = st.admission.max_concurrency;
  switch (st.cluster.status) {
  case cluster_status::joining:
    return 0;
  case cluster_status::fallback:
    return std::min(
        max, std::max<std::size_t>(st.cluster.cfg.fallback_concurrency, 1));
  default:
    return max;
  }
}

/// Asks the limiter for as many leases as queued asks could use now.
void request_leases(dispatcher_self* self, double estimate) {
  auto& st = self->state;
  auto& cl = st.cluster;
  auto room = capacity(self) - std::min(capacity(self), st.active.size());
  auto want = std::min(st.queued, room);
  while (cl.asked.size() + cl.spare.size() < want) {
    auto id = ++cl.next_lease;
    cl.asked.insert(id);
    tell(self, cl.limiter, acquire_atom::value, id,
         static_cast<int64_t>(estimate));
  }
}

/// Gives leases that no queued ask needs back to the limiter.
void release_spare(dispatcher_self* self) {
  auto& cl = self->state.cluster;
  for (auto id : cl.spare)
    tell(self, cl.limiter, release_atom::value, id, int64_t{0});
  cl.spare.clear();
}

void join(dispatcher_self* self);

/// The link to the limiter failed (`why`): forget its leases, admit on the
/// fallback limit and try again later.
void fail_link(dispatcher_self* self, const std::string& why) {
  auto& st = self->state;
  auto& cl = st.cluster;
  auto was = cl.status;
  ++cl.epoch;
  if (cl.limiter) self->demonitor(cl.limiter);
  cl.limiter = nullptr;
  cl.asked.clear();
  cl.spare.clear();
  // Running asks keep running; their leases died with the link.
  for (auto& [id, r] : st.active)
    r.lease = 0;
  cl.status = cluster_status::fallback;
  auto limit = std::to_string(capacity(self));
  if (was == cluster_status::joined) {
    ++st.stats.cluster_losses;
    cl.log("lost the limiter " + cl.where() + " (" + why +
           "); admitting at most " + limit +
           " at once on the local limit until it is back");
  } else if (was == cluster_status::joining) {
    cl.log("cannot join the limiter " + cl.where() + " (" + why +
           "); admitting at most " + limit +
           " at once on the local limit until it is reachable");
  }
  // A limiter of this process only goes away with it: no re-join.
  if (!cl.local)
    self->delayed_send(self, cl.cfg.rejoin_interval, join_atom::value);
  pump(self);
}

/// Renews the leases (and checks that the limiter answers) once.
void renew(dispatcher_self* self, bool handshake) {
  auto& cl = self->state.cluster;
  auto epoch = cl.epoch;
  self->request(cl.limiter, cl.cfg.join_timeout, renew_atom::value)
      .then(
          [=](uint64_t, int64_t ttl_ms) {
            auto& cl = self->state.cluster;
            if (epoch != cl.epoch) return;
            cl.renew_every = std::max(std::chrono::milliseconds{ttl_ms / 3},
                                      std::chrono::milliseconds{10});
            if (handshake) {
              auto was = cl.status;
              cl.status = cluster_status::joined;
              cl.log((was == cluster_status::fallback ? "re-joined the limiter "
                                                      : "joined the limiter ") +
                     cl.where());
              pump(self);
            }
            // The tick carries the epoch: a tick of an old link is dropped,
            // so each link has exactly one renewal cycle.
            self->delayed_send(self, cl.renew_every, renew_atom::value, epoch);
          },
          [=](caf::error& err) {
            if (epoch == self->state.cluster.epoch)
              fail_link(self, "no answer to a renewal: " + to_string(err));
          });
}

/// Starts with `limiter` (monitored: its down message is the link's loss).
void handshake(dispatcher_self* self, caf::actor limiter) {
  auto& cl = self->state.cluster;
  cl.limiter = std::move(limiter);
  self->monitor(cl.limiter);
  renew(self, true);
}

/// Connects to the limiter (a joiner through the middleman, asynchronously).
void join(dispatcher_self* self) {
  auto& cl = self->state.cluster;
  if (cl.local) {
    handshake(self, cl.local);
    return;
  }
  if (!self->system().has_middleman()) {
    // Nothing to retry: fall back for good.
    cl.cfg.rejoin_interval = std::chrono::hours{24};
    fail_link(self, "the actor system has no middleman, see "
                    "maritaca::configure_cluster");
    return;
  }
  auto epoch = cl.epoch;
  auto mm = self->system().middleman().actor_handle();
  self->request(mm, cl.cfg.join_timeout, caf::connect_atom::value, cl.host,
                cl.port)
      .then(
          [=](caf::node_id&, caf::strong_actor_ptr& ptr,
              std::set<std::string>&) {
            if (epoch != self->state.cluster.epoch) return;
            if (!ptr) {
              fail_link(self, "no actor published there");
              return;
            }
            handshake(self, caf::actor_cast<caf::actor>(ptr));
          },
          [=](caf::error& err) {
            if (epoch == self->state.cluster.epoch)
              fail_link(self, to_string(err));
          });
}

/// Returns whether an ask of `estimate` tokens may start now without a
/// cluster lease, and takes its budget if so.
bool admissible(dispatcher_self* self, double estimate) {
  auto& st = self->state;
  if (st.cluster.status != cluster_status::none ||
      st.active.size() >= capacity(self) ||
      st.budget.wait_for(estimate).count() > 0)
    return false;
  st.budget.take(estimate);
  return true;
}

/// Admits queued asks while slots, the rate budget and (joined) leases
/// allow.
void pump(dispatcher_self* self) {
  auto& st = self->state;
  auto& cl = st.cluster;
  while (!st.ready.empty() && st.active.size() < capacity(self)) {
    auto lane = st.ready.front();
    auto& q = st.lanes[lane];
    auto estimate = estimate_tokens(q.front().ask);
    auto wait = st.budget.wait_for(estimate);
    if (wait.count() > 0) {
      if (!st.tick_scheduled) {
        st.tick_scheduled = true;
        self->delayed_send(self, wait, tick_atom::value);
      }
      return;
    }
    uint64_t lease = 0;
    if (cl.joined()) {
      // Every ask runs on a lease from the shared limiter.
      if (cl.spare.empty()) {
        request_leases(self, estimate);
        return;
      }
      lease = cl.spare.back();
      cl.spare.pop_back();
    }
    st.budget.take(estimate);
    auto p = std::move(q.front());
    q.pop_front();
    st.ready.pop_front();
    if (q.empty())
      st.lanes.erase(lane);
    else
      st.ready.push_back(lane); // round robin: the lane goes last
    st.queued_lane.erase(p.ask.id);
    --st.queued;
    st.stats.queued = st.queued;
    admit(self, std::move(p), estimate, lease);
  }
  if (cl.joined() && st.ready.empty()) release_spare(self);
}

void on_worker_down(dispatcher_self* self, const caf::down_msg& msg) {
  auto& st = self->state;
  auto i = st.by_worker.find(msg.source);
  if (i == st.by_worker.end()) {
    if (st.cluster.limiter && msg.source == st.cluster.limiter.address())
      fail_link(self, "link down: " + to_string(msg.reason));
    return;
  }
  auto id = i->second;
  st.by_worker.erase(i);
  auto k = std::find_if(st.idle.begin(), st.idle.end(), [&](auto& worker) {
    return worker.address() == msg.source;
  });
  if (k != st.idle.end()) st.idle.erase(k);
  if (id != 0) finish_active(self, id, false);
}

/// Ends a queued ask with `why`; returns whether it was queued.
bool drop_queued(dispatcher_self* self, uint64_t id, failure why) {
  auto& st = self->state;
  auto i = st.queued_lane.find(id);
  if (i == st.queued_lane.end()) return false;
  auto lane = i->second;
  st.queued_lane.erase(i);
  auto& q = st.lanes[lane];
  auto j =
      std::find_if(q.begin(), q.end(), [&](auto& p) { return p.ask.id == id; });
  if (j == q.end()) return false;
  dispatcher_state::fail_pending(*j, make_error(std::move(why)));
  q.erase(j);
  --st.queued;
  st.stats.queued = st.queued;
  if (q.empty()) {
    st.lanes.erase(lane);
    st.ready.erase(std::find(st.ready.begin(), st.ready.end(), lane));
  }
  return true;
}

/// Makes sure a deadline sweep runs at `when` or earlier. One timer serves
/// every ask: asks of one model share their timeout, so a new ask's deadline
/// is rarely earlier than the armed one and arms nothing (CAF 0.17's clock
/// wakes its thread for every timeout set).
void arm_sweep(dispatcher_self* self, clock_type::time_point when) {
  auto& st = self->state;
  if (when == never || when >= st.sweep_at) return;
  // In hops (see deadline_timer.hpp): a dispatcher that shut down is not
  // kept in memory until the deadline of its last ask.
  st.sweep_at = std::min(when, clock_type::now() + detail::max_timer_hop);
  detail::hop_toward(self, st.sweep_at, expire_atom::value,
                     ++st.sweep_generation);
}

/// Ends every ask whose deadline passed: queued ones here, running ones
/// through their request actor (which aborts the exchange). Then arms the
/// sweep for the earliest deadline left.
void sweep(dispatcher_self* self) {
  auto& st = self->state;
  st.sweep_at = never;
  auto now = clock_type::now();
  auto next = never;
  for (auto& [id, r] : st.active) {
    if (r.deadline <= now) {
      r.deadline = never;
      ++st.stats.timed_out;
      caf::anon_send(r.worker, expire_atom::value, id);
    } else {
      next = std::min(next, r.deadline);
    }
  }
  for (auto lane = st.lanes.begin(); lane != st.lanes.end();) {
    auto& q = lane->second;
    auto expired = [&](pending& p) {
      failure why;
      if (p.deadline <= now)
        why = ask_deadline_failure();
      else if (p.queue_deadline <= now)
        why = make_timeout(deadline::queue,
                           "no slot became free within the queue bound");
      else
        return false;
      ++st.stats.timed_out;
      st.queued_lane.erase(p.ask.id);
      dispatcher_state::fail_pending(p, make_error(std::move(why)));
      return true;
    };
    q.erase(std::remove_if(q.begin(), q.end(), expired), q.end());
    for (auto& p : q)
      next = std::min({next, p.deadline, p.queue_deadline});
    if (q.empty()) {
      st.ready.erase(std::find(st.ready.begin(), st.ready.end(), lane->first));
      lane = st.lanes.erase(lane);
    } else {
      ++lane;
    }
  }
  st.queued = st.queued_lane.size();
  st.stats.queued = st.queued;
  arm_sweep(self, next);
}

} // namespace

dispatcher_actor spawn_dispatcher(caf::actor_system& sys,
                                  transport::transport_actor wire,
                                  endpoint where, limits admission) {
  return spawn_dispatcher(sys, std::move(wire), std::move(where), admission,
                          caf::actor{});
}

dispatcher_actor spawn_dispatcher(caf::actor_system& sys,
                                  transport::transport_actor wire,
                                  endpoint where, limits admission,
                                  caf::actor limiter) {
  auto impl = [](dispatcher_self* self, transport::transport_actor wire,
                 endpoint where, limits admission,
                 caf::actor limiter) -> detail::dispatcher_impl::behavior_type {
    auto& st = self->state;
    st.wire = std::move(wire);
    st.where = std::move(where);
    admission.max_concurrency =
        std::max<std::size_t>(admission.max_concurrency, 1);
    st.admission = admission;
    st.budget = rate_budget{static_cast<double>(admission.requests_per_minute),
                            static_cast<double>(admission.tokens_per_minute)};
    self->set_down_handler(
        [=](caf::down_msg& msg) { on_worker_down(self, msg); });
    // Cluster: admit nothing until the first attempt to join has ended.
    auto& cl = st.cluster;
    cl.cfg = admission.cluster;
    if (limiter) {
      cl.local = std::move(limiter);
      cl.status = cluster_status::joining;
      join(self);
    } else if (!cl.cfg.join.empty()) {
      cl.status = cluster_status::joining;
      if (parse_host_port(cl.cfg.join, cl.host, cl.port)) {
        join(self);
      } else {
        cl.cfg.rejoin_interval = std::chrono::hours{24};
        fail_link(self, "bad address, want HOST:PORT");
      }
    }
    return {
        [=](ask_atom, ask& x) -> caf::typed_response_promise<ai_message> {
          auto& st = self->state;
          // Lane 0: the sender's own lane. (Read the sender first: making the
          // response promise takes it out of the current message.)
          auto lane = x.lane;
          if (lane == 0 && self->current_sender())
            lane = self->current_sender()->id() | (uint64_t{1} << 63);
          auto rp = self->make_response_promise<ai_message>();
          if (x.id == 0) x.id = next_request_id();
          // An ask refused here ends at once, for its subscribers too.
          auto refuse = [&](caf::error err) {
            for (auto& s : x.subscribers)
              caf::anon_send(s, stream_failed{x.id, err});
            rp.deliver(std::move(err));
            return rp;
          };
          if (!x.options.refused.empty())
            return refuse(make_error(errc::invalid_argument,
                                     std::move(x.options.refused)));
          // Out-of-range values and unknown roles never reach the wire.
          if (auto bad = wire::validate_request(x.body))
            return refuse(make_error(std::move(bad)));
          if (st.queued >= st.admission.max_queue) {
            ++st.stats.rejected;
            return refuse(make_error(
                errc::overloaded, "dispatcher queue full (" +
                                      std::to_string(st.admission.max_queue) +
                                      " asks waiting)"));
          }
          pending p{std::move(x), rp};
          auto now = clock_type::now();
          if (p.ask.options.timeout.count() > 0)
            p.deadline = now + p.ask.options.timeout;
          // Nobody waiting and a slot free: straight on (no lane queue).
          if (st.ready.empty()) {
            auto estimate = estimate_tokens(p.ask);
            if (admissible(self, estimate)) {
              arm_sweep(self, p.deadline);
              admit(self, std::move(p), estimate, 0);
              return rp;
            }
          }
          if (st.admission.max_queue_wait.count() > 0)
            p.queue_deadline = now + st.admission.max_queue_wait;
          arm_sweep(self, std::min(p.deadline, p.queue_deadline));
          auto& q = st.lanes[lane];
          if (q.empty()) st.ready.push_back(lane);
          st.queued_lane.emplace(p.ask.id, lane);
          q.push_back(std::move(p));
          ++st.queued;
          st.stats.queued = st.queued;
          pump(self);
          return rp;
        },
        [=](cancel_atom, uint64_t id) {
          auto& st = self->state;
          if (auto i = st.active.find(id); i != st.active.end()) {
            ++st.stats.cancelled;
            caf::anon_send(i->second.worker, cancel_atom::value, id);
            return;
          }
          if (drop_queued(
                  self, id,
                  make_failure(errc::cancelled, "cancelled by the caller")))
            ++st.stats.cancelled;
        },
        [=](models_atom)
            -> caf::typed_response_promise<std::vector<model_info>> {
          // Listing models bypasses the queue but not the transport's pool.
          auto& st = self->state;
          auto rp = self->make_response_promise<std::vector<model_info>>();
          request_job job;
          job.kind = request_kind::models;
          job.ask.id = next_request_id();
          job.where = st.where;
          job.wire = st.wire;
          // A one-off actor (no owner): it quits after its answer.
          auto worker = spawn_request(self->system());
          self->link_to(worker);
          rp.delegate(worker, run_atom::value, std::move(job));
          return rp;
        },
        [=](stats_atom) {
          auto& st = self->state;
          auto result = st.stats;
          result.request_actors = st.by_worker.size();
          result.cluster = st.cluster.status;
          result.leases = st.cluster.spare.size();
          for (auto& [id, r] : st.active)
            if (r.lease != 0) ++result.leases;
          return result;
        },
        [=](settle_atom, uint64_t id, int64_t used) {
          // A request actor ended its ask: settle the token bucket with
          // what the ask really used, then free the slot.
          auto& st = self->state;
          auto i = st.active.find(id);
          if (i == st.active.end()) return;
          if (used >= 0) {
            st.budget.settle(i->second.estimate, static_cast<double>(used));
            i->second.estimate = static_cast<double>(used);
            i->second.settled = true;
          }
          finish_active(self, id, true);
        },
        [=](expire_atom, uint64_t generation) {
          if (generation == self->state.sweep_generation) sweep(self);
        },
        [=](tick_atom) {
          self->state.tick_scheduled = false;
          pump(self);
        },
        [=](grant_atom, uint64_t lease, int64_t) {
          auto& st = self->state;
          auto& cl = st.cluster;
          if (!cl.joined() || cl.asked.erase(lease) == 0) {
            // A grant of an old link or one nobody waits for: give it back.
            if (auto& sender = self->current_sender())
              tell(self, caf::actor_cast<caf::actor>(sender),
                   release_atom::value, lease, int64_t{0});
            return;
          }
          cl.spare.push_back(lease);
          pump(self);
        },
        [=](join_atom) {
          if (self->state.cluster.status == cluster_status::fallback)
            join(self);
        },
        [=](renew_atom, uint64_t epoch) {
          auto& cl = self->state.cluster;
          if (cl.joined() && epoch == cl.epoch) renew(self, false);
        },
    };
  };
  // Holders get the public interface only.
  return caf::actor_cast<dispatcher_actor>(sys.spawn(
      impl, std::move(wire), std::move(where), admission, std::move(limiter)));
}

} // namespace maritaca
