// The chat model's public API against maritaca-sim over loopback: invoke,
// stream, batch, futures, actors, shutdown.

#include "maritaca/chat_model.hpp"
#include "maritaca/session.hpp"

#include "support/actors.hpp"

#include <caf/all.hpp>
#include <caf/policy/work_sharing.hpp>
#include <caf/policy/work_stealing.hpp>
#include <caf/scheduler/coordinator.hpp>
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <thread>

using namespace maritaca;
using namespace std::chrono_literals;
using test::sim_config;

namespace {

using clock_type = std::chrono::steady_clock;

} // namespace

TEST_CASE("invoke answers the seed's questions") {
  test::sim_process sim;
  test::test_system ts;
  chat_model model{ts.sys, sim_config(sim)};
  auto r = model.invoke("What is 2+2?");
  REQUIRE(r);
  CHECK(r->content().find('4') != std::string::npos);
  CHECK(r->message.role == "assistant");
  CHECK(r->finish_reason == "stop");
  REQUIRE(r->usage);
  CHECK(r->usage->total_tokens > 0);
  CHECK(r->attempts == 1);
  auto capital = model.invoke("What is the capital of Brazil?");
  REQUIRE(capital);
  CHECK(capital->content().find("Brasília") != std::string::npos);
}

TEST_CASE("invoke takes a string, role pairs or full messages") {
  test::sim_process sim;
  test::test_system ts;
  chat_model model{ts.sys, sim_config(sim)};
  auto a = model.invoke("What is the capital of Brazil?");
  auto b = model.invoke({{"system", "You are helpful."},
                         {"human", "What is the capital of Brazil?"}});
  auto c = model.invoke(std::vector<chat_message>{
      chat_message::user("What is the capital of Brazil?")});
  REQUIRE(a);
  REQUIRE(b);
  REQUIRE(c);
  CHECK(a->content() == c->content());
  CHECK(b->content().find("Brasília") != std::string::npos);
}

TEST_CASE("a model that owns its actor system works standalone") {
  test::sim_process sim;
  chat_model model{sim_config(sim)};
  auto r = model.invoke("Hello!");
  REQUIRE(r);
  CHECK_FALSE(r->content().empty());
}

