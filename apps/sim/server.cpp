#include "maritaca/sim/server.hpp"

#include "answers.hpp"
#include "hash.hpp"
#include "maritaca/sim/faults.hpp"
#include "stats.hpp"

#include "maritaca/apps/http_guard.hpp"
#include "maritaca/apps/listener.hpp"
#include "maritaca/transport/bounded_parser.hpp"
#include "maritaca/transport/sse_parser.hpp"
#include "maritaca/transport/wire.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <array>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <vector>

namespace maritaca::sim {

namespace {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;
using namespace std::chrono_literals;

/// Largest accepted request body (larger gets 413).
constexpr std::size_t body_limit = 1u << 20;

/// Largest accepted request head (larger gets 431).
constexpr std::size_t header_limit = 64u << 10;

/// Time allowed to read a request body once its head arrived.
constexpr auto request_timeout = 30s;

/// Time allowed for the TLS handshake.
constexpr auto handshake_timeout = 10s;

/// Time allowed for one write (a client that stops reading is dropped).
constexpr auto write_timeout = 60s;

/// Time allowed for the peer to close after we did (lingering close).
constexpr auto linger_timeout = 2s;

/// Upper bound of `x-sim-chunks`.
constexpr int64_t max_chunks = 1'000'000;

/// Upper bound of `x-sim-token-delay-ms`.
constexpr int64_t max_delay_ms = 600'000;

/// State shared by all connections of one server.
struct shared_state {
  explicit shared_state(options o)
      : opts(std::move(o)), faults(opts.fail_rate, opts.fail_kinds, opts.seed),
        models_json(wire::encode_models(served_models())) {
    // nop
  }

  /// The command line.
  options opts;
  /// `GET /sim/stats`.
  sim::stats counters;
  /// One-shot and random faults.
  fault_table faults;
  /// The body of `GET /models`, encoded once.
  std::string models_json;
};

/// Returns the path of `target` without its query.
std::string_view path_of(beast::string_view target) {
  std::string_view t{target.data(), target.size()};
  return t.substr(0, t.find('?'));
}

/// Reads a non-negative integer header, clamped to `max`; -1 when absent or
/// malformed.
int64_t int_header(const http::fields& fields, beast::string_view name,
                   int64_t max) {
  auto i = fields.find(name);
  if (i == fields.end()) return -1;
  auto v = i->value();
  int64_t result = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), result);
  if (ec != std::errc{} || end != v.data() + v.size() || result < 0) return -1;
  return std::min(result, max);
}

/// Whether `value` is `Bearer <key>` or `Key <key>` (scheme in any case).
bool key_matches(beast::string_view value, const std::string& key) {
  for (std::string_view scheme : {"bearer ", "key "}) {
    if (value.size() != scheme.size() + key.size()) continue;
    if (!beast::iequals(value.substr(0, scheme.size()), scheme)) continue;
    if (value.substr(scheme.size()) == key) return true;
  }
  return false;
}

/// Whether `ec` is the ordinary end of a connection (not worth a log line).
bool is_ordinary(const beast::error_code& ec) {
  return apps::is_ordinary_end(ec) || ec == ssl::error::stream_truncated;
}

/// Formats `payload` as one chunk of the chunked transfer coding into
/// `out`, or as is for close-delimited bodies.
void append_framed(std::string& out, std::string_view payload, bool chunked) {
  if (!chunked) {
    out.append(payload);
    return;
  }
  char size[20];
  auto [end, ec] = std::to_chars(size, size + sizeof(size), payload.size(), 16);
  out.append(size, end);
  out.append("\r\n");
  out.append(payload);
  out.append("\r\n");
}

/// One piece of a streamed tool call: the header (id, type, name) or a
/// slice of its arguments.
struct tool_piece {
  /// Index of the tool call.
  std::size_t call = 0;
  /// Slice of the arguments (empty for the header piece).
  std::size_t offset = 0;
  std::size_t length = 0;
  /// Whether this is the header piece.
  bool header = false;
};

/// Splits tool calls into stream pieces: a header per call, then its
/// arguments in slices of about 8 bytes (never splitting a UTF-8 sequence).
std::vector<tool_piece> split_tool_calls(const std::vector<tool_call>& calls) {
  std::vector<tool_piece> result;
  for (std::size_t i = 0; i < calls.size(); ++i) {
    result.push_back({i, 0, 0, true});
    auto& args = calls[i].arguments;
    std::size_t pos = 0;
    while (pos < args.size()) {
      auto end = std::min(args.size(), pos + 8);
      // Do not end a slice inside a multi-byte sequence.
      while (end < args.size() &&
             (static_cast<unsigned char>(args[end]) & 0xc0) == 0x80)
        ++end;
      result.push_back({i, pos, end - pos, false});
      pos = end;
    }
  }
  return result;
}

/// The progress of one streamed answer.
struct stream_job {
  /// What comes next.
  enum class step { role, body, finish, usage, done, closed };

