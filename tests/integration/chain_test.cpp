// Chains against maritaca-sim: template -> model -> parser, parallel
// branches, retries, fallbacks (on 429, 5xx and timeouts, not on 400),
// streaming through, and the actor and future forms.

#include "maritaca/chain.hpp"

#include "support/actors.hpp"
#include "support/spawn.hpp"

#include <caf/all.hpp>
#include <catch2/catch.hpp>

#include <atomic>
#include <thread>

using namespace maritaca;
using namespace std::chrono_literals;
using test::sim_config;

namespace {

/// A configuration whose asks fail once per attempt with `fault` and are
/// not retried by the model itself.
model_config faulty(const test::sim_process& sim, std::string fault) {
  auto cfg =
      test::with_header(sim_config(sim), "x-sim-fault", std::move(fault));
  cfg.retry.max_retries = 0;
  return cfg;
}

prompt_template capital_prompt() {
  return {{"system", "You are brief."},
          {"human", "What is the capital of {country}?"}};
}

} // namespace

TEST_CASE("template, model and text parser") {
  test::sim_process sim;
  test::test_system ts;
  chat_model model{ts.sys, sim_config(sim)};
  auto c = capital_prompt() | model;
  auto r = c.invoke({{"country", "Brazil"}});
  REQUIRE(r);
  CHECK(r->text == "The capital of Brazil is Brasília.");
  CHECK(r->message.content() == r->text);
  CHECK(r->model_index == 0);
  CHECK(r->attempts == 1);
  CHECK_FALSE(r->json);
  // A missing variable is the caller's mistake; nothing is sent.
  test::reset_stats(sim);
  auto missing = c.invoke({{"land", "Brazil"}});
  REQUIRE_FALSE(missing);
  CHECK(code_of(missing.error()) == errc::invalid_argument);
  CHECK(test::read_stats(sim).requests == 0);
  // A plain string prompt works as well.
  auto sum = ("What is {a}+{b}?" | model).invoke({{"a", "20"}, {"b", "22"}});
  REQUIRE(sum);
  CHECK(sum->text.find("42") != std::string::npos);
}

TEST_CASE("JSON and structured parsers") {
  test::sim_process sim;
  test::test_system ts;
  chat_model model{ts.sys, sim_config(sim)};
  auto json = capital_prompt() | model | output_parser::json();
  auto j = json.invoke({{"country", "France"}});
  REQUIRE(j);
  REQUIRE(j->json);
  CHECK(j->json->get_string("/answer") == "The capital of France is Paris.");
  auto schema = R"({"type": "object",
    "properties": {"answer": {"type": "string"}, "confidence": {"type": "number"}},
    "required": ["answer", "confidence"]})";
  auto structured =
      capital_prompt() | model | output_parser::structured(schema);
  auto s = structured.invoke({{"country", "Japan"}});
  REQUIRE(s);
  CHECK(s->json->get_string("/answer") == "The capital of Japan is Tokyo.");
  CHECK(s->json->type("/confidence") == json_type::integer);
  // A model already in JSON mode keeps it: its answer lacks "city", so the
  // parser rejects it -- a misfit that a retry tries once more.
  auto misfit_schema = R"({"type":"object","required":["city"]})";
  auto misfit = capital_prompt() | with_json_mode(model) |
                output_parser::structured(misfit_schema);
  test::reset_stats(sim);
  auto m = misfit.with_retry(1, 10ms).invoke({{"country", "Italy"}});
  REQUIRE_FALSE(m);
  CHECK(code_of(m.error()) == errc::protocol_error);
  CHECK(to_failure(m.error()).message == "$.city: required key is missing");
  CHECK(test::read_stats(sim).requests == 2);
}

