/// @file
/// The command line of `maritaca`: flags, checks and the model
/// configuration they make.

#include "cli.hpp"

#include "maritaca/limiter.hpp"
#include "maritaca/structured.hpp"
#include "maritaca/tools.hpp"
#include "maritaca/transport/http_client.hpp"

#include "maritaca/apps/flags.hpp"

#include <fstream>
#include <limits>
#include <sstream>

namespace maritaca::cli {

namespace {

constexpr const char* usage_text = R"(usage: maritaca COMMAND [options] [ARGS]

commands:
  ask [options] PROMPT       ask once and print the answer
  batch [options] FILE|-     answer one prompt per line, as JSON lines in input
                             order (progress on stderr when it is a terminal)
  chat [options]             interactive chat keeping history, answers
                             streamed; /help lists its commands
  models [options]           list the available models

options:
  --base-url URL             API base URL (env MARITACA_API_BASE)
  --api-key KEY              API key (env MARITACA_API_KEY, which `ps`
                             does not show)
  --model NAME               model (default sabia-4)
  --system TEXT              system prompt
  --temperature X            sampling temperature
  --max-tokens N             upper bound of answer tokens
  --timeout SECONDS          deadline of the whole ask, retries included
                             (default 600)
  --max-retries N            retries of failed attempts (default 2)
  --ca-file FILE             extra trusted CA certificates (PEM)
  --proxy URL                HTTP proxy, http://[user:pass@]host:port (env
                             HTTPS_PROXY, NO_PROXY; never for the bundled
                             simulator)
  --stream                   (ask) print the answer as it arrives
  --json                     (ask) print the whole response as JSON; with
                             --stream, each chunk as a JSON line as it
                             arrives (chat.completion.chunk)
  --tools FILE               offer the tools of FILE (an OpenAI-style tools
                             array); ask prints the calls as name(arguments),
                             one per line (with --json, the whole message)
  --tool-choice MODE         none, auto, required or a function NAME
  --response-format FORMAT   text or json (JSON mode: any JSON object)
  --schema FILE              answer JSON following the JSON Schema of FILE;
                             ask prints it, or fails (exit 1) when it does
                             not fit
  --concurrency N            requests at once (default 16)
  --cluster-join HOST:PORT   also admit every request through the cluster
                             limiter published there (a maritaca-gateway
                             --cluster-listen); see docs/cluster.md
  --cluster-fallback N       requests at once while that limiter is
                             unreachable (default 1)
  -h, --help                 this text

With neither --base-url nor an API key, maritaca starts its bundled
simulator (maritaca-sim) in-process and says so on stderr.
)";

} // namespace

const char* usage() {
  return usage_text;
}

namespace {

/// Parses `value` as a number of the current flag into `out`, within
/// [`min`, `max`]; throws usage_error otherwise.
template <class T>
void number(const maritaca::apps::flag_reader& args, T& out,
            T min = std::numeric_limits<T>::lowest(),
            T max = std::numeric_limits<T>::max()) {
  if (!maritaca::apps::parse_number<T>(args.value(), out, min, max))
    throw usage_error{args.bad_value()};
}

/// What each command takes: its words and the flags only it reads.
void check(const options& o) {
  auto& c = o.command;
  if (c.empty() || c == "help") return;
  if (c != "ask" && c != "batch" && c != "chat" && c != "models")
    throw usage_error{"unknown command '" + c + "'"};
  auto words = [&](std::size_t n, const char* what) {
    if (o.args.size() < n) throw usage_error{c + " expects " + what};
    if (o.args.size() > n)
      throw usage_error{c + " expects " + what + ", not also '" + o.args[n] +
                        (c == "ask" ? "' (quote a PROMPT with spaces)" : "'")};
  };
  if (c == "ask") words(1, "one PROMPT");
  if (c == "batch") words(1, "one FILE (or - for stdin)");
  if (c == "chat" || c == "models") words(0, "no words");
  if (c != "ask" && (o.stream || o.json))
    throw usage_error{std::string{o.stream ? "--stream" : "--json"} +
                      " applies to ask only"};
  if (o.base_url) {
    transport::url_parts parts;
    if (auto f = transport::parse_url(*o.base_url, parts))
      throw usage_error{"--base-url: " + f.message};
  }
}

} // namespace

