#pragma once

/// @file
/// An incremental Server-Sent Events parser (WHATWG event-stream rules) and
/// the decoder of a chat completion stream built on it.

#include "maritaca/failure.hpp"
#include "maritaca/types.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace maritaca::sse {

/// One dispatched event.
struct event {
  /// The `event:` field ("message" when absent is left to the caller: empty).
  std::string type;
  /// The `data:` lines joined with '\n'.
  std::string data;
  /// The last `id:` field seen (persists across events, as the spec says).
  std::string id;
  /// The `retry:` field in ms, or -1.
  int64_t retry_ms = -1;
};

/// Default bound of one event's size.
inline constexpr std::size_t default_max_event_bytes = 1u << 20;

/// Splits a byte stream into events. Accepts `\n`, `\r\n` and `\r` line ends
/// (also split across feeds), comments (`:`), `event:`/`data:`/`id:`/`retry:`
/// fields and multi-line data; events may be split at any byte.
class parser {
public:
  /// Creates a parser whose events may not exceed `max_event_bytes`.
  explicit parser(std::size_t max_event_bytes = default_max_event_bytes);

  /// Feeds `bytes`; appends every event completed by them to `out`. Returns
  /// a `protocol_error` once an event exceeds the bound (the parser is then
  /// unusable).
  failure feed(std::string_view bytes, std::vector<event>& out);

  /// Returns whether bytes of an unfinished event are buffered.
  bool has_partial() const noexcept;

private:
  void process_line(std::string_view line, std::vector<event>& out);

  std::size_t max_event_bytes_;
  std::string line_;       // the unfinished line
  bool skip_lf_ = false;   // the last byte was '\r': drop a following '\n'
  event current_;          // fields of the unfinished event
  bool has_data_ = false;  // current_ saw a data field
  std::size_t event_bytes_ = 0;
  std::string last_id_;
  bool failed_ = false;
};

/// Formats one SSE event `data: <payload>\n\n` (multi-line payloads become
/// several `data:` lines).
std::string format_data(std::string_view payload);

/// Decodes a chat completion stream: SSE events whose data is a chunk JSON,
/// ended by `data: [DONE]`. A payload holding `"error"` becomes a failure
/// carrying the server's message.
class chunk_decoder {
public:
  /// Creates a decoder whose events may not exceed `max_event_bytes`.
  explicit chunk_decoder(
    std::size_t max_event_bytes = default_max_event_bytes);

  /// Feeds `bytes`; appends decoded chunks to `out`. Returns the first
  /// failure (malformed JSON, error payload, oversized event); the decoder
  /// is then unusable.
  failure feed(std::string_view bytes, std::vector<completion_chunk>& out);

  /// Returns whether `[DONE]` was seen.
  bool done() const noexcept { return done_; }

  /// To call at the end of the body: returns a `protocol_error` when the
  /// stream ended without `[DONE]`.
  failure finish() const;

private:
  parser parser_;
  std::vector<event> events_;
  bool done_ = false;
};

} // namespace maritaca::sse
