/// @file
/// The request-framing rules of the servers under apps/.

#include "maritaca/apps/http_guard.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/field.hpp>

#include <algorithm>

namespace maritaca::apps {

namespace beast = boost::beast;
namespace http = boost::beast::http;

std::size_t read_room(const beast::flat_buffer& buffer) noexcept {
  auto room = buffer.max_size() - std::min(buffer.max_size(), buffer.size());
  return std::min<std::size_t>(room, 4096);
}

namespace {

/// `s` without leading and trailing blanks.
std::string_view trim(std::string_view s) {
  auto b = s.find_first_not_of(" \t");
  if (b == std::string_view::npos) return {};
  auto e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

} // namespace

std::optional<refusal> check_framing(const http::fields& head, unsigned version,
                                     bool chunked) {
  auto codings = head.count(http::field::transfer_encoding);
  if (codings == 0) return std::nullopt;
  if (version < 11)
    return refusal{400, "Transfer-Encoding is not allowed in HTTP/1.0"};
  // Only `chunked` alone frames a request body we can read: any other
  // coding before it (or none at the end) leaves the length unknown.
  auto value = head[http::field::transfer_encoding];
  if (codings > 1 || !chunked ||
      !beast::iequals(trim({value.data(), value.size()}), "chunked"))
    return refusal{400, "unsupported Transfer-Encoding (only 'chunked')"};
  if (head.count(http::field::content_length) > 0)
    return refusal{400, "Transfer-Encoding and Content-Length together"};
  return std::nullopt;
}

bool is_http_syntax_error(const boost::system::error_code& ec) {
  static const auto& category =
      http::make_error_code(http::error::bad_version).category();
  return ec.category() == category && ec != http::error::end_of_stream &&
         ec != http::error::partial_message && ec != http::error::need_more;
}

std::optional<refusal> refusal_for(const boost::system::error_code& ec,
                                   std::size_t max_body_bytes) {
  if (ec == http::error::body_limit)
    return refusal{413, "request body too large (limit " +
                            std::to_string(max_body_bytes) + " bytes)"};
  if (ec == http::error::header_limit)
    return refusal{431, "request header fields too large"};
  if (ec == http::error::buffer_overflow)
    return refusal{400, "chunk header or trailer too large"};
  if (is_http_syntax_error(ec))
    return refusal{400, "malformed request: " + ec.message()};
  return std::nullopt;
}

} // namespace maritaca::apps
