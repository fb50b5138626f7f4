#pragma once

/// @file
/// The JSON codec of the chat API (RapidJSON inside, hidden here). Encoders
/// never fail; decoders return a failure with `errc::protocol_error` that
/// names the offending field and quotes a short excerpt of the input, and
/// leave `out` in a valid but unspecified state.

#include "maritaca/failure.hpp"
#include "maritaca/types.hpp"

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace maritaca::wire {

/// Encodes the body of `POST /chat/completions`. The raw JSON members
/// (`tool_spec::parameters`, `response_format::schema`) must hold valid JSON
/// text: they are embedded as they are (an empty one is left out), and text
/// that does not parse is sent as a JSON string instead, which the service
/// rejects. Check them beforehand with `validate_request`.
std::string encode_request(const chat_request& x);

/// Checks what `encode_request` cannot repair: an empty model, no messages
/// or a message without role, raw JSON members that are not JSON objects,
/// an unknown tool choice or response format, non-finite numbers. Returns
/// `errc::invalid_argument` naming the field (e.g.
/// `tools[0].function.parameters: ...`), or an empty failure.
failure validate_request(const chat_request& x);

/// Decodes the body of `POST /chat/completions` (used by the simulator and
/// the gateway). Missing `model` or `messages`, or mistyped fields, fail.
failure decode_request(std::string_view json, chat_request& out);

/// Encodes a non-streamed completion.
std::string encode_completion(const chat_completion& x);

/// Decodes a non-streamed completion.
failure decode_completion(std::string_view json, chat_completion& out);

/// Encodes a stream chunk (the JSON of one SSE `data:` line).
std::string encode_chunk(const completion_chunk& x);

/// Decodes a stream chunk.
failure decode_chunk(std::string_view json, completion_chunk& out);

/// Encodes the body of `GET /models`.
std::string encode_models(const std::vector<model_info>& xs);

/// Encodes one model as `GET /models/{id}` returns it (`"object":"model"`).
std::string encode_model(const model_info& x);

/// Decodes the body of `GET /models`.
failure decode_models(std::string_view json, std::vector<model_info>& out);

/// The JSON shape of an error body.
enum class error_shape {
  /// FastAPI style: `{"detail": "..."}`.
  detail,
  /// OpenAI style: `{"error": {"message", "type", "code"}}`.
  openai,
};

/// Encodes an error body in `shape`.
std::string encode_error(const api_error& x,
                         error_shape shape = error_shape::openai);

/// Reads an error body of either shape; anything else becomes an
/// `api_error` whose message is the body's text (truncated to 512 bytes,
/// control characters replaced). Never fails.
api_error decode_error(std::string_view body);

/// Returns whether `json` is an object with a top-level `"error"` member
/// (an error sent inside a stream).
bool is_error_payload(std::string_view json);

/// Appends `s` to `out` as a JSON string literal (with quotes), escaping as
/// JSON requires. Valid UTF-8 passes through unchanged; each ill-formed
/// byte becomes U+FFFD.
void append_json_string(std::string& out, std::string_view s);

} // namespace maritaca::wire
