// Structured output against maritaca-sim: json_schema and json_object
// answers parsed and checked, misfits as typed errors, the actor and future
// forms.

#include "maritaca/structured.hpp"

#include "support/actors.hpp"
#include "support/spawn.hpp"

#include <caf/all.hpp>
#include <catch2/catch.hpp>

using namespace maritaca;
using namespace std::chrono_literals;
using test::sim_config;

namespace {

constexpr const char* city_schema = R"({
  "title": "City answer",
  "type": "object",
  "properties": {
    "answer": {"type": "string"},
    "city": {"type": "string"},
    "population": {"type": "integer"},
    "tags": {"type": "array", "items": {"type": "string"}},
    "kind": {"enum": ["capital", "town"]}
  },
  "required": ["answer", "city", "population", "kind"]
})";

} // namespace

TEST_CASE("with_structured_output asks with the schema and checks it") {
  test::sim_process sim;
  test::test_system ts;
  chat_model model{ts.sys, sim_config(sim)};
  auto structured = with_structured_output(model, city_schema);
  auto& fmt = structured.model().config().response_format;
  REQUIRE(fmt);
  CHECK(fmt->type == "json_schema");
  CHECK(fmt->schema_name == "City_answer");
  CHECK(fmt->schema == city_schema);
  auto doc = structured.invoke("What is the capital of France? It has 2100000 "
                               "people, the city in France.");
  REQUIRE(doc);
  CHECK(doc->get_string("/answer") == "The capital of France is Paris.");
  CHECK(doc->get_integer("/population") == 2100000);
  CHECK(doc->get_string("/kind") == "capital");
  CHECK(doc->type("/tags") == json_type::array);
  CHECK(doc->type("/city") == json_type::string);
  // The model itself is unchanged.
  CHECK_FALSE(model.config().response_format);
}

TEST_CASE("JSON mode answers a JSON object") {
  test::sim_process sim;
  test::test_system ts;
  chat_model model{ts.sys, sim_config(sim)};
  auto json = with_structured_output(model);
  REQUIRE(json.model().config().response_format);
  CHECK(json.model().config().response_format->type == "json_object");
  auto doc = json.invoke("What is 2+2?");
  REQUIRE(doc);
  CHECK(doc->type() == json_type::object);
  CHECK(doc->get_string("/answer") == "2 + 2 = 4.");
  // The raw answer is JSON text too.
  auto raw = with_json_mode(model).invoke("What is 2+2?");
  REQUIRE(raw);
  CHECK(raw->content() == doc->text());
}

TEST_CASE("answers that do not fit are protocol errors naming the path") {
  test::sim_process sim;
  test::test_system ts;
  chat_model model{ts.sys, sim_config(sim)};
  // JSON mode answers {"answer": ...}; a schema wanting more rejects it.
  auto answer = with_json_mode(model).invoke("What is 2+2?");
  REQUIRE(answer);
  auto misfit = parse_structured(answer->content(), city_schema);
  REQUIRE_FALSE(misfit);
  CHECK(code_of(misfit.error()) == errc::protocol_error);
  CHECK(to_failure(misfit.error()).message ==
        "$.city: required key is missing");
  // The same through a structured model whose model answers in JSON mode.
  structured_model strict{with_json_mode(model), city_schema};
  auto parsed = strict.parse(*answer);
  REQUIRE_FALSE(parsed);
  CHECK(to_failure(parsed.error()).message ==
        "$.city: required key is missing");
  // An answer cut short (max_tokens) is not JSON at all.
  auto cfg = sim_config(sim);
  cfg.max_tokens = 2;
  auto cut = with_structured_output(chat_model{ts.sys, cfg}, city_schema)
                 .invoke("What is the capital of France?");
  REQUIRE_FALSE(cut);
  CHECK(code_of(cut.error()) == errc::protocol_error);
  CHECK(to_failure(cut.error()).message.find("not valid JSON") !=
        std::string::npos);
  // A broken schema fails before anything is sent.
  test::reset_stats(sim);
  auto broken = with_structured_output(model, "[1, 2]").invoke("Hi");
  REQUIRE_FALSE(broken);
  CHECK(code_of(broken.error()) == errc::invalid_argument);
  CHECK(test::read_stats(sim).requests == 0);
}

TEST_CASE("structured output from futures and actors") {
  test::sim_process sim;
  test::test_system ts;
  chat_model model{ts.sys, sim_config(sim)};
  auto structured = with_structured_output(model, city_schema);
  auto f = structured.ainvoke("What is the capital of Japan?");
  REQUIRE(f.wait_for(30s) == std::future_status::ready);
  auto doc = f.get();
  REQUIRE(doc);
  CHECK(doc->get_string("/answer") == "The capital of Japan is Tokyo.");
  std::promise<std::string> from_actor;
  test::spawn_fn(ts.sys, [&](caf::event_based_actor* self) {
    structured.ainvoke(self, "What is the capital of Italy?",
                       [&](structured_model::result_type r) {
                         from_actor.set_value(
                             r ? r->get_string("/answer").value_or("?")
                               : describe(r.error()));
                       });
  });
  auto fa = from_actor.get_future();
  REQUIRE(fa.wait_for(30s) == std::future_status::ready);
  CHECK(fa.get() == "The capital of Italy is Rome.");
}
