/// @file
/// Command-line parsing of maritaca-gateway.

#include "maritaca/gateway/options.hpp"

#include "maritaca/apps/flags.hpp"

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

namespace maritaca::gateway {

namespace {

std::string trim(std::string_view s) {
  auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  auto e = s.find_last_not_of(" \t\r\n");
  return std::string{s.substr(b, e - b + 1)};
}

/// Splits `s` at commas, trimming and dropping empty items.
std::vector<std::string> split_list(std::string_view s) {
  std::vector<std::string> out;
  while (!s.empty()) {
    auto comma = s.find(',');
    auto item = trim(s.substr(0, comma));
    if (!item.empty()) out.push_back(std::move(item));
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
  }
  return out;
}

using apps::parse_number;

/// Parses seconds (fractions allowed) into milliseconds.
bool parse_seconds(const std::string& text, std::chrono::milliseconds& out,
                   double max = 86'400.0 * 7) {
  std::istringstream in{text};
  double s = 0;
  if (!(in >> s) || !in.eof() || !std::isfinite(s) || s <= 0 || s > max)
    return false;
  out = std::chrono::milliseconds{static_cast<int64_t>(std::llround(s * 1000))};
  return out.count() > 0;
}

/// Parses `HOST:PORT` (IPv6 in brackets).
bool parse_listen(const std::string& text, server_options& out) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon + 1 >= text.size()) return false;
  auto host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (host.empty()) return false;
  uint16_t port = 0;
  if (!parse_number<uint16_t>(std::string_view{text}.substr(colon + 1), port, 0,
                              65535))
    return false;
  out.host = host;
  out.port = port;
  return true;
}

/// Reads a file's lines (trimmed; empty lines and `#` comments dropped).
bool read_lines(const std::string& path, std::vector<std::string>& out) {
  std::ifstream in{path};
  if (!in) return false;
  std::string line;
  while (std::getline(in, line)) {
    auto t = trim(line);
    if (!t.empty() && t.front() != '#') out.push_back(std::move(t));
  }
  return true;
}

/// Whether `name` is a valid header field name (an RFC 9110 token).
bool is_token(std::string_view name) {
  if (name.empty()) return false;
  for (unsigned char c : name)
    if (!(std::isalnum(c) ||
          std::string_view{"!#$%&'*+-.^_`|~"}.find(static_cast<char>(c)) !=
              std::string_view::npos))
      return false;
  return true;
}

/// Checks an upstream base URL (`what` names where it came from). The
/// error never repeats user info: it may hold a password.
bool check_upstream(std::string_view url, std::string_view what,
                    std::string& error) {
  transport::url_parts parts;
  auto f = transport::parse_url(url, parts);
  if (!f) return true;
  error = std::string{what} + ": " + f.message;
  if (url.substr(0, url.find_first_of("/?#", url.find("://") + 3)).find('@') !=
      std::string_view::npos)
    error += "; give the upstream key with --api-key-file or "
             "MARITACA_API_KEY";
  return false;
}

} // namespace

