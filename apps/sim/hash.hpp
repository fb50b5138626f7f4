#pragma once

/// @file
/// Small deterministic hashes: the simulator derives ids, answers and
/// random faults from them, so the same request always meets the same fate.

#include <cstdint>
#include <string>
#include <string_view>

namespace maritaca::sim {

/// FNV-1a over `bytes`, continuing from `h`.
inline uint64_t fnv1a(std::string_view bytes,
                      uint64_t h = 14695981039346656037ull) noexcept {
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

/// The splitmix64 finalizer: spreads the bits of `x`.
inline uint64_t mix64(uint64_t x) noexcept {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/// Returns `x` as 16 lowercase hex digits.
inline std::string hex64(uint64_t x) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string result(16, '0');
  for (int i = 15; i >= 0; --i, x >>= 4)
    result[static_cast<size_t>(i)] = digits[x & 0xf];
  return result;
}

} // namespace maritaca::sim
