// Tool calling: tools made of a function and of an actor, the tool calls of
// a plain and of a streamed answer, and the agent loop that runs the tools
// and hands their results back to the model -- also inside a session.

#include "example_support.hpp"

#include "maritaca/agent.hpp"
#include "maritaca/session.hpp"
#include "maritaca/tools.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>

#include <iostream>
#include <string>

namespace {

// [define-tools]
constexpr const char* city_schema = R"({
  "type": "object",
  "properties": {"city": {"type": "string", "description": "City name"}},
  "required": ["city"]
})";

// A tool made of a function: it gets the arguments as JSON text (already
// checked against the schema) and returns the result text -- or an error,
// which the model reads as the result.
maritaca::tool weather_tool() {
  return maritaca::make_tool(
      "get_weather", "Tells the current weather of a city", city_schema,
      [](const std::string& args) -> caf::expected<std::string> {
        auto doc = maritaca::json_document::parse(args);
        auto city = doc->get_string("/city").value_or("?");
        return "22°C and sunny in " + city;
      });
}

// A tool made of an actor: it answers (tool_call_atom, arguments) with the
// result text.
caf::behavior clock_actor() {
  return {
      [](maritaca::tool_call_atom, const std::string& args) {
        auto doc = maritaca::json_document::parse(args);
        return "10:30 in " + doc->get_string("/city").value_or("?");
      },
  };
}
// [define-tools]

} // namespace

int main(int argc, char** argv) {
  std::unique_ptr<maritaca::sim::server> sim;
  auto cfg = maritaca::examples::example_config(argc, argv, sim);
  caf::actor_system_config sys_cfg;
  maritaca::configure(sys_cfg);
  caf::actor_system sys{sys_cfg};
  maritaca::chat_model model{sys, cfg};
  auto clock = sys.spawn(clock_actor);
  std::vector<maritaca::tool> tools{
      weather_tool(),
      maritaca::make_tool("local_time", "Tells the local time of a city",
                          city_schema, clock)};

  // [tool-calls]
  // Bound tools go with every ask; the answer may call them.
  auto with_tools = maritaca::bind_tools(model, tools);
  auto answer = with_tools.invoke("What is the weather in Rio de Janeiro?");
  if (!answer) {
    std::cout << "failed: " << maritaca::describe(answer.error()) << '\n';
    return 1;
  }
  for (auto& call : answer->tool_calls())
    std::cout << "tool call: " << call.name << '(' << call.arguments << ")\n";
  // [tool-calls]

  // [stream-tool-calls]
  // Streamed, the arguments arrive in pieces; the final answer joins them.
  auto chunks = with_tools.stream("What is the weather in Porto Alegre?");
  std::size_t pieces = 0;
  for (auto& chunk : chunks)
    for (auto& delta : chunk.tool_calls)
      if (!delta.arguments.empty()) ++pieces;
  if (auto& all = chunks.result(); all && !all->tool_calls().empty())
    std::cout << "streamed: " << all->tool_calls()[0].arguments << " in "
              << pieces << " pieces\n";
  // [stream-tool-calls]

  // [run-agent]
  // The agent runs the calls (concurrently), sends their results back as
  // `tool` messages and asks again until the model answers in text.
  auto result = maritaca::run_agent(
      model, tools, "What is the weather and the local time in Tokyo?");
  if (!result) {
    std::cout << "failed: " << maritaca::describe(result.error()) << '\n';
    return 1;
  }
  std::cout << "agent: " << result->content() << '\n';
  // [run-agent]

  // [agent-session]
  // Inside a session, the history keeps the whole exchange.
  maritaca::chat_session session{model, {"You are a weather bot.", 0}};
  auto in_session = maritaca::agent{model, tools}.in_session(session.handle());
  if (auto r = in_session.run("What is the weather in Salvador?"); !r) {
    std::cout << "failed: " << maritaca::describe(r.error()) << '\n';
    return 1;
  }
  std::cout << "history:";
  for (auto& msg : session.history()) {
    std::cout << ' ' << msg.role;
    for (auto& call : msg.tool_calls)
      std::cout << '(' << call.name << ')';
  }
  std::cout << '\n';
  // [agent-session]

  caf::anon_send_exit(clock, caf::exit_reason::user_shutdown);
  return 0;
}
