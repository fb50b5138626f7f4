/// @file
/// The gateway's routes on the actor API. No Beast or Asio here: requests
/// arrive through the plain `handler` interface on an I/O thread, which only
/// spawns an actor (one per HTTP request or stream) and returns. Answers go
/// back through the thread-safe `responder`; events of the connection (a
/// piece written, the client gone) come back to the actor as messages.

#include "service_impl.hpp"

#include "codec.hpp"

#include "maritaca/error.hpp"
#include "maritaca/session.hpp"
#include "maritaca/transport/sse_parser.hpp"
#include "maritaca/transport/wire.hpp"

#include <caf/actor_cast.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <ctime>
#include <mutex>
#include <optional>
#include <random>
#include <unordered_map>
namespace maritaca::gateway {

namespace detail {

namespace {

// -- one-shot calls
// -------------------------------------------------------------

/// State of an actor answering one request with one response.
struct call_state {
  impl_ptr svc;
  responder_ptr res;
  /// The ask to cancel when the actor ends early (0: none).
  uint64_t ask_id = 0;
  bool answered = false;
  clock_type::time_point started = clock_type::now();

  /// However the actor ends, the client gets an answer and a running ask
  /// is cancelled (after an answer, cancelling is a no-op).
  ~call_state() {
    if (svc && ask_id != 0 && !answered)
      caf::anon_send(svc->model.dispatcher(), cancel_atom::value, ask_id);
    if (res && !answered)
      res->send(error_response(503, "the gateway is shutting down",
                               "server_error", "shutting_down"));
  }

