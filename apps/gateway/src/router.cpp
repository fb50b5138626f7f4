/// @file
/// Routing, token checks and request metrics. Plain C++ (and OpenSSL's
/// digest): no Beast, no CAF.

#include "maritaca/gateway/router.hpp"

#include "maritaca/transport/wire.hpp"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>

namespace maritaca::gateway {

// -- errors
// ---------------------------------------------------------------------

std::string error_json(std::string_view message, std::string_view type,
                       std::string_view code) {
  std::string out = "{\"error\":{\"message\":";
  wire::append_json_string(out, message);
  out += ",\"type\":";
  wire::append_json_string(out, type);
  out += ",\"code\":";
  wire::append_json_string(out, code);
  out += "}}";
  return out;
}

response error_response(int status, std::string_view message,
                        std::string_view type, std::string_view code) {
  return response::json(status, error_json(message, type, code));
}

// -- tokens
// ---------------------------------------------------------------------

namespace {

std::array<unsigned char, 32> digest(std::string_view s) {
  std::array<unsigned char, 32> out{};
  SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(),
         out.data());
  return out;
}

} // namespace

token_set::token_set(const std::vector<std::string>& tokens) {
  for (auto& t : tokens)
    if (!t.empty()) digests_.push_back(digest(t));
}

bool token_set::check(std::string_view authorization) const {
  constexpr std::string_view scheme = "bearer ";
  if (authorization.size() <= scheme.size()) return false;
  for (std::size_t i = 0; i < scheme.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(authorization[i])) != scheme[i])
      return false;
  auto presented = digest(authorization.substr(scheme.size()));
  // Compare with every token, without stopping at the first match.
  int matches = 0;
  for (auto& d : digests_)
    matches |= CRYPTO_memcmp(d.data(), presented.data(), d.size()) == 0;
  return matches != 0;
}

// -- request accounting
// ---------------------------------------------------------

void log_line(std::string_view method, std::string_view path, int status,
              std::chrono::steady_clock::time_point start,
              std::string_view note) {
  auto ms = std::chrono::duration<double, std::milli>(
                std::chrono::steady_clock::now() - start)
                .count();
  auto m = std::string{method};
  auto p = std::string{path};
  if (note.empty())
    std::fprintf(stderr, "maritaca-gateway: %s %s %d %.1fms\n", m.c_str(),
                 p.c_str(), status, ms);
  else
    std::fprintf(stderr, "maritaca-gateway: %s %s %d %.1fms (%s)\n", m.c_str(),
                 p.c_str(), status, ms, std::string{note}.c_str());
}

namespace {

/// Wraps a responder to count the request (in flight while this lives; by
/// route and status when it ends) and to log it.
class counting_responder : public responder {
public:
  counting_responder(std::shared_ptr<responder> inner,
                     std::shared_ptr<gateway::metrics> m, std::string route,
                     std::string method, std::string path, bool log)
      : inner_(std::move(inner)), metrics_(std::move(m)),
        route_(std::move(route)), method_(std::move(method)),
        path_(std::move(path)), log_(log),
        start_(std::chrono::steady_clock::now()) {
    if (metrics_) metrics_->request_started();
  }

  ~counting_responder() override {
    // No answer at all: the client left first (nginx's 499).
    auto status = inner_->status();
    if (status == 0) status = 499;
    if (metrics_) metrics_->request_finished(route_, status);
    if (log_) log_line(method_, path_, status, start_, note_);
  }

  void send(response res) override { inner_->send(std::move(res)); }

  void start_stream(int status, header_list headers) override {
    inner_->start_stream(status, std::move(headers));
  }

  void write(std::string data, std::function<void()> on_written) override {
    inner_->write(std::move(data), std::move(on_written));
  }

  void finish() override { inner_->finish(); }

  void abort() override {
    if (note_.empty()) note_ = "aborted";
    inner_->abort();
  }

  void annotate(std::string note) override { note_ = std::move(note); }

  void on_disconnect(std::function<void()> fn) override {
    inner_->on_disconnect(std::move(fn));
  }

  int status() const noexcept override { return inner_->status(); }

private:
  std::shared_ptr<responder> inner_;
  std::shared_ptr<gateway::metrics> metrics_;
  std::string route_;
  std::string method_;
  std::string path_;
  bool log_;
  std::chrono::steady_clock::time_point start_;
  /// How the answer ended when the status does not say it (see annotate).
  std::string note_;
};

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos < path.size()) {
    if (path[pos] == '/') {
      ++pos;
      continue;
    }
    auto end = path.find('/', pos);
    if (end == std::string_view::npos) end = path.size();
    out.emplace_back(path.substr(pos, end - pos));
    pos = end;
  }
  return out;
}