  answer ans;
  /// Reused for every event: only the deltas change.
  completion_chunk chunk;
  std::vector<tool_piece> tool_pieces;
  bool include_usage = false;
  int64_t delay_ms = 0;
  fault injected;
  /// Body piece at which a mid-stream fault fires.
  int64_t fault_at = 0;
  bool fault_fired = false;
  bool chunked = true;
  step next = step::role;
  /// Body pieces written, and in all.
  int64_t piece = 0;
  int64_t pieces = 0;
  /// The event of a text piece before and after its JSON string.
  std::string piece_prefix;
  std::string piece_suffix;
  /// Offset into `ans.content` of the next text piece.
  std::size_t pos = 0;
};

/// A completion held back by `x-sim-latency-ms`.
struct delayed_completion {
  chat_request chat;
  answer ans;
  fault injected;
};

/// Identifies the answer to `chat`: a hash of its canonical encoding
/// without the streaming flags, so that formatting does not matter and a
/// streamed answer has the same id and tool call ids as a plain one.
uint64_t answer_hash(chat_request chat) {
  chat.stream = false;
  chat.include_usage = false;
  return fnv1a(wire::encode_request(chat));
}

/// Whether `f` acts in the middle of a response (after its head).
bool is_mid_fault(const fault& f) {
  switch (f.kind) {
  case fault_kind::reset_mid:
  case fault_kind::stall_mid:
  case fault_kind::bad_json:
  case fault_kind::error_mid:
    return true;
  default:
    return false;
  }
}

/// The message of an injected error status.
std::string fault_message(int status) {
  switch (status) {
  case 429:
    return "rate limited";
  case 500:
    return "internal server error";
  case 502:
    return "bad gateway";
  case 503:
    return "service unavailable";
  case 504:
    return "gateway timeout";
  default:
    return "simulated error " + std::to_string(status);
  }
}

// -- session
// --------------------------------------------------------------------

/// One connection: reads requests, answers them, applies faults. All its
/// handlers run on the connection's strand. `Stream` is `beast::tcp_stream`
/// or `beast::ssl_stream<beast::tcp_stream>`.
template <class Stream>
class session : public std::enable_shared_from_this<session<Stream>> {
public:
  /// Whether the connection speaks TLS.
  static constexpr bool is_tls = !std::is_same_v<Stream, beast::tcp_stream>;

  /// A plain connection.
  session(tcp::socket&& socket, shared_state& state) requires(!is_tls)
      : stream_(std::move(socket)), state_(state),
        timer_(stream_.get_executor()), watchdog_(stream_.get_executor()),
        buffer_(apps::read_buffer_limit(header_limit)) {
    // nop
  }

  /// A TLS connection.
  session(tcp::socket&& socket, ssl::context& ctx,
          shared_state& state) requires(is_tls)
      : stream_(std::move(socket), ctx), state_(state),
        timer_(stream_.get_executor()), watchdog_(stream_.get_executor()),
        buffer_(apps::read_buffer_limit(header_limit)) {
    // nop
  }

  /// Starts serving (on the strand).
  void run() {
    net::dispatch(stream_.get_executor(),
                  beast::bind_front_handler(&session::start, self()));
  }

private:
  using request_parser = transport::bounded_parser<true, http::string_body>;

  std::shared_ptr<session> self() { return this->shared_from_this(); }

  beast::tcp_stream& lowest() { return beast::get_lowest_layer(stream_); }

  // -- reading requests
  // ---------------------------------------------------------

  void start() {
    if constexpr (is_tls) {
      lowest().expires_after(handshake_timeout);
      stream_.async_handshake(
          ssl::stream_base::server,
          beast::bind_front_handler(&session::on_handshake, self()));
    } else {
      do_read();
    }
  }

  void on_handshake(beast::error_code ec) {
    if (ec) return fail(ec, "handshake");
    do_read();
  }

  void do_read() {
    parser_.emplace();
    parser_->body_limit(body_limit);
    parser_->head_limit(header_limit);
    lowest().expires_after(std::chrono::seconds(state_.opts.idle_timeout_s));
    http::async_read_header(
        stream_, buffer_, *parser_,
        beast::bind_front_handler(&session::on_read_header, self()));
  }

  /// A read failed: answers what can be answered (limits, malformed
  /// requests; then closes), closes on the rest.
  void read_failed(beast::error_code ec, const char* what) {
    if (auto r = apps::refusal_for(ec, body_limit))
      return refuse(std::move(*r));
    fail(ec, what);
  }

  /// Answers an unreadable request and closes afterwards.
  void refuse(apps::refusal r) {
    head_only_ = false;
    send_error(static_cast<http::status>(r.status), std::move(r.message),
               false);
  }