TEST_CASE("a model's own threads poll at most their idle spin and then block") {
  test::sim_process sim;
  for (auto spin : {0us, 100us, 5'000us}) {
    CAPTURE(spin.count());
    auto cfg = sim_config(sim);
    cfg.scheduler_idle_spin = spin;
    cfg.io_idle_spin = spin;
    cfg.scheduler_threads = 2;
    chat_model model{cfg};
    auto r = model.invoke("What is the capital of Brazil?");
    REQUIRE(r);
    CHECK(r->content().find("Brasília") != std::string::npos);
    auto stream = model.stream("Hello!");
    std::size_t chunks = 0;
    for (auto& chunk : stream) {
      (void)chunk;
      ++chunks;
    }
    REQUIRE(stream.result());
    CHECK(chunks > 1);
    // A worker or I/O thread that kept polling would use the whole window.
    CHECK(test::idle_cpu(50ms, 300ms) < 100ms);
  }
}

TEST_CASE("use_polling_scheduler serves a caller's own actor system") {
  using sharing = caf::scheduler::coordinator<caf::policy::work_sharing>;
  using stealing = caf::scheduler::coordinator<caf::policy::work_stealing>;
  {
    // Without a spin it is CAF's work sharing itself.
    caf::actor_system_config plain_cfg;
    use_polling_scheduler(plain_cfg, 0us);
    plain_cfg.set("scheduler.max-threads", 1);
    caf::actor_system plain{plain_cfg};
    CHECK(dynamic_cast<sharing*>(&plain.scheduler()) != nullptr);
  }
  test::sim_process sim;
  caf::actor_system_config sys_cfg;
  configure(sys_cfg);
  use_polling_scheduler(sys_cfg, 5ms);
  sys_cfg.set("scheduler.max-threads", 1);
  caf::actor_system sys{sys_cfg};
  // With one, neither of CAF's own schedulers.
  CHECK(dynamic_cast<sharing*>(&sys.scheduler()) == nullptr);
  CHECK(dynamic_cast<stealing*>(&sys.scheduler()) == nullptr);
  chat_model model{sys, sim_config(sim)};
  for (int i = 0; i < 3; ++i)
    CHECK(model.invoke("What is 2+2?"));
  CHECK(test::idle_cpu(50ms, 300ms) < 100ms);
}

TEST_CASE("a stream hands out no chunk that carries nothing") {
  test::sim_process sim;
  test::test_system ts;
  chat_model model{ts.sys,
                   test::with_header(sim_config(sim), "x-sim-chunks", "70")};
  auto chunks = model.stream("Tell a story.");
  std::size_t words = 0;
  std::size_t count = 0;
  for (auto& chunk : chunks) {
    ++count;
    INFO("chunk " << chunk.seq);
    CHECK((!chunk.content.empty() || !chunk.tool_calls.empty() ||
           !chunk.finish_reason.empty() || chunk.usage.has_value()));
    if (!chunk.content.empty()) ++words;
  }
  REQUIRE(chunks.result());
  // 70 words, then the finish reason and the usage: no role-only chunk.
  CHECK(words == 70);
  CHECK(count == 72);
}

TEST_CASE("stream delivers chunks before the answer ends") {
  test::sim_process sim{{"--token-delay-ms", "20"}};
  test::test_system ts;
  chat_model model{ts.sys, sim_config(sim)};
  auto chunks = model.stream("Tell a story.");
  std::string text;
  std::size_t count = 0;
  clock_type::time_point first;
  uint64_t expected_seq = 0;
  for (auto& chunk : chunks) {
    if (count++ == 0) first = clock_type::now();
    CHECK(chunk.seq == expected_seq++);
    CHECK(chunk.request_id == chunks.id());
    text += chunk.content;
  }
  auto end = clock_type::now();
  auto& result = chunks.result();
  REQUIRE(result);
  CHECK(count > 10);
  // Incremental: the answer took many token delays after the first chunk.
  CHECK(end - first >= 20ms * (count / 2));
  CHECK(text == result->content());
  // Usage figures on streams (stream_options.include_usage).
  REQUIRE(result->usage);
  CHECK(result->usage->completion_tokens > 0);
  CHECK(result->finish_reason == "stop");
}

TEST_CASE("batch keeps input order and isolates a failing item") {
  test::sim_process sim;
  test::test_system ts;
  chat_model model{ts.sys, sim_config(sim)};
  // An input without messages is refused before it is sent.
  auto results =
      model.batch({"What is 2+2?", input{}, "What is the capital of Brazil?"});
  REQUIRE(results.size() == 3);
  REQUIRE(results[0]);
  CHECK(results[0]->content().find('4') != std::string::npos);
  REQUIRE_FALSE(results[1]);
  CHECK(code_of(results[1].error()) == errc::invalid_argument);
  CHECK_THAT(to_failure(results[1].error()).message,
             Catch::Contains("messages"));
  REQUIRE(results[2]);
  CHECK(results[2]->content().find("Brasília") != std::string::npos);
}

TEST_CASE("100 concurrent asks through futures (gather)") {
  test::sim_process sim{{"--token-delay-ms", "1"}};
  test::test_system ts;
  auto cfg = sim_config(sim);
  cfg.limits.max_concurrency = 32;
  chat_model model{ts.sys, cfg};
  std::vector<std::future<chat_model::result_type>> futures;
  for (int i = 0; i < 100; ++i)
    futures.push_back(model.ainvoke("What is " + std::to_string(i) + "+1?"));
  auto results = gather(std::move(futures));
  REQUIRE(results.size() == 100);
  for (int i = 0; i < 100; ++i) {
    INFO("ask " << i);
    REQUIRE(results[i]);
    CHECK(results[i]->content().find(std::to_string(i + 1)) !=
          std::string::npos);
  }
}

TEST_CASE("abatch from plain code and from an actor") {
  test::sim_process sim;
  test::test_system ts;
  chat_model model{ts.sys, sim_config(sim)};
  auto fut = model.abatch({{{"human", "What is 2+2?"}},
                           {{"human", "What is the capital of Brazil?"}}});
  auto results = fut.get();
  REQUIRE(results.size() == 2);
  REQUIRE(results[0]);
  REQUIRE(results[1]);
  CHECK(results[1]->content().find("Brasília") != std::string::npos);
  // From an actor: the callback sees all results in input order.
  std::promise<std::vector<chat_model::result_type>> prom;
  auto from_actor = prom.get_future();
  ts.sys.spawn([&](caf::event_based_actor* self) {
    model.abatch(self, {"What is 1+1?", "What is 2+2?", "What is 3+3?"},
                 [&](std::vector<chat_model::result_type> rs) {
                   prom.set_value(std::move(rs));
                 });
  });
  auto rs = from_actor.get();
  REQUIRE(rs.size() == 3);
  for (std::size_t i = 0; i < 3; ++i) {
    REQUIRE(rs[i]);
    CHECK(rs[i]->content().find(std::to_string((i + 1) * 2)) !=
          std::string::npos);
  }
}

TEST_CASE("abatch from a typed actor") {
  test::sim_process sim;
  test::test_system ts;
  chat_model model{ts.sys, sim_config(sim)};
  using pinger = caf::typed_actor<caf::reacts_to<ask_atom>>;
  std::promise<std::vector<chat_model::result_type>> prom;
  auto fut = prom.get_future();
  auto a = ts.sys.spawn([&](pinger::pointer self) -> pinger::behavior_type {
    return {[=, &prom](ask_atom) {
      model.abatch(self, {"What is 1+1?", "What is 2+2?"},
                   [&prom](std::vector<chat_model::result_type> rs) {
                     prom.set_value(std::move(rs));
                   });
    }};
  });
  caf::anon_send(a, ask_atom::value);
  REQUIRE(fut.wait_for(30s) == std::future_status::ready);
  auto rs = fut.get();
  REQUIRE(rs.size() == 2);
  REQUIRE(rs[1]);
  CHECK(rs[1]->content().find('4') != std::string::npos);
  caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
}

TEST_CASE("an owning handle used inside its own system is refused loudly") {
  test::sim_process sim;
  std::promise<std::string> refused;
  std::promise<std::string> answered;
  {
    // The model makes its own system; its actors must hold for_actor().
    chat_model model{sim_config(sim)};
    model.system().spawn([model, &refused](caf::event_based_actor* self) {
      model.ainvoke(self, "What is 2+2?")
          .then([&refused](ai_message&) { refused.set_value("answered"); },
                [&refused](caf::error& err) {
                  refused.set_value(describe(err));
                });
    });
    model.system().spawn([m = model.for_actor(),
                          &answered](caf::event_based_actor* self) {
      m.ainvoke(self, "What is 2+2?")
          .then([&answered](ai_message& a) { answered.set_value(a.content()); },
                [&answered](caf::error& err) {
                  answered.set_value(describe(err));
                });
    });
    auto text = refused.get_future().get();
    INFO(text);
    CHECK(text.find("invalid_argument") != std::string::npos);
    CHECK(text.find("for_actor()") != std::string::npos);
    CHECK(answered.get_future().get().find('4') != std::string::npos);
    // From plain code (a scoped actor on the caller's thread) it is fine.
    caf::scoped_actor self{model.system()};
    bool ok = false;
    model.ainvoke(self.ptr(), "What is 2+2?")
        .receive([&](ai_message&) { ok = true; }, [&](caf::error&) {});
    CHECK(ok);
  }
}

TEST_CASE("sessions take plain strings from actors") {
  test::sim_process sim;
  test::test_system ts;
  chat_model model{ts.sys, sim_config(sim)};
  auto s = spawn_session(model);
  std::promise<std::string> second;
  ts.sys.spawn([=, &second](caf::event_based_actor* self) {
    ainvoke(self, s, "My name is Ana.")
        .then(
            [=, &second](ai_message&) {
              ainvoke(self, s, "What is my name?")
                  .then([&second](
                            ai_message& m) { second.set_value(m.content()); },
                        [&second](caf::error& e) {
                          second.set_value(describe(e));
                        });
            },
            [&second](caf::error& e) { second.set_value(describe(e)); });
  });
  auto text = second.get_future().get();
  CHECK(text.find("Ana") != std::string::npos);
  caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
}

TEST_CASE("ainvoke and astream from an actor") {
  test::sim_process sim;
  test::test_system ts;
  chat_model model{ts.sys, sim_config(sim)};
  std::promise<std::string> answer;
  ts.sys.spawn([&](caf::event_based_actor* self) {
    model.ainvoke(self, "What is the capital of Brazil?")
        .then([&](ai_message& msg) { answer.set_value(msg.content()); },
              [&](caf::error& err) { answer.set_value(describe(err)); });
  });
  CHECK(answer.get_future().get().find("Brasília") != std::string::npos);
  // A subscriber actor receives chunks, then exactly one stream_done.
  struct seen {
    std::atomic<int> chunks{0};
    std::atomic<int> done{0};
    std::atomic<int> failed{0};
    std::string text;
  };
  auto s = std::make_shared<seen>();
  std::promise<void> finished;
  auto subscriber =
      ts.sys.spawn([s, &finished](caf::event_based_actor*) -> caf::behavior {
        return {
            [s](const chat_chunk& x) {
              ++s->chunks;
              s->text += x.content;
            },
            [s, &finished](const stream_done&) {
              ++s->done;
              finished.set_value();
            },
            [s, &finished](const stream_failed&) {
              ++s->failed;
              finished.set_value();
            },
        };
      });
  auto id = model.astream(subscriber, "Tell a story.");
  CHECK(id != 0);
  REQUIRE(finished.get_future().wait_for(30s) == std::future_status::ready);
  std::this_thread::sleep_for(50ms); // nothing else may arrive
  CHECK(s->done == 1);
  CHECK(s->failed == 0);
  CHECK(s->chunks > 5);
  CHECK(s->text.find("Maritaca") != std::string::npos);
  caf::anon_send_exit(subscriber, caf::exit_reason::user_shutdown);
}

TEST_CASE("models lists the service's models") {
  test::sim_process sim;
  test::test_system ts;
  chat_model model{ts.sys, sim_config(sim)};
  auto xs = model.models();
  REQUIRE(xs);
  REQUIRE_FALSE(xs->empty());
  CHECK(std::any_of(xs->begin(), xs->end(),
                    [](auto& m) { return m.id == "sabia-4"; }));
}

TEST_CASE("a wrong key is unauthorized, never echoing the key") {
  test::sim_process sim{{"--api-key", "right-key"}};
  test::test_system ts;
  auto cfg = sim_config(sim);
  cfg.api_key = "wrong-key-123";
  chat_model model{ts.sys, cfg};
  auto r = model.invoke("Hello!");
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::unauthorized);
  CHECK(describe(r.error()).find("wrong-key-123") == std::string::npos);
  cfg.api_key = "right-key";
  chat_model good{ts.sys, cfg};
  CHECK(good.invoke("Hello!"));
}

