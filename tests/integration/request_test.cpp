// The request actor against maritaca-sim's faults: retries, deadlines,
// partial streams, back-pressure, typed errors.

#include "request.hpp"

#include "support/actors.hpp"
#include "support/spawn.hpp"

#include <caf/all.hpp>
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <thread>

using namespace maritaca;
using namespace std::chrono_literals;
using test::sim_config;
using test::with_header;

namespace {

using clock_type = std::chrono::steady_clock;

/// Asks once with `fault` as the x-sim-fault header.
chat_model::result_type ask_with_fault(caf::actor_system& sys,
                                       const test::sim_process& sim,
                                       const std::string& fault,
                                       uint32_t retries = 0) {
  auto cfg = with_header(sim_config(sim), "x-sim-fault", fault);
  cfg.retry.max_retries = retries;
  cfg.timeouts.first_byte = 500ms;
  cfg.timeouts.idle = 500ms;
  chat_model model{sys, cfg};
  return model.invoke("Hello!");
}

/// Streams once with `fault`, collecting the chunks' text.
chat_model::result_type stream_with_fault(caf::actor_system& sys,
                                          const test::sim_process& sim,
                                          const std::string& fault,
                                          std::string& text,
                                          uint32_t retries = 2) {
  auto cfg = with_header(sim_config(sim), "x-sim-fault", fault);
  cfg.retry.max_retries = retries;
  cfg.timeouts.first_byte = 500ms;
  cfg.timeouts.idle = 500ms;
  chat_model model{sys, cfg};
  auto s = model.stream("Tell a story.");
  for (auto& chunk : s)
    text += chunk.content;
  return s.result();
}

/// Streams "Tell a story." from `model` to a subscriber actor that calls
/// `on_chunk(self)` for every chunk, then stops the subscriber. Returns
/// whether the stream ended with `stream_done`; fails the test when it
/// does not end within 60 s (a hang).
bool stream_to(caf::actor_system& sys, const chat_model& model,
               std::function<void(caf::event_based_actor*)> on_chunk) {
  std::promise<bool> finished;
  auto subscriber = test::spawn_fn(
      sys,
      [on_chunk = std::move(on_chunk),
       &finished](caf::event_based_actor* self) -> caf::behavior {
        return {
            [=](const chat_chunk&) { on_chunk(self); },
            [&finished](const stream_done&) { finished.set_value(true); },
            [&finished](const stream_failed&) { finished.set_value(false); },
        };
      });
  model.astream(subscriber, "Tell a story.");
  auto f = finished.get_future();
  auto ended = f.wait_for(60s) == std::future_status::ready;
  // Stopped before any REQUIRE: its handlers refer to `finished`.
  caf::anon_send_exit(subscriber, caf::exit_reason::user_shutdown);
  REQUIRE(ended);
  return f.get();
}

} // namespace

TEST_CASE("a 429 with Retry-After is retried after at least that wait") {
  test::sim_process sim;
  test::test_system ts;
  auto start = clock_type::now();
  auto r = ask_with_fault(ts.sys, sim, "429;retry-after=1", 0);
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::rate_limited);
  CHECK(to_failure(r.error()).status == 429);
  CHECK(to_failure(r.error()).retry_after_ms == 1000);
  // Once, then success: the retry waits the server's second.
  auto cfg = with_header(sim_config(sim), "x-sim-fault-once",
                         "429;retry-after=1;key=k429");
  chat_model model{ts.sys, cfg};
  start = clock_type::now();
  auto ok = model.invoke("Hello!");
  REQUIRE(ok);
  CHECK(ok->attempts == 2);
  CHECK(clock_type::now() - start >= 1s);
}

TEST_CASE("500 then success is retried with backoff") {
  test::sim_process sim;
  test::test_system ts;
  auto cfg =
      with_header(sim_config(sim), "x-sim-fault-once", "500;key=k500;times=2");
  chat_model model{ts.sys, cfg};
  auto r = model.invoke("What is 2+2?");
  REQUIRE(r);
  CHECK(r->attempts == 3);
  CHECK(r->content().find('4') != std::string::npos);
}

TEST_CASE("server errors give server_error once retries run out") {
  test::sim_process sim;
  test::test_system ts;
  for (auto fault : {"500", "503"}) {
    auto r = ask_with_fault(ts.sys, sim, fault, 1);
    REQUIRE_FALSE(r);
    CHECK(code_of(r.error()) == errc::server_error);
    CHECK(to_failure(r.error()).status == std::stoi(fault));
  }
}

TEST_CASE("x-should-retry: false stops retries") {
  test::sim_process sim;
  test::test_system ts;
  test::reset_stats(sim);
  auto r = ask_with_fault(ts.sys, sim, "503;should-retry=false", 2);
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::server_error);
  CHECK(test::read_stats(sim).requests == 1);
}

TEST_CASE("reset-before is a retryable connection failure") {
  test::sim_process sim;
  test::test_system ts;
  auto r = ask_with_fault(ts.sys, sim, "reset-before", 0);
  REQUIRE_FALSE(r);
  auto f = to_failure(r.error());
  CHECK(f.code == errc::connection_lost);
  CHECK_FALSE(f.response_started);
  auto cfg = with_header(sim_config(sim), "x-sim-fault-once",
                         "reset-before;key=kreset");
  chat_model model{ts.sys, cfg};
  auto ok = model.invoke("Hello!");
  REQUIRE(ok);
  CHECK(ok->attempts == 2);
}

