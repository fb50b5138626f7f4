#pragma once

/// @file
/// Chains: a small composable pipeline (the C++ take on LangChain's LCEL).
///
///     auto joke = prompt_template{"Tell a joke about {topic}."} | model
///                 | output_parser::text();
///     auto r = joke.with_retry(2).with_fallbacks({backup}).invoke(
///       {{"topic", "parrots"}});
///
/// A chain formats its prompt template with the caller's variables, asks
/// the model, and parses the answer (text, JSON, or JSON checked against a
/// schema). `with_retry(n)` tries a model up to `n` more times on transient
/// failures (429, 5xx, timeouts, connection failures, overload, and output
/// the parser rejects); `with_fallbacks(models)` moves on to the next model
/// on 429, 5xx or a timeout only -- never on a bad request, a bad key, or
/// a misfit of the output. Once a streamed answer has delivered a chunk,
/// neither retries nor fallbacks happen.
///
/// Every run is an actor of its own, bounded by `chain::deadline()`; it
/// replies exactly once. From plain code: `invoke` (blocking), `ainvoke`
/// (future), `stream` (iterate chunks); from actors: `ainvoke(self, vars)`
/// and `astream(self, subscriber, vars)`. A subscriber receives the model's
/// `chat_chunk`s, then one `stream_done` (the whole chain succeeded) or
/// `stream_failed`, all with the run's id.

#include "maritaca/atoms.hpp"
#include "maritaca/chat_model.hpp"
#include "maritaca/error.hpp"
#include "maritaca/messages.hpp"
#include "maritaca/structured.hpp"

#include <caf/actor.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/expected.hpp>
#include <caf/scoped_actor.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace maritaca {

/// Values of a prompt's `{variables}`.
using variables = std::map<std::string, std::string>;

// -- prompt templates
// -----------------------------------------------------------

/// Replaces each `{name}` of `text` with `vars.at(name)`; `{{` and `}}`
/// stand for literal braces. A variable missing from `vars`, an empty
/// `{}`, an unclosed `{` or a lone `}` is `errc::invalid_argument` naming
/// it. Extra variables are ignored.
caf::expected<std::string> format_template(std::string_view text,
                                           const variables& vars);

/// Returns the variable names of `text`, in order of first use.
std::vector<std::string> template_variables(std::string_view text);

/// A prompt: one or more (role, template) messages.
class prompt_template {
public:
  /// One user message.
  prompt_template(std::string text);

  /// One user message.
  prompt_template(const char* text) : prompt_template(std::string{text}) {}

  /// (role, template) pairs, e.g. `{{"system", "..."}, {"human",
  /// "{question}"}}`; roles as in `input` ("human", "ai" accepted).
  prompt_template(
      std::initializer_list<std::pair<std::string, std::string>> messages);

  /// (role, template) pairs.
  explicit prompt_template(
      std::vector<std::pair<std::string, std::string>> messages);

  /// Formats every message with `vars`.
  caf::expected<input> format(const variables& vars) const;

  /// The variable names of all messages, in order of first use.
  std::vector<std::string> variable_names() const;

  /// The (role, template) pairs.
  const std::vector<std::pair<std::string, std::string>>&
  messages() const noexcept {
    return messages_;
  }

private:
  std::vector<std::pair<std::string, std::string>> messages_;
};

// -- output parsers
// -------------------------------------------------------------

/// What a chain gives.
struct chain_output {
  /// The parsed output as text: the answer's text, or the JSON text.
  std::string text;
  /// The document, for the JSON and structured parsers.
  std::optional<json_document> json;
  /// The model's whole answer.
  ai_message message;
  /// Which model answered: 0 the chain's own, i the fallback i - 1.
  std::size_t model_index = 0;
  /// Asks it took in total (retries and fallbacks included).
  uint32_t attempts = 0;
};

