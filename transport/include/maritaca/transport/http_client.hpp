#pragma once

/// @file
/// An asynchronous HTTP/1.1 client over TCP and TLS with a keep-alive
/// connection pool per origin. The implementation (Boost.Beast, Asio,
/// OpenSSL) stays behind a pimpl: this header includes neither Beast nor
/// CAF, so the actor layer can use it cheaply.
///
/// Threading: the client owns an `io_context` run by its own thread(s).
/// Every public member function is thread-safe. Observer callbacks run on an
/// I/O thread, one at a time per exchange; they must not block.

#include "maritaca/failure.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace maritaca::transport {

/// One HTTP header field.
struct header {
  /// Field name.
  std::string name;
  /// Field value.
  std::string value;

  friend bool operator==(const header&, const header&) = default;
};

/// A list of header fields.
using header_list = std::vector<header>;

/// Returns the value of the first field named `name` (case-insensitive), or
/// an empty view.
std::string_view find_header(const header_list& fields,
                             std::string_view name) noexcept;

/// Deadlines of one exchange. A zero duration disables that deadline.
struct timeouts {
  /// Resolve + TCP connect + TLS handshake.
  std::chrono::milliseconds connect{5'000};
  /// From the request being sent to the response head arriving.
  std::chrono::milliseconds first_byte{60'000};
  /// Between two pieces of the response body that make progress (for
  /// streams: between two events; comments do not count).
  std::chrono::milliseconds idle{30'000};
  /// The whole exchange.
  std::chrono::milliseconds total{600'000};

  friend bool operator==(const timeouts&, const timeouts&) = default;
};

/// Client-wide settings.
struct client_config {
  /// Threads running the I/O context.
  std::size_t io_threads = 1;
  /// How long an idle I/O thread keeps polling for work before it blocks,
  /// while no more exchanges run than there are I/O threads (at one
  /// connection, a blocked thread adds a wake-up to every request and
  /// response; see docs/performance.md). Costs up to this much CPU after
  /// each burst of work; after polls that found nothing, a thread polls
  /// only now and then (poll_backoff). 0: block at once.
  std::chrono::microseconds idle_spin{50};
  /// Upper bound of open connections per origin (scheme, host, port). An
  /// exchange beyond it waits for a connection to come back.
  std::size_t max_connections_per_origin = 256;
  /// Upper bound of idle connections kept per origin.
  std::size_t max_idle_per_origin = 64;
  /// How long an idle pooled connection is kept.
  std::chrono::milliseconds keep_alive{60'000};
  /// Verify the server's certificate chain and host name (HTTPS).
  bool verify_peer = true;
  /// Extra PEM file of trusted CAs (added to the system store).
  std::string ca_file;
  /// Upper bound of a non-streamed response body.
  std::size_t max_body_bytes = 32u << 20;
  /// Upper bound of the response head.
  std::size_t max_header_bytes = 64u << 10;
  /// HTTP proxy for every exchange, `http://[user:password@]host[:port]`
  /// (port 80 by default); empty: connect directly. Connections go through
  /// a `CONNECT` tunnel, for `http` and `https` origins alike, so TLS stays
  /// end to end; user and password are sent as `Proxy-Authorization:
  /// Basic` and never appear in errors. A malformed proxy URL fails every
  /// exchange with `errc::invalid_argument`.
  std::string proxy;
  /// Hosts reached directly even with a proxy (as curl's `NO_PROXY`): a
  /// name matches itself and its subdomains (a leading '.' is ignored),
  /// `*` matches every host.
  std::vector<std::string> no_proxy;
};

/// One request.
struct request {
  /// HTTP method.
  std::string method = "POST";
  /// Absolute `http://` or `https://` URL.
  std::string url;
  /// Extra header fields (Host, Content-Length and User-Agent are set by the
  /// client unless given). Values with CR, LF or NUL are refused with
  /// `errc::invalid_argument`.
  header_list fields;
  /// Request body.
  std::string body;
  /// Deadlines.
  transport::timeouts limits;
  /// Deliver the body in pieces as they arrive (`observer::on_data` per
  /// read) instead of once, complete, at the end.
  bool stream = false;
};

/// The status line and fields of a response.
struct response_head {
  /// HTTP status code.
  int status = 0;
  /// Header fields.
  header_list fields;
};

/// What `observer::on_data` tells the client about a piece of the body.
struct data_verdict {
  /// Keep reading; false pauses reading from the socket until
  /// `http_client::resume` (back-pressure).
  bool more = true;
  /// The piece carried progress, which restarts the idle deadline. An
  /// event-stream observer says false for pieces holding only comments or
  /// keep-alive bytes, so that a server sending nothing but those still
  /// meets the idle deadline.
  bool progress = true;

  /// `more` as given, with progress (what `return true;` means).
  constexpr data_verdict(bool more_reading = true,
                         bool made_progress = true) noexcept
      : more(more_reading), progress(made_progress) {
    // nop
  }
};

/// Receives the events of one exchange: `on_head`, then `on_data` zero or
/// more times, then exactly one of `on_done` or `on_failure` (which may also
/// come without any event before it).
class observer {
public:
  virtual ~observer();

  /// Whether `on_head` needs the header fields of a response with
  /// `status` (copying them costs an allocation or two per field).
  virtual bool wants_fields(int /* status */) const { return true; }

  /// The response head arrived (its fields empty when `wants_fields`
  /// said no).
  virtual void on_head(const response_head& head) = 0;

  /// A piece of the body arrived. The verdict may pause reading (the idle
  /// deadline does not run while paused) and says whether the piece counts
  /// as progress for the idle deadline (`return true;`: go on, progress).
  virtual data_verdict on_data(std::string_view bytes) = 0;

  /// The body is complete.
  virtual void on_done() = 0;

  /// The exchange failed or was cancelled (`errc::cancelled`).
  virtual void on_failure(const failure& what) = 0;
};

/// Identifies an exchange for `cancel` and `resume`.
using exchange_id = uint64_t;

/// Counters of the connection pool.
struct pool_stats {
  /// TCP connections opened so far.
  uint64_t connections_opened = 0;
  /// Exchanges that reused a pooled connection.
  uint64_t connections_reused = 0;
  /// Exchanges running now.
  uint64_t active = 0;
  /// Idle pooled connections now.
  uint64_t idle = 0;
  /// Connections open now (connecting, busy or idle), all origins.
  uint64_t open = 0;
  /// The most connections open at once so far, all origins.
  uint64_t max_open = 0;
};

/// The client. Destruction cancels running exchanges (each observer gets
/// `on_failure(cancelled)`) and joins the I/O threads.
class http_client {
public:
  /// Starts the I/O threads.
  explicit http_client(client_config cfg = {});

  ~http_client();

  http_client(const http_client&) = delete;
  http_client& operator=(const http_client&) = delete;

  /// Starts an exchange; events go to `obs`.
  exchange_id start(request req, std::shared_ptr<observer> obs);

  /// Aborts an exchange: closes its connection (never pooled again) and
  /// reports `errc::cancelled` unless it already ended.
  void cancel(exchange_id id);

  /// Resumes reading after `observer::on_data` returned false.
  void resume(exchange_id id);

  /// Returns the pool counters.
  pool_stats stats() const;

  /// Returns the configuration.
  const client_config& config() const noexcept;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// The parts of an absolute URL.
struct url_parts {
  /// "http" or "https".
  std::string scheme;
  /// Host name or address (without brackets for IPv6).
  std::string host;
  /// Port (defaulted from the scheme).
  uint16_t port = 0;
  /// Path and query, at least "/".
  std::string target;
};

/// Parses an absolute http(s) URL; returns a failure with
/// `errc::invalid_argument` when it is not one. User info
/// (`user:password@`) is refused, and the failure's message shows the URL
/// without it.
failure parse_url(std::string_view url, url_parts& out);

/// Returns `url` with its user info (`user:password@`), if any, replaced
/// by `***@`: the form of a URL that may be printed.
std::string redact_userinfo(std::string_view url);

} // namespace maritaca::transport
