#include "maritaca/chat_model.hpp"

#include "maritaca/limiter.hpp"

#include "spinning_sharing.hpp"
#include "stream_receive.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>

#include <algorithm>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_set>
#include <utility>

namespace maritaca {

void configure(caf::actor_system_config& cfg) {
  add_error_category(cfg);
}

void use_polling_scheduler(caf::actor_system_config& cfg,
                           std::chrono::microseconds spin) {
  cfg.set("scheduler.policy", caf::atom("sharing"));
  if (spin.count() <= 0) return;
  // CAF builds the scheduler from the config unless a module factory made
  // one already.
  cfg.module_factories.push_back(
      [spin](caf::actor_system& sys) -> caf::actor_system::module* {
        auto* sched = new detail::spinning_coordinator(sys);
        sched->data().spin = spin;
        return sched;
      });
}

// -- runtime
// --------------------------------------------------------------------

/// The actors behind a model. Actors of the model (sessions, agent runs)
/// keep it alive as well as the caller's handles.
struct chat_model::runtime {
  caf::actor_system* sys = nullptr;
  transport::transport_actor wire;
  dispatcher_actor dispatcher;
  /// The published cluster limiter (`limits.cluster.listen`), if any.
  caf::actor limiter;
  uint16_t cluster_port = 0;
  /// Guards `down` and `bound`.
  std::mutex mtx;
  bool down = false;
  /// Actors that end with the runtime (`chat_model::bind`).
  std::unordered_set<caf::actor_addr> bound;

  void start(const model_config& cfg) {
    transport::client_config cc;
    cc.io_threads = cfg.io_threads;
    cc.idle_spin = cfg.io_idle_spin;
    cc.ca_file = cfg.ca_file;
    cc.verify_peer = cfg.verify_peer;
    cc.proxy = cfg.proxy;
    cc.no_proxy = cfg.no_proxy;
    // The pool never needs more connections than requests on the wire.
    cc.max_connections_per_origin =
        std::max<std::size_t>(cfg.limits.max_concurrency, 1);
    cc.max_idle_per_origin = cc.max_connections_per_origin;
    auto& cl = cfg.limits.cluster;
    if (!cl.listen.empty()) {
      // This process holds the cluster's limiter; its own dispatcher uses
      // it directly, the others over the network.
      limiter_config lc;
      lc.max_concurrency = cl.global_concurrency;
      lc.requests_per_minute = cl.global_requests_per_minute;
      lc.tokens_per_minute = cl.global_tokens_per_minute;
      lc.lease_ttl = cl.lease_ttl;
      limiter = spawn_limiter(*sys, lc);
      auto port = publish_limiter(*sys, limiter, cl.listen);
      if (!port) {
        caf::anon_send_exit(limiter, caf::exit_reason::user_shutdown);
        throw std::runtime_error("cannot publish the cluster limiter on " +
                                 cl.listen + ": " + sys->render(port.error()));
      }
      cluster_port = *port;
    }
    wire = transport::spawn_transport(*sys, cc);
    dispatcher = spawn_dispatcher(
        *sys, wire, endpoint{cfg.base_url, cfg.api_key}, cfg.limits, limiter);
  }

  void stop() {
    std::unordered_set<caf::actor_addr> xs;
    {
      std::lock_guard<std::mutex> guard{mtx};
      if (std::exchange(down, true)) return;
      xs.swap(bound);
    }
    caf::anon_send_exit(dispatcher, caf::exit_reason::user_shutdown);
    if (limiter) caf::anon_send_exit(limiter, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(wire, caf::exit_reason::user_shutdown);
    for (auto& x : xs)
      caf::anon_send_exit(x, caf::exit_reason::user_shutdown);
  }

  void bind(const caf::actor_addr& who) {
    {
      std::lock_guard<std::mutex> guard{mtx};
      if (!down) {
        bound.insert(who);
        return;
      }
    }
    caf::anon_send_exit(who, caf::exit_reason::user_shutdown);
  }

  void unbind(const caf::actor_addr& who) {
    std::lock_guard<std::mutex> guard{mtx};
    bound.erase(who);
  }

  ~runtime() { stop(); }
};

/// The actor system a model made for itself. Only the caller's handles hold
/// it, never an actor of that system: the last owner destroys the system,
/// which waits for every actor, and doing that on one of the system's own
/// threads would wait for itself (while `main` may already be exiting).
struct chat_model::owner {
  std::unique_ptr<caf::actor_system_config> cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::shared_ptr<runtime> rt;

