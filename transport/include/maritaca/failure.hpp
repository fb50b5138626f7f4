#pragma once

/// @file
/// Typed failures of the client. CAF-free: the transport produces them, the
/// actor layer turns them into `caf::error`s of the category `maritaca`
/// (see maritaca/error.hpp).

#include <cstdint>
#include <string>
#include <string_view>

namespace maritaca {

/// What went wrong. The numeric values are stable (they travel inside
/// `caf::error` codes).
enum class errc : uint8_t {
  /// No error.
  none = 0,
  /// An HTTP status without a more specific code below.
  http_status,
  /// 400 or 422: the service rejected the request.
  bad_request,
  /// 401: missing or wrong API key.
  unauthorized,
  /// 403: the key may not do this.
  forbidden,
  /// 404: unknown model or endpoint.
  not_found,
  /// 429: rate limited (see `failure::retry_after_ms`).
  rate_limited,
  /// 5xx: the service failed.
  server_error,
  /// A deadline passed (see `failure::which`).
  timeout,
  /// No TCP connection could be made (resolve or connect).
  connect_failed,
  /// The TLS handshake or certificate verification failed.
  tls_failed,
  /// The connection broke after it was made.
  connection_lost,
  /// Malformed HTTP, SSE or JSON from the server, or a body over its bound.
  protocol_error,
  /// The caller, a subscriber or shutdown cancelled the request.
  cancelled,
  /// The dispatcher's queue is full.
  overloaded,
  /// The caller passed something invalid (bad URL, CR/LF in a header, ...).
  invalid_argument,
  /// An agent reached its step limit while the model still called tools.
  step_limit,
};

/// Which deadline a `timeout` hit.
enum class deadline : uint8_t {
  /// Not a timeout.
  none = 0,
  /// Establishing TCP (and TLS).
  connect,
  /// Waiting for the response head after the request was sent.
  first_byte,
  /// Waiting between two reads of the response body.
  idle,
  /// The whole exchange.
  total,
  /// Waiting in the dispatcher's queue.
  queue,
};

/// Returns the name of `x`, e.g. "rate_limited".
std::string_view to_string(errc x) noexcept;

/// Returns the name of `x`, e.g. "first_byte".
std::string_view to_string(deadline x) noexcept;

/// A typed failure with what a caller needs to react to it.
struct failure {
  /// What went wrong.
  errc code = errc::none;
  /// HTTP status, when the server answered (0 otherwise).
  int status = 0;
  /// Human-readable description (never contains the API key).
  std::string message;
  /// Server-suggested wait before a retry in ms, or -1 when none was given.
  int64_t retry_after_ms = -1;
  /// For `errc::timeout`: the deadline that passed.
  maritaca::deadline which = deadline::none;
  /// Whether any response byte had arrived before the failure.
  bool response_started = false;
  /// The server's `x-should-retry` header: 1 true, 0 false, -1 absent.
  int8_t should_retry = -1;

  /// Returns whether this holds an error.
  explicit operator bool() const noexcept { return code != errc::none; }

  /// Renders `code: message` plus status / deadline / retry-after details.
  std::string describe() const;

  friend bool operator==(const failure&, const failure&) = default;
};

/// Renders `x` as `describe()` does: how CAF prints a failure (so
/// `caf::to_string` of a `maritaca` error shows its content).
std::string to_string(const failure& x);

/// Maps an HTTP status to its code (400/422 bad_request, 401 unauthorized,
/// 403 forbidden, 404 not_found, 429 rate_limited, >= 500 server_error,
/// else http_status).
errc errc_from_status(int status) noexcept;

/// Makes a failure with `code` and `message`.
inline failure make_failure(errc code, std::string message) {
  failure result;
  result.code = code;
  result.message = std::move(message);
  return result;
}

/// Makes a `timeout` failure for deadline `which`.
failure make_timeout(deadline which, std::string message);

/// Replaces every occurrence of `secret` in `text` by "[redacted]".
/// Secrets shorter than 6 bytes are left alone: they would match ordinary
/// words. For texts from a server, which may echo what it was sent (some
/// proxies repeat the request's Authorization header in their errors).
void redact(std::string& text, std::string_view secret);

} // namespace maritaca
