// JSON documents and schema checks, in memory.

#include "maritaca/structured.hpp"

#include <catch2/catch.hpp>

using namespace maritaca;

namespace {

/// The message of the error `check` gives, or "" when `json` fits.
std::string misfit(std::string_view schema, std::string_view json) {
  auto r = parse_structured(json, schema);
  if (r) return {};
  CHECK(code_of(r.error()) == errc::protocol_error);
  return to_failure(r.error()).message;
}

constexpr const char* person = R"({
  "title": "Person record",
  "type": "object",
  "properties": {
    "name": {"type": "string"},
    "age": {"type": "integer"},
    "height": {"type": "number"},
    "admin": {"type": "boolean"},
    "nickname": {"type": ["string", "null"]},
    "role": {"enum": ["user", "admin"]},
    "address": {
      "type": "object",
      "properties": {"city": {"type": "string"}, "zip": {"type": "string"}},
      "required": ["city"]
    },
    "tags": {"type": "array", "items": {"type": "string"}}
  },
  "required": ["name", "age"]
})";

} // namespace

TEST_CASE("json_document parses and reads values by pointer") {
  auto doc = json_document::parse(
      R"({"a": {"b": [1, 2.5, "x", true, null]}, "s": "olá", "n": -3})");
  REQUIRE(doc);
  CHECK(doc->type() == json_type::object);
  CHECK(doc->type("/a/b") == json_type::array);
  CHECK(doc->size("/a/b") == 5);
  CHECK(doc->type("/a/b/0") == json_type::integer);
  CHECK(doc->type("/a/b/1") == json_type::number);
  CHECK(doc->type("/a/b/4") == json_type::null);
  CHECK(doc->type("/nope") == json_type::missing);
  CHECK_FALSE(doc->contains("/a/b/9"));
  CHECK(doc->get_integer("/a/b/0") == 1);
  CHECK(doc->get_number("/a/b/1") == 2.5);
  CHECK_FALSE(doc->get_integer("/a/b/1"));
  CHECK(doc->get_string("/a/b/2") == "x");
  CHECK(doc->get_bool("/a/b/3") == true);
  CHECK(doc->get_string("/s") == "olá");
  CHECK(doc->get_integer("/n") == -3);
  CHECK_FALSE(doc->get_string("/n"));
  CHECK(doc->keys() == std::vector<std::string>{"a", "s", "n"});
  CHECK(doc->dump("/a") == R"({"b":[1,2.5,"x",true,null]})");
  CHECK_FALSE(doc->dump("/zz"));
  // Copies share the tree.
  auto copy = *doc;
  CHECK(copy.text() == doc->text());
  // The default document is null.
  CHECK(json_document{}.type() == json_type::null);
}

TEST_CASE("json_document accepts code fences and rejects non-JSON") {
  auto fenced = json_document::parse("```json\n{\"a\": 1}\n```\n");
  REQUIRE(fenced);
  CHECK(fenced->text() == "{\"a\": 1}");
  CHECK(fenced->get_integer("/a") == 1);
  for (auto text : {"", "{", "{\"a\":}", "[1,]", "{} {}", "nope", "```\n```"}) {
    INFO(text);
    auto r = json_document::parse(text);
    REQUIRE_FALSE(r);
    CHECK(code_of(r.error()) == errc::protocol_error);
    CHECK(to_failure(r.error()).message.find("not valid JSON") !=
          std::string::npos);
  }
}

TEST_CASE("a document that fits its schema passes") {
  CHECK(misfit(person, R"({"name": "Ana", "age": 30})") == "");
  CHECK(misfit(person, R"({"name": "Ana", "age": 30, "height": 1.7,
    "admin": false, "nickname": null, "role": "admin",
    "address": {"city": "Recife"}, "tags": ["a", "b"], "extra": 1})") == "");
  // 30.0 is an integer in JSON Schema; 2 is a number.
  CHECK(misfit(person, R"({"name": "Ana", "age": 30.0, "height": 2})") == "");
}

