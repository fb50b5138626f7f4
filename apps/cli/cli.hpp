#pragma once

/// @file
/// The parts of `maritaca`, the command-line client: its options
/// (options.cpp), what it prints (output.cpp) and its commands (ask.cpp,
/// batch.cpp, chat.cpp); main.cpp picks the backend and runs one.

#include "maritaca/chat_model.hpp"
#include "maritaca/structured.hpp"

#include <caf/error.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace maritaca::cli {

/// The parsed command line.
struct options {
  /// ask, batch, chat, models or help.
  std::string command;
  /// The command's words (a PROMPT, a FILE).
  std::vector<std::string> args;
  std::optional<std::string> base_url;
  std::optional<std::string> api_key;
  std::string model = maritaca::default_model;
  std::string system_prompt;
  std::optional<double> temperature;
  std::optional<int64_t> max_tokens;
  /// Deadline of the whole ask, retries included.
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

/// The text of `--help`.
const char* usage();

/// Parses and checks the command line: a known command with the words it
/// takes, flags that apply to it, a base URL that is one. Throws
/// `usage_error` otherwise -- before anything starts.
options parse(int argc, char** argv);

/// The model configuration of `o`, sending to `base_url` (the environment
/// fills what the flags leave open). Throws `usage_error` for unreadable
/// tool and schema files.
model_config make_config(const options& o, const std::string& base_url);

/// The schema of `--schema`; throws `usage_error` when it is none.
json_schema read_schema(const options& o);

/// `prompt` as a user message after the `--system` prompt.
input make_input(const options& o, std::string prompt);

/// The response as the service's JSON (a `chat.completion`).
std::string to_json(const ai_message& msg);

/// A streamed chunk as the service's JSON (a `chat.completion.chunk`).
std::string to_json(const chat_chunk& chunk, const std::string& model);

/// An error as an OpenAI-style JSON error body.
std::string to_json(const caf::error& err);

/// Prints `err` on stderr as one line; returns the exit code 1.
int report(const caf::error& err);

/// `ask PROMPT`.
int run_ask(const chat_model& model, const options& o);

/// `models`.
int run_models(const chat_model& model);

/// `batch FILE|-`.
int run_batch(const chat_model& model, const options& o);

/// `chat`.
int run_chat(const chat_model& model, const options& o);

} // namespace maritaca::cli
