// Tool calling against maritaca-sim: plain and streamed tool calls, the
// tool_choice modes, single-ask tools, argument checks and run_tool.

#include "maritaca/tools.hpp"

#include "support/actors.hpp"
#include "support/spawn.hpp"

#include <caf/all.hpp>
#include <catch2/catch.hpp>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <sys/wait.h>
#include <unistd.h>

using namespace maritaca;
using namespace std::chrono_literals;
using test::sim_config;

namespace {

constexpr const char* weather_params = R"({
  "type": "object",
  "properties": {"city": {"type": "string"}},
  "required": ["city"]
})";

tool_spec weather_spec() {
  return {"get_weather", "Tells the weather of a city", weather_params};
}

tool_spec sum_spec() {
  return {"add_numbers", "Adds two integers",
          R"({"type":"object","properties":{"a":{"type":"integer"},)"
          R"("b":{"type":"integer"}},"required":["a","b"]})"};
}

} // namespace

TEST_CASE("a model with tools answers with a tool call") {
  test::sim_process sim;
  test::test_system ts;
  chat_model model{ts.sys, sim_config(sim)};
  auto with_tools = model.bind_tools({weather_spec(), sum_spec()});
  auto r = with_tools.invoke("What is the weather in Rio de Janeiro?");
  REQUIRE(r);
  CHECK(r->finish_reason == "tool_calls");
  CHECK(r->content().empty());
  REQUIRE(r->tool_calls().size() == 1);
  auto& call = r->tool_calls()[0];
  CHECK(call.name == "get_weather");
  CHECK_FALSE(call.id.empty());
  auto args = parse_arguments(weather_spec(), call.arguments);
  REQUIRE(args);
  CHECK(args->get_string("/city") == "Rio de Janeiro");
  // The model itself is unchanged: no tools, a text answer.
  auto plain = model.invoke("What is the weather in Rio de Janeiro?");
  REQUIRE(plain);
  CHECK(plain->tool_calls().empty());
  CHECK_FALSE(plain->content().empty());
}

TEST_CASE("streamed tool calls reach the subscriber as deltas") {
  test::sim_process sim{{"--token-delay-ms", "2"}};
  test::test_system ts;
  chat_model model{ts.sys, sim_config(sim)};
  auto with_tools = model.bind_tools({weather_spec(), sum_spec()});
  auto chunks = with_tools.stream("Add numbers 12 and 30, please");
  std::map<int64_t, std::string> joined;
  std::map<int64_t, std::string> names;
  std::size_t argument_pieces = 0;
  std::string finish;
  for (auto& chunk : chunks) {
    for (auto& d : chunk.tool_calls) {
      joined[d.index] += d.arguments;
      if (!d.name.empty()) names[d.index] = d.name;
      if (!d.arguments.empty()) ++argument_pieces;
    }
    if (!chunk.finish_reason.empty()) finish = chunk.finish_reason;
  }
  auto& result = chunks.result();
  REQUIRE(result);
  CHECK(finish == "tool_calls");
  CHECK(result->finish_reason == "tool_calls");
  // The arguments came in several pieces and join into the final call.
  CHECK(argument_pieces > 1);
  REQUIRE(result->tool_calls().size() == 1);
  auto& call = result->tool_calls()[0];
  CHECK(names[0] == "add_numbers");
  CHECK(joined[0] == call.arguments);
  auto args = parse_arguments(sum_spec(), call.arguments);
  REQUIRE(args);
  CHECK(args->get_integer("/a") == 12);
  CHECK(args->get_integer("/b") == 30);
}

TEST_CASE("a subscriber actor sees tool-call deltas of a streamed ask") {
  test::sim_process sim{{"--token-delay-ms", "1"}};
  test::test_system ts;
  chat_model model{ts.sys, sim_config(sim)};
  auto with_tools = model.bind_tools({weather_spec()});
  struct seen {
    std::string arguments;
    std::size_t deltas = 0;
    std::string final_arguments;
  };
  auto s = std::make_shared<seen>();
  std::promise<void> done;
  auto sub = test::spawn_fn(
      ts.sys, [s, &done](caf::event_based_actor*) -> caf::behavior {
        return {
            [s](const chat_chunk& x) {
              for (auto& d : x.tool_calls) {
                ++s->deltas;
                s->arguments += d.arguments;
              }
            },
            [s, &done](const stream_done& x) {
              if (!x.message.tool_calls().empty())
                s->final_arguments = x.message.tool_calls()[0].arguments;
              done.set_value();
            },
            [&done](const stream_failed&) { done.set_value(); },
        };
      });
  with_tools.astream(sub, "What is the weather in Porto Alegre?");
  REQUIRE(done.get_future().wait_for(30s) == std::future_status::ready);
  CHECK(s->deltas > 1);
  CHECK_FALSE(s->final_arguments.empty());
  CHECK(s->arguments == s->final_arguments);
  CHECK(s->final_arguments.find("Porto Alegre") != std::string::npos);
  caf::anon_send_exit(sub, caf::exit_reason::user_shutdown);
}

