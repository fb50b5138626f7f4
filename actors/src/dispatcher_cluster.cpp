/// @file
/// The dispatcher's side of a cluster: its lease link to the shared
/// limiter (docs/cluster.md) -- joining, renewing, losing and re-joining it,
/// and the leases asks run on.

#include "dispatcher_state.hpp"

#include <caf/io/middleman.hpp>

#include <algorithm>
#include <set>

namespace maritaca::detail {

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
  auto want = std::min(st.queue.size(), room);
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

namespace {

/// Starts with `limiter` (monitored: its down message is the link's loss).
void handshake(dispatcher_self* self, caf::actor limiter) {
  auto& cl = self->state.cluster;
  cl.limiter = std::move(limiter);
  self->monitor(cl.limiter);
  renew(self, true);
}

} // namespace

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

} // namespace maritaca::detail