TEST_CASE("stall-first hits the first-byte deadline") {
  test::sim_process sim;
  test::test_system ts;
  auto r = ask_with_fault(ts.sys, sim, "stall-first", 0);
  REQUIRE_FALSE(r);
  auto f = to_failure(r.error());
  CHECK(f.code == errc::timeout);
  CHECK(f.which == deadline::first_byte);
}

TEST_CASE("stall-mid hits the idle deadline after partial chunks") {
  test::sim_process sim;
  test::test_system ts;
  std::string text;
  auto r = stream_with_fault(ts.sys, sim, "stall-mid", text);
  REQUIRE_FALSE(r);
  auto f = to_failure(r.error());
  CHECK(f.code == errc::timeout);
  CHECK(f.which == deadline::idle);
  // Never retried once data was delivered: the partial text stays partial.
  CHECK_FALSE(text.empty());
}

TEST_CASE("reset-mid delivers the partial chunks, then stream_failed") {
  test::sim_process sim;
  test::test_system ts;
  std::string text;
  auto r = stream_with_fault(ts.sys, sim, "reset-mid", text);
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::connection_lost);
  CHECK_FALSE(text.empty());
  CHECK(text.size() < 200);
}

TEST_CASE("bad JSON and a stream without [DONE] are protocol errors") {
  test::sim_process sim;
  test::test_system ts;
  auto r = ask_with_fault(ts.sys, sim, "bad-json", 0);
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::protocol_error);
  std::string text;
  auto s = stream_with_fault(ts.sys, sim, "bad-json", text);
  REQUIRE_FALSE(s);
  CHECK(code_of(s.error()) == errc::protocol_error);
  text.clear();
  auto n = stream_with_fault(ts.sys, sim, "no-done", text);
  REQUIRE_FALSE(n);
  CHECK(code_of(n.error()) == errc::protocol_error);
  CHECK_FALSE(text.empty());
}

TEST_CASE("an error event inside a stream ends it with the server's message") {
  test::sim_process sim;
  test::test_system ts;
  std::string text;
  auto r = stream_with_fault(ts.sys, sim, "error-mid", text);
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::server_error);
}

TEST_CASE("a slow subscriber keeps the request's memory bounded") {
  test::sim_process sim;
  test::test_system ts;
  auto cfg = with_header(sim_config(sim), "x-sim-chunks", "3000");
  cfg.stream_window = 32;
  chat_model model{ts.sys, cfg};
  struct seen {
    std::atomic<size_t> chunks{0};
    std::atomic<size_t> max_mailbox{0};
  };
  auto s = std::make_shared<seen>();
  CHECK(stream_to(ts.sys, model, [s](caf::event_based_actor* self) {
    ++s->chunks;
    // Everything still waiting in the mailbox is memory held for us.
    auto queued = self->mailbox().size();
    if (queued > s->max_mailbox) s->max_mailbox = queued;
    std::this_thread::sleep_for(100us);
  }));
  CHECK(s->chunks >= 3000);
  // The window (32) plus at most the chunks of one socket read in flight.
  CHECK(s->max_mailbox < 32 + 400);
}

TEST_CASE("a subscriber going down cancels the exchange") {
  test::sim_process sim{{"--token-delay-ms", "50"}};
  test::test_system ts;
  chat_model model{ts.sys, sim_config(sim)};
  auto subscriber =
      ts.sys.spawn([](caf::event_based_actor* self) -> caf::behavior {
        return {[=](const chat_chunk&) { self->quit(); }};
      });
  model.astream(subscriber, "Tell a story.");
  // The stream would take seconds; the slot must come back quickly.
  auto deadline = clock_type::now() + 5s;
  test::sim_stats st;
  do {
    std::this_thread::sleep_for(50ms);
    st = test::read_stats(sim);
  } while ((st.requests < 1 || st.in_flight != 0) &&
           clock_type::now() < deadline);
  CHECK(st.requests == 1);
  CHECK(st.in_flight == 0);
}

TEST_CASE("a subscriber that never answers a probe does not stall the stream") {
  test::sim_process sim;
  test::test_system ts;
  auto cfg = with_header(sim_config(sim), "x-sim-chunks", "40");
  cfg.stream_window = 8;
  cfg.timeouts.idle = 300ms;
  chat_model model{ts.sys, cfg};
  auto chunks = std::make_shared<std::atomic<size_t>>(0);
  // Takes each chunk's response promise and never delivers it: CAF 0.17
  // sends no broken_promise for that, so only the probe's own timeout
  // gives the credit back. Without probe timeouts the stream would wait
  // for the transport's total deadline (10 minutes), past stream_to's 60 s.
  auto held = std::make_shared<std::vector<caf::response_promise>>();
  CHECK(stream_to(ts.sys, model, [chunks, held](caf::event_based_actor* self) {
    ++*chunks;
    held->push_back(self->make_response_promise());
  }));
  CHECK(*chunks >= 40);
}
