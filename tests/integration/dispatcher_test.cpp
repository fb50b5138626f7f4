// The dispatcher against maritaca-sim: the concurrency limit, fairness
// across lanes, the queue bound, cancellation and rate limits.

#include "maritaca/dispatcher.hpp"

#include "support/actors.hpp"

#include <caf/all.hpp>
#include <catch2/catch.hpp>

#include <chrono>
#include <mutex>
#include <thread>

using namespace maritaca;
using namespace std::chrono_literals;
using test::sim_config;
using test::with_header;

namespace {

using clock_type = std::chrono::steady_clock;

dispatcher_stats read_stats(caf::actor_system& sys, const chat_model& model) {
  caf::scoped_actor self{sys};
  dispatcher_stats result;
  self->request(model.dispatcher(), 5s, stats_atom::value)
      .receive([&](dispatcher_stats& x) { result = x; },
               [&](caf::error& err) { FAIL(describe(err)); });
  return result;
}

} // namespace

TEST_CASE("200 asks with limit 5 never exceed 5 on the wire") {
  test::sim_process sim{{"--token-delay-ms", "2"}};
  test::test_system ts;
  auto cfg = sim_config(sim);
  cfg.limits.max_concurrency = 5;
  chat_model model{ts.sys, cfg};
  test::reset_stats(sim);
  std::vector<input> ins;
  for (int i = 0; i < 200; ++i)
    ins.emplace_back("What is " + std::to_string(i) + "+" + std::to_string(i) +
                     "?");
  auto results = model.batch(std::move(ins));
  REQUIRE(results.size() == 200);
  for (int i = 0; i < 200; ++i) {
    REQUIRE(results[i]);
    CHECK(results[i]->content().find(std::to_string(2 * i)) !=
          std::string::npos);
  }
  auto sim_stats = test::read_stats(sim);
  CHECK(sim_stats.requests == 200);
  CHECK(sim_stats.max_in_flight <= 5);
  CHECK(sim_stats.max_in_flight >= 2); // the limit was actually used
  auto st = read_stats(ts.sys, model);
  CHECK(st.max_in_flight == 5);
  CHECK(st.admitted == 200);
  CHECK(st.completed == 200);
  CHECK(st.in_flight == 0);
  CHECK(st.queued == 0);
}

TEST_CASE("a lane with one ask is not starved behind another's 100") {
  test::sim_process sim{{"--token-delay-ms", "1"}};
  test::test_system ts;
  auto cfg = sim_config(sim);
  cfg.limits.max_concurrency = 2;
  // Answers that take 20 ms: A's asks stay queued long enough to look at.
  cfg.extra_headers.push_back({"x-sim-latency-ms", "20"});
  chat_model model{ts.sys, cfg};
  std::mutex mtx;
  std::vector<std::string> order;
  auto note = [&](std::string who) {
    std::lock_guard<std::mutex> guard{mtx};
    order.push_back(std::move(who));
  };
  std::promise<void> big_done;
  std::promise<void> small_done;
  // Lane A: 100 asks from one actor.
  ts.sys.spawn([&](caf::event_based_actor* self) {
    auto left = std::make_shared<int>(100);
    for (int i = 0; i < 100; ++i)
      model.ainvoke(self, "Tell a story.")
          .then(
              [&, left](ai_message&) {
                note("a");
                if (--*left == 0) big_done.set_value();
              },
              [&, left](caf::error&) {
                note("a-error");
                if (--*left == 0) big_done.set_value();
              });
  });
  // Wait (bounded) until most of A's asks wait in the queue.
  for (int i = 0; i < 200 && read_stats(ts.sys, model).queued < 50; ++i)
    std::this_thread::sleep_for(10ms);
  REQUIRE(read_stats(ts.sys, model).queued >= 50);
  // Lane B: one ask, sent while A's asks are queued. `before`: how many of
  // A's had finished when B asked (a loaded machine may run B late).
  std::size_t before = 0;
  ts.sys.spawn([&](caf::event_based_actor* self) {
    {
      std::lock_guard<std::mutex> guard{mtx};
      before = order.size();
    }
    model.ainvoke(self, "What is 2+2?")
        .then(
            [&](ai_message&) {
              note("b");
              small_done.set_value();
            },
            [&](caf::error&) {
              note("b-error");
              small_done.set_value();
            });
  });
  REQUIRE(small_done.get_future().wait_for(30s) == std::future_status::ready);
  REQUIRE(big_done.get_future().wait_for(60s) == std::future_status::ready);
  auto pos = std::find(order.begin(), order.end(), "b") - order.begin();
  INFO("b finished at position " << pos << ", asked after " << before);
  // Round robin: B goes right after the asks already on the wire, not
  // behind the ~50 still queued.
  CHECK(pos - static_cast<std::ptrdiff_t>(before) < 10);
  CHECK(std::count(order.begin(), order.end(), "a") == 100);
}

