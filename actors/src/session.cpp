#include "maritaca/session.hpp"

#include "maritaca/transport/wire.hpp"

#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <list>

namespace maritaca {

int64_t estimate_tokens(const chat_message& msg) {
  std::size_t bytes = msg.text().size();
  for (auto& p : msg.parts)
    bytes += p.text.size() + (p.url.empty() ? 0 : 256);
  for (auto& c : msg.tool_calls)
    bytes += c.name.size() + c.arguments.size();
  return static_cast<int64_t>(bytes / 4) + 4;
}

void trim_history(std::vector<chat_message>& history, int64_t budget) {
  if (budget <= 0 || history.empty()) return;
  int64_t total = 0;
  for (auto& m : history)
    total += estimate_tokens(m);
  // Drop from the oldest non-system message, keeping the last message.
  std::size_t first = (history.front().role == "system") ? 1 : 0;
  std::size_t drop = 0;
  while (total > budget && first + drop + 1 < history.size()) {
    total -= estimate_tokens(history[first + drop]);
    ++drop;
  }
  // Never leave a tool answer without the assistant message that asked.
  while (first + drop + 1 < history.size() &&
         history[first + drop].role == "tool")
    ++drop;
  history.erase(history.begin() + static_cast<std::ptrdiff_t>(first),
                history.begin() + static_cast<std::ptrdiff_t>(first + drop));
}

std::string save_history(const std::string& model,
                         const std::vector<chat_message>& history) {
  chat_request req;
  req.model = model;
  req.messages = history;
  return wire::encode_request(req);
}

failure load_history(std::string_view json,
                     std::vector<chat_message>& history) {
  chat_request req;
  if (auto err = wire::decode_request(json, req)) return err;
  history = std::move(req.messages);
  return {};
}

namespace {

/// An ask of a session: running (the first while the session is busy) or
/// waiting for the ones before it.
struct queued_ask {
  /// The ask's id, fixed when it is queued (subscribers match on it).
  uint64_t id;
  input in;
  caf::actor subscriber; // null: not streamed
  caf::typed_response_promise<ai_message> rp;
};

struct session_state {
  explicit session_state(caf::local_actor* owner) : self(owner) {
    // nop
  }

  caf::local_actor* self;
  /// A copy of the handle (`for_actor`): it shares the runtime and the
  /// settings (no copy of `model_config` per session).
  std::optional<chat_model> model;
  session_config cfg;
  std::vector<chat_message> history;
  /// Asks in order; while `busy`, the first one runs. A list: unlike
  /// std::deque, an empty one allocates nothing, and most sessions sit idle.
  std::list<queued_ask> queue;
  bool busy = false;
  /// History length before the running ask's input was appended (to roll
  /// back when the ask fails).
  std::size_t rollback = 0;

  /// Runs on exit, on the actor's own thread: every ask gets `cancelled`
  /// (the running one is also cancelled at the dispatcher), and the model
  /// forgets the session.
  ~session_state() {
    auto err = make_error(errc::cancelled, "the session ended");
    if (!model) return;
    auto dispatcher = model->dispatcher();
    for (auto& q : queue) {
      if (busy && &q == &queue.front()) {
        // Its request actor tells the subscriber.
        caf::anon_send(dispatcher, cancel_atom::value, q.id);
      } else if (q.subscriber) {
        caf::anon_send(q.subscriber, stream_failed{q.id, err});
      }
      q.rp.deliver(err);
    }
    model->unbind(self->address());
  }