  static inline const char* name = "maritaca.gateway.call";
};

using call_self = caf::stateful_actor<call_state>;

void answer(call_self* self, response r) {
  auto& st = self->state;
  if (!st.answered) {
    st.answered = true;
    st.res->send(std::move(r));
  }
  self->quit();
}

void answer_failure(call_self* self, const caf::error& err) {
  auto f = to_failure(err);
  auto& svc = self->state.svc;
  svc->stats->upstream_error(to_string(f.code));
  answer(self, detail::to_response(svc->client_error(f)));
}

/// Sets up a call's state; a client that leaves is told as `gone_atom`.
void start_call(call_self* self, impl_ptr svc, responder_ptr res) {
  auto& st = self->state;
  st.svc = std::move(svc);
  st.res = std::move(res);
  watch_client(self, st.res);
}

/// The behavior every call has besides its pending request: a client that
/// leaves cancels the work.
caf::behavior call_behavior(call_self* self) {
  return {
      [=](gone_atom) {
        auto& st = self->state;
        st.svc->stats->client_disconnected();
        if (st.ask_id != 0)
          caf::anon_send(st.svc->model.dispatcher(), cancel_atom::value,
                         st.ask_id);
        // Nobody to answer any more.
        st.answered = true;
        self->quit();
      },
  };
}

using encoder = std::function<response(ai_message&)>;

/// Sends one ask through the dispatcher and answers with `encode(answer)`.
caf::behavior ask_call(call_self* self, impl_ptr svc, responder_ptr res, ask x,
                       encoder encode) {
  start_call(self, svc, res);
  self->state.ask_id = x.id;
  self->request(svc->model.dispatcher(), svc->model.config().ask_timeout,
                ask_atom::value, std::move(x))
      .then(
          [=](ai_message& m) {
            svc->stats->observe_upstream_latency(
                seconds_since(self->state.started));
            count_tokens(svc, m);
            self->state.ask_id = 0;
            answer(self, encode(m));
          },
          [=](caf::error& err) {
            svc->stats->observe_upstream_latency(
                seconds_since(self->state.started));
            answer_failure(self, err);
          });
  return call_behavior(self);
}

/// Asks a session and answers `{"answer": ...}`.
caf::behavior session_call(call_self* self, impl_ptr svc, responder_ptr res,
                           session_actor session, std::string text) {
  start_call(self, svc, res);
  self->request(session, svc->model.config().ask_timeout, ask_atom::value,
                input{std::move(text)})
      .then(
          [=](ai_message& m) {
            svc->stats->observe_upstream_latency(
                seconds_since(self->state.started));
            count_tokens(svc, m);
            answer(self, response::json(200, detail::answer_json(m.content())));
          },
          [=](caf::error& err) { answer_failure(self, err); });
  return call_behavior(self);
}

/// Lists the upstream's models.
caf::behavior models_call(call_self* self, impl_ptr svc, responder_ptr res) {
  start_call(self, svc, res);
  self->request(svc->model.dispatcher(), svc->model.config().ask_timeout,
                models_atom::value)
      .then(
          [=](std::vector<model_info>& xs) {
            answer(self, response::json(200, wire::encode_models(xs)));
          },
          [=](caf::error& err) { answer_failure(self, err); });
  return call_behavior(self);
}

/// Answers `GET /sessions/{id}`: the session's id, model and history.
caf::behavior history_call(call_self* self, impl_ptr svc, responder_ptr res,
                           session_actor session, std::string id) {
  start_call(self, svc, res);
  self->request(session, svc->model.config().ask_timeout, history_atom::value)
      .then(
          [=](std::vector<chat_message>& history) {
            // save_history writes {"model":...,"messages":[...]}.
            auto saved = save_history(svc->model.config().model, history);
            std::string body = "{\"id\":";
            wire::append_json_string(body, id);
            body += "," + saved.substr(1);
            answer(self, response::json(200, std::move(body)));
          },
          [=](caf::error& err) { answer_failure(self, err); });
  return call_behavior(self);
}

/// Answers `GET /v1/models/{id}` from the upstream's list.
caf::behavior model_call(call_self* self, impl_ptr svc, responder_ptr res,
                         std::string id) {
  start_call(self, svc, res);
  self->request(svc->model.dispatcher(), svc->model.config().ask_timeout,
                models_atom::value)
      .then(
          [=](std::vector<model_info>& xs) {
            for (auto& m : xs)
              if (m.id == id)
                return answer(self, response::json(200, wire::encode_model(m)));
            answer(self,
                   error_response(404, "the model '" + id + "' does not exist",
                                  "invalid_request_error", "model_not_found"));
          },
          [=](caf::error& err) { answer_failure(self, err); });
  return call_behavior(self);
}

/// Renders /metrics with the dispatcher's figures.
caf::behavior metrics_call(call_self* self, impl_ptr svc, responder_ptr res) {
  auto& st = self->state;
  st.svc = svc;
  st.res = res;
  auto render = [=](const upstream_figures& up) {
    auto r = response::text(200, svc->stats->render(up));
    r.headers = {{"Content-Type", "text/plain; version=0.0.4; charset=utf-8"}};
    answer(self, std::move(r));
  };
  upstream_figures base;
  base.max_concurrency = svc->model.config().limits.max_concurrency;
  self->request(svc->model.dispatcher(), std::chrono::seconds{5},
                stats_atom::value)
      .then(
          [=](dispatcher_stats& s) {
            auto up = base;
            up.in_flight = s.in_flight;
            up.queued = s.queued;
            up.rejected = s.rejected;
            up.cluster = to_string(s.cluster);
            up.cluster_leases = s.leases;
            up.cluster_losses = s.cluster_losses;
            render(up);
          },
          [=](caf::error&) { render(base); });
  return call_behavior(self);
}

// -- routes
// ---------------------------------------------------------------------

response bad_request(std::string_view message) {
  return error_response(400, message, "invalid_request_error", "bad_request");
}

void on_ask(const impl_ptr& svc, request req, responder_ptr res) {
  std::string text;
  if (auto err = detail::parse_text_body(req.body, text); !err.empty())
    return res->send(bad_request(err));
  auto x = svc->model.make_ask(input{std::move(text)});
  svc->adjust(x, req);
  svc->model.system().spawn(
      ask_call, svc, std::move(res), std::move(x), encoder{[](ai_message& m) {
        return response::json(200, detail::answer_json(m.content()));
      }});
}

void on_stream(const impl_ptr& svc, request req, responder_ptr res) {
  auto question = req.query_param("question");
  if (!question || question->empty())
    return res->send(bad_request("missing query parameter 'question' (GET "
                                 "/stream?question=...)"));
  auto x = svc->model.make_ask(input{std::move(*question)});
  svc->adjust(x, req);
  auto accept = req.header("accept");
  auto mode = accept.find("text/event-stream") != std::string_view::npos
                  ? stream_mode::sse
                  : stream_mode::text;
  spawn_stream(svc, std::move(res), std::move(x), mode, false);
}

void on_completions(const impl_ptr& svc, request req, responder_ptr res) {
  chat_request body;
  if (auto err = wire::decode_request(req.body, body))
    return res->send(bad_request(err.message));
  if (auto err = wire::validate_request(body))
    return res->send(bad_request(err.message));
  if (body.n && *body.n > 1)
    return res->send(bad_request("n > 1 is not supported by the gateway"));
  auto x = svc->model.make_ask(input{});
  auto stream = body.stream;
  auto include_usage = body.include_usage;
  x.body = std::move(body);
  svc->adjust(x, req);
  if (stream) {
    spawn_stream(svc, std::move(res), std::move(x), stream_mode::openai,
                 include_usage);
    return;
  }
  auto model_name = x.body.model;
  svc->model.system().spawn(
      ask_call, svc, std::move(res), std::move(x),
      encoder{[model_name](ai_message& m) {
        chat_completion out;
        out.id =
            m.id.empty() ? "chatcmpl-gw" + std::to_string(m.request_id) : m.id;
        out.created = static_cast<int64_t>(std::time(nullptr));
        out.model = m.model.empty() ? model_name : m.model;
        completion_choice choice;
        choice.message = std::move(m.message);
        choice.finish_reason = std::move(m.finish_reason);
        out.choices.push_back(std::move(choice));
        out.usage = m.usage;
        return response::json(200, wire::encode_completion(out));
      }});
}

void on_create_session(const impl_ptr& svc, request req, responder_ptr res) {
  session_config cfg;
  if (auto err = detail::parse_session_body(req.body, cfg.system_prompt,
                                            cfg.max_history_tokens);
      !err.empty())
    return res->send(bad_request(err));
  std::string id;
  {
    std::lock_guard<std::mutex> guard{svc->mtx};
    svc->sweep_locked();
    if (svc->down)
      return res->send(error_response(503, "the gateway is shutting down",
                                      "server_error", "shutting_down"));
    if (svc->sessions.size() >= svc->cfg.max_sessions)
      return res->send(
          error_response(429,
                         "too many open sessions (limit " +
                             std::to_string(svc->cfg.max_sessions) + ")",
                         "rate_limit_error", "too_many_sessions"));
    id = svc->new_session_id_locked();
    svc->sessions.emplace(
        id, session_entry{spawn_session(svc->model, std::move(cfg)),
                          clock_type::now()});
    svc->stats->set_sessions(svc->sessions.size());
  }
  std::string body = "{\"id\":";
  wire::append_json_string(body, id);
  body += ",\"model\":";
  wire::append_json_string(body, svc->model.config().model);
  body += "}";
  auto r = response::json(201, std::move(body));
  r.headers.push_back({"Location", req.path + "/" + id});
  res->send(std::move(r));
}

response unknown_session(std::string_view id) {
  return error_response(404, "no session '" + std::string{id} + "'",
                        "not_found_error", "session_not_found");
}

/// The handle of session `id` (its idle time restarts), or nullopt.
std::optional<session_actor> touch_session(const impl_ptr& svc,
                                           std::string_view id) {
  std::lock_guard<std::mutex> guard{svc->mtx};
  svc->sweep_locked();
  auto i = svc->sessions.find(std::string{id});
  if (i == svc->sessions.end()) return std::nullopt;
  i->second.last_used = clock_type::now();
  return i->second.handle;
}

void on_session_ask(const impl_ptr& svc, request req, responder_ptr res) {
  std::string text;
  if (auto err = detail::parse_text_body(req.body, text); !err.empty())
    return res->send(bad_request(err));
  auto handle = touch_session(svc, req.param("id"));
  if (!handle) return res->send(unknown_session(req.param("id")));
  // Streamed like GET /stream: SSE when asked for, else text pieces with
  // `?stream=true`.
  auto sse =
      req.header("accept").find("text/event-stream") != std::string_view::npos;
  auto q = req.query_param("stream");
  auto text_stream = q && (*q == "true" || *q == "1");
  if (sse || text_stream) {
    spawn_session_stream(svc, std::move(res), *handle, std::move(text),
                         sse ? stream_mode::sse : stream_mode::text);
    return;
  }
  svc->model.system().spawn(session_call, svc, std::move(res), *handle,
                            std::move(text));
}

void on_get_session(const impl_ptr& svc, request req, responder_ptr res) {
  auto handle = touch_session(svc, req.param("id"));
  if (!handle) return res->send(unknown_session(req.param("id")));
  svc->model.system().spawn(history_call, svc, std::move(res), *handle,
                            std::string{req.param("id")});
}

void on_list_sessions(const impl_ptr& svc, request, responder_ptr res) {
  std::string body = "{\"object\":\"list\",\"data\":[";
  {
    std::lock_guard<std::mutex> guard{svc->mtx};
    svc->sweep_locked();
    bool first = true;
    for (auto& [id, entry] : svc->sessions) {
      body += first ? "{\"id\":" : ",{\"id\":";
      first = false;
      wire::append_json_string(body, id);
      body +=
          ",\"idle_seconds\":" +
          std::to_string(static_cast<int64_t>(seconds_since(entry.last_used))) +
          "}";
    }
  }
  body += "]}";
  res->send(response::json(200, std::move(body)));
}

void on_delete_session(const impl_ptr& svc, request req, responder_ptr res) {
  {
    std::lock_guard<std::mutex> guard{svc->mtx};
    auto i = svc->sessions.find(std::string{req.param("id")});
    if (i == svc->sessions.end())
      return res->send(unknown_session(req.param("id")));
    // Like the seed's __aexit__: the history goes with the session.
    caf::anon_send_exit(i->second.handle, caf::exit_reason::user_shutdown);
    svc->sessions.erase(i);
    svc->stats->set_sessions(svc->sessions.size());
  }
  res->send(response{204, {}, {}});
}

} // namespace

} // namespace detail

using namespace detail;

// -- service
// --------------------------------------------------------------------

service::service(chat_model model, service_config cfg)
    : impl_(std::make_shared<impl>(std::move(model), std::move(cfg))) {
  // nop
}

service::~service() {
  shutdown();
}

void service::shutdown() {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  impl_->down.store(true);
  for (auto& [id, entry] : impl_->sessions)
    caf::anon_send_exit(entry.handle, caf::exit_reason::user_shutdown);
  impl_->sessions.clear();
  impl_->stats->set_sessions(0);
}

std::shared_ptr<gateway::metrics> service::metrics() const {
  return impl_->stats;
}

std::shared_ptr<const token_set> service::tokens() const {
  return impl_->tokens;
}

const chat_model& service::model() const {
  return impl_->model;
}

void service::mount(router& r, const std::string& prefix) const {
  auto svc = impl_;
  // Wraps a route function into a handler that keeps the service alive.
  auto route = [svc](void (*fn)(const impl_ptr&, request, responder_ptr)) {
    return [svc, fn](request req, responder_ptr res) {
      fn(svc, std::move(req), std::move(res));
    };
  };
  r.add("POST", prefix + "/ask", route(on_ask));
  r.add("GET", prefix + "/stream", route(on_stream));
  for (std::string base : {"/v1", "/api"}) {
    r.add("POST", prefix + base + "/chat/completions", route(on_completions));
    r.add("GET", prefix + base + "/models", [svc](request, responder_ptr res) {
      svc->model.system().spawn(models_call, svc, std::move(res));
    });
    r.add("GET", prefix + base + "/models/{id}",
          [svc](request req, responder_ptr res) {
            svc->model.system().spawn(model_call, svc, std::move(res),
                                      std::string{req.param("id")});
          });
  }
  r.add(
      "GET", prefix + "/healthz",
      [](request, responder_ptr res) {
        res->send(response::json(200, "{\"status\":\"ok\"}"));
      },
      route_options{true});
  r.add("GET", prefix + "/metrics", [svc](request, responder_ptr res) {
    svc->model.system().spawn(metrics_call, svc, std::move(res));
  });
  r.add("POST", prefix + "/sessions", route(on_create_session));
  r.add("GET", prefix + "/sessions", route(on_list_sessions));
  r.add("GET", prefix + "/sessions/{id}", route(on_get_session));
  r.add("POST", prefix + "/sessions/{id}/ask", route(on_session_ask));
  r.add("DELETE", prefix + "/sessions/{id}", route(on_delete_session));
  if (!r.tokens()) r.set_tokens(impl_->tokens);
  if (!r.metrics()) r.set_metrics(impl_->stats);
}

} // namespace maritaca::gateway
