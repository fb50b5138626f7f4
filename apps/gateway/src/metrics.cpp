/// @file
/// Prometheus text rendering of the gateway's metrics.

#include "maritaca/gateway/metrics.hpp"

#include <cstdio>

namespace maritaca::gateway {

namespace {

std::string format_double(double x) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.6g", x);
  return buf;
}

/// Escapes a label value as the exposition format requires.
std::string escape_label(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

void header(std::string& out, std::string_view name, std::string_view help,
            std::string_view type) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n");
  out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

void sample(std::string& out, std::string_view name, std::string_view value) {
  out.append(name).append(" ").append(value).append("\n");
}

} // namespace

// -- histogram
// ------------------------------------------------------------------

void histogram::observe(double seconds) {
  std::lock_guard<std::mutex> guard{mtx_};
  std::size_t i = 0;
  while (i < bounds.size() && seconds > bounds[i])
    ++i;
  ++counts_[i];
  sum_ += seconds;
  ++count_;
}

void histogram::render(std::string& out, std::string_view name,
                       std::string_view help) const {
  std::lock_guard<std::mutex> guard{mtx_};
  header(out, name, help, "histogram");
  // Buckets are cumulative.
  uint64_t acc = 0;
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    acc += counts_[i];
    out.append(name).append("_bucket{le=\"").append(format_double(bounds[i]));
    out.append("\"} ").append(std::to_string(acc)).append("\n");
  }
  acc += counts_[bounds.size()];
  out.append(name).append("_bucket{le=\"+Inf\"} ");
  out.append(std::to_string(acc)).append("\n");
  out.append(name).append("_sum ").append(format_double(sum_)).append("\n");
  out.append(name).append("_count ").append(std::to_string(count_));
  out.append("\n");
}

// -- metrics
// --------------------------------------------------------------------

void metrics::request_started() noexcept {
  in_flight_.fetch_add(1, std::memory_order_relaxed);
}

void metrics::request_finished(std::string_view route, int status) {
  in_flight_.fetch_sub(1, std::memory_order_relaxed);
  std::lock_guard<std::mutex> guard{mtx_};
  ++requests_[{std::string{route}, status}];
}

void metrics::add_tokens(int64_t in, int64_t out) noexcept {
  tokens_in_.fetch_add(in, std::memory_order_relaxed);
  tokens_out_.fetch_add(out, std::memory_order_relaxed);
}

void metrics::upstream_error(std::string_view code) {
  std::lock_guard<std::mutex> guard{mtx_};
  ++errors_[std::string{code}];
}

void metrics::client_disconnected() noexcept {
  disconnects_.fetch_add(1, std::memory_order_relaxed);
}

void metrics::set_sessions(std::size_t n) noexcept {
  sessions_.store(static_cast<int64_t>(n), std::memory_order_relaxed);
}

int64_t metrics::in_flight() const noexcept {
  return in_flight_.load(std::memory_order_relaxed);
}

std::string metrics::render(const upstream_figures& up) const {
  std::string out;
  out.reserve(4096);
  {
    std::lock_guard<std::mutex> guard{mtx_};
    header(out, "maritaca_gateway_requests_total",
           "HTTP requests answered, by route and status.", "counter");
    for (auto& [key, n] : requests_) {
      out.append("maritaca_gateway_requests_total{route=\"");
      out.append(escape_label(key.first)).append("\",status=\"");
      out.append(std::to_string(key.second)).append("\"} ");
      out.append(std::to_string(n)).append("\n");
    }
    header(out, "maritaca_gateway_upstream_errors_total",
           "Upstream asks that failed, by error code.", "counter");
    for (auto& [code, n] : errors_) {
      out.append("maritaca_gateway_upstream_errors_total{code=\"");
      out.append(escape_label(code)).append("\"} ");
      out.append(std::to_string(n)).append("\n");
    }
  }
  header(out, "maritaca_gateway_requests_in_flight",
         "HTTP requests being answered now.", "gauge");
  sample(out, "maritaca_gateway_requests_in_flight",
         std::to_string(in_flight_.load()));
  header(out, "maritaca_gateway_upstream_in_flight",
         "Upstream requests on the wire now.", "gauge");
  sample(out, "maritaca_gateway_upstream_in_flight",
         std::to_string(up.in_flight));
  header(out, "maritaca_gateway_upstream_queued",
         "Asks waiting for an upstream slot now.", "gauge");
  sample(out, "maritaca_gateway_upstream_queued", std::to_string(up.queued));
  header(out, "maritaca_gateway_upstream_max_concurrency",
         "Upstream requests allowed at once.", "gauge");
  sample(out, "maritaca_gateway_upstream_max_concurrency",
         std::to_string(up.max_concurrency));
  header(out, "maritaca_gateway_upstream_rejected_total",
         "Asks refused because the queue was full.", "counter");
  sample(out, "maritaca_gateway_upstream_rejected_total",
         std::to_string(up.rejected));
  if (up.cluster != "none") {
    // Cluster admission (docs/cluster.md): 1 in exactly one state.
    header(out, "maritaca_gateway_cluster_state",
           "Cluster admission: joined (shared limit), fallback (local "
           "limit, limiter unreachable) or joining.",
           "gauge");
    for (auto state : {"joining", "joined", "fallback"})
      out.append("maritaca_gateway_cluster_state{state=\"")
          .append(state)
          .append("\"} ")
          .append(up.cluster == state ? "1\n" : "0\n");
    header(out, "maritaca_gateway_cluster_leases",
           "Leases held from the cluster limiter now.", "gauge");
    sample(out, "maritaca_gateway_cluster_leases",
           std::to_string(up.cluster_leases));
    header(out, "maritaca_gateway_cluster_losses_total",
           "Times the cluster limiter was lost.", "counter");
    sample(out, "maritaca_gateway_cluster_losses_total",
           std::to_string(up.cluster_losses));
  }
  latency_.render(out, "maritaca_gateway_upstream_latency_seconds",
                  "Time from sending an ask (queueing included) to its "
                  "end.");
  first_token_.render(out, "maritaca_gateway_time_to_first_token_seconds",
                      "Time from sending a streamed ask to its first "
                      "chunk.");
  header(out, "maritaca_gateway_tokens_in_total",
         "Prompt tokens reported by the upstream.", "counter");
  sample(out, "maritaca_gateway_tokens_in_total",
         std::to_string(tokens_in_.load()));
  header(out, "maritaca_gateway_tokens_out_total",
         "Completion tokens reported by the upstream.", "counter");
  sample(out, "maritaca_gateway_tokens_out_total",
         std::to_string(tokens_out_.load()));
  header(out, "maritaca_gateway_client_disconnects_total",
         "Clients that left before their answer was complete.", "counter");
  sample(out, "maritaca_gateway_client_disconnects_total",
         std::to_string(disconnects_.load()));
  header(out, "maritaca_gateway_sessions", "Open chat sessions.", "gauge");
  sample(out, "maritaca_gateway_sessions", std::to_string(sessions_.load()));
  return out;
}

} // namespace maritaca::gateway