/// The last step of a chain: how the answer is read.
class output_parser {
public:
  /// The kinds of parsers.
  enum class kind : uint8_t {
    /// The answer's text as it is.
    text,
    /// A JSON document (JSON mode).
    json,
    /// A JSON document that must fit a schema.
    structured,
  };

  /// The answer's text.
  static output_parser text();

  /// A JSON document; the chain asks in JSON mode (`response_format`
  /// json_object) unless the model sets a format itself.
  static output_parser json();

  /// A JSON document fitting `schema`; the chain asks with that schema
  /// (`response_format` json_schema) unless the model sets a format itself.
  static output_parser structured(std::string schema);

  /// The kind.
  kind type() const noexcept { return kind_; }

  /// The schema (structured only).
  const std::string& schema() const noexcept { return schema_; }

  /// Reads `msg`: the output, or `errc::protocol_error` when the answer
  /// does not parse or fit (`errc::invalid_argument` for a broken schema).
  caf::expected<chain_output> parse(const ai_message& msg) const;

  /// Returns `model` asking for what this parser reads.
  chat_model prepare(const chat_model& model) const;

private:
  kind kind_ = kind::text;
  std::string schema_;
  std::shared_ptr<const caf::expected<json_schema>> parsed_;
};

// -- chains
// ---------------------------------------------------------------------

class chain_stream;

/// prompt template -> model -> output parser, with retries and fallbacks.
/// A cheap value: copies share the models' runtimes.
class chain {
public:
  /// Result of a run.
  using result_type = caf::expected<chain_output>;

  /// A chain of `prompt`, `model` and `parser`.
  chain(prompt_template prompt, chat_model model,
        output_parser parser = output_parser::text());

  /// Returns this chain trying each model up to `retries` more times on
  /// transient failures, waiting `backoff`, then twice that, and so on.
  chain with_retry(uint32_t retries, std::chrono::milliseconds backoff =
                                         std::chrono::milliseconds{100}) const;

  /// Returns this chain falling back to `models`, in order, when a model
  /// fails with 429, 5xx or a timeout.
  chain with_fallbacks(std::vector<chat_model> models) const;

  /// Returns this chain with `parser` as its last step.
  chain with_parser(output_parser parser) const;

  /// Returns this chain bounded by `deadline` per run (default: the sum of
  /// the ask timeouts of every attempt it may make).
  chain with_deadline(std::chrono::milliseconds deadline) const;

  // -- plain code
  // ---------------------------------------------------------------

  /// Runs and waits.
  result_type invoke(const variables& vars = {}) const;

  /// Runs without blocking.
  std::future<result_type> ainvoke(variables vars = {}) const;

  /// Runs with the answer streamed: iterate the model's chunks, then
  /// `result()` gives the parsed output.
  chain_stream stream(variables vars = {}) const;

  /// Runs all at once (the models' limits apply) and returns the results
  /// in input order.
  std::vector<result_type> batch(std::vector<variables> inputs) const;

  // -- actors
  // -------------------------------------------------------------------

  /// Runs from `self`: `chain.ainvoke(self, vars).then(...)`.
  template <class Self>
  auto ainvoke(Self* self, variables vars) const {
    return self->request(spawn_run(std::move(vars)), run_timeout(),
                         chain_atom::value);
  }

  /// Runs from `self` with the answer streamed to `subscriber`; the parsed
  /// output is the response to `self`.
  template <class Self>
  auto astream(Self* self, caf::actor subscriber, variables vars) const {
    return self->request(spawn_run(std::move(vars), std::move(subscriber)),
                         run_timeout(), chain_atom::value);
  }

  /// Spawns the actor of one run; it answers one `(chain_atom)` and, with
  /// a `subscriber`, streams to it under the id `run_id` (0: a fresh one).
  caf::actor spawn_run(variables vars, caf::actor subscriber = {},
                       uint64_t run_id = 0) const;

  // -- properties
  // ---------------------------------------------------------------

  /// A run's deadline.
  std::chrono::milliseconds deadline() const;

