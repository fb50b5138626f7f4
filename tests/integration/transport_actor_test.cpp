// Integration tests of the transport actor against maritaca-sim: the events
// of each kind of call, exactly one terminal event, window/ack
// back-pressure and cancellation when the caller goes down.

#include "maritaca/transport/transport_actor.hpp"

#include "support/process.hpp"
#include "support/wait.hpp"

#include <catch2/catch.hpp>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>

#include <chrono>
#include <cstdlib>
#include <thread>

using namespace maritaca;
using namespace maritaca::transport;
using namespace std::chrono_literals;

namespace {

using clock_type = std::chrono::steady_clock;

/// Everything a caller received for one call.
struct outcome {
  std::vector<sse::chunk_batch> batches;
  std::optional<chat_completion> completion;
  std::optional<std::vector<model_info>> models;
  std::optional<std::pair<response_head, std::string>> body;
  bool done = false;
  std::optional<failure> failed;
  /// Terminal events received (must end up 1).
  int terminals = 0;
  /// Events with a foreign tag.
  int strays = 0;
  bool timed_out = false;

  std::string content() const {
    std::string result;
    for (auto& batch : batches)
      for (auto& piece : batch.pieces)
        result += piece.choice.content;
    return result;
  }
};

/// Receives one event for `tag` (or a timeout) into `out`; acks chunk
/// batches when `ack` is set. Returns false on timeout.
bool receive_one(caf::scoped_actor& self, const transport_actor& transport,
                 uint64_t tag, outcome& out, bool ack,
                 std::chrono::milliseconds timeout = 10s) {
  bool got = true;
  auto mine = [&](uint64_t x) {
    if (x != tag) ++out.strays;
    return x == tag;
  };
  self->receive(
      [&](chunks_atom, uint64_t x, sse::chunk_batch& batch) {
        if (!mine(x)) return;
        out.batches.push_back(std::move(batch));
        if (ack) self->send(transport, ack_atom::value, tag, uint32_t{1});
      },
      [&](completion_atom, uint64_t x, chat_completion& result) {
        if (mine(x)) {
          ++out.terminals;
          out.completion = std::move(result);
        }
      },
      [&](models_atom, uint64_t x, std::vector<model_info>& result) {
        if (mine(x)) {
          ++out.terminals;
          out.models = std::move(result);
        }
      },
      [&](body_atom, uint64_t x, response_head& head, std::string& body) {
        if (mine(x)) {
          ++out.terminals;
          out.body.emplace(std::move(head), std::move(body));
        }
      },
      [&](done_atom, uint64_t x) {
        if (mine(x)) {
          ++out.terminals;
          out.done = true;
        }
      },
      [&](failed_atom, uint64_t x, failure& what) {
        if (mine(x)) {
          ++out.terminals;
          out.failed = std::move(what);
        }
      },
      caf::after(timeout) >> [&] { got = false; });
  return got;
}

/// Runs `c` to its terminal event, then waits a little longer to make sure
/// no second terminal event follows.
outcome run_call(caf::scoped_actor& self, const transport_actor& transport,
                 call c, bool ack = true) {
  outcome out;
  auto tag = c.tag;
  self->send(transport, exchange_atom::value, std::move(c));
  while (out.terminals == 0)
    if (!receive_one(self, transport, tag, out, ack)) {
      out.timed_out = true;
      return out;
    }
  while (receive_one(self, transport, tag, out, ack, 50ms))
    ; // nop
  return out;
}

std::string chat_body(bool stream) {
  return std::string{R"({"model":"sabia-4","messages":[{"role":"user",)"
                     R"("content":"hello"}])"} +
         (stream ? R"(,"stream":true)" : "") + "}";
}

call chat_call(const std::string& base, expect what, header_list extra = {}) {
  call c;
  c.tag = next_tag();
  c.what = what;
  c.req.url = base + "/chat/completions";
  c.req.fields = std::move(extra);
  c.req.fields.push_back({"Content-Type", "application/json"});
  c.req.body = chat_body(what == expect::chunks);
  return c;
}

using test::eventually;

pool_stats stats_of(caf::scoped_actor& self, const transport_actor& t) {
  pool_stats result;
  self->request(t, caf::infinite, stats_atom::value)
      .receive([&](pool_stats& x) { result = x; },
               [&](caf::error&) { FAIL("stats request failed"); });
  return result;
}

struct fixture {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  test::sim_process sim;
  transport_actor transport = spawn_transport(sys);

  ~fixture() { self->send_exit(transport, caf::exit_reason::user_shutdown); }
};

} // namespace

