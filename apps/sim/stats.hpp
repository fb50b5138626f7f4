#pragma once

/// @file
/// Counters of the simulator, shared by all connections. Lock-free: every
/// field is an atomic, so counting never serializes the hot path.

#include <atomic>
#include <cstdint>
#include <string>

namespace maritaca::sim {

/// What `GET /sim/stats` reports.
struct stats {
  /// Chat requests seen (whatever their outcome).
  std::atomic<int64_t> requests{0};
  /// TCP connections accepted.
  std::atomic<int64_t> connections{0};
  /// Chat requests being answered right now.
  std::atomic<int64_t> in_flight{0};
  /// Highest `in_flight` seen since the start or the last reset.
  std::atomic<int64_t> max_in_flight{0};

  /// Counts a chat request and marks it in flight.
  void begin_request() noexcept {
    requests.fetch_add(1, std::memory_order_relaxed);
    auto now = in_flight.fetch_add(1, std::memory_order_relaxed) + 1;
    // Raise the maximum unless another thread already raised it further.
    auto seen = max_in_flight.load(std::memory_order_relaxed);
    while (seen < now && !max_in_flight.compare_exchange_weak(
                             seen, now, std::memory_order_relaxed))
      ; // `seen` was reloaded by the failed exchange
  }

  /// Marks a chat request as answered (or abandoned).
  void end_request() noexcept {
    in_flight.fetch_sub(1, std::memory_order_relaxed);
  }

  /// Zeroes `requests` and `connections`; `max_in_flight` restarts from
  /// the current `in_flight`.
  void reset() noexcept {
    requests.store(0, std::memory_order_relaxed);
    connections.store(0, std::memory_order_relaxed);
    max_in_flight.store(in_flight.load(std::memory_order_relaxed),
                        std::memory_order_relaxed);
  }

  /// Renders the counters as the JSON body of `GET /sim/stats`.
  std::string to_json() const {
    return "{\"requests\":" +
           std::to_string(requests.load(std::memory_order_relaxed)) +
           ",\"connections\":" +
           std::to_string(connections.load(std::memory_order_relaxed)) +
           ",\"in_flight\":" +
           std::to_string(in_flight.load(std::memory_order_relaxed)) +
           ",\"max_in_flight\":" +
           std::to_string(max_in_flight.load(std::memory_order_relaxed)) + "}";
  }
};

/// Holds one chat request in flight; ends it exactly once, when reset or
/// destroyed (whichever comes first), however the exchange ends.
class flight_guard {
public:
  /// Begins a request on `s`.
  explicit flight_guard(stats& s) noexcept : stats_(&s) { s.begin_request(); }

  flight_guard(const flight_guard&) = delete;
  flight_guard& operator=(const flight_guard&) = delete;

  ~flight_guard() {
    if (stats_ != nullptr) stats_->end_request();
  }

private:
  stats* stats_;
};

} // namespace maritaca::sim
