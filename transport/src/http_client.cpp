/// @file
/// The HTTP/1.1 client: Boost.Beast over Asio (TCP and TLS), a keep-alive
/// connection pool per origin, deadlines and back-pressure.
///
/// Structure: `client_core` owns the io_context, its threads, the pool and
/// the table of exchanges (all shared state behind one mutex). A
/// `connection` owns a socket and a strand; it runs one exchange at a time
/// and touches its own members only from its strand. An `exchange` is one
/// request with its observer; its pool-related fields are guarded by the
/// core's mutex, and its observer is only called from the strand of the
/// connection running it (or, before it got one, from a single posted
/// handler), so callbacks of one exchange never overlap.

#include "maritaca/transport/http_client.hpp"

#include "maritaca/transport/bounded_parser.hpp"
#include "maritaca/transport/poll_backoff.hpp"

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <deque>
#include <memory_resource>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

namespace maritaca::transport {

observer::~observer() = default;

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using std::chrono::milliseconds;
using clock_type = std::chrono::steady_clock;
using strand_type = asio::strand<asio::io_context::executor_type>;

constexpr std::string_view default_user_agent = "maritaca-cpp/0.1";

/// Bytes handed to the parser per body read.
constexpr std::size_t body_piece_bytes = 16u * 1024;

/// Capacity of a non-stream body buffer a connection keeps between
/// exchanges (larger ones are given back).
constexpr std::size_t kept_body_capacity = 64u * 1024;

/// Allocator of a response head's fields (see `connection::fields_arena_`).
using fields_allocator = std::pmr::polymorphic_allocator<char>;

/// Capacity of a connection's read buffer. Beast reads at most the free
/// capacity of a flat_buffer (at least 512 bytes), so an unreserved buffer
/// reads the socket in 512-byte steps.
constexpr std::size_t read_buffer_bytes = 64u * 1024;

/// Bytes the read buffer may hold beyond the larger of its capacity and
/// the head limit: room for a chunk-size line (with extensions) or a
/// trailer. Beast 1.81's parser keeps those in the buffer until their line
/// ends, bounded by nothing else.
constexpr std::size_t read_slack_bytes = 4096;

/// How long the destructor waits for running exchanges to wind down before
/// stopping the io_context regardless.
constexpr milliseconds shutdown_grace{2'000};

char lower(char c) noexcept {
  return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
}

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

/// RFC 9110 token characters (header names, methods).
bool is_token(std::string_view s) noexcept {
  if (s.empty()) return false;
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u)) continue;
    if (std::string_view{"!#$%&'*+-.^_`|~"}.find(c) == std::string_view::npos)
      return false;
  }
  return true;
}

bool is_safe_value(std::string_view s) noexcept {
  return s.find_first_of(std::string_view{"\r\n\0", 3}) ==
         std::string_view::npos;
}

bool is_ip_literal(const std::string& host) {
  error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

std::string to_ms_text(milliseconds d) {
  return std::to_string(d.count()) + " ms";
}

/// The bound of a connection's read buffer.
std::size_t read_buffer_limit(const client_config& cfg) {
  return std::max(read_buffer_bytes, cfg.max_header_bytes) + read_slack_bytes;
}

/// Whether `ec` reports malformed HTTP (as opposed to a broken connection).
bool is_http_syntax_error(const error_code& ec) {
  static const auto& category =
      http::make_error_code(http::error::bad_version).category();
  return ec.category() == category && ec != http::error::end_of_stream &&
         ec != http::error::partial_message;
}

/// Where the proxy of `client_config::proxy` listens.
struct proxy_endpoint {
  std::string host;
  uint16_t port = 80;
  /// `Proxy-Authorization` value ("Basic ..."), empty without credentials.
  std::string authorization;
};

/// Standard base64 of `in` (RFC 4648, with padding).
std::string base64(std::string_view in) {
  static constexpr char digits[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  for (std::size_t i = 0; i < in.size(); i += 3) {
    auto n = in.size() - i;
    uint32_t v = static_cast<uint8_t>(in[i]) << 16;
    if (n > 1) v |= static_cast<uint8_t>(in[i + 1]) << 8;
    if (n > 2) v |= static_cast<uint8_t>(in[i + 2]);
    out += digits[(v >> 18) & 63];
    out += digits[(v >> 12) & 63];
    out += n > 1 ? digits[(v >> 6) & 63] : '=';
    out += n > 2 ? digits[v & 63] : '=';
  }
  return out;
}

/// `%XX` escapes of a URL's user info decoded; false on a bad escape.
bool percent_decode(std::string_view in, std::string& out) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  out.clear();
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    if (i + 2 >= in.size() || hex(in[i + 1]) < 0 || hex(in[i + 2]) < 0)
      return false;
    out += static_cast<char>(hex(in[i + 1]) * 16 + hex(in[i + 2]));
    i += 2;
  }
  return true;
}

/// Parses `http://[user:password@]host[:port][/]` into `out`. The failure
/// never repeats the user info.
failure parse_proxy(std::string_view url, proxy_endpoint& out) {
  auto bad = [](std::string why) {
    return make_failure(errc::invalid_argument, "proxy: " + std::move(why));
  };
  constexpr std::string_view scheme = "http://";
  if (url.substr(0, scheme.size()) != scheme)
    return bad("only http:// proxies are supported");
  url.remove_prefix(scheme.size());
  if (auto at = url.rfind('@'); at != std::string_view::npos) {
    std::string decoded;
    if (!percent_decode(url.substr(0, at), decoded) || !is_safe_value(decoded))
      return bad("malformed user info");
    out.authorization = "Basic " + base64(decoded);
    url.remove_prefix(at + 1);
  }
  if (!url.empty() && url.back() == '/') url.remove_suffix(1);
  // What is left is an authority: parse it as the origin of a URL.
  url_parts parts;
  if (url.empty() || url.find_first_of("/?#") != std::string_view::npos ||
      parse_url("http://" + std::string{url} + "/", parts))
    return bad("malformed host or port");
  out.host = std::move(parts.host);
  out.port = parts.port;
  return {};
}

/// Returns `no_proxy` (see client_config) as `bypasses_proxy` reads it:
/// lower case, without a leading dot, without empty entries.
std::vector<std::string> normalize_no_proxy(std::vector<std::string> entries) {
  std::vector<std::string> out;
  for (auto& e : entries) {
    for (auto& c : e)
      c = lower(c);
    if (!e.empty() && e.front() == '.') e.erase(0, 1);
    if (!e.empty()) out.push_back(std::move(e));
  }
  return out;
}

/// Whether `host` (lower case, as parse_url leaves it) is reached directly
/// per `no_proxy` (normalized by normalize_no_proxy): "*", the host itself
/// or a domain it is in.
bool bypasses_proxy(std::string_view host,
                    const std::vector<std::string>& no_proxy) {
  for (auto& e : no_proxy) {
    if (e == "*" || host == e) return true;
    if (host.size() > e.size() && host.ends_with(e) &&
        host[host.size() - e.size() - 1] == '.')
      return true;
  }
  return false;
}

class connection;

