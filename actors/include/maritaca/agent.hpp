#pragma once

/// @file
/// The agent loop: ask, run the tools the model calls, hand their results
/// back as `tool` messages, and ask again until the model answers without
/// tools or the step limit is hit.
///
/// Each run is an actor of its own. The calls of one answer run
/// concurrently: a function tool on a worker actor (and thread) of its own,
/// an actor tool through a request; every call is bounded by
/// `agent_config::tool_timeout`, every ask by the model's `ask_timeout`, and
/// the whole run by `agent_config::timeout`. A tool that fails, times out,
/// is unknown or gets arguments that do not fit its schema does not end
/// the run: the model reads `error: ...` as that call's result. A run
/// replies exactly once: the `agent_result`, or the error (the model's
/// failure, `errc::invalid_argument` for bad tools, `errc::timeout`, or
/// `errc::step_limit`).
///
/// Inside a session, a run starts from the session's history and, when it
/// succeeds, appends the whole exchange (the input, each assistant message
/// with tool calls, the tool results and the final answer) with
/// `append_atom`; a failed run leaves the history as it was.

#include "maritaca/atoms.hpp"
#include "maritaca/chat_model.hpp"
#include "maritaca/messages.hpp"
#include "maritaca/session.hpp"
#include "maritaca/tools.hpp"

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/expected.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <chrono>
#include <cstdint>
#include <future>
#include <optional>
#include <vector>

namespace maritaca {

/// What a successful run gives.
struct agent_result {
  /// The final answer (without tool calls).
  ai_message answer;
  /// The messages of the run: the input, each assistant message with tool
  /// calls followed by its `tool` results, and the final answer.
  std::vector<chat_message> messages;
  /// Asks made.
  uint32_t steps = 0;
  /// Tool calls run.
  uint32_t tool_calls = 0;
};

/// An agent's interface: `(agent_atom, input)` -> `agent_result`.
using agent_actor =
    caf::typed_actor<caf::replies_to<agent_atom, input>::with<agent_result>>;

/// Settings of an agent.
struct agent_config {
  /// Asks of one run at most; an answer that still calls tools at the last
  /// step ends the run with the step-limit error.
  uint32_t max_steps = 8;
  /// Upper bound of one tool call.
  std::chrono::milliseconds tool_timeout{60'000};
  /// Tool choice of the first ask (unset: the model's).
  std::optional<maritaca::tool_choice> choice;
  /// Keep `choice` for every ask. By default later asks leave the choice to
  /// the service ("auto"), so that "required" or a forced function cannot
  /// loop until the step limit.
  bool keep_choice = false;
  /// Upper bound of a whole run; zero means one ask timeout (the session's
  /// history read) plus `max_steps` times (ask timeout plus tool timeout).
  std::chrono::milliseconds timeout{0};
};

/// An agent: a model, its tools and settings, optionally a session. A cheap
/// value; each run spawns its own actor.
class agent {
public:
  /// Result of a run.
  using result_type = caf::expected<agent_result>;

  /// An agent asking `model` with `tools` (bound to every ask, replacing the
  /// model's own tools).
  agent(chat_model model, std::vector<tool> tools, agent_config cfg = {});

  /// Returns this agent running inside `session` (see the file comment).
  agent in_session(session_actor session) const;

  /// Runs and waits.
  result_type run(input in) const;

  /// Runs without blocking.
  std::future<result_type> arun(input in) const;

  /// Runs from the actor `self`: `agent.arun(self, "...").then(...)`. The
  /// request's timeout is `run_timeout()`.
  template <class Self>
  auto arun(Self* self, input in) const {
    return self->request(spawn_run(), run_timeout(), agent_atom::value,
                         std::move(in));
  }

  /// Spawns a long-lived agent actor. It runs requests concurrently, or one
  /// after another inside a session (so their exchanges do not interleave).
  agent_actor spawn() const;

  /// Spawns the actor of one run; it answers one `(agent_atom, input)`.
  agent_actor spawn_run() const;

  /// The whole run's deadline (`agent_config::timeout` or the computed one).
  std::chrono::milliseconds deadline() const;

  /// The timeout callers should give a run's request: `deadline()` plus a
  /// margin, so that the run's own typed error arrives first.
  std::chrono::milliseconds run_timeout() const;

  /// The model.
  const chat_model& model() const noexcept { return model_; }

  /// The same agent with a model handle for actors to keep
  /// (`chat_model::for_actor`): the runs and agent actors it spawns hold
  /// this one.
  agent for_actor() const;

  /// The tools.
  const std::vector<tool>& tools() const noexcept { return tools_; }

  /// The settings.
  const agent_config& config() const noexcept { return cfg_; }

  /// The session, if any.
  const session_actor& session() const noexcept { return session_; }

private:
  chat_model model_;
  std::vector<tool> tools_;
  agent_config cfg_;
  session_actor session_;
};

/// Runs an agent on `model` with `tools` and waits for the final answer.
caf::expected<ai_message> run_agent(const chat_model& model,
                                    std::vector<tool> tools, input in,
                                    agent_config cfg = {});

/// Spawns a long-lived agent actor (see `agent::spawn`).
agent_actor spawn_agent(const chat_model& model, std::vector<tool> tools,
                        agent_config cfg = {});

/// Spawns a long-lived agent actor running inside `session`.
agent_actor spawn_agent(session_actor session, const chat_model& model,
                        std::vector<tool> tools, agent_config cfg = {});

/// Returns whether `err` says that a run hit its step limit
/// (`errc::step_limit`: the model kept calling tools).
bool is_step_limit(const caf::error& err);

} // namespace maritaca

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(maritaca::agent_result)