TEST_CASE("tool_choice none, auto, required and a named function") {
  test::sim_process sim;
  test::test_system ts;
  chat_model model{ts.sys, sim_config(sim)};
  std::vector<tool_spec> tools{weather_spec(), sum_spec()};
  auto ask = [&](const char* prompt, std::string choice) {
    auto c = parse_tool_choice(choice);
    REQUIRE(c);
    return model.bind_tools(tools, *c).invoke(prompt);
  };
  // none: never a tool, even when the prompt asks for one.
  auto none = ask("What is the weather in Paris?", "none");
  REQUIRE(none);
  CHECK(none->tool_calls().empty());
  CHECK(none->finish_reason == "stop");
  // auto: a tool only when the prompt calls for it.
  auto unrelated = ask("What is the capital of Brazil?", "auto");
  REQUIRE(unrelated);
  CHECK(unrelated->tool_calls().empty());
  CHECK(unrelated->content().find("Brasília") != std::string::npos);
  auto related = ask("What is the weather in Paris?", "auto");
  REQUIRE(related);
  REQUIRE(related->tool_calls().size() == 1);
  CHECK(related->tool_calls()[0].name == "get_weather");
  // required: some tool, even for an unrelated prompt.
  auto required = ask("What is the capital of Brazil?", "required");
  REQUIRE(required);
  CHECK(required->tool_calls().size() == 1);
  // A named function: that one, whatever the prompt mentions.
  auto named = ask("What is the weather in Paris?", "add_numbers");
  REQUIRE(named);
  REQUIRE(named->tool_calls().size() == 1);
  CHECK(named->tool_calls()[0].name == "add_numbers");
  // The choice travels as the CLI spells it.
  CHECK_FALSE(parse_tool_choice(""));
  CHECK(code_of(parse_tool_choice("no such").error()) ==
        errc::invalid_argument);
}

TEST_CASE("tools bound to a single ask leave the model alone") {
  test::sim_process sim;
  test::test_system ts;
  chat_model model{ts.sys, sim_config(sim)};
  auto r = invoke_with_tools(model, "What is the weather in Lisbon?",
                             {weather_spec()});
  REQUIRE(r);
  REQUIRE(r->tool_calls().size() == 1);
  CHECK(r->tool_calls()[0].arguments.find("Lisbon") != std::string::npos);
  CHECK(model.config().tools.empty());
  auto x =
      make_tool_ask(model, "hi", {weather_spec()}, tool_choice{"required", ""});
  CHECK(x.body.tools.size() == 1);
  REQUIRE(x.body.tool_choice);
  CHECK(x.body.tool_choice->mode == "required");
  // A tool bound with a handler: its spec goes out, the handler stays here.
  auto t =
      make_tool("get_weather", "Tells the weather of a city", weather_params,
                [](const std::string&) -> caf::expected<std::string> {
                  return std::string{"sunny"};
                });
  auto bound = bind_tools(model, {t}, tool_choice{"required", ""});
  CHECK(bound.config().tools == std::vector<tool_spec>{t.spec});
}