/// One request and its observer.
struct exchange {
  exchange_id id = 0;
  url_parts url;
  /// "scheme://host:port", the pool key.
  std::string origin;
  /// The proxy to tunnel through (null: direct).
  const proxy_endpoint* proxy = nullptr;
  std::shared_ptr<observer> obs;
  /// The request as sent (head and body), formatted once by `prepare`:
  /// writing it is one buffer, not Beast's serializer over its fields.
  std::string wire;
  /// A HEAD request: the response has no body.
  bool head = false;
  bool stream = false;
  timeouts limits;
  /// When the whole exchange must have ended (max: no bound); set at start.
  clock_type::time_point total_deadline = clock_type::time_point::max();
  /// Only for an exchange that waits for a connection at start (a running
  /// one's connection enforces `total_deadline` with its step timer);
  /// cancelled when the exchange ends.
  std::optional<asio::steady_timer> total_timer;

  // -- guarded by client_core::mtx_ ---------------------------------------
  enum class phase { queued, running, done } state = phase::queued;
  std::shared_ptr<connection> conn;
  /// The exchange took a pooled (kept-alive) connection.
  bool reused = false;
  /// The exchange was moved to a fresh connection once already.
  bool retried = false;
  /// Set by cancel / total deadline / shutdown; reported instead of
  /// whatever the connection would report.
  std::optional<failure> abort;

  // -- touched only from the strand of the connection running it ----------
  bool response_started = false;

  /// Becomes true right before the terminal callback.
  std::atomic<bool> reported{false};

  void report_done() {
    if (!reported.exchange(true)) obs->on_done();
  }

  void report_failure(const failure& what) {
    if (!reported.exchange(true)) obs->on_failure(what);
  }
};

using exchange_ptr = std::shared_ptr<exchange>;

/// The failure of an exchange that outlived `timeouts::total`.
failure total_timeout(const exchange& ex) {
  return make_timeout(deadline::total, "the exchange took longer than " +
                                           to_ms_text(ex.limits.total) +
                                           " (total deadline)");
}

using connection_ptr = std::shared_ptr<connection>;

/// Connections and waiting exchanges of one origin.
struct origin_pool {
  /// Kept-alive connections, the most recently used at the back.
  std::vector<connection_ptr> idle;
  /// Open connections (connecting, busy or idle).
  std::size_t open = 0;
  /// Exchanges waiting for a connection, FIFO.
  std::deque<exchange_ptr> waiting;
};

class client_core;

/// A timer that fires no later than a deadline kept elsewhere and is
/// re-armed only when its pending wait would end too late: deadlines that
/// move forward all the time (a connection's steps) cost no cancelled wait
/// and no `timerfd_settime` each. Whoever it fires for checks its deadline
/// and waits again when it fired early. Used on one strand only.
class lazy_timer {
public:
  explicit lazy_timer(strand_type& strand) : timer_(strand) {}

  /// Makes the timer fire by `when` (nothing to do when a pending wait
  /// ends by then). `on_fire` runs when that wait ends, unless it was
  /// cancelled or replaced; it must keep the timer's owner alive.
  template <class F>
  void fire_by(clock_type::time_point when, F on_fire) {
    if (when >= at_) return;
    at_ = when;
    timer_.expires_at(when);
    timer_.async_wait([this, when, f = std::move(on_fire)](error_code ec) {
      if (ec || at_ != when) return;
      at_ = clock_type::time_point::max();
      f();
    });
  }

  /// Cancels the pending wait.
  void cancel() {
    timer_.cancel();
    at_ = clock_type::time_point::max();
  }

private:
  asio::steady_timer timer_;
  /// When the pending wait ends (max: none pending).
  clock_type::time_point at_ = clock_type::time_point::max();
};

/// One TCP (or TLS) connection. Runs one exchange at a time; every member
/// is used on `strand_` only, except for the fields marked otherwise.
class connection : public std::enable_shared_from_this<connection> {
public:
  connection(client_core& core, const exchange& ex);

  strand_type& strand() noexcept { return strand_; }

  const std::string& origin() const noexcept { return origin_; }

  /// Runs `ex` on this connection.
  void start(exchange_ptr ex);

  /// Aborts `ex` if it still runs here (cancel, total deadline, shutdown).
  void abort(const exchange_ptr& ex);

  /// Continues reading after the observer paused.
  void resume(const exchange_ptr& ex);

  /// Watches the pooled, idle connection for the server closing it and for
  /// the keep-alive expiry.
  void watch_idle(uint64_t gen, milliseconds keep_alive);

  /// Closes the socket; outstanding operations end with an error.
  void close();

  // -- guarded by client_core::mtx_ ---------------------------------------
  /// Changes each time the connection enters the idle list.
  uint64_t idle_gen = 0;
  /// When the connection entered the idle list.
  clock_type::time_point idle_since;

private:
  enum class step {
    resolve,
    connect,
    tunnel,
    handshake,
    write,
    read_head,
    read_body
  };

  beast::tcp_stream& tcp() {
    return tls_ ? beast::get_lowest_layer(*tls_) : *plain_;
  }

  /// Calls `f` with the stream to talk HTTP over (TLS or plain TCP).
  template <class F>
  void with_stream(F&& f) {
    if (tls_)
      f(*tls_);
    else
      f(*plain_);
  }

  void do_resolve();
  void on_resolve(error_code ec, tcp::resolver::results_type results);
  void on_connect(error_code ec, tcp::endpoint);
  /// Asks the proxy for a tunnel to the origin (`CONNECT host:port`).
  void do_tunnel();
  void on_tunnel_write(error_code ec, std::size_t);
  void on_tunnel(error_code ec, std::size_t);
  /// The connection reaches the origin: TLS handshake, or the request.
  void start_session();
  void on_handshake(error_code ec);
  void do_write();
  void on_write(error_code ec, std::size_t);
  void on_read_header(error_code ec, std::size_t);
  void do_read_body();
  void on_read_body(error_code ec, std::size_t);
  void on_body_complete();

  /// Sets the step deadline `which` (connect, first_byte or idle).
  void arm_step(deadline which, milliseconds after);
  /// Clears the step deadline (the timer may stay armed; see lazy_timer).
  void disarm_step();
  /// Makes the step timer fire by `at`.
  void wait_step(clock_type::time_point at);
  /// The step timer fired: a timeout if a deadline passed, else wait on.
  void on_step_timer();
  /// The earlier of the step deadline and the exchange's total deadline.
  clock_type::time_point next_deadline() const noexcept;
  void on_step_timeout();
  /// Makes the idle timer fire by `at` (see watch_idle).
  void wait_idle(clock_type::time_point at);

  /// Maps an I/O error of the current step to a failure and ends the
  /// exchange (or retries it on a fresh connection).
  void fail(error_code ec, std::string_view what);
  failure tls_failure(const error_code& ec);

  /// Ends the current exchange with `what`; the connection is closed.
  void finish_failure(failure what);
  /// Ends the current exchange successfully; the connection goes back to
  /// the pool when the response allows it.
  void finish_success();

