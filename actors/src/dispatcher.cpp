#include "maritaca/dispatcher.hpp"

#include "deadline_timer.hpp"
#include "dispatcher_state.hpp"
#include "request.hpp"

#include "maritaca/transport/wire.hpp"

#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/exit_reason.hpp>
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

namespace detail {

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

void pump(dispatcher_self* self) {
  auto& st = self->state;
  auto& cl = st.cluster;
  while (!st.queue.empty() && st.active.size() < capacity(self)) {
    auto estimate = estimate_tokens(st.queue.front().ask);
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
    // Round robin: the lane goes last.
    auto p = st.queue.pop();
    st.stats.queued = st.queue.size();
    admit(self, std::move(p), estimate, lease);
  }
  if (cl.joined() && st.queue.empty()) release_spare(self);
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
  auto p = st.queue.remove(id);
  if (!p) return false;
  dispatcher_state::fail_pending(*p, make_error(std::move(why)));
  st.stats.queued = st.queue.size();
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
  st.queue.remove_if([&](pending& p) {
    failure why;
    if (p.deadline <= now)
      why = ask_deadline_failure();
    else if (p.queue_deadline <= now)
      why = make_timeout(deadline::queue,
                         "no slot became free within the queue bound");
    else
      return false;
    ++st.stats.timed_out;
    dispatcher_state::fail_pending(p, make_error(std::move(why)));
    return true;
  });
  st.queue.for_each([&](pending& p) {
    next = std::min({next, p.deadline, p.queue_deadline});
  });
  st.stats.queued = st.queue.size();
  arm_sweep(self, next);
}

} // namespace detail

using namespace detail;

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
          if (st.queue.size() >= st.admission.max_queue) {
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
          if (st.queue.empty()) {
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
          st.queue.push(lane, std::move(p));
          st.stats.queued = st.queue.size();
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
