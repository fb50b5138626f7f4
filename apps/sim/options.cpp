#include "maritaca/sim/options.hpp"

#include "maritaca/apps/flags.hpp"

#include <cstdlib>
#include <string_view>

namespace maritaca::sim {

namespace {

using apps::parse_number;

bool parse_rate(const std::string& s, double& out) {
  char* end = nullptr;
  auto value = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size() || !(value >= 0.0) ||
      value > 1.0)
    return false;
  out = value;
  return true;
}

/// Splits "HOST:PORT" or "[V6]:PORT".
bool parse_listen(const std::string& s, options& out) {
  auto colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  auto host = s.substr(0, colon);
  if (host.front() == '[') {
    if (host.back() != ']') return false;
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty()) return false;
  uint16_t port = 0;
  if (!parse_number<uint16_t>(std::string_view{s}.substr(colon + 1), port, 0,
                              65535))
    return false;
  out.host = host;
  out.port = port;
  return true;
}

} // namespace

std::string usage() {
  return "usage: maritaca-sim [--listen HOST:PORT] [--threads N]\n"
         "                    [--tls-cert FILE --tls-key FILE] [--api-key K]\n"
         "                    [--token-delay-ms N] [--fail-rate P]\n"
         "                    [--fail-kinds LIST] [--seed S]\n"
         "                    [--idle-timeout SECONDS] [--verbose]\n"
         "\n"
         "A Maritaca-compatible chat API server with deterministic answers\n"
         "and fault injection. Prints its base URL (e.g.\n"
         "http://127.0.0.1:40123/api) on stdout once it listens; logs go to\n"
         "stderr. Stops on SIGINT or SIGTERM.\n"
         "\n"
         "  --listen HOST:PORT   address to serve (default 127.0.0.1:0; port "
         "0\n"
         "                       picks a free port)\n"
         "  --threads N          I/O threads (default: hardware concurrency)\n"
         "  --tls-cert FILE      serve HTTPS with this PEM certificate chain\n"
         "  --tls-key FILE       ... and this PEM private key\n"
         "  --api-key K          require 'Authorization: Bearer K' (or 'Key "
         "K')\n"
         "  --token-delay-ms N   delay between stream chunks (default 0)\n"
         "  --fail-rate P        probability 0..1 of a random fault per chat\n"
         "                       request (default 0)\n"
         "  --fail-kinds LIST    comma-separated faults to draw from (default\n"
         "                       " +
         std::string{default_fail_kinds} +
         ")\n"
         "  --seed S             seed of the random faults (default 0)\n"
         "  --idle-timeout S     close idle keep-alive connections after S\n"
         "                       seconds (default 30)\n"
         "  --verbose            log connection errors to stderr\n"
         "  --help               print this text\n"
         "\n"
         "Routes: POST /api/chat/completions, POST /v1/chat/completions,\n"
         "GET /api/models, GET /v1/models, GET /sim/stats,\n"
         "POST /sim/stats/reset.\n"
         "\n"
         "Request headers: x-sim-fault: KIND[;PARAM=VALUE]... with KIND one\n"
         "of an HTTP status 400..599 (e.g. 429, 500, 503), reset-before,\n"
         "reset-mid, stall-first, stall-mid, bad-json, no-done, error-mid;\n"
         "params retry-after=S, retry-after-ms=MS, should-retry=BOOL,\n"
         "shape=detail|openai, ms=STALL_MS. x-sim-fault-once: FAULT;key=K\n"
         "[;times=N] applies FAULT to the first N (1) requests with key K.\n"
         "x-sim-token-delay-ms: N overrides the chunk delay; x-sim-chunks: N\n"
         "makes the answer exactly N words (up to 1000000);\n"
         "x-sim-latency-ms: N holds a non-streamed answer back N ms.\n";
}

parse_result parse_options(int argc, char** argv, options& out,
                           std::string& error) {
  bool kinds_given = false;
  apps::flag_reader args{argc, argv};
  while (args.next()) {
    auto& flag = args.flag();
    if (flag == "--help" || flag == "-h") return parse_result::help;
    if (flag == "--verbose" || flag == "-v") {
      out.verbose = true;
      continue;
    }
    static constexpr std::string_view with_value[] = {
        "--listen",  "--threads",        "--tls-cert",  "--tls-key",
        "--api-key", "--token-delay-ms", "--fail-rate", "--fail-kinds",
        "--seed",    "--idle-timeout",
    };
    if (!args.take_value(with_value, error)) return parse_result::error;
    auto& value = args.value();
    bool ok = true;
    if (flag == "--listen") {
      ok = parse_listen(value, out);
    } else if (flag == "--threads") {
      ok = parse_number<unsigned>(value, out.threads, 1, 1024);
    } else if (flag == "--tls-cert") {
      out.tls_cert = value;
      ok = !value.empty();
    } else if (flag == "--tls-key") {
      out.tls_key = value;
      ok = !value.empty();
    } else if (flag == "--api-key") {
      out.api_key = value;
      ok = !value.empty();
    } else if (flag == "--token-delay-ms") {
      ok = parse_number<int64_t>(value, out.token_delay_ms, 0, 3'600'000);
    } else if (flag == "--fail-rate") {
      ok = parse_rate(value, out.fail_rate);
    } else if (flag == "--fail-kinds") {
      std::string why;
      if (!parse_fault_list(value, out.fail_kinds, why)) {
        error = "bad value for --fail-kinds: " + why;
        return parse_result::error;
      }
      kinds_given = true;
    } else if (flag == "--seed") {
      ok = parse_number<uint64_t>(value, out.seed, 0, UINT64_MAX);
    } else if (flag == "--idle-timeout") {
      ok = parse_number<int64_t>(value, out.idle_timeout_s, 1, 86'400);
    }
    if (!ok) {
      error = args.bad_value();
      return parse_result::error;
    }
  }
  if (out.tls_cert.empty() != out.tls_key.empty()) {
    error = "--tls-cert and --tls-key go together";
    return parse_result::error;
  }
  if (!kinds_given) {
    std::string why;
    parse_fault_list(default_fail_kinds, out.fail_kinds, why);
  }
  return parse_result::run;
}

} // namespace maritaca::sim
