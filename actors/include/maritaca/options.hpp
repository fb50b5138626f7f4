#pragma once

/// @file
/// Configuration of a chat model: what to ask (model and sampling
/// parameters), where (base URL, key, TLS), and how (deadlines, retries,
/// concurrency and rate limits).

#include "maritaca/transport/http_client.hpp"
#include "maritaca/types.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace maritaca {

/// When and how a failed attempt is tried again (the openai-python rules).
struct retry_policy {
  /// Attempts after the first one.
  uint32_t max_retries = 2;
  /// First backoff; doubles per retry.
  std::chrono::milliseconds initial_backoff{500};
  /// Upper bound of a computed backoff.
  std::chrono::milliseconds max_backoff{8'000};
  /// Upper bound of a server-given wait (`retry-after-ms` / `retry-after`):
  /// a longer one is cut to this bound.
  std::chrono::milliseconds max_retry_after{60'000};
  /// Multiply computed backoffs by a random factor in [1 - jitter, 1].
  double jitter = 0.25;
  /// Retry 5xx answers (openai-python does; langchain-maritaca does not).
  bool retry_server_errors = true;

  friend bool operator==(const retry_policy&, const retry_policy&) = default;
};

/// Scale-out: one concurrency and rate budget shared by several processes
/// through a limiter actor published with CAF's middleman (see
/// docs/cluster.md). Empty `listen` and `join`: no cluster, the dispatcher
/// admits on its local limits only.
struct cluster_config {
  /// Publish a limiter on this address ("HOST:PORT", "[::1]:PORT"; port 0
  /// picks a free one) and admit through it; empty: none.
  std::string listen;
  /// Join the limiter published at this address ("HOST:PORT"); empty: none.
  /// Ignored when `listen` is set.
  std::string join;
  /// Requests on the wire at once in the whole cluster (the published
  /// limiter's budget; `listen` only).
  std::size_t global_concurrency = 16;
  /// Requests per minute in the whole cluster; 0 means unlimited (`listen`
  /// only).
  uint32_t global_requests_per_minute = 0;
  /// Tokens per minute in the whole cluster; 0 means unlimited (`listen`
  /// only).
  uint64_t global_tokens_per_minute = 0;
  /// A lease not renewed for this long is taken back by the limiter
  /// (`listen` only; joiners renew at a third of the limiter's TTL).
  std::chrono::milliseconds lease_ttl{10'000};
  /// Concurrency of this process while the shared limiter is unreachable.
  std::size_t fallback_concurrency = 1;
  /// Upper bound of connecting to the limiter and of each of its answers;
  /// beyond it the limiter counts as lost.
  std::chrono::milliseconds join_timeout{2'000};
  /// Pause between attempts to re-join a lost limiter.
  std::chrono::milliseconds rejoin_interval{1'000};
  /// Say on stderr when the limiter is joined, lost and re-joined.
  bool log = true;

  /// Returns whether a limiter is published or joined.
  bool enabled() const noexcept { return !listen.empty() || !join.empty(); }

  friend bool operator==(const cluster_config&,
                         const cluster_config&) = default;
};

/// The dispatcher's admission limits. Maritaca's limits are per key, so one
/// dispatcher per key is the natural setup.
struct limits {
  /// Requests on the wire at once.
  std::size_t max_concurrency = 16;
  /// Asks waiting for a slot before new ones are refused (`overloaded`).
  std::size_t max_queue = 10'000;
  /// Longest wait for a slot; an ask still queued then ends with
  /// `errc::timeout` / `deadline::queue`. 0 means no bound (the caller's
  /// `ask_timeout` still applies).
  std::chrono::milliseconds max_queue_wait{0};
  /// Requests per minute; 0 means unlimited.
  uint32_t requests_per_minute = 0;
  /// Input+output tokens per minute; 0 means unlimited. Admission uses an
  /// estimate (prompt bytes / 4 + max_tokens) and settles with the usage the
  /// server reports.
  uint64_t tokens_per_minute = 0;
  /// Limits shared with other processes (none by default). The local limits
  /// above still hold for this process.
  cluster_config cluster;

  friend bool operator==(const limits&, const limits&) = default;
};

/// The default bound of one whole ask (`model_config::ask_timeout`).
inline constexpr std::chrono::milliseconds default_ask_timeout{15 * 60'000};

/// Everything a chat model needs.
struct model_config {
  // -- what to ask ------------------------------------------------------------

  /// Model name.
  std::string model = default_model;
  /// Sampling temperature.
  std::optional<double> temperature;
  /// Nucleus sampling.
  std::optional<double> top_p;
  /// Upper bound of answer tokens.
  std::optional<int64_t> max_tokens;
  /// Stop sequences.
  std::vector<std::string> stop;
  /// Penalty on frequent tokens.
  std::optional<double> frequency_penalty;
  /// Penalty on present tokens.
  std::optional<double> presence_penalty;
  /// Tools bound to every ask.
  std::vector<tool_spec> tools;
  /// Tool choice for every ask.
  std::optional<maritaca::tool_choice> tool_choice;
  /// Output format for every ask.
  std::optional<maritaca::response_format> response_format;

  // -- where ------------------------------------------------------------------

  /// API base URL (env `MARITACA_API_BASE`).
  std::string base_url = default_base_url;
  /// API key (env `MARITACA_API_KEY`); sent as `Authorization: Bearer`.
  std::string api_key;
  /// Extra header fields of every ask (see `chat_model::with_config`).
  transport::header_list extra_headers;
  /// Extra trusted CA file (PEM).
  std::string ca_file;
  /// Verify the server's certificate and host name.
  bool verify_peer = true;
  /// I/O threads of the HTTP client.
  std::size_t io_threads = 1;
  /// Scheduler threads of the actor system a model makes for itself (the
  /// `chat_model(model_config)` constructor; a model on the caller's system
  /// uses that system's). 0: one per core. One is the default: the model's
  /// actors only pass messages between the caller and the I/O threads, and
  /// one worker runs a whole chain of them without waking another thread.
  std::size_t scheduler_threads = 1;
  /// How long an idle scheduler worker of the model's own actor system
  /// keeps looking at its queue before it blocks (the `chat_model(
  /// model_config)` constructor): the answer of the I/O thread then finds
  /// the worker awake instead of waking it. Costs up to this much CPU after
  /// each burst of work; after polls that found nothing, a worker polls
  /// only now and then (transport::poll_backoff). 0: CAF's work sharing as
  /// is.
  std::chrono::microseconds scheduler_idle_spin{100};
  /// How long an idle I/O thread keeps polling before it blocks, while at
  /// most one exchange per I/O thread runs (transport::client_config::
  /// idle_spin), backing off like the workers. 0: block at once.
  std::chrono::microseconds io_idle_spin{50};
  /// HTTP proxy, `http://[user:password@]host[:port]` (env `HTTPS_PROXY`
  /// in `from_env`); empty: direct. Connections are tunneled with
  /// `CONNECT`, so TLS stays end to end (see transport::client_config).
  std::string proxy;
  /// Hosts reached without the proxy (env `NO_PROXY`, comma-separated): a
  /// name matches itself and its subdomains, `*` every host.
  std::vector<std::string> no_proxy;

  // -- how --------------------------------------------------------------------

  /// Deadlines of each attempt.
  transport::timeouts timeouts;
  /// Retries.
  retry_policy retry;
  /// Admission limits.
  maritaca::limits limits;
  /// Streams: chunks a subscriber may have unprocessed before the request
  /// stops reading the socket (credit-based back-pressure).
  uint32_t stream_window = 256;
  /// Upper bound of one whole ask, queueing and retries included. The
  /// dispatcher enforces it for every ask (`ask_options::timeout`): the ask
  /// ends with `errc::timeout`, `deadline::total`, its exchange aborted.
  /// The library's requests to session actors carry it as their CAF
  /// request timeout, and agent and chain runs derive their deadlines from
  /// it (tool calls have their own, `agent_config::tool_timeout`).
  std::chrono::milliseconds ask_timeout = default_ask_timeout;

  /// Returns the defaults with `MARITACA_API_KEY` and `MARITACA_API_BASE`
  /// applied.
  static model_config from_env();

  /// Returns a copy with the model name `name`.
  model_config with_model(std::string name) const {
    auto result = *this;
    result.model = std::move(name);
    return result;
  }

  /// Returns a copy sending to `url` (e.g. the embedded simulator's
  /// `maritaca::sim::server::start()`).
  model_config with_base_url(std::string url) const {
    auto result = *this;
    result.base_url = std::move(url);
    return result;
  }
};

/// Returns the chat completions URL for `base_url` (appends
/// "/chat/completions", avoiding a double slash).
std::string completions_url(const std::string& base_url);

/// Returns the models URL for `base_url`.
std::string models_url(const std::string& base_url);

} // namespace maritaca
