#include "maritaca/agent.hpp"

#include "deadline_timer.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <algorithm>
#include <deque>

namespace maritaca {

namespace {

/// Margin between a run's own deadline and its requester's timeout.
constexpr std::chrono::milliseconds reply_margin{5'000};

// -- one run
// --------------------------------------------------------------------

struct run_state {
  std::optional<agent> spec;
  /// The conversation sent with each ask.
  std::vector<chat_message> messages;
  /// Where the run's own messages start in `messages`.
  std::size_t first_new = 0;
  uint32_t steps = 0;
  uint32_t calls_run = 0;
  bool started = false;
  bool finished = false;
  caf::typed_response_promise<agent_result> rp;
  /// When the whole run must have ended.
  std::chrono::steady_clock::time_point deadline_at;
  /// Results of the running step's tool calls, in call order.
  std::vector<std::optional<std::string>> results;
  std::size_t pending = 0;

  /// However the run ends, its requester gets one reply.
  ~run_state() {
    if (started && !finished && rp.pending())
      rp.deliver(make_error(errc::cancelled, "the agent run ended"));
  }

  static inline const char* name = "maritaca.agent_run";
};

// Dynamically typed: it also takes its own deadline tick.
using run_self = caf::stateful_actor<run_state>;

void finish(run_self* self, caf::error err) {
  auto& st = self->state;
  if (st.finished) return;
  st.finished = true;
  st.rp.deliver(std::move(err));
  self->quit();
}

void succeed(run_self* self, ai_message answer) {
  auto& st = self->state;
  if (st.finished) return;
  st.finished = true;
  agent_result result;
  result.messages.assign(st.messages.begin() +
                             static_cast<std::ptrdiff_t>(st.first_new),
                         st.messages.end());
  result.answer = std::move(answer);
  result.steps = st.steps;
  result.tool_calls = st.calls_run;
  // The session's mailbox gets the exchange before the requester gets the
  // answer, so a history read after the answer sees it.
  if (auto& s = st.spec->session())
    self->send(s, append_atom::value, result.messages);
  st.rp.deliver(std::move(result));
  self->quit();
}

void ask_model(run_self* self);

/// Records the result of call `i`; after the last one, asks again.
void call_done(run_self* self, std::size_t i, std::string text) {
  auto& st = self->state;
  if (st.finished || i >= st.results.size() || st.results[i]) return;
  st.results[i] = std::move(text);
  if (--st.pending > 0) return;
  // A copy: appending to `messages` invalidates references into it.
  auto calls = st.messages.back().tool_calls;
  for (std::size_t k = 0; k < calls.size(); ++k)
    st.messages.push_back(chat_message::tool(calls[k].id, *st.results[k]));
  st.results.clear();
  ask_model(self);
}

/// Starts every tool call of the last assistant message at once.
void run_tools(run_self* self) {
  auto& st = self->state;
  // A copy: `call_done` may append to `messages` before the loop ends.
  auto calls = st.messages.back().tool_calls;
  st.results.assign(calls.size(), std::nullopt);
  st.pending = calls.size();
  st.calls_run += static_cast<uint32_t>(calls.size());
  auto& tools = st.spec->tools();
  auto timeout = st.spec->config().tool_timeout;
  for (std::size_t i = 0; i < calls.size(); ++i) {
    auto& call = calls[i];
    auto t = std::find_if(tools.begin(), tools.end(),
                          [&](const tool& x) { return x.name() == call.name; });
    if (t == tools.end()) {
      call_done(self, i, "error: there is no tool named '" + call.name + "'");
      continue;
    }
    auto args = parse_arguments(t->spec, call.arguments);
    if (!args) {
      call_done(self, i, tool_error_text(args.error()));
      continue;
    }
    auto target = t->handler ? t->handler
                             : spawn_tool_worker(self->system(), t->function);
    self->request(target, timeout, tool_call_atom::value, args->text())
        .then(
            [=](std::string& text) { call_done(self, i, std::move(text)); },
            [=](caf::error& err) { call_done(self, i, tool_error_text(err)); });
  }
}

void on_answer(run_self* self, ai_message& msg) {
  auto& st = self->state;
  if (st.finished) return;
  ++st.steps;
  auto& calls = msg.message.tool_calls;
  // The `tool` messages refer to the calls by id; make sure there is one.
  for (std::size_t i = 0; i < calls.size(); ++i)
    if (calls[i].id.empty())
      calls[i].id =
          "call_" + std::to_string(msg.request_id) + "_" + std::to_string(i);
  if (calls.empty()) {
    st.messages.push_back(msg.message);
    succeed(self, std::move(msg));
    return;
  }
  if (st.steps >= st.spec->config().max_steps) {
    finish(self, make_error(errc::step_limit,
                            std::string{"agent step limit ("} +
                                std::to_string(st.steps) +
                                " asks) reached: the model still calls " +
                                calls.front().name));
    return;
  }
  st.messages.push_back(msg.message);
  run_tools(self);
}

/// Sends the conversation with the tools offered.
void ask_model(run_self* self) {
  auto& st = self->state;
  auto& spec = *st.spec;
  auto& cfg = spec.config();
  std::optional<tool_choice> choice = spec.model().config().tool_choice;
  if (cfg.choice) choice = cfg.choice;
  if (st.steps > 0 && !cfg.keep_choice) choice.reset();
  auto model = bind_tools(spec.model(), spec.tools(), choice);
  auto x = model.make_ask(input{st.messages});
  self->request(model.dispatcher(), caf::infinite, ask_atom::value,
                std::move(x))
      .then([=](ai_message& msg) { on_answer(self, msg); },
            [=](caf::error& err) { finish(self, std::move(err)); });
}

caf::behavior run_impl(run_self* self, agent spec) {
  self->state.spec.emplace(std::move(spec));
  return {
      [=](agent_atom, input& in) -> caf::result<agent_result> {
        auto& st = self->state;
        if (st.started)
          return make_error(errc::invalid_argument,
                            "an agent run actor runs once");
        st.started = true;
        st.rp = self->make_response_promise<agent_result>();
        auto rp = st.rp;
        if (auto err = validate_tools(st.spec->tools())) {
          finish(self, std::move(err));
          return rp;
        }
        // The whole run's deadline.
        st.deadline_at = std::chrono::steady_clock::now() + st.spec->deadline();
        detail::hop_toward(self, st.deadline_at, tick_atom::value);
        auto session = st.spec->session();
        if (!session) {
          st.messages = std::move(in.messages);
          ask_model(self);
          return rp;
        }
        self->request(session, st.spec->model().config().ask_timeout,
                      history_atom::value)
            .then(
                [=, msgs = std::move(in.messages)](
                    std::vector<chat_message>& history) mutable {
                  auto& st = self->state;
                  st.messages = std::move(history);
                  st.first_new = st.messages.size();
                  for (auto& m : msgs)
                    st.messages.push_back(std::move(m));
                  ask_model(self);
                },
                [=](caf::error& err) { finish(self, std::move(err)); });
        return rp;
      },
      [=](tick_atom) {
        auto& st = self->state;
        if (!detail::due(st.deadline_at))
          return detail::hop_toward(self, st.deadline_at, tick_atom::value);
        auto ms = std::to_string(st.spec->deadline().count());
        finish(self,
               make_error(make_timeout(
                   deadline::total, "the agent run took over " + ms + " ms")));
      },
  };
}

// -- the long-lived agent
// -------------------------------------------------------

struct queued_run {
  input in;
  caf::typed_response_promise<agent_result> rp;
};

struct agent_state {
  std::optional<agent> spec;
  std::deque<queued_run> queue;
  bool busy = false;

  ~agent_state() {
    for (auto& q : queue)
      q.rp.deliver(make_error(errc::cancelled, "the agent ended"));
  }

  static inline const char* name = "maritaca.agent";
};

using agent_self = caf::stateful_actor<agent_state, agent_actor::base>;

/// Starts the next queued run (inside a session: one at a time).
void next_run(agent_self* self) {
  auto& st = self->state;
  if (st.busy || st.queue.empty()) return;
  st.busy = true;
  auto job = std::move(st.queue.front());
  st.queue.pop_front();
  auto rp = job.rp;
  self->request(st.spec->spawn_run(), st.spec->run_timeout(), agent_atom::value,
                std::move(job.in))
      .then(
          [=](agent_result& r) mutable {
            rp.deliver(std::move(r));
            self->state.busy = false;
            next_run(self);
          },
          [=](caf::error& err) mutable {
            rp.deliver(std::move(err));
            self->state.busy = false;
            next_run(self);
          });
}

agent_actor::behavior_type agent_impl(agent_self* self, agent spec) {
  self->state.spec.emplace(std::move(spec));
  return {
      [=](agent_atom, input& in) -> caf::result<agent_result> {
        auto& st = self->state;
        if (!st.spec->session())
          return self->delegate(st.spec->spawn_run(), agent_atom::value,
                                std::move(in));
        auto rp = self->make_response_promise<agent_result>();
        st.queue.push_back(queued_run{std::move(in), rp});
        next_run(self);
        return rp;
      },
  };
}

} // namespace

// -- agent
// ----------------------------------------------------------------------

agent::agent(chat_model model, std::vector<tool> tools, agent_config cfg)
    : model_(std::move(model)), tools_(std::move(tools)), cfg_(std::move(cfg)) {
  if (cfg_.max_steps == 0) cfg_.max_steps = 1;
}

agent agent::in_session(session_actor session) const {
  auto result = *this;
  result.session_ = std::move(session);
  return result;
}

std::chrono::milliseconds agent::deadline() const {
  if (cfg_.timeout.count() > 0) return cfg_.timeout;
  auto ask = model_.config().ask_timeout;
  // One history read, then per step one ask and one round of tools.
  return ask + (ask + cfg_.tool_timeout) * cfg_.max_steps;
}

std::chrono::milliseconds agent::run_timeout() const {
  return deadline() + reply_margin;
}

agent agent::for_actor() const {
  auto copy = *this;
  copy.model_ = model_.for_actor();
  return copy;
}

agent_actor agent::spawn_run() const {
  // The run's copy must not own the model's actor system (see
  // `chat_model::for_actor`).
  return caf::actor_cast<agent_actor>(
      model_.system().spawn(run_impl, for_actor()));
}

agent_actor agent::spawn() const {
  return model_.system().spawn(agent_impl, for_actor());
}

agent::result_type agent::run(input in) const {
  caf::scoped_actor self{model_.system()};
  result_type result{make_error(errc::cancelled, "no answer")};
  self->request(spawn_run(), run_timeout(), agent_atom::value, std::move(in))
      .receive([&](agent_result& r) { result = std::move(r); },
               [&](caf::error& err) { result = std::move(err); });
  return result;
}

std::future<agent::result_type> agent::arun(input in) const {
  auto prom = std::make_shared<std::promise<result_type>>();
  auto fut = prom->get_future();
  // Arguments rather than captures: see `spawn_tool_worker`. The actor's
  // copy must not own the model's actor system (see `for_actor`).
  auto copy = for_actor();
  model_.system().spawn(
      [](caf::event_based_actor* self, decltype(prom) prom, agent copy,
         input in) {
        copy.arun(self, std::move(in))
            .then([prom](agent_result& r) { prom->set_value(std::move(r)); },
                  [prom](caf::error& err) { prom->set_value(std::move(err)); });
      },
      prom, std::move(copy), std::move(in));
  return fut;
}

caf::expected<ai_message> run_agent(const chat_model& model,
                                    std::vector<tool> tools, input in,
                                    agent_config cfg) {
  auto r = agent{model, std::move(tools), std::move(cfg)}.run(std::move(in));
  if (!r) return std::move(r.error());
  return std::move(r->answer);
}

agent_actor spawn_agent(const chat_model& model, std::vector<tool> tools,
                        agent_config cfg) {
  return agent{model, std::move(tools), std::move(cfg)}.spawn();
}

agent_actor spawn_agent(session_actor session, const chat_model& model,
                        std::vector<tool> tools, agent_config cfg) {
  return agent{model, std::move(tools), std::move(cfg)}
      .in_session(std::move(session))
      .spawn();
}

bool is_step_limit(const caf::error& err) {
  return is_maritaca_error(err) && code_of(err) == errc::step_limit;
}

} // namespace maritaca