TEST_CASE("misfits name the offending path") {
  CHECK(misfit(person, R"({"age": 30})") == "$.name: required key is missing");
  CHECK(misfit(person, R"({"name": 7, "age": 30})") ==
        "$.name: expected string, got integer");
  CHECK(misfit(person, R"({"name": "Ana", "age": 30.5})") ==
        "$.age: expected integer, got number");
  CHECK(misfit(person, R"({"name": "Ana", "age": "30"})") ==
        "$.age: expected integer, got string");
  CHECK(misfit(person, R"({"name": "Ana", "age": 1, "admin": "yes"})") ==
        "$.admin: expected boolean, got string");
  CHECK(misfit(person, R"({"name": "Ana", "age": 1, "nickname": 3})") ==
        "$.nickname: expected string or null, got integer");
  CHECK(misfit(person, R"({"name": "Ana", "age": 1, "role": "root"})") ==
        R"($.role: "root" is not one of ["user","admin"])");
  CHECK(misfit(person, R"({"name": "Ana", "age": 1, "address": {}})") ==
        "$.address.city: required key is missing");
  CHECK(misfit(person,
               R"({"name": "Ana", "age": 1, "address": {"city": false}})") ==
        "$.address.city: expected string, got boolean");
  CHECK(misfit(person, R"({"name": "Ana", "age": 1, "tags": ["a", 2]})") ==
        "$.tags[1]: expected string, got integer");
  CHECK(misfit(person, R"([1])") == "$: expected object, got array");
  // Keys that are not identifiers are quoted.
  CHECK(misfit(R"({"required": ["first name"]})", "{}") ==
        R"($["first name"]: required key is missing)");
}

TEST_CASE("the schema subset: additionalProperties, refs, alternatives") {
  auto closed = R"({"type": "object", "properties": {"a": {}},
                    "additionalProperties": false})";
  CHECK(misfit(closed, R"({"a": 1})") == "");
  CHECK(misfit(closed, R"({"a": 1, "b": 2})") == "$.b: unexpected key");
  auto typed_extra = R"({"additionalProperties": {"type": "integer"}})";
  CHECK(misfit(typed_extra, R"({"x": "1"})") ==
        "$.x: expected integer, got string");
  auto refs = R"({"$defs": {"point": {"type": "object",
                   "properties": {"x": {"type": "number"}},
                   "required": ["x"]}},
                 "type": "array", "items": {"$ref": "#/$defs/point"}})";
  CHECK(misfit(refs, R"([{"x": 1}, {"x": 2.5}])") == "");
  CHECK(misfit(refs, R"([{"x": 1}, {}])") == "$[1].x: required key is missing");
  auto any = R"({"anyOf": [{"type": "string"}, {"type": "integer"}]})";
  CHECK(misfit(any, "\"s\"") == "");
  CHECK(misfit(any, "3") == "");
  CHECK(misfit(any, "true").find("$: fits none of the anyOf alternatives") ==
        0);
  CHECK(misfit(R"({"const": "v1"})", "\"v2\"") == R"($: "v2" is not "v1")");
  auto tuple = R"({"items": [{"type": "string"}, {"type": "integer"}]})";
  CHECK(misfit(tuple, R"(["a", 1, null])") == "");
  CHECK(misfit(tuple, R"([1])") == "$[0]: expected string, got integer");
  // Unknown keywords and types constrain nothing.
  CHECK(misfit(R"({"type": "string", "minLength": 100})", "\"x\"") == "");
}

TEST_CASE("broken schemas are the caller's mistake") {
  for (auto text : {"", "[]", "\"object\"", "{"}) {
    INFO(text);
    auto s = json_schema::parse(text);
    REQUIRE_FALSE(s);
    CHECK(code_of(s.error()) == errc::invalid_argument);
  }
  auto dangling = parse_structured("{}", R"({"$ref": "#/nowhere"})");
  REQUIRE_FALSE(dangling);
  CHECK(code_of(dangling.error()) == errc::invalid_argument);
  auto cycle = parse_structured("{}", R"({"$ref": "#"})");
  REQUIRE_FALSE(cycle);
  CHECK(code_of(cycle.error()) == errc::invalid_argument);
  auto s = json_schema::parse(person);
  REQUIRE(s);
  CHECK(s->title() == "Person record");
}
