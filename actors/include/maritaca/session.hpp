#pragma once

/// @file
/// Chat sessions: one actor per conversation. It keeps the history (system
/// prompt, user, assistant and tool messages), sends each ask with the whole
/// history through the dispatcher (its own fairness lane), appends the
/// answer, and runs its asks one after another so the history stays
/// consistent. `chat_session` is the RAII handle for plain code -- the
/// seed's async context manager: the history is gone when it goes.

#include "maritaca/atoms.hpp"
#include "maritaca/chat_model.hpp"
#include "maritaca/messages.hpp"

#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace maritaca {

/// Settings of a session.
struct session_config {
  /// System prompt (first message of the history), if not empty.
  std::string system_prompt;
  /// Keep the history within this many (estimated) tokens by dropping the
  /// oldest turns; 0 keeps everything. The system prompt and the newest
  /// user message always stay.
  int64_t max_history_tokens = 0;
};

/// A session's interface.
/// - `(ask_atom, input)` -> `ai_message`: appends `input`'s messages (a
///   string becomes a user message), asks, appends the answer.
/// - `(stream_atom, input, subscriber)` -> `ai_message`: the same, the answer
///   streamed to `subscriber`.
/// - `(append_atom, std::vector<chat_message>)`: appends messages (e.g. tool
///   results) without asking.
/// - `(history_atom)` -> the history.
/// - `(clear_atom)`: clears the history but the system prompt.
/// - `(save_atom)` -> JSON text; `(load_atom, json)` -> messages loaded.
using session_actor = caf::typed_actor<
    caf::replies_to<ask_atom, input>::with<ai_message>,
    caf::replies_to<stream_atom, input, caf::actor>::with<ai_message>,
    caf::reacts_to<append_atom, std::vector<chat_message>>,
    caf::replies_to<history_atom>::with<std::vector<chat_message>>,
    caf::reacts_to<clear_atom>, caf::replies_to<save_atom>::with<std::string>,
    caf::replies_to<load_atom, std::string>::with<uint64_t>>;

/// Spawns a session asking through `model`.
session_actor spawn_session(const chat_model& model, session_config cfg = {});

/// Asks session `s` from the actor `self`, like `chat_model::ainvoke`: a
/// plain string is a user message: `ainvoke(self, s, "Oi").then(...)`.
/// `timeout` bounds the wait (give the model's `ask_timeout`, which bounds
/// the session's own ask; a session that ends answers `cancelled`).
template <class Self>
auto ainvoke(Self* self, const session_actor& s, input in,
             std::chrono::milliseconds timeout = default_ask_timeout) {
  return self->request(s, timeout, ask_atom::value, std::move(in));
}

/// Asks session `s` from `self` with the answer streamed to `subscriber`
/// (`chat_chunk`s, then `stream_done` or `stream_failed`); the whole answer
/// is also the response to `self`.
template <class Self>
auto astream(Self* self, const session_actor& s, caf::actor subscriber,
             input in,
             std::chrono::milliseconds timeout = default_ask_timeout) {
  return self->request(s, timeout, stream_atom::value, std::move(in),
                       std::move(subscriber));
}

/// Estimates the tokens of `msg` (about 4 bytes per token plus framing).
int64_t estimate_tokens(const chat_message& msg);

/// Drops the oldest turns of `history` until its estimate is within
/// `budget` (the leading system message and the last message stay).
void trim_history(std::vector<chat_message>& history, int64_t budget);

/// Serializes a history (and model name) as JSON: a chat request body.
std::string save_history(const std::string& model,
                         const std::vector<chat_message>& history);

/// Reads what `save_history` wrote; returns a failure on malformed input.
failure load_history(std::string_view json, std::vector<chat_message>& history);

/// A session for plain code: spawns the actor, asks blocking, and ends the
/// session (clearing its history) on destruction.
class chat_session {
public:
  /// Starts a session on `model`.
  explicit chat_session(const chat_model& model, session_config cfg = {});

  ~chat_session();

  chat_session(const chat_session&) = delete;
  chat_session& operator=(const chat_session&) = delete;

  /// Asks and waits; the history grows by the question and the answer.
  chat_model::result_type chat(input in);

  /// Returns the history.
  std::vector<chat_message> history();

  /// Clears the history (but the system prompt).
  void clear();

  /// The session actor.
  session_actor handle() const noexcept { return handle_; }

private:
  chat_model model_;
  session_actor handle_;
};

} // namespace maritaca