TEST_CASE("parallel branches run on the same variables at once") {
  test::sim_process sim{{"--token-delay-ms", "1"}};
  test::test_system ts;
  chat_model model{ts.sys, sim_config(sim)};
  auto p = parallel({
      {"capital", capital_prompt() | model},
      {"json", capital_prompt() | model | output_parser::json()},
      {"echo", prompt_template{"Repeat: {country} {missing}"} | model},
  });
  auto rs = p.invoke({{"country", "Portugal"}});
  REQUIRE(rs.size() == 3);
  REQUIRE(rs.at("capital"));
  CHECK(rs.at("capital")->text == "The capital of Portugal is Lisbon.");
  REQUIRE(rs.at("json"));
  CHECK(rs.at("json")->json->get_string("/answer") ==
        "The capital of Portugal is Lisbon.");
  // A failing branch fails alone.
  REQUIRE_FALSE(rs.at("echo"));
  CHECK(code_of(rs.at("echo").error()) == errc::invalid_argument);
  CHECK_FALSE(to_variables(rs));
  rs.erase("echo");
  auto vars = to_variables(rs);
  REQUIRE(vars);
  CHECK(vars->at("capital") == "The capital of Portugal is Lisbon.");
  // The branches overlap in time: three primaries that each stall until
  // their 400 ms deadline, then fall back, take about one deadline.
  auto stall_cfg = faulty(sim, "stall-first");
  stall_cfg.timeouts.first_byte = 400ms;
  chat_model stalled{ts.sys, stall_cfg};
  auto slow = [&](const char* text) {
    return (prompt_template{text} | stalled).with_fallbacks({model});
  };
  auto wide = parallel({
      {"a", slow("What is the capital of {x}?")},
      {"b", slow("What is the capital of {x}, please?")},
      {"c", slow("Tell me the capital of {x}.")},
  });
  auto start = std::chrono::steady_clock::now();
  auto f = wide.ainvoke({{"x", "Brazil"}});
  REQUIRE(f.wait_for(30s) == std::future_status::ready);
  auto all = f.get();
  CHECK(std::chrono::steady_clock::now() - start < 1150ms);
  REQUIRE(all.size() == 3);
  for (auto& [name, r] : all) {
    INFO(name);
    REQUIRE(r);
    CHECK(r->model_index == 1);
    CHECK(r->text.find("Brasília") != std::string::npos);
  }
}

TEST_CASE("runs do not keep a model's own actor system alive") {
  test::sim_process sim;
  std::future<chain::result_type> single;
  std::future<parallel_chain::result_type> both;
  {
    // The model makes its own system; its asks stall at the server.
    chat_model model{faulty(sim, "stall-first")};
    auto c = capital_prompt() | model;
    single = c.ainvoke({{"country", "Chile"}});
    both = parallel({{"a", c}, {"b", c}}).ainvoke({{"country", "Peru"}});
    std::this_thread::sleep_for(200ms);
    // The caller's last handles go here: the system shuts down on this
    // thread and the runs end as cancelled (were a run the last owner, the
    // system would be destroyed on its own worker, which waits for itself).
  }
  REQUIRE(single.wait_for(10s) == std::future_status::ready);
  auto r = single.get();
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::cancelled);
  REQUIRE(both.wait_for(10s) == std::future_status::ready);
  auto rs = both.get();
  REQUIRE(rs.size() == 2);
  for (auto& [name, x] : rs) {
    INFO(name);
    REQUIRE_FALSE(x);
    CHECK(code_of(x.error()) == errc::cancelled);
  }
}

TEST_CASE("with_retry tries a model again on transient failures") {
  test::sim_process sim;
  test::test_system ts;
  auto fail_twice = [&](std::string key) {
    auto cfg = test::with_header(sim_config(sim), "x-sim-fault-once",
                                 "503;key=" + key + ";times=2");
    cfg.retry.max_retries = 0;
    return chat_model{ts.sys, cfg};
  };
  auto once = (capital_prompt() | fail_twice("retry-a")).with_retry(1, 10ms);
  auto r1 = once.invoke({{"country", "Spain"}});
  REQUIRE_FALSE(r1);
  CHECK(code_of(r1.error()) == errc::server_error);
  auto twice = (capital_prompt() | fail_twice("retry-b")).with_retry(2, 10ms);
  auto r2 = twice.invoke({{"country", "Spain"}});
  REQUIRE(r2);
  CHECK(r2->text == "The capital of Spain is Madrid.");
  CHECK(r2->attempts == 3);
  CHECK(r2->model_index == 0);
  // A bad request is not transient: one attempt only.
  chat_model bad{ts.sys, faulty(sim, "400")};
  test::reset_stats(sim);
  auto r3 = (capital_prompt() | bad)
                .with_retry(3, 10ms)
                .invoke({{"country", "Spain"}});
  REQUIRE_FALSE(r3);
  CHECK(code_of(r3.error()) == errc::bad_request);
  CHECK(test::read_stats(sim).requests == 1);
}

