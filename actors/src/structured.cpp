#include "maritaca/structured.hpp"

#include "json_internal.hpp"

#include <caf/event_based_actor.hpp>

#include <rapidjson/error/en.h>
#include <rapidjson/pointer.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cmath>
#include <limits>

namespace maritaca {

namespace {

/// Longest excerpt of a value quoted in an error message.
constexpr std::size_t max_excerpt = 60;

/// How deep schemas (and `$ref` chains) may nest before we give up.
constexpr int max_depth = 64;

bool is_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && is_space(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && is_space(s.back()))
    s.remove_suffix(1);
  return s;
}

/// Drops a Markdown code fence around `s` ("```json\n...\n```").
std::string_view strip_fence(std::string_view s) noexcept {
  s = trim(s);
  if (s.size() < 6 || s.substr(0, 3) != "```" ||
      s.substr(s.size() - 3) != "```")
    return s;
  s.remove_suffix(3);
  auto nl = s.find('\n');
  if (nl == std::string_view::npos) return trim(s.substr(3));
  return trim(s.substr(nl + 1));
}

std::string compact(const rapidjson::Value& x) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w{buf};
  x.Accept(w);
  return std::string{buf.GetString(), buf.GetSize()};
}

/// `x` as compact JSON, cut to `max_excerpt` bytes.
std::string excerpt(const rapidjson::Value& x) {
  auto s = compact(x);
  if (s.size() > max_excerpt) {
    s.resize(max_excerpt);
    s += "...";
  }
  return s;
}

/// Finds the value at JSON Pointer `pointer` below `root`, or null.
const rapidjson::Value* find(const rapidjson::Value& root,
                             std::string_view pointer) {
  if (pointer.empty()) return &root;
  rapidjson::Pointer ptr{pointer.data(), pointer.size()};
  if (!ptr.IsValid()) return nullptr;
  return ptr.Get(root);
}

