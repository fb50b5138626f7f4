#include "maritaca/messages.hpp"

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
