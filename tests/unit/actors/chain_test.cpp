// Prompt templates, output parsers and chain composition, in memory (no
// ask leaves the process).

#include "maritaca/chain.hpp"

#include "support/actors.hpp"

#include <catch2/catch.hpp>

using namespace maritaca;
using namespace std::chrono_literals;

namespace {

/// The message of the error of formatting `text`, or "" on success.
std::string format_error(std::string_view text, const variables& vars = {}) {
  auto r = format_template(text, vars);
  if (r) return {};
  CHECK(code_of(r.error()) == errc::invalid_argument);
  return to_failure(r.error()).message;
}

ai_message answer(std::string content) {
  ai_message msg;
  msg.message = chat_message::assistant(std::move(content));
  return msg;
}

} // namespace

TEST_CASE("templates replace variables and unescape braces") {
  variables vars{{"name", "Ana"}, {"topic", "parrots"}, {"unused", "x"}};
  CHECK(format_template("Hi {name}, tell me about {topic}.", vars) ==
        "Hi Ana, tell me about parrots.");
  CHECK(format_template("{name}{name}", vars) == "AnaAna");
  CHECK(format_template("no variables", {}) == "no variables");
  CHECK(format_template("", {}) == "");
  CHECK(format_template(R"(JSON: {{"name": "{name}"}})", vars) ==
        R"(JSON: {"name": "Ana"})");
  CHECK(format_template("{{name}}", {}) == "{name}");
  CHECK(format_template("{{{name}}}", vars) == "{Ana}");
  // Values are not formatted again.
  CHECK(format_template("{name}", {{"name", "{topic}"}}) == "{topic}");
  CHECK(template_variables("{a} and {b}, {a} {{c}}") ==
        std::vector<std::string>{"a", "b"});
}

TEST_CASE("template errors are invalid_argument naming the problem") {
  CHECK(format_error("Hi {name}") == "prompt: missing variable 'name'");
  CHECK(format_error("Hi {name", {{"name", "x"}}) ==
        "prompt: unclosed '{' at offset 3");
  CHECK(format_error("a {b {c}}") == "prompt: unclosed '{' at offset 2");
  CHECK(format_error("a {} b") == "prompt: empty '{}' at offset 2");
  CHECK(format_error("a } b") ==
        "prompt: single '}' at offset 2 (write '}}' for a brace)");
}

TEST_CASE("prompt templates format every message with its role") {
  prompt_template p{{"system", "You answer in {lang}."},
                    {"human", "What is {x}?"},
                    {"ai", "Let me think."}};
  CHECK(p.variable_names() == std::vector<std::string>{"lang", "x"});
  auto in = p.format({{"lang", "Portuguese"}, {"x", "2+2"}});
  REQUIRE(in);
  REQUIRE(in->messages.size() == 3);
  CHECK(in->messages[0] == chat_message::system("You answer in Portuguese."));
  CHECK(in->messages[1] == chat_message::user("What is 2+2?"));
  CHECK(in->messages[2] == chat_message::assistant("Let me think."));
  auto missing = p.format({{"lang", "pt"}});
  REQUIRE_FALSE(missing);
  CHECK(to_failure(missing.error()).message == "prompt: missing variable 'x'");
  prompt_template single = "Say {w}";
  auto one = single.format({{"w", "oi"}});
  REQUIRE(one);
  CHECK(one->messages ==
        std::vector<chat_message>{chat_message::user("Say oi")});
}

TEST_CASE("output parsers read text, JSON and structured JSON") {
  auto text = output_parser::text().parse(answer("plain words"));
  REQUIRE(text);
  CHECK(text->text == "plain words");
  CHECK_FALSE(text->json);
  CHECK(text->message.content() == "plain words");
  auto json = output_parser::json().parse(answer(R"({"a": [1, 2]})"));
  REQUIRE(json);
  REQUIRE(json->json);
  CHECK(json->json->size("/a") == 2);
  CHECK(json->text == R"({"a": [1, 2]})");
  auto not_json = output_parser::json().parse(answer("sure! {"));
  REQUIRE_FALSE(not_json);
  CHECK(code_of(not_json.error()) == errc::protocol_error);
  auto schema = R"({"type":"object","required":["city"],
                    "properties":{"city":{"type":"string"}}})";
  auto fits =
      output_parser::structured(schema).parse(answer(R"({"city": "Recife"})"));
  REQUIRE(fits);
  CHECK(fits->json->get_string("/city") == "Recife");
  auto misfit =
      output_parser::structured(schema).parse(answer(R"({"town": "Recife"})"));
  REQUIRE_FALSE(misfit);
  CHECK(code_of(misfit.error()) == errc::protocol_error);
  CHECK(to_failure(misfit.error()).message ==
        "$.city: required key is missing");
  auto broken = output_parser::structured("[]").parse(answer("{}"));
  REQUIRE_FALSE(broken);
  CHECK(code_of(broken.error()) == errc::invalid_argument);
}

TEST_CASE("chains compose with | and keep their settings") {
  test::test_system ts;
  model_config cfg;
  cfg.base_url = "http://127.0.0.1:9/api";
  cfg.ask_timeout = 10s;
  chat_model model{ts.sys, cfg};
  auto backup = model.with_config(cfg.with_model("sabiazinho-4"));
  auto c =
      prompt_template{"Tell me about {topic}."} | model | output_parser::json();
  CHECK(c.parser().type() == output_parser::kind::json);
  CHECK(c.prompt().variable_names() == std::vector<std::string>{"topic"});
  REQUIRE(c.models().size() == 1);
  auto r = c.with_retry(2, 50ms).with_fallbacks({backup});
  CHECK(r.retries() == 2);
  CHECK(r.backoff() == 50ms);
  REQUIRE(r.models().size() == 2);
  CHECK(r.models()[1].config().model == "sabiazinho-4");
  // Two models, three attempts each, waits of 50 + 100 ms between them.
  CHECK(r.deadline() == 2 * (3 * 10s + 150ms));
  CHECK(r.with_deadline(2s).deadline() == 2s);
  CHECK(r.run_timeout() > r.deadline());
  // The parsers ask for what they read, unless the model chose a format.
  CHECK_FALSE(output_parser::text().prepare(model).config().response_format);
  auto json_model = output_parser::json().prepare(model);
  REQUIRE(json_model.config().response_format);
  CHECK(json_model.config().response_format->type == "json_object");
  auto schema_model =
      output_parser::structured(R"({"title":"City info"})").prepare(model);
  REQUIRE(schema_model.config().response_format);
  CHECK(schema_model.config().response_format->type == "json_schema");
  CHECK(schema_model.config().response_format->schema_name == "City_info");
  CHECK(output_parser::structured("{}")
            .prepare(json_model)
            .config()
            .response_format->type == "json_object");
  // `model | parser` takes the whole input as `{input}`.
  auto bare = model | output_parser::text();
  CHECK(bare.prompt().variable_names() == std::vector<std::string>{"input"});
  // A missing variable fails before anything is sent.
  auto missing = c.invoke({{"subject", "x"}});
  REQUIRE_FALSE(missing);
  CHECK(code_of(missing.error()) == errc::invalid_argument);
}