TEST_CASE("arguments that are not a fitting JSON object are typed errors") {
  auto spec = weather_spec();
  auto code = [&](std::string_view args) {
    auto r = parse_arguments(spec, args);
    return r ? errc::none : code_of(r.error());
  };
  auto message = [&](std::string_view args) {
    auto r = parse_arguments(spec, args);
    return r ? std::string{} : to_failure(r.error()).message;
  };
  CHECK(code(R"({"city":"Recife"})") == errc::none);
  CHECK(code("{not json") == errc::protocol_error);
  CHECK(message("{not json").find("not valid JSON") != std::string::npos);
  CHECK(code(R"({"city":"Recife"} trailing)") == errc::protocol_error);
  CHECK(code("[1, 2]") == errc::protocol_error);
  CHECK(message("[1, 2]").find("expected object, got array") !=
        std::string::npos);
  CHECK(code(R"({"city": 3})") == errc::protocol_error);
  CHECK(
      message(R"({"city": 3})").find("$.city: expected string, got integer") !=
      std::string::npos);
  CHECK(message("{}").find("$.city: required key is missing") !=
        std::string::npos);
  // A spec whose schema is broken is the caller's mistake.
  tool_spec broken{"broken", "", "[1]"};
  CHECK(code_of(validate_spec(broken)) == errc::invalid_argument);
  CHECK(code_of(parse_arguments(broken, "{}").error()) ==
        errc::invalid_argument);
  CHECK(code_of(validate_spec({"bad name", "", "{}"})) ==
        errc::invalid_argument);
}

TEST_CASE("run_tool calls functions and actors, bounded in time") {
  test::test_system ts;
  std::atomic<int> calls{0};
  auto weather =
      make_tool("get_weather", "weather", weather_params,
                [&](const std::string& args) -> caf::expected<std::string> {
                  ++calls;
                  auto doc = json_document::parse(args);
                  return "sunny in " + *doc->get_string("/city");
                });
  tool_call call{"call_1", "function", "get_weather", R"({"city":"Natal"})"};
  auto r = run_tool(ts.sys, weather, call, 5s);
  REQUIRE(r);
  CHECK(*r == "sunny in Natal");
  // Invalid arguments never reach the handler.
  auto bad =
      run_tool(ts.sys, weather, {"c", "function", "get_weather", "{"}, 5s);
  REQUIRE_FALSE(bad);
  CHECK(code_of(bad.error()) == errc::protocol_error);
  CHECK(calls == 1);
  // A throwing function is an error, not a crash.
  auto thrower =
      make_tool("get_weather", "", weather_params,
                [](const std::string&) -> caf::expected<std::string> {
                  throw std::runtime_error("boom");
                });
  auto thrown = run_tool(ts.sys, thrower, call, 5s);
  REQUIRE_FALSE(thrown);
  CHECK(tool_error_text(thrown.error()).find("boom") != std::string::npos);
  // An actor tool, and one that never answers.
  auto echo =
      test::spawn_fn(ts.sys, [](caf::event_based_actor*) -> caf::behavior {
        return {[](tool_call_atom, const std::string& args) {
          return "echo " + args;
        }};
      });
  auto by_actor = run_tool(
      ts.sys, make_tool("get_weather", "", weather_params, echo), call, 5s);
  REQUIRE(by_actor);
  CHECK(*by_actor == R"(echo {"city":"Natal"})");
  auto silent =
      test::spawn_fn(ts.sys, [](caf::event_based_actor* self) -> caf::behavior {
        return {[=](tool_call_atom, const std::string&) {
          // Takes the promise and never keeps it.
          return self->make_response_promise<std::string>();
        }};
      });
  auto start = std::chrono::steady_clock::now();
  auto late =
      run_tool(ts.sys, make_tool("get_weather", "", weather_params, silent),
               call, 200ms);
  REQUIRE_FALSE(late);
  CHECK(code_of(late.error()) == errc::timeout);
  CHECK(std::chrono::steady_clock::now() - start < 5s);
  CHECK(tool_error_text(late.error()) == "error: the tool did not answer in "
                                         "time");
  caf::anon_send_exit(echo, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(silent, caf::exit_reason::user_shutdown);
}

TEST_CASE("OpenAI-style tools arrays parse into specs") {
  auto specs = parse_tool_specs(R"([
    {"type": "function", "function": {"name": "get_weather",
      "description": "Weather of a city",
      "parameters": {"type": "object",
                     "properties": {"city": {"type": "string"}}}}},
    {"name": "now"}
  ])");
  REQUIRE(specs);
  REQUIRE(specs->size() == 2);
  CHECK((*specs)[0].name == "get_weather");
  CHECK((*specs)[0].description == "Weather of a city");
  CHECK((*specs)[0].parameters.find("\"city\"") != std::string::npos);
  CHECK((*specs)[1].name == "now");
  auto message = [](std::string_view json) {
    auto r = parse_tool_specs(json);
    REQUIRE_FALSE(r);
    CHECK(code_of(r.error()) == errc::invalid_argument);
    return to_failure(r.error()).message;
  };
  CHECK(message("{}").find("expected an array") != std::string::npos);
  CHECK(message(R"([{"type":"function","function":{}}])")
            .find("tools[0].function.name: missing") != std::string::npos);
  CHECK(
      message(R"([{"name":"x","parameters":3}])").find("tools[0].parameters") !=
      std::string::npos);
  CHECK(message("[").find("not valid JSON") != std::string::npos);
}

