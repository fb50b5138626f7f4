#pragma once

/// @file
/// Internal: a token bucket refilled continuously and the rate budget of
/// asks made of two, shared by the dispatcher (local rate limits) and the
/// cluster limiter (global ones).

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace maritaca::detail {

/// A token bucket refilled continuously: `capacity` per minute.
class bucket {
public:
  /// The clock of refills.
  using clock_type = std::chrono::steady_clock;

  /// A bucket of `capacity` per minute; 0 or less: unlimited.
  explicit bucket(double capacity = 0) : capacity_(capacity), level_(capacity) {
    last_ = clock_type::now();
  }

  /// Returns whether the bucket never limits.
  bool unlimited() const noexcept { return capacity_ <= 0; }

  /// Refills, then returns how long until `amount` is available (0: now).
  std::chrono::milliseconds wait_for(double amount) {
    if (unlimited()) return std::chrono::milliseconds{0};
    refill();
    // An ask larger than the whole bucket waits for a full bucket only.
    amount = std::min(amount, capacity_);
    if (level_ >= amount) return std::chrono::milliseconds{0};
    auto per_ms = capacity_ / 60'000.0;
    return std::chrono::milliseconds{
        static_cast<int64_t>((amount - level_) / per_ms) + 1};
  }

  /// Takes `amount` (the level may go below zero).
  void take(double amount) {
    if (!unlimited()) level_ -= amount;
  }

  /// Returns `amount`, up to the capacity.
  void give_back(double amount) {
    if (!unlimited()) level_ = std::min(capacity_, level_ + amount);
  }

  /// Replaces `taken`, an estimate taken earlier, by what was really
  /// `used`: gives back the difference or takes the rest.
  void settle(double taken, double used) {
    if (taken > used)
      give_back(taken - used);
    else
      take(used - taken);
  }

private:
  void refill() {
    auto now = clock_type::now();
    auto ms = std::chrono::duration<double, std::milli>(now - last_).count();
    last_ = now;
    level_ = std::min(capacity_, level_ + ms * capacity_ / 60'000.0);
  }

  double capacity_;
  double level_;
  clock_type::time_point last_;
};

/// The rate limits an ask passes: requests per minute and tokens per
/// minute (the dispatcher's local limits, the cluster limiter's global
/// ones). An ask takes one request and an estimate of its tokens, settled
/// against what it really used once it ends.
class rate_budget {
public:
  /// Limits per minute; 0 or less: unlimited.
  explicit rate_budget(double requests_per_minute = 0,
                       double tokens_per_minute = 0)
      : requests_(requests_per_minute), tokens_(tokens_per_minute) {
    // nop
  }

  /// How long until an ask of `tokens` fits both limits (0: now).
  std::chrono::milliseconds wait_for(double tokens) {
    return std::max(requests_.wait_for(1), tokens_.wait_for(tokens));
  }

  /// Takes one ask of `tokens`.
  void take(double tokens) {
    requests_.take(1);
    tokens_.take(tokens);
  }

  /// Replaces the estimate `taken` of an ended ask by the tokens it `used`.
  void settle(double taken, double used) { tokens_.settle(taken, used); }

private:
  bucket requests_;
  bucket tokens_;
};

} // namespace maritaca::detail
