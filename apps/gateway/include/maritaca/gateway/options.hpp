#pragma once

/// @file
/// Command-line options of maritaca-gateway. Plain C++.

#include "maritaca/gateway/http.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace maritaca::gateway {

/// Everything the gateway can be told on its command line (and through
/// MARITACA_API_KEY, MARITACA_GATEWAY_TOKENS).
struct options {
  /// Listening address, limits and client timeouts.
  server_options server;
  /// Upstream base URL.
  std::string upstream = "https://chat.maritaca.ai/api";
  /// Upstream API key (from --api-key-file or MARITACA_API_KEY).
  std::string api_key;
  /// Model of /ask, /stream and sessions.
  std::string model = "sabia-4";
  /// Bearer tokens clients must present.
  std::vector<std::string> tokens;
  /// Upstream requests at once.
  std::size_t max_concurrency = 16;
  /// Asks waiting for a slot before new ones get 503.
  std::size_t max_queue = 10'000;
  /// Retries of a failed upstream attempt.
  uint32_t max_retries = 2;
  /// Deadline of one whole upstream attempt.
  std::chrono::milliseconds upstream_timeout{600'000};
  /// Longest wait between two pieces of an upstream answer.
  std::chrono::milliseconds upstream_idle_timeout{30'000};
  /// Extra trusted CA file (PEM) for the upstream.
  std::string ca_file;
  /// Request header fields passed to the upstream (tests).
  std::vector<std::string> forward_headers;
  /// Chat sessions at once.
  std::size_t max_sessions = 1000;
  /// Idle lifetime of a session.
  std::chrono::seconds session_ttl{1800};
  /// One log line per request on stderr.
  bool access_log = false;
  /// On SIGTERM/SIGINT: how long answers in progress may take to finish
  /// before the gateway ends them.
  std::chrono::milliseconds drain_timeout{10'000};
  /// Publish the cluster limiter on this address (empty: none).
  std::string cluster_listen;
  /// Join the cluster limiter at this address (empty: none).
  std::string cluster_join;
  /// Requests at once in the whole cluster (`--cluster-listen` only; 0:
  /// `max_concurrency`).
  std::size_t cluster_concurrency = 0;
  /// Upstream requests at once while the limiter is unreachable.
  std::size_t cluster_fallback = 1;
  /// Lease time-to-live of the published limiter.
  std::chrono::milliseconds cluster_lease_ttl{10'000};
};

/// Outcome of `parse_options`.
enum class parse_result {
  /// Run with the parsed options.
  run,
  /// `--help`: print `usage()` and exit 0.
  help,
  /// A bad flag or file: print `error` and exit 2.
  error,
};

/// Parses `argv` and the environment (`env` looks a variable up; pass
/// `std::getenv`). On `parse_result::error`, `error` says what is wrong.
parse_result parse_options(int argc, const char* const* argv,
                           const char* (*env)(const char*), options& out,
                           std::string& error);

/// Returns the text `--help` prints.
std::string usage();

} // namespace maritaca::gateway
