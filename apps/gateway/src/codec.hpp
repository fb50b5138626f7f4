#pragma once

/// @file
/// Internal: the gateway's own JSON bodies (the /ask and /sessions requests)
/// and the mapping of failures to HTTP errors. Plain C++.

#include "maritaca/failure.hpp"
#include "maritaca/gateway/http.hpp"

#include <cstdint>
#include <string>
#include <string_view>

namespace maritaca::gateway::detail {

/// Reads `{"text": "..."}` (other members are ignored). Returns what is
/// wrong, or "" when `text` was read.
std::string parse_text_body(std::string_view body, std::string& text);

/// Reads the optional `{"system": "...", "max_history_tokens": N}` of
/// `POST /sessions` (an empty body is fine). Returns what is wrong, or "".
std::string parse_session_body(std::string_view body, std::string& system,
                               int64_t& max_history_tokens);

/// Makes `{"answer": "..."}`.
std::string answer_json(std::string_view answer);

/// An HTTP error made from a failure.
struct http_error {
  /// HTTP status.
  int status = 500;
  /// OpenAI error type, e.g. "rate_limit_error".
  std::string type;
  /// Code, e.g. "rate_limited".
  std::string code;
  /// Human-readable message.
  std::string message;
  /// Wait the client should honour, or -1.
  int64_t retry_after_ms = -1;
};

/// Maps a failure of an upstream ask: an upstream HTTP error keeps its
/// status, but for the upstream refusing the gateway's key (401/403),
/// which becomes 502 `upstream_auth_failed`; timeouts become 504,
/// connection and protocol failures 502, a full queue 503.
http_error map_failure(const failure& f);

/// Makes the response of `e`: an OpenAI-style JSON body, plus `Retry-After`
/// (seconds, rounded up) and `retry-after-ms` when a wait is known.
response to_response(const http_error& e);

/// Returns the OpenAI error type of `status`.
std::string_view error_type(int status) noexcept;

} // namespace maritaca::gateway::detail
