// Fuzzes the gateway's request path without sockets: raw bytes go through
// the bounded request parser with the gateway's limits and a read buffer
// bounded as server.cpp bounds it (pipelined requests included), through
// the framing rules (apps/http_guard) and the head check (router::
// check_head, before any body), become gateway::request values the way
// server.cpp makes them, and are routed by the gateway's router (token
// check, metrics) to handlers that run the same body validation as the
// real routes (service.cpp) but answer at once instead of asking upstream.
//
// Checks: exactly one response per request, a sane status, a valid JSON
// body, error bodies in the OpenAI shape, protected handlers only run with
// the right bearer token, the token is never echoed unless sent elsewhere,
// header values hold no CR/LF/NUL, the metrics stay well-formed; the head
// check answers only 401/404/405 and never runs a handler; a request the
// framing rules let through has one way to its length (a lone chunked or a
// Content-Length); the parser never needs more buffered bytes than the
// bound, and a head it accepts is within the head limit.

#include "beast_request.hpp"
#include "codec.hpp"
#include "maritaca/apps/http_guard.hpp"
#include "maritaca/gateway/http.hpp"
#include "maritaca/gateway/metrics.hpp"
#include "maritaca/gateway/router.hpp"
#include "maritaca/transport/bounded_parser.hpp"
#include "maritaca/transport/wire.hpp"

#include "fuzz_util.hpp"

#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/http.hpp>
#include <rapidjson/document.h>

#include <cctype>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

using namespace maritaca;
using namespace maritaca::gateway;
namespace http = boost::beast::http;

namespace {

constexpr std::string_view token = "fuzz-secret-token";

/// What happened to the request being handled.
struct outcome {
  int responses = 0;
  response sent;
  bool protected_handler_ran = false;
};

outcome* current = nullptr;

class recording_responder : public responder {
public:
  void send(response res) override {
    ++current->responses;
    status_ = res.status;
    current->sent = std::move(res);
  }
  void start_stream(int status, header_list) override {
    ++current->responses;
    status_ = status;
  }
  void write(std::string, std::function<void()> fn) override {
    if (fn) fn();
  }
  void finish() override {}
  void abort() override {}
  void on_disconnect(std::function<void()>) override {}
  int status() const noexcept override { return status_; }

private:
  int status_ = 0;
};

response bad_request(std::string_view message) {
  return error_response(400, message, "invalid_request_error", "bad_request");
}

/// A protected route: records that it ran, then validates like service.cpp.
template <class F>
handler guarded(F f) {
  return [f](request req, std::shared_ptr<responder> res) {
    current->protected_handler_ran = true;
    f(req, *res);
  };
}

std::shared_ptr<metrics> stats = std::make_shared<metrics>();

const router& the_router() {
  static const router r = [] {
    router r;
    r.add("POST", "/ask", guarded([](request& req, responder& res) {
            std::string text;
            if (auto err = detail::parse_text_body(req.body, text);
                !err.empty())
              return res.send(bad_request(err));
            // Some answers are upstream failures, mapped as the gateway does.
            if (text.size() % 7 == 3) {
              failure f;
              f.code = static_cast<errc>(text.size() % 16);
              f.status = text.size() % 5 == 0 ? 429 : 0;
              f.message = text;
              f.retry_after_ms = static_cast<int64_t>(text.size()) - 20;
              return res.send(detail::to_response(detail::map_failure(f)));
            }
            res.send(response::json(200, detail::answer_json(text)));
          }));
    r.add("GET", "/stream", guarded([](request& req, responder& res) {
            auto q = req.query_param("question");
            if (!q || q->empty())
              return res.send(bad_request("missing query parameter"));
            res.send(response::json(200, detail::answer_json(*q)));
          }));
    for (std::string base : {"/v1", "/api"}) {
      r.add("POST", base + "/chat/completions",
            guarded([](request& req, responder& res) {
              chat_request body;
              if (auto err = wire::decode_request(req.body, body))
                return res.send(bad_request(err.message));
              if (auto err = wire::validate_request(body))
                return res.send(bad_request(err.message));
              if (body.n && *body.n > 1)
                return res.send(bad_request("n > 1 is not supported"));
              res.send(response::json(200, wire::encode_request(body)));
            }));
      r.add("GET", base + "/models", guarded([](request&, responder& res) {
              res.send(response::json(200, wire::encode_models({})));
            }));
    }
    r.add(
        "GET", "/healthz",
        [](request, std::shared_ptr<responder> res) {
          res->send(response::json(200, "{\"status\":\"ok\"}"));
        },
        route_options{true});
    r.add("POST", "/sessions", guarded([](request& req, responder& res) {
            std::string system;
            int64_t max_history = 0;
            if (auto err =
                    detail::parse_session_body(req.body, system, max_history);
                !err.empty())
              return res.send(bad_request(err));
            res.send(response::json(201, "{\"id\":\"s1\"}"));
          }));
    auto unknown = [](request& req, responder& res) {
      res.send(error_response(
          404, "no session '" + std::string{req.param("id")} + "'",
          "not_found_error", "session_not_found"));
    };
    r.add("POST", "/sessions/{id}/ask",
          guarded([unknown](request& req, responder& res) {
            std::string text;
            if (auto err = detail::parse_text_body(req.body, text);
                !err.empty())
              return res.send(bad_request(err));
            unknown(req, res);
          }));
    r.add("DELETE", "/sessions/{id}", guarded(unknown));
    r.set_tokens(std::make_shared<token_set>(
        std::vector<std::string>{std::string{token}}));
    r.set_metrics(stats);
    return r;
  }();
  return r;
}

bool valid_json(const std::string& s) {
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseValidateEncodingFlag>(s.data(), s.size());
  return !doc.HasParseError();
}

bool contains(std::string_view hay, std::string_view needle) {
  return hay.find(needle) != std::string_view::npos;
}

/// Whether `auth` is `Bearer <token>` (scheme in any case).
bool authorized(std::string_view auth) {
  constexpr std::string_view scheme = "bearer ";
  if (auth.size() <= scheme.size()) return false;
  for (std::size_t i = 0; i < scheme.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(auth[i])) != scheme[i])
      return false;
  return auth.substr(scheme.size()) == token;
}

