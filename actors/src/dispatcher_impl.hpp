#pragma once

// The dispatcher's whole interface: the public one (dispatcher_actor) and
// the messages only its own request actors, timers and cluster link send.
// Private to actors/src.

#include "maritaca/dispatcher.hpp"

#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <cstdint>

namespace maritaca::detail {

/// `dispatcher_actor` and the dispatcher's own messages:
/// - `(settle_atom, id, tokens)`: a request actor ended ask `id` (tokens
///   used or -1) and is free again;
/// - `(tick_atom)`: the rate buckets may admit again;
/// - `(expire_atom, generation)`: the deadline sweep;
/// - `(grant_atom, lease, budget)`, `(join_atom)`, `(renew_atom, epoch)`:
///   the cluster limiter's lease link.
using dispatcher_impl = dispatcher_actor::extend<
    caf::reacts_to<settle_atom, uint64_t, int64_t>, caf::reacts_to<tick_atom>,
    caf::reacts_to<expire_atom, uint64_t>,
    caf::reacts_to<grant_atom, uint64_t, int64_t>, caf::reacts_to<join_atom>,
    caf::reacts_to<renew_atom, uint64_t>>;

} // namespace maritaca::detail
