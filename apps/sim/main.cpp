/// @file
/// maritaca-sim: a Maritaca-compatible chat API server with deterministic
/// answers and fault injection (see `--help`).

#include "maritaca/sim/options.hpp"
#include "maritaca/sim/server.hpp"

#include <pthread.h>
#include <signal.h>

#include <csignal>
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
  // Block the stop signals before any thread starts (threads inherit the
  // mask), so that they can only arrive through sigwait below, even right
  // after the URL line.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  try {
    maritaca::sim::server srv{std::move(opts)};
    auto url = srv.start();
    // The one stdout line: whoever started us waits for it.
    std::printf("%s\n", url.c_str());
    std::fflush(stdout);
    int caught = 0;
    sigwait(&stop_signals, &caught);
    srv.stop();
  } catch (const std::exception& e) {
    std::cerr << "maritaca-sim: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
