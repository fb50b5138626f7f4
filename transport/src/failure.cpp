#include "maritaca/failure.hpp"

namespace maritaca {

std::string_view to_string(errc x) noexcept {
  switch (x) {
  case errc::none:
    return "none";
  case errc::http_status:
    return "http_status";
  case errc::bad_request:
    return "bad_request";
  case errc::unauthorized:
    return "unauthorized";
  case errc::forbidden:
    return "forbidden";
  case errc::not_found:
    return "not_found";
  case errc::rate_limited:
    return "rate_limited";
  case errc::server_error:
    return "server_error";
  case errc::timeout:
    return "timeout";
  case errc::connect_failed:
    return "connect_failed";
  case errc::tls_failed:
    return "tls_failed";
  case errc::connection_lost:
    return "connection_lost";
  case errc::protocol_error:
    return "protocol_error";
  case errc::cancelled:
    return "cancelled";
  case errc::overloaded:
    return "overloaded";
  case errc::invalid_argument:
    return "invalid_argument";
  case errc::step_limit:
    return "step_limit";
  }
  return "unknown";
}

std::string_view to_string(deadline x) noexcept {
  switch (x) {
  case deadline::none:
    return "none";
  case deadline::connect:
    return "connect";
  case deadline::first_byte:
    return "first_byte";
  case deadline::idle:
    return "idle";
  case deadline::total:
    return "total";
  case deadline::queue:
    return "queue";
  }
  return "unknown";
}

std::string failure::describe() const {
  std::string result{to_string(code)};
  if (status != 0) {
    result += " (HTTP ";
    result += std::to_string(status);
    result += ')';
  }
  if (code == errc::timeout && which != deadline::none) {
    result += " [";
    result += to_string(which);
    result += " deadline]";
  }
  if (!message.empty()) {
    result += ": ";
    result += message;
  }
  if (retry_after_ms >= 0) {
    result += " (retry after ";
    result += std::to_string(retry_after_ms);
    result += " ms)";
  }
  return result;
}

errc errc_from_status(int status) noexcept {
  switch (status) {
  case 400:
  case 422:
    return errc::bad_request;
  case 401:
    return errc::unauthorized;
  case 403:
    return errc::forbidden;
  case 404:
    return errc::not_found;
  case 429:
    return errc::rate_limited;
  default:
    return status >= 500 ? errc::server_error : errc::http_status;
  }
}

failure make_timeout(deadline which, std::string message) {
  auto result = make_failure(errc::timeout, std::move(message));
  result.which = which;
  return result;
}

std::string to_string(const failure& x) {
  return x.describe();
}

void redact(std::string& text, std::string_view secret) {
  constexpr std::string_view mark = "[redacted]";
  if (secret.size() < 6) return;
  for (auto at = text.find(secret); at != std::string::npos;
       at = text.find(secret, at + mark.size()))
    text.replace(at, secret.size(), mark);
}

} // namespace maritaca
