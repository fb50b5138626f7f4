#pragma once

/// @file
/// Structured output: JSON answers (`response_format` json_object or
/// json_schema), parsed into a read-only `json_document` and checked against
/// a JSON Schema. A document or schema that does not fit is a typed error:
/// `errc::protocol_error` (the model's output is wrong) whose message names
/// the offending path, e.g. `$.address.city: expected string, got number`;
/// a schema that is not a JSON object is `errc::invalid_argument` (the
/// caller's input is wrong).
///
/// The schema checker covers the subset models are asked to produce:
/// `type` (one name or a list; object, array, string, number, integer,
/// boolean, null), `properties`, `required`, `additionalProperties`
/// (`false` or a schema), `items`, `enum`, `const`, `anyOf` / `oneOf`
/// (some alternative fits), `allOf` and local `$ref`s (`#/$defs/...`).
/// Other keywords (formats, bounds, patterns) are accepted and ignored.

#include "maritaca/chat_model.hpp"
#include "maritaca/error.hpp"
#include "maritaca/messages.hpp"

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/expected.hpp>

#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace maritaca {

/// The type of a JSON value (`missing` when a path leads nowhere).
enum class json_type : uint8_t {
  /// No value at that path.
  missing,
  /// `null`.
  null,
  /// `true` or `false`.
  boolean,
  /// A number without fraction or exponent that fits 64 bits.
  integer,
  /// Any other number.
  number,
  /// A string.
  string,
  /// An array.
  array,
  /// An object.
  object,
};

/// Returns the JSON Schema name of `x` ("object", "integer", ...; "missing").
std::string_view to_string(json_type x) noexcept;

/// A parsed JSON document: read-only and cheap to copy (copies share the
/// parsed tree). Values are addressed by JSON Pointer (RFC 6901): "" is the
/// root, "/address/city" a member, "/items/0" an array element.
class json_document {
public:
  /// The document `null`.
  json_document();

  /// Parses `text` (surrounding whitespace and a Markdown code fence such as
  /// ```json ... ``` are ignored). Text that is not one JSON value is
  /// `errc::protocol_error` quoting the position.
  static caf::expected<json_document> parse(std::string_view text);

  /// The JSON text that was parsed (without fence and outer whitespace).
  const std::string& text() const noexcept;

  /// The type of the value at `pointer`.
  json_type type(std::string_view pointer = "") const;

  /// Returns whether there is a value at `pointer`.
  bool contains(std::string_view pointer) const {
    return type(pointer) != json_type::missing;
  }

  /// The string at `pointer`, if there is one.
  std::optional<std::string> get_string(std::string_view pointer) const;

  /// The number (integer or not) at `pointer`, if there is one.
  std::optional<double> get_number(std::string_view pointer) const;

  /// The integer at `pointer`, if there is one.
  std::optional<int64_t> get_integer(std::string_view pointer) const;

  /// The boolean at `pointer`, if there is one.
  std::optional<bool> get_bool(std::string_view pointer) const;

  /// Elements of the array or members of the object at `pointer` (0 for
  /// anything else).
  std::size_t size(std::string_view pointer = "") const;

  /// Member names of the object at `pointer`, in document order.
  std::vector<std::string> keys(std::string_view pointer = "") const;

  /// The value at `pointer` as compact JSON text, if there is one.
  std::optional<std::string> dump(std::string_view pointer = "") const;

private:
  friend struct json_access;
  struct impl;
  std::shared_ptr<const impl> impl_;
};

/// A JSON Schema (the subset described in this file), parsed once.
class json_schema {
public:
  /// Parses `text`; anything but a JSON object is `errc::invalid_argument`.
  static caf::expected<json_schema> parse(std::string_view text);

  /// The schema's JSON text.
  const std::string& text() const noexcept { return doc_.text(); }

  /// The schema's `title`, or an empty string.
  std::string title() const;

  /// Checks `doc` against the schema: an empty error when it fits, else
  /// `errc::protocol_error` naming the first offending path.
  caf::error check(const json_document& doc) const;

private:
  explicit json_schema(json_document doc) : doc_(std::move(doc)) {}

  json_document doc_;
};

/// Parses `text` and checks it against `schema` (JSON text); the
/// `json_document` when it fits, else the first error.
caf::expected<json_document> parse_structured(std::string_view text,
                                              std::string_view schema);

/// Returns `model` answering in JSON mode (`response_format` json_object).
chat_model with_json_mode(const chat_model& model);

/// Returns `model` answering JSON that follows `schema` (`response_format`
/// json_schema named after the schema's title, else "output").
chat_model with_json_schema(const chat_model& model, std::string schema,
                            bool strict = false);

/// A model whose answers are JSON documents, checked against a schema (the
/// C++ `with_structured_output`).
class structured_model {
public:
  /// Result of a structured ask.
  using result_type = caf::expected<json_document>;

  /// Asks `model` for JSON following `schema`; an empty `schema` means JSON
  /// mode (any JSON object).
  structured_model(const chat_model& model, std::string schema = {});

  /// Asks and waits; the answer parsed and checked.
  result_type invoke(input in) const;

  /// Asks without blocking.
  std::future<result_type> ainvoke(input in) const;

  /// Asks from the actor `self` and calls `f` with the checked document (or
  /// the error) on `self`'s thread.
  template <class Self>
  void ainvoke(Self* self, input in, std::function<void(result_type)> f) const {
    auto copy = *this;
    model_.ainvoke(self, std::move(in))
        .then([copy, f](ai_message& msg) { f(copy.parse(msg)); },
              [f](caf::error& err) { f(result_type{std::move(err)}); });
  }

  /// Parses and checks an answer of the model.
  result_type parse(const ai_message& msg) const;

  /// The model, with its `response_format` set.
  const chat_model& model() const noexcept { return model_; }

  /// The schema's JSON text (empty in JSON mode).
  const std::string& schema() const noexcept { return schema_text_; }

private:
  chat_model model_;
  std::string schema_text_;
  /// The parsed schema, or why it does not parse.
  std::shared_ptr<const caf::expected<json_schema>> schema_;
};

/// Returns a structured model asking `model` for JSON that follows `schema`.
structured_model with_structured_output(const chat_model& model,
                                        std::string schema);

/// Returns a structured model asking `model` for any JSON object (JSON mode).
structured_model with_structured_output(const chat_model& model);

} // namespace maritaca

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(maritaca::json_document)
