#pragma once

/// @file
/// What every example shares: where to send asks. `--base-url URL` wins,
/// then `MARITACA_API_BASE`, then the real service when `MARITACA_API_KEY`
/// is set; otherwise the bundled simulator starts in-process (as the
/// `maritaca` CLI does), so the examples run without network access.

#include "maritaca/options.hpp"

#include "maritaca/sim/server.hpp"

#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <string_view>

namespace maritaca::examples {

/// Returns the value of environment variable `name`, or "" when unset.
inline std::string env_or_empty(const char* name) {
  auto value = std::getenv(name);
  return value != nullptr ? value : "";
}

/// Returns the configuration of an example run with `argv`. Starts the
/// bundled simulator into `sim` when there is neither a base URL nor a key;
/// exits with status 2 on a bad command line.
inline model_config example_config(int argc, char** argv,
                                   std::unique_ptr<sim::server>& sim) {
  auto cfg = model_config::from_env();
  std::string base_url;
  for (int i = 1; i < argc; ++i) {
    if (std::string_view{argv[i]} != "--base-url" || i + 1 == argc) {
      std::cerr << "usage: " << argv[0] << " [--base-url URL]\n";
      std::exit(2);
    }
    base_url = argv[++i];
  }
  if (base_url.empty()) base_url = env_or_empty("MARITACA_API_BASE");
  if (base_url.empty() && env_or_empty("MARITACA_API_KEY").empty()) {
    sim::options opts;
    opts.threads = 1;
    sim = std::make_unique<sim::server>(opts);
    base_url = sim->start();
    std::cerr << "(using the bundled simulator at " << base_url << ")\n";
  }
  if (!base_url.empty()) cfg.base_url = base_url;
  return cfg;
}

} // namespace maritaca::examples
