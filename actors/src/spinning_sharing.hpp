#pragma once

/// A CAF scheduler policy for the actor system a model makes for itself:
/// CAF's work sharing (one queue, workers block on a condition variable),
/// except that a worker that runs out of jobs looks at the queue again for
/// a short while before it blocks. The reply to an ask usually arrives from
/// the I/O thread within tens of microseconds; a worker still looking finds
/// it without a futex wake-up and two context switches
/// (docs/performance.md, "latency at one connection"). A worker whose
/// polls keep finding nothing polls rarely (`transport::poll_backoff`).

#include "maritaca/transport/poll_backoff.hpp"

#include <caf/policy/work_sharing.hpp>
#include <caf/resumable.hpp>
#include <caf/scheduler/coordinator.hpp>

#include <chrono>
#include <mutex>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace maritaca::detail {

/// Work sharing whose idle workers poll for `spin` before they block.
class spinning_sharing : public caf::policy::work_sharing {
public:
  /// The shared queue of work sharing, plus how long an idle worker polls.
  struct coordinator_data : work_sharing::coordinator_data {
    using work_sharing::coordinator_data::coordinator_data;
    /// 0: block at once (plain work sharing).
    std::chrono::nanoseconds spin{0};
  };

  /// Per worker: whether its polls have been paying off.
  struct worker_data : work_sharing::worker_data {
    using work_sharing::worker_data::worker_data;
    transport::poll_backoff backoff;
  };

  /// Takes the next job; when there is none, polls the queue for up to
  /// `spin` (unless recent polls found nothing) before blocking.
  template <class Worker>
  caf::resumable* dequeue(Worker* self) {
    auto& data = d(self->parent());
    if (data.spin.count() > 0) {
      if (auto* job = try_pop(data)) return job;
      // Out of work.
      auto& backoff = d(self).backoff;
      if (backoff.should_poll()) {
        using clock = std::chrono::steady_clock;
        auto until = clock::now() + data.spin;
        do {
          relax();
          if (auto* job = try_pop(data)) {
            backoff.found();
            return job;
          }
        } while (clock::now() < until);
        backoff.missed();
      }
    }
    return work_sharing::dequeue(self);
  }

private:
  /// The first job of the queue, if any.
  static caf::resumable* try_pop(coordinator_data& data) {
    std::lock_guard<std::mutex> guard{data.lock};
    if (data.queue.empty()) return nullptr;
    auto* job = data.queue.front();
    data.queue.pop_front();
    return job;
  }

  // A few pause instructions between two looks keep the lock free for the
  // threads that enqueue.
  static void relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    for (int i = 0; i < 16; ++i)
      _mm_pause();
#else
    std::this_thread::yield();
#endif
  }
};

/// The scheduler of a model's own actor system.
using spinning_coordinator = caf::scheduler::coordinator<spinning_sharing>;

} // namespace maritaca::detail
