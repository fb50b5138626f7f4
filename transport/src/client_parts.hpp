#pragma once

// The parts of the HTTP client (Boost.Beast over Asio, TCP and TLS, a
// keep-alive pool per origin), shared by connection.cpp (one connection's
// steps) and http_client.cpp (the core: io_context, pool, exchanges).
// Private to transport/src.
//
// Structure: `client_core` owns the io_context, its threads, the pool and
// the table of exchanges (all shared state behind one mutex). A
// `connection` owns a socket and a strand; it runs one exchange at a time
// and touches its own members only from its strand. An `exchange` is one
// request with its observer; its pool-related fields are guarded by the
// core's mutex, and its observer is only called from the strand of the
// connection running it (or, before it got one, from a single posted
// handler), so callbacks of one exchange never overlap.

#include "url.hpp"

#include "maritaca/transport/bounded_parser.hpp"
#include "maritaca/transport/http_client.hpp"
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

namespace maritaca::transport::detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using std::chrono::milliseconds;
using clock_type = std::chrono::steady_clock;
using strand_type = asio::strand<asio::io_context::executor_type>;

inline constexpr std::string_view default_user_agent = "maritaca-cpp/0.1";

/// Bytes handed to the parser per body read.
inline constexpr std::size_t body_piece_bytes = 16u * 1024;

/// Capacity of a non-stream body buffer a connection keeps between
/// exchanges (larger ones are given back).
inline constexpr std::size_t kept_body_capacity = 64u * 1024;

/// Allocator of a response head's fields (see `connection::fields_arena_`).
using fields_allocator = std::pmr::polymorphic_allocator<char>;

/// Capacity of a connection's read buffer. Beast reads at most the free
/// capacity of a flat_buffer (at least 512 bytes), so an unreserved buffer
/// reads the socket in 512-byte steps.
inline constexpr std::size_t read_buffer_bytes = 64u * 1024;

/// Bytes the read buffer may hold beyond the larger of its capacity and
/// the head limit: room for a chunk-size line (with extensions) or a
/// trailer. Beast 1.81's parser keeps those in the buffer until their line
/// ends, bounded by nothing else.
inline constexpr std::size_t read_slack_bytes = 4096;

/// How long the destructor waits for running exchanges to wind down before
/// stopping the io_context regardless.
inline constexpr milliseconds shutdown_grace{2'000};

/// Whether `host` is an IP address (no SNI, no host name check then).
inline bool is_ip_literal(const std::string& host) {
  error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

/// `d` as "N ms", for messages.
inline std::string to_ms_text(milliseconds d) {
  return std::to_string(d.count()) + " ms";
}

/// The bound of a connection's read buffer.
inline std::size_t read_buffer_limit(const client_config& cfg) {
  return std::max(read_buffer_bytes, cfg.max_header_bytes) + read_slack_bytes;
}

/// Whether `ec` reports malformed HTTP (as opposed to a broken connection).
inline bool is_http_syntax_error(const error_code& ec) {
  static const auto& category =
      http::make_error_code(http::error::bad_version).category();
  return ec.category() == category && ec != http::error::end_of_stream &&
         ec != http::error::partial_message;
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
inline failure total_timeout(const exchange& ex) {
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

} // namespace maritaca::transport::detail