  client_core& core_;
  strand_type strand_;
  std::string host_;
  uint16_t port_;
  std::string origin_;
  /// The proxy this connection tunnels through (null: direct).
  const proxy_endpoint* proxy_;
  /// The `CONNECT` request, then the proxy's answer to it.
  std::string tunnel_request_;
  std::optional<bounded_parser<false, http::empty_body>> tunnel_parser_;
  std::optional<beast::tcp_stream> plain_;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls_;
  tcp::resolver resolver_;
  // Deadlines live in variables; their timers are re-armed lazily.
  lazy_timer step_timer_;
  lazy_timer idle_timer_;
  /// The current step's deadline (max: none).
  clock_type::time_point step_deadline_ = clock_type::time_point::max();
  /// The end of the keep-alive period while idle in the pool (max: busy).
  clock_type::time_point idle_deadline_ = clock_type::time_point::max();
  /// The pool generation of the current idle period.
  uint64_t idle_gen_ = 0;
  deadline step_which_ = deadline::none;
  milliseconds step_after_{0};
  step step_ = step::resolve;
  bool connected_ = false;
  bool paused_ = false;
  /// Bytes without progress arrived since the idle deadline was armed.
  bool idle_bytes_ = false;
  /// Why the peer certificate was refused (set by the verify callback).
  std::string verify_error_;
  /// Bounded (see read_buffer_limit): a chunk line or trailer that never
  /// ends fails the read with buffer_overflow instead of growing it.
  beast::flat_buffer buffer_;
  /// Storage of the response head's fields: one arena per connection,
  /// rewound for every response, instead of an allocation per field.
  alignas(std::max_align_t) std::array<std::byte, 2048> fields_buffer_;
  std::pmr::monotonic_buffer_resource fields_arena_{fields_buffer_.data(),
                                                    fields_buffer_.size()};
  std::optional<bounded_parser<false, http::buffer_body, fields_allocator>>
      parser_;
  std::array<char, body_piece_bytes> piece_;
  /// The body of a non-stream exchange.
  std::string collected_;
  /// The exchange running now (null between exchanges and once failed).
  exchange_ptr current_;
  /// The last exchange started here: keeps its request alive for a write
  /// operation that completes after the exchange ended.
  exchange_ptr held_;
};

/// Runs `fn(*conn)` on the strand of `conn`. The reference travels with
/// the handler, so a connection is always destroyed by an I/O thread, never
/// by the thread asking for the work.
template <class F>
void on_strand(connection_ptr conn, F fn) {
  auto& strand = conn->strand();
  asio::post(strand, [conn = std::move(conn), fn = std::move(fn)]() mutable {
    fn(*conn);
  });
}

/// The shared state behind `http_client`.
class client_core {
public:
  explicit client_core(client_config cfg);
  ~client_core();

  exchange_id start(request req, std::shared_ptr<observer> obs);
  void cancel(exchange_id id);
  void resume(exchange_id id);
  pool_stats stats() const;

  const client_config& config() const noexcept { return cfg_; }
  asio::io_context& io() noexcept { return ioc_; }
  /// The TLS context, with its trust store loaded on first use.
  ssl::context& tls_context();

  // -- called by connections from their strand ----------------------------

  void count_opened() noexcept { ++opened_; }

  /// Aborts `ex` with `what` (if it has not ended).
  void abort(const exchange_ptr& ex, failure what);

  /// Updates the peak of open connections after one more was counted
  /// (called with `mtx_` held).
  void note_open_locked();

  /// The abort failure of `ex`, if any.
  std::optional<failure> pending_abort(const exchange& ex) const;

  /// Marks `ex` done; returns false when it already was. For failures, an
  /// abort failure set meanwhile replaces `*what`.
  bool mark_done(exchange& ex, failure* what);

  /// Gives `conn`, whose exchange just ended, back to the pool (or closes
  /// it) and starts the next waiting exchange.
  void release(const connection_ptr& conn, bool reusable);

  /// Moves `ex` from the broken pooled connection `old` to a fresh one.
  /// Returns false when that is not allowed.
  bool retry_on_fresh(const exchange_ptr& ex, const connection_ptr& old);

  /// Drops `conn` from the idle list if it is still there as generation
  /// `gen` (server closed it, or keep-alive expired).
  void drop_idle(const connection_ptr& conn, uint64_t gen);

private:
  /// The loop of each I/O thread: runs the I/O context until it stops.
  void run_io();

  /// Records the number of running exchanges for `run_io` (called with
  /// `mtx_` held, after `exchanges_` changed).
  void note_running_locked() noexcept {
    running_.store(exchanges_.size(), std::memory_order_relaxed);
  }

  /// Validates `req` and fills `ex`; returns an invalid_argument failure.
  failure prepare(request& req, exchange& ex) const;

  /// Gives `ex` a connection (pooled or new) or queues it. Returns the
  /// connection to start `ex` on. Requires mtx_ held.
  connection_ptr assign_locked(const exchange_ptr& ex,
                               std::vector<connection_ptr>& to_close);

  client_config cfg_;
  /// `cfg_.proxy` parsed (empty: direct), or why it cannot be used.
  std::optional<proxy_endpoint> proxy_;
  failure proxy_error_;
  /// `cfg_.no_proxy` normalized once (see normalize_no_proxy).
  std::vector<std::string> no_proxy_;
  ssl::context tls_ctx_;
  /// Loads the trust store (system CAs, `ca_file`) once, on the first TLS
  /// connection: reading the system bundle costs ~100 ms of CPU, which
  /// plain-HTTP clients never need to pay.
  std::once_flag trust_loaded_;
  asio::io_context ioc_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>>
      work_;
  std::vector<std::thread> threads_;
  std::atomic<exchange_id> next_id_{1};
  std::atomic<uint64_t> opened_{0};
  std::atomic<uint64_t> reused_{0};
  /// The most connections open at once, all origins together.
  std::size_t max_open_ = 0;

  mutable std::mutex mtx_;
  bool stopping_ = false;
  uint64_t next_idle_gen_ = 0;
  std::unordered_map<std::string, origin_pool> pools_;
  std::unordered_map<exchange_id, exchange_ptr> exchanges_;
  /// `exchanges_.size()`, readable without `mtx_`.
  std::atomic<std::size_t> running_{0};
};

// -- connection ---------------------------------------------------------------

connection::connection(client_core& core, const exchange& ex)
    : core_(core), strand_(asio::make_strand(core.io())), host_(ex.url.host),
      port_(ex.url.port), origin_(ex.origin), proxy_(ex.proxy),
      resolver_(strand_), step_timer_(strand_), idle_timer_(strand_),
      buffer_(read_buffer_limit(core.config())) {
  buffer_.reserve(read_buffer_bytes);
  if (ex.url.scheme == "https")
    tls_.emplace(strand_, core.tls_context());
  else
    plain_.emplace(strand_);
}

void connection::start(exchange_ptr ex) {
  current_ = std::move(ex);
  held_ = current_;
  paused_ = false;
  collected_.clear();
  // Stop watching the idle socket (see watch_idle); the idle timer finds
  // the connection busy when it fires.
  idle_deadline_ = clock_type::time_point::max();
  if (connected_) {
    error_code ignored;
    tcp().socket().cancel(ignored);
  }
  if (auto what = core_.pending_abort(*current_))
    return finish_failure(std::move(*what));
  // The step timer also watches the exchange's total deadline.
  wait_step(current_->total_deadline);
  if (!connected_) return do_resolve();
  do_write();
}

