#pragma once

/// @file
/// An incremental Server-Sent Events parser (WHATWG event-stream rules) and
/// the decoder of a chat completion stream built on it.

#include "maritaca/failure.hpp"
#include "maritaca/types.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
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
  /// The last valid `retry:` field in ms (the stream's reconnection time,
  /// which persists like `id`), or -1 when none was seen.
  int64_t retry_ms = -1;

  friend bool operator==(const event&, const event&) = default;
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
  /// a `protocol_error` once an event exceeds the bound (the events completed
  /// before it are still appended; the parser is then unusable and returns
  /// the same failure on every later call).
  failure feed(std::string_view bytes, std::vector<event>& out);

  /// Returns whether bytes of an unfinished event are buffered.
  bool has_partial() const noexcept;

  /// Returns the last event ID (the last valid `id:` field), or "".
  const std::string& last_event_id() const noexcept { return last_id_; }

  /// Returns the last valid `retry:` field in ms, or -1.
  int64_t retry_ms() const noexcept { return retry_ms_; }

private:
  friend class chunk_decoder;

  // Feeds `bytes`; every completed event is written to `sink.next()`.
  template <class Sink>
  failure feed_to(std::string_view bytes, Sink& sink);

  // Applies one complete line (without its line end).
  template <class Sink>
  void process_line(std::string_view line, Sink& sink);

  // Returns whether an event holding `line_bytes` more bytes stays in bounds.
  bool fits(std::size_t line_bytes) const noexcept;

  // Makes the failure of an oversized event.
  failure too_big() const;

  std::size_t max_event_bytes_;
  std::string line_;        // the unfinished line (its capacity is reused)
  std::string data_;        // data lines of the unfinished event
  std::string type_;        // `event:` field of the unfinished event
  std::string last_id_;     // last event ID (persists across events)
  int64_t retry_ms_ = -1;   // last valid `retry:` (persists)
  bool has_data_ = false;   // the unfinished event saw a data field
  bool skip_lf_ = false;    // the last byte was '\r': drop a following '\n'
  uint8_t bom_matched_ = 0; // leading bytes of a UTF-8 BOM seen so far
  bool bom_done_ = false;   // the start of the stream was checked for a BOM
  bool failed_ = false;     // an event exceeded the bound
};

/// Formats one SSE event `data: <payload>\n\n` (multi-line payloads become
/// several `data:` lines). SSE cannot carry a CR inside data: `\r\n` and
/// `\r` in `payload` end lines too, so they read back as `\n`.
std::string format_data(std::string_view payload);

/// The chunks decoded from one read of a stream, in the form consumers take
/// them: what every chunk of a stream repeats kept once, then the choice
/// deltas and usages one after the other. Filling it allocates nothing per
/// chunk for the common chunk (a short content delta).
struct chunk_batch {
  /// One choice delta, or (with `usage` set) the usage of a chunk.
  struct piece {
    /// The delta; empty for a usage piece.
    chunk_choice choice;
    /// The usage, for a usage piece.
    std::optional<maritaca::usage> usage;
  };
  /// The first non-empty `id` among the chunks.
  std::string id;
  /// The first non-empty `model` among the chunks.
  std::string model;
  /// In stream order: each chunk's choices, then its usage if it has one.
  std::vector<piece> pieces;
  /// How many chunks the pieces came from.
  std::size_t chunks = 0;
};

/// Decodes a chat completion stream: SSE events whose data is a chunk JSON,
/// ended by `data: [DONE]`. A payload holding `"error"`, or an event of type
/// `error`, becomes a `server_error` carrying the server's message. Events of
/// other types than "" and "message" are ignored, and so is everything after
/// `[DONE]`.
///
/// The chunks of a stream differ mostly in their content: the decoder
/// remembers the last fully decoded chunk of the common form (see
/// the chunk layout of transport/src/stream_chunk.hpp) with the bytes around
/// its content, and a chunk with the same bytes around plain content text is
/// then copied from it instead of parsed. The chunks are the same as decoding
/// each event alone.
class chunk_decoder {
public:
  /// Creates a decoder whose events may not exceed `max_event_bytes`.
  explicit chunk_decoder(std::size_t max_event_bytes = default_max_event_bytes);

  /// Feeds `bytes`; appends decoded chunks to `out`. Returns the first
  /// failure (malformed JSON, error payload, oversized event); the decoder
  /// is then unusable.
  failure feed(std::string_view bytes, std::vector<completion_chunk>& out);

  /// Same, appending to `out` in the form of a batch.
  failure feed(std::string_view bytes, chunk_batch& out);

  /// Returns whether `[DONE]` was seen.
  bool done() const noexcept { return done_; }

  /// Returns how many chunks were copied from the memo instead of parsed.
  std::size_t memo_hits() const noexcept { return memo_hits_; }

  /// To call at the end of the body: returns a `protocol_error` when the
  /// stream ended without `[DONE]` (or the failure `feed` returned).
  failure finish() const;

private:
  // Decodes the events completed by `bytes`, handing each chunk to `sink`.
  template <class Sink>
  failure feed_to(std::string_view bytes, Sink& sink);

  // Returns the content text of `data` when `data` fits the memo (see the
  // class comment), else nullopt.
  std::optional<std::string_view> memo_text(std::string_view data) const;

  parser parser_;
  // The memo: a chunk (content empty) and the bytes before and after its
  // content token; valid when `memo_prefix_` is not empty.
  completion_chunk memo_;
  std::string memo_prefix_;
  std::string memo_suffix_;
  std::size_t memo_hits_ = 0;
  // Chunks that miss the memo are decoded here (its strings and vectors
  // keep their capacity).
  completion_chunk scratch_;
  bool done_ = false;
  failure failure_; // the first failure; sticky
};

} // namespace maritaca::sse
