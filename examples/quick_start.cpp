// The README's first program: ask once, stream once, and look at both
// outcomes. With MARITACA_API_KEY (or MARITACA_API_BASE) it talks to the
// service; without, to the bundled simulator embedded in this process --
// the library's own offline default, which also takes two lines anywhere
// (`offline`).
//
//   example_quick_start

#include <maritaca/chat_model.hpp>
#include <maritaca/sim/server.hpp>

#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

namespace {

bool has_env(const char* name) {
  auto value = std::getenv(name);
  return value != nullptr && *value != '\0';
}

/// The two-line form: a model on the embedded simulator.
bool offline() {
  // [offline]
  maritaca::sim::server sim; // the bundled simulator, in this process
  maritaca::chat_model model{
      maritaca::model_config{}.with_base_url(sim.start())};
  // [offline]
  auto answer = model.invoke("What is 2+2?");
  std::cout << (answer ? answer->content() : maritaca::describe(answer.error()))
            << '\n';
  return static_cast<bool>(answer);
}

} // namespace

int main() {
  // Without a key or a base URL: the embedded simulator stands in.
  std::unique_ptr<maritaca::sim::server> sim;
  if (!has_env("MARITACA_API_KEY") && !has_env("MARITACA_API_BASE")) {
    sim = std::make_unique<maritaca::sim::server>();
    ::setenv("MARITACA_API_BASE", sim->start().c_str(), 1);
  }
  // [readme]
  maritaca::chat_model model; // MARITACA_API_KEY, MARITACA_API_BASE
  auto answer = model.invoke("Qual é a capital do Brasil?");
  if (answer)
    std::cout << answer->content() << '\n';
  else
    std::cerr << maritaca::describe(answer.error()) << '\n';

  auto story = model.stream("Conte uma história."); // chunks as they arrive
  for (auto& chunk : story)
    std::cout << chunk.content << std::flush;
  std::cout << '\n';
  // The stream's outcome: its whole answer, or why it failed.
  if (!story.result())
    std::cerr << maritaca::describe(story.result().error()) << '\n';
  // [readme]
  auto ok = answer && story.result();
  return ok && offline() ? 0 : 1;
}
