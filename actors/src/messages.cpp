#include "maritaca/messages.hpp"

#include "maritaca/error.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>

namespace maritaca {

std::string normalize_role(std::string role) {
  if (role == "human") return "user";
  if (role == "ai") return "assistant";
  return role;
}

input::input(std::initializer_list<std::pair<std::string, std::string>> pairs) {
  for (auto& [role, text] : pairs)
    messages.push_back(chat_message::make(normalize_role(role), text));
}

input::input(const std::vector<std::pair<std::string, std::string>>& pairs) {
  for (auto& [role, text] : pairs)
    messages.push_back(chat_message::make(normalize_role(role), text));
}

uint64_t next_request_id() noexcept {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

model_config model_config::from_env() {
  model_config result;
  if (auto key = std::getenv("MARITACA_API_KEY"); key != nullptr)
    result.api_key = key;
  if (auto base = std::getenv("MARITACA_API_BASE"); base != nullptr && *base)
    result.base_url = base;
  // The proxy variables as curl and httpx read them (upper case first).
  auto env = [](const char* upper, const char* lower) -> std::string {
    for (auto name : {upper, lower})
      if (auto x = std::getenv(name); x != nullptr && *x) return x;
    return {};
  };
  result.proxy = env("HTTPS_PROXY", "https_proxy");
  auto list = env("NO_PROXY", "no_proxy");
  for (std::size_t pos = 0; pos <= list.size();) {
    auto comma = std::min(list.find(',', pos), list.size());
    auto item = list.substr(pos, comma - pos);
    // Entries may carry spaces around the commas.
    auto first = item.find_first_not_of(" \t");
    if (first != std::string::npos)
      result.no_proxy.push_back(
          item.substr(first, item.find_last_not_of(" \t") - first + 1));
    pos = comma + 1;
  }
  return result;
}

namespace {

std::string join_url(const std::string& base, const char* suffix) {
  auto result = base;
  while (!result.empty() && result.back() == '/')
    result.pop_back();
  result += suffix;
  return result;
}

} // namespace

std::string completions_url(const std::string& base_url) {
  return join_url(base_url, "/chat/completions");
}

std::string models_url(const std::string& base_url) {
  return join_url(base_url, "/models");
}

} // namespace maritaca

// -- printing
// -------------------------------------------------------------------

namespace maritaca {

namespace {

/// `s` quoted, cut after 80 bytes (not inside a UTF-8 sequence).
std::string quoted(std::string_view s) {
  constexpr std::size_t max = 80;
  auto n = std::min(s.size(), max);
  while (n < s.size() && n > 0 &&
         (static_cast<unsigned char>(s[n]) & 0xc0) == 0x80)
    --n;
  std::string out = "\"";
  for (char c : s.substr(0, n)) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  out += '"';
  if (n < s.size()) out += "...";
  return out;
}

} // namespace

std::string to_string(const chat_message& x) {
  auto out = x.role + ": ";
  if (!x.text().empty() || x.tool_calls.empty()) out += quoted(x.text());
  for (std::size_t i = 0; i < x.tool_calls.size(); ++i) {
    auto& call = x.tool_calls[i];
    if (i > 0 || !x.text().empty()) out += ", ";
    out += call.name + "(" + quoted(call.arguments) + ")";
  }
  return out;
}

std::string to_string(const input& x) {
  std::string out = "input([";
  for (std::size_t i = 0; i < x.messages.size(); ++i)
    out += (i > 0 ? ", " : "") + to_string(x.messages[i]);
  return out + "])";
}

std::string to_string(const ai_message& x) {
  auto out = "ai_message(ask " + std::to_string(x.request_id);
  if (!x.model.empty()) out += ", model " + x.model;
  out += ", " + to_string(x.message);
  if (!x.finish_reason.empty()) out += ", " + x.finish_reason;
  if (x.usage)
    out += ", " + std::to_string(x.usage->prompt_tokens) + "+" +
           std::to_string(x.usage->completion_tokens) + " tokens";
  out += ", " + std::to_string(x.attempts) +
         (x.attempts == 1 ? " attempt)" : " attempts)");
  return out;
}

std::string to_string(const chat_chunk& x) {
  auto out = "chat_chunk(ask " + std::to_string(x.request_id) + ", seq " +
             std::to_string(x.seq);
  if (x.index != 0) out += ", choice " + std::to_string(x.index);
  if (!x.content.empty()) out += ", " + quoted(x.content);
  for (auto& d : x.tool_calls)
    out += ", tool call " + std::to_string(d.index) +
           (d.name.empty() ? std::string{} : " " + d.name) +
           (d.arguments.empty() ? std::string{} : " " + quoted(d.arguments));
  if (!x.finish_reason.empty()) out += ", " + x.finish_reason;
  if (x.usage)
    out += ", usage " + std::to_string(x.usage->prompt_tokens) + "+" +
           std::to_string(x.usage->completion_tokens);
  return out + ")";
}

std::string to_string(const stream_done& x) {
  return "stream_done(ask " + std::to_string(x.request_id) + ", " +
         to_string(x.message) + ")";
}

std::string to_string(const stream_failed& x) {
  return "stream_failed(ask " + std::to_string(x.request_id) + ", " +
         describe(x.error) + ")";
}

std::string to_string(const ask& x) {
  auto out = "ask(id " + std::to_string(x.id) + ", lane " +
             std::to_string(x.lane) + ", model " + x.body.model + ", " +
             std::to_string(x.body.messages.size()) +
             (x.body.messages.size() == 1 ? " message" : " messages");
  if (!x.subscribers.empty())
    out += ", stream to " + std::to_string(x.subscribers.size());
  if (!x.options.headers.empty())
    out += ", " + std::to_string(x.options.headers.size()) + " extra headers";
  return out + ")";
}

std::string to_string(const dispatcher_stats& x) {
  return "dispatcher_stats(in_flight " + std::to_string(x.in_flight) +
         ", max_in_flight " + std::to_string(x.max_in_flight) + ", queued " +
         std::to_string(x.queued) + ", admitted " + std::to_string(x.admitted) +
         ", completed " + std::to_string(x.completed) + ", rejected " +
         std::to_string(x.rejected) + ", cancelled " +
         std::to_string(x.cancelled) + ", timed_out " +
         std::to_string(x.timed_out) + ", cluster " + to_string(x.cluster) +
         ")";
}

} // namespace maritaca