TEST_CASE("a full queue refuses with overloaded") {
  test::sim_process sim;
  test::test_system ts;
  auto cfg = with_header(sim_config(sim), "x-sim-fault", "stall-first");
  cfg.limits.max_concurrency = 1;
  cfg.limits.max_queue = 2;
  cfg.retry.max_retries = 0;
  chat_model model{ts.sys, cfg};
  std::vector<std::future<chat_model::result_type>> futures;
  for (int i = 0; i < 3; ++i)
    futures.push_back(model.ainvoke("Hello!"));
  // Wait (bounded) until one ask runs and two wait: then the queue is full.
  for (int i = 0; i < 200; ++i) {
    auto st = read_stats(ts.sys, model);
    if (st.in_flight == 1 && st.queued == 2) break;
    std::this_thread::sleep_for(50ms);
  }
  auto refused = model.ainvoke("Hello!");
  REQUIRE(refused.wait_for(5s) == std::future_status::ready);
  auto r = refused.get();
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::overloaded);
  CHECK(read_stats(ts.sys, model).rejected == 1);
  model.shutdown();
  for (auto& f : futures)
    CHECK(code_of(f.get().error()) == errc::cancelled);
}

/// A model that runs one ask at a time without retries, and a copy of it
/// whose first ask the simulator stalls (it never answers).
struct one_slot {
  test::sim_process sim;
  test::test_system ts;
  chat_model model{ts.sys, config(sim)};
  chat_model stalled{model.with_config(
      with_header(model.config(), "x-sim-fault", "stall-first"))};
  caf::scoped_actor self{ts.sys};

  static model_config config(const test::sim_process& sim) {
    auto cfg = sim_config(sim);
    cfg.limits.max_concurrency = 1;
    cfg.retry.max_retries = 0;
    return cfg;
  }
};

TEST_CASE_METHOD(one_slot,
                 "cancelling a running ask frees its slot for the next") {
  auto first = stalled.make_ask("Hello!");
  auto first_id = first.id;
  auto h1 =
      self->request(model.dispatcher(), 30s, ask_atom::value, std::move(first));
  auto h2 = self->request(model.dispatcher(), 30s, ask_atom::value,
                          model.make_ask("What is 2+2?"));
  std::this_thread::sleep_for(200ms);
  CHECK(read_stats(ts.sys, model).queued == 1);
  model.cancel(first_id);
  bool first_cancelled = false;
  h1.receive([&](ai_message&) {},
             [&](caf::error& err) {
               first_cancelled = code_of(err) == errc::cancelled;
             });
  CHECK(first_cancelled);
  std::string answer;
  h2.receive([&](ai_message& msg) { answer = msg.content(); },
             [&](caf::error& err) { answer = describe(err); });
  CHECK(answer.find('4') != std::string::npos);
  // The stalled exchange was aborted: the simulator sees nothing in flight.
  auto deadline = clock_type::now() + 5s;
  while (test::read_stats(sim).in_flight != 0 && clock_type::now() < deadline)
    std::this_thread::sleep_for(20ms);
  CHECK(test::read_stats(sim).in_flight == 0);
  auto st = read_stats(ts.sys, model);
  CHECK(st.cancelled == 1);
  CHECK(st.in_flight == 0);
}

