#include "maritaca/tools.hpp"

#include "json_internal.hpp"

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <exception>
#include <set>

namespace maritaca {

namespace {

bool valid_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > 64) return false;
  for (auto c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

caf::error bad(std::string what) {
  return make_error(errc::invalid_argument, std::move(what));
}

/// Reads the string member `key` of `obj` into `out`; fails unless it is
/// absent (and optional) or a string.
caf::error read_string(const rapidjson::Value& obj, const char* key,
                       const std::string& where, bool required,
                       std::string& out) {
  auto i = obj.FindMember(key);
  if (i == obj.MemberEnd()) {
    if (required) return bad(where + "." + key + ": missing");
    return {};
  }
  if (!i->value.IsString())
    return bad(where + "." + key + ": expected a string");
  out.assign(i->value.GetString(), i->value.GetStringLength());
  return {};
}

} // namespace

tool make_tool(std::string name, std::string description,
               std::string parameters, tool_function fn) {
  tool result;
  result.spec.name = std::move(name);
  result.spec.description = std::move(description);
  result.spec.parameters = std::move(parameters);
  result.function = std::move(fn);
  return result;
}

tool make_tool(std::string name, std::string description,
               std::string parameters, caf::actor handler) {
  tool result;
  result.spec.name = std::move(name);
  result.spec.description = std::move(description);
  result.spec.parameters = std::move(parameters);
  result.handler = std::move(handler);
  return result;
}

std::vector<tool_spec> specs_of(const std::vector<tool>& tools) {
  std::vector<tool_spec> result;
  result.reserve(tools.size());
  for (auto& t : tools)
    result.push_back(t.spec);
  return result;
}

caf::error validate_spec(const tool_spec& spec) {
  if (!valid_name(spec.name))
    return bad("tool name '" + spec.name +
               "': expected 1..64 letters, digits, '_' or '-'");
  auto schema = json_schema::parse(spec.parameters);
  if (!schema)
    return bad("tool '" + spec.name +
               "' parameters: " + to_failure(schema.error()).message);
  return {};
}

caf::error validate_tools(const std::vector<tool>& tools) {
  std::set<std::string> names;
  for (auto& t : tools) {
    if (auto err = validate_spec(t.spec)) return err;
    if (!names.insert(t.name()).second)
      return bad("tool '" + t.name() + "' is defined twice");
    if (!t.function && !t.handler)
      return bad("tool '" + t.name() + "' has no handler");
  }
  return {};
}

caf::expected<json_document> parse_arguments(const tool_spec& spec,
                                             std::string_view arguments) {
  auto schema = json_schema::parse(spec.parameters);
  if (!schema)
    return bad("tool '" + spec.name +
               "' parameters: " + to_failure(schema.error()).message);
  // Models send "" for a call without arguments.
  auto doc = json_document::parse(arguments.empty() ? "{}" : arguments);
  if (!doc)
    return make_error(errc::protocol_error,
                      "arguments of '" + spec.name +
                          "': " + to_failure(doc.error()).message);
  if (doc->type() != json_type::object)
    return make_error(errc::protocol_error,
                      "arguments of '" + spec.name + "': $: expected object, " +
                          "got " + std::string{to_string(doc->type())});
  if (auto err = schema->check(*doc))
    return make_error(errc::protocol_error,
                      "arguments of '" + spec.name +
                          "': " + to_failure(err).message);
  return doc;
}

caf::expected<std::vector<tool_spec>> parse_tool_specs(std::string_view json) {
  auto doc = json_document::parse(json);
  if (!doc) return bad("tools: " + to_failure(doc.error()).message);
  auto& root = json_access::root(*doc);
  if (!root.IsArray())
    return bad("tools: expected an array, got " +
               std::string{to_string(type_of(root))});
  std::vector<tool_spec> result;
  for (rapidjson::SizeType i = 0; i < root.Size(); ++i) {
    auto where = "tools[" + std::to_string(i) + "]";
    const rapidjson::Value* fn = &root[i];
    if (!fn->IsObject()) return bad(where + ": expected an object");
    if (auto type = fn->FindMember("type"); type != fn->MemberEnd()) {
      if (!type->value.IsString() ||
          std::string_view{type->value.GetString()} != "function")
        return bad(where + ".type: expected \"function\"");
    }
    if (auto inner = fn->FindMember("function"); inner != fn->MemberEnd()) {
      if (!inner->value.IsObject())
        return bad(where + ".function: expected an object");
      fn = &inner->value;
      where += ".function";
    }
    tool_spec spec;
    if (auto err = read_string(*fn, "name", where, true, spec.name)) return err;
    if (auto err =
            read_string(*fn, "description", where, false, spec.description))
      return err;
    if (auto p = fn->FindMember("parameters"); p != fn->MemberEnd()) {
      if (!p->value.IsObject())
        return bad(where + ".parameters: expected a JSON Schema object");
      rapidjson::StringBuffer buf;
      rapidjson::Writer<rapidjson::StringBuffer> w{buf};
      p->value.Accept(w);
      spec.parameters.assign(buf.GetString(), buf.GetSize());
    }
    if (auto err = validate_spec(spec))
      return bad(where + ": " + to_failure(err).message);
    result.push_back(std::move(spec));
  }
  return result;
}

caf::expected<tool_choice> parse_tool_choice(std::string_view text) {
  tool_choice result;
  if (text == "none" || text == "auto" || text == "required") {
    result.mode = std::string{text};
    return result;
  }
  if (!valid_name(text))
    return bad("tool choice '" + std::string{text} +
               "': expected none, auto, required or a function name");
  result.mode = "function";
  result.function = std::string{text};
  return result;
}

chat_model bind_tools(const chat_model& model, const std::vector<tool>& tools,
                      std::optional<tool_choice> choice) {
  return model.bind_tools(specs_of(tools), std::move(choice));
}

ask make_tool_ask(const chat_model& model, input in,
                  std::vector<tool_spec> tools,
                  std::optional<tool_choice> choice,
                  std::vector<caf::actor> subscribers) {
  auto x = model.make_ask(std::move(in), std::move(subscribers));
  x.body.tools = std::move(tools);
  if (choice) x.body.tool_choice = std::move(choice);
  return x;
}

chat_model::result_type invoke_with_tools(const chat_model& model, input in,
                                          std::vector<tool_spec> tools,
                                          std::optional<tool_choice> choice) {
  caf::scoped_actor self{model.system()};
  chat_model::result_type result{make_error(errc::cancelled, "no answer")};
  self->request(model.dispatcher(), caf::infinite, ask_atom::value,
                make_tool_ask(model, std::move(in), std::move(tools),
                              std::move(choice)))
      .receive([&](ai_message& msg) { result = std::move(msg); },
               [&](caf::error& err) { result = std::move(err); });
  return result;
}

caf::actor spawn_tool_worker(caf::actor_system& sys, tool_function fn) {
  // The function goes in as a spawn argument: CAF 0.17 dereferences a null
  // argument tuple for argument-less spawns (UBSan flags it).
  return sys.spawn<caf::detached>(
      [](caf::event_based_actor* self, tool_function fn) -> caf::behavior {
        return {
            [=](tool_call_atom, const std::string& args) {
              auto rp = self->make_response_promise<std::string>();
              caf::expected<std::string> r{std::string{}};
              try {
                r = fn(args);
              } catch (const std::exception& e) {
                r = make_error(errc::protocol_error,
                               std::string{"the tool threw: "} + e.what());
              } catch (...) {
                r = make_error(errc::protocol_error, "the tool threw");
              }
              if (r)
                rp.deliver(std::move(*r));
              else
                rp.deliver(std::move(r.error()));
              // One call per worker.
              self->quit();
              return rp;
            },
        };
      },
      std::move(fn));
}

caf::expected<std::string> run_tool(caf::actor_system& sys, const tool& t,
                                    const tool_call& call,
                                    std::chrono::milliseconds timeout) {
  if (call.name != t.name())
    return bad("call of '" + call.name + "' given to tool '" + t.name() + "'");
  if (!t.function && !t.handler)
    return bad("tool '" + t.name() + "' has no handler");
  auto args = parse_arguments(t.spec, call.arguments);
  if (!args) return std::move(args.error());
  auto target = t.handler ? t.handler : spawn_tool_worker(sys, t.function);
  caf::scoped_actor self{sys};
  caf::expected<std::string> result{make_error(errc::cancelled, "no answer")};
  self->request(target, timeout, tool_call_atom::value, args->text())
      .receive([&](std::string& text) { result = std::move(text); },
               [&](caf::error& err) { result = std::move(err); });
  return result;
}

std::string tool_error_text(const caf::error& err) {
  switch (code_of(err)) {
  case errc::timeout:
    if (!is_maritaca_error(err))
      return "error: the tool did not answer in time";
    break;
  case errc::cancelled:
    if (!is_maritaca_error(err)) return "error: the tool is not available";
    break;
  default:
    break;
  }
  auto f = to_failure(err);
  if (is_maritaca_error(err) && !f.message.empty())
    return "error: " + f.message;
  return "error: " + f.describe();
}

} // namespace maritaca