void connection::abort(const exchange_ptr& ex) {
  if (current_ != ex) return;
  if (auto what = core_.pending_abort(*ex)) finish_failure(std::move(*what));
}

void connection::resume(const exchange_ptr& ex) {
  if (current_ != ex || !paused_) return;
  paused_ = false;
  do_read_body();
}

void connection::watch_idle(uint64_t gen, milliseconds keep_alive) {
  auto self = shared_from_this();
  idle_gen_ = gen;
  idle_deadline_ = clock_type::now() + keep_alive;
  wait_idle(idle_deadline_);
  // A kept-alive connection has nothing to say until we send a request:
  // readability means the server closed it (or misbehaves).
  tcp().socket().async_wait(tcp::socket::wait_read, [self, gen](error_code ec) {
    if (ec != asio::error::operation_aborted) self->core_.drop_idle(self, gen);
  });
}

void connection::wait_idle(clock_type::time_point at) {
  idle_timer_.fire_by(at, [self = shared_from_this()] {
    auto deadline = self->idle_deadline_;
    if (deadline == clock_type::time_point::max()) return; // busy
    if (clock_type::now() >= deadline)
      self->core_.drop_idle(self, self->idle_gen_);
    else
      self->wait_idle(deadline);
  });
}

void connection::close() {
  error_code ignored;
  resolver_.cancel();
  step_timer_.cancel();
  idle_timer_.cancel();
  step_deadline_ = clock_type::time_point::max();
  idle_deadline_ = clock_type::time_point::max();
  tcp().socket().shutdown(tcp::socket::shutdown_both, ignored);
  tcp().socket().close(ignored);
  connected_ = false;
}

void connection::do_resolve() {
  step_ = step::resolve;
  // One deadline covers resolving, connecting, the tunnel and TLS.
  arm_step(deadline::connect, current_->limits.connect);
  resolver_.async_resolve(
      proxy_ ? proxy_->host : host_,
      std::to_string(proxy_ ? proxy_->port : port_),
      beast::bind_front_handler(&connection::on_resolve, shared_from_this()));
}

void connection::on_resolve(error_code ec,
                            tcp::resolver::results_type results) {
  if (!current_) return;
  if (ec)
    return fail(ec, proxy_ ? "resolving the proxy " + proxy_->host
                           : "resolving " + host_);
  step_ = step::connect;
  tcp().async_connect(
      results,
      beast::bind_front_handler(&connection::on_connect, shared_from_this()));
}

void connection::on_connect(error_code ec, tcp::endpoint) {
  if (!current_) return;
  if (ec)
    return fail(ec, proxy_ ? "connecting to the proxy " + proxy_->host + ":" +
                                 std::to_string(proxy_->port)
                           : "connecting to " + origin_);
  error_code ignored;
  tcp().socket().set_option(tcp::no_delay{true}, ignored);
  if (proxy_) return do_tunnel();
  start_session();
}

void connection::do_tunnel() {
  step_ = step::tunnel;
  auto authority =
      host_.find(':') != std::string::npos ? "[" + host_ + "]" : host_;
  authority += ":" + std::to_string(port_);
  tunnel_request_ =
      "CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n";
  if (!proxy_->authorization.empty())
    tunnel_request_ += "Proxy-Authorization: " + proxy_->authorization + "\r\n";
  tunnel_request_ += "\r\n";
  asio::async_write(tcp(), asio::buffer(tunnel_request_),
                    beast::bind_front_handler(&connection::on_tunnel_write,
                                              shared_from_this()));
}

void connection::on_tunnel_write(error_code ec, std::size_t) {
  if (!current_) return;
  if (ec) return fail(ec, "asking the proxy for a tunnel");
  tunnel_parser_.emplace();
  // A 2xx answer to CONNECT has no body; an error answer's body is not
  // read (the connection is closed).
  tunnel_parser_->skip(true);
  tunnel_parser_->head_limit(core_.config().max_header_bytes);
  http::async_read_header(
      tcp(), buffer_, *tunnel_parser_,
      beast::bind_front_handler(&connection::on_tunnel, shared_from_this()));
}

void connection::on_tunnel(error_code ec, std::size_t) {
  if (!current_) return;
  if (ec) return fail(ec, "reading the proxy's answer");
  auto status = tunnel_parser_->get().result_int();
  auto reason = std::string{tunnel_parser_->get().reason()};
  tunnel_parser_.reset();
  auto to = host_ + ":" + std::to_string(port_);
  if (status / 100 != 2) {
    auto what = "the proxy refused a tunnel to " + to + ": " +
                std::to_string(status) + (reason.empty() ? "" : " " + reason);
    // 407 by the standard; some proxies (tinyproxy) answer 401.
    if (status == 407 || status == 401)
      what += " (proxy credentials missing or not accepted)";
    auto f = make_failure(errc::connect_failed, std::move(what));
    f.status = static_cast<int>(status);
    // The proxy's own refusals (403, 407) do not pass with a retry; its
    // gateway errors (502, 503, 504) may.
    if (status / 100 == 4) f.should_retry = 0;
    return finish_failure(std::move(f));
  }
  // The origin speaks only once we do: bytes already here are not its.
  if (buffer_.size() > 0)
    return finish_failure(make_failure(
        errc::protocol_error, "the proxy sent data after opening a tunnel"));
  start_session();
}

void connection::start_session() {
  if (!tls_) {
    disarm_step();
    connected_ = true;
    core_.count_opened();
    return do_write();
  }
  step_ = step::handshake;
  auto* native = tls_->native_handle();
  // SNI carries names only, never address literals (RFC 6066).
  if (!is_ip_literal(host_) && !SSL_set_tlsext_host_name(native, host_.c_str()))
    return fail(error_code{static_cast<int>(::ERR_get_error()),
                           asio::error::get_ssl_category()},
                "setting SNI");
  if (core_.config().verify_peer) {
    tls_->set_verify_mode(ssl::verify_peer);
    // Chain verification by OpenSSL, then the host name; remember why a
    // certificate was refused for the error message.
    tls_->set_verify_callback(
        [this, check = ssl::host_name_verification(host_)](
            bool preverified, ssl::verify_context& ctx) {
          if (!preverified) {
            auto err = X509_STORE_CTX_get_error(ctx.native_handle());
            verify_error_ = X509_verify_cert_error_string(err);
            return false;
          }
          if (!check(preverified, ctx)) {
            verify_error_ = "certificate does not match host '" + host_ + "'";
            return false;
          }
          return true;
        });
  } else {
    tls_->set_verify_mode(ssl::verify_none);
  }
  tls_->async_handshake(
      ssl::stream_base::client,
      beast::bind_front_handler(&connection::on_handshake, shared_from_this()));
}

void connection::on_handshake(error_code ec) {
  if (!current_) return;
  if (ec) return fail(ec, "TLS handshake with " + origin_);
  disarm_step();
  connected_ = true;
  core_.count_opened();
  do_write();
}