TEST_CASE_METHOD(fixture, "a completion call") {
  auto out =
      run_call(self, transport, chat_call(sim.base_url(), expect::completion));
  REQUIRE_FALSE(out.timed_out);
  INFO((out.failed ? out.failed->describe() : ""));
  CHECK(out.terminals == 1);
  CHECK(out.strays == 0);
  REQUIRE(out.completion);
  REQUIRE_FALSE(out.completion->choices.empty());
  CHECK_FALSE(out.completion->choices.front().message.text().empty());
  CHECK(out.batches.empty());
}

TEST_CASE_METHOD(fixture, "a chunk stream") {
  auto out = run_call(
      self, transport,
      chat_call(sim.base_url(), expect::chunks,
                {{"x-sim-chunks", "10"}, {"x-sim-token-delay-ms", "5"}}));
  REQUIRE_FALSE(out.timed_out);
  INFO((out.failed ? out.failed->describe() : ""));
  CHECK(out.terminals == 1);
  CHECK(out.done);
  CHECK(out.batches.size() >= 2);
  CHECK_FALSE(out.content().empty());
  CHECK(eventually([&] { return stats_of(self, transport).active == 0; }));
}

TEST_CASE_METHOD(fixture, "the models list and a raw body") {
  call c;
  c.tag = next_tag();
  c.what = expect::models;
  c.req.method = "GET";
  c.req.url = sim.base_url() + "/models";
  auto out = run_call(self, transport, c);
  REQUIRE(out.models);
  CHECK(out.terminals == 1);
  CHECK_FALSE(out.models->empty());
  c.tag = next_tag();
  c.what = expect::raw;
  c.req.url = sim.origin() + "/sim/stats";
  out = run_call(self, transport, c);
  REQUIRE(out.body);
  CHECK(out.body->first.status == 200);
  CHECK(test::parse_sim_stats(out.body->second).requests >= 0);
}

TEST_CASE_METHOD(fixture, "faults give typed failures") {
  auto failed_with = [&](std::string fault, expect what,
                         header_list extra = {}) {
    extra.push_back({"x-sim-fault", std::move(fault)});
    auto out = run_call(self, transport,
                        chat_call(sim.base_url(), what, std::move(extra)));
    REQUIRE_FALSE(out.timed_out);
    CHECK(out.terminals == 1);
    CHECK(out.strays == 0);
    REQUIRE(out.failed);
    return *out.failed;
  };
  SECTION("429 with retry-after in seconds") {
    auto what = failed_with("429;retry-after=2", expect::completion);
    CHECK(what.code == errc::rate_limited);
    CHECK(what.status == 429);
    CHECK(what.retry_after_ms == 2000);
    CHECK(what.response_started);
    CHECK_FALSE(what.message.empty());
  }
  SECTION("429 with retry-after-ms and x-should-retry, in a stream") {
    auto what = failed_with("429;retry-after-ms=1500;should-retry=false",
                            expect::chunks);
    CHECK(what.code == errc::rate_limited);
    CHECK(what.retry_after_ms == 1500);
    CHECK(what.should_retry == 0);
  }
  SECTION("500 and 503") {
    auto what = failed_with("500", expect::completion);
    CHECK(what.code == errc::server_error);
    CHECK(what.status == 500);
    CHECK(what.retry_after_ms == -1);
    what = failed_with("503;shape=openai", expect::chunks);
    CHECK(what.code == errc::server_error);
    CHECK(what.status == 503);
  }
  SECTION("reset-before") {
    auto what = failed_with("reset-before", expect::completion);
    CHECK(what.code == errc::connection_lost);
    CHECK_FALSE(what.response_started);
  }
  SECTION("reset-mid") {
    auto what = failed_with("reset-mid", expect::chunks,
                            {{"x-sim-token-delay-ms", "5"}});
    CHECK(what.code == errc::connection_lost);
    CHECK(what.response_started);
  }
  SECTION("stall-first") {
    auto c = chat_call(sim.base_url(), expect::chunks,
                       {{"x-sim-fault", "stall-first"}});
    c.req.limits.first_byte = 200ms;
    auto out = run_call(self, transport, c);
    REQUIRE(out.failed);
    CHECK(out.terminals == 1);
    CHECK(out.failed->code == errc::timeout);
    CHECK(out.failed->which == deadline::first_byte);
  }
  SECTION("stall-mid") {
    auto c = chat_call(sim.base_url(), expect::chunks,
                       {{"x-sim-fault", "stall-mid"}});
    c.req.limits.idle = 200ms;
    auto out = run_call(self, transport, c);
    REQUIRE(out.failed);
    CHECK(out.terminals == 1);
    CHECK(out.failed->code == errc::timeout);
    CHECK(out.failed->which == deadline::idle);
    CHECK_FALSE(out.batches.empty());
  }
  SECTION("bad-json in a completion") {
    auto what = failed_with("bad-json", expect::completion);
    CHECK(what.code == errc::protocol_error);
    CHECK(what.response_started);
  }
  SECTION("bad-json in a stream") {
    auto what = failed_with("bad-json", expect::chunks);
    CHECK(what.code == errc::protocol_error);
  }
  SECTION("no-done") {
    auto what = failed_with("no-done", expect::chunks);
    CHECK(what.code == errc::protocol_error);
    CHECK(what.message.find("DONE") != std::string::npos);
  }
  SECTION("an error event in a stream") {
    auto what = failed_with("error-mid", expect::chunks);
    CHECK(what.code != errc::none);
    CHECK(what.response_started);
  }
  SECTION("an invalid header") {
    auto what = failed_with("500", expect::completion, {{"x-bad", "a\nb"}});
    CHECK(what.code == errc::invalid_argument);
  }
  CHECK(eventually([&] { return stats_of(self, transport).active == 0; }));
  CHECK(eventually([&] { return test::read_stats(sim).in_flight == 0; }));
}

