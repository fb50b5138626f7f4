// maritaca-bench: throughput, latency and memory of the public API.
//
//   maritaca-bench invoke   --base-url URL --requests N --concurrency C
//                           [--ca-file F] [--warmup W]
//   maritaca-bench stream   --base-url URL --requests N --concurrency C
//                           [--chunks K] [--ca-file F] [--warmup W]
//   maritaca-bench sessions --count N
//   maritaca-bench admit    --requests N --concurrency C
//   maritaca-bench admission --requests N
//
// Every figure is printed as `name: value`, one per line. Everything goes
// through chat_model and its dispatcher (the actor API), never internals.

#include "maritaca/chat_model.hpp"
#include "maritaca/error.hpp"
#include "maritaca/limiter.hpp"
#include "maritaca/session.hpp"

#include "maritaca/apps/flags.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/io/middleman.hpp>
#include <caf/scoped_actor.hpp>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <future>
#include <iostream>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

constexpr const char* usage_text = R"(usage: maritaca-bench COMMAND [options]

commands:
  invoke     N non-streamed asks, C at once: req/s, p50_us, p99_us,
             cpu_ms (CPU time of the whole process while they ran)
  stream     N streamed asks, C at once, every chunk counted by a
             subscriber actor: streams/s, chunks/s, cpu_ms
  sessions   N idle session actors: bytes_per_session (RSS growth / N)
  admit      N asks through the dispatcher, C at once, against a port
             that refuses connections (admission and failure paths only):
             asks/s
  admission  N cluster admissions (acquire -> grant, then release) from
             one node to a limiter on another over loopback, one at a
             time, and the same in-process: remote_p50_us, remote_p99_us,
             local_p50_us, local_p99_us

options:
  --base-url URL            API base URL
  --requests N              asks to time (default 1000)
  --concurrency C           asks at once (default 64)
  --warmup W                untimed asks first (default: min(N, 4 C))
  --chunks K                (stream) send `x-sim-chunks: K`
  --ca-file F               extra trusted CA certificates (PEM)
  --count N                 (sessions) sessions to spawn (default 100000)
  --scheduler-threads T     CAF scheduler threads (default: the model's
                            own system, model_config::scheduler_threads)
  --scheduler-policy P      a system of the bench's own with CAF's
                            scheduler P: stealing (CAF's default) or sharing
  --relaxed-sleep-us U      work stealing: idle workers sleep U us (CAF's
                            defaults: 50 us moderate, 10 ms relaxed)
  --io-threads T            HTTP client I/O threads (default 1)
  --io-spin-us U            model_config::io_idle_spin (default 50)
  --scheduler-spin-us U     model_config::scheduler_idle_spin (default 100)
  --stream-window W         (stream) model_config::stream_window
  -h, --help                this text
)";

struct usage_error {
  std::string what;
};

struct options {
  std::string command;
  std::string base_url;
  std::string ca_file;
  std::size_t requests = 1000;
  std::size_t concurrency = 64;
  std::optional<std::size_t> warmup;
  std::optional<int64_t> chunks;
  std::size_t count = 100'000;
  std::size_t scheduler_threads = 0;
  std::string scheduler_policy;
  std::optional<std::size_t> relaxed_sleep_us;
  std::size_t io_threads = 1;
  std::optional<std::size_t> io_spin_us;
  std::optional<std::size_t> scheduler_spin_us;
  std::optional<std::size_t> stream_window;
};

/// The current flag's value as a count (a non-negative integer); throws
/// usage_error otherwise.
std::size_t count(const maritaca::apps::flag_reader& args) {
  std::size_t n = 0;
  if (!maritaca::apps::parse_number<std::size_t>(
          args.value(), n, 0, std::numeric_limits<std::size_t>::max()))
    throw usage_error{args.bad_value()};
  return n;
}

