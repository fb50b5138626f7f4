#pragma once

// Deadlines of actors without pinning them: CAF 0.17's clock holds a
// strong reference to the receiver of a delayed message until the message
// is due, answered or not, and offers no way to cancel it. A delayed
// message for a deadline 15 minutes away would keep an actor that ended
// long before (its whole state, e.g. a shut-down model's dispatcher) in
// memory for those 15 minutes. So deadlines are watched in hops of at most
// `max_timer_hop`: an ended actor is gone within a hop.

#include <caf/send.hpp>

#include <algorithm>
#include <chrono>

namespace maritaca::detail {

/// The longest a delayed message to self may wait (see above).
inline constexpr std::chrono::milliseconds max_timer_hop{1'000};

/// Sends `xs...` to `self` at `when`, or after `max_timer_hop` if that
/// comes first: the handler of the message then calls `due` and, if the
/// deadline has not come, `hop_toward` again.
template <class Self, class... Ts>
void hop_toward(Self* self, std::chrono::steady_clock::time_point when,
                Ts&&... xs) {
  auto wait = std::chrono::duration_cast<std::chrono::microseconds>(
      when - std::chrono::steady_clock::now());
  wait = std::clamp(wait, std::chrono::microseconds{0},
                    std::chrono::microseconds{max_timer_hop});
  self->delayed_send(self, wait, std::forward<Ts>(xs)...);
}

/// Whether `when` has come.
inline bool due(std::chrono::steady_clock::time_point when) {
  return std::chrono::steady_clock::now() >= when;
}

} // namespace maritaca::detail
