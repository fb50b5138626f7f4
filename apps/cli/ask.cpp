/// @file
/// `maritaca ask` and `maritaca models`.

#include "cli.hpp"

#include <iostream>

namespace maritaca::cli {

namespace {

/// Whether the answer must be JSON (--schema or --response-format json).
bool wants_json(const options& o) {
  return !o.schema_file.empty() || o.response_format == "json";
}

/// Checks a JSON answer: the JSON text, or the error naming what does not
/// fit.
caf::expected<std::string> check_json(const ai_message& msg, const options& o) {
  auto doc = json_document::parse(msg.content());
  if (!doc) return std::move(doc.error());
  if (!o.schema_file.empty()) {
    if (auto err = read_schema(o).check(*doc)) return err;
  } else if (doc->type() != json_type::object) {
    return make_error(errc::protocol_error,
                      "$: expected object, got " +
                          std::string{to_string(doc->type())});
  }
  return doc->text();
}

/// Prints the tool calls of `msg`: `name(arguments)`, one per line.
void print_tool_calls(const ai_message& msg) {
  for (auto& call : msg.tool_calls())
    std::cout << call.name << "(" << call.arguments << ")\n";
  std::cout << std::flush;
}

/// `ask --stream`: the text as it comes, or with --json each chunk as a
/// JSON line.
int stream_answer(const chat_model& model, const options& o) {
  auto chunks = model.stream(make_input(o, o.args[0]));
  for (auto& chunk : chunks) {
    if (o.json)
      std::cout << to_json(chunk, model.config().model) << std::endl;
    else
      std::cout << chunk.content << std::flush;
  }
  auto& result = chunks.result();
  if (!result) {
    if (!o.json) std::cout << std::endl;
    return report(result.error());
  }
  if (o.json) return 0;
  if (!result->content().empty() || result->tool_calls().empty())
    std::cout << std::endl;
  if (!result->tool_calls().empty()) print_tool_calls(*result);
  // The JSON went out as it came; say whether it fits.
  if (wants_json(o) && result->tool_calls().empty())
    if (auto checked = check_json(*result, o); !checked)
      return report(checked.error());
  return 0;
}

} // namespace

int run_ask(const chat_model& model, const options& o) {
  if (o.stream) return stream_answer(model, o);
  auto result = model.invoke(make_input(o, o.args[0]));
  if (!result) return report(result.error());
  std::string json_text;
  if (wants_json(o) && result->tool_calls().empty()) {
    auto checked = check_json(*result, o);
    if (!checked) return report(checked.error());
    json_text = std::move(*checked);
  }
  if (o.json) {
    std::cout << to_json(*result) << std::endl;
    return 0;
  }
  if (!result->tool_calls().empty())
    print_tool_calls(*result);
  else if (wants_json(o))
    std::cout << json_text << std::endl;
  else
    std::cout << result->content() << std::endl;
  return 0;
}

int run_models(const chat_model& model) {
  auto result = model.models();
  if (!result) return report(result.error());
  for (auto& m : *result)
    std::cout << m.id << '\n';
  std::cout << std::flush;
  return 0;
}

} // namespace maritaca::cli
