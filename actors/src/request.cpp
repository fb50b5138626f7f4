#include "request.hpp"

#include "maritaca/error.hpp"
#include "maritaca/transport/wire.hpp"

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <random>

namespace maritaca {

// -- retry policy
// ---------------------------------------------------------------

namespace {

bool retryable(const failure& what, const retry_policy& policy) {
  switch (what.code) {
  case errc::timeout:
  case errc::connect_failed:
    return true;
  case errc::connection_lost:
    // Only when the server sent nothing: a half-read answer may have been
    // acted upon.
    return !what.response_started;
  case errc::rate_limited:
    return true;
  case errc::server_error:
    return policy.retry_server_errors;
  case errc::http_status:
    return what.status == 408 || what.status == 409;
  default:
    return false;
  }
}

} // namespace

retry_decision decide_retry(const failure& what, uint32_t retries_done,
                            const retry_policy& policy, bool data_delivered,
                            double random01) {
  retry_decision result;
  if (data_delivered || retries_done >= policy.max_retries) return result;
  if (what.code == errc::cancelled || what.code == errc::invalid_argument)
    return result;
  if (what.should_retry == 0) return result;
  if (what.should_retry != 1 && !retryable(what, policy)) return result;
  result.retry = true;
  if (what.retry_after_ms >= 0) {
    result.delay = std::min(std::chrono::milliseconds{what.retry_after_ms},
                            policy.max_retry_after);
    return result;
  }
  // Exponential backoff with jitter: initial * 2^n, capped, times a random
  // factor in [1 - jitter, 1].
  auto base = static_cast<double>(policy.initial_backoff.count()) *
              std::pow(2.0, static_cast<double>(retries_done));
  base = std::min(base, static_cast<double>(policy.max_backoff.count()));
  auto jitter = std::clamp(policy.jitter, 0.0, 1.0);
  auto factor = 1.0 - jitter * std::clamp(random01, 0.0, 1.0);
  result.delay = std::chrono::milliseconds{
      static_cast<int64_t>(std::llround(base * factor))};
  return result;
}

failure ask_deadline_failure() {
  return make_timeout(deadline::total,
                      "the ask did not end within its timeout (ask_timeout)");
}

// -- aggregation
// ----------------------------------------------------------------

void chunk_aggregator::add(const completion_chunk& x) {
  ++chunks_;
  add_header(x.id, x.model);
  if (x.usage) usage_ = x.usage;
  for (auto& c : x.choices)
    add_choice(c);
}

void chunk_aggregator::add(const sse::chunk_batch& x) {
  chunks_ += x.chunks;
  add_header(x.id, x.model);
  for (auto& p : x.pieces) {
    if (p.usage)
      usage_ = p.usage;
    else
      add_choice(p.choice);
  }
}

void chunk_aggregator::add_header(const std::string& id,
                                  const std::string& model) {
  if (id_.empty()) id_ = id;
  if (model_.empty()) model_ = model;
}

void chunk_aggregator::add_choice(const chunk_choice& c) {
  auto& st = choices_[c.index];
  if (!c.role.empty()) st.role = c.role;
  if (!c.content.empty()) {
    st.content += c.content;
    st.has_content = true;
  }
  for (auto& d : c.tool_calls) {
    auto& call = st.calls[d.index];
    if (!d.id.empty()) call.id = d.id;
    if (!d.type.empty()) call.type = d.type;
    call.name += d.name;
    call.arguments += d.arguments;
  }
  if (!c.finish_reason.empty()) st.finish_reason = c.finish_reason;
}

ai_message chunk_aggregator::result() const {
  ai_message out;
  out.id = id_;
  out.model = model_;
  out.usage = usage_;
  out.message.role = "assistant";
  if (auto i = choices_.find(0); i != choices_.end()) {
    auto& st = i->second;
    if (!st.role.empty()) out.message.role = st.role;
    if (st.has_content || st.calls.empty()) out.message.content = st.content;
    for (auto& [index, call] : st.calls)
      out.message.tool_calls.push_back(call);
    out.finish_reason = st.finish_reason;
  } else {
    out.message.content = std::string{};
  }
  return out;
}

ai_message to_ai_message(chat_completion&& x) {
  ai_message out;
  out.id = std::move(x.id);
  out.model = std::move(x.model);
  out.usage = x.usage;
  auto i = std::find_if(x.choices.begin(), x.choices.end(),
                        [](auto& c) { return c.index == 0; });
  if (i == x.choices.end() && !x.choices.empty()) i = x.choices.begin();
  if (i != x.choices.end()) {
    out.message = std::move(i->message);
    out.finish_reason = std::move(i->finish_reason);
  } else {
    out.message.role = "assistant";
  }
  if (out.message.role.empty()) out.message.role = "assistant";
  return out;
}

// -- the request actor
// ----------------------------------------------------------

namespace {

/// Credit bookkeeping of one subscriber.
struct subscriber_state {
  caf::actor handle;
  /// Chunks it has acknowledged (all chunks with seq < acked).
  uint64_t acked = 0;
};

struct request_state {
  request_job job;
  /// Replies to the requester (set by `run_atom`).
  caf::response_promise rp;
  /// Jobs started so far; stale answers (probe acks, retry ticks) of an
  /// earlier job carry an older number.
  uint64_t run = 0;
  /// No job running (idle, or the current one has ended).
  bool finished = true;
  /// Attempts started so far.
  uint32_t attempts = 0;
  /// Tag of the running exchange (0: none).
  uint64_t tag = 0;
  /// Chunks sent to subscribers so far.
  uint64_t sent = 0;
  /// `sent` right after the last chunk sent as a request.
  uint64_t last_probe = 0;
  /// Transport batches received but not yet acknowledged to the transport.
  uint32_t held_acks = 0;
  std::vector<subscriber_state> subscribers;
  chunk_aggregator aggregate;
  std::minstd_rand rng;

