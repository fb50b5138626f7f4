#include "maritaca/messages.hpp"

#include <atomic>
#include <cstdlib>

namespace maritaca {

std::string normalize_role(std::string role) {
  if (role == "human")
    return "user";
  if (role == "ai")
    return "assistant";
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
