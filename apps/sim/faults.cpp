#include "maritaca/sim/faults.hpp"

#include "hash.hpp"

#include <charconv>

namespace maritaca::sim {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

bool parse_int(std::string_view s, int64_t& out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && end == s.data() + s.size();
}

bool parse_kind(std::string_view name, fault& out) {
  struct entry {
    std::string_view name;
    fault_kind kind;
  };
  static constexpr entry named[] = {
      {"reset-before", fault_kind::reset_before},
      {"reset-mid", fault_kind::reset_mid},
      {"stall-first", fault_kind::stall_first},
      {"stall-mid", fault_kind::stall_mid},
      {"bad-json", fault_kind::bad_json},
      {"no-done", fault_kind::no_done},
      {"error-mid", fault_kind::error_mid},
  };
  for (auto& e : named) {
    if (e.name == name) {
      out.kind = e.kind;
      return true;
    }
  }
  int64_t code = 0;
  if (parse_int(name, code) && code >= 400 && code <= 599) {
    out.kind = fault_kind::status;
    out.status = static_cast<int>(code);
    return true;
  }
  return false;
}

} // namespace

std::string_view to_string(fault_kind x) noexcept {
  switch (x) {
  case fault_kind::none:
    return "none";
  case fault_kind::status:
    return "status";
  case fault_kind::reset_before:
    return "reset-before";
  case fault_kind::reset_mid:
    return "reset-mid";
  case fault_kind::stall_first:
    return "stall-first";
  case fault_kind::stall_mid:
    return "stall-mid";
  case fault_kind::bad_json:
    return "bad-json";
  case fault_kind::no_done:
    return "no-done";
  case fault_kind::error_mid:
    return "error-mid";
  }
  return "?";
}

bool parse_fault(std::string_view text, fault& out, std::string& error) {
  out = fault{};
  auto rest = trim(text);
  auto semi = rest.find(';');
  auto kind = trim(rest.substr(0, semi));
  if (!parse_kind(kind, out)) {
    error = "unknown fault kind '" + std::string{kind} + "'";
    return false;
  }
  while (semi != std::string_view::npos) {
    rest.remove_prefix(semi + 1);
    semi = rest.find(';');
    auto param = trim(rest.substr(0, semi));
    if (param.empty()) continue;
    auto eq = param.find('=');
    if (eq == std::string_view::npos) {
      error = "fault parameter '" + std::string{param} + "' lacks '='";
      return false;
    }
    auto key = trim(param.substr(0, eq));
    auto value = trim(param.substr(eq + 1));
    int64_t number = 0;
    bool is_number = parse_int(value, number) && number >= 0;
    if (key == "retry-after" && is_number) {
      out.retry_after_s = number;
    } else if (key == "retry-after-ms" && is_number) {
      out.retry_after_ms = number;
    } else if (key == "ms" && is_number) {
      out.stall_ms = number;
    } else if (key == "times" && is_number && number > 0) {
      out.times = number;
    } else if (key == "should-retry" && (value == "true" || value == "false")) {
      out.should_retry = value == "true" ? 1 : 0;
    } else if (key == "shape" && (value == "detail" || value == "openai")) {
      out.openai_shape = value == "openai";
    } else if (key == "key" && !value.empty()) {
      out.key = std::string{value};
    } else {
      error = "bad fault parameter '" + std::string{param} + "'";
      return false;
    }
  }
  return true;
}

bool parse_fault_list(std::string_view text, std::vector<fault>& out,
                      std::string& error) {
  out.clear();
  while (!text.empty()) {
    auto comma = text.find(',');
    auto item = trim(text.substr(0, comma));
    if (!item.empty()) {
      fault f;
      if (!parse_fault(item, f, error)) return false;
      out.push_back(std::move(f));
    }
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  if (out.empty()) {
    error = "empty fault list";
    return false;
  }
  return true;
}

fault_table::fault_table(double rate, std::vector<fault> kinds, uint64_t seed)
    : rate_(rate), kinds_(std::move(kinds)), seed_(seed) {
  // nop
}

bool fault_table::take_once(const std::string& key, int64_t times) {
  std::lock_guard<std::mutex> guard{once_mtx_};
  // Bound the memory a careless client can make us spend on keys.
  if (once_seen_.size() >= 100'000 && once_seen_.count(key) == 0)
    once_seen_.clear();
  return ++once_seen_[key] <= times;
}

fault fault_table::draw(uint64_t body_hash) {
  if (rate_ <= 0.0 || kinds_.empty()) return {};
  auto n = counter_.fetch_add(1, std::memory_order_relaxed);
  auto h = mix64(seed_ ^ mix64(body_hash ^ mix64(n)));
  // The top 53 bits as a uniform double in [0, 1).
  auto u = static_cast<double>(h >> 11) * 0x1.0p-53;
  if (u >= rate_) return {};
  auto result = kinds_[mix64(h) % kinds_.size()];
  if (result.stall_ms < 0) result.stall_ms = random_stall_ms;
  return result;
}

} // namespace maritaca::sim