  void on_read_header(beast::error_code ec, std::size_t) {
    if (closed_) return;
    if (ec) return read_failed(ec, "read header");
    auto& req = parser_->get();
    version_ = req.version();
    head_only_ = req.method() == http::verb::head;
    if (auto r = apps::check_framing(req, version_, parser_->chunked()))
      return refuse(std::move(*r));
    // A request without the key gets its 401 before its body is read (or
    // invited): nobody unauthorized makes the server hold a body.
    if (!parser_->is_done() && is_protected(path_of(req.target())) &&
        !authorized()) {
      keep_alive_ = false;
      return send_error(http::status::unauthorized,
                        "Invalid or missing API key", false);
    }
    if (!parser_->is_done() &&
        beast::iequals(req[http::field::expect], "100-continue")) {
      // Let clients that wait for it send the body now.
      static constexpr std::string_view go_on = "HTTP/1.1 100 Continue\r\n\r\n";
      lowest().expires_after(request_timeout);
      return net::async_write(
          stream_, net::buffer(go_on.data(), go_on.size()),
          beast::bind_front_handler(&session::on_continue, self()));
    }
    read_body();
  }

  void on_continue(beast::error_code ec, std::size_t) {
    if (ec) return fail(ec, "write 100-continue");
    read_body();
  }

