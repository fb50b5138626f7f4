// An actor as the client: ainvoke with request/then, and astream with a
// subscriber actor that receives the chunks while the asker receives the
// aggregated answer.

#include "example_support.hpp"

#include "maritaca/chat_model.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/stateful_actor.hpp>

#include <iostream>
#include <optional>

namespace {

/// The subscriber reports how many chunks it saw: `(finished_atom, n)`.
using finished_atom = caf::atom_constant<caf::atom("finished")>;

// [subscriber-actor]
struct subscriber_state {
  std::size_t chunks = 0;
};

caf::behavior subscriber(caf::stateful_actor<subscriber_state>* self,
                         caf::actor client) {
  auto finish = [=] {
    self->send(client, finished_atom::value, self->state.chunks);
    self->quit();
  };
  return {
      [=](const maritaca::chat_chunk& chunk) {
        ++self->state.chunks;
        std::cout << chunk.content << std::flush;
      },
      [=](const maritaca::stream_done&) {
        std::cout << '\n';
        finish();
      },
      [=](const maritaca::stream_failed& end) {
        std::cout << "\nstream_failed: " << maritaca::describe(end.error)
                  << '\n';
        finish();
      },
  };
}
// [subscriber-actor]

struct client_state {
  std::optional<std::size_t> chunks; // from the subscriber
  std::optional<std::size_t> bytes;  // from the aggregated answer
};

using client_actor = caf::stateful_actor<client_state>;

/// Reports to `owner` once both the subscriber and the answer are in.
void maybe_finish(client_actor* self, const caf::actor& owner) {
  auto& st = self->state;
  if (!st.chunks || !st.bytes) return;
  std::cout << "astream: " << *st.chunks << " chunks, " << *st.bytes
            << " bytes in the aggregated answer\n";
  self->send(owner, finished_atom::value, std::size_t{0});
  self->quit();
}

caf::behavior client(client_actor* self, maritaca::chat_model model,
                     caf::actor owner) {
  auto fail = [=](const caf::error& err) {
    std::cout << "failed: " << maritaca::describe(err) << '\n';
    self->send(owner, finished_atom::value, std::size_t{1});
    self->quit();
  };
  // [actor-ainvoke]
  model.ainvoke(self, "Qual é a capital do Brasil?")
      .then(
          [=](const maritaca::ai_message& answer) {
            std::cout << "ainvoke: " << answer.content() << '\n';
            // Chunks go to the subscriber; the whole answer comes back here.
            auto sub =
                self->spawn(subscriber, caf::actor_cast<caf::actor>(self));
            model.astream(self, sub, "Conte uma história.")
                .then(
                    [=](const maritaca::ai_message& all) {
                      self->state.bytes = all.content().size();
                      maybe_finish(self, owner);
                    },
                    fail);
          },
          fail);
  // [actor-ainvoke]
  return {
      [=](finished_atom, std::size_t chunks) {
        self->state.chunks = chunks;
        maybe_finish(self, owner);
      },
  };
}

} // namespace

int main(int argc, char** argv) {
  std::unique_ptr<maritaca::sim::server> sim;
  auto cfg = maritaca::examples::example_config(argc, argv, sim);
  caf::actor_system_config sys_cfg;
  maritaca::configure(sys_cfg);
  caf::actor_system sys{sys_cfg};
  maritaca::chat_model model{sys, cfg};
  caf::scoped_actor self{sys};
  self->spawn(client, model, caf::actor_cast<caf::actor>(self));
  int rc = 1;
  self->receive([&](finished_atom, std::size_t status) {
    rc = static_cast<int>(status);
  });
  return rc;
}
