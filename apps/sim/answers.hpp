#pragma once

/// @file
/// The deterministic "model" of the simulator: the same request always gets
/// the same answer (text, tool calls or JSON), id and usage.

#include "maritaca/types.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace maritaca::sim {

/// Returns the models the simulator serves (`GET /models`).
const std::vector<model_info>& served_models();

/// Returns whether `name` is one of `served_models()`.
bool is_served_model(std::string_view name) noexcept;

/// The answer to one chat request.
struct answer {
  /// `chatcmpl-<hash of the request>`.
  std::string id;
  /// Fixed creation time, so equal requests get equal responses.
  int64_t created = 0;
  /// The text (or JSON text); empty with tool calls or synthetic content.
  std::string content;
  /// Tool calls; when not empty the content is JSON null.
  std::vector<tool_call> tool_calls;
  /// "stop", "length" or "tool_calls".
  std::string finish_reason = "stop";
  /// Token accounting (whitespace-separated words).
  maritaca::usage tokens;
  /// When >= 0 the content is this many generated words (`x-sim-chunks`),
  /// produced piece by piece by `append_synthetic_piece` instead of
  /// `content`, so huge streams need no memory.
  int64_t synthetic_words = -1;
};

/// Computes the answer to `req`. `request_hash` identifies the request
/// (hash of its body). `chunks` >= 0 makes the answer exactly that many
/// words (before `max_tokens`), for benchmarks.
answer make_answer(const chat_request& req, uint64_t request_hash,
                   int64_t chunks = -1);

/// Appends piece `i` of a synthetic answer of `n` words: a word plus a
/// space, except for the last one.
void append_synthetic_piece(std::string& out, int64_t i, int64_t n);

/// Makes the content of a synthetic answer explicit (for non-streamed
/// responses).
void materialize(answer& x);

/// Returns the end of the stream piece of `text` starting at `pos`: one
/// word and the whitespace after it.
size_t next_piece(std::string_view text, size_t pos) noexcept;

/// Returns the number of stream pieces (words) of `text`.
int64_t count_words(std::string_view text) noexcept;

} // namespace maritaca::sim