  void read_body() {
    if (parser_->is_done()) return handle_request();
    lowest().expires_after(request_timeout);
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&session::on_read, self()));
  }

  void on_read(beast::error_code ec, std::size_t) {
    if (closed_) return;
    if (ec) return read_failed(ec, "read");
    handle_request();
  }

  /// Continues with the next request of a keep-alive connection. When a
  /// watch read is pending (see `watch_peer`), it becomes the first read of
  /// the next request; a timer bounds the idle time meanwhile.
  void next_request() {
    if (!watching_) return do_read();
    resume_after_watch_ = true;
    timer_.expires_after(std::chrono::seconds(state_.opts.idle_timeout_s));
    timer_.async_wait(beast::bind_front_handler(&session::on_idle, self()));
  }

  void on_idle(beast::error_code ec) {
    if (ec || closed_ || !resume_after_watch_) return;
    close_now();
  }

  /// Reads from the peer while we write (or stall), so that a client that
  /// leaves is noticed at once. Bytes that arrive (a pipelined request) are
  /// kept for the next request.
  void watch_peer() {
    auto room = apps::read_room(buffer_);
    if (watching_ || closed_ || room == 0) return;
    watching_ = true;
    // The watch read must not inherit a timeout: stalls and idle waits have
    // their own timer.
    lowest().expires_never();
    stream_.async_read_some(
        buffer_.prepare(room),
        beast::bind_front_handler(&session::on_watch, self()));
  }

  void on_watch(beast::error_code ec, std::size_t n) {
    watching_ = false;
    if (closed_) return;
    if (ec) {
      // The client left (or broke the connection): stop answering.
      return close_now();
    }
    buffer_.commit(n);
    if (resume_after_watch_) {
      resume_after_watch_ = false;
      timer_.cancel();
      return do_read();
    }
    // The client is alive and sent the next request early: keep it for
    // later and stop watching (a pending watch read could not see the end
    // of the request already buffered).
  }

  // -- routing
  // --------------------------------------------------------------------

  void handle_request() {
    auto& req = parser_->get();
    keep_alive_ = req.keep_alive();
    version_ = req.version();
    auto path = path_of(req.target());
    auto method = req.method();
    // HEAD is GET without the body (`send` leaves it out).
    if (method == http::verb::head) method = http::verb::get;
    if (path == "/api/chat/completions" || path == "/v1/chat/completions") {
      if (method != http::verb::post) return send_method_not_allowed("POST");
      return on_chat();
    }
    if (path == "/api/models" || path == "/v1/models") {
      if (method != http::verb::get) return send_method_not_allowed("GET");
      return on_models();
    }
    for (std::string_view prefix : {"/api/models/", "/v1/models/"})
      if (path.substr(0, prefix.size()) == prefix &&
          path.size() > prefix.size()) {
        if (method != http::verb::get) return send_method_not_allowed("GET");
        return on_model(path.substr(prefix.size()));
      }
    if (path == "/sim/stats") {
      if (method != http::verb::get) return send_method_not_allowed("GET");
      return send_json(http::status::ok, state_.counters.to_json());
    }
    if (path == "/sim/stats/reset") {
      if (method != http::verb::post) return send_method_not_allowed("POST");
      state_.counters.reset();
      return send_json(http::status::ok, state_.counters.to_json());
    }
    send_error(http::status::not_found, "Not Found");
  }

  /// Whether `path` needs the API key.
  static bool is_protected(std::string_view path) {
    return path == "/api/chat/completions" || path == "/v1/chat/completions" ||
           path.substr(0, 11) == "/api/models" ||
           path.substr(0, 10) == "/v1/models";
  }

  bool authorized() {
    auto& key = state_.opts.api_key;
    if (key.empty()) return true;
    auto& req = parser_->get();
    return key_matches(req[http::field::authorization], key);
  }

  /// Finds the fault of this request: `x-sim-fault`, then
  /// `x-sim-fault-once` (first use of its key), then a random one. Returns
  /// false after answering 400 to a malformed fault header.
  bool pick_fault(fault& out, bool allow_random) {
    auto& req = parser_->get();
    std::string error;
    if (auto i = req.find("x-sim-fault"); i != req.end()) {
      if (!parse_fault(std::string_view{i->value().data(), i->value().size()},
                       out, error)) {
        send_error(http::status::bad_request, "x-sim-fault: " + error);
        return false;
      }
      if (out.stall_ms < 0) out.stall_ms = header_stall_ms;
      return true;
    }
    if (auto i = req.find("x-sim-fault-once"); i != req.end()) {
      if (!parse_fault(std::string_view{i->value().data(), i->value().size()},
                       out, error) ||
          out.key.empty()) {
        send_error(http::status::bad_request,
                   "x-sim-fault-once: " +
                       (error.empty() ? "needs key=K" : error));
        return false;
      }
      if (!state_.faults.take_once(out.key, out.times))
        out = fault{};
      else if (out.stall_ms < 0)
        out.stall_ms = header_stall_ms;
      return true;
    }
    if (allow_random && state_.opts.fail_rate > 0)
      out = state_.faults.draw(fnv1a(req.body()));
    return true;
  }

  /// Applies the faults that act before any response byte. Returns whether
  /// it handled the request.
  bool apply_early_fault(const fault& f) {
    switch (f.kind) {
    case fault_kind::status:
      send_fault_status(f);
      return true;
    case fault_kind::reset_before:
      reset_now();
      return true;
    case fault_kind::stall_first:
      stall(f.stall_ms);
      return true;
    default:
      return false;
    }
  }

  void on_models() {
    if (!authorized())
      return send_error(http::status::unauthorized,
                        "Invalid or missing API key");
    fault f;
    if (!pick_fault(f, false) || apply_early_fault(f)) return;
    send_json(http::status::ok, state_.models_json);
  }

  /// `GET /models/{id}`, as openai-python's `models.retrieve` asks it.
  void on_model(std::string_view id) {
    if (!authorized())
      return send_error(http::status::unauthorized,
                        "Invalid or missing API key");
    for (auto& m : served_models())
      if (m.id == id) return send_json(http::status::ok, wire::encode_model(m));
    send_error(http::status::not_found,
               "Model '" + std::string{id} + "' not found");
  }

  void on_chat() {
    flight_.emplace(state_.counters);
    if (!authorized())
      return send_error(http::status::unauthorized,
                        "Invalid or missing API key");
    auto& req = parser_->get();
    auto& body = req.body();
    fault f;
    if (!pick_fault(f, true) || apply_early_fault(f)) return;
    chat_request chat;
    if (auto err = wire::decode_request(body, chat))
      return send_error(http::status::unprocessable_entity, err.message);
    if (chat.messages.empty())
      return send_error(http::status::bad_request,
                        "messages must not be empty");
    if (!is_served_model(chat.model))
      return send_error(http::status::not_found,
                        "Model '" + chat.model + "' not found");
    auto chunks = int_header(req, "x-sim-chunks", max_chunks);
    auto ans = make_answer(chat, answer_hash(chat), chunks);
    if (chat.stream) return start_stream(chat, std::move(ans), f);
    // A completion that takes its time, like a real model's.
    if (auto ms = int_header(req, "x-sim-latency-ms", max_delay_ms); ms > 0) {
      delayed_.emplace(delayed_completion{std::move(chat), std::move(ans), f});
      watch_peer();
      timer_.expires_after(std::chrono::milliseconds(ms));
      return timer_.async_wait(
          beast::bind_front_handler(&session::on_latency, self()));
    }
    send_completion(chat, std::move(ans), f);
  }

  void on_latency(beast::error_code ec) {
    if (ec || closed_ || !delayed_) return;
    auto d = std::move(*delayed_);
    delayed_.reset();
    send_completion(d.chat, std::move(d.ans), d.injected);
  }

  // -- plain responses
  // ----------------------------------------------------------

  /// Makes a response with the headers every answer carries.
  http::response<http::string_body> make_response(http::status status,
                                                  std::string body) {
    http::response<http::string_body> res{status, version_};
    res.set(http::field::server, "maritaca-sim");
    res.set(http::field::content_type, "application/json");
    res.body() = std::move(body);
    return res;
  }

  void send_json(http::status status, std::string body) {
    send(make_response(status, std::move(body)));
  }

  void send_error(http::status status, std::string message,
                  bool keep_alive = true, bool openai_shape = false) {
    api_error err;
    err.message = std::move(message);
    if (openai_shape) {
      err.type = status == http::status::too_many_requests ? "rate_limit_error"
                                                           : "server_error";
      err.code = std::to_string(static_cast<int>(status));
    }
    auto res = make_response(
        status,
        wire::encode_error(err, openai_shape ? wire::error_shape::openai
                                             : wire::error_shape::detail));
    if (!keep_alive) keep_alive_ = false;
    send(std::move(res));
  }

  void send_method_not_allowed(const char* allow) {
    auto res = make_response(http::status::method_not_allowed,
                             "{\"detail\":\"Method Not Allowed\"}");
    res.set(http::field::allow, allow);
    send(std::move(res));
  }

  void send_fault_status(const fault& f) {
    api_error err;
    err.message = fault_message(f.status);
    if (f.openai_shape) {
      err.type = f.status == 429 ? "rate_limit_error" : "server_error";
      err.code = std::to_string(f.status);
    }
    auto res = make_response(
        static_cast<http::status>(f.status),
        wire::encode_error(err, f.openai_shape ? wire::error_shape::openai
                                               : wire::error_shape::detail));
    if (f.retry_after_s >= 0)
      res.set(http::field::retry_after, std::to_string(f.retry_after_s));
    if (f.retry_after_ms >= 0)
      res.set("retry-after-ms", std::to_string(f.retry_after_ms));
    if (f.should_retry >= 0)
      res.set("x-should-retry", f.should_retry ? "true" : "false");
    send(std::move(res));
  }

  void send(http::response<http::string_body>&& res) {
    res.keep_alive(keep_alive_);
    res.prepare_payload();
    // A HEAD answer has the fields of the GET answer, and no body.
    if (head_only_) res.body().clear();
    res_.emplace(std::move(res));
    lowest().expires_after(write_timeout);
    http::async_write(stream_, *res_,
                      beast::bind_front_handler(&session::on_write, self()));
  }

  void on_write(beast::error_code ec, std::size_t) {
    if (ec) return fail(ec, "write");
    res_.reset();
    flight_.reset();
    if (!keep_alive_) return close_graceful();
    next_request();
  }

  void send_completion(const chat_request& chat, answer ans, const fault& f) {
    materialize(ans);
    chat_completion out;
    out.id = ans.id;
    out.created = ans.created;
    out.model = chat.model;
    out.system_fingerprint = "maritaca-sim";
    completion_choice choice;
    choice.message.role = "assistant";
    if (ans.tool_calls.empty()) choice.message.content = std::move(ans.content);
    choice.message.tool_calls = std::move(ans.tool_calls);
    choice.finish_reason = ans.finish_reason;
    // `n` choices, all alike (deterministic), at most 8.
    auto n = std::clamp<int64_t>(chat.n.value_or(1), 1, 8);
    for (int64_t i = 0; i < n; ++i) {
      choice.index = i;
      out.choices.push_back(choice);
    }
    out.usage = ans.tokens;
    auto body = wire::encode_completion(out);
    switch (f.kind) {
    case fault_kind::bad_json:
      // Half of the JSON is never valid JSON.
      body.resize(body.size() / 2);
      break;
    case fault_kind::reset_mid:
    case fault_kind::stall_mid:
      return send_partial(std::move(body), f);
    default:
      break;
    }
    send_json(http::status::ok, std::move(body));
  }

  /// Sends the head (announcing all of `body`) and half of `body`, then
  /// resets or stalls as `f` says.
  void send_partial(std::string body, const fault& f) {
    auto res = make_response(http::status::ok, std::move(body));
    res.keep_alive(keep_alive_);
    res.prepare_payload();
    std::ostringstream head;
    head << res.base();
    out_ = head.str();
    out_.append(res.body(), 0, res.body().size() / 2);
    partial_fault_ = f;
    lowest().expires_after(write_timeout);
    net::async_write(
        stream_, net::buffer(out_),
        beast::bind_front_handler(&session::on_partial_written, self()));
  }

  void on_partial_written(beast::error_code ec, std::size_t) {
    if (ec) return fail(ec, "write");
    if (partial_fault_.kind == fault_kind::reset_mid) return reset_now();
    stall(partial_fault_.stall_ms);
  }

  // -- streams
  // ----------------------------------------------------------------------

  void start_stream(const chat_request& chat, answer ans, const fault& f) {
    auto& req = parser_->get();
    job_.emplace();
    auto& job = *job_;
    job.ans = std::move(ans);
    job.include_usage = chat.include_usage;
    job.delay_ms = state_.opts.token_delay_ms;
    if (auto d = int_header(req, "x-sim-token-delay-ms", max_delay_ms); d >= 0)
      job.delay_ms = d;
    job.injected = f;
    job.chunked = version_ >= 11;
    if (!job.chunked || f.kind == fault_kind::no_done ||
        f.kind == fault_kind::error_mid)
      keep_alive_ = false;
    if (!job.ans.tool_calls.empty()) {
      job.tool_pieces = split_tool_calls(job.ans.tool_calls);
      job.pieces = static_cast<int64_t>(job.tool_pieces.size());
    } else if (job.ans.synthetic_words >= 0) {
      job.pieces = job.ans.synthetic_words;
    } else {
      job.pieces = count_words(job.ans.content);
    }
    job.fault_at = job.pieces / 2;
    job.chunk.id = job.ans.id;
    job.chunk.created = job.ans.created;
    job.chunk.model = chat.model;
    job.chunk.choices.resize(1);
    make_piece_template(job);
    head_.emplace(http::status::ok, version_);
    head_->set(http::field::server, "maritaca-sim");
    head_->set(http::field::content_type, "text/event-stream");
    head_->set(http::field::cache_control, "no-cache");
    head_->keep_alive(keep_alive_);
    if (job.chunked) head_->chunked(true);
    head_sr_.emplace(*head_);
    lowest().expires_after(write_timeout);
    http::async_write_header(
        stream_, *head_sr_,
        beast::bind_front_handler(&session::on_head_written, self()));
  }

  void on_head_written(beast::error_code ec, std::size_t) {
    if (ec) return fail(ec, "write head");
    head_sr_.reset();
    head_.reset();
    watch_peer();
    arm_watchdog();
    write_event();
  }

  /// Drops the connection when a stream write makes no progress for
  /// `write_timeout` (a client that stopped reading).
  void arm_watchdog() {
    writes_seen_ = writes_done_;
    watchdog_.expires_after(write_timeout);
    watchdog_.async_wait(
        beast::bind_front_handler(&session::on_watchdog, self()));
  }

  void on_watchdog(beast::error_code ec) {
    if (ec || closed_ || !job_) return;
    if (writing_ && writes_done_ == writes_seen_)
      return fail(beast::error::timeout, "stream write");
    arm_watchdog();
  }

  /// Appends event `payload` (a JSON text) to `out_`, framed.
  void append_event(std::string_view payload) {
    append_framed(out_, sse::format_data(payload), job_->chunked);
  }

  /// Writes the next event of the stream (or applies its fault).
  void write_event() {
    if (closed_) return;
    auto& job = *job_;
    auto& choice = job.chunk.choices.front();
    out_.clear();
    bool mid_fault_due =
        is_mid_fault(job.injected) && !job.fault_fired &&
        (job.next == stream_job::step::finish ||
         (job.next == stream_job::step::body && job.piece >= job.fault_at));
    if (mid_fault_due) {
      job.fault_fired = true;
      switch (job.injected.kind) {
      case fault_kind::reset_mid:
        return reset_now();
      case fault_kind::stall_mid:
        return stall(job.injected.stall_ms);
      case fault_kind::bad_json:
        // A truncated chunk: the closing brace is missing.
        append_event("{\"id\":\"" + job.ans.id +
                     "\",\"object\":\"chat.completion.chunk\","
                     "\"choices\":[{\"index\":0,\"delta\":{\"content\":"
                     "\"broken\"}}]");
        return write_out();
      case fault_kind::error_mid: {
        api_error err;
        err.message = "simulated error in the middle of the stream";
        err.type = "server_error";
        err.code = "internal_error";
        append_event(wire::encode_error(err, wire::error_shape::openai));
        if (job.chunked) out_.append("0\r\n\r\n");
        job.next = stream_job::step::closed;
        return write_out();
      }
      default:
        break;
      }
    }
    switch (job.next) {
    case stream_job::step::role:
      choice.role = "assistant";
      append_event(wire::encode_chunk(job.chunk));
      choice.role.clear();
      job.next =
          job.pieces > 0 ? stream_job::step::body : stream_job::step::finish;
      break;
    case stream_job::step::body:
      fill_body_piece(job, choice);
      if (job.tool_pieces.empty() && !job.piece_prefix.empty())
        append_text_event(job, choice.content);
      else
        append_event(wire::encode_chunk(job.chunk));
      choice.content.clear();
      choice.tool_calls.clear();
      if (++job.piece >= job.pieces) job.next = stream_job::step::finish;
      break;
    case stream_job::step::finish:
      choice.finish_reason = job.ans.finish_reason;
      append_event(wire::encode_chunk(job.chunk));
      job.next =
          job.include_usage ? stream_job::step::usage : stream_job::step::done;
      break;
    case stream_job::step::usage:
      job.chunk.choices.clear();
      job.chunk.usage = job.ans.tokens;
      append_event(wire::encode_chunk(job.chunk));
      job.next = stream_job::step::done;
      break;
    case stream_job::step::done:
      if (job.injected.kind != fault_kind::no_done)
        append_framed(out_, sse::format_data("[DONE]"), job.chunked);
      if (job.chunked) out_.append("0\r\n\r\n");
      job.next = stream_job::step::closed;
      break;
    case stream_job::step::closed:
      return;
    }
    write_out();
  }

  /// Splits the encoded event of a text piece around its content, so that
  /// each piece costs one string escape instead of a whole encode. Leaves
  /// the template empty (full encoding) if the split is ambiguous.
  static void make_piece_template(stream_job& job) {
    static constexpr std::string_view sentinel = "@maritaca-sim-piece@";
    auto& choice = job.chunk.choices.front();
    choice.content = sentinel;
    auto event = sse::format_data(wire::encode_chunk(job.chunk));
    choice.content.clear();
    std::string quoted;
    wire::append_json_string(quoted, sentinel);
    auto at = event.find(quoted);
    if (at == std::string::npos ||
        event.find(quoted, at + 1) != std::string::npos)
      return;
    job.piece_prefix = event.substr(0, at);
    job.piece_suffix = event.substr(at + quoted.size());
  }

  /// Appends the event of text piece `content` to `out_`, framed: the same
  /// bytes as `format_data(encode_chunk(...))` (JSON escapes line ends, so
  /// the event stays one data line).
  void append_text_event(stream_job& job, std::string_view content) {
    escaped_.clear();
    wire::append_json_string(escaped_, content);
    auto size =
        job.piece_prefix.size() + escaped_.size() + job.piece_suffix.size();
    if (job.chunked) {
      char digits[20];
      auto [end, ec] = std::to_chars(digits, digits + sizeof(digits), size, 16);
      out_.append(digits, end);
      out_.append("\r\n");
    }
    out_.append(job.piece_prefix);
    out_.append(escaped_);
    out_.append(job.piece_suffix);
    if (job.chunked) out_.append("\r\n");
  }

  /// Sets the delta of the next body piece: a word of the text (with its
  /// trailing space) or a piece of a tool call.
  void fill_body_piece(stream_job& job, chunk_choice& choice) {
    if (!job.tool_pieces.empty()) {
      auto& p = job.tool_pieces[static_cast<std::size_t>(job.piece)];
      auto& call = job.ans.tool_calls[p.call];
      tool_call_delta delta;
      delta.index = static_cast<int64_t>(p.call);
      if (p.header) {
        delta.id = call.id;
        delta.type = "function";
        delta.name = call.name;
      } else {
        delta.arguments = call.arguments.substr(p.offset, p.length);
      }
      choice.tool_calls.push_back(std::move(delta));
    } else if (job.ans.synthetic_words >= 0) {
      append_synthetic_piece(choice.content, job.piece, job.pieces);
    } else {
      std::string_view text = job.ans.content;
      auto end = next_piece(text, job.pos);
      choice.content.assign(text.substr(job.pos, end - job.pos));
      job.pos = end;
    }
  }

  /// Writes `out_`. Stream writes carry no per-write timeout (arming a
  /// timer per chunk costs more than the write); the watchdog bounds them.
  void write_out() {
    writing_ = true;
    net::async_write(
        stream_, net::buffer(out_),
        beast::bind_front_handler(&session::on_event_written, self()));
  }

  void on_event_written(beast::error_code ec, std::size_t) {
    writing_ = false;
    ++writes_done_;
    if (ec) return fail(ec, "write event");
    if (closed_) return;
    auto& job = *job_;
    if (job.next == stream_job::step::closed) {
      watchdog_.cancel();
      job_.reset();
      flight_.reset();
      if (!keep_alive_) return close_graceful();
      return next_request();
    }
    // The delay separates tokens: it comes before every body piece.
    if (job.delay_ms > 0 && job.next == stream_job::step::body) {
      timer_.expires_after(std::chrono::milliseconds(job.delay_ms));
      return timer_.async_wait(
          beast::bind_front_handler(&session::on_delay, self()));
    }
    write_event();
  }

  void on_delay(beast::error_code ec) {
    if (ec || closed_) return;
    write_event();
  }

  // -- faults and endings
  // -------------------------------------------------------

  /// Answers nothing for up to `ms`, then closes; closes earlier when the
  /// client leaves.
  void stall(int64_t ms) {
    watch_peer();
    timer_.expires_after(std::chrono::milliseconds(ms));
    timer_.async_wait(
        beast::bind_front_handler(&session::on_stall_end, self()));
  }

  void on_stall_end(beast::error_code ec) {
    if (ec || closed_) return;
    close_now();
  }

  /// Marks the connection closed: releases the request in flight and stops
  /// the timers. Returns false when it was closed already.
  bool mark_closed() {
    if (closed_) return false;
    closed_ = true;
    flight_.reset();
    timer_.cancel();
    watchdog_.cancel();
    return true;
  }

  /// Aborts the connection with RST (SO_LINGER 0), no further byte.
  void reset_now() {
    if (!mark_closed()) return;
    beast::error_code ec;
    lowest().socket().set_option(net::socket_base::linger(true, 0), ec);
    lowest().close();
  }

  /// Closes the connection at once (FIN, or RST when data is unread).
  void close_now() {
    if (!mark_closed()) return;
    beast::error_code ec;
    lowest().socket().shutdown(tcp::socket::shutdown_both, ec);
    lowest().close();
  }

  /// Closes after a complete response: TLS close_notify, or FIN followed
  /// by reading until the peer closes (so it gets all our bytes, not a RST).
  void close_graceful() {
    if (closed_) return;
    if (watching_) return close_now();
    if constexpr (is_tls) {
      lowest().expires_after(linger_timeout);
      stream_.async_shutdown(
          beast::bind_front_handler(&session::on_shutdown, self()));
    } else {
      beast::error_code ec;
      lowest().socket().shutdown(tcp::socket::shutdown_send, ec);
      if (ec) return close_now();
      lowest().expires_after(linger_timeout);
      drain();
    }
  }

  void on_shutdown(beast::error_code) { close_now(); }

  void drain() {
    stream_.async_read_some(
        net::buffer(drain_buf_),
        beast::bind_front_handler(&session::on_drain, self()));
  }

  void on_drain(beast::error_code ec, std::size_t) {
    if (ec) return close_now();
    drain();
  }

  /// The one failure path: logs unusual errors when verbose, then closes.
  void fail(beast::error_code ec, const char* what) {
    if (closed_) return;
    if (state_.opts.verbose && !is_ordinary(ec))
      std::fprintf(stderr, "maritaca-sim: %s: %s\n", what,
                   ec.message().c_str());
    close_now();
  }

  Stream stream_;
  shared_state& state_;
  /// Chunk delays, stalls and idle waits (one at a time).
  net::steady_timer timer_;
  /// Bounds stream writes (see `arm_watchdog`).
  net::steady_timer watchdog_;
  /// Stream writes completed, and as seen by the last watchdog check.
  uint64_t writes_done_ = 0;
  uint64_t writes_seen_ = 0;
  bool writing_ = false;
  beast::flat_buffer buffer_;
  std::optional<request_parser> parser_;
  std::optional<http::response<http::string_body>> res_;
  std::optional<http::response<http::empty_body>> head_;
  std::optional<http::response_serializer<http::empty_body>> head_sr_;
  std::optional<stream_job> job_;
  /// The completion waiting out its latency.
  std::optional<delayed_completion> delayed_;
  /// Holds the current chat request in flight; released exactly once.
  std::optional<flight_guard> flight_;
  /// Bytes of the event (or partial response) being written.
  std::string out_;
  /// Scratch space of `append_text_event`.
  std::string escaped_;
  fault partial_fault_;
  std::array<char, 512> drain_buf_;
  unsigned version_ = 11;
  bool keep_alive_ = true;
  /// The request is HEAD: its answer goes without a body.
  bool head_only_ = false;
  bool closed_ = false;
  /// A watch read is pending.
  bool watching_ = false;
  /// The response is done; the pending watch read starts the next request.
  bool resume_after_watch_ = false;
};

} // namespace

