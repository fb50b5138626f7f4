#pragma once

/// @file
/// Fault injection: the grammar of `x-sim-fault` values
/// (`kind[;param=value]...`), one-shot faults keyed by the client and
/// random faults drawn with `--fail-rate`.

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace maritaca::sim {

/// What a fault does to one exchange.
enum class fault_kind {
  /// No fault: answer normally.
  none,
  /// Answer with an error status (`status`) and a JSON error body.
  status,
  /// Close the socket with RST before any response byte.
  reset_before,
  /// Send the head and part of the body (half of a stream), then RST.
  reset_mid,
  /// Read the request and never answer (until the client leaves or the
  /// stall bound passes).
  stall_first,
  /// Send the head and part of the body, then go silent, socket open.
  stall_mid,
  /// 200 with a malformed JSON body; in streams a malformed data event
  /// after some good chunks.
  bad_json,
  /// A stream that ends (connection closed) without `data: [DONE]`.
  no_done,
  /// A stream that sends some chunks, then a `data: {"error": ...}` event.
  error_mid,
};

/// One parsed fault specification.
struct fault {
  /// What happens.
  fault_kind kind = fault_kind::none;
  /// HTTP status, for `fault_kind::status`.
  int status = 0;
  /// `Retry-After` header in seconds, or -1 for none.
  int64_t retry_after_s = -1;
  /// `retry-after-ms` header, or -1 for none.
  int64_t retry_after_ms = -1;
  /// `x-should-retry` header: 1 true, 0 false, -1 absent.
  int should_retry = -1;
  /// Error body in OpenAI shape (`{"error": {...}}`) instead of FastAPI's.
  bool openai_shape = false;
  /// How long a stall lasts at most in ms, or -1 for the default.
  int64_t stall_ms = -1;
  /// For `x-sim-fault-once`: the client's key.
  std::string key;
  /// For `x-sim-fault-once`: how many requests with `key` get the fault.
  int64_t times = 1;

  /// Returns whether this is a fault at all.
  explicit operator bool() const noexcept { return kind != fault_kind::none; }
};

/// Returns the name of `x` as used in fault specifications.
std::string_view to_string(fault_kind x) noexcept;

/// Parses `kind[;param=value]...`. Kinds: an HTTP status 400..599 (e.g.
/// `429`, `500`, `503`), `reset-before`, `reset-mid`, `stall-first`,
/// `stall-mid`, `bad-json`, `no-done`, `error-mid`. Params: `retry-after`
/// (s), `retry-after-ms`, `should-retry` (true|false), `shape`
/// (detail|openai), `ms` (stall bound), `key` and `times` (for
/// `x-sim-fault-once`). Returns false and describes the problem in `error`.
bool parse_fault(std::string_view text, fault& out, std::string& error);

/// Parses a comma-separated list of fault specifications (`--fail-kinds`).
bool parse_fault_list(std::string_view text, std::vector<fault>& out,
                      std::string& error);

/// The default of `--fail-kinds`.
inline constexpr std::string_view default_fail_kinds =
    "429,503,reset-before,reset-mid,stall-first,stall-mid,bad-json";

/// How long random stalls last at most, so chaos cannot hang the server.
inline constexpr int64_t random_stall_ms = 30'000;

/// How long stalls asked for by header last at most (the client normally
/// gives up long before).
inline constexpr int64_t header_stall_ms = 600'000;

/// Shared fault state of a server: one-shot keys and the random source.
class fault_table {
public:
  /// Faults drawn with probability `rate` among `kinds`, from `seed`.
  fault_table(double rate, std::vector<fault> kinds, uint64_t seed);

  /// Counts a request carrying one-shot key `key`; returns whether it is
  /// among the first `times` and so gets the fault.
  bool take_once(const std::string& key, int64_t times);

  /// Draws the random fault of a request whose body hashes to `body_hash`
  /// (none when `--fail-rate` is 0). Mixes the seed, the body and a request
  /// counter, so a run with one client is reproducible.
  fault draw(uint64_t body_hash);

private:
  double rate_;
  std::vector<fault> kinds_;
  uint64_t seed_;
  std::atomic<uint64_t> counter_{0};
  std::mutex once_mtx_;
  std::unordered_map<std::string, int64_t> once_seen_;
};

} // namespace maritaca::sim
