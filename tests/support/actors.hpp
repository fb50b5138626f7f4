#pragma once

/// @file
/// Test support for the actor layer: a chat model configured for a running
/// maritaca-sim, and the simulator's counters.

#include "maritaca/chat_model.hpp"
#include "support/process.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include <cstdint>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>

namespace maritaca::test {

/// A model configuration for `sim`: no key, short backoffs, bounded deadlines.
inline model_config sim_config(const sim_process& sim) {
  model_config cfg;
  cfg.base_url = sim.base_url();
  cfg.api_key.clear();
  cfg.retry.initial_backoff = std::chrono::milliseconds{20};
  cfg.retry.max_backoff = std::chrono::milliseconds{200};
  cfg.timeouts.connect = std::chrono::milliseconds{2'000};
  cfg.timeouts.first_byte = std::chrono::milliseconds{10'000};
  cfg.timeouts.idle = std::chrono::milliseconds{10'000};
  cfg.timeouts.total = std::chrono::milliseconds{30'000};
  cfg.ask_timeout = std::chrono::milliseconds{60'000};
  return cfg;
}

/// Returns `cfg` with one extra header.
inline model_config with_header(model_config cfg, std::string name,
                                std::string value) {
  cfg.extra_headers.push_back({std::move(name), std::move(value)});
  return cfg;
}

/// The answers of a fault-free `sim` to prompts `prompt(0)` ..
/// `prompt(count - 1)`, by prompt (the simulator is deterministic: a prompt
/// always gets the same answer). Throws when one cannot be had.
template <class Prompt>
std::map<std::string, std::string> reference_answers(caf::actor_system& sys,
                                                     const sim_process& sim,
                                                     int count, Prompt prompt) {
  chat_model reference{sys, sim_config(sim)};
  std::map<std::string, std::string> result;
  for (int i = 0; i < count; ++i) {
    auto r = reference.invoke(prompt(i));
    if (!r)
      throw std::runtime_error("no reference answer: " +
                               to_failure(r.error()).message);
    result[prompt(i)] = r->content();
  }
  return result;
}

/// An actor system configured for maritaca.
struct test_system {
  caf::actor_system_config cfg;
  caf::actor_system sys;

  test_system() : sys(init(cfg)) {}

  static caf::actor_system_config& init(caf::actor_system_config& cfg) {
    configure(cfg);
    return cfg;
  }
};

} // namespace maritaca::test