// -- server
// ---------------------------------------------------------------------

struct server::impl {
  explicit impl(options opts) : state(std::move(opts)) {
    // nop
  }

  /// Serves one accepted connection.
  void on_socket(tcp::socket socket) {
    state.counters.connections.fetch_add(1, std::memory_order_relaxed);
    if (tls)
      std::make_shared<session<beast::ssl_stream<beast::tcp_stream>>>(
          std::move(socket), *tls, state)
          ->run();
    else
      std::make_shared<session<beast::tcp_stream>>(std::move(socket), state)
          ->run();
  }

  // Destroyed in reverse order: the io_context (and with it every session)
  // goes before the state and the TLS context the sessions refer to.
  shared_state state;
  std::optional<ssl::context> tls;
  net::io_context ioc;
  apps::listener acceptor{ioc, "maritaca-sim", state.opts.verbose,
                          [this](tcp::socket s) { on_socket(std::move(s)); }};
  apps::io_threads threads;
  std::string url;
  bool stopped = false;
};

namespace {

options embedded_options() {
  options opts;
  opts.threads = 1;
  return opts;
}

} // namespace

server::server() : server(embedded_options()) {
  // nop
}

server::server(options opts) : impl_(std::make_unique<impl>(std::move(opts))) {
  // nop
}

