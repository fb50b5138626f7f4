#pragma once

/// @file
/// The value types of the Maritaca chat API (an OpenAI-compatible wire
/// format). Plain C++ only: no CAF, no Beast, no RapidJSON, so every layer
/// (codec, simulator, actors, applications) shares one model of a chat.

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace maritaca {

/// The default model of the service.
inline constexpr const char* default_model = "sabia-4";

/// The default base URL of the service.
inline constexpr const char* default_base_url = "https://chat.maritaca.ai/api";

/// One function call requested by the model.
struct tool_call {
  /// Identifier the answering `tool` message refers to.
  std::string id;
  /// Always "function" today.
  std::string type = "function";
  /// Name of the function to call.
  std::string name;
  /// Arguments as JSON text, exactly as the model produced them.
  std::string arguments;

  friend bool operator==(const tool_call&, const tool_call&) = default;
};

/// One part of a multi-part message content (OpenAI content parts).
struct content_part {
  /// What the part holds.
  enum class kind : uint8_t { text, image_url };
  /// Text or image.
  kind type = kind::text;
  /// The text, for `kind::text`.
  std::string text;
  /// `https://...` or `data:image/...;base64,...`, for `kind::image_url`.
  std::string url;
  /// Optional image detail hint ("low", "high", "auto"); empty means unset.
  std::string detail;

  friend bool operator==(const content_part&, const content_part&) = default;
};

/// One message of a conversation.
struct chat_message {
  /// "system", "user", "assistant" or "tool".
  std::string role;
  /// Text content. Unset means JSON `null` (an assistant calling tools).
  std::optional<std::string> content;
  /// Multi-part content; when not empty it is sent instead of `content`.
  std::vector<content_part> parts;
  /// Tool calls of an assistant message.
  std::vector<tool_call> tool_calls;
  /// For role "tool": the call this message answers.
  std::string tool_call_id;
  /// Optional participant name.
  std::string name;

  /// Returns the text content, or an empty string when it is null.
  const std::string& text() const noexcept {
    static const std::string empty;
    return content ? *content : empty;
  }

  /// Makes a message with `role` and text `content`.
  static chat_message make(std::string role, std::string content) {
    chat_message result;
    result.role = std::move(role);
    result.content = std::move(content);
    return result;
  }

  /// Makes a `system` message.
  static chat_message system(std::string text) {
    return make("system", std::move(text));
  }

  /// Makes a `user` message.
  static chat_message user(std::string text) {
    return make("user", std::move(text));
  }

  /// Makes an `assistant` message.
  static chat_message assistant(std::string text) {
    return make("assistant", std::move(text));
  }

  /// Makes a `tool` message answering the call `call_id`.
  static chat_message tool(std::string call_id, std::string text) {
    auto result = make("tool", std::move(text));
    result.tool_call_id = std::move(call_id);
    return result;
  }

  friend bool operator==(const chat_message&, const chat_message&) = default;
};

/// A function the model may call.
struct tool_spec {
  /// Function name.
  std::string name;
  /// What the function does, for the model.
  std::string description;
  /// JSON Schema of the arguments, as JSON text ("{}" when empty).
  std::string parameters = "{\"type\":\"object\",\"properties\":{}}";

  friend bool operator==(const tool_spec&, const tool_spec&) = default;
};

/// Whether and which tool the model must call.
struct tool_choice {
  /// "none", "auto", "required" or "function" (then `function` names it).
  std::string mode = "auto";
  /// The forced function, for mode "function".
  std::string function;

  friend bool operator==(const tool_choice&, const tool_choice&) = default;
};

/// Requested output format.
struct response_format {
  /// "text", "json_object" or "json_schema".
  std::string type = "text";
  /// For "json_schema": the schema's name.
  std::string schema_name;
  /// For "json_schema": the JSON Schema, as JSON text.
  std::string schema;
  /// For "json_schema": whether the schema is strict.
  bool strict = false;

  friend bool operator==(const response_format&,
                         const response_format&) = default;
};

/// Token accounting of one completion.
struct usage {
  /// Tokens of the prompt.
  int64_t prompt_tokens = 0;
  /// Tokens of the answer.
  int64_t completion_tokens = 0;
  /// Their sum.
  int64_t total_tokens = 0;
  /// Prompt tokens served from the cache (`prompt_tokens_details`).
  int64_t cached_tokens = 0;

  friend bool operator==(const usage&, const usage&) = default;
};

/// The body of `POST /chat/completions`. Unset optionals are not sent, so
/// the service's defaults apply.
struct chat_request {
  /// Model name.
  std::string model = default_model;
  /// The conversation.
  std::vector<chat_message> messages;
  /// Sampling temperature.
  std::optional<double> temperature;
  /// Nucleus sampling.
  std::optional<double> top_p;
  /// Upper bound of answer tokens.
  std::optional<int64_t> max_tokens;
  /// Number of choices.
  std::optional<int64_t> n;
  /// Stop sequences.
  std::vector<std::string> stop;
  /// Penalty on frequent tokens, -2..2.
  std::optional<double> frequency_penalty;
  /// Penalty on present tokens, -2..2.
  std::optional<double> presence_penalty;
  /// Whether the answer streams as Server-Sent Events.
  bool stream = false;
  /// With `stream`: ask for a last chunk carrying usage.
  bool include_usage = false;
  /// Functions the model may call.
  std::vector<tool_spec> tools;
  /// Tool choice; unset leaves the service default ("auto").
  std::optional<maritaca::tool_choice> tool_choice;
  /// Output format; unset means text.
  std::optional<maritaca::response_format> response_format;
  /// Optional end-user identifier.
  std::string user;
  /// Optional sampling seed.
  std::optional<int64_t> seed;

  friend bool operator==(const chat_request&, const chat_request&) = default;
};

/// One choice of a non-streamed completion.
struct completion_choice {
  /// Position of the choice.
  int64_t index = 0;
  /// The assistant's message.
  chat_message message;
  /// "stop", "length", "tool_calls", ... (empty when absent).
  std::string finish_reason;

  friend bool operator==(const completion_choice&,
                         const completion_choice&) = default;
};

/// A non-streamed completion (`chat.completion`).
struct chat_completion {
  /// Completion identifier.
  std::string id;
  /// Creation time, seconds since the epoch.
  int64_t created = 0;
  /// Model that answered.
  std::string model;
  /// Backend fingerprint, if sent.
  std::string system_fingerprint;
  /// The choices (one unless `n` > 1).
  std::vector<completion_choice> choices;
  /// Token accounting, if sent.
  std::optional<maritaca::usage> usage;

  friend bool operator==(const chat_completion&,
                         const chat_completion&) = default;
};

/// A piece of a tool call in a stream; pieces with one `index` join.
struct tool_call_delta {
  /// Which tool call of the message this piece belongs to.
  int64_t index = 0;
  /// Call identifier (first piece only).
  std::string id;
  /// "function" (first piece only).
  std::string type;
  /// Function name (first piece only).
  std::string name;
  /// A piece of the arguments' JSON text.
  std::string arguments;

  friend bool operator==(const tool_call_delta&,
                         const tool_call_delta&) = default;
};

/// One choice of a stream chunk.
struct chunk_choice {
  /// Position of the choice.
  int64_t index = 0;
  /// Role, on the first chunk only.
  std::string role;
  /// Content delta (empty when none).
  std::string content;
  /// Tool-call deltas.
  std::vector<tool_call_delta> tool_calls;
  /// Set on the last chunk of the choice.
  std::string finish_reason;

  friend bool operator==(const chunk_choice&, const chunk_choice&) = default;
};

/// One streamed chunk (`chat.completion.chunk`).
struct completion_chunk {
  /// Completion identifier (the same on every chunk).
  std::string id;
  /// Creation time, seconds since the epoch.
  int64_t created = 0;
  /// Model that answers.
  std::string model;
  /// Deltas; empty on the usage chunk.
  std::vector<chunk_choice> choices;
  /// Token accounting, on the last chunk with `include_usage`.
  std::optional<maritaca::usage> usage;

  friend bool operator==(const completion_chunk&,
                         const completion_chunk&) = default;
};

/// One entry of `GET /models`.
struct model_info {
  /// Model name.
  std::string id;
  /// Creation time, seconds since the epoch.
  int64_t created = 0;
  /// Owner ("maritaca").
  std::string owned_by;

  friend bool operator==(const model_info&, const model_info&) = default;
};

/// An error body, in either of the shapes the service sends
/// (`{"detail": ...}` or `{"error": {"message", "code", "type"}}`).
struct api_error {
  /// Human-readable message.
  std::string message;
  /// Machine-readable code, if any.
  std::string code;
  /// Error type, if any.
  std::string type;

  friend bool operator==(const api_error&, const api_error&) = default;
};

} // namespace maritaca