  /// However the actor ends (normally every job ends through `succeed` or
  /// `fail` first), the requester and the subscribers of a running job get
  /// their one terminal message and the exchange is aborted. Runs on exit,
  /// on the actor's own thread.
  ~request_state() {
    if (finished) return;
    auto err = make_error(errc::cancelled, "request actor terminated");
    if (tag != 0) caf::anon_send(job.wire, transport::cancel_atom::value, tag);
    for (auto& s : subscribers)
      caf::anon_send(s.handle, stream_failed{job.ask.id, err});
    if (rp.pending()) rp.deliver(err);
  }

  static inline const char* name = "maritaca.request";
};

using request_self = caf::stateful_actor<request_state>;

bool streaming(request_self* self) {
  return !self->state.job.ask.subscribers.empty();
}

uint64_t min_acked(request_self* self) {
  uint64_t result = self->state.sent;
  for (auto& s : self->state.subscribers)
    result = std::min(result, s.acked);
  return result;
}

uint64_t outstanding(request_self* self) {
  return self->state.sent - min_acked(self);
}

/// Builds the HTTP call of the next attempt.
transport::call make_call(request_self* self) {
  auto& st = self->state;
  auto& where = st.job.where;
  transport::call c;
  c.tag = transport::next_tag();
  c.req.limits = st.job.ask.options.timeouts;
  if (!where.api_key.empty())
    c.req.fields.push_back({"Authorization", "Bearer " + where.api_key});
  for (auto& h : st.job.ask.options.headers)
    c.req.fields.push_back(h);
  if (st.job.kind == request_kind::models) {
    c.req.method = "GET";
    c.req.url = models_url(where.base_url);
    c.what = transport::expect::models;
    return c;
  }
  c.req.method = "POST";
  c.req.url = completions_url(where.base_url);
  c.req.fields.push_back({"Content-Type", "application/json"});
  auto& body = st.job.ask.body;
  body.stream = streaming(self);
  if (body.stream) {
    // Usage figures on streams: ask for the final usage chunk.
    body.include_usage = true;
    c.req.stream = true;
    c.what = transport::expect::chunks;
    // Few batches in flight: the subscribers' window bounds the rest.
    c.window = 4;
  } else {
    c.what = transport::expect::completion;
  }
  c.req.body = wire::encode_request(body);
  return c;
}

void start_attempt(request_self* self) {
  auto& st = self->state;
  ++st.attempts;
  auto c = make_call(self);
  st.tag = c.tag;
  self->send(st.job.wire, transport::exchange_atom::value, std::move(c));
}

/// Who waits for the end of a job.
struct job_waiters {
  /// The requester's promise.
  caf::response_promise rp;
  /// The subscribers.
  std::vector<subscriber_state> subscribers;
};

/// Ends the current job: a pooled actor tells its dispatcher (the tokens
/// used, for rate limiting, and that it is free again) and waits for the
/// next job; a one-off actor quits. Returns who waits for the terminal
/// messages, to be sent next: the report goes first, so that whoever has
/// the answer finds the slot free (its next message to the dispatcher is
/// queued after the report).
job_waiters end_job(request_self* self, const std::optional<usage>& used) {
  auto& st = self->state;
  st.finished = true;
  st.tag = 0;
  st.held_acks = 0;
  job_waiters result{std::move(st.rp), std::move(st.subscribers)};
  st.rp = caf::response_promise{};
  st.subscribers.clear();
  for (auto& s : result.subscribers)
    self->demonitor(s.handle);
  auto owner = std::move(st.job.owner);
  auto id = st.job.ask.id;
  // Nothing of the ask outlives it (the body, the subscribers' handles).
  st.job = request_job{};
  st.aggregate = chunk_aggregator{};
  if (!owner)
    self->quit();
  else
    self->send(owner, settle_atom::value, id,
               used ? static_cast<int64_t>(used->total_tokens) : int64_t{-1});
  return result;
}

void succeed(request_self* self, ai_message msg) {
  auto& st = self->state;
  if (st.finished) return;
  st.tag = 0;
  msg.request_id = st.job.ask.id;
  msg.attempts = st.attempts;
  auto waiters = end_job(self, msg.usage);
  for (auto& s : waiters.subscribers)
    self->send(s.handle, stream_done{msg.request_id, msg});
  if (waiters.rp.pending()) waiters.rp.deliver(std::move(msg));
}

/// Takes every credential this job sent out of `text`: the API key and
/// the value (and the token after the scheme) of each authorization
/// header. Servers and proxies may echo them in their error texts.
void redact_credentials(const request_job& job, std::string& text) {
  redact(text, job.where.api_key);
  for (auto& h : job.ask.options.headers) {
    auto lower = h.name;
    for (auto& c : lower)
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lower.find("authorization") == std::string::npos &&
        lower.find("key") == std::string::npos &&
        lower.find("token") == std::string::npos)
      continue;
    redact(text, h.value);
    if (auto space = h.value.find(' '); space != std::string::npos)
      redact(text, std::string_view{h.value}.substr(space + 1));
  }
}

void fail(request_self* self, failure what) {
  auto& st = self->state;
  if (st.finished) return;
  redact_credentials(st.job, what.message);
  // An exchange still running (cancelled, deadline passed): abort it.
  if (st.tag != 0)
    self->send(st.job.wire, transport::cancel_atom::value, st.tag);
  st.tag = 0;
  auto id = st.job.ask.id;
  auto err = make_error(std::move(what));
  auto waiters = end_job(self, std::nullopt);
  for (auto& s : waiters.subscribers)
    self->send(s.handle, stream_failed{id, err});
  if (waiters.rp.pending()) waiters.rp.deliver(err);
}

/// Acknowledges held transport batches while the subscribers have credit.
void release_acks(request_self* self) {
  auto& st = self->state;
  if (st.held_acks > 0 && st.tag != 0 &&
      outstanding(self) < st.job.ask.options.stream_window) {
    self->send(st.job.wire, transport::ack_atom::value, st.tag, st.held_acks);
    st.held_acks = 0;
  }
}

void send_chunk(request_self* self, chat_chunk&& x, bool probe);

void on_probe_ack(request_self* self, const caf::actor& who, uint64_t upto) {
  auto& st = self->state;
  for (auto& s : st.subscribers)
    if (s.handle == who) s.acked = std::max(s.acked, upto);
  release_acks(self);
}

/// Sends one chunk to every subscriber (the last one gets `x` itself, the
/// others a copy). A probe goes as a request: its answer proves that the
/// subscriber processed every chunk up to it.
void send_chunk(request_self* self, chat_chunk&& x, bool probe) {
  auto& st = self->state;
  x.request_id = st.job.ask.id;
  x.seq = st.sent++;
  auto n = st.subscribers.size();
  if (!probe) {
    for (size_t i = 0; i < n; ++i) {
      auto& who = st.subscribers[i].handle;
      if (i + 1 < n)
        self->send(who, x);
      else
        self->send(who, std::move(x));
    }
    return;
  }
  st.last_probe = st.sent;
  auto upto = st.sent;
  // A probe unanswered within the idle deadline (a subscriber that hangs, or
  // holds a response promise it never delivers: CAF 0.17 sends no
  // broken_promise then) must not stall the stream forever.
  auto wait = st.job.ask.options.timeouts.idle;
  auto run = st.run;
  for (size_t i = 0; i < n; ++i) {
    auto who = st.subscribers[i].handle;
    // An answer after its job ended is dropped.
    auto on_ack = [=]() {
      if (self->state.run == run) on_probe_ack(self, who, upto);
    };
    // A subscriber that cannot answer in time counts as gone.
    auto on_error = [=](caf::error&) {
      if (self->state.run == run) on_probe_ack(self, who, upto);
    };
    if (i + 1 < n)
      self->request(who, wait, x).then(on_ack, on_error);
    else
      self->request(who, wait, std::move(x)).then(on_ack, on_error);
  }
}

/// Sends the chunks of one transport batch to the subscribers, one message
/// per choice delta or usage, and acknowledges the batch while there is
/// credit.
void forward_chunks(request_self* self, sse::chunk_batch& batch) {
  auto& st = self->state;
  auto window = std::max<uint64_t>(st.job.ask.options.stream_window, 1);
  auto probe_every = std::max<uint64_t>(window / 4, 1);
  // The aggregate first: the pieces are moved into the messages below.
  st.aggregate.add(batch);
  // A piece that carries nothing (a role-only delta, an empty content
  // string) is no chunk for the subscribers.
  auto empty = [](const sse::chunk_batch::piece& p) {
    return !p.usage && p.choice.content.empty() &&
           p.choice.tool_calls.empty() && p.choice.finish_reason.empty();
  };
  // The last chunk sent of the batch becomes a probe when credit runs out.
  size_t total = 0;
  for (auto& p : batch.pieces)
    if (!empty(p)) ++total;
  size_t done = 0;
  for (auto& p : batch.pieces) {
    if (empty(p)) continue;
    chat_chunk x;
    if (p.usage) {
      x.usage = p.usage;
    } else {
      x.index = p.choice.index;
      x.content = std::move(p.choice.content);
      x.tool_calls = std::move(p.choice.tool_calls);
      x.finish_reason = std::move(p.choice.finish_reason);
    }
    auto last = ++done == total;
    auto probe = st.sent + 1 - st.last_probe >= probe_every ||
                 (last && outstanding(self) + 1 >= window);
    send_chunk(self, std::move(x), probe);
  }
  ++st.held_acks;
  release_acks(self);
}

void on_failure(request_self* self, failure what) {
  auto& st = self->state;
  st.tag = 0;
  st.held_acks = 0;
  auto delivered = st.sent > 0;
  auto uniform = std::uniform_real_distribution<double>{0.0, 1.0}(st.rng);
  auto d = decide_retry(what, st.attempts - 1, st.job.ask.options.retry,
                        delivered, uniform);
  if (!d.retry) {
    // The worst case of a deadline is per attempt: say how many there were.
    if (st.attempts > 1)
      what.message +=
          " (gave up after " + std::to_string(st.attempts) + " attempts)";
    fail(self, std::move(what));
    return;
  }
  st.aggregate = chunk_aggregator{};
  self->delayed_send(self, d.delay, tick_atom::value, st.run, st.attempts);
}

/// Starts `job` on an idle actor.
void start_job(request_self* self, request_job&& job) {
  auto& st = self->state;
  st.job = std::move(job);
  st.finished = false;
  ++st.run;
  st.attempts = 0;
  st.tag = 0;
  st.sent = 0;
  st.last_probe = 0;
  st.held_acks = 0;
  st.rng.seed(static_cast<unsigned>(st.job.ask.id * 2654435761u + 1));
  for (auto& s : st.job.ask.subscribers) {
    st.subscribers.push_back({s, 0});
    self->monitor(s);
  }
  start_attempt(self);
}

caf::behavior request_impl(request_self* self) {
  // Exit (the dispatcher quits, the system shuts down): cancel and reply.
  self->set_exit_handler([=](caf::exit_msg& msg) {
    fail(self, make_failure(errc::cancelled, "the dispatcher shut down"));
    self->quit(msg.reason);
  });
  self->set_down_handler([=](caf::down_msg& msg) {
    auto& subs = self->state.subscribers;
    auto i = std::find_if(subs.begin(), subs.end(), [&](auto& s) {
      return s.handle.address() == msg.source;
    });
    if (i == subs.end()) return;
    subs.erase(i);
    // Nobody left to stream to: abort the exchange.
    if (subs.empty())
      fail(self, make_failure(errc::cancelled, "the subscriber went down"));
    else
      release_acks(self);
  });
  return {
      [=](run_atom, request_job& job) -> caf::response_promise {
        auto& st = self->state;
        auto rp = self->make_response_promise();
        if (!st.finished) {
          // The dispatcher gives work to idle actors only.
          rp.deliver(
              make_error(errc::invalid_argument, "the request actor is busy"));
          return rp;
        }
        st.rp = rp;
        start_job(self, std::move(job));
        return rp;
      },
      [=](cancel_atom, uint64_t id) {
        if (id == self->state.job.ask.id)
          fail(self, make_failure(errc::cancelled, "cancelled by the caller"));
      },
      [=](expire_atom, uint64_t id) {
        if (id == self->state.job.ask.id) fail(self, ask_deadline_failure());
      },
      [=](tick_atom, uint64_t run, uint32_t attempt) {
        auto& st = self->state;
        if (!st.finished && run == st.run && attempt == st.attempts)
          start_attempt(self);
      },
      [=](transport::chunks_atom, uint64_t tag, sse::chunk_batch& batch) {
        if (tag == self->state.tag && !self->state.finished)
          forward_chunks(self, batch);
      },
      [=](transport::done_atom, uint64_t tag) {
        if (tag == self->state.tag)
          succeed(self, self->state.aggregate.result());
      },
      [=](transport::completion_atom, uint64_t tag, chat_completion& x) {
        if (tag == self->state.tag) succeed(self, to_ai_message(std::move(x)));
      },
      [=](transport::models_atom, uint64_t tag, std::vector<model_info>& xs) {
        auto& st = self->state;
        if (tag != st.tag || st.finished) return;
        st.tag = 0;
        auto waiters = end_job(self, std::nullopt);
        if (waiters.rp.pending()) waiters.rp.deliver(std::move(xs));
      },
      [=](transport::failed_atom, uint64_t tag, failure& what) {
        if (tag == self->state.tag) on_failure(self, std::move(what));
      },
  };
}

} // namespace

caf::actor spawn_request(caf::actor_system& sys) {
  return sys.spawn(request_impl);
}

} // namespace maritaca
