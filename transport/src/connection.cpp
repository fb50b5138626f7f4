/// @file
/// One connection of the HTTP client: its steps, Beast style
/// (`do_resolve` -> `on_resolve` -> `on_connect` -> [tunnel] -> [TLS
/// `on_handshake`] -> `do_write` -> `on_write` -> `on_read_header` ->
/// `on_read_body`), its deadlines and its one `fail` path.

#include "client_parts.hpp"

namespace maritaca::transport::detail {

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

} // namespace maritaca::transport::detail
