// Error handling: every failure is a caf::error of the `maritaca` category;
// code_of() says what went wrong, to_failure() carries the details (HTTP
// status, retry-after, which deadline).

#include "example_support.hpp"

#include "maritaca/chat_model.hpp"

#include <iostream>
#include <string>

namespace {

// [safe-invoke]
std::string safe_invoke(const maritaca::chat_model& model,
                        maritaca::input message) {
  auto response = model.ainvoke(std::move(message)).get();
  if (response) return response->content();
  auto& err = response.error();
  auto details = maritaca::to_failure(err);
  switch (maritaca::code_of(err)) {
  case maritaca::errc::timeout:
    return "Timeout (" + std::string{to_string(details.which)} + " deadline)";
  case maritaca::errc::rate_limited:
    return "Rate limited, retry after " +
           std::to_string(details.retry_after_ms) + " ms";
  default:
    if (details.status != 0)
      return "HTTP error: " + std::to_string(details.status);
    return "Error: " + maritaca::describe(err);
  }
}
// [safe-invoke]

} // namespace

int main(int argc, char** argv) {
  std::unique_ptr<maritaca::sim::server> sim;
  auto cfg = maritaca::examples::example_config(argc, argv, sim);
  maritaca::chat_model model{cfg};
  std::cout << "hello:         " << safe_invoke(model, "Hello!") << '\n';

  // [not-found]
  // An unknown model: the service answers 404 (errc::not_found).
  auto unknown = model.with_config(cfg.with_model("sabia-unknown"));
  std::cout << "unknown model: " << safe_invoke(unknown, "Hello!") << '\n';
  // [not-found]

  if (!sim) {
    std::cout << "(fault injection needs the bundled simulator)\n";
    return 0;
  }

  // [server-error]
  // The simulator fails every attempt with 503; 5xx answers are retried
  // (retry.max_retries, default 2) before the error reaches the caller.
  auto failing_cfg = cfg;
  failing_cfg.extra_headers.push_back({"x-sim-fault", "503"});
  failing_cfg.retry.initial_backoff = std::chrono::milliseconds{50};
  auto failing = model.with_config(failing_cfg);
  std::cout << "503:           " << safe_invoke(failing, "Hello!") << '\n';
  // [server-error]

  // [timeout]
  // The simulator never answers; the first-byte deadline ends the attempt.
  auto stalled_cfg = cfg;
  stalled_cfg.extra_headers.push_back({"x-sim-fault", "stall-first"});
  stalled_cfg.timeouts.first_byte = std::chrono::milliseconds{300};
  stalled_cfg.retry.max_retries = 0;
  auto stalled = model.with_config(stalled_cfg);
  std::cout << "stall:         " << safe_invoke(stalled, "Hello!") << '\n';
  // [timeout]

  // [rate-limited]
  // 429 with retry-after-ms: without retries the wait is the caller's.
  auto limited_cfg = cfg;
  limited_cfg.extra_headers.push_back(
      {"x-sim-fault", "429;retry-after-ms=250"});
  limited_cfg.retry.max_retries = 0;
  auto limited = model.with_config(limited_cfg);
  std::cout << "429:           " << safe_invoke(limited, "Hello!") << '\n';
  // [rate-limited]
  return 0;
}