std::string usage() {
  return R"(usage: maritaca-gateway [options]

A web service in front of a Maritaca-compatible API: POST /ask, GET /stream,
OpenAI-compatible POST /v1/chat/completions, GET /v1/models, sessions,
GET /healthz and GET /metrics. Prints its base URL as the first stdout line.

upstream:
  --upstream URL          Maritaca-compatible base URL
                          (default env MARITACA_API_BASE, else
                          https://chat.maritaca.ai/api)
  --api-key-file FILE     upstream API key (default env MARITACA_API_KEY)
  --model NAME            model of /ask, /stream and sessions (sabia-4)
  --max-concurrency N     upstream requests at once (16)
  --max-queue N           asks waiting for a slot before 503 (10000)
  --max-retries N         retries of a failed upstream attempt (2)
  --upstream-timeout S    deadline of one upstream attempt (600); also
                          caps the wait for its response head (60). With
                          retries a client may wait (1 + retries) times it
  --upstream-idle-timeout S
                          longest wait between two pieces of an upstream
                          answer (stream: between two events; comments do
                          not count) (30)
  --ca-file FILE          extra trusted CA certificates (PEM)

clients:
  --listen HOST:PORT      address to serve (127.0.0.1:8080; port 0 picks one)
  --token T               bearer token clients must send (repeatable).
                          Visible to every user in `ps`: in production use
                          --token-file or MARITACA_GATEWAY_TOKENS
  --token-file FILE       bearer tokens, one per line (env
                          MARITACA_GATEWAY_TOKENS: comma-separated)
  --max-body-bytes N      request body limit, larger gets 413 (1048576)
  --max-header-bytes N    request head limit, larger gets 431 (16384)
  --max-url-bytes N       request target limit, longer gets 414 (8192)
  --max-connections N     connections at once (1024); at the cap a new
                          one displaces one waiting for a request head
  --max-connections-per-client N
                          connections at once from one client address
                          (256; 0: no cap; raise it behind a proxy)
  --header-timeout S      time for a request head to arrive (10)
  --body-timeout S        time for a request body to arrive (30)
  --idle-timeout S        keep-alive wait for the next request (60)
  --write-timeout S       time one write to a client may take (30)
  --max-sessions N        chat sessions open at once (1000)
  --session-ttl S         idle lifetime of a session (1800)
  --threads N             I/O threads (1)
  --drain-timeout S       on SIGTERM/SIGINT: time answers in progress get
                          to finish before they are ended (10)

cluster (one limit shared by several gateways, see docs/cluster.md):
  --cluster-listen HOST:PORT  hold the cluster's limiter, published here
  --cluster-join HOST:PORT    admit through the limiter published there
  --cluster-concurrency N     requests at once in the whole cluster
                              (--cluster-listen only; default
                              --max-concurrency)
  --cluster-fallback N        requests at once while the limiter is
                              unreachable (1)
  --cluster-lease-ttl S       a lease not renewed this long comes back
                              (--cluster-listen only; 10)

diagnostics:
  --forward-header NAME   pass this request header to the upstream
                          (repeatable; for tests, e.g. x-sim-fault)
  --access-log            one line per request on stderr
  --verbose               log connection errors on stderr
  -h, --help              this text

Without any token every route is open (a warning says so on stderr).
)";
}