TEST_CASE("shutdown with asks queued and in flight cancels each promptly") {
  test::sim_process sim;
  test::test_system ts;
  auto cfg = test::with_header(sim_config(sim), "x-sim-fault", "stall-first");
  cfg.limits.max_concurrency = 2;
  cfg.retry.max_retries = 0;
  chat_model model{ts.sys, cfg};
  std::vector<std::future<chat_model::result_type>> futures;
  for (int i = 0; i < 6; ++i)
    futures.push_back(model.ainvoke("Hello!"));
  auto stream = model.stream("Tell a story.");
  std::this_thread::sleep_for(300ms);
  auto start = clock_type::now();
  model.shutdown();
  for (auto& f : futures) {
    REQUIRE(f.wait_for(10s) == std::future_status::ready);
    auto r = f.get();
    REQUIRE_FALSE(r);
    CHECK(code_of(r.error()) == errc::cancelled);
  }
  auto& sr = stream.result();
  REQUIRE_FALSE(sr);
  CHECK(code_of(sr.error()) == errc::cancelled);
  CHECK(clock_type::now() - start < 10s);
}

TEST_CASE("destroying a model that owns its actor system cancels its asks") {
  test::sim_process sim;
  auto cfg = test::with_header(sim_config(sim), "x-sim-fault", "stall-first");
  cfg.limits.max_concurrency = 2;
  cfg.retry.max_retries = 0;
  std::vector<std::future<chat_model::result_type>> futures;
  auto start = clock_type::now();
  {
    // The last handle owns the actor system: its destructor shuts the
    // system down with two asks running and four queued.
    chat_model model{cfg};
    for (int i = 0; i < 6; ++i)
      futures.push_back(model.ainvoke("Hello!"));
    std::this_thread::sleep_for(300ms);
    start = clock_type::now();
  }
  for (auto& f : futures) {
    REQUIRE(f.wait_for(10s) == std::future_status::ready);
    auto r = f.get();
    REQUIRE_FALSE(r);
    CHECK(code_of(r.error()) == errc::cancelled);
  }
  CHECK(clock_type::now() - start < 10s);
}

