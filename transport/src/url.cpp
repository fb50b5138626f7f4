/// @file
/// URLs, proxies and header values as the HTTP client reads them (see
/// url.hpp): no sockets here.

#include "url.hpp"

#include "maritaca/transport/http_client.hpp"

#include <boost/beast/core/string.hpp>

#include <cctype>

namespace maritaca::transport {

namespace beast = boost::beast;

namespace {

char lower(char c) noexcept {
  return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
}

/// Standard base64 of `in` (RFC 4648, with padding).
std::string base64(std::string_view in) {
  static constexpr char digits[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  for (std::size_t i = 0; i < in.size(); i += 3) {
    auto n = in.size() - i;
    uint32_t v = static_cast<uint8_t>(in[i]) << 16;
    if (n > 1) v |= static_cast<uint8_t>(in[i + 1]) << 8;
    if (n > 2) v |= static_cast<uint8_t>(in[i + 2]);
    out += digits[(v >> 18) & 63];
    out += digits[(v >> 12) & 63];
    out += n > 1 ? digits[(v >> 6) & 63] : '=';
    out += n > 2 ? digits[v & 63] : '=';
  }
  return out;
}

/// `%XX` escapes of a URL's user info decoded; false on a bad escape.
bool percent_decode(std::string_view in, std::string& out) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  out.clear();
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    if (i + 2 >= in.size() || hex(in[i + 1]) < 0 || hex(in[i + 2]) < 0)
      return false;
    out += static_cast<char>(hex(in[i + 1]) * 16 + hex(in[i + 2]));
    i += 2;
  }
  return true;
}

} // namespace

namespace detail {

bool is_token(std::string_view s) noexcept {
  if (s.empty()) return false;
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u)) continue;
    if (std::string_view{"!#$%&'*+-.^_`|~"}.find(c) == std::string_view::npos)
      return false;
  }
  return true;
}

bool is_safe_value(std::string_view s) noexcept {
  return s.find_first_of(std::string_view{"\r\n\0", 3}) ==
         std::string_view::npos;
}

failure parse_proxy(std::string_view url, proxy_endpoint& out) {
  auto bad = [](std::string why) {
    return make_failure(errc::invalid_argument, "proxy: " + std::move(why));
  };
  constexpr std::string_view scheme = "http://";
  if (url.substr(0, scheme.size()) != scheme)
    return bad("only http:// proxies are supported");
  url.remove_prefix(scheme.size());
  if (auto at = url.rfind('@'); at != std::string_view::npos) {
    std::string decoded;
    if (!percent_decode(url.substr(0, at), decoded) || !is_safe_value(decoded))
      return bad("malformed user info");
    out.authorization = "Basic " + base64(decoded);
    url.remove_prefix(at + 1);
  }
  if (!url.empty() && url.back() == '/') url.remove_suffix(1);
  // What is left is an authority: parse it as the origin of a URL.
  url_parts parts;
  if (url.empty() || url.find_first_of("/?#") != std::string_view::npos ||
      parse_url("http://" + std::string{url} + "/", parts))
    return bad("malformed host or port");
  out.host = std::move(parts.host);
  out.port = parts.port;
  return {};
}

std::vector<std::string> normalize_no_proxy(std::vector<std::string> entries) {
  std::vector<std::string> out;
  for (auto& e : entries) {
    for (auto& c : e)
      c = lower(c);
    if (!e.empty() && e.front() == '.') e.erase(0, 1);
    if (!e.empty()) out.push_back(std::move(e));
  }
  return out;
}

bool bypasses_proxy(std::string_view host,
                    const std::vector<std::string>& no_proxy) {
  for (auto& e : no_proxy) {
    if (e == "*" || host == e) return true;
    if (host.size() > e.size() && host.ends_with(e) &&
        host[host.size() - e.size() - 1] == '.')
      return true;
  }
  return false;
}

} // namespace detail

std::string_view find_header(const header_list& fields,
                             std::string_view name) noexcept {
  for (auto& field : fields)
    if (beast::iequals(field.name, name)) return field.value;
  return {};
}

std::string redact_userinfo(std::string_view url) {
  auto sep = url.find("://");
  auto start = sep == std::string_view::npos ? 0 : sep + 3;
  auto end = url.find_first_of("/?#", start);
  auto at = url.substr(0, end).rfind('@');
  if (at == std::string_view::npos || at < start) return std::string{url};
  return std::string{url.substr(0, start)} + "***" +
         std::string{url.substr(at)};
}

failure parse_url(std::string_view url, url_parts& out) {
  auto bad = [url](std::string_view why) {
    // User info may hold a password: it is never shown.
    auto shown = redact_userinfo(url.substr(0, 200));
    for (auto& c : shown)
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
    return make_failure(errc::invalid_argument,
                        "invalid URL '" + shown + "': " + std::string{why});
  };
  auto sep = url.find("://");
  if (sep == std::string_view::npos) return bad("not an absolute URL");
  std::string scheme;
  for (char c : url.substr(0, sep))
    scheme += lower(c);
  if (scheme != "http" && scheme != "https")
    return bad("scheme must be http or https");
  auto rest = url.substr(sep + 3);
  auto authority_end = rest.find_first_of("/?#");
  auto authority = rest.substr(0, authority_end);
  auto target = authority_end == std::string_view::npos
                    ? std::string_view{}
                    : rest.substr(authority_end);
  if (auto hash = target.find('#'); hash != std::string_view::npos)
    target = target.substr(0, hash);
  if (authority.find('@') != std::string_view::npos)
    return bad("user info (user:password@) is not supported");
  std::string_view host;
  std::string_view port_text;
  bool has_port = false;
  if (!authority.empty() && authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos)
      return bad("unterminated IPv6 literal");
    host = authority.substr(1, close - 1);
    auto after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad("junk after IPv6 literal");
      has_port = true;
      port_text = after.substr(1);
    }
    for (char c : host)
      if (!std::isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.')
        return bad("invalid IPv6 literal");
    if (host.find(':') == std::string_view::npos)
      return bad("invalid IPv6 literal");
  } else {
    auto colon = authority.find(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) {
      has_port = true;
      port_text = authority.substr(colon + 1);
    }
    for (char c : host)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' &&
          c != '.' && c != '_')
        return bad("invalid host name");
  }
  if (host.empty()) return bad("missing host");
  uint16_t port = scheme == "https" ? 443 : 80;
  if (has_port && !port_text.empty()) {
    if (port_text.size() > 5) return bad("invalid port");
    unsigned value = 0;
    for (char c : port_text) {
      if (!std::isdigit(static_cast<unsigned char>(c)))
        return bad("invalid port");
      value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value == 0 || value > 65535) return bad("invalid port");
    port = static_cast<uint16_t>(value);
  }
  for (char c : target)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f)
      return bad("invalid character in path");
  out.scheme = std::move(scheme);
  out.host.clear();
  for (char c : host)
    out.host += lower(c);
  out.port = port;
  if (target.empty())
    out.target = "/";
  else if (target.front() == '?')
    out.target = "/" + std::string{target};
  else
    out.target = std::string{target};
  return {};
}

} // namespace maritaca::transport