bool is_param(const std::string& segment) {
  return segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
}

} // namespace

// -- router
// ---------------------------------------------------------------------

void router::add(std::string method, std::string pattern, handler h,
                 route_options opts) {
  route r;
  r.method = std::move(method);
  r.segments = split_path(pattern);
  r.pattern = std::move(pattern);
  r.fn = std::move(h);
  r.opts = opts;
  routes_.push_back(std::move(r));
}

void router::set_tokens(std::shared_ptr<const token_set> tokens) {
  tokens_ = std::move(tokens);
}

void router::set_metrics(std::shared_ptr<gateway::metrics> m) {
  metrics_ = std::move(m);
}

router::match_result router::match(const request& req) const {
  match_result m;
  auto segments = split_path(req.path);
  // HEAD is GET without the body: GET routes answer it.
  std::string_view method = req.method;
  if (method == "HEAD") method = "GET";
  std::string other_method; // the pattern of a route with another method
  for (auto& r : routes_) {
    if (r.segments.size() != segments.size()) continue;
    std::vector<std::pair<std::string, std::string>> ps;
    bool match = true;
    for (std::size_t i = 0; i < segments.size() && match; ++i) {
      if (is_param(r.segments[i]))
        ps.emplace_back(r.segments[i].substr(1, r.segments[i].size() - 2),
                        segments[i]);
      else
        match = r.segments[i] == segments[i];
    }
    if (!match) continue;
    if (r.method != method) {
      other_method = r.pattern;
      auto allowed = r.method == "GET" ? std::string{"GET, HEAD"} : r.method;
      if (m.allow.find(allowed) == std::string::npos)
        m.allow += (m.allow.empty() ? "" : ", ") + allowed;
      continue;
    }
    m.found = &r;
    m.params = std::move(ps);
    break;
  }
  // Bounded label set: unknown paths share one label.
  m.label = m.found
                ? m.found->pattern
                : (m.allow.empty() ? std::string{"unmatched"} : other_method);
  return m;
}

std::optional<response> router::refusal(const request& req,
                                        const match_result& m) const {
  if (!m.found) {
    if (m.allow.empty())
      return error_response(404, "no route for " + req.path,
                            "invalid_request_error", "not_found");
    auto r = error_response(
        405, "method " + req.method + " not allowed on " + req.path,
        "invalid_request_error", "method_not_allowed");
    r.headers.push_back({"Allow", m.allow});
    return r;
  }
  if (!m.found->opts.public_route && tokens_ && !tokens_->empty() &&
      !tokens_->check(req.header("authorization"))) {
    auto r = error_response(401,
                            "missing or invalid bearer token (send "
                            "'Authorization: Bearer <token>')",
                            "authentication_error", "invalid_token");
    r.headers.push_back({"WWW-Authenticate", "Bearer"});
    return r;
  }
  return std::nullopt;
}

std::optional<response> router::check_head(const request& req) const {
  auto m = match(req);
  auto r = refusal(req, m);
  if (r) record(m.label, req, r->status, std::chrono::steady_clock::now());
  return r;
}

void router::record(const std::string& label, const request& req, int status,
                    std::chrono::steady_clock::time_point start) const {
  if (metrics_) {
    metrics_->request_started();
    metrics_->request_finished(label, status);
  }
  if (access_log_) log_line(req.method, req.path, status, start, {});
}

void router::handle(request req, std::shared_ptr<responder> res) const {
  auto m = match(req);
  if (metrics_ || access_log_)
    res = std::make_shared<counting_responder>(
        std::move(res), metrics_, m.label, req.method, req.path, access_log_);
  if (auto r = refusal(req, m)) {
    res->send(std::move(*r));
    return;
  }
  req.route = m.found->pattern;
  req.params = std::move(m.params);
  m.found->fn(std::move(req), std::move(res));
}

handler router::as_handler(std::shared_ptr<const router> r) {
  return [r = std::move(r)](request req, std::shared_ptr<responder> res) {
    r->handle(std::move(req), std::move(res));
  };
}

head_check router::as_head_check(std::shared_ptr<const router> r) {
  return [r = std::move(r)](const request& req) { return r->check_head(req); };
}

} // namespace maritaca::gateway
