#pragma once

// URLs, proxies and header values as the HTTP client reads them: the parts
// of http_client.cpp that need no socket. Private to transport/src; the
// public parse_url, redact_userinfo and find_header are declared in
// http_client.hpp.

#include "maritaca/failure.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace maritaca::transport::detail {

/// RFC 9110 token characters (header names, methods).
bool is_token(std::string_view s) noexcept;

/// Whether `s` holds no CR, LF or NUL (safe in a header value).
bool is_safe_value(std::string_view s) noexcept;

/// Where the proxy of `client_config::proxy` listens.
struct proxy_endpoint {
  std::string host;
  uint16_t port = 80;
  /// `Proxy-Authorization` value ("Basic ..."), empty without credentials.
  std::string authorization;
};

/// Parses `http://[user:password@]host[:port][/]` into `out`. The failure
/// never repeats the user info.
failure parse_proxy(std::string_view url, proxy_endpoint& out);

/// Returns `no_proxy` (see client_config) as `bypasses_proxy` reads it:
/// lower case, without a leading dot, without empty entries.
std::vector<std::string> normalize_no_proxy(std::vector<std::string> entries);

/// Whether `host` (lower case, as parse_url leaves it) is reached directly
/// per `no_proxy` (normalized by normalize_no_proxy): "*", the host itself
/// or a domain it is in.
bool bypasses_proxy(std::string_view host,
                    const std::vector<std::string>& no_proxy);

} // namespace maritaca::transport::detail