  ~owner() {
    // Queued and running asks end as cancelled; then the system waits for
    // its actors, in its destructor.
    if (rt) rt->stop();
    sys.reset();
  }
};

chat_model::chat_model(model_config cfg)
    : config_(std::make_shared<const model_config>(std::move(cfg))) {
  rt_ = std::make_shared<runtime>();
  owner_ = std::make_shared<owner>();
  owner_->cfg = std::make_unique<caf::actor_system_config>();
  auto& own_cfg = *owner_->cfg;
  configure(own_cfg);
  // This system serves the model alone, and its messages come mostly from
  // the I/O threads. CAF's default (work stealing, at least 4 workers) lets
  // idle workers poll and then sleep 50 us to 10 ms, so each hand-off from
  // an I/O thread waits for a wake-up and the polling competes with the I/O
  // threads for cores. Workers sharing one queue block on a condition
  // variable and wake as a message arrives. The actors of an ask (caller,
  // dispatcher, request, transport, subscriber) hand messages to each other:
  // on one worker that is a queue push; across workers, a futex wake-up
  // and a context switch each. An idle worker looks at the queue for
  // `scheduler_idle_spin` before it blocks, so the I/O thread's answer
  // rarely has to wake it (docs/performance.md).
  use_polling_scheduler(own_cfg, config_->scheduler_idle_spin);
  auto threads = config_->scheduler_threads;
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  own_cfg.set("scheduler.max-threads", threads);
  if (config_->limits.cluster.enabled()) configure_cluster(own_cfg);
  owner_->sys = std::make_unique<caf::actor_system>(own_cfg);
  rt_->sys = owner_->sys.get();
  // Set before start: if it throws, ~owner still shuts the system down.
  owner_->rt = rt_;
  rt_->start(*config_);
}

chat_model::chat_model(caf::actor_system& sys, model_config cfg)
    : config_(std::make_shared<const model_config>(std::move(cfg))) {
  rt_ = std::make_shared<runtime>();
  rt_->sys = &sys;
  rt_->start(*config_);
}

chat_model::chat_model(std::shared_ptr<runtime> rt, std::shared_ptr<owner> own,
                       model_config cfg)
    : rt_(std::move(rt)), owner_(std::move(own)),
      config_(std::make_shared<const model_config>(std::move(cfg))) {
  // nop
}

chat_model chat_model::with_config(model_config cfg) const {
  // Endpoint and limits belong to the shared runtime.
  cfg.base_url = config_->base_url;
  cfg.api_key = config_->api_key;
  cfg.limits = config_->limits;
  return chat_model{rt_, owner_, std::move(cfg)};
}

chat_model chat_model::for_actor() const {
  auto result = *this;
  result.owner_.reset();
  return result;
}

chat_model chat_model::bind_tools(std::vector<tool_spec> tools,
                                  std::optional<tool_choice> choice) const {
  auto cfg = *config_;
  cfg.tools = std::move(tools);
  cfg.tool_choice = std::move(choice);
  return chat_model{rt_, owner_, std::move(cfg)};
}

dispatcher_actor chat_model::dispatcher() const {
  return rt_->dispatcher;
}

transport::transport_actor chat_model::transport() const {
  return rt_->wire;
}

caf::actor_system& chat_model::system() const {
  return *rt_->sys;
}

uint16_t chat_model::cluster_port() const noexcept {
  return rt_->cluster_port;
}

void chat_model::shutdown() const {
  rt_->stop();
}

void chat_model::bind(const caf::actor_addr& who) const {
  rt_->bind(who);
}

void chat_model::unbind(const caf::actor_addr& who) const {
  rt_->unbind(who);
}

// -- building blocks
// ------------------------------------------------------------

chat_request chat_model::make_request(input in) const {
  chat_request req;
  req.model = config_->model;
  req.messages = std::move(in.messages);
  req.temperature = config_->temperature;
  req.top_p = config_->top_p;
  req.max_tokens = config_->max_tokens;
  req.stop = config_->stop;
  req.frequency_penalty = config_->frequency_penalty;
  req.presence_penalty = config_->presence_penalty;
  req.tools = config_->tools;
  req.tool_choice = config_->tool_choice;
  req.response_format = config_->response_format;
  return req;
}

ask chat_model::make_ask(input in, std::vector<caf::actor> subscribers) const {
  ask x;
  x.id = next_request_id();
  x.body = make_request(std::move(in));
  x.options.timeouts = config_->timeouts;
  x.options.retry = config_->retry;
  x.options.stream_window = config_->stream_window;
  x.options.timeout = config_->ask_timeout;
  x.options.headers = config_->extra_headers;
  x.subscribers = std::move(subscribers);
  x.body.stream = !x.subscribers.empty();
  return x;
}

// -- blocking
// -------------------------------------------------------------------

chat_model::result_type chat_model::invoke(input in) const {
  caf::scoped_actor self{system()};
  result_type result{make_error(errc::cancelled, "no answer")};
  self->request(dispatcher(), caf::infinite, ask_atom::value,
                make_ask(std::move(in)))
      .receive([&](ai_message& msg) { result = std::move(msg); },
               [&](caf::error& err) { result = std::move(err); });
  return result;
}

std::vector<chat_model::result_type>
chat_model::batch(std::vector<input> ins) const {
  caf::scoped_actor self{system()};
  // All asks leave at once (one lane: FIFO among themselves); the
  // dispatcher's limit decides how many run.
  std::vector<result_type> results;
  results.reserve(ins.size());
  std::vector<decltype(self->request(dispatcher(), caf::infinite,
                                     ask_atom::value, std::declval<ask>()))>
      pending;
  pending.reserve(ins.size());
  for (auto& in : ins)
    pending.push_back(self->request(dispatcher(), caf::infinite,
                                    ask_atom::value, make_ask(std::move(in))));
  for (auto& h : pending) {
    result_type r{make_error(errc::cancelled, "no answer")};
    h.receive([&](ai_message& msg) { r = std::move(msg); },
              [&](caf::error& err) { r = std::move(err); });
    results.push_back(std::move(r));
  }
  return results;
}

caf::expected<std::vector<model_info>> chat_model::models() const {
  caf::scoped_actor self{system()};
  caf::expected<std::vector<model_info>> result{
      make_error(errc::cancelled, "no answer")};
  self->request(dispatcher(), config_->ask_timeout, models_atom::value)
      .receive([&](std::vector<model_info>& xs) { result = std::move(xs); },
               [&](caf::error& err) { result = std::move(err); });
  return result;
}

chunk_stream chat_model::stream(input in) const {
  return chunk_stream{*this, std::move(in)};
}

// -- asynchronous, plain code
// ---------------------------------------------------

std::future<chat_model::result_type> chat_model::ainvoke(input in) const {
  auto prom = std::make_shared<std::promise<result_type>>();
  auto fut = prom->get_future();
  auto disp = dispatcher();
  // A small actor per future: it asks, then fulfils the promise and ends.
  // (The ask's deadline is the dispatcher's: see ask_options::timeout.)
  system().spawn(
      [prom, disp, x = make_ask(std::move(in))](caf::event_based_actor* self) {
        self->request(disp, caf::infinite, ask_atom::value, x)
            .then([prom](ai_message& msg) { prom->set_value(std::move(msg)); },
                  [prom](caf::error& err) { prom->set_value(std::move(err)); });
      });
  return fut;
}

std::shared_ptr<detail::batch_results>
detail::batch_results::make(std::size_t n, callback f) {
  auto r = std::make_shared<batch_results>();
  r->results_.resize(n, result_type{make_error(errc::cancelled, "no answer")});
  r->missing_ = n;
  r->done_ = std::move(f);
  if (n == 0) r->done_({});
  return r;
}

void detail::batch_results::set(std::size_t i, result_type r) {
  results_[i] = std::move(r);
  if (--missing_ == 0) done_(std::move(results_));
}

void chat_model::refuse_if_owned_by(caf::actor_system& home, ask& x) const {
  if (!owner_ || owner_->sys.get() != &home) return;
  // The actor would hold (or use) a handle that keeps the system alive:
  // when the caller's handles go, nothing waits for the actor, and if it
  // held the last one it would destroy the system on one of its threads.
  x.options.refused =
      "this chat_model handle owns its actor system and is used from an "
      "actor of that system: give actors model.for_actor() instead (see "
      "docs/async.md, 'From actors')";
}

std::future<std::vector<chat_model::result_type>>
chat_model::abatch(std::vector<input> ins) const {
  using results = std::vector<result_type>;
  auto prom = std::make_shared<std::promise<results>>();
  auto fut = prom->get_future();
  auto model = for_actor();
  system().spawn([prom, model,
                  ins = std::move(ins)](caf::event_based_actor* self) mutable {
    model.abatch(self, std::move(ins),
                 [prom](results rs) { prom->set_value(std::move(rs)); });
  });
  return fut;
}

uint64_t chat_model::astream(caf::actor subscriber, input in) const {
  auto x = make_ask(std::move(in), {std::move(subscriber)});
  auto id = x.id;
  // Its own lane; the answer goes to the subscriber as `stream_done`.
  x.lane = id;
  caf::anon_send(dispatcher(), ask_atom::value, std::move(x));
  return id;
}

void chat_model::cancel(uint64_t id) const {
  caf::anon_send(dispatcher(), cancel_atom::value, id);
}

// -- chunk_stream
// ---------------------------------------------------------------

chunk_stream::chunk_stream(const chat_model& model, input in)
    : self_(std::make_unique<caf::scoped_actor>(model.system())),
      dispatcher_(model.dispatcher()), timeout_(model.config().ask_timeout),
      result_(make_error(errc::cancelled, "no answer")) {
  auto x = model.make_ask(std::move(in), {caf::actor_cast<caf::actor>(*self_)});
  id_ = x.id;
  x.lane = id_;
  // The answer arrives as `stream_done`; the response itself is not needed.
  caf::anon_send(dispatcher_, ask_atom::value, std::move(x));
}

chunk_stream::chunk_stream(chunk_stream&&) noexcept = default;

chunk_stream& chunk_stream::operator=(chunk_stream&&) noexcept = default;

chunk_stream::~chunk_stream() {
  // Abandoned before the end: abort the exchange (the subscriber also goes
  // down with the scoped actor, which cancels as well).
  if (self_ && !ended_) caf::anon_send(dispatcher_, cancel_atom::value, id_);
}

std::optional<chat_chunk> chunk_stream::next() {
  if (ended_) return std::nullopt;
  auto step = detail::receive_stream_step(*self_, id_, timeout_);
  switch (step.kind) {
  case detail::stream_step::chunk:
    return std::move(step.next);
  case detail::stream_step::done:
    result_ = std::move(step.end.message);
    break;
  case detail::stream_step::failed:
    result_ = std::move(step.error);
    break;
  case detail::stream_step::timed_out:
    caf::anon_send(dispatcher_, cancel_atom::value, id_);
    result_ = make_error(make_timeout(
        deadline::total, "no stream event within the ask timeout"));
    break;
  }
  ended_ = true;
  return std::nullopt;
}

const chat_model::result_type& chunk_stream::result() {
  while (!ended_)
    next();
  return result_;
}

void chunk_stream::cancel() {
  if (ended_) return;
  caf::anon_send(dispatcher_, cancel_atom::value, id_);
  result();
}

} // namespace maritaca
