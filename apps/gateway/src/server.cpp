/// @file
/// The HTTP server of the gateway: Boost.Beast, one strand per connection.
/// No CAF here: requests go to a plain `handler`, answers come back through
/// a `responder` that posts everything to the connection's strand.

#include "beast_request.hpp"
#include "connection_table.hpp"

#include "maritaca/apps/http_guard.hpp"
#include "maritaca/apps/listener.hpp"
#include "maritaca/gateway/http.hpp"
#include "maritaca/gateway/router.hpp"
#include "maritaca/transport/bounded_parser.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <array>
#include <atomic>
#include <charconv>
#include <cstdio>
#include <deque>
#include <exception>
#include <future>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace maritaca::gateway {

// -- plain types
// ----------------------------------------------------------------

namespace {

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/// Decodes a query component: `+` is a space, `%XX` a byte (a malformed
/// escape stays as it is).
std::string url_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 &&
               hex_value(s[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

} // namespace

std::string_view request::header(std::string_view name) const noexcept {
  for (auto& h : headers)
    if (boost::beast::iequals(h.name, name)) return h.value;
  return {};
}

std::optional<std::string> request::query_param(std::string_view name) const {
  std::string_view q = query;
  while (!q.empty()) {
    auto amp = q.find('&');
    auto pair = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view{} : q.substr(amp + 1);
    auto eq = pair.find('=');
    auto key = url_decode(pair.substr(0, eq));
    if (key != name) continue;
    if (eq == std::string_view::npos) return std::string{};
    return url_decode(pair.substr(eq + 1));
  }
  return std::nullopt;
}

std::string_view request::param(std::string_view name) const noexcept {
  for (auto& [k, v] : params)
    if (k == name) return v;
  return {};
}

response response::json(int status, std::string body) {
  return {status, {{"Content-Type", "application/json"}}, std::move(body)};
}

response response::text(int status, std::string body) {
  return {
      status, {{"Content-Type", "text/plain; charset=utf-8"}}, std::move(body)};
}

responder::~responder() = default;

void responder::annotate(std::string) {
  // nop
}

request to_request_head(
    const boost::beast::http::request<boost::beast::http::string_body>& msg,
    std::string remote) {
  request req;
  req.method = std::string{msg.method_string()};
  req.target = std::string{msg.target()};
  // The path ends at the first '?'; the query follows it.
  auto q = req.target.find('?');
  req.path = req.target.substr(0, q);
  if (q != std::string::npos) req.query = req.target.substr(q + 1);
  req.headers.reserve(std::distance(msg.begin(), msg.end()));
  for (auto& f : msg)
    req.headers.push_back(
        {std::string{f.name_string()}, std::string{f.value()}});
  req.version = msg.version();
  req.remote = std::move(remote);
  return req;
}

request
to_request(boost::beast::http::request<boost::beast::http::string_body>&& msg,
           std::string remote) {
  auto req = to_request_head(msg, std::move(remote));
  req.body = std::move(msg.body());
  return req;
}

// -- the server
// -----------------------------------------------------------------

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;
using namespace std::chrono_literals;

/// Time allowed for the peer to close after we did (lingering close).
constexpr auto linger_timeout = 2s;

class connection;

} // namespace

/// State shared by the server object and its connections.
struct http_server::impl {
  impl(server_options o, handler h, head_check c)
      : opts(std::move(o)), fn(std::move(h)), check(std::move(c)),
        table(opts.max_connections, opts.max_connections_per_client) {
    // nop
  }

  /// Serves one accepted connection, or closes it when over a cap.
  void on_socket(tcp::socket socket);

  /// The connections still registered.
  std::vector<std::shared_ptr<connection>> live() const;

