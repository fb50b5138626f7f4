/// @file
/// The gateway's own JSON bodies and the failure-to-HTTP mapping.

#include "codec.hpp"

#include "maritaca/gateway/router.hpp"
#include "maritaca/transport/wire.hpp"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

namespace maritaca::gateway::detail {

namespace {

/// Parses `body` as a JSON object into `doc`; returns what is wrong or "".
std::string parse_object(std::string_view body, rapidjson::Document& doc) {
  doc.Parse(body.data(), body.size());
  if (doc.HasParseError())
    return std::string{"body is not valid JSON: "} +
           rapidjson::GetParseError_En(doc.GetParseError()) + " (at byte " +
           std::to_string(doc.GetErrorOffset()) + ")";
  if (!doc.IsObject()) return "body must be a JSON object";
  return {};
}

} // namespace

std::string parse_text_body(std::string_view body, std::string& text) {
  rapidjson::Document doc;
  if (auto err = parse_object(body, doc); !err.empty()) return err;
  auto i = doc.FindMember("text");
  if (i == doc.MemberEnd())
    return "missing field 'text' (expected {\"text\": \"...\"})";
  if (!i->value.IsString()) return "field 'text' must be a string";
  if (i->value.GetStringLength() == 0) return "field 'text' must not be empty";
  text.assign(i->value.GetString(), i->value.GetStringLength());
  return {};
}

std::string parse_session_body(std::string_view body, std::string& system,
                               int64_t& max_history_tokens) {
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) return {};
  rapidjson::Document doc;
  if (auto err = parse_object(body, doc); !err.empty()) return err;
  if (auto i = doc.FindMember("system"); i != doc.MemberEnd()) {
    if (!i->value.IsString()) return "field 'system' must be a string";
    system.assign(i->value.GetString(), i->value.GetStringLength());
  }
  if (auto i = doc.FindMember("max_history_tokens"); i != doc.MemberEnd()) {
    if (!i->value.IsInt64() || i->value.GetInt64() < 0)
      return "field 'max_history_tokens' must be a non-negative integer";
    max_history_tokens = i->value.GetInt64();
  }
  return {};
}

std::string answer_json(std::string_view answer) {
  std::string out = "{\"answer\":";
  wire::append_json_string(out, answer);
  out += "}";
  return out;
}

std::string_view error_type(int status) noexcept {
  switch (status) {
  case 400:
  case 404:
  case 405:
  case 409:
  case 413:
  case 414:
  case 422:
  case 431:
    return status == 404 ? "not_found_error" : "invalid_request_error";
  case 401:
    return "authentication_error";
  case 403:
    return "permission_error";
  case 429:
    return "rate_limit_error";
  default:
    return status >= 500 ? "server_error" : "invalid_request_error";
  }
}

http_error map_failure(const failure& f) {
  http_error e;
  e.code = std::string{to_string(f.code)};
  e.retry_after_ms = f.retry_after_ms;
  if (f.code == errc::unauthorized || f.code == errc::forbidden) {
    // The upstream refused the gateway's own key: to a client, 401/403
    // would say that its gateway token is wrong.
    e.status = 502;
    e.code = "upstream_auth_failed";
    e.message = "the upstream refused the gateway's API key (HTTP " +
                std::to_string(f.status != 0 ? f.status : 401) +
                "); the gateway's operator must check --api-key-file or "
                "MARITACA_API_KEY";
  } else if (f.status >= 400 && f.status <= 599) {
    // The upstream answered with an error: same status for the client.
    e.status = f.status;
    e.message = "upstream: " + (f.message.empty() ? e.code : f.message);
  } else {
    switch (f.code) {
    case errc::timeout:
      e.status = 504;
      break;
    case errc::overloaded:
      e.status = 503;
      if (e.retry_after_ms < 0) e.retry_after_ms = 1000;
      break;
    case errc::cancelled:
      e.status = 503;
      break;
    case errc::invalid_argument:
    case errc::bad_request:
      e.status = 400;
      break;
    case errc::step_limit:
      e.status = 500;
      break;
    case errc::not_found:
      e.status = 404;
      break;
    case errc::rate_limited:
      e.status = 429;
      break;
    default:
      // connect_failed, tls_failed, connection_lost, protocol_error, ...
      e.status = 502;
      break;
    }
    e.message = "upstream " + e.code +
                (f.message.empty() ? std::string{} : ": " + f.message);
  }
  e.type = std::string{error_type(e.status)};
  return e;
}

response to_response(const http_error& e) {
  auto res = error_response(e.status, e.message, e.type, e.code);
  if (e.retry_after_ms >= 0) {
    res.headers.push_back(
        {"Retry-After", std::to_string((e.retry_after_ms + 999) / 1000)});
    res.headers.push_back({"retry-after-ms", std::to_string(e.retry_after_ms)});
  }
  return res;
}

} // namespace maritaca::gateway::detail