void connection::do_write() {
  step_ = step::write;
  // The previous response's fields go before the arena rewinds.
  parser_.reset();
  fields_arena_.release();
  parser_.emplace(std::piecewise_construct, std::make_tuple(),
                  std::make_tuple(fields_allocator{&fields_arena_}));
  parser_->head_limit(core_.config().max_header_bytes);
  // Non-stream bodies are bounded by us (max_body_bytes), streams not.
  parser_->body_limit(boost::none);
  if (current_->head) parser_->skip(true);
  // The first_byte deadline also covers sending the request, so that a
  // server that stops reading cannot hold us until the total deadline.
  arm_step(deadline::first_byte, current_->limits.first_byte);
  with_stream([this](auto& stream) {
    asio::async_write(
        stream, asio::buffer(current_->wire),
        beast::bind_front_handler(&connection::on_write, shared_from_this()));
  });
}

void connection::on_write(error_code ec, std::size_t) {
  if (!current_) return;
  if (ec) return fail(ec, "sending the request");
  step_ = step::read_head;
  with_stream([this](auto& stream) {
    http::async_read_header(
        stream, buffer_, *parser_,
        beast::bind_front_handler(&connection::on_read_header,
                                  shared_from_this()));
  });
}

void connection::on_read_header(error_code ec, std::size_t) {
  if (!current_) return;
  if (ec) return fail(ec, "reading the response head");
  disarm_step();
  current_->response_started = true;
  auto& msg = parser_->get();
  response_head head;
  head.status = static_cast<int>(msg.result_int());
  if (current_->obs->wants_fields(head.status))
    for (auto& field : msg)
      head.fields.push_back(
          header{std::string{field.name_string()}, std::string{field.value()}});
  current_->obs->on_head(head);
  step_ = step::read_body;
  if (parser_->is_done()) return on_body_complete();
  do_read_body();
}

void connection::do_read_body() {
  auto& body = parser_->get().body();
  body.data = piece_.data();
  body.size = piece_.size();
  // The idle deadline runs from the last read that made progress: reads
  // without it (SSE comments, keep-alive bytes) leave it where it is.
  if (step_deadline_ == clock_type::time_point::max()) {
    idle_bytes_ = false;
    arm_step(deadline::idle, current_->limits.idle);
  }
  with_stream([this](auto& stream) {
    http::async_read_some(stream, buffer_, *parser_,
                          beast::bind_front_handler(&connection::on_read_body,
                                                    shared_from_this()));
  });
}

void connection::on_read_body(error_code ec, std::size_t) {
  if (!current_) return;
  // need_buffer only says our piece buffer is full.
  if (ec == http::error::need_buffer) ec = {};
  // Many TLS servers close without close_notify; for a body delimited by
  // the end of the connection that is still the end of the body.
  if (ec == ssl::error::stream_truncated && parser_->need_eof()) {
    ec = {};
    parser_->put_eof(ec);
  }
  if (ec) return fail(ec, "reading the response body");
  auto got = piece_.size() - parser_->get().body().size;
  // Reads of chunk framing alone carry nothing: no progress.
  bool progress = false;
  if (got > 0) {
    progress = true;
    std::string_view bytes{piece_.data(), got};
    if (current_->stream) {
      auto verdict = current_->obs->on_data(bytes);
      paused_ = !verdict.more;
      progress = verdict.progress;
      idle_bytes_ = idle_bytes_ || !progress;
    } else if (collected_.size() + got > core_.config().max_body_bytes) {
      return finish_failure([&] {
        auto what = make_failure(
            errc::protocol_error,
            "response body exceeds " +
                std::to_string(core_.config().max_body_bytes) + " bytes");
        what.response_started = true;
        return what;
      }());
    } else {
      collected_.append(bytes);
    }
  }
  // Progress restarts the idle deadline (armed by the next read); while
  // paused it does not run at all.
  if (progress || paused_ || parser_->is_done()) disarm_step();
  if (parser_->is_done()) return on_body_complete();
  if (!paused_) do_read_body();
}

void connection::on_body_complete() {
  if (!current_->stream && !collected_.empty())
    current_->obs->on_data(collected_);
  finish_success();
}

void connection::arm_step(deadline which, milliseconds after) {
  step_which_ = which;
  step_after_ = after;
  if (after.count() <= 0) {
    step_deadline_ = clock_type::time_point::max();
    return;
  }
  step_deadline_ = clock_type::now() + after;
  wait_step(step_deadline_);
}

clock_type::time_point connection::next_deadline() const noexcept {
  auto total =
      current_ ? current_->total_deadline : clock_type::time_point::max();
  return std::min(step_deadline_, total);
}

void connection::disarm_step() {
  step_deadline_ = clock_type::time_point::max();
}

void connection::wait_step(clock_type::time_point at) {
  step_timer_.fire_by(at,
                      [self = shared_from_this()] { self->on_step_timer(); });
}

void connection::on_step_timer() {
  auto deadline = next_deadline();
  if (deadline == clock_type::time_point::max()) return; // nothing to watch
  auto now = clock_type::now();
  if (now < deadline) return wait_step(deadline);
  if (!current_) return;
  if (now >= current_->total_deadline)
    return core_.abort(current_, total_timeout(*current_));
  on_step_timeout();
}

void connection::on_step_timeout() {
  // Each text names the deadline, so that a user knows which setting
  // (model_config::timeouts, the gateway's --upstream-timeout) to look at.
  std::string text;
  switch (step_which_) {
  case deadline::connect:
    text = "connecting to " + origin_ + " took longer than " +
           to_ms_text(step_after_) + " (connect deadline)";
    break;
  case deadline::first_byte:
    text = "no complete response head within " + to_ms_text(step_after_) +
           " (first-byte deadline)";
    break;
  default:
    text = idle_bytes_ ? "no stream event for " + to_ms_text(step_after_) +
                             " (idle deadline; only comments or keep-alive "
                             "bytes arrived)"
                       : "no response data for " + to_ms_text(step_after_) +
                             " (idle deadline)";
    break;
  }
  auto what = make_timeout(step_which_, std::move(text));
  what.response_started = current_->response_started;
  finish_failure(std::move(what));
}

failure connection::tls_failure(const error_code& ec) {
  std::string text;
  auto cert_refused = !verify_error_.empty() ||
                      (ec.category() == asio::error::get_ssl_category() &&
                       ERR_GET_REASON(static_cast<unsigned long>(ec.value())) ==
                           SSL_R_CERTIFICATE_VERIFY_FAILED);
  if (cert_refused) {
    auto reason = verify_error_;
    if (reason.empty())
      reason = X509_verify_cert_error_string(
          SSL_get_verify_result(tls_->native_handle()));
    text = "certificate verification failed for " + origin_ + ": " + reason;
  } else {
    text = "TLS handshake with " + origin_ + " failed: " + ec.message();
  }
  return make_failure(errc::tls_failed, std::move(text));
}

