// The agent loop against maritaca-sim: tool results reach the model, calls
// of one answer run concurrently, the step limit, failing tools, actor
// tools, sessions, and the actor forms.

#include "maritaca/agent.hpp"

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

constexpr const char* city_params = R"({
  "type": "object",
  "properties": {"city": {"type": "string"}},
  "required": ["city"]
})";

/// Counts calls and the highest number of calls running at once.
struct call_meter {
  std::atomic<int> calls{0};
  std::atomic<int> running{0};
  std::atomic<int> max_running{0};

  void enter() {
    ++calls;
    auto now = ++running;
    auto seen = max_running.load();
    while (now > seen && !max_running.compare_exchange_weak(seen, now)) {
    }
  }

  void leave() { --running; }
};

std::string city_of(const std::string& args) {
  auto doc = json_document::parse(args);
  return doc ? doc->get_string("/city").value_or("?") : "?";
}

/// The weather tool: "22°C and sunny in CITY", after `delay`.
tool weather_tool(call_meter& m, std::chrono::milliseconds delay = 0ms) {
  return make_tool(
      "get_weather", "Tells the weather of a city", city_params,
      [&m, delay](const std::string& args) -> caf::expected<std::string> {
        m.enter();
        std::this_thread::sleep_for(delay);
        m.leave();
        return "22°C and sunny in " + city_of(args);
      });
}

/// The clock tool: "10:30 in CITY", after `delay`.
tool clock_tool(call_meter& m, std::chrono::milliseconds delay = 0ms) {
  return make_tool(
      "local_time", "Tells the local time of a city", city_params,
      [&m, delay](const std::string& args) -> caf::expected<std::string> {
        m.enter();
        std::this_thread::sleep_for(delay);
        m.leave();
        return "10:30 in " + city_of(args);
      });
}

} // namespace

TEST_CASE("the agent runs the tool and the model answers with its result") {
  test::sim_process sim;
  test::test_system ts;
  chat_model model{ts.sys, sim_config(sim)};
  call_meter m;
  agent a{model, {weather_tool(m)}};
  auto r = a.run("What is the weather in Rio de Janeiro?");
  REQUIRE(r);
  CHECK(r->answer.content() ==
        "The result is: 22°C and sunny in Rio de Janeiro");
  CHECK(r->answer.tool_calls().empty());
  CHECK(r->steps == 2);
  CHECK(r->tool_calls == 1);
  CHECK(m.calls == 1);
  // The exchange: user, assistant with the call, its result, the answer.
  REQUIRE(r->messages.size() == 4);
  CHECK(r->messages[0].role == "user");
  CHECK(r->messages[1].role == "assistant");
  REQUIRE(r->messages[1].tool_calls.size() == 1);
  CHECK(r->messages[2].role == "tool");
  CHECK(r->messages[2].tool_call_id == r->messages[1].tool_calls[0].id);
  CHECK(r->messages[2].text() == "22°C and sunny in Rio de Janeiro");
  CHECK(r->messages[3].text() == r->answer.content());
  // The blocking helper gives just the answer.
  auto answer = run_agent(model, {weather_tool(m)}, "Weather in Recife?");
  REQUIRE(answer);
  CHECK(answer->content() == "The result is: 22°C and sunny in Recife");
  // A prompt that needs no tool: one ask, no call.
  auto direct =
      run_agent(model, {weather_tool(m)}, "What is the capital of Brazil?");
  REQUIRE(direct);
  CHECK(direct->content().find("Brasília") != std::string::npos);
  CHECK(m.calls == 2);
}

TEST_CASE("two calls of one answer run concurrently") {
  test::sim_process sim;
  test::test_system ts;
  chat_model model{ts.sys, sim_config(sim)};
  call_meter m;
  agent a{model, {weather_tool(m, 400ms), clock_tool(m, 400ms)}};
  auto r = a.run("What is the weather and the local time in Tokyo?");
  REQUIRE(r);
  CHECK(r->tool_calls == 2);
  CHECK(m.calls == 2);
  // Both 400 ms calls were running at the same time.
  CHECK(m.max_running == 2);
  // Both results, in call order, reach the model.
  CHECK(r->answer.content() ==
        "The results are: 22°C and sunny in Tokyo; 10:30 in Tokyo");
  REQUIRE(r->messages.size() == 5);
  CHECK(r->messages[2].tool_call_id == r->messages[1].tool_calls[0].id);
  CHECK(r->messages[3].tool_call_id == r->messages[1].tool_calls[1].id);
}