options parse(int argc, char** argv) {
  static constexpr std::string_view with_value[] = {
      "--base-url",
      "--api-key",
      "--model",
      "--system",
      "--temperature",
      "--max-tokens",
      "--timeout",
      "--max-retries",
      "--ca-file",
      "--proxy",
      "--concurrency",
      "--cluster-join",
      "--cluster-fallback",
      "--tools",
      "--tool-choice",
      "--response-format",
      "--schema",
  };
  options o;
  maritaca::apps::flag_reader args{argc, argv};
  while (args.next()) {
    auto& flag = args.flag();
    if (flag == "-h" || flag == "--help") {
      o.command = "help";
      return o;
    } else if (flag == "--stream") {
      o.stream = true;
      continue;
    } else if (flag == "--json") {
      o.json = true;
      continue;
    } else if (flag.size() < 2 || flag[0] != '-') {
      // A word (or "-" for stdin): the command, then its arguments.
      if (o.command.empty())
        o.command = flag;
      else
        o.args.push_back(flag);
      continue;
    }
    std::string error;
    if (!args.take_value(with_value, error)) throw usage_error{error};
    auto& value = args.value();
    if (flag == "--base-url") {
      o.base_url = value;
    } else if (flag == "--api-key") {
      o.api_key = value;
    } else if (flag == "--model") {
      o.model = value;
    } else if (flag == "--system") {
      o.system_prompt = value;
    } else if (flag == "--temperature") {
      number(args, o.temperature.emplace());
    } else if (flag == "--max-tokens") {
      number<int64_t>(args, o.max_tokens.emplace(), 1);
    } else if (flag == "--timeout") {
      number(args, o.timeout_s.emplace());
      if (*o.timeout_s <= 0) throw usage_error{"--timeout must be positive"};
    } else if (flag == "--max-retries") {
      number(args, o.max_retries.emplace());
    } else if (flag == "--ca-file") {
      o.ca_file = value;
    } else if (flag == "--proxy") {
      o.proxy = value;
    } else if (flag == "--concurrency") {
      number<std::size_t>(args, o.concurrency, 1);
    } else if (flag == "--cluster-join") {
      o.cluster_join = value;
      std::string host;
      uint16_t port = 0;
      if (!maritaca::parse_host_port(o.cluster_join, host, port))
        throw usage_error{"--cluster-join wants HOST:PORT"};
    } else if (flag == "--cluster-fallback") {
      number<std::size_t>(args, o.cluster_fallback, 1);
    } else if (flag == "--tools") {
      o.tools_file = value;
    } else if (flag == "--tool-choice") {
      o.tool_choice = value;
    } else if (flag == "--response-format") {
      o.response_format = value;
      if (o.response_format == "json_object") o.response_format = "json";
      if (o.response_format != "text" && o.response_format != "json")
        throw usage_error{"--response-format expects text or json, got '" +
                          o.response_format + "'"};
    } else if (flag == "--schema") {
      o.schema_file = value;
    }
  }
  check(o);
  return o;
}

namespace {

/// Returns the contents of `path`.
std::string read_file(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  if (!in) throw usage_error{"cannot open " + path};
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

} // namespace

/// The schema of --schema, checked to be one.
maritaca::json_schema read_schema(const options& o) {
  auto s = maritaca::json_schema::parse(read_file(o.schema_file));
  if (!s)
    throw usage_error{o.schema_file + ": " +
                      maritaca::to_failure(s.error()).message};
  return std::move(*s);
}

/// Fills a model configuration from the options and the environment.
maritaca::model_config make_config(const options& o,
                                   const std::string& base_url) {
  auto cfg = maritaca::model_config::from_env();
  cfg.base_url = base_url;
  if (o.api_key) cfg.api_key = *o.api_key;
  cfg.model = o.model;
  cfg.temperature = o.temperature;
  cfg.max_tokens = o.max_tokens;
  cfg.ca_file = o.ca_file;
  if (o.proxy) cfg.proxy = *o.proxy;
  cfg.limits.max_concurrency = o.concurrency;
  cfg.limits.cluster.join = o.cluster_join;
  cfg.limits.cluster.fallback_concurrency = o.cluster_fallback;
  if (o.timeout_s) {
    // The whole ask, retries and backoffs included: what a user means by
    // "give up after N seconds".
    auto ms =
        std::chrono::milliseconds{static_cast<int64_t>(*o.timeout_s * 1000)};
    cfg.ask_timeout = ms;
    cfg.timeouts.total = ms;
    cfg.timeouts.first_byte = std::min(cfg.timeouts.first_byte, ms);
    cfg.timeouts.idle = std::min(cfg.timeouts.idle, ms);
  }
  if (o.max_retries) cfg.retry.max_retries = *o.max_retries;
  if (!o.tools_file.empty()) {
    auto specs = maritaca::parse_tool_specs(read_file(o.tools_file));
    if (!specs)
      throw usage_error{o.tools_file + ": " +
                        maritaca::to_failure(specs.error()).message};
    cfg.tools = std::move(*specs);
  }
  if (o.tool_choice) {
    auto choice = maritaca::parse_tool_choice(*o.tool_choice);
    if (!choice)
      throw usage_error{"--tool-choice: " +
                        maritaca::to_failure(choice.error()).message};
    cfg.tool_choice = std::move(*choice);
  }
  if (!o.schema_file.empty()) {
    maritaca::response_format fmt;
    fmt.type = "json_schema";
    fmt.schema = read_schema(o).text();
    fmt.schema_name = "output";
    cfg.response_format = std::move(fmt);
  } else if (o.response_format == "json") {
    maritaca::response_format fmt;
    fmt.type = "json_object";
    cfg.response_format = std::move(fmt);
  }
  return cfg;
}

input make_input(const options& o, std::string prompt) {
  input in;
  if (!o.system_prompt.empty())
    in.messages.push_back(chat_message::system(o.system_prompt));
  in.messages.push_back(chat_message::user(std::move(prompt)));
  return in;
}

} // namespace maritaca::cli