void connection::fail(error_code ec, std::string_view what) {
  auto& ex = *current_;
  bool got_bytes = ex.response_started || buffer_.size() > 0 ||
                   (parser_ && parser_->got_some());
  auto text = std::string{what} + ": " + ec.message();
  if (ec == http::error::buffer_overflow)
    text = std::string{what} + ": a chunk-size line or trailer exceeds " +
           std::to_string(buffer_.max_size()) + " bytes";
  else if (ec == http::error::header_limit)
    text = std::string{what} + ": the response head exceeds " +
           std::to_string(core_.config().max_header_bytes) + " bytes";
  failure result;
  switch (step_) {
  case step::resolve:
  case step::connect:
  case step::tunnel:
    result = make_failure(errc::connect_failed, std::move(text));
    break;
  case step::handshake:
    result = tls_failure(ec);
    break;
  case step::write:
  case step::read_head:
    // A kept-alive connection the server closed meanwhile: try once more
    // on a fresh one, as long as nothing of a response arrived.
    if (!got_bytes && ex.reused && !ex.retried) {
      auto self = shared_from_this();
      auto moved = current_;
      if (core_.retry_on_fresh(moved, self)) {
        current_.reset();
        close();
        return;
      }
    }
    result = make_failure(is_http_syntax_error(ec) ? errc::protocol_error
                                                   : errc::connection_lost,
                          std::move(text));
    break;
  case step::read_body:
    result = make_failure(is_http_syntax_error(ec) ? errc::protocol_error
                                                   : errc::connection_lost,
                          std::move(text));
    break;
  }
  result.response_started = got_bytes;
  finish_failure(std::move(result));
}

void connection::finish_failure(failure what) {
  auto ex = std::move(current_);
  current_.reset();
  paused_ = false;
  // parser_, buffer_ and held_ stay: an operation completing after close()
  // (its data already queued on the strand) still uses them.
  close();
  what.response_started = what.response_started || ex->response_started;
  auto report = core_.mark_done(*ex, &what);
  core_.release(shared_from_this(), false);
  if (report) ex->report_failure(what);
}

void connection::finish_success() {
  auto ex = std::move(current_);
  current_.reset();
  disarm_step();
  paused_ = false;
  auto reusable = connected_ && parser_->is_done() && parser_->keep_alive() &&
                  buffer_.size() == 0;
  parser_.reset();
  // Keep a typical body's capacity for the next exchange; give back what
  // an unusually large one took.
  collected_.clear();
  if (collected_.capacity() > kept_body_capacity) collected_.shrink_to_fit();
  auto report = core_.mark_done(*ex, nullptr);
  if (!reusable) close();
  // Back to the pool before on_done, so that a request started from there
  // finds the connection.
  core_.release(shared_from_this(), reusable);
  if (report) ex->report_done();
}

// -- client_core --------------------------------------------------------------

client_core::client_core(client_config cfg)
    : cfg_(std::move(cfg)), tls_ctx_(ssl::context::tls_client) {
  if (cfg_.max_connections_per_origin == 0) cfg_.max_connections_per_origin = 1;
  if (cfg_.io_threads == 0) cfg_.io_threads = 1;
  if (!cfg_.proxy.empty()) {
    proxy_endpoint p;
    proxy_error_ = parse_proxy(cfg_.proxy, p);
    if (!proxy_error_) proxy_ = std::move(p);
    no_proxy_ = normalize_no_proxy(cfg_.no_proxy);
  }
  tls_ctx_.set_options(ssl::context::default_workarounds |
                       ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                       ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  tls_ctx_.set_verify_mode(cfg_.verify_peer ? ssl::verify_peer
                                            : ssl::verify_none);
  work_.emplace(asio::make_work_guard(ioc_));
  for (std::size_t i = 0; i < cfg_.io_threads; ++i)
    threads_.emplace_back([this] {
      for (;;) {
        try {
          run_io();
          return;
        } catch (...) {
          // An observer threw; keep the I/O thread alive.
        }
      }
    });
}

// An idle I/O thread blocks in epoll_wait. The next request usually comes
// from an actor a few microseconds after the previous response went out,
// and waking a blocked thread costs an epoll_ctl on Asio's eventfd, a
// futex-like wake-up and two context switches. While it polls, Asio skips
// that interrupt (the reactor is not blocked) and the post is picked up by
// the next poll, as is a response that arrives meanwhile. Polling pays
// only when an I/O thread would otherwise sleep on every hand-off: with
// more exchanges running than there are I/O threads, sockets keep the
// threads busy and each wake-up serves several events, while polling
// would take the cores the server and the actors need. When polls keep
// finding nothing (a slow stream), `poll_backoff` makes them rare.
void client_core::run_io() {
  const auto spin = cfg_.idle_spin;
  if (spin.count() <= 0) {
    ioc_.run();
    return;
  }
  const auto few = cfg_.io_threads;
  auto few_running = [&] {
    return running_.load(std::memory_order_relaxed) <= few;
  };
  poll_backoff backoff;
  for (;;) {
    if (few_running() && backoff.should_poll()) {
      bool found = false;
      bool expired = false;
      auto until = clock_type::now() + spin;
      while (!ioc_.stopped() && few_running()) {
        if (ioc_.poll() > 0) {
          found = true;
          until = clock_type::now() + spin;
        } else if (clock_type::now() >= until) {
          expired = true;
          break;
        }
      }
      // Polling cut short by more exchanges (or a stop) is not a miss.
      if (found)
        backoff.found();
      else if (expired)
        backoff.missed();
    }
    // Blocks for the next handler; 0 once the context stopped.
    if (ioc_.run_one() == 0) return;
  }
}

ssl::context& client_core::tls_context() {
  std::call_once(trust_loaded_, [this] {
    error_code ec;
    tls_ctx_.set_default_verify_paths(ec);
    if (!cfg_.ca_file.empty()) {
      // A CA file that cannot be loaded shows up as a verification failure
      // on the first TLS exchange.
      tls_ctx_.load_verify_file(cfg_.ca_file, ec);
    }
  });
  return tls_ctx_;
}

client_core::~client_core() {
  std::vector<exchange_ptr> running;
  std::vector<connection_ptr> idle;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    stopping_ = true;
    for (auto& [id, ex] : exchanges_)
      running.push_back(ex);
    for (auto& [key, pool] : pools_) {
      for (auto& conn : pool.idle)
        idle.push_back(conn);
      pool.open -= pool.idle.size();
      pool.idle.clear();
    }
  }
  auto cancelled = make_failure(errc::cancelled, "the HTTP client shut down");
  for (auto& ex : running)
    abort(ex, cancelled);
  for (auto& conn : idle)
    on_strand(std::move(conn), [](connection& c) { c.close(); });
  // Give the exchanges a moment to report through their strands.
  auto until = clock_type::now() + shutdown_grace;
  for (auto& ex : running)
    while (!ex->reported && clock_type::now() < until)
      std::this_thread::sleep_for(milliseconds{1});
  work_.reset();
  ioc_.stop();
  for (auto& thread : threads_)
    if (thread.joinable()) thread.join();
  // Whatever could not report in time reports now; no I/O thread runs.
  for (auto& ex : running)
    ex->report_failure(cancelled);
  // Break exchange <-> connection cycles of exchanges that never finished.
  std::lock_guard<std::mutex> guard{mtx_};
  for (auto& ex : running)
    ex->conn.reset();
  exchanges_.clear();
  note_running_locked();
  pools_.clear();
}