TEST_CASE("with_fallbacks moves on on 429, 5xx and timeouts only") {
  test::sim_process sim;
  test::test_system ts;
  chat_model good{ts.sys, sim_config(sim)};
  auto backup = good.with_config(sim_config(sim).with_model("sabiazinho-4"));
  // 429 on the primary: the fallback answers.
  chat_model limited{ts.sys, faulty(sim, "429")};
  auto c = (capital_prompt() | limited).with_fallbacks({backup});
  auto r = c.invoke({{"country", "Germany"}});
  REQUIRE(r);
  CHECK(r->text == "The capital of Germany is Berlin.");
  CHECK(r->model_index == 1);
  CHECK(r->attempts == 2);
  CHECK(r->message.model == "sabiazinho-4");
  // 503, and a stalled primary (a timeout).
  chat_model down{ts.sys, faulty(sim, "503")};
  auto r503 = (capital_prompt() | down)
                  .with_fallbacks({backup})
                  .invoke({{"country", "Germany"}});
  REQUIRE(r503);
  CHECK(r503->model_index == 1);
  auto stall_cfg = faulty(sim, "stall-first");
  stall_cfg.timeouts.first_byte = 300ms;
  chat_model stalled{ts.sys, stall_cfg};
  auto start = std::chrono::steady_clock::now();
  auto rt = (capital_prompt() | stalled)
                .with_fallbacks({backup})
                .invoke({{"country", "Germany"}});
  REQUIRE(rt);
  CHECK(rt->model_index == 1);
  CHECK(std::chrono::steady_clock::now() - start < 10s);
  // Several fallbacks: the first that works.
  auto chained = (capital_prompt() | limited)
                     .with_fallbacks({down, backup})
                     .invoke({{"country", "Germany"}});
  REQUIRE(chained);
  CHECK(chained->model_index == 2);
  CHECK(chained->attempts == 3);
  // 400 is not a reason to fall back.
  chat_model bad{ts.sys, faulty(sim, "400")};
  test::reset_stats(sim);
  auto r400 = (capital_prompt() | bad)
                  .with_fallbacks({backup})
                  .invoke({{"country", "Germany"}});
  REQUIRE_FALSE(r400);
  CHECK(code_of(r400.error()) == errc::bad_request);
  CHECK(test::read_stats(sim).requests == 1);
  // All fail: the last error.
  auto none = (capital_prompt() | limited)
                  .with_fallbacks({down})
                  .invoke({{"country", "Germany"}});
  REQUIRE_FALSE(none);
  CHECK(code_of(none.error()) == errc::server_error);
}

