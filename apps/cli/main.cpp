// maritaca: the command-line client.
//
//   maritaca ask [options] PROMPT        prints the answer
//   maritaca ask --stream PROMPT         prints chunks as they come
//   maritaca ask --json PROMPT           prints the whole response as JSON
//   maritaca ask --tools FILE PROMPT     offers tools; prints the tool calls
//   maritaca ask --schema FILE PROMPT    prints JSON checked against a schema
//   maritaca batch [--concurrency N] FILE|-   one prompt per line -> JSON lines
//   maritaca chat                        a REPL keeping history
//   maritaca models                      lists the models
//
// With neither --base-url (or MARITACA_API_BASE) nor an API key it starts
// the bundled simulator in-process and says so on stderr.

#include "maritaca/chat_model.hpp"
#include "maritaca/limiter.hpp"
#include "maritaca/session.hpp"
#include "maritaca/structured.hpp"
#include "maritaca/tools.hpp"
#include "maritaca/transport/wire.hpp"

#include "maritaca/apps/flags.hpp"

#include "server.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace {

constexpr const char* usage_text = R"(usage: maritaca COMMAND [options] [ARGS]

commands:
  ask [options] PROMPT       ask once and print the answer
  batch [options] FILE|-     answer one prompt per line, as JSON lines in input
                             order (progress on stderr when it is a terminal)
  chat [options]             interactive chat keeping history
                             (/clear, /history, /save FILE, /exit)
  models [options]           list the available models

options:
  --base-url URL             API base URL (env MARITACA_API_BASE)
  --api-key KEY              API key (env MARITACA_API_KEY)
  --model NAME               model (default sabia-4)
  --system TEXT              system prompt
  --temperature X            sampling temperature
  --max-tokens N             upper bound of answer tokens
  --timeout SECONDS          deadline of each attempt (default 600)
  --max-retries N            retries of failed attempts (default 2)
  --ca-file FILE             extra trusted CA certificates (PEM)
  --proxy URL                HTTP proxy, http://[user:pass@]host:port (env
                             HTTPS_PROXY, NO_PROXY; never for the bundled
                             simulator)
  --stream                   (ask) print the answer as it arrives
  --json                     (ask) print the whole response as JSON
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

/// The parsed command line.
struct cli_options {
  std::string command;
  std::vector<std::string> args;
  std::optional<std::string> base_url;
  std::optional<std::string> api_key;
  std::string model = maritaca::default_model;
  std::string system_prompt;
  std::optional<double> temperature;
  std::optional<int64_t> max_tokens;
  std::optional<double> timeout_s;
  std::optional<uint32_t> max_retries;
  std::string ca_file;
  std::optional<std::string> proxy;
  bool stream = false;
  bool json = false;
  std::string tools_file;
  std::optional<std::string> tool_choice;
  std::string response_format;
  std::string schema_file;
  std::size_t concurrency = 16;
  std::string cluster_join;
  std::size_t cluster_fallback = 1;
};

/// A usage error: printed as one line, exit code 2.
struct usage_error {
  std::string what;
};

/// Parses `value` as a number of the current flag into `out`, within
/// [`min`, `max`]; throws usage_error otherwise.
template <class T>
void number(const maritaca::apps::flag_reader& args, T& out,
            T min = std::numeric_limits<T>::lowest(),
            T max = std::numeric_limits<T>::max()) {
  if (!maritaca::apps::parse_number<T>(args.value(), out, min, max))
    throw usage_error{args.bad_value()};
}

cli_options parse(int argc, char** argv) {
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
  cli_options o;
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
  return o;
}

