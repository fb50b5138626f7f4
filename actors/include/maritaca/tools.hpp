#pragma once

/// @file
/// Tools: functions the model may call. A `tool` is a `tool_spec` (name,
/// description, JSON Schema of the arguments) plus a handler -- either a
/// plain function or an actor.
///
/// The actor protocol of a tool: the actor receives the request
/// `(tool_call_atom, std::string arguments_json)` and answers with a
/// `std::string` (the result text the model reads) or an error. The caller
/// always bounds the request with a finite timeout.
///
/// Arguments come from the model. Arguments that are not valid JSON, not a
/// JSON object, or do not fit the tool's schema (required keys, types)
/// are `errc::protocol_error` -- the model's output is malformed, like any
/// other malformed output of the service -- with a message naming the path
/// (`$.city: expected string, got number`). A tool spec whose schema is not
/// a JSON object is `errc::invalid_argument` (the caller's mistake).

#include "maritaca/atoms.hpp"
#include "maritaca/chat_model.hpp"
#include "maritaca/error.hpp"
#include "maritaca/messages.hpp"
#include "maritaca/structured.hpp"

#include <caf/actor.hpp>
#include <caf/atom.hpp>
#include <caf/expected.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace caf {
class actor_system;
} // namespace caf

namespace maritaca {

/// A tool implemented by a function: takes the arguments (a JSON object, as
/// text, already checked against the tool's schema) and returns the result
/// text, or an error that the model reads as the result. It may block: each
/// call runs on an actor (and thread) of its own.
using tool_function =
    std::function<caf::expected<std::string>(const std::string&)>;

/// A function the model may call, and how to run it. Exactly one of
/// `function` and `handler` is set.
struct tool {
  /// What the model sees.
  tool_spec spec;
  /// The handler, when the tool is a function.
  tool_function function;
  /// The handler, when the tool is an actor (see the protocol above).
  caf::actor handler;

  /// The tool's name.
  const std::string& name() const noexcept { return spec.name; }
};

/// Makes a tool run by `fn`. `parameters` is the JSON Schema of the
/// arguments (JSON text).
tool make_tool(std::string name, std::string description,
               std::string parameters, tool_function fn);

/// Makes a tool run by the actor `handler`.
tool make_tool(std::string name, std::string description,
               std::string parameters, caf::actor handler);

/// Returns the specs of `tools`, in order.
std::vector<tool_spec> specs_of(const std::vector<tool>& tools);

/// Checks a tool spec: a non-empty name of letters, digits, '_' and '-'
/// (at most 64), and parameters that are a JSON Schema object. Returns
/// `errc::invalid_argument` naming the problem, or an empty error.
caf::error validate_spec(const tool_spec& spec);

/// Checks `tools`: each spec valid, each name unique, each with a handler.
caf::error validate_tools(const std::vector<tool>& tools);

/// Parses and checks the arguments of a call against `spec.parameters`;
/// the document when they fit, else `errc::protocol_error` naming the path.
caf::expected<json_document> parse_arguments(const tool_spec& spec,
                                             std::string_view arguments);

/// Reads an OpenAI-style tools array
/// (`[{"type":"function","function":{"name","description","parameters"}}]`;
/// bare `{"name", ...}` entries are accepted too). Errors are
/// `errc::invalid_argument` naming the entry (`tools[1].function.name`).
caf::expected<std::vector<tool_spec>> parse_tool_specs(std::string_view json);

/// Reads a tool choice as the CLI spells it: "none", "auto", "required", or
/// a function name. An empty text is `errc::invalid_argument`.
caf::expected<tool_choice> parse_tool_choice(std::string_view text);

/// Returns `model` with `tools` bound to all its asks (see
/// `chat_model::bind_tools`).
chat_model bind_tools(const chat_model& model, const std::vector<tool>& tools,
                      std::optional<tool_choice> choice = {});

/// Builds a single ask of `model` that offers `tools` (and `choice`),
/// leaving the model's own settings alone; send it to `model.dispatcher()`.
ask make_tool_ask(const chat_model& model, input in,
                  std::vector<tool_spec> tools,
                  std::optional<tool_choice> choice = {},
                  std::vector<caf::actor> subscribers = {});

/// Asks once with `tools` offered and waits; the answer may hold tool calls.
chat_model::result_type
invoke_with_tools(const chat_model& model, input in,
                  std::vector<tool_spec> tools,
                  std::optional<tool_choice> choice = {});

/// Runs one call of `t` and waits (at most `timeout`): checks the
/// arguments, then calls the function (on its own actor) or asks the actor.
/// A call whose name is not `t`'s is `errc::invalid_argument`; a timeout is
/// `errc::timeout`; a failing handler gives its error.
caf::expected<std::string>
run_tool(caf::actor_system& sys, const tool& t, const tool_call& call,
         std::chrono::milliseconds timeout = std::chrono::seconds{60});

/// Spawns an actor answering one `(tool_call_atom, arguments)` request by
/// calling `fn` (on a thread of its own, so it may block), then quitting.
/// Exceptions of `fn` become errors.
caf::actor spawn_tool_worker(caf::actor_system& sys, tool_function fn);

/// Renders the failure of a tool as the result text the model reads:
/// `error: <message>`.
std::string tool_error_text(const caf::error& err);

} // namespace maritaca