  /// The timeout callers give a run's request: `deadline()` plus a margin,
  /// so that the run's own typed error arrives first.
  std::chrono::milliseconds run_timeout() const;

  /// The prompt.
  const prompt_template& prompt() const noexcept { return prompt_; }

  /// The models: the chain's own first, then the fallbacks.
  const std::vector<chat_model>& models() const noexcept { return models_; }

  /// The parser.
  const output_parser& parser() const noexcept { return parser_; }

  /// Retries per model.
  uint32_t retries() const noexcept { return retries_; }

  /// Returns this chain with handles of its models that do not own their
  /// actor system, for an actor to keep (see `chat_model::for_actor`).
  chain for_actor() const;

  /// The first retry's wait.
  std::chrono::milliseconds backoff() const noexcept { return backoff_; }

private:
  prompt_template prompt_;
  std::vector<chat_model> models_;
  output_parser parser_;
  uint32_t retries_ = 0;
  std::chrono::milliseconds backoff_{100};
  std::chrono::milliseconds deadline_{0};
};

/// `prompt | model`: a chain with the text parser.
chain operator|(prompt_template prompt, const chat_model& model);

/// `chain | parser`: the chain with `parser` as its last step.
chain operator|(chain c, output_parser parser);

/// `model | parser`: a chain whose prompt is just `{input}`.
chain operator|(const chat_model& model, output_parser parser);

/// Iterates the chunks of a streamed chain run from plain code. Once the
/// loop ends, `result()` holds the parsed output or the error.
class chain_stream {
public:
  /// Input iterator over the chunks.
  using iterator = chunk_iterator<chain_stream>;

  /// Takes over a stream.
  chain_stream(chain_stream&&) noexcept;

  /// Takes over a stream.
  chain_stream& operator=(chain_stream&&) noexcept;

  /// Ends the run when it has not ended yet (its ask is cancelled).
  ~chain_stream();

  /// Waits for the next chunk; `nullopt` once the stream ended.
  std::optional<chat_chunk> next();

  /// Waits for the end and returns the parsed output or the error.
  const chain::result_type& result();

  /// The run's id (the `request_id` of its chunks).
  uint64_t id() const noexcept { return id_; }

  /// Starts iterating (waits for the first chunk).
  iterator begin() { return iterator{this}; }

  /// The end.
  iterator end() { return iterator{}; }

private:
  friend class chain;

  chain_stream(const chain& c, variables vars);

  std::unique_ptr<caf::scoped_actor> self_;
  caf::actor run_;
  output_parser parser_;
  std::chrono::milliseconds timeout_;
  uint64_t id_ = 0;
  bool ended_ = false;
  std::optional<chain_output> output_;
  chain::result_type result_;
};

/// Several chains run on the same variables at once; the results by name.
class parallel_chain {
public:
  /// Each branch's result.
  using result_type = std::map<std::string, chain::result_type>;

  /// Branches by name.
  explicit parallel_chain(std::map<std::string, chain> branches);

  /// Runs all branches and waits for all.
  result_type invoke(const variables& vars = {}) const;

  /// Runs without blocking.
  std::future<result_type> ainvoke(variables vars = {}) const;

  /// Runs from `self`; calls `f` on `self`'s thread once all are in.
  void ainvoke(caf::event_based_actor* self, variables vars,
               std::function<void(result_type)> f) const;

  /// The branches.
  const std::map<std::string, chain>& branches() const noexcept {
    return branches_;
  }

private:
  std::map<std::string, chain> branches_;
};

/// Makes a `parallel_chain` of `branches`.
parallel_chain parallel(std::map<std::string, chain> branches);

/// Returns the texts of the successful branches of `results` as variables
/// for a next step (e.g. a prompt combining them); the first failure, if
/// any, instead.
caf::expected<variables>
to_variables(const parallel_chain::result_type& results);

} // namespace maritaca

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(maritaca::chain_output)
