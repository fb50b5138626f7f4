#pragma once

/// @file
/// The dispatcher: the only way to the wire. It admits at most
/// `limits::max_concurrency` requests at once (and, optionally, requests
/// and tokens per minute), queues the rest -- FIFO within a lane, lanes
/// taking turns -- refuses asks beyond `limits::max_queue` with
/// `errc::overloaded`, and frees a slot exactly once when its ask ends (its
/// request actor reports it, or dies). Request actors are kept for the next
/// ask (at most `max_concurrency` idle ones).
/// With `limits::cluster` set it also holds a lease from a shared limiter
/// (see limiter.hpp and docs/cluster.md) for every running ask. It also
/// enforces each ask's deadline (`ask_options::timeout`) with one timer for
/// all asks, so that callers need no request timeout of their own.

#include "maritaca/atoms.hpp"
#include "maritaca/limiter.hpp"
#include "maritaca/messages.hpp"
#include "maritaca/options.hpp"
#include "maritaca/transport/transport_actor.hpp"

#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <vector>

namespace maritaca {

/// The dispatcher's interface.
/// - `(ask_atom, ask)` -> `ai_message`: run an ask (streamed when it has
///   subscribers); errors have category `maritaca`.
/// - `(cancel_atom, id)`: cancel a queued or running ask; its requester gets
///   `errc::cancelled` (and subscribers `stream_failed`).
/// - `(models_atom)` -> `std::vector<model_info>`: `GET /models`.
/// - `(stats_atom)` -> `dispatcher_stats`.
/// Its own messages (a request actor's report, timers, the cluster link)
/// are a private extension of this interface (actors/src/dispatcher_impl.hpp):
/// no holder of a `dispatcher_actor` can free a slot or fake a lease.
using dispatcher_actor = caf::typed_actor<
    caf::replies_to<ask_atom, ask>::with<ai_message>,
    caf::reacts_to<cancel_atom, uint64_t>,
    caf::replies_to<models_atom>::with<std::vector<model_info>>,
    caf::replies_to<stats_atom>::with<dispatcher_stats>>;

/// Where requests go: the endpoint part of a `model_config`.
struct endpoint {
  /// API base URL.
  std::string base_url;
  /// API key (empty: no Authorization header).
  std::string api_key;
};

/// Spawns a dispatcher sending through `wire`. When the dispatcher exits,
/// queued asks get `errc::cancelled` and its request actors get an exit
/// message: running ones cancel their exchanges and reply `cancelled` as
/// well.
///
/// With `admission.cluster.join` set, the dispatcher connects to the limiter
/// published there (the actor system needs CAF's middleman, see
/// `configure_cluster`); while it cannot reach it, it admits at most
/// `cluster.fallback_concurrency` asks at once and tries to re-join.
dispatcher_actor spawn_dispatcher(caf::actor_system& sys,
                                  transport::transport_actor wire,
                                  endpoint where, limits admission);

/// Spawns a dispatcher admitting through `limiter`, a limiter of this
/// process (see `spawn_limiter`); `admission.cluster` still gives the
/// fallback limit and the timeouts.
dispatcher_actor spawn_dispatcher(caf::actor_system& sys,
                                  transport::transport_actor wire,
                                  endpoint where, limits admission,
                                  caf::actor limiter);

} // namespace maritaca

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(maritaca::endpoint)
