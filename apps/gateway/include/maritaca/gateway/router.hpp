#pragma once

/// @file
/// Routing, bearer-token checks and request metrics in front of handlers.
/// Plain C++ (no Beast, no CAF): a `router` is itself a `handler` for
/// `http_server`, and users add their own routes next to the gateway's.

#include "maritaca/gateway/http.hpp"
#include "maritaca/gateway/metrics.hpp"

#include <array>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace maritaca::gateway {

/// A set of accepted bearer tokens. Only SHA-256 digests are kept, and a
/// check compares the digest of the presented token with every digest in
/// constant time (no early exit, no length leak).
class token_set {
public:
  /// Accepts `tokens` (empty strings are ignored).
  explicit token_set(const std::vector<std::string>& tokens = {});

  /// Returns whether no token is configured (then nothing is checked).
  bool empty() const noexcept { return digests_.empty(); }

  /// Returns the number of tokens.
  std::size_t size() const noexcept { return digests_.size(); }

  /// Returns whether `authorization` (a header value) is
  /// `Bearer <token>` (scheme in any case) with a known token.
  bool check(std::string_view authorization) const;

private:
  std::vector<std::array<unsigned char, 32>> digests_;
};

/// Per-route settings.
struct route_options {
  /// Skip the token check (e.g. /healthz).
  bool public_route = false;
};

/// Dispatches requests by method and path pattern. Patterns are paths whose
/// segments may be `{name}` (one non-empty segment, see `request::param`).
/// Unknown paths get 404 and known paths with another method 405, both as
/// OpenAI-style JSON errors. Set up before serving; then read-only and safe
/// to use from many threads.
class router {
public:
  /// Adds a route. Earlier routes win when several match.
  void add(std::string method, std::string pattern, handler h,
           route_options opts = {});

  /// Requires `Authorization: Bearer <token>` from `tokens` on every
  /// non-public route (401 otherwise). Null or empty: no check.
  void set_tokens(std::shared_ptr<const token_set> tokens);

  /// Returns the token set (may be null).
  const std::shared_ptr<const token_set>& tokens() const noexcept {
    return tokens_;
  }

  /// Counts requests by route and status into `m`.
  void set_metrics(std::shared_ptr<gateway::metrics> m);

  /// Returns the metrics (may be null).
  const std::shared_ptr<gateway::metrics>& metrics() const noexcept {
    return metrics_;
  }

  /// Logs one line per request (method, path, status, milliseconds) to
  /// stderr; never headers, query or bodies.
  void set_access_log(bool on) noexcept { access_log_ = on; }

  /// Routes `req`. HEAD requests go to GET routes (the server sends the
  /// answer without its body).
  void handle(request req, std::shared_ptr<responder> res) const;

  /// The answer `handle` would give `req` without running a route (404,
  /// 405, 401 for a missing token), or nullopt: for `http_server`'s head
  /// check, so that such requests are answered before their body is read.
  /// Counts and logs the answer it returns.
  std::optional<response> check_head(const request& req) const;

  /// Returns a handler calling `r->handle` (keeps `r` alive).
  static handler as_handler(std::shared_ptr<const router> r);

  /// Returns a head check calling `r->check_head` (keeps `r` alive).
  static head_check as_head_check(std::shared_ptr<const router> r);

private:
  struct route {
    std::string method;
    std::vector<std::string> segments;
    std::string pattern;
    handler fn;
    route_options opts;
  };

  /// What a request's method and path select.
  struct match_result {
    /// The route, or null.
    const route* found = nullptr;
    /// Its `{name}` values.
    std::vector<std::pair<std::string, std::string>> params;
    /// Methods of routes with this path but another method ("" if none).
    std::string allow;
    /// The metrics label (bounded: the route pattern or "unmatched").
    std::string label;
  };

  match_result match(const request& req) const;

  /// The 404, 405 or 401 of a request, or nullopt when its route runs.
  std::optional<response> refusal(const request& req,
                                  const match_result& m) const;

  /// Counts and logs an answer given without a responder.
  void record(const std::string& label, const request& req, int status,
              std::chrono::steady_clock::time_point start) const;

  std::vector<route> routes_;
  std::shared_ptr<const token_set> tokens_;
  std::shared_ptr<gateway::metrics> metrics_;
  bool access_log_ = false;
};

/// Writes one access-log line to stderr: method, path, status,
/// milliseconds since `start`, and `note` in parentheses when not empty.
void log_line(std::string_view method, std::string_view path, int status,
              std::chrono::steady_clock::time_point start,
              std::string_view note);

/// Makes an OpenAI-style error body `{"error":{"message","type","code"}}`.
std::string error_json(std::string_view message, std::string_view type,
                       std::string_view code);

/// Makes an error response with an OpenAI-style body.
response error_response(int status, std::string_view message,
                        std::string_view type, std::string_view code);

} // namespace maritaca::gateway
