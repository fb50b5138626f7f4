#pragma once

/// @file
/// The request-framing rules every HTTP server under apps/ enforces before
/// it serves a request: bounded read buffers, RFC 9112 message framing, and
/// the answer to each way a request head or body can be unreadable.
/// Include it from Beast-side code only.
///
/// Why the read buffer needs a bound of its own: Boost 1.81's parser keeps
/// a chunk-size line, its extensions and the trailer in the read buffer
/// until their line ends, applying neither the header nor the body limit
/// there. A peer that never ends such a line would grow the buffer without
/// limit; with a bounded buffer the read fails with
/// `http::error::buffer_overflow` instead.

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/fields.hpp>
#include <boost/system/error_code.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace maritaca::apps {

/// Bytes a connection's read buffer may hold beyond its head limit: room
/// for a chunk-size line (with extensions) or a trailer, and the start of a
/// pipelined request.
inline constexpr std::size_t read_slack_bytes = 4096;

/// Returns the bound of a server connection's read buffer when request
/// heads may have `max_header_bytes`.
constexpr std::size_t read_buffer_limit(std::size_t max_header_bytes) {
  return max_header_bytes + read_slack_bytes;
}

/// Returns how many bytes one read may add to `buffer` without passing its
/// bound (at most 4 KiB; 0 when it is full).
std::size_t read_room(const boost::beast::flat_buffer& buffer) noexcept;

/// A request the server does not serve: the status and text of the answer.
/// The connection closes after it (the rest of the request is not read).
struct refusal {
  /// HTTP status code (400, 413, 431, ...).
  int status = 400;
  /// What is wrong, for the error body.
  std::string message;
};

/// Checks the framing of a request head (RFC 9112, section 6): a
/// `Transfer-Encoding` must be exactly `chunked` (no other coding, and not
/// in HTTP/1.0), and it excludes `Content-Length`. `chunked` is what the
/// parser made of the head (`basic_parser::chunked()`). Returns the refusal
/// of a head that breaks a rule, which the server answers and then closes:
/// such a request cannot be framed reliably (request smuggling).
std::optional<refusal> check_framing(const boost::beast::http::fields& head,
                                     unsigned version, bool chunked);

/// Maps an error of reading a request to its answer: 413 over the body
/// limit, 431 over the head limit, 400 for a chunk line or trailer over
/// the read buffer's bound and for malformed HTTP. Returns nullopt for
/// errors of the connection itself (end of stream, reset, timeout), which
/// close without an answer.
std::optional<refusal> refusal_for(const boost::system::error_code& ec,
                                   std::size_t max_body_bytes);

/// Whether `ec` reports malformed HTTP from the peer (as opposed to a
/// broken or ended connection).
bool is_http_syntax_error(const boost::system::error_code& ec);

} // namespace maritaca::apps