TEST_CASE_METHOD(
    one_slot, "a dispatcher that exits cancels its running and queued asks") {
  auto h1 = self->request(model.dispatcher(), 30s, ask_atom::value,
                          stalled.make_ask("Hello!"));
  auto h2 = self->request(model.dispatcher(), 30s, ask_atom::value,
                          model.make_ask("What is 2+2?"));
  auto deadline = clock_type::now() + 5s;
  while (test::read_stats(sim).in_flight != 1 && clock_type::now() < deadline)
    std::this_thread::sleep_for(20ms);
  REQUIRE(test::read_stats(sim).in_flight == 1);
  // The request actor is not linked to the dispatcher: the dispatcher's
  // exit must still stop it, and both asks end with `cancelled`.
  auto t0 = clock_type::now();
  caf::anon_send_exit(model.dispatcher(), caf::exit_reason::kill);
  errc running = errc::none;
  errc queued = errc::none;
  h1.receive([&](ai_message&) {},
             [&](caf::error& err) { running = code_of(err); });
  h2.receive([&](ai_message&) {},
             [&](caf::error& err) { queued = code_of(err); });
  CHECK(running == errc::cancelled);
  CHECK(queued == errc::cancelled);
  CHECK(clock_type::now() - t0 < 10s); // not the 30 s request timeout
  // The stalled exchange was aborted.
  deadline = clock_type::now() + 5s;
  while (test::read_stats(sim).in_flight != 0 && clock_type::now() < deadline)
    std::this_thread::sleep_for(20ms);
  CHECK(test::read_stats(sim).in_flight == 0);
}

TEST_CASE("cancelling a queued ask answers it and skips it") {
  test::sim_process sim{{"--token-delay-ms", "5"}};
  test::test_system ts;
  auto cfg = sim_config(sim);
  cfg.limits.max_concurrency = 1;
  chat_model model{ts.sys, cfg};
  caf::scoped_actor self{ts.sys};
  auto h1 = self->request(model.dispatcher(), 30s, ask_atom::value,
                          model.make_ask("Tell a story."));
  auto queued = model.make_ask("Hello!");
  auto queued_id = queued.id;
  auto h2 = self->request(model.dispatcher(), 30s, ask_atom::value,
                          std::move(queued));
  model.cancel(queued_id);
  errc second = errc::none;
  h2.receive([&](ai_message&) {},
             [&](caf::error& err) { second = code_of(err); });
  CHECK(second == errc::cancelled);
  bool first_ok = false;
  h1.receive([&](ai_message&) { first_ok = true; }, [&](caf::error&) {});
  CHECK(first_ok);
  CHECK(test::read_stats(sim).requests == 1);
}

TEST_CASE("requests per minute are enforced") {
  test::sim_process sim;
  test::test_system ts;
  auto cfg = sim_config(sim);
  // 120 per minute: a burst of 120, then one every 500 ms.
  cfg.limits.requests_per_minute = 120;
  chat_model model{ts.sys, cfg};
  // Drain the burst with a batch, then time 3 more.
  std::vector<input> burst(120, input{"Hello!"});
  for (auto& r : model.batch(burst))
    REQUIRE(r);
  auto start = clock_type::now();
  std::vector<input> more(3, input{"Hello!"});
  for (auto& r : model.batch(more))
    REQUIRE(r);
  CHECK(clock_type::now() - start >= 1s);
}

TEST_CASE("an ask waiting longer than max_queue_wait times out (queue)") {
  test::sim_process sim;
  test::test_system ts;
  auto cfg = with_header(sim_config(sim), "x-sim-fault", "stall-first");
  cfg.limits.max_concurrency = 1;
  cfg.limits.max_queue_wait = 300ms;
  cfg.retry.max_retries = 0;
  chat_model model{ts.sys, cfg};
  auto running = model.ainvoke("Hello!");
  std::this_thread::sleep_for(100ms);
  auto start = clock_type::now();
  auto queued = model.invoke("Hello!");
  REQUIRE_FALSE(queued);
  auto f = to_failure(queued.error());
  CHECK(f.code == errc::timeout);
  CHECK(f.which == deadline::queue);
  CHECK(clock_type::now() - start >= 250ms);
  auto st = read_stats(ts.sys, model);
  CHECK(st.queued == 0);
  CHECK(st.in_flight == 1);
  model.shutdown();
  CHECK(code_of(running.get().error()) == errc::cancelled);
}

