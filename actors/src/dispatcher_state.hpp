#pragma once

// The dispatcher's state and the steps its handlers share (dispatcher.cpp:
// admission, queue, deadlines, the behaviour; dispatcher_cluster.cpp: the
// lease link to a cluster limiter). Private to actors/src.

#include "bucket.hpp"
#include "dispatcher_impl.hpp"
#include "lane_queue.hpp"

#include "maritaca/error.hpp"
#include "maritaca/messages.hpp"

#include <caf/actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <chrono>
#include <cstdint>
#include <iostream>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace maritaca::detail {

using clock_type = std::chrono::steady_clock;

/// No deadline.
inline constexpr auto never = clock_type::time_point::max();

/// An ask waiting for a slot.
struct pending {
  maritaca::ask ask;
  caf::typed_response_promise<ai_message> rp;
  /// End of the whole ask (`ask_options::timeout`).
  clock_type::time_point deadline = never;
  /// End of its wait in the queue (`limits::max_queue_wait`).
  clock_type::time_point queue_deadline = never;
};

/// The id of a queued ask (for the lane queue).
struct pending_id {
  uint64_t operator()(const pending& p) const noexcept { return p.ask.id; }
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
  /// Queued asks: FIFO in a lane, lanes take turns.
  detail::lane_queue<pending, pending_id> queue;
  /// Running ask id -> its request actor.
  std::unordered_map<uint64_t, running> active;
  /// Every request actor of this dispatcher -> the id of the ask it runs
  /// (0: idle). Monitored: a down message frees a slot whose actor died.
  std::unordered_map<caf::actor_addr, uint64_t> by_worker;
  /// Request actors waiting for their next ask (at most max_concurrency).
  std::vector<caf::actor> idle;
  /// The local rate limits (`limits::requests_per_minute`, ...).
  detail::rate_budget budget;
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
    queue.for_each([&](pending& p) { fail_pending(p, err); });
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

/// Sends `xs` to the (dynamically typed) limiter `to` under the
/// dispatcher's identity, so that the limiter knows its client.
template <class... Ts>
void tell(dispatcher_self* self, const caf::actor& to, Ts&&... xs) {
  caf::send_as(caf::actor_cast<caf::actor>(self), to, std::forward<Ts>(xs)...);
}

/// Admits queued asks while slots, the rate budget and (joined) leases
/// allow.
void pump(dispatcher_self* self);

// -- the cluster link (dispatcher_cluster.cpp) --------------------------------

/// Requests on the wire allowed at once now: the local limit, cut to the
/// fallback limit while the shared limiter is unreachable (and to nothing
/// before the first attempt to join it has ended).
std::size_t capacity(dispatcher_self* self);

/// Asks the limiter for as many leases as queued asks could use now.
void request_leases(dispatcher_self* self, double estimate);

/// Gives leases that no queued ask needs back to the limiter.
void release_spare(dispatcher_self* self);

/// The link to the limiter failed (`why`): forget its leases, admit on the
/// fallback limit and try again later.
void fail_link(dispatcher_self* self, const std::string& why);

/// Renews the leases (and checks that the limiter answers) once; with
/// `handshake`, the first answer makes the link joined.
void renew(dispatcher_self* self, bool handshake);

/// Connects to the limiter (a joiner through the middleman, asynchronously).
void join(dispatcher_self* self);

} // namespace maritaca::detail
