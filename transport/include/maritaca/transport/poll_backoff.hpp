#pragma once

/// @file
/// When a thread that is out of work polls for a while before it blocks:
/// shared by the HTTP client's I/O threads and the scheduler of a model's
/// own actor system (docs/performance.md, "latency at one connection").

#include <algorithm>
#include <cstdint>

namespace maritaca::transport {

/// Decides, each time a thread runs out of work, whether it polls before
/// it blocks. Polling pays when the next piece of work comes within the
/// poll (a request/response ping-pong between threads); when work comes
/// less often than that (a slow stream, a trickle of messages), every poll
/// is CPU spent for nothing. So a thread polls again at once after a poll
/// that found work, and after polls that found nothing only every 2nd,
/// 4th, ... up to every `max_skip + 1`th time it runs out of work.
class poll_backoff {
public:
  /// The most times in a row the thread blocks without polling.
  static constexpr uint32_t max_skip = 64;

  /// The thread ran out of work: whether to poll before blocking. After
  /// `true`, report the outcome with `found` or `missed` (or nothing, when
  /// the poll ended for another reason than finding work or running out of
  /// time).
  bool should_poll() noexcept {
    if (skip_ == 0) return true;
    --skip_;
    return false;
  }

  /// The poll found work.
  void found() noexcept { backoff_ = 0; }

  /// The poll found nothing: the next `1, 2, 4, ... max_skip` times the
  /// thread runs out of work, it blocks at once.
  void missed() noexcept {
    backoff_ = backoff_ == 0 ? 1 : std::min(backoff_ * 2, max_skip);
    skip_ = backoff_;
  }

private:
  /// Times to block without polling after the latest miss.
  uint32_t backoff_ = 0;
  /// Times left to block without polling.
  uint32_t skip_ = 0;
};

} // namespace maritaca::transport
