#pragma once

/// @file
/// The gateway's counters and histograms, rendered in the Prometheus text
/// exposition format. Plain C++ (no Beast, no CAF); every member function is
/// thread-safe.

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

namespace maritaca::gateway {

/// A histogram with fixed bucket bounds in seconds.
class histogram {
public:
  /// Upper bounds of the buckets (the `+Inf` bucket is implicit).
  static constexpr std::array<double, 12> bounds = {
      0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0};

  /// Records one observation of `seconds`.
  void observe(double seconds);

  /// Appends the histogram as Prometheus text (HELP, TYPE, buckets, sum,
  /// count) under `name`.
  void render(std::string& out, std::string_view name,
              std::string_view help) const;

private:
  mutable std::mutex mtx_;
  std::array<uint64_t, bounds.size() + 1> counts_{};
  double sum_ = 0;
  uint64_t count_ = 0;
};

/// Figures of the upstream side, read from the dispatcher when rendering.
struct upstream_figures {
  /// Upstream requests on the wire now.
  std::size_t in_flight = 0;
  /// Asks waiting for a slot now.
  std::size_t queued = 0;
  /// Asks refused because the queue was full, so far.
  uint64_t rejected = 0;
  /// The concurrency limit.
  std::size_t max_concurrency = 0;
  /// Cluster admission: "none", "joining", "joined" or "fallback".
  std::string cluster = "none";
  /// Leases held from the cluster limiter now.
  std::size_t cluster_leases = 0;
  /// Times the cluster limiter was lost so far.
  uint64_t cluster_losses = 0;
};

/// Every metric of the gateway.
class metrics {
public:
  /// An HTTP request arrived (it is in flight until `request_finished`).
  void request_started() noexcept;

  /// An HTTP request of `route` ended with `status` (499: the client left
  /// before an answer).
  void request_finished(std::string_view route, int status);

  /// An upstream ask took `seconds` from sending to its end.
  void observe_upstream_latency(double seconds) { latency_.observe(seconds); }

  /// The first chunk of a streamed ask arrived `seconds` after sending.
  void observe_first_token(double seconds) { first_token_.observe(seconds); }

  /// Adds token counts reported by the upstream.
  void add_tokens(int64_t in, int64_t out) noexcept;

  /// An upstream ask failed with code `code` (e.g. "rate_limited").
  void upstream_error(std::string_view code);

  /// A client went away before its answer was complete.
  void client_disconnected() noexcept;

  /// Sets the number of open chat sessions.
  void set_sessions(std::size_t n) noexcept;

  /// Returns the number of HTTP requests in flight.
  int64_t in_flight() const noexcept;

  /// Renders everything as Prometheus text.
  std::string render(const upstream_figures& up) const;

private:
  std::atomic<int64_t> in_flight_{0};
  std::atomic<int64_t> tokens_in_{0};
  std::atomic<int64_t> tokens_out_{0};
  std::atomic<int64_t> disconnects_{0};
  std::atomic<int64_t> sessions_{0};
  mutable std::mutex mtx_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  std::map<std::string, uint64_t> errors_;
  histogram latency_;
  histogram first_token_;
};

} // namespace maritaca::gateway