/// Returns the contents of `path`.
std::string read_file(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  if (!in) throw usage_error{"cannot open " + path};
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

/// The schema of --schema, checked to be one.
maritaca::json_schema read_schema(const cli_options& o) {
  auto s = maritaca::json_schema::parse(read_file(o.schema_file));
  if (!s)
    throw usage_error{o.schema_file + ": " +
                      maritaca::to_failure(s.error()).message};
  return std::move(*s);
}

/// Fills a model configuration from the options and the environment.
maritaca::model_config make_config(const cli_options& o,
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
    auto ms =
        std::chrono::milliseconds{static_cast<int64_t>(*o.timeout_s * 1000)};
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

maritaca::input make_input(const cli_options& o, std::string prompt) {
  maritaca::input in;
  if (!o.system_prompt.empty())
    in.messages.push_back(maritaca::chat_message::system(o.system_prompt));
  in.messages.push_back(maritaca::chat_message::user(std::move(prompt)));
  return in;
}

/// The response as the service's JSON (a `chat.completion`).
std::string to_json(const maritaca::ai_message& msg) {
  maritaca::chat_completion c;
  c.id = msg.id;
  c.model = msg.model;
  c.usage = msg.usage;
  maritaca::completion_choice choice;
  choice.message = msg.message;
  choice.finish_reason = msg.finish_reason;
  c.choices.push_back(std::move(choice));
  return maritaca::wire::encode_completion(c);
}

/// An error as an OpenAI-style JSON error body.
std::string to_json(const caf::error& err) {
  auto f = maritaca::to_failure(err);
  maritaca::api_error e;
  e.message = f.describe();
  e.type = std::string{maritaca::to_string(f.code)};
  if (f.status != 0) e.code = std::to_string(f.status);
  return maritaca::wire::encode_error(e);
}

int report(const caf::error& err) {
  std::cerr << "maritaca: error: " << maritaca::describe(err) << std::endl;
  return 1;
}

/// Whether the answer must be JSON (--schema or --response-format json).
bool wants_json(const cli_options& o) {
  return !o.schema_file.empty() || o.response_format == "json";
}

/// Checks a JSON answer: the JSON text, or the error naming what does not
/// fit.
caf::expected<std::string> check_json(const maritaca::ai_message& msg,
                                      const cli_options& o) {
  auto doc = maritaca::json_document::parse(msg.content());
  if (!doc) return std::move(doc.error());
  if (!o.schema_file.empty()) {
    if (auto err = read_schema(o).check(*doc)) return err;
  } else if (doc->type() != maritaca::json_type::object) {
    return maritaca::make_error(maritaca::errc::protocol_error,
                                "$: expected object, got " +
                                    std::string{to_string(doc->type())});
  }
  return doc->text();
}

/// Prints the tool calls of `msg`: `name(arguments)`, one per line.
void print_tool_calls(const maritaca::ai_message& msg) {
  for (auto& call : msg.tool_calls())
    std::cout << call.name << "(" << call.arguments << ")\n";
  std::cout << std::flush;
}

int run_ask(const maritaca::chat_model& model, const cli_options& o) {
  if (o.args.size() != 1) throw usage_error{"ask expects exactly one PROMPT"};
  auto in = make_input(o, o.args[0]);
  if (o.stream) {
    auto chunks = model.stream(std::move(in));
    for (auto& chunk : chunks)
      std::cout << chunk.content << std::flush;
    auto& result = chunks.result();
    if (!result) return report(result.error());
    if (o.json) std::cout << '\n' << to_json(*result);
    if (o.json || !result->content().empty() || result->tool_calls().empty())
      std::cout << std::endl;
    if (!o.json && !result->tool_calls().empty()) print_tool_calls(*result);
    // The JSON went out as it came; say whether it fits.
    if (wants_json(o) && result->tool_calls().empty())
      if (auto checked = check_json(*result, o); !checked)
        return report(checked.error());
    return 0;
  }
  auto result = model.invoke(std::move(in));
  if (!result) return report(result.error());
  std::string json_text;
  if (wants_json(o) && result->tool_calls().empty()) {
    auto checked = check_json(*result, o);
    if (!checked) return report(checked.error());
    json_text = std::move(*checked);
  }
  if (o.json) {
    std::cout << to_json(*result) << std::endl;
    return 0;
  }
  if (!result->tool_calls().empty())
    print_tool_calls(*result);
  else if (wants_json(o))
    std::cout << json_text << std::endl;
  else
    std::cout << result->content() << std::endl;
  return 0;
}

int run_batch(const maritaca::chat_model& model, const cli_options& o) {
  if (o.args.size() != 1)
    throw usage_error{"batch expects one FILE (or - for stdin)"};
  std::ifstream file;
  std::istream* in = &std::cin;
  if (o.args[0] != "-") {
    file.open(o.args[0]);
    if (!file) throw usage_error{"cannot open " + o.args[0]};
    in = &file;
  }
  std::vector<std::future<maritaca::chat_model::result_type>> futures;
  std::string line;
  while (std::getline(*in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    futures.push_back(model.ainvoke(make_input(o, line)));
  }
  auto progress = isatty(STDERR_FILENO) != 0;
  int failures = 0;
  for (std::size_t i = 0; i < futures.size(); ++i) {
    auto result = futures[i].get();
    if (result) {
      std::cout << to_json(*result) << '\n';
    } else {
      ++failures;
      std::cout << to_json(result.error()) << '\n';
    }
    if (progress)
      std::cerr << "\r[" << (i + 1) << "/" << futures.size() << "]"
                << std::flush;
  }
  if (progress) std::cerr << std::endl;
  std::cout << std::flush;
  return failures == 0 ? 0 : 1;
}

int run_chat(const maritaca::chat_model& model, const cli_options& o) {
  maritaca::session_config cfg;
  cfg.system_prompt = o.system_prompt;
  maritaca::chat_session session{model, cfg};
  auto interactive = isatty(STDIN_FILENO) != 0;
  std::string line;
  for (;;) {
    if (interactive) std::cout << "> " << std::flush;
    if (!std::getline(std::cin, line)) break;
    if (line.empty()) continue;
    if (line == "/exit" || line == "/quit") break;
    if (line == "/clear") {
      session.clear();
      continue;
    }
    if (line == "/history") {
      for (auto& m : session.history())
        std::cout << m.role << ": " << m.text() << '\n';
      continue;
    }
    if (line.rfind("/save ", 0) == 0) {
      std::ofstream out{line.substr(6)};
      out << maritaca::save_history(o.model, session.history()) << '\n';
      continue;
    }
    auto result = session.chat(line);
    if (!result) {
      report(result.error());
      continue;
    }
    std::cout << result->content() << std::endl;
  }
  return 0;
}

int run_models(const maritaca::chat_model& model) {
  auto result = model.models();
  if (!result) return report(result.error());
  for (auto& m : *result)
    std::cout << m.id << '\n';
  std::cout << std::flush;
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  try {
    auto o = parse(argc, argv);
    if (o.command.empty() || o.command == "help") {
      (o.command.empty() ? std::cerr : std::cout) << usage_text;
      return o.command.empty() ? 2 : 0;
    }
    if (o.command != "ask" && o.command != "batch" && o.command != "chat" &&
        o.command != "models")
      throw usage_error{"unknown command '" + o.command + "'"};
    // Where to send: --base-url, else MARITACA_API_BASE, else the real
    // service when there is a key, else the bundled simulator.
    std::unique_ptr<maritaca::sim::server> sim;
    std::string base_url;
    auto env_key = std::getenv("MARITACA_API_KEY");
    auto env_base = std::getenv("MARITACA_API_BASE");
    auto has_key = o.api_key || (env_key != nullptr && *env_key != '\0');
    if (o.base_url) {
      base_url = *o.base_url;
    } else if (env_base != nullptr && *env_base != '\0') {
      base_url = env_base;
    } else if (has_key) {
      base_url = maritaca::default_base_url;
    } else {
      maritaca::sim::options sim_opts;
      sim_opts.threads = 1;
      sim = std::make_unique<maritaca::sim::server>(sim_opts);
      base_url = sim->start();
      std::cerr << "maritaca: no API key and no --base-url: using the bundled "
                   "simulator at "
                << base_url << std::endl;
    }
    caf::actor_system_config cfg;
    maritaca::configure(cfg);
    if (!o.cluster_join.empty()) maritaca::configure_cluster(cfg);
    caf::actor_system sys{cfg};
    int rc = 0;
    {
      auto mc = make_config(o, base_url);
      // The bundled simulator listens on loopback: never through a proxy.
      if (sim) mc.proxy.clear();
      maritaca::chat_model model{sys, mc};
      if (o.command == "ask")
        rc = run_ask(model, o);
      else if (o.command == "batch")
        rc = run_batch(model, o);
      else if (o.command == "chat")
        rc = run_chat(model, o);
      else
        rc = run_models(model);
      model.shutdown();
    }
    return rc;
  } catch (const usage_error& e) {
    std::cerr << "maritaca: " << e.what << " (see maritaca --help)"
              << std::endl;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "maritaca: error: " << e.what() << std::endl;
    return 1;
  }
}