  // Declared before the io_context: connections destroyed with it still
  // unregister themselves.
  server_options opts;
  handler fn;
  head_check check;
  /// Connection objects alive (open or closing).
  std::atomic<std::size_t> open{0};
  std::atomic<int> closing{0};
  gateway::detail::connection_table table;
  net::io_context ioc;
  apps::listener acceptor{ioc, "maritaca-gateway", opts.verbose,
                          [this](tcp::socket s) { on_socket(std::move(s)); }};
  apps::io_threads threads;
  std::string url;
  bool started = false;
  std::atomic<bool> draining{false};
  bool stopped = false;
};

namespace {

/// One queued piece of a streamed response.
struct piece {
  std::string data;
  std::function<void()> on_written;
};

/// Returns the address part of "ADDRESS:PORT" (IPv6 keeps its colons).
std::string address_of(const tcp::endpoint& ep) {
  return ep.address().to_string();
}

/// One client connection. Every member function but the constructor and
/// the thread-safe ones (`shed`, `sheddable`, `begin_drain`) runs on the
/// connection's strand.
class connection : public std::enable_shared_from_this<connection>,
                   public gateway::detail::table_entry {
public:
  connection(tcp::socket&& socket, http_server::impl& srv)
      : stream_(std::move(socket)), srv_(srv), opts_(srv.opts),
        idle_timer_(stream_.get_executor()),
        buffer_(apps::read_buffer_limit(opts_.max_header_bytes)) {
    srv_.open.fetch_add(1, std::memory_order_relaxed);
    beast::error_code ec;
    auto ep = stream_.socket().remote_endpoint(ec);
    if (!ec) {
      client_ = address_of(ep);
      remote_ = client_ + ":" + std::to_string(ep.port());
    }
  }

  ~connection() override {
    if (registered_) srv_.table.remove(pos_);
    srv_.open.fetch_sub(1, std::memory_order_relaxed);
  }

  /// The client's address (without the port).
  const std::string& client() const noexcept { return client_; }

  /// Remembers where the server's table lists this connection.
  void registered(gateway::detail::connection_table::position pos) {
    pos_ = pos;
    registered_ = true;
  }

  /// Closes a connection the table refused (before `run`).
  void refuse_at_accept() {
    beast::error_code ignored;
    stream_.socket().close(ignored);
  }

  /// Starts serving (on the strand).
  void run() {
    net::dispatch(stream_.get_executor(),
                  beast::bind_front_handler(&connection::do_read, self()));
  }

  /// Closes the connection (shedding, server shutdown); thread-safe.
  void shed() override {
    srv_.closing.fetch_add(1);
    net::post(stream_.get_executor(), [c = self()] {
      c->close_now();
      c->srv_.closing.fetch_sub(1);
    });
  }

  bool sheddable() const noexcept override {
    return awaiting_head_.load(std::memory_order_relaxed);
  }

  /// Graceful shutdown: closes the connection if it waits for a request
  /// head, else lets the answer in progress finish and closes afterwards;
  /// thread-safe.
  void begin_drain() {
    net::post(stream_.get_executor(), [c = self()] {
      c->draining_ = true;
      c->keep_alive_ = false;
      if (c->awaiting_head_.load(std::memory_order_relaxed)) c->close_now();
    });
  }

  // -- called through the responder (posted to the strand)
  // ---------------------

  void do_send(uint64_t gen, response res) {
    if (!current(gen) || started_) return;
    started_ = true;
    http::response<http::string_body> msg{static_cast<http::status>(res.status),
                                          version_};
    msg.set(http::field::server, "maritaca-gateway");
    for (auto& h : res.headers)
      msg.set(h.name, h.value);
    msg.body() = std::move(res.body);
    msg.keep_alive(keep_alive_);
    msg.prepare_payload();
    // A HEAD answer has the fields of the GET answer, and no body.
    if (head_only_) msg.body().clear();
    res_.emplace(std::move(msg));
    stream_.expires_after(opts_.write_timeout);
    http::async_write(stream_, *res_,
                      beast::bind_front_handler(&connection::on_write, self()));
  }

  void do_start_stream(uint64_t gen, int status, header_list headers) {
    if (!current(gen) || started_) return;
    started_ = true;
    streaming_ = true;
    chunked_ = version_ >= 11;
    if (!chunked_ && !head_only_) keep_alive_ = false;
    head_.emplace(static_cast<http::status>(status), version_);
    head_->set(http::field::server, "maritaca-gateway");
    for (auto& h : headers)
      head_->set(h.name, h.value);
    head_->keep_alive(keep_alive_);
    if (chunked_) head_->chunked(true);
    head_sr_.emplace(*head_);
    writing_ = true;
    stream_.expires_after(opts_.write_timeout);
    http::async_write_header(
        stream_, *head_sr_,
        beast::bind_front_handler(&connection::on_head_written, self()));
  }

  void do_write(uint64_t gen, std::string data, std::function<void()> cb) {
    if (!current(gen) || finishing_ || data.empty()) return;
    queue_.push_back(piece{std::move(data), std::move(cb)});
    flush();
  }

  void do_finish(uint64_t gen) {
    if (!current(gen) || !streaming_ || finishing_) return;
    finishing_ = true;
    flush();
  }

  void do_abort(uint64_t gen) {
    if (!current(gen)) return;
    // The handler itself gave up: no disconnect callback for it.
    on_gone_ = nullptr;
    close_now();
  }

  void do_on_disconnect(uint64_t gen, std::function<void()> fn) {
    if (gen != gen_ || done_) return;
    if (closed_) {
      fn();
      return;
    }
    on_gone_ = std::move(fn);
  }

private:
  using request_parser = transport::bounded_parser<true, http::string_body>;

  std::shared_ptr<connection> self() { return shared_from_this(); }

  /// Whether `gen` is the request being answered and it can still be.
  bool current(uint64_t gen) const noexcept {
    return gen == gen_ && !closed_ && !done_;
  }

  // -- reading requests
  // ---------------------------------------------------------

  void do_read() {
    if (closed_) return;
    awaiting_head_.store(true, std::memory_order_relaxed);
    parser_.emplace();
    parser_->body_limit(opts_.max_body_bytes);
    parser_->head_limit(opts_.max_header_bytes);
    // The first request and a pipelined one must arrive promptly; between
    // keep-alive requests the idle timeout applies.
    auto first = requests_ == 0 || buffer_.size() > 0;
    stream_.expires_after(first ? opts_.header_timeout : opts_.idle_timeout);
    http::async_read_header(
        stream_, buffer_, *parser_,
        beast::bind_front_handler(&connection::on_read_header, self()));
  }

  void on_read_header(beast::error_code ec, std::size_t) {
    if (closed_) return;
    if (ec) return read_failed(ec, "read header");
    awaiting_head_.store(false, std::memory_order_relaxed);
    auto& msg = parser_->get();
    version_ = msg.version();
    if (msg.target().size() > opts_.max_url_bytes)
      return refuse({414, "request URL too long (limit " +
                              std::to_string(opts_.max_url_bytes) + " bytes)"});
    if (auto r = apps::check_framing(msg, version_, parser_->chunked()))
      return refuse(std::move(*r));
    req_ = to_request_head(msg, remote_);
    // A request the server answers without its body (a missing token, an
    // unknown route) does not get its body read, nor invited.
    if (srv_.check)
      if (auto early = srv_.check(req_)) return answer_early(std::move(*early));
    if (!parser_->is_done() &&
        beast::iequals(msg[http::field::expect], "100-continue")) {
      // Let clients that wait for it send the body now.
      static constexpr std::string_view go_on = "HTTP/1.1 100 Continue\r\n\r\n";
      stream_.expires_after(opts_.write_timeout);
      return net::async_write(
          stream_, net::buffer(go_on.data(), go_on.size()),
          beast::bind_front_handler(&connection::on_continue, self()));
    }
    read_body();
  }

  void on_continue(beast::error_code ec, std::size_t) {
    if (ec) return fail(ec, "write 100-continue");
    read_body();
  }

  void read_body() {
    if (parser_->is_done()) return dispatch_request();
    stream_.expires_after(opts_.body_timeout);
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&connection::on_read, self()));
  }