/// Routes one parsed request and checks what came back.
void handle(http::request<http::string_body>&& msg) {
  server_options opts; // the gateway's default limits
  if (msg.target().size() > opts.max_url_bytes) return; // 414 in server.cpp
  // As server.cpp's dispatch_request builds it.
  auto req = to_request(std::move(msg), "127.0.0.1:1");

  // Forwarded header values must be safe to put on an upstream request.
  // The token may be echoed only when it was sent outside Authorization.
  std::string echoed = req.method + req.target + req.body;
  for (auto& h : req.headers) {
    FUZZ_CHECK(h.value.find_first_of(std::string_view{"\r\n\0", 3}) ==
               std::string::npos);
    FUZZ_CHECK(h.name.find_first_of(std::string_view{"\r\n\0:", 4}) ==
               std::string::npos);
    echoed += h.name;
    if (!boost::beast::iequals(h.name, "authorization")) echoed += h.value;
  }
  auto auth = std::string{req.header("authorization")};

  outcome out;
  current = &out;
  the_router().handle(req, std::make_shared<recording_responder>());
  current = nullptr;

  FUZZ_CHECK(out.responses == 1);
  auto& res = out.sent;
  FUZZ_CHECK(res.status >= 200 && res.status <= 599);
  FUZZ_CHECK(valid_json(res.body));
  if (res.status >= 400) FUZZ_CHECK(wire::is_error_payload(res.body));
  if (res.status == 401) FUZZ_CHECK(!out.protected_handler_ran);
  if (out.protected_handler_ran) FUZZ_CHECK(authorized(auth));
  if (!contains(echoed, token)) {
    FUZZ_CHECK(!contains(res.body, token));
    for (auto& h : res.headers)
      FUZZ_CHECK(!contains(h.value, token));
  }
  for (auto& h : res.headers) {
    FUZZ_CHECK(h.value.find_first_of(std::string_view{"\r\n\0", 3}) ==
               std::string::npos);
  }
}

/// The bytes of a parsed head's fields as the bounded parser counts them.
std::size_t head_bytes(const http::request<http::string_body>& msg) {
  std::size_t n = 0;
  for (auto& f : msg)
    n += f.name_string().size() + f.value().size() + 4;
  return n;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  std::string_view rest{reinterpret_cast<const char*>(data), size};
  server_options opts;
  auto bound = apps::read_buffer_limit(opts.max_header_bytes);
  // Up to four pipelined requests, each with a fresh parser (as server.cpp).
  for (int i = 0; i < 4 && !rest.empty(); ++i) {
    transport::bounded_parser<true, http::string_body> p;
    p.eager(true);
    p.body_limit(opts.max_body_bytes);
    p.head_limit(opts.max_header_bytes);
    boost::beast::error_code ec;
    // `held` models the read buffer: bytes read but not consumed yet.
    std::size_t held = 0;
    bool head_checked = false;
    bool answered_early = false;
    while (!p.is_done()) {
      if (rest.empty()) return 0; // incomplete: the server waits, times out
      // The server reads at most what fits in its bounded buffer.
      held = std::min(rest.size(), bound);
      auto n = p.put(boost::asio::buffer(rest.data(), held), ec);
      rest.remove_prefix(n);
      if (ec == http::error::need_more) {
        ec = {};
        // A full buffer the parser cannot use: buffer_overflow, 400.
        if (n == 0 && held >= bound) return 0;
        if (n == 0) return 0; // needs more than there is
      } else if (ec) {
        // The server answers 413/431/400 (apps::refusal_for) and closes.
        FUZZ_CHECK(apps::refusal_for(ec, opts.max_body_bytes).has_value());
        return 0;
      }
      if (p.is_header_done() && !head_checked) {
        head_checked = true;
        auto& msg = p.get();
        FUZZ_CHECK(head_bytes(msg) <= opts.max_header_bytes);
        if (msg.target().size() > opts.max_url_bytes) return 0; // 414
        if (auto r = apps::check_framing(msg, msg.version(), p.chunked())) {
          FUZZ_CHECK(r->status == 400);
          return 0; // answered, then closed
        }
        // What passes has one framing: a lone chunked or a length.
        FUZZ_CHECK(
            !(p.chunked() && msg.count(http::field::content_length) > 0));
        auto head = to_request_head(msg, "127.0.0.1:1");
        if (auto early = the_router().check_head(head)) {
          FUZZ_CHECK(early->status == 401 || early->status == 404 ||
                     early->status == 405);
          FUZZ_CHECK(valid_json(early->body));
          // A body pending closes the connection after the answer.
          if (!p.is_done()) return 0;
          answered_early = true;
          break;
        }
      }
    }
    if (!answered_early) handle(p.release());
  }
  // Metrics stay Prometheus text with bounded labels and no secrets.
  auto text = stats->render({});
  FUZZ_CHECK(!contains(text, token));
  std::string_view lines = text;
  while (!lines.empty()) {
    auto eol = lines.find('\n');
    auto line = lines.substr(0, eol);
    FUZZ_CHECK(line.empty() || line.front() == '#' ||
               line.starts_with("maritaca_gateway_"));
    if (eol == std::string_view::npos) break;
    lines.remove_prefix(eol + 1);
  }
  return 0;
}