server::~server() {
  stop();
}

std::string server::start() {
  auto& d = *impl_;
  auto& opts = d.state.opts;
  if (!opts.tls_cert.empty()) {
    d.tls.emplace(ssl::context::tls_server);
    d.tls->set_options(ssl::context::default_workarounds |
                       ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                       ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    beast::error_code ec;
    d.tls->use_certificate_chain_file(opts.tls_cert, ec);
    if (ec)
      throw std::runtime_error("cannot load TLS certificate " + opts.tls_cert +
                               ": " + ec.message());
    d.tls->use_private_key_file(opts.tls_key, ssl::context::pem, ec);
    if (ec)
      throw std::runtime_error("cannot load TLS key " + opts.tls_key + ": " +
                               ec.message());
  }
  d.acceptor.listen(opts.host, opts.port);
  d.url = std::string{d.tls ? "https" : "http"} + "://" +
          d.acceptor.client_address() + "/api";
  d.acceptor.start();
  d.threads.start(d.ioc,
                  opts.threads > 0
                      ? opts.threads
                      : std::max(1u, std::thread::hardware_concurrency()));
  return d.url;
}

const std::string& server::url() const noexcept {
  return impl_->url;
}

void server::stop() {
  auto& d = *impl_;
  if (d.stopped) return;
  d.stopped = true;
  d.threads.stop(d.ioc);
  d.acceptor.close();
}

} // namespace maritaca::sim