TEST_CASE("from_env reads the key, the base URL and the proxy settings") {
  // Restores the variables this test changes, whatever happens.
  struct saved_env {
    std::vector<std::pair<std::string, std::optional<std::string>>> vars;
    explicit saved_env(std::initializer_list<const char*> names) {
      for (auto n : names) {
        auto v = std::getenv(n);
        vars.emplace_back(n, v ? std::optional<std::string>{v} : std::nullopt);
        unsetenv(n);
      }
    }
    ~saved_env() {
      for (auto& [n, v] : vars)
        v ? setenv(n.c_str(), v->c_str(), 1) : unsetenv(n.c_str());
    }
  } guard{{"MARITACA_API_KEY", "MARITACA_API_BASE", "HTTPS_PROXY",
           "https_proxy", "NO_PROXY", "no_proxy"}};
  auto none = model_config::from_env();
  CHECK(none.api_key.empty());
  CHECK(none.base_url == default_base_url);
  CHECK(none.proxy.empty());
  CHECK(none.no_proxy.empty());
  setenv("MARITACA_API_KEY", "k", 1);
  setenv("MARITACA_API_BASE", "http://127.0.0.1:1/api", 1);
  setenv("https_proxy", "http://lower:3128", 1);
  setenv("no_proxy", "localhost, .internal ,,10.0.0.1", 1);
  auto lower = model_config::from_env();
  CHECK(lower.api_key == "k");
  CHECK(lower.base_url == "http://127.0.0.1:1/api");
  CHECK(lower.proxy == "http://lower:3128");
  CHECK(lower.no_proxy ==
        std::vector<std::string>{"localhost", ".internal", "10.0.0.1"});
  // Upper case wins, as in curl and httpx.
  setenv("HTTPS_PROXY", "http://upper:3128", 1);
  setenv("NO_PROXY", "*", 1);
  auto upper = model_config::from_env();
  CHECK(upper.proxy == "http://upper:3128");
  CHECK(upper.no_proxy == std::vector<std::string>{"*"});
}

