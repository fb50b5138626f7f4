// Sessions against maritaca-sim: history across turns, one ask after
// another, save/load, trimming, the RAII handle.

#include "maritaca/session.hpp"

#include "support/actors.hpp"

#include <caf/all.hpp>
#include <catch2/catch.hpp>

#include <filesystem>
#include <memory>
#include <thread>

using namespace maritaca;
using namespace std::chrono_literals;
using test::sim_config;

TEST_CASE("a session keeps history across turns") {
  test::sim_process sim;
  test::test_system ts;
  chat_model model{ts.sys, sim_config(sim)};
  chat_session session{model, {"You are brief.", 0}};
  auto a = session.chat("Hello!");
  REQUIRE(a);
  auto b = session.chat("What did I say first?");
  REQUIRE(b);
  CHECK(b->content().find("Hello!") != std::string::npos);
  auto h = session.history();
  REQUIRE(h.size() == 5);
  CHECK(h[0].role == "system");
  CHECK(h[1].text() == "Hello!");
  CHECK(h[2].role == "assistant");
  CHECK(h[2].text() == a->content());
  CHECK(h[4].text() == b->content());
  session.clear();
  CHECK(session.history().size() == 1);
}

TEST_CASE("asks to one session run one after another") {
  test::sim_process sim{{"--token-delay-ms", "1"}};
  test::test_system ts;
  chat_model model{ts.sys, sim_config(sim)};
  auto s = spawn_session(model);
  caf::scoped_actor self{ts.sys};
  // Three asks sent at once: each sees the history of the ones before.
  std::vector<std::string> answers;
  for (auto q : {"Hello!", "How are you?", "What did I say first?"})
    self->request(s, 30s, ask_atom::value, input{q})
        .receive([&](ai_message& m) { answers.push_back(m.content()); },
                 [&](caf::error& err) { FAIL(describe(err)); });
  REQUIRE(answers.size() == 3);
  CHECK(answers[2].find("Hello!") != std::string::npos);
  std::vector<chat_message> h;
  self->request(s, 5s, history_atom::value)
      .receive([&](std::vector<chat_message>& xs) { h = std::move(xs); },
               [&](caf::error& err) { FAIL(describe(err)); });
  REQUIRE(h.size() == 6);
  CHECK(h[0].text() == "Hello!");
  CHECK(h[2].text() == "How are you?");
  CHECK(h[4].text() == "What did I say first?");
  // Save, load into a new session, go on where it stopped.
  std::string saved;
  self->request(s, 5s, save_atom::value)
      .receive([&](std::string& json) { saved = std::move(json); },
               [&](caf::error& err) { FAIL(describe(err)); });
  CHECK(saved.find("How are you?") != std::string::npos);
  auto t = spawn_session(model);
  uint64_t loaded = 0;
  self->request(t, 5s, load_atom::value, saved)
      .receive([&](uint64_t n) { loaded = n; },
               [&](caf::error& err) { FAIL(describe(err)); });
  CHECK(loaded == 6);
  errc bad = errc::none;
  self->request(t, 5s, load_atom::value, std::string{"{not json"})
      .receive([&](uint64_t) {}, [&](caf::error& err) { bad = code_of(err); });
  CHECK(bad == errc::protocol_error);
  self->send_exit(s, caf::exit_reason::user_shutdown);
  self->send_exit(t, caf::exit_reason::user_shutdown);
}

TEST_CASE("a failed ask leaves the history as it was") {
  test::sim_process sim;
  test::test_system ts;
  auto cfg = test::with_header(sim_config(sim), "x-sim-fault", "500");
  cfg.retry.max_retries = 0;
  chat_model model{ts.sys, cfg};
  chat_session session{model};
  auto r = session.chat("Hello!");
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::server_error);
  CHECK(session.history().empty());
}

