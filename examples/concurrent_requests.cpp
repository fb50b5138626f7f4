// Concurrent requests: start all asks, then wait for all (the seed's
// asyncio.gather) -- from plain code with futures, and from an actor.

#include "example_support.hpp"

#include "maritaca/chat_model.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>

#include <iostream>
#include <string>
#include <vector>

namespace {

/// The first `n` bytes of `text`, not cutting a UTF-8 sequence.
std::string preview(const std::string& text, std::size_t n = 100) {
  if (text.size() <= n) return text;
  while (n > 0 && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80)
    --n;
  return text.substr(0, n) + "...";
}

// [gather-actor]
// Asks all questions at once and replies with the answers, in order, once
// the last one is in.
caf::behavior asker(caf::event_based_actor* self, maritaca::chat_model model) {
  return {
      [=](const std::vector<std::string>& questions) {
        auto rp = self->make_response_promise();
        auto answers = std::make_shared<std::vector<std::string>>();
        answers->resize(questions.size());
        auto missing = std::make_shared<std::size_t>(questions.size());
        for (std::size_t i = 0; i < questions.size(); ++i) {
          auto store = [=](std::string text) mutable {
            (*answers)[i] = std::move(text);
            if (--*missing == 0) rp.deliver(*answers);
          };
          model.ainvoke(self, questions[i])
              .then(
                  [=](maritaca::ai_message& m) mutable { store(m.content()); },
                  [=](caf::error& e) mutable { store(maritaca::describe(e)); });
        }
        return rp;
      },
  };
}
// [gather-actor]

} // namespace

int main(int argc, char** argv) {
  std::unique_ptr<maritaca::sim::server> sim;
  auto cfg = maritaca::examples::example_config(argc, argv, sim);
  caf::actor_system_config sys_cfg;
  maritaca::configure(sys_cfg);
  caf::actor_system sys{sys_cfg};
  maritaca::chat_model model{sys, cfg};
  // [gather]
  std::vector<std::string> questions{
      "What is AI?",
      "What is machine learning?",
      "What is deep learning?",
  };

  // Execute all concurrently.
  std::vector<std::future<maritaca::chat_model::result_type>> pending;
  for (auto& q : questions)
    pending.push_back(model.ainvoke(q));
  auto results = maritaca::gather(std::move(pending));

  for (std::size_t i = 0; i < questions.size(); ++i) {
    auto& r = results[i];
    std::cout << "Q: " << questions[i] << '\n';
    std::cout << "A: "
              << (r ? preview(r->content()) : maritaca::describe(r.error()))
              << "\n\n";
  }
  // [gather]
  for (auto& r : results)
    if (!r) return 1;
  std::cout << "-- the same from an actor --\n";
  // [gather-actor-use]
  auto gatherer = sys.spawn(asker, model);
  caf::scoped_actor self{sys};
  self->request(gatherer, model.config().ask_timeout, questions)
      .receive(
          [&](const std::vector<std::string>& answers) {
            for (auto& a : answers)
              std::cout << "A: " << preview(a) << '\n';
          },
          [&](const caf::error& err) {
            std::cout << "failed: " << maritaca::describe(err) << '\n';
          });
  // [gather-actor-use]
  self->send_exit(gatherer, caf::exit_reason::user_shutdown);
  return 0;
}