options parse(int argc, char** argv) {
  static constexpr std::string_view with_value[] = {
      "--base-url",
      "--ca-file",
      "--requests",
      "--concurrency",
      "--warmup",
      "--chunks",
      "--count",
      "--scheduler-threads",
      "--scheduler-policy",
      "--relaxed-sleep-us",
      "--io-threads",
      "--io-spin-us",
      "--scheduler-spin-us",
      "--stream-window",
  };
  options o;
  maritaca::apps::flag_reader args{argc, argv};
  while (args.next()) {
    auto& flag = args.flag();
    if (flag == "-h" || flag == "--help") {
      o.command = "help";
      return o;
    }
    if (flag.empty() || flag[0] != '-') {
      if (!o.command.empty()) throw usage_error{"unexpected argument " + flag};
      o.command = flag;
      continue;
    }
    std::string error;
    if (!args.take_value(with_value, error)) throw usage_error{error};
    if (flag == "--base-url") {
      o.base_url = args.value();
    } else if (flag == "--ca-file") {
      o.ca_file = args.value();
    } else if (flag == "--requests") {
      o.requests = count(args);
    } else if (flag == "--concurrency") {
      o.concurrency = count(args);
    } else if (flag == "--warmup") {
      o.warmup = count(args);
    } else if (flag == "--chunks") {
      o.chunks = static_cast<int64_t>(count(args));
    } else if (flag == "--count") {
      o.count = count(args);
    } else if (flag == "--scheduler-threads") {
      o.scheduler_threads = count(args);
    } else if (flag == "--scheduler-policy") {
      o.scheduler_policy = args.value();
      if (o.scheduler_policy != "stealing" && o.scheduler_policy != "sharing")
        throw usage_error{"--scheduler-policy is stealing or sharing"};
    } else if (flag == "--relaxed-sleep-us") {
      o.relaxed_sleep_us = count(args);
    } else if (flag == "--io-threads") {
      o.io_threads = count(args);
    } else if (flag == "--io-spin-us") {
      o.io_spin_us = count(args);
    } else if (flag == "--scheduler-spin-us") {
      o.scheduler_spin_us = count(args);
    } else if (flag == "--stream-window") {
      o.stream_window = count(args);
    }
  }
  if (o.concurrency == 0) throw usage_error{"--concurrency must be at least 1"};
  if (o.io_threads == 0) throw usage_error{"--io-threads must be at least 1"};
  return o;
}

/// The model of a run. By default it is what `chat_model{cfg}` gives users:
/// a model with its own actor system (the library's defaults;
/// `--scheduler-threads` sets its `scheduler_threads`). The other scheduler
/// flags make a system of ours instead (CAF's system keeps a reference to
/// its configuration: both live here).
struct runtime {
  std::unique_ptr<caf::actor_system_config> sys_cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::optional<maritaca::chat_model> model;

  runtime(const options& o, maritaca::model_config cfg) {
    if (o.scheduler_policy.empty() && !o.relaxed_sleep_us) {
      if (o.scheduler_threads > 0) cfg.scheduler_threads = o.scheduler_threads;
      model.emplace(std::move(cfg));
      return;
    }
    sys_cfg = std::make_unique<caf::actor_system_config>();
    maritaca::configure(*sys_cfg);
    if (o.scheduler_threads > 0)
      sys_cfg->set("scheduler.max-threads", o.scheduler_threads);
    if (!o.scheduler_policy.empty())
      sys_cfg->set("scheduler.policy", o.scheduler_policy == "sharing"
                                           ? caf::atom("sharing")
                                           : caf::atom("stealing"));
    if (o.relaxed_sleep_us) {
      auto d = caf::timespan{std::chrono::microseconds{*o.relaxed_sleep_us}};
      sys_cfg->set("work-stealing.relaxed-sleep-duration", d);
      sys_cfg->set("work-stealing.moderate-sleep-duration", d);
    }
    sys = std::make_unique<caf::actor_system>(*sys_cfg);
    model.emplace(*sys, std::move(cfg));
  }

  ~runtime() {
    // The model (and its own system, if any) goes first.
    model.reset();
    sys.reset();
  }
};