TEST_CASE("stream yields the model's chunks, then the parsed output") {
  test::sim_process sim{{"--token-delay-ms", "2"}};
  test::test_system ts;
  chat_model model{ts.sys, sim_config(sim)};
  auto c = prompt_template{"Tell a {kind}."} | model;
  auto s = c.stream({{"kind", "story"}});
  std::string text;
  std::size_t chunks = 0;
  for (auto& chunk : s) {
    CHECK(chunk.request_id == s.id());
    text += chunk.content;
    ++chunks;
  }
  auto& r = s.result();
  REQUIRE(r);
  CHECK(chunks > 10);
  CHECK(text == r->text);
  CHECK(text.find("Maritaca") != std::string::npos);
  // A fallback before any chunk still streams the fallback's answer.
  chat_model limited{ts.sys, faulty(sim, "429")};
  auto fb = (prompt_template{"Tell a {kind}."} | limited)
                .with_fallbacks({model})
                .stream({{"kind", "story"}});
  std::string fb_text;
  for (auto& chunk : fb)
    fb_text += chunk.content;
  REQUIRE(fb.result());
  CHECK(fb.result()->model_index == 1);
  CHECK(fb_text == text);
  // A failure ends the stream with the error.
  auto bad = ("{input}" | chat_model{ts.sys, faulty(sim, "400")})
                 .stream({{"input", "Hello!"}});
  for (auto& chunk : bad)
    FAIL("unexpected chunk: " << chunk.content);
  REQUIRE_FALSE(bad.result());
  CHECK(code_of(bad.result().error()) == errc::bad_request);
  // The JSON parser reads the streamed answer at the end.
  auto js = (prompt_template{"What is {x}?"} | model | output_parser::json())
                .stream({{"x", "2+2"}});
  std::string js_text;
  for (auto& chunk : js)
    js_text += chunk.content;
  REQUIRE(js.result());
  CHECK(js.result()->json->get_string("/answer") == "2 + 2 = 4.");
  CHECK(js_text == js.result()->text);
}

TEST_CASE("chains from actors and futures, and batch") {
  test::sim_process sim;
  test::test_system ts;
  chat_model model{ts.sys, sim_config(sim)};
  auto c = capital_prompt() | model;
  std::promise<std::string> answer;
  test::spawn_fn(ts.sys, [&](caf::event_based_actor* self) {
    c.ainvoke(self, {{"country", "Argentina"}})
        .then([&](chain_output& out) { answer.set_value(out.text); },
              [&](caf::error& err) { answer.set_value(describe(err)); });
  });
  auto fut = answer.get_future();
  REQUIRE(fut.wait_for(30s) == std::future_status::ready);
  CHECK(fut.get() == "The capital of Argentina is Buenos Aires.");
  // astream: chunks to a subscriber actor, the output to the requester.
  struct seen {
    std::atomic<int> chunks{0};
    std::atomic<int> done{0};
    std::string text;
  };
  auto s = std::make_shared<seen>();
  std::promise<std::string> streamed;
  test::spawn_fn(ts.sys, [&, s](caf::event_based_actor* self) {
    auto sub = test::spawn_fn(
        self, [s](caf::event_based_actor* sub_self) -> caf::behavior {
          return {
              [s](const chat_chunk& x) {
                ++s->chunks;
                s->text += x.content;
              },
              [s, sub_self](const stream_done&) {
                ++s->done;
                sub_self->quit();
              },
              [s, sub_self](const stream_failed&) {
                ++s->done;
                sub_self->quit();
              },
          };
        });
    c.astream(self, sub, {{"country", "Brazil"}})
        .then([&](chain_output& out) { streamed.set_value(out.text); },
              [&](caf::error& err) { streamed.set_value(describe(err)); });
  });
  auto sf = streamed.get_future();
  REQUIRE(sf.wait_for(30s) == std::future_status::ready);
  CHECK(sf.get() == "The capital of Brazil is Brasília.");
  // The subscriber's terminal message precedes the reply; give it a moment.
  for (int i = 0; i < 100 && s->done == 0; ++i)
    std::this_thread::sleep_for(10ms);
  CHECK(s->done == 1);
  CHECK(s->chunks > 0);
  auto f = c.ainvoke({{"country", "France"}});
  REQUIRE(f.wait_for(30s) == std::future_status::ready);
  auto fr = f.get();
  REQUIRE(fr);
  CHECK(fr->text == "The capital of France is Paris.");
  auto rs = c.batch({{{"country", "Italy"}}, {}, {{"country", "Spain"}}});
  REQUIRE(rs.size() == 3);
  REQUIRE(rs[0]);
  CHECK(rs[0]->text == "The capital of Italy is Rome.");
  REQUIRE_FALSE(rs[1]);
  CHECK(code_of(rs[1].error()) == errc::invalid_argument);
  REQUIRE(rs[2]);
  CHECK(rs[2]->text == "The capital of Spain is Madrid.");
}