namespace {

/// Runs `maritaca ARGS` (stderr into stdout); returns the exit status.
int run_cli(const std::string& args, std::string& out) {
  out.clear();
  auto cmd = test::bin_path("maritaca") + " " + args + " 2>&1";
  auto* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) return -1;
  char buf[4096];
  while (auto n = fread(buf, 1, sizeof(buf), pipe))
    out.append(buf, n);
  auto status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream{path} << text;
}

} // namespace

TEST_CASE("the CLI offers tools and checks structured output") {
  if (access(test::bin_path("maritaca").c_str(), X_OK) != 0) {
    WARN("maritaca not built; skipped");
    return;
  }
  test::sim_process sim;
  char dir_template[] = "/tmp/maritaca-tools-XXXXXX";
  std::string dir = mkdtemp(dir_template);
  write_file(dir + "/tools.json", R"([
    {"type": "function", "function": {"name": "get_weather",
     "description": "Tells the weather of a city",
     "parameters": {"type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"]}}},
    {"type": "function", "function": {"name": "local_time",
     "description": "Tells the local time of a city",
     "parameters": {"type": "object",
                    "properties": {"city": {"type": "string"}}}}}])");
  write_file(dir + "/schema.json",
             R"({"type": "object", "required": ["answer", "n"],
                 "properties": {"answer": {"type": "string"},
                                "n": {"type": "integer"}}})");
  write_file(dir + "/bad.json", "[1]");
  auto ask = "ask --base-url " + sim.base_url() + " ";
  auto tools = "--tools " + dir + "/tools.json ";
  std::string out;
  CHECK(run_cli(ask + tools +
                    "'What is the weather and the local time in "
                    "Tokyo?'",
                out) == 0);
  CHECK(out == "get_weather({\"city\":\"Tokyo\"})\n"
               "local_time({\"city\":\"Tokyo\"})\n");
  CHECK(run_cli(ask + tools + "--json 'What is the weather in Tokyo?'", out) ==
        0);
  CHECK(out.find(R"("tool_calls":[{"id":"call_)") != std::string::npos);
  CHECK(out.find(R"("finish_reason":"tool_calls")") != std::string::npos);
  CHECK(run_cli(ask + tools + "--stream 'What is the weather in Tokyo?'",
                out) == 0);
  CHECK(out == "get_weather({\"city\":\"Tokyo\"})\n");
  CHECK(run_cli(ask + tools + "--tool-choice none 'Weather in Tokyo?'", out) ==
        0);
  CHECK(out.find("get_weather(") == std::string::npos);
  CHECK(run_cli(ask + tools + "--tool-choice local_time Hello", out) == 0);
  CHECK(out.rfind("local_time(", 0) == 0);
  CHECK(run_cli(ask + "--response-format json 'What is 2+2?'", out) == 0);
  CHECK(out == "{\"answer\":\"2 + 2 = 4.\"}\n");
  auto schema = "--schema " + dir + "/schema.json ";
  CHECK(run_cli(ask + schema + "'What is 2+2?'", out) == 0);
  CHECK(out == "{\"answer\":\"2 + 2 = 4.\",\"n\":2}\n");
  // An answer cut short does not fit: exit 1 with the reason.
  CHECK(run_cli(ask + schema + "--max-tokens 2 'What is 2+2?'", out) == 1);
  CHECK(out.find("protocol_error: $: not valid JSON") != std::string::npos);
  // Bad files and choices are usage errors.
  CHECK(run_cli(ask + "--schema " + dir + "/bad.json x", out) == 2);
  CHECK(out.find("schema: expected a JSON object") != std::string::npos);
  CHECK(run_cli(ask + "--tools " + dir + "/bad.json x", out) == 2);
  CHECK(run_cli(ask + "--tool-choice 'no such' x", out) == 2);
  CHECK(run_cli(ask + "--response-format xml x", out) == 2);
  std::filesystem::remove_all(dir);
}