failure client_core::prepare(request& req, exchange& ex) const {
  if (auto what = parse_url(req.url, ex.url)) return what;
  if (!is_token(req.method))
    return make_failure(errc::invalid_argument,
                        "invalid HTTP method '" + req.method + "'");
  for (auto& field : req.fields) {
    if (!is_token(field.name))
      return make_failure(errc::invalid_argument,
                          "invalid header name '" + field.name + "'");
    if (!is_safe_value(field.value))
      return make_failure(errc::invalid_argument,
                          "header '" + field.name +
                              "' has CR, LF or NUL in its value");
  }
  auto& url = ex.url;
  ex.origin = url.scheme + "://" + url.host + ":" + std::to_string(url.port);
  if (proxy_error_) return proxy_error_;
  if (proxy_ && !bypasses_proxy(url.host, no_proxy_)) ex.proxy = &*proxy_;
  ex.stream = req.stream;
  ex.limits = req.limits;
  // What Beast's serializer wrote for an http::request with these fields
  // set or inserted in this order, formatted directly.
  auto method = http::string_to_verb(req.method);
  ex.head = method == http::verb::head;
  auto& w = ex.wire;
  w.clear();
  w.reserve(256 + url.target.size() + req.body.size());
  auto field = [&w](std::string_view name, std::string_view value) {
    w += name;
    w += ": ";
    w += value;
    w += "\r\n";
  };
  w += req.method;
  w += ' ';
  w += url.target;
  w += " HTTP/1.1\r\n";
  if (find_header(req.fields, "host").empty()) {
    auto host = url.host.find(':') != std::string::npos ? "[" + url.host + "]"
                                                        : url.host;
    auto default_port = url.scheme == "https" ? 443 : 80;
    if (url.port != default_port) host += ":" + std::to_string(url.port);
    field("Host", host);
  }
  if (find_header(req.fields, "user-agent").empty())
    field("User-Agent", default_user_agent);
  if (find_header(req.fields, "accept").empty())
    field("Accept", req.stream ? "text/event-stream" : "application/json");
  for (auto& f : req.fields)
    field(f.name, f.value);
  if (find_header(req.fields, "content-length").empty() &&
      find_header(req.fields, "transfer-encoding").empty() &&
      (!req.body.empty() || method == http::verb::post ||
       method == http::verb::put || method == http::verb::patch))
    field("Content-Length", std::to_string(req.body.size()));
  w += "\r\n";
  w += req.body;
  return {};
}

exchange_id client_core::start(request req, std::shared_ptr<observer> obs) {
  auto ex = std::make_shared<exchange>();
  ex->id = next_id_++;
  ex->obs = std::move(obs);
  auto id = ex->id;
  if (auto what = prepare(req, *ex)) {
    asio::post(ioc_, [ex, what] { ex->report_failure(what); });
    return id;
  }
  connection_ptr conn;
  std::vector<connection_ptr> to_close;
  {
    std::unique_lock<std::mutex> guard{mtx_};
    if (stopping_) {
      ex->state = exchange::phase::done;
      guard.unlock();
      ex->report_failure(
          make_failure(errc::cancelled, "the HTTP client shut down"));
      return id;
    }
    exchanges_.emplace(id, ex);
    note_running_locked();
    if (ex->limits.total.count() > 0)
      ex->total_deadline = clock_type::now() + ex->limits.total;
    conn = assign_locked(ex, to_close);
    // An exchange that waits for a connection gets a timer of its own; a
    // running one is watched by its connection's timer (no timer set and
    // cancelled from this thread per exchange).
    if (!conn && ex->state == exchange::phase::queued &&
        ex->total_deadline != clock_type::time_point::max()) {
      ex->total_timer.emplace(ioc_);
      ex->total_timer->expires_at(ex->total_deadline);
      ex->total_timer->async_wait([this, ex](error_code ec) {
        if (!ec) abort(ex, total_timeout(*ex));
      });
    }
  }
  for (auto& old : to_close)
    on_strand(std::move(old), [](connection& c) { c.close(); });
  if (conn) on_strand(std::move(conn), [ex](connection& c) { c.start(ex); });
  return id;
}

connection_ptr
client_core::assign_locked(const exchange_ptr& ex,
                           std::vector<connection_ptr>& to_close) {
  auto& pool = pools_[ex->origin];
  auto now = clock_type::now();
  while (!pool.idle.empty()) {
    auto conn = std::move(pool.idle.back());
    pool.idle.pop_back();
    if (now - conn->idle_since >= cfg_.keep_alive) {
      --pool.open;
      to_close.push_back(std::move(conn));
      continue;
    }
    ex->state = exchange::phase::running;
    ex->conn = conn;
    ex->reused = true;
    ++reused_;
    return conn;
  }
  if (pool.open < cfg_.max_connections_per_origin) {
    ++pool.open;
    note_open_locked();
    auto conn = std::make_shared<connection>(*this, *ex);
    ex->state = exchange::phase::running;
    ex->conn = conn;
    return conn;
  }
  pool.waiting.push_back(ex);
  return nullptr;
}

void client_core::abort(const exchange_ptr& ex, failure what) {
  connection_ptr conn;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (ex->state == exchange::phase::done || ex->abort) return;
    ex->abort = what;
    if (ex->state == exchange::phase::queued) {
      auto& waiting = pools_[ex->origin].waiting;
      std::erase(waiting, ex);
      ex->state = exchange::phase::done;
      exchanges_.erase(ex->id);
      note_running_locked();
    } else {
      conn = ex->conn;
    }
  }
  if (conn) {
    on_strand(std::move(conn), [ex](connection& c) { c.abort(ex); });
    return;
  }
  if (ex->total_timer) ex->total_timer->cancel();
  asio::post(ioc_, [ex, what] { ex->report_failure(what); });
}

void client_core::cancel(exchange_id id) {
  exchange_ptr ex;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    auto i = exchanges_.find(id);
    if (i == exchanges_.end()) return;
    ex = i->second;
  }
  abort(ex, make_failure(errc::cancelled, "the exchange was cancelled"));
}

void client_core::resume(exchange_id id) {
  exchange_ptr ex;
  connection_ptr conn;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    auto i = exchanges_.find(id);
    if (i == exchanges_.end() || !i->second->conn) return;
    ex = i->second;
    conn = ex->conn;
  }
  on_strand(std::move(conn), [ex](connection& c) { c.resume(ex); });
}

pool_stats client_core::stats() const {
  pool_stats result;
  result.connections_opened = opened_;
  result.connections_reused = reused_;
  std::lock_guard<std::mutex> guard{mtx_};
  result.active = exchanges_.size();
  for (auto& [key, pool] : pools_) {
    result.idle += pool.idle.size();
    result.open += pool.open;
  }
  result.max_open = max_open_;
  return result;
}

void client_core::note_open_locked() {
  std::size_t open = 0;
  for (auto& [key, pool] : pools_)
    open += pool.open;
  max_open_ = std::max(max_open_, open);
}