  void on_read(beast::error_code ec, std::size_t) {
    if (closed_) return;
    if (ec) return read_failed(ec, "read");
    dispatch_request();
  }

  /// A read failed: answers what can be answered (limits, malformed
  /// requests), closes on the rest.
  void read_failed(beast::error_code ec, const char* what) {
    if (auto r = apps::refusal_for(ec, opts_.max_body_bytes))
      return refuse(std::move(*r));
    fail(ec, what);
  }

  /// Prepares the state for answering the request read last.
  void begin_answer(bool keep_alive, bool head_only) {
    ++requests_;
    ++gen_;
    done_ = false;
    started_ = false;
    streaming_ = false;
    finishing_ = false;
    on_gone_ = nullptr;
    keep_alive_ = keep_alive && !draining_;
    head_only_ = head_only;
  }

  /// Answers an unreadable request with an error and closes afterwards.
  void refuse(apps::refusal r) {
    begin_answer(false, false);
    do_send(gen_, error_response(r.status, r.message, "invalid_request_error",
                                 std::to_string(r.status)));
  }

  /// Sends the head check's answer; the connection stays open only when
  /// no body is pending.
  void answer_early(response r) {
    auto& msg = parser_->get();
    begin_answer(msg.keep_alive() && parser_->is_done(),
                 msg.method() == http::verb::head);
    do_send(gen_, std::move(r));
  }