bool is_identifier(std::string_view key) noexcept {
  if (key.empty()) return false;
  for (std::size_t i = 0; i < key.size(); ++i) {
    auto c = key[i];
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

/// Appends `.key` (or `["key"]` for other keys) to `path`.
std::string member_path(const std::string& path, std::string_view key) {
  if (is_identifier(key)) return path + "." + std::string{key};
  rapidjson::Value k{rapidjson::StringRef(key.data(), key.size())};
  return path + "[" + compact(k) + "]";
}

std::string index_path(const std::string& path, std::size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

caf::error misfit(const std::string& path, std::string what) {
  return make_error(errc::protocol_error, path + ": " + what);
}

bool is_integral(const rapidjson::Value& x) noexcept {
  if (x.IsInt64() || x.IsUint64()) return true;
  if (!x.IsDouble()) return false;
  auto d = x.GetDouble();
  return std::isfinite(d) && d == std::floor(d);
}

/// Whether `value` has the JSON Schema type `name`.
bool has_type(const rapidjson::Value& value, std::string_view name) noexcept {
  if (name == "object") return value.IsObject();
  if (name == "array") return value.IsArray();
  if (name == "string") return value.IsString();
  if (name == "number") return value.IsNumber();
  if (name == "integer") return value.IsNumber() && is_integral(value);
  if (name == "boolean") return value.IsBool();
  if (name == "null") return value.IsNull();
  // An unknown type name constrains nothing.
  return true;
}

/// Checks values against a schema document (the `root` of `$ref`s).
class checker {
public:
  explicit checker(const rapidjson::Value& root) : root_(root) {}

  caf::error check(const rapidjson::Value& schema,
                   const rapidjson::Value& value, const std::string& path,
                   int depth) const {
    if (depth > max_depth)
      return make_error(errc::invalid_argument,
                        path + ": the schema nests too deeply (a $ref cycle?)");
    if (schema.IsBool())
      return schema.GetBool() ? caf::error{}
                              : misfit(path, "no value is allowed here");
    if (!schema.IsObject()) return {};
    if (auto ref = schema.FindMember("$ref");
        ref != schema.MemberEnd() && ref->value.IsString())
      return check_ref(ref->value, value, path, depth);
    if (auto err = check_type(schema, value, path)) return err;
    if (auto err = check_enum(schema, value, path)) return err;
    if (auto err = check_alternatives(schema, value, path, depth)) return err;
    if (value.IsObject()) return check_object(schema, value, path, depth);
    if (value.IsArray()) return check_array(schema, value, path, depth);
    return {};
  }

private:
  caf::error check_ref(const rapidjson::Value& ref,
                       const rapidjson::Value& value, const std::string& path,
                       int depth) const {
    std::string_view target{ref.GetString(), ref.GetStringLength()};
    const rapidjson::Value* resolved = nullptr;
    if (!target.empty() && target.front() == '#')
      resolved = find(root_, target.substr(1));
    if (resolved == nullptr)
      return make_error(errc::invalid_argument,
                        path + ": the schema's $ref \"" + std::string{target} +
                            "\" does not resolve");
    return check(*resolved, value, path, depth + 1);
  }

  caf::error check_type(const rapidjson::Value& schema,
                        const rapidjson::Value& value,
                        const std::string& path) const {
    auto t = schema.FindMember("type");
    if (t == schema.MemberEnd()) return {};
    std::string expected;
    auto fits = [&](const rapidjson::Value& name) {
      if (!name.IsString()) return false;
      std::string_view n{name.GetString(), name.GetStringLength()};
      if (!expected.empty()) expected += " or ";
      expected += n;
      return has_type(value, n);
    };
    if (t->value.IsString()) {
      if (fits(t->value)) return {};
    } else if (t->value.IsArray()) {
      bool any = false;
      for (auto& name : t->value.GetArray())
        any = fits(name) || any;
      if (any || expected.empty()) return {};
    } else {
      return {};
    }
    return misfit(path, "expected " + expected + ", got " +
                            std::string{to_string(type_of(value))});
  }

  caf::error check_enum(const rapidjson::Value& schema,
                        const rapidjson::Value& value,
                        const std::string& path) const {
    if (auto e = schema.FindMember("enum");
        e != schema.MemberEnd() && e->value.IsArray()) {
      for (auto& x : e->value.GetArray())
        if (x == value) return {};
      return misfit(path,
                    excerpt(value) + " is not one of " + excerpt(e->value));
    }
    if (auto c = schema.FindMember("const");
        c != schema.MemberEnd() && !(c->value == value))
      return misfit(path, excerpt(value) + " is not " + excerpt(c->value));
    return {};
  }

  caf::error check_alternatives(const rapidjson::Value& schema,
                                const rapidjson::Value& value,
                                const std::string& path, int depth) const {
    if (auto all = schema.FindMember("allOf");
        all != schema.MemberEnd() && all->value.IsArray()) {
      for (auto& s : all->value.GetArray())
        if (auto err = check(s, value, path, depth + 1)) return err;
    }
    for (const char* key : {"anyOf", "oneOf"}) {
      auto alts = schema.FindMember(key);
      if (alts == schema.MemberEnd() || !alts->value.IsArray() ||
          alts->value.Empty())
        continue;
      caf::error last;
      for (auto& s : alts->value.GetArray()) {
        last = check(s, value, path, depth + 1);
        if (!last) break;
      }
      if (last) {
        // A broken schema stays the caller's problem.
        if (code_of(last) == errc::invalid_argument) return last;
        return misfit(
            path, "fits none of the " + std::string{key} +
                      " alternatives (last: " + to_failure(last).message + ")");
      }
    }
    return {};
  }

  caf::error check_object(const rapidjson::Value& schema,
                          const rapidjson::Value& value,
                          const std::string& path, int depth) const {
    if (auto req = schema.FindMember("required");
        req != schema.MemberEnd() && req->value.IsArray()) {
      for (auto& name : req->value.GetArray()) {
        if (!name.IsString()) continue;
        if (!value.HasMember(name))
          return misfit(
              member_path(path, {name.GetString(), name.GetStringLength()}),
              "required key is missing");
      }
    }
    auto props = schema.FindMember("properties");
    bool has_props = props != schema.MemberEnd() && props->value.IsObject();
    auto extra = schema.FindMember("additionalProperties");
    bool has_extra = extra != schema.MemberEnd();
    for (auto& m : value.GetObject()) {
      std::string_view key{m.name.GetString(), m.name.GetStringLength()};
      if (has_props) {
        if (auto p = props->value.FindMember(m.name);
            p != props->value.MemberEnd()) {
          if (auto err =
                  check(p->value, m.value, member_path(path, key), depth + 1))
            return err;
          continue;
        }
      }
      if (!has_extra) continue;
      if (extra->value.IsBool() && !extra->value.GetBool())
        return misfit(member_path(path, key), "unexpected key");
      if (extra->value.IsObject())
        if (auto err =
                check(extra->value, m.value, member_path(path, key), depth + 1))
          return err;
    }
    return {};
  }

  caf::error check_array(const rapidjson::Value& schema,
                         const rapidjson::Value& value, const std::string& path,
                         int depth) const {
    auto items = schema.FindMember("items");
    if (items == schema.MemberEnd()) return {};
    auto arr = value.GetArray();
    for (rapidjson::SizeType i = 0; i < arr.Size(); ++i) {
      const rapidjson::Value* s = nullptr;
      if (items->value.IsArray()) {
        // Tuple form: one schema per position, the rest unconstrained.
        if (i < items->value.Size()) s = &items->value[i];
      } else {
        s = &items->value;
      }
      if (s != nullptr)
        if (auto err = check(*s, arr[i], index_path(path, i), depth + 1))
          return err;
    }
    return {};
  }

  const rapidjson::Value& root_;
};

/// Makes a `response_format` name out of a schema title.
std::string format_name(std::string title) {
  if (title.empty()) return "output";
  if (title.size() > 64) title.resize(64);
  for (auto& c : title) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '-';
    if (!ok) c = '_';
  }
  return title;
}

} // namespace

json_type type_of(const rapidjson::Value& x) noexcept {
  if (x.IsNull()) return json_type::null;
  if (x.IsBool()) return json_type::boolean;
  if (x.IsString()) return json_type::string;
  if (x.IsArray()) return json_type::array;
  if (x.IsObject()) return json_type::object;
  if (x.IsInt64() || x.IsUint64()) return json_type::integer;
  return json_type::number;
}

std::string_view to_string(json_type x) noexcept {
  switch (x) {
  case json_type::missing:
    return "missing";
  case json_type::null:
    return "null";
  case json_type::boolean:
    return "boolean";
  case json_type::integer:
    return "integer";
  case json_type::number:
    return "number";
  case json_type::string:
    return "string";
  case json_type::array:
    return "array";
  case json_type::object:
    return "object";
  }
  return "missing";
}

// -- json_document
// --------------------------------------------------------------

json_document::json_document() {
  auto x = std::make_shared<impl>();
  x->text = "null";
  x->doc.SetNull();
  impl_ = std::move(x);
}

caf::expected<json_document> json_document::parse(std::string_view text) {
  auto body = strip_fence(text);
  auto x = std::make_shared<impl>();
  x->text.assign(body.data(), body.size());
  x->doc.Parse(x->text.data(), x->text.size());
  if (x->doc.HasParseError()) {
    auto offset = x->doc.GetErrorOffset();
    auto near = x->text.substr(offset > 10 ? offset - 10 : 0, 30);
    for (auto& c : near)
      if (static_cast<unsigned char>(c) < 0x20) c = ' ';
    return make_error(errc::protocol_error,
                      std::string{"$: not valid JSON: "} +
                          rapidjson::GetParseError_En(x->doc.GetParseError()) +
                          " (offset " + std::to_string(offset) + ", near '" +
                          near + "')");
  }
  json_document result;
  result.impl_ = std::move(x);
  return result;
}

const std::string& json_document::text() const noexcept {
  return impl_->text;
}

json_type json_document::type(std::string_view pointer) const {
  auto x = find(impl_->doc, pointer);
  return x ? type_of(*x) : json_type::missing;
}

std::optional<std::string>
json_document::get_string(std::string_view pointer) const {
  auto x = find(impl_->doc, pointer);
  if (x == nullptr || !x->IsString()) return std::nullopt;
  return std::string{x->GetString(), x->GetStringLength()};
}

std::optional<double>
json_document::get_number(std::string_view pointer) const {
  auto x = find(impl_->doc, pointer);
  if (x == nullptr || !x->IsNumber()) return std::nullopt;
  return x->GetDouble();
}

std::optional<int64_t>
json_document::get_integer(std::string_view pointer) const {
  auto x = find(impl_->doc, pointer);
  if (x == nullptr || !x->IsNumber()) return std::nullopt;
  if (x->IsInt64()) return x->GetInt64();
  if (x->IsDouble() && is_integral(*x)) {
    auto d = x->GetDouble();
    // Beyond +-2^63 the cast would be undefined.
    if (std::abs(d) < 9.2e18) return static_cast<int64_t>(d);
  }
  return std::nullopt;
}

std::optional<bool> json_document::get_bool(std::string_view pointer) const {
  auto x = find(impl_->doc, pointer);
  if (x == nullptr || !x->IsBool()) return std::nullopt;
  return x->GetBool();
}

std::size_t json_document::size(std::string_view pointer) const {
  auto x = find(impl_->doc, pointer);
  if (x == nullptr) return 0;
  if (x->IsArray()) return x->Size();
  if (x->IsObject()) return x->MemberCount();
  return 0;
}

std::vector<std::string> json_document::keys(std::string_view pointer) const {
  std::vector<std::string> result;
  auto x = find(impl_->doc, pointer);
  if (x == nullptr || !x->IsObject()) return result;
  for (auto& m : x->GetObject())
    result.emplace_back(m.name.GetString(), m.name.GetStringLength());
  return result;
}

std::optional<std::string> json_document::dump(std::string_view pointer) const {
  auto x = find(impl_->doc, pointer);
  if (x == nullptr) return std::nullopt;
  return compact(*x);
}

// -- json_schema
// ----------------------------------------------------------------

caf::expected<json_schema> json_schema::parse(std::string_view text) {
  auto doc = json_document::parse(text);
  if (!doc)
    return make_error(errc::invalid_argument,
                      "schema: " + to_failure(doc.error()).message);
  if (doc->type() != json_type::object)
    return make_error(errc::invalid_argument,
                      "schema: expected a JSON object, got " +
                          std::string{to_string(doc->type())});
  return json_schema{std::move(*doc)};
}

std::string json_schema::title() const {
  return doc_.get_string("/title").value_or("");
}

caf::error json_schema::check(const json_document& doc) const {
  auto& schema = json_access::root(doc_);
  return checker{schema}.check(schema, json_access::root(doc), "$", 0);
}

caf::expected<json_document> parse_structured(std::string_view text,
                                              std::string_view schema) {
  auto s = json_schema::parse(schema);
  if (!s) return std::move(s.error());
  auto doc = json_document::parse(text);
  if (!doc) return doc;
  if (auto err = s->check(*doc)) return err;
  return doc;
}

// -- structured output
// ----------------------------------------------------------

chat_model with_json_mode(const chat_model& model) {
  auto cfg = model.config();
  response_format fmt;
  fmt.type = "json_object";
  cfg.response_format = std::move(fmt);
  return model.with_config(std::move(cfg));
}

chat_model with_json_schema(const chat_model& model, std::string schema,
                            bool strict) {
  auto cfg = model.config();
  response_format fmt;
  fmt.type = "json_schema";
  if (auto s = json_schema::parse(schema))
    fmt.schema_name = format_name(s->title());
  else
    fmt.schema_name = "output";
  fmt.schema = std::move(schema);
  fmt.strict = strict;
  cfg.response_format = std::move(fmt);
  return model.with_config(std::move(cfg));
}

structured_model::structured_model(const chat_model& model, std::string schema)
    : model_(schema.empty() ? with_json_mode(model)
                            : with_json_schema(model, schema)),
      schema_text_(std::move(schema)) {
  if (!schema_text_.empty())
    schema_ = std::make_shared<const caf::expected<json_schema>>(
        json_schema::parse(schema_text_));
}

structured_model::result_type
structured_model::parse(const ai_message& msg) const {
  if (schema_ && !*schema_) return schema_->error();
  if (msg.content().empty() && !msg.tool_calls().empty())
    return make_error(errc::protocol_error,
                      "$: the model called tools instead of answering JSON");
  auto doc = json_document::parse(msg.content());
  if (!doc) return doc;
  if (schema_) {
    if (auto err = (*schema_)->check(*doc)) return err;
  } else if (doc->type() != json_type::object) {
    return make_error(errc::protocol_error,
                      "$: expected object, got " +
                          std::string{to_string(doc->type())});
  }
  return doc;
}

structured_model::result_type structured_model::invoke(input in) const {
  // A broken schema fails before anything is sent.
  if (schema_ && !*schema_) return schema_->error();
  auto answer = model_.invoke(std::move(in));
  if (!answer) return std::move(answer.error());
  return parse(*answer);
}

std::future<structured_model::result_type>
structured_model::ainvoke(input in) const {
  auto prom = std::make_shared<std::promise<result_type>>();
  auto fut = prom->get_future();
  if (schema_ && !*schema_) {
    prom->set_value(schema_->error());
    return fut;
  }
  // A small actor per future, as `chat_model::ainvoke` does. Arguments
  // rather than captures: CAF 0.17 dereferences a null argument tuple for
  // argument-less spawns (UBSan flags it). The actor's copy must not own
  // the model's actor system (see `chat_model::for_actor`).
  auto copy = *this;
  copy.model_ = model_.for_actor();
  model_.system().spawn(
      [](caf::event_based_actor* self, decltype(prom) prom,
         structured_model copy, input in) {
        copy.ainvoke(self, std::move(in),
                     [prom](result_type r) { prom->set_value(std::move(r)); });
      },
      prom, std::move(copy), std::move(in));
  return fut;
}

structured_model with_structured_output(const chat_model& model,
                                        std::string schema) {
  return structured_model{model, std::move(schema)};
}

structured_model with_structured_output(const chat_model& model) {
  return structured_model{model};
}

} // namespace maritaca