std::optional<failure> client_core::pending_abort(const exchange& ex) const {
  std::lock_guard<std::mutex> guard{mtx_};
  return ex.abort;
}

bool client_core::mark_done(exchange& ex, failure* what) {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (ex.state == exchange::phase::done) return false;
    ex.state = exchange::phase::done;
    ex.conn.reset();
    exchanges_.erase(ex.id);
    note_running_locked();
    if (what && ex.abort) {
      auto started = what->response_started;
      *what = *ex.abort;
      what->response_started = what->response_started || started;
    }
  }
  if (ex.total_timer) ex.total_timer->cancel();
  return true;
}

void client_core::release(const connection_ptr& conn, bool reusable) {
  exchange_ptr next;
  connection_ptr next_conn;
  uint64_t gen = 0;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    auto& pool = pools_[conn->origin()];
    if (reusable && !stopping_) {
      if (!pool.waiting.empty()) {
        // Hand the connection straight to the oldest waiter.
        next = std::move(pool.waiting.front());
        pool.waiting.pop_front();
        next->reused = true;
        ++reused_;
        next_conn = conn;
      } else if (pool.idle.size() < cfg_.max_idle_per_origin &&
                 cfg_.keep_alive.count() > 0) {
        gen = conn->idle_gen = ++next_idle_gen_;
        conn->idle_since = clock_type::now();
        pool.idle.push_back(conn);
      } else {
        reusable = false;
        --pool.open;
      }
    } else {
      reusable = false;
      --pool.open;
      if (!stopping_ && !pool.waiting.empty() &&
          pool.open < cfg_.max_connections_per_origin) {
        next = std::move(pool.waiting.front());
        pool.waiting.pop_front();
        ++pool.open;
        note_open_locked();
        next_conn = std::make_shared<connection>(*this, *next);
      }
    }
    if (next) {
      next->state = exchange::phase::running;
      next->conn = next_conn;
    }
  }
  if (!reusable)
    conn->close();
  else if (gen != 0)
    conn->watch_idle(gen, cfg_.keep_alive);
  if (next)
    on_strand(std::move(next_conn), [next](connection& c) { c.start(next); });
}

bool client_core::retry_on_fresh(const exchange_ptr& ex,
                                 const connection_ptr& old) {
  connection_ptr fresh;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (stopping_ || ex->abort || ex->retried ||
        ex->state != exchange::phase::running || ex->conn != old)
      return false;
    // The fresh connection takes over the slot of the broken one.
    fresh = std::make_shared<connection>(*this, *ex);
    ex->conn = fresh;
    ex->retried = true;
    ex->reused = false;
  }
  on_strand(std::move(fresh), [ex](connection& c) { c.start(ex); });
  return true;
}

void client_core::drop_idle(const connection_ptr& conn, uint64_t gen) {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    auto& pool = pools_[conn->origin()];
    auto i = std::find(pool.idle.begin(), pool.idle.end(), conn);
    if (i == pool.idle.end() || conn->idle_gen != gen) return;
    pool.idle.erase(i);
    --pool.open;
  }
  conn->close();
}

} // namespace

// -- public API ---------------------------------------------------------------

std::string_view find_header(const header_list& fields,
                             std::string_view name) noexcept {
  for (auto& field : fields)
    if (iequals(field.name, name)) return field.value;
  return {};
}

std::string redact_userinfo(std::string_view url) {
  auto sep = url.find("://");
  auto start = sep == std::string_view::npos ? 0 : sep + 3;
  auto end = url.find_first_of("/?#", start);
  auto at = url.substr(0, end).rfind('@');
  if (at == std::string_view::npos || at < start) return std::string{url};
  return std::string{url.substr(0, start)} + "***" +
         std::string{url.substr(at)};
}

failure parse_url(std::string_view url, url_parts& out) {
  auto bad = [url](std::string_view why) {
    // User info may hold a password: it is never shown.
    auto shown = redact_userinfo(url.substr(0, 200));
    for (auto& c : shown)
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
    return make_failure(errc::invalid_argument,
                        "invalid URL '" + shown + "': " + std::string{why});
  };
  auto sep = url.find("://");
  if (sep == std::string_view::npos) return bad("not an absolute URL");
  std::string scheme;
  for (char c : url.substr(0, sep))
    scheme += lower(c);
  if (scheme != "http" && scheme != "https")
    return bad("scheme must be http or https");
  auto rest = url.substr(sep + 3);
  auto authority_end = rest.find_first_of("/?#");
  auto authority = rest.substr(0, authority_end);
  auto target = authority_end == std::string_view::npos
                    ? std::string_view{}
                    : rest.substr(authority_end);
  if (auto hash = target.find('#'); hash != std::string_view::npos)
    target = target.substr(0, hash);
  if (authority.find('@') != std::string_view::npos)
    return bad("user info (user:password@) is not supported");
  std::string_view host;
  std::string_view port_text;
  bool has_port = false;
  if (!authority.empty() && authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos)
      return bad("unterminated IPv6 literal");
    host = authority.substr(1, close - 1);
    auto after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad("junk after IPv6 literal");
      has_port = true;
      port_text = after.substr(1);
    }
    for (char c : host)
      if (!std::isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.')
        return bad("invalid IPv6 literal");
    if (host.find(':') == std::string_view::npos)
      return bad("invalid IPv6 literal");
  } else {
    auto colon = authority.find(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) {
      has_port = true;
      port_text = authority.substr(colon + 1);
    }
    for (char c : host)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' &&
          c != '.' && c != '_')
        return bad("invalid host name");
  }
  if (host.empty()) return bad("missing host");
  uint16_t port = scheme == "https" ? 443 : 80;
  if (has_port && !port_text.empty()) {
    if (port_text.size() > 5) return bad("invalid port");
    unsigned value = 0;
    for (char c : port_text) {
      if (!std::isdigit(static_cast<unsigned char>(c)))
        return bad("invalid port");
      value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value == 0 || value > 65535) return bad("invalid port");
    port = static_cast<uint16_t>(value);
  }
  for (char c : target)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f)
      return bad("invalid character in path");
  out.scheme = std::move(scheme);
  out.host.clear();
  for (char c : host)
    out.host += lower(c);
  out.port = port;
  if (target.empty())
    out.target = "/";
  else if (target.front() == '?')
    out.target = "/" + std::string{target};
  else
    out.target = std::string{target};
  return {};
}

struct http_client::impl : client_core {
  using client_core::client_core;
};

http_client::http_client(client_config cfg)
    : impl_(std::make_unique<impl>(std::move(cfg))) {
  // nop
}

http_client::~http_client() = default;

exchange_id http_client::start(request req, std::shared_ptr<observer> obs) {
  return impl_->start(std::move(req), std::move(obs));
}

void http_client::cancel(exchange_id id) {
  impl_->cancel(id);
}

void http_client::resume(exchange_id id) {
  impl_->resume(id);
}

pool_stats http_client::stats() const {
  return impl_->stats();
}

const client_config& http_client::config() const noexcept {
  return impl_->config();
}

} // namespace maritaca::transport
