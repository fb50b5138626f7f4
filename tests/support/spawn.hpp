#pragma once

/// @file
/// Test support: spawning function-based actors without tripping UBSan.
/// CAF 0.17 dereferences a null argument tuple when an actor is spawned
/// without arguments (harmless in practice, but UndefinedBehaviorSanitizer
/// stops the test); `spawn_fn` passes the function itself as the argument.

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>

#include <utility>

namespace maritaca::test {

/// Spawns an event-based actor running `f(self)` (which returns its
/// behavior, or nothing).
template <class F>
caf::actor spawn_fn(caf::actor_system& sys, F f) {
  return sys.spawn(
      [](caf::event_based_actor* self, F fun) { return fun(self); },
      std::move(f));
}

/// Spawns an event-based actor from `self`, like `spawn_fn`.
template <class Self, class F>
caf::actor spawn_fn(Self* self, F f) {
  return self->spawn([](caf::event_based_actor* me, F fun) { return fun(me); },
                     std::move(f));
}

} // namespace maritaca::test
