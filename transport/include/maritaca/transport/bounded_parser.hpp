#pragma once

/// @file
/// A Beast HTTP parser whose head limit bounds the whole head. For
/// Beast-side code only (transport/src and the servers under apps/); not
/// installed: users of the library never see Beast.
///
/// Why: Boost 1.81's `basic_parser::header_limit` bounds only the bytes of
/// a head not parsed yet. Fields that arrive in several reads are parsed
/// and stored one by one as they come, so a head sent in pieces could grow
/// to about twice the limit (and its fields with it). This parser counts
/// every field it stores and fails with `http::error::header_limit` once
/// the head passes the limit.

#include <boost/beast/http/error.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/parser.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>

namespace maritaca::transport {

/// `boost::beast::http::parser` with a head limit over all of the head.
template <bool IsRequest, class Body, class Allocator = std::allocator<char>>
class bounded_parser
    : public boost::beast::http::parser<IsRequest, Body, Allocator> {
public:
  using base = boost::beast::http::parser<IsRequest, Body, Allocator>;

  using base::base;

  /// Sets the bound of the whole head (request or status line and fields)
  /// and Beast's own bound of its unparsed part.
  void head_limit(std::size_t bytes) {
    max_head_ = bytes;
    this->header_limit(
        static_cast<std::uint32_t>(std::min<std::size_t>(bytes, UINT32_MAX)));
  }

private:
  void on_field_impl(boost::beast::http::field f,
                     boost::beast::string_view name,
                     boost::beast::string_view value,
                     boost::beast::error_code& ec) override {
    // A field costs its name, ": ", its value and CRLF on the wire.
    head_bytes_ += name.size() + value.size() + 4;
    if (head_bytes_ > max_head_) {
      ec = boost::beast::http::error::header_limit;
      return;
    }
    // What the base class does (its own override is private).
    this->get().insert(f, name, value);
  }

  std::size_t max_head_ = 8192;
  std::size_t head_bytes_ = 0;
};

} // namespace maritaca::transport