  /// Hands the parsed request to the handler.
  void dispatch_request() {
    auto msg = parser_->release();
    req_.body = std::move(msg.body());
    begin_answer(msg.keep_alive(), msg.method() == http::verb::head);
    // Notice a client that leaves while its answer is being made.
    watch_peer();
    auto res = make_responder();
    try {
      srv_.fn(std::move(req_), std::move(res));
    } catch (const std::exception& e) {
      if (opts_.verbose)
        std::fprintf(stderr, "maritaca-gateway: handler threw: %s\n", e.what());
      do_send(gen_, response::json(500, "{\"error\":{\"message\":\"internal "
                                        "error\",\"type\":\"server_error\","
                                        "\"code\":\"internal_error\"}}"));
    }
  }

  std::shared_ptr<responder> make_responder();

  // -- watching the peer
  // --------------------------------------------------------

  /// Reads from the peer while the answer is made and written, so that a
  /// client that leaves is noticed at once. Bytes that arrive (a pipelined
  /// request) stay in the buffer for the next request, within its bound.
  /// Reads the socket directly: the stream's timeouts belong to the writes.
  void watch_peer() {
    auto room = apps::read_room(buffer_);
    if (watching_ || closed_ || room == 0) return;
    watching_ = true;
    stream_.socket().async_read_some(
        buffer_.prepare(room),
        beast::bind_front_handler(&connection::on_watch, self()));
  }

  void on_watch(beast::error_code ec, std::size_t n) {
    watching_ = false;
    if (closed_) return;
    if (!ec) buffer_.commit(n);
    if (resume_) {
      // The answer is complete: this read starts the next request.
      resume_ = false;
      idle_timer_.cancel();
      if (ec && ec != net::error::operation_aborted) return close_now();
      return do_read();
    }
    if (ec) return close_now(); // the client left (or broke the connection)
    watch_peer();
  }

  void on_idle(beast::error_code ec) {
    if (ec || closed_ || !resume_) return;
    close_now();
  }

  // -- writing responses
  // --------------------------------------------------------

  void on_write(beast::error_code ec, std::size_t) {
    res_.reset();
    if (ec) return fail(ec, "write");
    complete();
  }

  void on_head_written(beast::error_code ec, std::size_t) {
    writing_ = false;
    head_sr_.reset();
    head_.reset();
    if (ec) return fail(ec, "write head");
    if (head_only_) {
      // The answer to HEAD is complete; the handler may stop its work.
      auto gone = std::move(on_gone_);
      complete();
      if (gone) gone();
      return;
    }
    flush();
  }

  /// Writes every queued piece (and the last chunk when finishing) at once.
  void flush() {
    if (writing_ || closed_ || !streaming_ || head_) return;
    if (queue_.empty() && !finishing_) return;
    out_.clear();
    for (auto& p : queue_) {
      if (chunked_) {
        char size[20];
        auto [end, err] =
            std::to_chars(size, size + sizeof(size), p.data.size(), 16);
        out_.append(size, end);
        out_.append("\r\n");
        out_.append(p.data);
        out_.append("\r\n");
      } else {
        out_.append(p.data);
      }
      if (p.on_written) written_.push_back(std::move(p.on_written));
    }
    queue_.clear();
    last_ = finishing_;
    if (last_ && chunked_) out_.append("0\r\n\r\n");
    if (out_.empty()) return complete();
    writing_ = true;
    stream_.expires_after(opts_.write_timeout);
    net::async_write(
        stream_, net::buffer(out_),
        beast::bind_front_handler(&connection::on_pieces_written, self()));
  }

  void on_pieces_written(beast::error_code ec, std::size_t) {
    writing_ = false;
    if (ec) return fail(ec, "write stream");
    auto callbacks = std::move(written_);
    written_.clear();
    for (auto& cb : callbacks)
      cb();
    if (last_) return complete();
    flush();
  }