TEST_CASE("the step limit ends a run that keeps calling tools") {
  test::sim_process sim;
  test::test_system ts;
  chat_model model{ts.sys, sim_config(sim)};
  call_meter m;
  agent_config cfg;
  cfg.max_steps = 3;
  cfg.choice = tool_choice{"required", ""};
  cfg.keep_choice = true;
  auto r = agent{model, {weather_tool(m)}, cfg}.run("Weather in Belém?");
  REQUIRE_FALSE(r);
  CHECK(is_step_limit(r.error()));
  CHECK(code_of(r.error()) == errc::step_limit);
  CHECK(describe(r.error()).find("step limit") != std::string::npos);
  // Steps 1 and 2 ran the tool; the third answer still called it.
  CHECK(m.calls == 2);
  // Without keep_choice, "required" holds for the first ask only.
  cfg.keep_choice = false;
  auto once = agent{model, {weather_tool(m)}, cfg}.run("Weather in Belém?");
  REQUIRE(once);
  CHECK(once->steps == 2);
  CHECK_FALSE(is_step_limit(make_error(errc::protocol_error, "other")));
}

TEST_CASE("a failing tool's error goes back to the model as its result") {
  test::sim_process sim;
  test::test_system ts;
  chat_model model{ts.sys, sim_config(sim)};
  auto failing = make_tool(
      "get_weather", "Tells the weather of a city", city_params,
      [](const std::string&) -> caf::expected<std::string> {
        return make_error(errc::invalid_argument, "no station in that city");
      });
  auto r = run_agent(model, {failing}, "What is the weather in Atlantis?");
  REQUIRE(r);
  CHECK(r->content() == "The result is: error: no station in that city");
  auto thrower =
      make_tool("get_weather", "Tells the weather of a city", city_params,
                [](const std::string&) -> caf::expected<std::string> {
                  throw std::runtime_error("sensor offline");
                });
  auto thrown = run_agent(model, {thrower}, "What is the weather in Natal?");
  REQUIRE(thrown);
  CHECK(thrown->content().find("error: the tool threw: sensor offline") !=
        std::string::npos);
  // An actor tool that never answers times out; the run goes on.
  auto silent =
      test::spawn_fn(ts.sys, [](caf::event_based_actor* self) -> caf::behavior {
        return {[=](tool_call_atom, const std::string&) {
          return self->make_response_promise<std::string>();
        }};
      });
  agent_config cfg;
  cfg.tool_timeout = 200ms;
  auto late = run_agent(model,
                        {make_tool("get_weather", "Tells the weather of a city",
                                   city_params, silent)},
                        "What is the weather in Manaus?", cfg);
  REQUIRE(late);
  CHECK(late->content() ==
        "The result is: error: the tool did not answer in time");
  caf::anon_send_exit(silent, caf::exit_reason::user_shutdown);
}

TEST_CASE("a forced call of an unknown tool is reported to the model") {
  test::sim_process sim;
  test::test_system ts;
  chat_model model{ts.sys, sim_config(sim)};
  call_meter m;
  agent_config cfg;
  // The simulator calls a forced function even when it was not offered.
  cfg.choice = tool_choice{"function", "launch_rocket"};
  auto r = agent{model, {weather_tool(m)}, cfg}.run("Hello!");
  REQUIRE(r);
  CHECK(r->answer.content() ==
        "The result is: error: there is no tool named 'launch_rocket'");
  CHECK(m.calls == 0);
}

TEST_CASE("actor tools answer (tool_call_atom, arguments)") {
  test::sim_process sim;
  test::test_system ts;
  chat_model model{ts.sys, sim_config(sim)};
  auto station =
      test::spawn_fn(ts.sys, [](caf::event_based_actor*) -> caf::behavior {
        return {[](tool_call_atom, const std::string& args) {
          return "rain in " + city_of(args);
        }};
      });
  auto r = run_agent(model,
                     {make_tool("get_weather", "Tells the weather of a city",
                                city_params, station)},
                     "What is the weather in Curitiba?");
  REQUIRE(r);
  CHECK(r->content() == "The result is: rain in Curitiba");
  caf::anon_send_exit(station, caf::exit_reason::user_shutdown);
}

TEST_CASE("bad tools fail the run before anything is asked") {
  test::sim_process sim;
  test::test_system ts;
  chat_model model{ts.sys, sim_config(sim)};
  test::reset_stats(sim);
  auto broken = make_tool(
      "get_weather", "", "not json",
      [](const std::string&) -> caf::expected<std::string> { return "x"; });
  auto r = run_agent(model, {broken}, "What is the weather in Rio?");
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::invalid_argument);
  call_meter m;
  auto twice = run_agent(model, {weather_tool(m), weather_tool(m)}, "Hi");
  REQUIRE_FALSE(twice);
  CHECK(code_of(twice.error()) == errc::invalid_argument);
  CHECK(test::read_stats(sim).requests == 0);
}

