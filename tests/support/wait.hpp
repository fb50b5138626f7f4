#pragma once

/// @file
/// Test support: waiting for a condition, bounded. Plain C++.

#include <chrono>
#include <thread>

namespace maritaca::test {

/// Polls `pred` every `poll` until it holds or `bound` passes (a bound
/// against hangs, not a timed assertion); returns whether it held.
template <class Pred>
bool eventually(Pred pred,
                std::chrono::milliseconds bound = std::chrono::seconds{5},
                std::chrono::milliseconds poll = std::chrono::milliseconds{5}) {
  auto until = std::chrono::steady_clock::now() + bound;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= until) return pred();
    std::this_thread::sleep_for(poll);
  }
  return true;
}

} // namespace maritaca::test
