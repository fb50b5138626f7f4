#include "maritaca/chain.hpp"

#include "deadline_timer.hpp"
#include "stream_receive.hpp"

#include <caf/exit_reason.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include <algorithm>

namespace maritaca {

namespace {

/// Margin between a run's own deadline and its requester's timeout.
constexpr std::chrono::milliseconds reply_margin{5'000};

caf::error bad_prompt(std::string what) {
  return make_error(errc::invalid_argument, "prompt: " + std::move(what));
}

/// Scans `text`: calls `on_text` with literal pieces and `on_var` with
/// variable names. Returns the first syntax error.
template <class OnText, class OnVar>
caf::error scan_template(std::string_view text, OnText on_text, OnVar on_var) {
  std::size_t i = 0;
  while (i < text.size()) {
    auto c = text[i];
    if (c == '{' && i + 1 < text.size() && text[i + 1] == '{') {
      on_text(std::string_view{"{"});
      i += 2;
    } else if (c == '}' && i + 1 < text.size() && text[i + 1] == '}') {
      on_text(std::string_view{"}"});
      i += 2;
    } else if (c == '{') {
      auto end = text.find_first_of("{}", i + 1);
      if (end == std::string_view::npos || text[end] != '}')
        return bad_prompt("unclosed '{' at offset " + std::to_string(i));
      auto name = text.substr(i + 1, end - i - 1);
      if (name.empty())
        return bad_prompt("empty '{}' at offset " + std::to_string(i));
      if (auto err = on_var(name)) return err;
      i = end + 1;
    } else if (c == '}') {
      return bad_prompt("single '}' at offset " + std::to_string(i) +
                        " (write '}}' for a brace)");
    } else {
      auto end = text.find_first_of("{}", i);
      if (end == std::string_view::npos) end = text.size();
      on_text(text.substr(i, end - i));
      i = end;
    }
  }
  return {};
}

/// Whether a chain tries the same model again after `code`.
bool retryable(errc code) noexcept {
  switch (code) {
  case errc::rate_limited:
  case errc::server_error:
  case errc::timeout:
  case errc::connect_failed:
  case errc::connection_lost:
  case errc::protocol_error:
  case errc::overloaded:
    return true;
  default:
    return false;
  }
}

/// Whether a chain moves on to its next model after `code`.
bool fallback_on(errc code) noexcept {
  return code == errc::rate_limited || code == errc::server_error ||
         code == errc::timeout;
}

// -- the run actor
// --------------------------------------------------------------

struct run_state {
  std::optional<chain> spec;
  variables vars;
  caf::actor subscriber;
  uint64_t run_id = 0;
  input in;
  caf::typed_response_promise<chain_output> rp;
  bool started = false;
  bool finished = false;
  /// When the whole run must have ended.
  std::chrono::steady_clock::time_point deadline_at;
  /// The model asked now, and the attempts made with it.
  std::size_t model = 0;
  uint32_t model_attempts = 0;
  uint32_t attempts = 0;
  /// The running ask (0: none) and its dispatcher, for cancelling.
  uint64_t ask_id = 0;
  dispatcher_actor dispatcher;
  /// Whether a chunk went to the subscriber (then no retry, no fallback).
  bool forwarded = false;
  /// Whether the subscriber (a `chain_stream`) also wants the output.
  bool report_output = false;

  /// However the run ends, the requester and the subscriber get one
  /// terminal message, and a running ask is cancelled.
  ~run_state() {
    if (!started || finished) return;
    auto err = make_error(errc::cancelled, "the chain run ended");
    if (ask_id != 0 && dispatcher)
      caf::anon_send(dispatcher, cancel_atom::value, ask_id);
    if (subscriber) caf::anon_send(subscriber, stream_failed{run_id, err});
    if (rp.pending()) rp.deliver(err);
  }

  static inline const char* name = "maritaca.chain_run";
};

using run_self = caf::stateful_actor<run_state>;

void cancel_ask(run_self* self) {
  auto& st = self->state;
  if (st.ask_id != 0 && st.dispatcher)
    self->send(st.dispatcher, cancel_atom::value, st.ask_id);
  st.ask_id = 0;
}

void fail(run_self* self, caf::error err) {
  auto& st = self->state;
  if (st.finished) return;
  st.finished = true;
  cancel_ask(self);
  if (st.subscriber) self->send(st.subscriber, stream_failed{st.run_id, err});
  st.rp.deliver(std::move(err));
  self->quit();
}

void succeed(run_self* self, chain_output out) {
  auto& st = self->state;
  if (st.finished) return;
  st.finished = true;
  st.ask_id = 0;
  if (st.subscriber) {
    if (st.report_output) self->send(st.subscriber, out);
    auto msg = out.message;
    msg.request_id = st.run_id;
    self->send(st.subscriber, stream_done{st.run_id, std::move(msg)});
  }
  st.rp.deliver(std::move(out));
  self->quit();
}

void attempt(run_self* self);

/// Retries, falls back or gives up after a failed attempt.
void on_error(run_self* self, caf::error err) {
  auto& st = self->state;
  if (st.finished) return;
  st.ask_id = 0;
  auto code = code_of(err);
  // Chunks already reached the subscriber: nothing can be taken back.
  if (st.forwarded) {
    fail(self, std::move(err));
    return;
  }
  auto& spec = *st.spec;
  if (retryable(code) && st.model_attempts <= spec.retries()) {
    auto wait =
        spec.backoff() * (1 << std::min<uint32_t>(st.model_attempts - 1, 10));
    self->delayed_send(self, wait, tick_atom::value, st.attempts);
    return;
  }
  if (fallback_on(code) && st.model + 1 < spec.models().size()) {
    ++st.model;
    st.model_attempts = 0;
    attempt(self);
    return;
  }
  fail(self, std::move(err));
}

void attempt(run_self* self) {
  auto& st = self->state;
  auto& spec = *st.spec;
  auto model = spec.parser().prepare(spec.models()[st.model]);
  std::vector<caf::actor> subs;
  if (st.subscriber) subs.push_back(caf::actor_cast<caf::actor>(self));
  auto x = model.make_ask(st.in, std::move(subs));
  st.ask_id = x.id;
  st.dispatcher = model.dispatcher();
  ++st.attempts;
  ++st.model_attempts;
  auto id = x.id;
  self->request(model.dispatcher(), caf::infinite, ask_atom::value,
                std::move(x))
      .then(
          [=](ai_message& msg) {
            auto& st = self->state;
            if (st.finished || st.ask_id != id) return;
            auto out = st.spec->parser().parse(msg);
            if (!out) {
              on_error(self, std::move(out.error()));
              return;
            }
            out->model_index = st.model;
            out->attempts = st.attempts;
            succeed(self, std::move(*out));
          },
          [=](caf::error& err) {
            if (self->state.ask_id == id) on_error(self, std::move(err));
          });
}

caf::behavior run_impl(run_self* self, chain spec, variables vars,
                       caf::actor subscriber, uint64_t run_id,
                       bool report_output) {
  auto& st = self->state;
  st.report_output = report_output;
  st.spec.emplace(std::move(spec));
  st.vars = std::move(vars);
  st.subscriber = std::move(subscriber);
  st.run_id = run_id;
  if (st.subscriber) {
    self->monitor(st.subscriber);
    self->set_down_handler([=](caf::down_msg& msg) {
      if (msg.source == self->state.subscriber.address())
        fail(self, make_error(errc::cancelled, "the subscriber went down"));
    });
  }
  return {
      [=](chain_atom) -> caf::result<chain_output> {
        auto& st = self->state;
        if (st.started)
          return make_error(errc::invalid_argument, "a chain run runs once");
        st.started = true;
        st.rp = self->make_response_promise<chain_output>();
        auto rp = st.rp;
        st.deadline_at = std::chrono::steady_clock::now() + st.spec->deadline();
        detail::hop_toward(self, st.deadline_at, tick_atom::value);
        auto in = st.spec->prompt().format(st.vars);
        if (!in) {
          fail(self, std::move(in.error()));
          return rp;
        }
        st.in = std::move(*in);
        attempt(self);
        return rp;
      },
      // Chunks of the running ask go on to the subscriber; a chunk sent as a
      // request is delegated, so the subscriber's answer (the stream credit)
      // goes straight back to the request actor.
      [=](chat_chunk& x) {
        auto& st = self->state;
        if (st.finished || !st.subscriber || x.request_id != st.ask_id) return;
        st.forwarded = true;
        x.request_id = st.run_id;
        if (self->current_mailbox_element()->mid.is_request())
          self->delegate(st.subscriber, std::move(x));
        else
          self->send(st.subscriber, std::move(x));
      },
      // The ask's response carries the same answer.
      [=](const stream_done&) {},
      [=](const stream_failed&) {},
      [=](tick_atom, uint32_t at) {
        auto& st = self->state;
        if (!st.finished && st.attempts == at) attempt(self);
      },
      [=](tick_atom) {
        auto& st = self->state;
        if (!detail::due(st.deadline_at))
          return detail::hop_toward(self, st.deadline_at, tick_atom::value);
        auto ms = std::to_string(st.spec->deadline().count());
        fail(self,
             make_error(make_timeout(deadline::total,
                                     "the chain run took over " + ms + " ms")));
      },
  };
}

/// Spawns a run (see `chain::spawn_run`); with `report_output`, the
/// subscriber gets the `chain_output` right before `stream_done`.
caf::actor spawn_chain_run(const chain& c, variables vars,
                           caf::actor subscriber, uint64_t run_id,
                           bool report_output) {
  if (run_id == 0) run_id = next_request_id();
  // The run may outlive the caller's handles: it must not own the models'
  // actor system.
  return c.models().front().system().spawn(
      run_impl, c.for_actor(), std::move(vars), std::move(subscriber), run_id,
      report_output);
}

} // namespace

// -- templates
// ------------------------------------------------------------------

caf::expected<std::string> format_template(std::string_view text,
                                           const variables& vars) {
  std::string result;
  result.reserve(text.size());
  auto err = scan_template(
      text, [&](std::string_view piece) { result += piece; },
      [&](std::string_view name) -> caf::error {
        auto i = vars.find(std::string{name});
        if (i == vars.end())
          return bad_prompt("missing variable '" + std::string{name} + "'");
        result += i->second;
        return {};
      });
  if (err) return err;
  return result;
}

std::vector<std::string> template_variables(std::string_view text) {
  std::vector<std::string> result;
  scan_template(
      text, [](std::string_view) {},
      [&](std::string_view name) -> caf::error {
        if (std::find(result.begin(), result.end(), name) == result.end())
          result.emplace_back(name);
        return {};
      });
  return result;
}

prompt_template::prompt_template(std::string text) {
  messages_.emplace_back("user", std::move(text));
}

prompt_template::prompt_template(
    std::initializer_list<std::pair<std::string, std::string>> messages)
    : messages_(messages) {
  // nop
}

prompt_template::prompt_template(
    std::vector<std::pair<std::string, std::string>> messages)
    : messages_(std::move(messages)) {
  // nop
}

caf::expected<input> prompt_template::format(const variables& vars) const {
  input result;
  for (auto& [role, text] : messages_) {
    auto formatted = format_template(text, vars);
    if (!formatted) return std::move(formatted.error());
    result.messages.push_back(
        chat_message::make(normalize_role(role), std::move(*formatted)));
  }
  return result;
}

std::vector<std::string> prompt_template::variable_names() const {
  std::vector<std::string> result;
  for (auto& m : messages_)
    for (auto& name : template_variables(m.second))
      if (std::find(result.begin(), result.end(), name) == result.end())
        result.push_back(std::move(name));
  return result;
}

// -- output parsers
// -------------------------------------------------------------

output_parser output_parser::text() {
  return output_parser{};
}

output_parser output_parser::json() {
  output_parser result;
  result.kind_ = kind::json;
  return result;
}

output_parser output_parser::structured(std::string schema) {
  output_parser result;
  result.kind_ = kind::structured;
  result.parsed_ = std::make_shared<const caf::expected<json_schema>>(
      json_schema::parse(schema));
  result.schema_ = std::move(schema);
  return result;
}

caf::expected<chain_output> output_parser::parse(const ai_message& msg) const {
  chain_output out;
  out.message = msg;
  if (kind_ == kind::text) {
    out.text = msg.content();
    return out;
  }
  if (parsed_ && !*parsed_) return parsed_->error();
  auto doc = json_document::parse(msg.content());
  if (!doc) return std::move(doc.error());
  if (parsed_) {
    if (auto err = (*parsed_)->check(*doc)) return err;
  }
  out.text = doc->text();
  out.json = std::move(*doc);
  return out;
}

chat_model output_parser::prepare(const chat_model& model) const {
  auto& fmt = model.config().response_format;
  if (kind_ == kind::text || (fmt && fmt->type != "text")) return model;
  if (kind_ == kind::json) return with_json_mode(model);
  return with_json_schema(model, schema_);
}

// -- chain
// ----------------------------------------------------------------------

chain::chain(prompt_template prompt, chat_model model, output_parser parser)
    : prompt_(std::move(prompt)), parser_(std::move(parser)) {
  models_.push_back(std::move(model));
}

chain chain::with_retry(uint32_t retries,
                        std::chrono::milliseconds backoff) const {
  auto result = *this;
  result.retries_ = retries;
  result.backoff_ = backoff;
  return result;
}

chain chain::with_fallbacks(std::vector<chat_model> models) const {
  auto result = *this;
  result.models_.resize(1);
  for (auto& m : models)
    result.models_.push_back(std::move(m));
  return result;
}

chain chain::with_parser(output_parser parser) const {
  auto result = *this;
  result.parser_ = std::move(parser);
  return result;
}

chain chain::with_deadline(std::chrono::milliseconds deadline) const {
  auto result = *this;
  result.deadline_ = deadline;
  return result;
}

std::chrono::milliseconds chain::deadline() const {
  if (deadline_.count() > 0) return deadline_;
  // Every attempt of every model, and the waits between retries.
  std::chrono::milliseconds total{0};
  std::chrono::milliseconds waits{0};
  for (uint32_t i = 0; i < retries_; ++i)
    waits += backoff_ * (1 << std::min<uint32_t>(i, 10));
  for (auto& m : models_)
    total += m.config().ask_timeout * (retries_ + 1) + waits;
  return total;
}

std::chrono::milliseconds chain::run_timeout() const {
  return deadline() + reply_margin;
}

caf::actor chain::spawn_run(variables vars, caf::actor subscriber,
                            uint64_t run_id) const {
  return spawn_chain_run(*this, std::move(vars), std::move(subscriber), run_id,
                         false);
}

chain::result_type chain::invoke(const variables& vars) const {
  caf::scoped_actor self{models_.front().system()};
  result_type result{make_error(errc::cancelled, "no answer")};
  self->request(spawn_run(vars), run_timeout(), chain_atom::value)
      .receive([&](chain_output& out) { result = std::move(out); },
               [&](caf::error& err) { result = std::move(err); });
  return result;
}

std::future<chain::result_type> chain::ainvoke(variables vars) const {
  auto prom = std::make_shared<std::promise<result_type>>();
  auto fut = prom->get_future();
  // Arguments rather than captures: CAF 0.17 dereferences a null argument
  // tuple for argument-less spawns (UBSan flags it). The actor's copy must
  // not own the models' actor system (see `chat_model::for_actor`).
  auto copy = for_actor();
  models_.front().system().spawn(
      [](caf::event_based_actor* self, decltype(prom) prom, chain copy,
         variables vars) {
        copy.ainvoke(self, std::move(vars))
            .then(
                [prom](chain_output& out) { prom->set_value(std::move(out)); },
                [prom](caf::error& err) { prom->set_value(std::move(err)); });
      },
      prom, std::move(copy), std::move(vars));
  return fut;
}

chain chain::for_actor() const {
  auto result = *this;
  for (auto& m : result.models_)
    m = m.for_actor();
  return result;
}

std::vector<chain::result_type>
chain::batch(std::vector<variables> inputs) const {
  caf::scoped_actor self{models_.front().system()};
  using handle = decltype(self->request(std::declval<caf::actor>(),
                                        run_timeout(), chain_atom::value));
  std::vector<handle> pending;
  pending.reserve(inputs.size());
  // All runs start before the first wait.
  for (auto& vars : inputs)
    pending.push_back(self->request(spawn_run(std::move(vars)), run_timeout(),
                                    chain_atom::value));
  std::vector<result_type> results;
  results.reserve(inputs.size());
  for (auto& h : pending) {
    result_type r{make_error(errc::cancelled, "no answer")};
    h.receive([&](chain_output& out) { r = std::move(out); },
              [&](caf::error& err) { r = std::move(err); });
    results.push_back(std::move(r));
  }
  return results;
}

chain_stream chain::stream(variables vars) const {
  return chain_stream{*this, std::move(vars)};
}

chain operator|(prompt_template prompt, const chat_model& model) {
  return chain{std::move(prompt), model};
}

chain operator|(chain c, output_parser parser) {
  return c.with_parser(std::move(parser));
}

chain operator|(const chat_model& model, output_parser parser) {
  return chain{prompt_template{"{input}"}, model, std::move(parser)};
}

// -- chain_stream
// ---------------------------------------------------------------

chain_stream::chain_stream(const chain& c, variables vars)
    : self_(std::make_unique<caf::scoped_actor>(c.models().front().system())),
      parser_(c.parser()), timeout_(c.run_timeout()), id_(next_request_id()),
      result_(make_error(errc::cancelled, "no answer")) {
  run_ = spawn_chain_run(c, std::move(vars),
                         caf::actor_cast<caf::actor>(*self_), id_, true);
  // The outcome arrives as `stream_done` / `stream_failed`.
  caf::anon_send(run_, chain_atom::value);
}

chain_stream::chain_stream(chain_stream&&) noexcept = default;

chain_stream& chain_stream::operator=(chain_stream&&) noexcept = default;

chain_stream::~chain_stream() {
  // Abandoned before the end: the run cancels its ask and ends.
  if (self_ && !ended_)
    caf::anon_send_exit(run_, caf::exit_reason::user_shutdown);
}

std::optional<chat_chunk> chain_stream::next() {
  if (ended_) return std::nullopt;
  // The run's output arrives right before its `stream_done`.
  auto step = detail::receive_stream_step(
      *self_, id_, timeout_, [&](chain_output& x) { output_ = std::move(x); });
  switch (step.kind) {
  case detail::stream_step::chunk:
    return std::move(step.next);
  case detail::stream_step::done:
    if (output_)
      result_ = std::move(*output_);
    else
      result_ = parser_.parse(step.end.message);
    break;
  case detail::stream_step::failed:
    result_ = std::move(step.error);
    break;
  case detail::stream_step::timed_out:
    caf::anon_send_exit(run_, caf::exit_reason::user_shutdown);
    result_ = make_error(make_timeout(
        deadline::total, "no stream event within the chain's deadline"));
    break;
  }
  ended_ = true;
  return std::nullopt;
}

const chain::result_type& chain_stream::result() {
  while (!ended_)
    next();
  return result_;
}

// -- parallel
// -------------------------------------------------------------------

parallel_chain::parallel_chain(std::map<std::string, chain> branches)
    : branches_(std::move(branches)) {
  // nop
}

void parallel_chain::ainvoke(caf::event_based_actor* self, variables vars,
                             std::function<void(result_type)> f) const {
  struct collector {
    result_type results;
    std::size_t missing = 0;
    std::function<void(result_type)> done;
  };
  auto c = std::make_shared<collector>();
  c->missing = branches_.size();
  c->done = std::move(f);
  if (c->missing == 0) {
    c->done({});
    return;
  }
  auto finish_one = [c](const std::string& name, chain::result_type r) {
    c->results.insert_or_assign(name, std::move(r));
    if (--c->missing == 0) c->done(std::move(c->results));
  };
  for (auto& [name, branch] : branches_)
    branch.ainvoke(self, vars)
        .then([=, name = name](
                  chain_output& out) { finish_one(name, std::move(out)); },
              [=, name = name](caf::error& err) {
                finish_one(name, std::move(err));
              });
}

std::future<parallel_chain::result_type>
parallel_chain::ainvoke(variables vars) const {
  auto prom = std::make_shared<std::promise<result_type>>();
  auto fut = prom->get_future();
  if (branches_.empty()) {
    prom->set_value({});
    return fut;
  }
  auto& sys = branches_.begin()->second.models().front().system();
  // Arguments rather than captures, and a copy that does not own the
  // models' actor system: see `chain::ainvoke`.
  std::map<std::string, chain> branches;
  for (auto& [name, branch] : branches_)
    branches.emplace(name, branch.for_actor());
  sys.spawn(
      [](caf::event_based_actor* self, decltype(prom) prom, parallel_chain copy,
         variables vars) {
        copy.ainvoke(self, std::move(vars), [prom](result_type rs) {
          prom->set_value(std::move(rs));
        });
      },
      prom, parallel_chain{std::move(branches)}, std::move(vars));
  return fut;
}

parallel_chain::result_type
parallel_chain::invoke(const variables& vars) const {
  return ainvoke(vars).get();
}

parallel_chain parallel(std::map<std::string, chain> branches) {
  return parallel_chain{std::move(branches)};
}

caf::expected<variables>
to_variables(const parallel_chain::result_type& results) {
  variables result;
  for (auto& [name, r] : results) {
    if (!r) return r.error();
    result.emplace(name, r->text);
  }
  return result;
}

} // namespace maritaca
