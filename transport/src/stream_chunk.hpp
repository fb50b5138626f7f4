#pragma once

// The stream-chunk fast path of the codec, private to the transport: the
// SSE decoder (sse_parser.cpp) decodes each event's data in one pass and
// memoizes chunks of the common form by where their content lay. Defined
// in wire.cpp; tests and the SSE fuzz target include it from transport/src.

#include "maritaca/failure.hpp"
#include "maritaca/types.hpp"

#include <cstddef>
#include <string_view>

namespace maritaca::wire {

/// Where the content string of a decoded stream chunk lay in its JSON text
/// (see `decode_stream_chunk`).
struct chunk_layout {
  /// The chunk is one a decoder may memoize: one choice whose content was
  /// set exactly once, by the string token in [`content_begin`,
  /// `content_end`) (quotes included); no tool calls, no usage. Every other
  /// chunk with the same bytes before and after that token, and a token
  /// for which `is_plain_json_text` holds between the quotes, decodes to
  /// the same chunk with that text as its content.
  bool memo = false;
  /// Offset of the opening quote.
  std::size_t content_begin = 0;
  /// Offset just past the closing quote.
  std::size_t content_end = 0;
};

/// Decodes the data of one stream event: when `json` is an error payload
/// (see `is_error_payload`) sets `error_payload` and returns an empty
/// failure, leaving `out` unspecified; else does what `decode_chunk` does.
/// One pass over a chunk instead of two. When `layout` is given, it tells
/// where the content lay (its `memo` is false unless the common, strict
/// form of a chunk was decoded).
failure decode_stream_chunk(std::string_view json, completion_chunk& out,
                            bool& error_payload,
                            chunk_layout* layout = nullptr);

/// Returns whether `text` may stand between the quotes of a JSON string
/// as it is: well-formed UTF-8 without quotes, backslashes or control
/// characters (so it needs no unescaping).
bool is_plain_json_text(std::string_view text) noexcept;

} // namespace maritaca::wire