/// The model settings of a run: no retries (a failure is a failure), the
/// concurrency limit of the run, an unbounded queue.
maritaca::model_config make_config(const options& o) {
  maritaca::model_config cfg;
  cfg.base_url = o.base_url;
  cfg.ca_file = o.ca_file;
  cfg.io_threads = o.io_threads;
  if (o.io_spin_us) cfg.io_idle_spin = std::chrono::microseconds(*o.io_spin_us);
  if (o.scheduler_spin_us)
    cfg.scheduler_idle_spin = std::chrono::microseconds(*o.scheduler_spin_us);
  if (o.stream_window)
    cfg.stream_window = static_cast<uint32_t>(*o.stream_window);
  cfg.retry.max_retries = 0;
  cfg.limits.max_concurrency = o.concurrency;
  cfg.limits.max_queue = std::max<std::size_t>(o.requests, 10'000);
  cfg.ask_timeout = std::chrono::minutes{5};
  if (o.chunks)
    cfg.extra_headers.push_back({"x-sim-chunks", std::to_string(*o.chunks)});
  return cfg;
}

/// What one timed phase measured.
struct phase_result {
  std::chrono::nanoseconds elapsed{0};
  /// Latency of every successful ask (ns).
  std::vector<int64_t> latencies;
  uint64_t errors = 0;
  uint64_t chunks = 0;
  std::string first_error;
};

/// CPU time used so far by all threads of this process (the client: the
/// bench's actors, the model's scheduler and I/O threads).
std::chrono::nanoseconds process_cpu() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

double seconds(std::chrono::nanoseconds d) {
  return std::chrono::duration<double>(d).count();
}

/// The `q`-quantile (0..1) of sorted `xs`, nearest rank.
int64_t quantile(const std::vector<int64_t>& xs, double q) {
  if (xs.empty()) return 0;
  auto rank = static_cast<std::size_t>(q * static_cast<double>(xs.size()));
  return xs[std::min(rank, xs.size() - 1)];
}

// -- invoke
// ---------------------------------------------------------------------

/// Runs `total` non-streamed asks from one actor, `concurrency` at once
/// (closed loop: each answer sends the next ask).
phase_result run_invoke(const maritaca::chat_model& model, std::size_t total,
                        std::size_t concurrency) {
  struct driver {
    maritaca::chat_model model;
    std::size_t total = 0;
    std::size_t launched = 0;
    std::size_t done = 0;
    clock_type::time_point start;
    phase_result result;
    std::promise<phase_result> prom;

    void launch(caf::event_based_actor* self) {
      ++launched;
      auto t0 = clock_type::now();
      model.ainvoke(self, "Oi")
          .then(
              [this, self, t0](maritaca::ai_message&) {
                result.latencies.push_back((clock_type::now() - t0).count());
                next(self);
              },
              [this, self](caf::error& err) {
                if (result.errors++ == 0)
                  result.first_error = maritaca::describe(err);
                next(self);
              });
    }

    void next(caf::event_based_actor* self) {
      ++done;
      if (launched < total)
        launch(self);
      else if (done == total)
        finish(self);
    }

    void finish(caf::event_based_actor* self) {
      result.elapsed = clock_type::now() - start;
      prom.set_value(std::move(result));
      self->quit();
    }
  };
  // The actor keeps a handle that does not own the model's system.
  auto d = std::make_shared<driver>(driver{model.for_actor(), total});
  d->result.latencies.reserve(total);
  auto fut = d->prom.get_future();
  model.system().spawn([d, concurrency](caf::event_based_actor* self) {
    d->start = clock_type::now();
    if (d->total == 0) return d->finish(self);
    for (std::size_t i = 0; i < concurrency && d->launched < d->total; ++i)
      d->launch(self);
  });
  return fut.get();
}

int cmd_invoke(const options& o) {
  if (o.base_url.empty()) throw usage_error{"invoke needs --base-url"};
  runtime rt{o, make_config(o)};
  {
    auto& model = *rt.model;
    auto warmup = o.warmup.value_or(std::min(o.requests, 4 * o.concurrency));
    if (warmup > 0) {
      auto w = run_invoke(model, warmup, o.concurrency);
      if (w.errors > 0) {
        std::cerr << "maritaca-bench: warm-up failed: " << w.first_error
                  << std::endl;
        return 1;
      }
    }
    auto cpu0 = process_cpu();
    auto r = run_invoke(model, o.requests, o.concurrency);
    auto cpu = process_cpu() - cpu0;
    std::sort(r.latencies.begin(), r.latencies.end());
    auto ok = static_cast<double>(r.latencies.size());
    std::printf("req/s: %.0f\n", ok / seconds(r.elapsed));
    std::printf("p50_us: %.1f\n",
                static_cast<double>(quantile(r.latencies, 0.50)) / 1e3);
    std::printf("p99_us: %.1f\n",
                static_cast<double>(quantile(r.latencies, 0.99)) / 1e3);
    std::printf("cpu_ms: %.1f\n", seconds(cpu) * 1e3);
    std::printf("errors: %" PRIu64 "\n", r.errors);
    std::fflush(stdout);
    if (r.errors > 0) {
      std::cerr << "maritaca-bench: " << r.errors
                << " asks failed, first: " << r.first_error << std::endl;
      return 1;
    }
    model.shutdown();
  }
  return 0;
}

// -- stream
// ---------------------------------------------------------------------

/// Runs `total` streamed asks, `concurrency` at once: one worker actor per
/// slot is both the asker and the subscriber; it counts every `chat_chunk`
/// message and starts its next ask when the answer arrives.
phase_result run_stream(const maritaca::chat_model& model, std::size_t total,
                        std::size_t concurrency) {
  struct shared {
    std::size_t total = 0;
    std::atomic<std::size_t> claimed{0};
    std::atomic<std::size_t> done{0};
    std::atomic<uint64_t> chunks{0};
    std::atomic<uint64_t> errors{0};
    std::atomic<std::size_t> workers{0};
    clock_type::time_point start;
    std::mutex mtx;
    std::string first_error;
    std::vector<int64_t> latencies;
    std::promise<phase_result> prom;

    /// Called once per worker when it ran out of asks.
    void worker_done() {
      if (--workers != 0) return;
      phase_result r;
      r.elapsed = clock_type::now() - start;
      r.chunks = chunks.load();
      r.errors = errors.load();
      r.first_error = first_error;
      r.latencies = std::move(latencies);
      prom.set_value(std::move(r));
    }
  };
  auto sh = std::make_shared<shared>();
  sh->total = total;
  auto fut = sh->prom.get_future();
  auto workers = std::min(concurrency, total);
  if (workers == 0) {
    phase_result r;
    return r;
  }
  sh->workers = workers;
  sh->start = clock_type::now();
  /// One slot: asks, subscribes, counts.
  struct worker {
    std::shared_ptr<shared> sh;
    maritaca::chat_model model;
    uint64_t chunks = 0;

    void next(caf::event_based_actor* self, std::shared_ptr<worker> me) {
      if (sh->claimed++ >= sh->total) {
        sh->chunks += chunks;
        sh->worker_done();
        self->quit();
        return;
      }
      auto t0 = clock_type::now();
      model.astream(self, caf::actor_cast<caf::actor>(self), "Oi")
          .then(
              [self, me, t0](maritaca::ai_message&) {
                auto ns = (clock_type::now() - t0).count();
                {
                  std::lock_guard<std::mutex> guard{me->sh->mtx};
                  me->sh->latencies.push_back(ns);
                }
                me->next(self, me);
              },
              [self, me](caf::error& err) {
                if (me->sh->errors++ == 0) {
                  std::lock_guard<std::mutex> guard{me->sh->mtx};
                  me->sh->first_error = maritaca::describe(err);
                }
                me->next(self, me);
              });
    }
  };
  for (std::size_t i = 0; i < workers; ++i) {
    auto w = std::make_shared<worker>(worker{sh, model.for_actor()});
    model.system().spawn([w](caf::event_based_actor* self) {
      w->next(self, w);
      return caf::behavior{
          [w](maritaca::chat_chunk&) { ++w->chunks; },
          [](maritaca::stream_done&) {},
          [](maritaca::stream_failed&) {},
      };
    });
  }
  return fut.get();
}

int cmd_stream(const options& o) {
  if (o.base_url.empty()) throw usage_error{"stream needs --base-url"};
  runtime rt{o, make_config(o)};
  {
    auto& model = *rt.model;
    auto warmup = o.warmup.value_or(std::min(o.requests, 4 * o.concurrency));
    if (warmup > 0) {
      auto w = run_stream(model, warmup, o.concurrency);
      if (w.errors > 0) {
        std::cerr << "maritaca-bench: warm-up failed: " << w.first_error
                  << std::endl;
        return 1;
      }
    }
    auto cpu0 = process_cpu();
    auto r = run_stream(model, o.requests, o.concurrency);
    auto cpu = process_cpu() - cpu0;
    std::sort(r.latencies.begin(), r.latencies.end());
    auto s = seconds(r.elapsed);
    auto ok = static_cast<double>(r.latencies.size());
    std::printf("streams/s: %.0f\n", ok / s);
    std::printf("chunks/s: %.0f\n", static_cast<double>(r.chunks) / s);
    std::printf("chunks_per_stream: %.1f\n",
                ok > 0 ? static_cast<double>(r.chunks) / ok : 0.0);
    std::printf("p50_us: %.1f\n",
                static_cast<double>(quantile(r.latencies, 0.50)) / 1e3);
    std::printf("cpu_ms: %.1f\n", seconds(cpu) * 1e3);
    std::printf("errors: %" PRIu64 "\n", r.errors);
    std::fflush(stdout);
    if (r.errors > 0) {
      std::cerr << "maritaca-bench: " << r.errors
                << " streams failed, first: " << r.first_error << std::endl;
      return 1;
    }
    model.shutdown();
  }
  return 0;
}

// -- sessions
// -------------------------------------------------------------------

/// Resident set size in bytes (from /proc/self/statm).
long long rss_bytes() {
  std::ifstream in{"/proc/self/statm"};
  long long size = 0;
  long long resident = 0;
  in >> size >> resident;
  return resident * static_cast<long long>(sysconf(_SC_PAGESIZE));
}

int cmd_sessions(const options& o) {
  if (o.count == 0) throw usage_error{"--count must be at least 1"};
  // Never asks: the URL is not contacted.
  auto cfg = make_config(o);
  if (cfg.base_url.empty()) cfg.base_url = "http://127.0.0.1:9/api";
  runtime rt{o, cfg};
  {
    auto& model = *rt.model;
    caf::scoped_actor self{model.system()};
    // Wait until every session ran its initialization and is idle.
    auto settle = [&](const std::vector<maritaca::session_actor>& xs) {
      using handle = decltype(self->request(xs.front(), caf::infinite,
                                            maritaca::history_atom::value));
      std::vector<handle> pending;
      pending.reserve(xs.size());
      for (auto& s : xs)
        pending.push_back(self->request(s, std::chrono::seconds{60},
                                        maritaca::history_atom::value));
      for (auto& h : pending)
        h.receive([](std::vector<maritaca::chat_message>&) {},
                  [](caf::error& err) {
                    std::cerr << "maritaca-bench: session did not answer: "
                              << maritaca::describe(err) << std::endl;
                  });
    };
    // Warm-up: the first sessions pay for one-time allocations.
    {
      std::vector<maritaca::session_actor> warm;
      for (int i = 0; i < 100; ++i)
        warm.push_back(maritaca::spawn_session(model));
      settle(warm);
    }
    // The handles, touched before measuring (8 bytes each, not counted).
    std::vector<maritaca::session_actor> sessions(o.count);
    auto before = rss_bytes();
    auto t0 = clock_type::now();
    for (auto& s : sessions)
      s = maritaca::spawn_session(model);
    settle(sessions);
    auto elapsed = clock_type::now() - t0;
    auto after = rss_bytes();
    auto n = static_cast<double>(o.count);
    std::printf("bytes_per_session: %.0f\n",
                static_cast<double>(after - before) / n);
    std::printf("rss_growth_mib: %.1f\n",
                static_cast<double>(after - before) / (1024.0 * 1024.0));
    std::printf("spawns/s: %.0f\n", n / seconds(elapsed));
    std::fflush(stdout);
    for (auto& s : sessions)
      self->send_exit(s, caf::exit_reason::user_shutdown);
    sessions.clear();
    model.shutdown();
  }
  return 0;
}

// -- admit
// ----------------------------------------------------------------------

int cmd_admit(options o) {
  // A port nobody listens on: every ask is admitted, fails to connect at
  // once (no retries) and frees its slot. Measures the actor path around
  // the wire: dispatcher, request actor, transport, error reply.
  if (o.base_url.empty()) o.base_url = "http://127.0.0.1:9/api";
  runtime rt{o, make_config(o)};
  {
    auto& model = *rt.model;
    auto r = run_invoke(model, o.requests, o.concurrency);
    std::printf("asks/s: %.0f\n",
                static_cast<double>(o.requests) / seconds(r.elapsed));
    std::printf("failed: %" PRIu64 "\n", r.errors);
    std::fflush(stdout);
    model.shutdown();
  }
  return 0;
}

// -- admission
// ------------------------------------------------------------------

/// Times `n` admissions of `self` through `limiter`, one at a time: the
/// round trip of an acquire and its grant (the release is one-way, sent
/// before the next acquire). Returns the round trips in microseconds.
std::vector<double> time_admissions(caf::scoped_actor& self,
                                    const caf::actor& limiter, std::size_t n) {
  std::vector<double> us;
  us.reserve(n);
  for (std::size_t i = 1; i <= n; ++i) {
    auto t0 = clock_type::now();
    self->send(limiter, maritaca::acquire_atom::value, uint64_t{i}, int64_t{0});
    bool granted = false;
    self->receive(
        [&](maritaca::grant_atom, uint64_t, int64_t) { granted = true; },
        caf::after(std::chrono::seconds{10}) >> [] {});
    if (!granted) throw std::runtime_error("no grant within 10 s");
    us.push_back(
        std::chrono::duration<double, std::micro>(clock_type::now() - t0)
            .count());
    self->send(limiter, maritaca::release_atom::value, uint64_t{i}, int64_t{0});
  }
  std::sort(us.begin(), us.end());
  return us;
}

double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  auto i = static_cast<std::size_t>(p * static_cast<double>(sorted.size() - 1));
  return sorted[i];
}

