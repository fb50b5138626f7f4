/// @file
/// The gateway's streaming actors: each subscribes to its own ask (or a
/// session's) and writes the chunks to its client as they come -- text
/// pieces, SSE events or OpenAI chunks -- with back-pressure from the
/// client's connection and exactly one ending (`[DONE]`, an error event,
/// or a cut).

#include "service_impl.hpp"

#include "codec.hpp"

#include "maritaca/error.hpp"
#include "maritaca/transport/sse_parser.hpp"
#include "maritaca/transport/wire.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include <algorithm>
#include <ctime>

namespace maritaca::gateway::detail {

namespace {

/// State of an actor streaming one answer to its client. The actor is the
/// subscriber of its own ask.
struct stream_state {
  impl_ptr svc;
  responder_ptr res;
  stream_mode mode = stream_mode::text;
  uint64_t ask_id = 0;
  bool head_sent = false;
  bool ended = false;
  /// OpenAI chunks: what every chunk repeats.
  std::string completion_id;
  std::string model;
  int64_t created = 0;
  bool include_usage = false;
  bool role_sent = false;
  clock_type::time_point started = clock_type::now();
  bool first_seen = false;
  /// Pieces handed to the responder, and the number of them known to be on
  /// the wire (pieces are written in order).
  uint64_t sent = 0;
  uint64_t written = 0;
  /// Chunk requests not answered yet: their answers are the upstream's
  /// credit, released once the client has taken the bytes.
  std::vector<caf::response_promise> held;

  ~stream_state() {
    for (auto& rp : held)
      rp.deliver(caf::unit);
    if (ended || !svc) return;
    if (ask_id != 0)
      caf::anon_send(svc->model.dispatcher(), cancel_atom::value, ask_id);
    if (!head_sent)
      res->send(error_response(503, "the gateway is shutting down",
                               "server_error", "shutting_down"));
    else
      res->abort();
  }