TEST_CASE("a model asks and streams through an HTTP proxy") {
  test::proxy_process proxy{"user", "pw"};
  test::sim_process sim;
  test::test_system ts;
  auto cfg = test::sim_config(sim);
  cfg.proxy = "http://user:pw@127.0.0.1:" + std::to_string(proxy.port());
  chat_model model{ts.sys, cfg};
  auto r = model.invoke("What is 2+2?");
  REQUIRE(r);
  CHECK_FALSE(r->content().empty());
  std::string text;
  auto s = model.stream("Tell a story.");
  for (auto& chunk : s)
    text += chunk.content;
  REQUIRE(s.result());
  CHECK(text == s.result()->content());
  // A refusing proxy (no credentials): a typed error, at once, no retries.
  cfg.proxy = proxy.url();
  chat_model refused{ts.sys, cfg};
  auto e = refused.invoke("What is 2+2?");
  REQUIRE_FALSE(e);
  auto f = to_failure(e.error());
  CHECK(f.code == errc::connect_failed);
  CHECK(f.message.find("pw") == std::string::npos);
}

TEST_CASE("actors bound to a model end when it shuts down") {
  test::test_system ts;
  model_config cfg;
  cfg.base_url = "http://127.0.0.1:1/api"; // never contacted
  chat_model model{ts.sys, cfg};
  auto idle = [] { return caf::behavior{[](int) {}}; };
  auto bound = ts.sys.spawn(idle);
  auto released = ts.sys.spawn(idle);
  caf::scoped_actor self{ts.sys};
  self->monitor(bound);
  self->monitor(released);
  model.bind(bound.address());
  model.bind(released.address());
  model.unbind(released.address());
  model.shutdown();
  auto next_down = [&]() -> caf::actor_addr {
    caf::actor_addr who;
    self->receive([&](caf::down_msg& msg) { who = msg.source; },
                  caf::after(300ms) >> [] {});
    return who;
  };
  CHECK(next_down() == bound.address());
  CHECK(next_down() == caf::actor_addr{}); // `released` lives on
  // After shutdown, binding ends the actor at once.
  model.bind(released.address());
  CHECK(next_down() == released.address());
}
