/// @file
/// The HTTP/1.1 client's core -- the io_context and its threads, the
/// keep-alive pool per origin, the table of exchanges -- and the public
/// `http_client` over it. A connection's own steps are in connection.cpp.

#include "client_parts.hpp"

#include <cstdio>
#include <exception>

namespace maritaca::transport {

observer::~observer() = default;

namespace detail {

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
        } catch (const std::exception& e) {
          // An observer threw: say so, and keep the I/O thread alive.
          std::fprintf(stderr,
                       "maritaca: an HTTP client callback threw on an I/O "
                       "thread: %s\n",
                       e.what());
        } catch (...) {
          std::fprintf(stderr, "maritaca: an HTTP client callback threw on "
                               "an I/O thread (not a std::exception)\n");
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

} // namespace detail

struct http_client::impl : detail::client_core {
  using detail::client_core::client_core;
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
