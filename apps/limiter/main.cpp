/// @file
/// maritaca-limiter: holds one cluster limiter (see docs/cluster.md) and
/// publishes it with CAF's middleman; gateways and programs join it with
/// `--cluster-join HOST:PORT`. Prints "HOST:PORT" (the port it got) as its
/// first stdout line, serves until SIGINT or SIGTERM.

#include "maritaca/chat_model.hpp"
#include "maritaca/limiter.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

namespace {

const char* usage_text = R"(usage: maritaca-limiter [options]

Holds the limiter of a maritaca cluster: at most N requests at once (and
optionally per minute) in every process that joins it with --cluster-join.
Prints HOST:PORT as the first stdout line; stops on SIGINT or SIGTERM.

  --listen HOST:PORT         address to publish on (127.0.0.1:0; port 0
                             picks a free one)
  --max-concurrency N        requests at once in the cluster (16)
  --requests-per-minute N    requests per minute in the cluster (0: no limit)
  --tokens-per-minute N      tokens per minute in the cluster (0: no limit)
  --lease-ttl S              a lease not renewed this long comes back (10)
  -h, --help                 this text
)";

/// A bad command line: one line on stderr, exit 2.
int usage_error(const std::string& what) {
  std::cerr << "maritaca-limiter: " << what << " (see --help)\n";
  return 2;
}

/// Parses a non-negative integer; false on junk.
bool parse_count(const std::string& text, uint64_t& out) {
  if (text.empty() ||
      text.find_first_not_of("0123456789") != std::string::npos ||
      text.size() > 12)
    return false;
  out = std::stoull(text);
  return true;
}

} // namespace

int main(int argc, char** argv) {
  std::string listen = "127.0.0.1:0";
  maritaca::limiter_config lc;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "-h" || flag == "--help") {
      std::cout << usage_text;
      return 0;
    }
    if (i + 1 >= argc)
      return usage_error("unknown option or missing value '" + flag + "'");
    std::string value = argv[++i];
    uint64_t n = 0;
    if (flag == "--listen") {
      std::string host;
      uint16_t port = 0;
      if (!maritaca::parse_host_port(value, host, port))
        return usage_error("bad value '" + value + "' for --listen");
      listen = value;
    } else if (flag == "--max-concurrency") {
      if (!parse_count(value, n) || n == 0)
        return usage_error("bad value '" + value + "' for " + flag);
      lc.max_concurrency = n;
    } else if (flag == "--requests-per-minute") {
      if (!parse_count(value, n) || n > UINT32_MAX)
        return usage_error("bad value '" + value + "' for " + flag);
      lc.requests_per_minute = static_cast<uint32_t>(n);
    } else if (flag == "--tokens-per-minute") {
      if (!parse_count(value, n))
        return usage_error("bad value '" + value + "' for " + flag);
      lc.tokens_per_minute = n;
    } else if (flag == "--lease-ttl") {
      char* end = nullptr;
      auto s = std::strtod(value.c_str(), &end);
      if (end == value.c_str() || *end != '\0' || !std::isfinite(s) || s <= 0)
        return usage_error("bad value '" + value + "' for " + flag);
      lc.lease_ttl = std::chrono::milliseconds{std::llround(s * 1000)};
    } else {
      return usage_error("unknown option '" + flag + "'");
    }
  }
  // Block the stop signals before any thread starts, then wait for them.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  caf::actor_system_config cfg;
  maritaca::configure(cfg);
  maritaca::configure_cluster(cfg);
  caf::actor_system sys{cfg};
  auto limiter = maritaca::spawn_limiter(sys, lc);
  auto port = maritaca::publish_limiter(sys, limiter, listen);
  if (!port) {
    std::cerr << "maritaca-limiter: cannot publish on " << listen << ": "
              << sys.render(port.error()) << '\n';
    caf::anon_send_exit(limiter, caf::exit_reason::user_shutdown);
    return 1;
  }
  // The one stdout line: whoever started us waits for it.
  std::printf("%s:%u\n", listen.substr(0, listen.rfind(':')).c_str(),
              static_cast<unsigned>(*port));
  std::fflush(stdout);
  int sig = 0;
  sigwait(&stop, &sig);
  caf::anon_send_exit(limiter, caf::exit_reason::user_shutdown);
  return 0;
}