parse_result parse_options(int argc, const char* const* argv,
                           const char* (*env)(const char*), options& out,
                           std::string& error) {
  std::string api_key_file;
  bool upstream_given = false;
  apps::flag_reader args{argc, argv};
  while (args.next()) {
    auto& flag = args.flag();
    if (flag == "--help" || flag == "-h") return parse_result::help;
    if (flag == "--api-key") {
      // A key on the command line is visible to every user in `ps`.
      error = "--api-key is not accepted (visible in ps): use --api-key-file "
              "FILE or the environment variable MARITACA_API_KEY";
      return parse_result::error;
    }
    if (flag == "--access-log") {
      out.access_log = true;
      continue;
    }
    if (flag == "--verbose" || flag == "-v") {
      out.server.verbose = true;
      continue;
    }
    static constexpr std::string_view with_value[] = {
        "--listen",
        "--upstream",
        "--api-key-file",
        "--model",
        "--token",
        "--token-file",
        "--max-concurrency",
        "--max-queue",
        "--max-retries",
        "--upstream-timeout",
        "--upstream-idle-timeout",
        "--ca-file",
        "--forward-header",
        "--max-body-bytes",
        "--max-header-bytes",
        "--max-url-bytes",
        "--max-connections",
        "--max-connections-per-client",
        "--drain-timeout",
        "--header-timeout",
        "--body-timeout",
        "--idle-timeout",
        "--write-timeout",
        "--max-sessions",
        "--session-ttl",
        "--threads",
        "--cluster-listen",
        "--cluster-join",
        "--cluster-concurrency",
        "--cluster-fallback",
        "--cluster-lease-ttl",
    };
    if (!args.take_value(with_value, error)) return parse_result::error;
    auto& value = args.value();
    auto& srv = out.server;
    bool ok = true;
    std::chrono::milliseconds ms{0};
    if (flag == "--listen") {
      ok = parse_listen(value, srv);
    } else if (flag == "--upstream") {
      if (!check_upstream(value, "--upstream", error))
        return parse_result::error;
      out.upstream = value;
      upstream_given = true;
    } else if (flag == "--api-key-file") {
      api_key_file = value;
      ok = !value.empty();
    } else if (flag == "--model") {
      out.model = value;
      ok = !value.empty();
    } else if (flag == "--token") {
      ok = !value.empty();
      out.tokens.push_back(value);
    } else if (flag == "--token-file") {
      if (!read_lines(value, out.tokens)) {
        error = "cannot read token file " + value;
        return parse_result::error;
      }
    } else if (flag == "--max-concurrency") {
      ok = parse_number<std::size_t>(value, out.max_concurrency, 1, 100'000);
    } else if (flag == "--max-queue") {
      ok = parse_number<std::size_t>(value, out.max_queue, 0, 10'000'000);
    } else if (flag == "--max-retries") {
      ok = parse_number<uint32_t>(value, out.max_retries, 0, 100);
    } else if (flag == "--upstream-timeout") {
      ok = parse_seconds(value, out.upstream_timeout);
    } else if (flag == "--upstream-idle-timeout") {
      ok = parse_seconds(value, out.upstream_idle_timeout);
    } else if (flag == "--ca-file") {
      out.ca_file = value;
      ok = !value.empty();
    } else if (flag == "--forward-header") {
      ok = is_token(value);
      out.forward_headers.push_back(value);
    } else if (flag == "--max-body-bytes") {
      ok = parse_number<std::size_t>(value, srv.max_body_bytes, 1,
                                     std::size_t{1} << 32);
    } else if (flag == "--max-header-bytes") {
      ok = parse_number<std::size_t>(value, srv.max_header_bytes, 256,
                                     std::size_t{1} << 24);
    } else if (flag == "--max-url-bytes") {
      ok = parse_number<std::size_t>(value, srv.max_url_bytes, 16,
                                     std::size_t{1} << 24);
    } else if (flag == "--max-connections") {
      ok = parse_number<std::size_t>(value, srv.max_connections, 1, 1'000'000);
    } else if (flag == "--max-connections-per-client") {
      ok = parse_number<std::size_t>(value, srv.max_connections_per_client, 0,
                                     1'000'000);
    } else if (flag == "--drain-timeout") {
      ok = parse_seconds(value, out.drain_timeout);
    } else if (flag == "--header-timeout") {
      ok = parse_seconds(value, srv.header_timeout);
    } else if (flag == "--body-timeout") {
      ok = parse_seconds(value, srv.body_timeout);
    } else if (flag == "--idle-timeout") {
      ok = parse_seconds(value, srv.idle_timeout);
    } else if (flag == "--write-timeout") {
      ok = parse_seconds(value, srv.write_timeout);
    } else if (flag == "--max-sessions") {
      ok = parse_number<std::size_t>(value, out.max_sessions, 0, 10'000'000);
    } else if (flag == "--session-ttl") {
      ok = parse_seconds(value, ms);
      out.session_ttl = std::chrono::duration_cast<std::chrono::seconds>(ms);
      ok = ok && out.session_ttl.count() > 0;
    } else if (flag == "--threads") {
      ok = parse_number<unsigned>(value, srv.threads, 1, 256);
    } else if (flag == "--cluster-listen" || flag == "--cluster-join") {
      server_options probe;
      ok = parse_listen(value, probe);
      (flag == "--cluster-listen" ? out.cluster_listen : out.cluster_join) =
          value;
    } else if (flag == "--cluster-concurrency") {
      ok =
          parse_number<std::size_t>(value, out.cluster_concurrency, 1, 100'000);
    } else if (flag == "--cluster-fallback") {
      ok = parse_number<std::size_t>(value, out.cluster_fallback, 1, 100'000);
    } else if (flag == "--cluster-lease-ttl") {
      ok = parse_seconds(value, out.cluster_lease_ttl);
    }
    if (!ok) {
      error = args.bad_value();
      return parse_result::error;
    }
  }
  if (!out.cluster_listen.empty() && !out.cluster_join.empty()) {
    error = "--cluster-listen and --cluster-join exclude each other";
    return parse_result::error;
  }
  if (!upstream_given)
    if (auto base = env("MARITACA_API_BASE"); base && *base) {
      if (!check_upstream(base, "MARITACA_API_BASE", error))
        return parse_result::error;
      out.upstream = base;
    }
  if (auto list = env("MARITACA_GATEWAY_TOKENS"); list && *list)
    for (auto& t : split_list(list))
      out.tokens.push_back(std::move(t));
  if (!api_key_file.empty()) {
    std::vector<std::string> lines;
    if (!read_lines(api_key_file, lines) || lines.empty()) {
      // Never echo the file's content: it is a secret.
      error = "cannot read an API key from " + api_key_file;
      return parse_result::error;
    }
    out.api_key = lines.front();
  } else if (auto key = env("MARITACA_API_KEY"); key && *key) {
    out.api_key = trim(key);
  }
  return parse_result::run;
}

} // namespace maritaca::gateway
