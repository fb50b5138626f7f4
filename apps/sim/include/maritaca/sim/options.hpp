#pragma once

/// @file
/// Command-line options of maritaca-sim.

#include "maritaca/sim/faults.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace maritaca::sim {

/// Everything the simulator can be told on its command line.
struct options {
  /// Host (name or address) to listen on.
  std::string host = "127.0.0.1";
  /// Port to listen on; 0 picks an ephemeral one.
  uint16_t port = 0;
  /// Threads running the io_context; 0 means hardware_concurrency.
  unsigned threads = 0;
  /// PEM certificate chain; with `tls_key`, serve HTTPS.
  std::string tls_cert;
  /// PEM private key.
  std::string tls_key;
  /// When not empty, chat and models require this key.
  std::string api_key;
  /// Default delay between stream chunks.
  int64_t token_delay_ms = 0;
  /// Probability (0..1) that a chat request gets a random fault.
  double fail_rate = 0.0;
  /// The faults random faults are drawn from.
  std::vector<fault> fail_kinds;
  /// Seed of the random faults.
  uint64_t seed = 0;
  /// Seconds an idle keep-alive connection stays open.
  int64_t idle_timeout_s = 30;
  /// Log connection errors to stderr.
  bool verbose = false;
};

/// Outcome of `parse_options`.
enum class parse_result {
  /// Run with the parsed options.
  run,
  /// `--help` was given: print `usage()` and exit 0.
  help,
  /// A bad flag: print the error and exit 2.
  error,
};

/// Parses `argv`; on `parse_result::error`, `error` says what is wrong.
parse_result parse_options(int argc, char** argv, options& out,
                           std::string& error);

/// Returns the text `--help` prints.
std::string usage();

} // namespace maritaca::sim
