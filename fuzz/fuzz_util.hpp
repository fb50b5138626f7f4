#pragma once

// Helpers of the fuzz targets: checks that abort (so libFuzzer saves the
// input) and a byte reader for deriving choices from the input.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

/// Aborts with a message when `cond` does not hold.
#define FUZZ_CHECK(cond)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,    \
                   #cond);                                                     \
      std::abort();                                                            \
    }                                                                          \
  } while (false)

namespace fuzz {

/// Returns whether `s` is well-formed UTF-8 (no surrogates, no overlongs).
inline bool valid_utf8(std::string_view s) {
  auto p = reinterpret_cast<const unsigned char*>(s.data());
  std::size_t n = s.size();
  auto cont = [&](std::size_t i) { return i < n && (p[i] & 0xC0) == 0x80; };
  for (std::size_t i = 0; i < n;) {
    unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
    } else if (c >= 0xC2 && c < 0xE0 && cont(i + 1)) {
      i += 2;
    } else if (c >= 0xE0 && c < 0xF0 && cont(i + 1) && cont(i + 2)) {
      if ((c == 0xE0 && p[i + 1] < 0xA0) || (c == 0xED && p[i + 1] >= 0xA0))
        return false;
      i += 3;
    } else if (c >= 0xF0 && c < 0xF5 && cont(i + 1) && cont(i + 2) &&
               cont(i + 3)) {
      if ((c == 0xF0 && p[i + 1] < 0x90) || (c == 0xF4 && p[i + 1] >= 0x90))
        return false;
      i += 4;
    } else {
      return false;
    }
  }
  return true;
}

/// Cuts `bytes` into pieces whose sizes come from a small pseudo-random
/// generator seeded by `seed` (so the same input always splits the same
/// way). Calls `fn(piece)` for each, in order.
template <class F>
void for_each_piece(std::string_view bytes, uint32_t seed, F&& fn) {
  uint32_t state = seed | 1u;
  while (!bytes.empty()) {
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    // Mostly tiny pieces (line ends and BOMs cut in two), sometimes big.
    std::size_t n =
        (state & 3) == 0 ? (state >> 4) % 4096 + 1 : (state >> 4) % 4 + 1;
    n = n < bytes.size() ? n : bytes.size();
    fn(bytes.substr(0, n));
    bytes.remove_prefix(n);
  }
}

} // namespace fuzz