TEST_CASE("a session streams to a subscriber and records the answer") {
  test::sim_process sim;
  test::test_system ts;
  chat_model model{ts.sys, sim_config(sim)};
  auto s = spawn_session(model);
  caf::scoped_actor self{ts.sys};
  auto sub = caf::actor_cast<caf::actor>(self);
  auto h =
      self->request(s, 30s, stream_atom::value, input{"Tell a story."}, sub);
  std::string text;
  bool done = false;
  while (!done)
    self->receive([&](chat_chunk& c) { text += c.content; },
                  [&](stream_done& d) {
                    done = true;
                    CHECK(d.message.content() == text);
                  },
                  [&](stream_failed& f) {
                    done = true;
                    FAIL(describe(f.error));
                  },
                  caf::after(30s) >>
                      [&] {
                        done = true;
                        FAIL("timeout");
                      });
  std::string answer;
  h.receive([&](ai_message& m) { answer = m.content(); },
            [&](caf::error& err) { FAIL(describe(err)); });
  CHECK(answer == text);
  self->send_exit(s, caf::exit_reason::user_shutdown);
}

namespace {

/// Threads of this process (from /proc/self/task).
std::size_t thread_count() {
  std::size_t n = 0;
  for ([[maybe_unused]] auto& e :
       std::filesystem::directory_iterator{"/proc/self/task"})
    ++n;
  return n;
}

/// Threads of this process once the kernel has reaped the ones that ended.
/// pthread_join returns when a thread clears its tid, a moment before the
/// kernel removes the task from /proc/self/task; a thread still running
/// after a few seconds is a real leak.
std::size_t settled_thread_count(std::size_t expected) {
  auto n = thread_count();
  for (int i = 0; i < 100 && n != expected; ++i) {
    std::this_thread::sleep_for(20ms);
    n = thread_count();
  }
  return n;
}

} // namespace

TEST_CASE("the caller's last model handle ends its own system, not a "
          "session") {
  test::sim_process sim;
  auto baseline = thread_count();
  auto model = std::make_unique<chat_model>(sim_config(sim));
  std::vector<session_actor> sessions;
  for (int i = 0; i < 50; ++i)
    sessions.push_back(spawn_session(*model));
  {
    chat_session one{*model};
    REQUIRE(one.chat("Hello!"));
  }
  for (auto& s : sessions)
    caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
  sessions.clear();
  {
    // A session the caller no longer holds, busy with an ask that stalls:
    // it outlives the caller's handles below.
    auto stalled = model->with_config(
        test::with_header(sim_config(sim), "x-sim-fault", "stall-first"));
    auto busy = spawn_session(stalled);
    caf::anon_send(busy, ask_atom::value, input{"Hello?"});
  }
  std::this_thread::sleep_for(200ms);
  // The model's own system goes with the caller's last handle, on this
  // thread: the stalled ask is cancelled, and when reset() returns the
  // system's threads are joined. (Were the busy session the last owner,
  // the system would be destroyed on one of its own worker threads, which
  // waits for itself.)
  model.reset();
  CHECK(settled_thread_count(baseline) == baseline);
}

TEST_CASE("a session ends with its model and answers every ask") {
  test::sim_process sim;
  test::test_system ts;
  chat_model model{
      ts.sys, test::with_header(sim_config(sim), "x-sim-fault", "stall-first")};
  auto s = spawn_session(model);
  caf::scoped_actor self{ts.sys};
  self->monitor(s);
  // The first ask stalls at the server; the second waits behind it.
  auto first = self->request(s, 30s, ask_atom::value, input{"Hello?"});
  auto second = self->request(s, 30s, ask_atom::value, input{"And then?"});
  std::this_thread::sleep_for(200ms);
  model.shutdown();
  for (auto* h : {&first, &second})
    h->receive(
        [&](ai_message&) { FAIL("an ask succeeded after shutdown"); },
        [&](caf::error& err) { CHECK(code_of(err) == errc::cancelled); });
  // The session does not linger (it would keep the system's destructor
  // waiting until its own request timeout fired).
  bool ended = false;
  self->receive([&](caf::down_msg& msg) { ended = msg.source == s.address(); },
                caf::after(10s) >> [] {});
  CHECK(ended);
}