TEST_CASE_METHOD(fixture, "window and acks apply back-pressure") {
  auto c = chat_call(sim.base_url(), expect::chunks,
                     {{"x-sim-chunks", "40"}, {"x-sim-token-delay-ms", "5"}});
  c.window = 2;
  auto tag = c.tag;
  self->send(transport, exchange_atom::value, c);
  outcome out;
  REQUIRE(receive_one(self, transport, tag, out, false));
  // Without acks, at most `window` batches arrive.
  while (receive_one(self, transport, tag, out, false, 400ms))
    ; // nop
  CHECK(out.batches.size() == 2);
  CHECK(out.terminals == 0);
  // Acknowledging lets the stream go on to its end.
  self->send(transport, ack_atom::value, tag, uint32_t{2});
  while (out.terminals == 0)
    REQUIRE(receive_one(self, transport, tag, out, true));
  INFO((out.failed ? out.failed->describe() : ""));
  CHECK(out.done);
  CHECK(out.batches.size() > 2);
}

TEST_CASE_METHOD(fixture, "cancel_atom ends a stream with cancelled") {
  auto c = chat_call(sim.base_url(), expect::chunks,
                     {{"x-sim-chunks", "100"}, {"x-sim-token-delay-ms", "20"}});
  auto tag = c.tag;
  self->send(transport, exchange_atom::value, c);
  outcome out;
  REQUIRE(receive_one(self, transport, tag, out, true));
  REQUIRE(out.batches.size() == 1);
  self->send(transport, cancel_atom::value, tag);
  while (out.terminals == 0)
    REQUIRE(receive_one(self, transport, tag, out, true));
  while (receive_one(self, transport, tag, out, true, 100ms))
    ; // nop
  CHECK(out.terminals == 1);
  REQUIRE(out.failed);
  CHECK(out.failed->code == errc::cancelled);
  CHECK(eventually([&] { return test::read_stats(sim).in_flight == 0; }));
}

TEST_CASE_METHOD(fixture, "a caller going down cancels its exchange") {
  auto c = chat_call(sim.base_url(), expect::chunks,
                     {{"x-sim-chunks", "100"}, {"x-sim-token-delay-ms", "20"}});
  auto t = transport;
  // The caller quits after its first batch without cancelling.
  auto caller = sys.spawn([t, c](caf::event_based_actor* me) -> caf::behavior {
    me->send(t, exchange_atom::value, c);
    return {
        [me](chunks_atom, uint64_t, sse::chunk_batch&) { me->quit(); },
        [me](failed_atom, uint64_t, failure&) { me->quit(); },
        [me](done_atom, uint64_t) { me->quit(); },
    };
  });
  self->wait_for(caller);
  CHECK(eventually([&] { return stats_of(self, transport).active == 0; }));
  CHECK(eventually([&] { return test::read_stats(sim).in_flight == 0; }));
  CHECK(test::read_stats(sim).requests == 1);
}

TEST_CASE_METHOD(fixture, "shutting the transport down cancels its calls") {
  auto c = chat_call(sim.base_url(), expect::chunks,
                     {{"x-sim-fault", "stall-first"}});
  auto tag = c.tag;
  self->send(transport, exchange_atom::value, c);
  REQUIRE(eventually([&] { return test::read_stats(sim).in_flight == 1; }));
  self->send_exit(transport, caf::exit_reason::user_shutdown);
  outcome out;
  REQUIRE(receive_one(self, transport, tag, out, true, 3s));
  REQUIRE(out.failed);
  CHECK(out.failed->code == errc::cancelled);
  CHECK(eventually([&] { return test::read_stats(sim).in_flight == 0; }));
}