int cmd_admission(const options& o) {
  if (o.requests == 0) throw usage_error{"--requests must be at least 1"};
  // Two nodes in one process: the limiter's and a client's, linked by
  // CAF's middleman over loopback, as two processes would be.
  caf::actor_system_config cfg_a;
  maritaca::configure(cfg_a);
  maritaca::configure_cluster(cfg_a);
  caf::actor_system node_a{cfg_a};
  caf::actor_system_config cfg_b;
  maritaca::configure(cfg_b);
  maritaca::configure_cluster(cfg_b);
  caf::actor_system node_b{cfg_b};
  maritaca::limiter_config lc;
  lc.max_concurrency = 1;
  auto limiter = maritaca::spawn_limiter(node_a, lc);
  auto port = maritaca::publish_limiter(node_a, limiter, "127.0.0.1:0");
  if (!port) {
    std::cerr << "maritaca-bench: cannot publish the limiter: "
              << node_a.render(port.error()) << std::endl;
    return 1;
  }
  auto remote = node_b.middleman().remote_actor("127.0.0.1", *port);
  if (!remote) {
    std::cerr << "maritaca-bench: cannot reach the limiter: "
              << node_b.render(remote.error()) << std::endl;
    return 1;
  }
  auto warmup = o.warmup.value_or(std::min<std::size_t>(o.requests, 100));
  std::vector<double> remote_us;
  std::vector<double> local_us;
  {
    caf::scoped_actor client{node_b};
    time_admissions(client, *remote, warmup);
    remote_us = time_admissions(client, *remote, o.requests);
  }
  {
    caf::scoped_actor client{node_a};
    time_admissions(client, limiter, warmup);
    local_us = time_admissions(client, limiter, o.requests);
  }
  std::printf("remote_p50_us: %.1f\n", percentile(remote_us, 0.5));
  std::printf("remote_p99_us: %.1f\n", percentile(remote_us, 0.99));
  std::printf("local_p50_us: %.1f\n", percentile(local_us, 0.5));
  std::printf("local_p99_us: %.1f\n", percentile(local_us, 0.99));
  std::fflush(stdout);
  caf::anon_send_exit(limiter, caf::exit_reason::user_shutdown);
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  try {
    auto o = parse(argc, argv);
    if (o.command == "help") {
      std::cout << usage_text;
      return 0;
    }
    if (o.command == "invoke") return cmd_invoke(o);
    if (o.command == "stream") return cmd_stream(o);
    if (o.command == "sessions") return cmd_sessions(o);
    if (o.command == "admit") return cmd_admit(o);
    if (o.command == "admission") return cmd_admission(o);
    if (o.command.empty()) throw usage_error{"no command"};
    throw usage_error{"unknown command " + o.command};
  } catch (const usage_error& e) {
    std::cerr << "maritaca-bench: " << e.what << "\n\n" << usage_text;
    return 2;
  }
}