  /// The response is on the wire: next request, or close.
  void complete() {
    done_ = true;
    streaming_ = false;
    on_gone_ = nullptr;
    if (!keep_alive_) return close_graceful();
    awaiting_head_.store(true, std::memory_order_relaxed);
    if (!watching_) return do_read();
    // A watch read is pending: it starts the next request when bytes come.
    resume_ = true;
    if (buffer_.size() > 0) {
      // A pipelined request is waiting already: stop the watch now.
      beast::error_code ignored;
      stream_.socket().cancel(ignored);
      return;
    }
    idle_timer_.expires_after(opts_.idle_timeout);
    idle_timer_.async_wait(
        beast::bind_front_handler(&connection::on_idle, self()));
  }

  // -- endings
  // ------------------------------------------------------------------

  /// Closes at once; tells the handler when its answer was not complete.
  void close_now() {
    if (closed_) return;
    closed_ = true;
    awaiting_head_.store(false, std::memory_order_relaxed);
    idle_timer_.cancel();
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();
    queue_.clear();
    written_.clear();
    if (auto fn = std::move(on_gone_)) {
      on_gone_ = nullptr;
      fn();
    }
  }

  /// Closes after a complete response: FIN, then reading until the peer
  /// closes (so it gets all our bytes, not a RST).
  void close_graceful() {
    if (closed_) return;
    if (watching_) return close_now();
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    if (ec) return close_now();
    stream_.expires_after(linger_timeout);
    drain();
  }

  void drain() {
    stream_.async_read_some(
        net::buffer(drain_buf_),
        beast::bind_front_handler(&connection::on_drain, self()));
  }

  void on_drain(beast::error_code ec, std::size_t) {
    if (ec) return close_now();
    drain();
  }

  /// The one failure path: logs unusual errors when verbose, then closes.
  void fail(beast::error_code ec, const char* what) {
    if (closed_) return;
    if (opts_.verbose && !apps::is_ordinary_end(ec))
      std::fprintf(stderr, "maritaca-gateway: %s: %s\n", what,
                   ec.message().c_str());
    close_now();
  }

  beast::tcp_stream stream_;
  http_server::impl& srv_;
  const server_options& opts_;
  net::steady_timer idle_timer_;
  /// Bounded: see apps/http_guard.hpp.
  beast::flat_buffer buffer_;
  std::optional<request_parser> parser_;
  /// The request being read: its head, then its body.
  request req_;
  std::optional<http::response<http::string_body>> res_;
  std::optional<http::response<http::empty_body>> head_;
  std::optional<http::response_serializer<http::empty_body>> head_sr_;
  std::deque<piece> queue_;
  std::vector<std::function<void()>> written_;
  std::string out_;
  std::function<void()> on_gone_;
  std::array<char, 512> drain_buf_;
  std::string client_;
  std::string remote_;
  gateway::detail::connection_table::position pos_;
  bool registered_ = false;
  /// Waiting for a request head (or between requests): see `sheddable`.
  std::atomic<bool> awaiting_head_{true};
  /// Requests read so far; `gen_` numbers the one being answered.
  uint64_t requests_ = 0;
  uint64_t gen_ = 0;
  unsigned version_ = 11;
  bool keep_alive_ = true;
  /// The request is HEAD: its answer goes without a body.
  bool head_only_ = false;
  /// The server shuts down: no request after the current one.
  bool draining_ = false;
  /// The answer has begun (head or full response sent).
  bool started_ = false;
  /// The answer is complete.
  bool done_ = false;
  bool streaming_ = false;
  bool chunked_ = true;
  bool finishing_ = false;
  /// The write in progress carries the last chunk.
  bool last_ = false;
  bool writing_ = false;
  bool closed_ = false;
  /// A watch read is pending.
  bool watching_ = false;
  /// The answer is done; the pending watch read starts the next request.
  bool resume_ = false;
};

/// The responder of one request: posts every call to the connection's
/// strand, tagged with the request's number.
class responder_impl : public responder {
public:
  responder_impl(std::shared_ptr<connection> conn, uint64_t gen,
                 net::any_io_executor ex)
      : conn_(std::move(conn)), gen_(gen), ex_(std::move(ex)) {
    // nop
  }

  void send(response res) override {
    int expected = 0;
    status_.compare_exchange_strong(expected, res.status);
    net::post(ex_, [c = conn_, g = gen_, r = std::move(res)]() mutable {
      c->do_send(g, std::move(r));
    });
  }