  static inline const char* name = "maritaca.session";
};

using session_self = caf::stateful_actor<session_state, session_actor::base>;

void reset_history(session_self* self) {
  auto& st = self->state;
  st.history.clear();
  if (!st.cfg.system_prompt.empty())
    st.history.push_back(chat_message::system(st.cfg.system_prompt));
}

void next_ask(session_self* self);

/// Answers the running ask and starts the next one.
template <class T>
void finish_ask(session_self* self, T&& answer) {
  auto& st = self->state;
  auto rp = std::move(st.queue.front().rp);
  st.queue.pop_front();
  st.busy = false;
  rp.deliver(std::forward<T>(answer));
  next_ask(self);
}

/// Starts the first queued ask unless one is running.
void next_ask(session_self* self) {
  auto& st = self->state;
  if (st.busy || st.queue.empty()) return;
  st.busy = true;
  auto& job = st.queue.front();
  st.rollback = st.history.size();
  for (auto& m : job.in.messages)
    st.history.push_back(std::move(m));
  job.in = input{};
  trim_history(st.history, st.cfg.max_history_tokens);
  std::vector<caf::actor> subs;
  if (job.subscriber) subs.push_back(job.subscriber);
  auto x = st.model->make_ask(input{st.history}, std::move(subs));
  x.id = job.id;
  // The session's asks share one fairness lane.
  x.lane = self->id() | (uint64_t{1} << 62);
  self->request(st.model->dispatcher(), caf::infinite, ask_atom::value,
                std::move(x))
      .then(
          [=](ai_message& msg) {
            auto& st = self->state;
            st.history.push_back(msg.message);
            finish_ask(self, std::move(msg));
          },
          [=](caf::error& err) {
            // A failed ask leaves no trace: the question is taken back so a
            // retry does not send it twice.
            auto& st = self->state;
            if (st.history.size() > st.rollback) st.history.resize(st.rollback);
            finish_ask(self, std::move(err));
          });
}

caf::typed_response_promise<ai_message> enqueue(session_self* self, input& in,
                                                caf::actor subscriber) {
  auto rp = self->make_response_promise<ai_message>();
  self->state.queue.push_back(
      queued_ask{next_request_id(), std::move(in), std::move(subscriber), rp});
  next_ask(self);
  return rp;
}

session_actor::behavior_type session_impl(session_self* self, chat_model model,
                                          session_config cfg) {
  auto& st = self->state;
  st.model.emplace(std::move(model));
  st.cfg = std::move(cfg);
  reset_history(self);
  // A session lives no longer than its model: when the model shuts down
  // (its caller's last handle goes), the session ends too rather than keep
  // the actor system waiting for it (CAF's clock holds an actor until its
  // request timeouts fire, answered or not).
  st.model->bind(self->address());
  return {
      [=](ask_atom, input& in) { return enqueue(self, in, caf::actor{}); },
      [=](stream_atom, input& in, caf::actor& subscriber) {
        return enqueue(self, in, std::move(subscriber));
      },
      [=](append_atom, std::vector<chat_message>& msgs) {
        for (auto& m : msgs)
          self->state.history.push_back(std::move(m));
      },
      [=](history_atom) { return self->state.history; },
      [=](clear_atom) { reset_history(self); },
      [=](save_atom) {
        return save_history(self->state.model->config().model,
                            self->state.history);
      },
      [=](load_atom, const std::string& json) -> caf::result<uint64_t> {
        std::vector<chat_message> loaded;
        if (auto err = load_history(json, loaded))
          return make_error(std::move(err));
        self->state.history = std::move(loaded);
        return static_cast<uint64_t>(self->state.history.size());
      },
  };
}

} // namespace

session_actor spawn_session(const chat_model& model, session_config cfg) {
  // The session keeps a handle that does not own the model's system.
  return model.system().spawn(session_impl, model.for_actor(), std::move(cfg));
}

// -- chat_session
// ---------------------------------------------------------------

chat_session::chat_session(const chat_model& model, session_config cfg)
    : model_(model), handle_(spawn_session(model, std::move(cfg))) {
  // nop
}

chat_session::~chat_session() {
  // Like the seed's __aexit__: the history is cleared as the session ends.
  caf::anon_send_exit(handle_, caf::exit_reason::user_shutdown);
}

chat_model::result_type chat_session::chat(input in) {
  caf::scoped_actor self{model_.system()};
  chat_model::result_type result{make_error(errc::cancelled, "no answer")};
  self->request(handle_, model_.config().ask_timeout, ask_atom::value,
                std::move(in))
      .receive([&](ai_message& msg) { result = std::move(msg); },
               [&](caf::error& err) { result = std::move(err); });
  return result;
}

std::vector<chat_message> chat_session::history() {
  caf::scoped_actor self{model_.system()};
  std::vector<chat_message> result;
  self->request(handle_, model_.config().ask_timeout, history_atom::value)
      .receive([&](std::vector<chat_message>& xs) { result = std::move(xs); },
               [&](caf::error&) {});
  return result;
}

void chat_session::clear() {
  caf::anon_send(handle_, clear_atom::value);
}

} // namespace maritaca