TEST_CASE_METHOD(one_slot,
                 "asks outliving ask_timeout end with timeout, running or "
                 "queued, without a request timeout of the caller") {
  auto cfg = stalled.config();
  cfg.ask_timeout = 400ms;
  chat_model short_lived{stalled.with_config(cfg)};
  // Both asks go without a CAF timeout: only the dispatcher bounds them.
  auto start = clock_type::now();
  auto h1 = self->request(model.dispatcher(), caf::infinite, ask_atom::value,
                          short_lived.make_ask("Hello!"));
  auto h2 = self->request(model.dispatcher(), caf::infinite, ask_atom::value,
                          short_lived.make_ask("Hello again!"));
  failure first;
  failure second;
  h1.receive([&](ai_message&) {},
             [&](caf::error& err) { first = to_failure(err); });
  h2.receive([&](ai_message&) {},
             [&](caf::error& err) { second = to_failure(err); });
  auto took = clock_type::now() - start;
  CHECK(first.code == errc::timeout);
  CHECK(first.which == deadline::total);
  CHECK(second.code == errc::timeout);
  CHECK(second.which == deadline::total);
  CHECK(took >= 350ms);
  CHECK(took < 10s); // not the 60 s first-byte deadline
  // The running exchange was aborted.
  auto deadline = clock_type::now() + 5s;
  while (test::read_stats(sim).in_flight != 0 && clock_type::now() < deadline)
    std::this_thread::sleep_for(20ms);
  CHECK(test::read_stats(sim).in_flight == 0);
  auto st = read_stats(ts.sys, model);
  CHECK(st.timed_out == 2);
  CHECK(st.in_flight == 0);
  CHECK(st.queued == 0);
  // The slot is free again.
  auto answer = model.invoke("What is 2+2?");
  REQUIRE(answer);
  CHECK(answer->content().find('4') != std::string::npos);
}

TEST_CASE("request actors are reused, at most max_concurrency of them") {
  test::sim_process sim;
  test::test_system ts;
  auto cfg = sim_config(sim);
  cfg.limits.max_concurrency = 3;
  cfg.retry.max_retries = 0;
  chat_model model{ts.sys, cfg};
  // The answer reaches the caller before the request actor's report
  // reaches the dispatcher: wait for the slots to be free.
  auto settled = [&] {
    auto deadline = clock_type::now() + 5s;
    while (read_stats(ts.sys, model).in_flight != 0 &&
           clock_type::now() < deadline)
      std::this_thread::sleep_for(1ms);
  };
  // One after the other: one request actor serves them all (without the
  // wait, the next ask might take a second one).
  for (int i = 0; i < 5; ++i) {
    REQUIRE(model.invoke("What is 2+2?"));
    settled();
  }
  CHECK(read_stats(ts.sys, model).request_actors == 1);
  // A cancel for an ask that has ended does not touch the next ask that
  // the same actor runs.
  caf::scoped_actor self{ts.sys};
  auto done = model.make_ask("What is 3+3?");
  auto done_id = done.id;
  self->request(model.dispatcher(), 30s, ask_atom::value, std::move(done))
      .receive([](ai_message&) {},
               [](caf::error& err) { FAIL(describe(err)); });
  model.cancel(done_id);
  auto next = model.invoke("What is 4+4?");
  REQUIRE(next);
  CHECK(next->content().find('8') != std::string::npos);
  // Streams and plain asks take turns on the same actors.
  std::vector<input> ins(12, input{"Tell a story."});
  for (auto& r : model.batch(ins))
    REQUIRE(r);
  std::string streamed;
  for (auto& piece : model.stream("Tell a story."))
    streamed += piece.content;
  CHECK_FALSE(streamed.empty());
  settled();
  auto st = read_stats(ts.sys, model);
  CHECK(st.request_actors >= 2); // the batch used more than one
  CHECK(st.request_actors <= 3);
  CHECK(st.in_flight == 0);
  CHECK(st.completed == st.admitted);
}