  void start_stream(int status, header_list headers) override {
    int expected = 0;
    status_.compare_exchange_strong(expected, status);
    net::post(ex_,
              [c = conn_, g = gen_, status, h = std::move(headers)]() mutable {
                c->do_start_stream(g, status, std::move(h));
              });
  }

  void write(std::string data, std::function<void()> on_written) override {
    net::post(ex_, [c = conn_, g = gen_, d = std::move(data),
                    cb = std::move(on_written)]() mutable {
      c->do_write(g, std::move(d), std::move(cb));
    });
  }

  void finish() override {
    net::post(ex_, [c = conn_, g = gen_] { c->do_finish(g); });
  }

  void abort() override {
    net::post(ex_, [c = conn_, g = gen_] { c->do_abort(g); });
  }

  void on_disconnect(std::function<void()> fn) override {
    net::post(ex_, [c = conn_, g = gen_, f = std::move(fn)]() mutable {
      c->do_on_disconnect(g, std::move(f));
    });
  }

  int status() const noexcept override { return status_.load(); }

private:
  std::shared_ptr<connection> conn_;
  uint64_t gen_;
  net::any_io_executor ex_;
  std::atomic<int> status_{0};
};

std::shared_ptr<responder> connection::make_responder() {
  return std::make_shared<responder_impl>(self(), gen_, stream_.get_executor());
}

} // namespace

void http_server::impl::on_socket(tcp::socket socket) {
  // The impl lives as long as the server object, which outlives the I/O
  // threads and (see http_server) every responder.
  auto conn = std::make_shared<connection>(std::move(socket), *this);
  gateway::detail::connection_table::position pos;
  if (draining || !table.admit(conn->client(), conn, pos)) {
    // Over a cap with nobody to displace: refuse by closing.
    conn->refuse_at_accept();
    return;
  }
  conn->registered(pos);
  conn->run();
}

std::vector<std::shared_ptr<connection>> http_server::impl::live() const {
  std::vector<std::shared_ptr<connection>> out;
  for (auto& e : table.entries())
    out.push_back(std::static_pointer_cast<connection>(e));
  return out;
}

http_server::http_server(server_options opts, handler h, head_check check)
    : impl_(std::make_shared<impl>(std::move(opts), std::move(h),
                                   std::move(check))) {
  // nop
}

http_server::~http_server() {
  stop();
}

std::string http_server::start() {
  auto& d = *impl_;
  if (d.started) return d.url;
  auto& opts = d.opts;
  d.acceptor.listen(opts.host, opts.port);
  d.url = "http://" + d.acceptor.client_address();
  d.started = true;
  d.acceptor.start();
  d.threads.start(d.ioc, std::max(1u, opts.threads));
  return d.url;
}

const std::string& http_server::url() const noexcept {
  return impl_->url;
}

std::size_t http_server::connections() const noexcept {
  return impl_->open.load(std::memory_order_relaxed);
}

std::size_t http_server::shed_connections() const noexcept {
  return impl_->table.shed_count();
}

void http_server::wait_for_signal() {
  auto& d = *impl_;
  if (!d.started || d.stopped) return;
  net::signal_set signals{d.ioc, SIGINT, SIGTERM};
  std::promise<void> caught;
  signals.async_wait([&caught](beast::error_code, int) { caught.set_value(); });
  caught.get_future().wait();
}

std::size_t http_server::drain(std::chrono::milliseconds timeout) {
  auto& d = *impl_;
  if (!d.started || d.stopped) return 0;
  if (!d.draining) {
    d.draining = true;
    d.acceptor.close();
    for (auto& c : d.live())
      c->begin_drain();
  }
  auto until = std::chrono::steady_clock::now() + timeout;
  while (d.open.load() > 0 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(10ms);
  return d.open.load();
}

void http_server::stop() {
  auto& d = *impl_;
  if (d.stopped) return;
  d.stopped = true;
  if (d.started) {
    d.acceptor.close();
    // Close every connection on its strand, so handlers hear about it.
    for (auto& c : d.live())
      c->shed();
    // Give the closes a moment to run, then stop the I/O threads.
    for (int i = 0; i < 100 && d.closing.load() > 0; ++i)
      std::this_thread::sleep_for(10ms);
  }
  d.threads.stop(d.ioc);
}

} // namespace maritaca::gateway