  static inline const char* name = "maritaca.gateway.stream";
};

using stream_self = caf::stateful_actor<stream_state>;

void send_head(stream_self* self) {
  auto& st = self->state;
  if (st.head_sent) return;
  st.head_sent = true;
  header_list h;
  if (st.mode == stream_mode::text)
    h.push_back({"Content-Type", "text/plain; charset=utf-8"});
  else
    h.push_back({"Content-Type", "text/event-stream"});
  h.push_back({"Cache-Control", "no-cache"});
  // Proxies must not buffer the stream.
  h.push_back({"X-Accel-Buffering", "no"});
  st.res->start_stream(200, std::move(h));
}

/// Renders one chunk for the client ("" when it carries nothing to send).
std::string render_chunk(stream_state& st, chat_chunk& c) {
  switch (st.mode) {
  case stream_mode::text:
    return std::move(c.content);
  case stream_mode::sse:
    return c.content.empty() ? std::string{} : sse::format_data(c.content);
  case stream_mode::openai:
    break;
  }
  completion_chunk out;
  out.id = st.completion_id;
  out.created = st.created;
  out.model = st.model;
  if (c.usage) {
    if (!st.include_usage) return {};
    out.usage = c.usage;
  } else {
    chunk_choice ch;
    ch.index = c.index;
    if (!st.role_sent) {
      st.role_sent = true;
      ch.role = "assistant";
    }
    ch.content = std::move(c.content);
    ch.tool_calls = std::move(c.tool_calls);
    ch.finish_reason = std::move(c.finish_reason);
    out.choices.push_back(std::move(ch));
  }
  return sse::format_data(wire::encode_chunk(out));
}

void on_written(stream_self* self, uint64_t upto) {
  auto& st = self->state;
  st.written = std::max(st.written, upto);
  if (st.sent - st.written < st.svc->cfg.stream_write_window) {
    for (auto& rp : st.held)
      rp.deliver(caf::unit);
    st.held.clear();
  }
}

void on_chunk(stream_self* self, chat_chunk& c) {
  auto& st = self->state;
  if (st.ended) return;
  // A session's ask: its id comes with its chunks (for cancelling).
  if (st.ask_id == 0) st.ask_id = c.request_id;
  if (!st.first_seen && (!c.content.empty() || !c.tool_calls.empty())) {
    st.first_seen = true;
    st.svc->stats->observe_first_token(seconds_since(st.started));
  }
  auto piece = render_chunk(st, c);
  if (piece.empty()) return;
  send_head(self);
  auto seq = ++st.sent;
  auto window = std::max<std::size_t>(st.svc->cfg.stream_write_window, 2);
  auto unwritten = st.sent - st.written;
  // Only pieces deep in the queue report their write (the report covers
  // every piece before them), which saves a message per piece.
  std::function<void()> report;
  if (unwritten >= window / 2)
    report = [addr = self->address(), seq] {
      if (auto a = caf::actor_cast<caf::actor>(addr))
        caf::anon_send(a, wrote_atom::value, seq);
    };
  st.res->write(std::move(piece), std::move(report));
  // A client slower than the upstream: hold this chunk's credit until the
  // piece is on the wire.
  auto* elem = self->current_mailbox_element();
  if (unwritten >= window && elem != nullptr && elem->mid.is_request())
    st.held.push_back(self->make_response_promise());
}

void on_done(stream_self* self, ai_message& m) {
  auto& st = self->state;
  if (st.ended) return;
  st.ended = true;
  st.svc->stats->observe_upstream_latency(seconds_since(st.started));
  count_tokens(st.svc, m);
  send_head(self);
  if (st.mode == stream_mode::sse)
    st.res->write("event: end\ndata: [DONE]\n\n");
  else if (st.mode == stream_mode::openai)
    st.res->write(sse::format_data("[DONE]"));
  st.res->finish();
  self->quit();
}

void on_failed(stream_self* self, const caf::error& err) {
  auto& st = self->state;
  if (st.ended) return;
  st.ended = true;
  auto f = to_failure(err);
  st.svc->stats->upstream_error(to_string(f.code));
  st.svc->stats->observe_upstream_latency(seconds_since(st.started));
  auto e = st.svc->client_error(f);
  if (!st.head_sent) {
    // Nothing sent yet: the client gets the upstream's status.
    st.res->send(detail::to_response(e));
  } else if (st.mode == stream_mode::text) {
    // Plain text cannot carry an error: end without the last chunk, so the
    // client sees a truncated body rather than a short answer.
    st.res->annotate("cut after " + e.code);
    st.res->abort();
  } else {
    st.res->annotate("ended by error event " + e.code);
    auto body = error_json(e.message, e.type, e.code);
    if (st.mode == stream_mode::sse)
      st.res->write("event: error\n" + sse::format_data(body));
    else
      st.res->write(sse::format_data(body));
    st.res->finish();
  }
  self->quit();
}

/// What a streaming actor does with the events of its ask and of its
/// client's connection.
caf::behavior stream_behavior(stream_self* self) {
  return {
      [=](chat_chunk& c) { on_chunk(self, c); },
      [=](stream_done& d) { on_done(self, d.message); },
      [=](stream_failed& f) { on_failed(self, f.error); },
      [=](wrote_atom, uint64_t upto) { on_written(self, upto); },
      [=](gone_atom) {
        auto& st = self->state;
        if (!st.ended) {
          st.svc->stats->client_disconnected();
          // Free the upstream slot now (the request actor also notices its
          // subscriber going down).
          if (st.ask_id != 0)
            caf::anon_send(st.svc->model.dispatcher(), cancel_atom::value,
                           st.ask_id);
          st.ended = true;
        }
        self->quit();
      },
  };
}

/// Sets up the state of a streaming actor.
void start_streaming(stream_self* self, impl_ptr svc, responder_ptr res,
                     stream_mode mode, std::string model) {
  auto& st = self->state;
  st.svc = std::move(svc);
  st.res = std::move(res);
  st.mode = mode;
  st.model = std::move(model);
  st.created = static_cast<int64_t>(std::time(nullptr));
  watch_client(self, st.res);
}

caf::behavior stream_call(stream_self* self, impl_ptr svc, responder_ptr res,
                          ask x, stream_mode mode, bool include_usage) {
  start_streaming(self, svc, res, mode, x.body.model);
  auto& st = self->state;
  st.ask_id = x.id;
  st.include_usage = include_usage;
  st.completion_id = "chatcmpl-gw" + std::to_string(x.id);
  x.subscribers = {caf::actor_cast<caf::actor>(self)};
  x.body.stream = true;
  // The aggregated answer also comes as `stream_done`; the response only
  // matters when it is an error the stream did not report.
  self->request(svc->model.dispatcher(), svc->model.config().ask_timeout,
                ask_atom::value, std::move(x))
      .then([](ai_message&) {}, [=](caf::error& err) { on_failed(self, err); });
  return stream_behavior(self);
}

/// Streams a session's answer: the session asks (through the dispatcher)
/// with this actor as subscriber and keeps the history.
caf::behavior session_stream_call(stream_self* self, impl_ptr svc,
                                  responder_ptr res, session_actor session,
                                  std::string text, stream_mode mode) {
  start_streaming(self, svc, res, mode, svc->model.config().model);
  self->request(session, svc->model.config().ask_timeout, stream_atom::value,
                input{std::move(text)}, caf::actor_cast<caf::actor>(self))
      .then([](ai_message&) {}, [=](caf::error& err) { on_failed(self, err); });
  return stream_behavior(self);
}

} // namespace

void spawn_stream(const impl_ptr& svc, responder_ptr res, ask x,
                  stream_mode mode, bool include_usage) {
  svc->model.system().spawn(stream_call, svc, std::move(res), std::move(x),
                            mode, include_usage);
}

void spawn_session_stream(const impl_ptr& svc, responder_ptr res,
                          session_actor s, std::string text, stream_mode mode) {
  svc->model.system().spawn(session_stream_call, svc, std::move(res),
                            std::move(s), std::move(text), mode);
}

} // namespace maritaca::gateway::detail
