/// @file
/// maritaca-sim: a Maritaca-compatible chat API server with deterministic
/// answers and fault injection (see `--help`).

#include "options.hpp"
#include "server.hpp"

#include <cstdio>
#include <exception>
#include <iostream>

int main(int argc, char** argv) {
  maritaca::sim::options opts;
  std::string error;
  switch (maritaca::sim::parse_options(argc, argv, opts, error)) {
  case maritaca::sim::parse_result::help:
    std::cout << maritaca::sim::usage();
    return 0;
  case maritaca::sim::parse_result::error:
    std::cerr << "maritaca-sim: " << error << " (see --help)\n";
    return 2;
  case maritaca::sim::parse_result::run:
    break;
  }
  try {
    maritaca::sim::server srv{std::move(opts)};
    auto url = srv.start();
    // The one stdout line: whoever started us waits for it.
    std::printf("%s\n", url.c_str());
    std::fflush(stdout);
    srv.run_until_signal();
  } catch (const std::exception& e) {
    std::cerr << "maritaca-sim: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
