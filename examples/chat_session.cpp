// Chat sessions: the seed's async context manager. A chat_session keeps
// the history while it lives and ends (clearing it) when it goes out of
// scope; the session actor underneath serves actors directly.

#include "example_support.hpp"

#include "maritaca/chat_model.hpp"
#include "maritaca/session.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>

#include <iostream>

namespace {

/// Prints the answer or the error.
void print(const maritaca::chat_model::result_type& r) {
  std::cout << (r ? r->content() : "failed: " + maritaca::describe(r.error()))
            << '\n';
}

} // namespace

int main(int argc, char** argv) {
  std::unique_ptr<maritaca::sim::server> sim;
  auto cfg = maritaca::examples::example_config(argc, argv, sim);
  maritaca::chat_model model{cfg};
  // [chat-session]
  {
    maritaca::chat_session session{model};
    print(session.chat("Hello!"));
    print(session.chat("How are you?"));
    print(session.chat("My name is Ana."));
    print(session.chat("What is my name?"));
    std::cout << "history: " << session.history().size() << " messages\n";
  } // the session ends here and its history is gone
  // [chat-session]

  std::cout << "-- the session actor --\n";
  // [session-actor]
  maritaca::session_config scfg;
  scfg.system_prompt = "Responda em português.";
  auto session = maritaca::spawn_session(model, scfg);
  caf::scoped_actor self{model.system()};
  auto timeout = model.config().ask_timeout;
  // Asks to one session run one after another, so both can go at once
  // (ainvoke: a plain string is a user message).
  auto first =
      maritaca::ainvoke(self.ptr(), session, "Meu nome é Ana.", timeout);
  auto second =
      maritaca::ainvoke(self.ptr(), session, "Qual é o meu nome?", timeout);
  auto show = [](auto& answer) {
    answer.receive(
        [](const maritaca::ai_message& msg) {
          std::cout << msg.content() << '\n';
        },
        [](const caf::error& err) {
          std::cout << "failed: " << maritaca::describe(err) << '\n';
        });
  };
  show(first);
  show(second);
  self->request(session, timeout, maritaca::history_atom::value)
      .receive(
          [](const std::vector<maritaca::chat_message>& history) {
            for (auto& m : history)
              std::cout << "  " << m.role << ": " << m.text() << '\n';
          },
          [](const caf::error&) {});
  self->send_exit(session, caf::exit_reason::user_shutdown);
  // [session-actor]
  return 0;
}