TEST_CASE("an agent inside a session keeps the whole exchange") {
  test::sim_process sim;
  test::test_system ts;
  chat_model model{ts.sys, sim_config(sim)};
  call_meter m;
  chat_session session{model, {"You are a weather bot.", 0}};
  auto a = agent{model, {weather_tool(m)}}.in_session(session.handle());
  auto r = a.run("What is the weather in Salvador?");
  REQUIRE(r);
  CHECK(r->answer.content() == "The result is: 22°C and sunny in Salvador");
  auto h = session.history();
  REQUIRE(h.size() == 5);
  CHECK(h[0].role == "system");
  CHECK(h[1].role == "user");
  CHECK(h[1].text() == "What is the weather in Salvador?");
  CHECK(h[2].role == "assistant");
  REQUIRE(h[2].tool_calls.size() == 1);
  CHECK(h[2].tool_calls[0].name == "get_weather");
  CHECK(h[3].role == "tool");
  CHECK(h[3].tool_call_id == h[2].tool_calls[0].id);
  CHECK(h[4].role == "assistant");
  CHECK(h[4].text() == r->answer.content());
  // The session goes on with that history.
  auto next = session.chat("What did I say first?");
  REQUIRE(next);
  CHECK(next->content().find("What is the weather in Salvador?") !=
        std::string::npos);
  CHECK(session.history().size() == 7);
  // A failed run leaves the history as it was.
  agent_config cfg;
  cfg.max_steps = 1;
  auto limited =
      agent{model, {weather_tool(m)}, cfg}.in_session(session.handle());
  auto failed = limited.run("What is the weather in Maceió?");
  REQUIRE_FALSE(failed);
  CHECK(is_step_limit(failed.error()));
  CHECK(session.history().size() == 7);
}

TEST_CASE("the agent actor from another actor, runs queued in a session") {
  test::sim_process sim;
  test::test_system ts;
  chat_model model{ts.sys, sim_config(sim)};
  call_meter m;
  // From an actor: arun(self, input).then(...).
  std::promise<std::string> answer;
  agent a{model, {weather_tool(m)}};
  test::spawn_fn(ts.sys, [&](caf::event_based_actor* self) {
    a.arun(self, "What is the weather in Fortaleza?")
        .then([&](agent_result& r) { answer.set_value(r.answer.content()); },
              [&](caf::error& err) { answer.set_value(describe(err)); });
  });
  auto fut = answer.get_future();
  REQUIRE(fut.wait_for(30s) == std::future_status::ready);
  CHECK(fut.get() == "The result is: 22°C and sunny in Fortaleza");
  // The future form.
  auto f = a.arun("What is the weather in Vitória?");
  REQUIRE(f.wait_for(30s) == std::future_status::ready);
  auto fr = f.get();
  REQUIRE(fr);
  CHECK(fr->answer.content() == "The result is: 22°C and sunny in Vitória");
  // A long-lived agent actor without a session runs requests at once.
  caf::scoped_actor self{ts.sys};
  call_meter overlap;
  auto free_agent = spawn_agent(model, {weather_tool(overlap, 300ms)});
  auto q1 = self->request(free_agent, 60s, agent_atom::value,
                          input{"What is the weather in Recife?"});
  auto q2 = self->request(free_agent, 60s, agent_atom::value,
                          input{"What is the weather in Olinda?"});
  std::vector<std::string> free_answers;
  for (auto* h : {&q1, &q2})
    h->receive(
        [&](agent_result& r) { free_answers.push_back(r.answer.content()); },
        [&](caf::error& err) { FAIL(describe(err)); });
  CHECK(overlap.max_running == 2);
  CHECK(free_answers ==
        std::vector<std::string>{"The result is: 22°C and sunny in Recife",
                                 "The result is: 22°C and sunny in Olinda"});
  self->send_exit(free_agent, caf::exit_reason::user_shutdown);
  // A long-lived agent actor in a session: two runs sent at once do not
  // interleave their exchanges.
  auto s = spawn_session(model);
  auto agent_handle = spawn_agent(s, model, {weather_tool(m, 50ms)});
  auto h1 = self->request(agent_handle, 60s, agent_atom::value,
                          input{"What is the weather in Belo Horizonte?"});
  auto h2 = self->request(agent_handle, 60s, agent_atom::value,
                          input{"What is the weather in Goiânia?"});
  std::vector<std::string> answers;
  for (auto* h : {&h1, &h2})
    h->receive([&](agent_result& r) { answers.push_back(r.answer.content()); },
               [&](caf::error& err) { FAIL(describe(err)); });
  REQUIRE(answers.size() == 2);
  CHECK(answers[0] == "The result is: 22°C and sunny in Belo Horizonte");
  CHECK(answers[1] == "The result is: 22°C and sunny in Goiânia");
  std::vector<chat_message> h;
  self->request(s, 5s, history_atom::value)
      .receive([&](std::vector<chat_message>& xs) { h = std::move(xs); },
               [&](caf::error& err) { FAIL(describe(err)); });
  REQUIRE(h.size() == 8);
  CHECK(h[0].text() == "What is the weather in Belo Horizonte?");
  CHECK(h[3].text() == answers[0]);
  CHECK(h[4].text() == "What is the weather in Goiânia?");
  CHECK(h[7].text() == answers[1]);
  self->send_exit(agent_handle, caf::exit_reason::user_shutdown);
  self->send_exit(s, caf::exit_reason::user_shutdown);
}
