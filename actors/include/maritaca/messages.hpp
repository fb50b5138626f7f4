#pragma once

/// @file
/// The actor protocol: atoms, the ask message, answers, and what stream
/// subscribers receive.
///
/// A subscriber of a streamed ask receives `chat_chunk` messages in order,
/// then exactly one `stream_done` or `stream_failed`. Some chunks arrive as
/// requests: a handler returning `void` answers them automatically, and
/// those answers are the credit of the back-pressure protocol (a subscriber
/// that falls behind makes the request stop reading the socket).

#include "maritaca/atoms.hpp"
#include "maritaca/failure.hpp"
#include "maritaca/options.hpp"
#include "maritaca/transport/transport_actor.hpp"
#include "maritaca/types.hpp"

#include <caf/actor.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/error.hpp>

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace maritaca {

// The atoms of every protocol are in maritaca/atoms.hpp.

// -- input
// ----------------------------------------------------------------------

/// What a caller asks: a string, a list of (role, text) pairs, or full
/// messages -- the three forms of the seed. Roles "human" and "ai" are
/// accepted as aliases of "user" and "assistant".
struct input {
  /// The conversation to send.
  std::vector<chat_message> messages;

  /// An empty input.
  input() = default;

  /// One user message.
  input(const char* text) : input(std::string{text}) {}

  /// One user message.
  input(std::string text) {
    messages.push_back(chat_message::user(std::move(text)));
  }

  /// (role, text) pairs, e.g. `{{"system", "..."}, {"human", "Oi!"}}`.
  input(std::initializer_list<std::pair<std::string, std::string>> pairs);

  /// (role, text) pairs.
  input(const std::vector<std::pair<std::string, std::string>>& pairs);

  /// Full messages.
  input(std::vector<chat_message> msgs) : messages(std::move(msgs)) {}
};

/// Maps LangChain-style role aliases ("human", "ai") to API roles.
std::string normalize_role(std::string role);

// -- answers
// --------------------------------------------------------------------

/// The answer to an ask: the assistant's message and its metadata.
struct ai_message {
  /// The ask's id (see `ask::id`).
  uint64_t request_id = 0;
  /// Completion id from the service.
  std::string id;
  /// Model that answered.
  std::string model;
  /// The assistant's message (content and tool calls).
  chat_message message;
  /// "stop", "length", "tool_calls", ...
  std::string finish_reason;
  /// Token accounting, when the service reported it.
  std::optional<maritaca::usage> usage;
  /// Attempts it took (1 without retries).
  uint32_t attempts = 1;

  /// The answer's text.
  const std::string& content() const noexcept { return message.text(); }

  /// The tool calls of the answer.
  const std::vector<tool_call>& tool_calls() const noexcept {
    return message.tool_calls;
  }
};

/// One streamed piece of an answer.
struct chat_chunk {
  /// The ask's id.
  uint64_t request_id = 0;
  /// Position of this chunk in the stream, from 0.
  uint64_t seq = 0;
  /// Choice index.
  int64_t index = 0;
  /// Content delta (may be empty).
  std::string content;
  /// Tool-call deltas (argument pieces join by `index`).
  std::vector<tool_call_delta> tool_calls;
  /// Set on the last chunk of a choice.
  std::string finish_reason;
  /// Set on the usage chunk at the end.
  std::optional<maritaca::usage> usage;
};

/// Ends a stream that succeeded; carries the aggregated answer.
struct stream_done {
  /// The ask's id.
  uint64_t request_id = 0;
  /// The whole answer: content joined, tool calls joined by index, usage.
  ai_message message;
};

/// Ends a stream that failed (after zero or more chunks).
struct stream_failed {
  /// The ask's id.
  uint64_t request_id = 0;
  /// What went wrong (category `maritaca`).
  caf::error error;
};

// -- asks
// -----------------------------------------------------------------------

/// Returns a process-wide unique ask id.
uint64_t next_request_id() noexcept;

/// Per-ask settings that override the model's.
struct ask_options {
  /// Deadlines of each attempt.
  transport::timeouts timeouts;
  /// Retries.
  retry_policy retry;
  /// Stream credit window.
  uint32_t stream_window = 256;
  /// Extra header fields of this ask's requests (e.g. tracing ids).
  transport::header_list headers;
  /// Upper bound of the whole ask from its arrival at the dispatcher
  /// (queueing, every attempt and the waits between them). The dispatcher
  /// enforces it: the ask then ends with `errc::timeout`, `deadline::total`
  /// (its exchange aborted). 0: no bound; the caller's own request timeout
  /// must then bound the wait. `chat_model` sets `model_config::ask_timeout`.
  std::chrono::milliseconds timeout{0};
  /// Set when the library refuses the ask before it is sent (e.g. an
  /// owning model handle used from an actor of its own system): the
  /// dispatcher answers `invalid_argument` with this text at once.
  std::string refused;
};

/// One ask, as the dispatcher receives it.
struct ask {
  /// Unique id (see `next_request_id`), also the handle for cancelling.
  uint64_t id = 0;
  /// Fairness lane: asks of one lane are FIFO, lanes take turns. 0 means
  /// "the sender's own lane".
  uint64_t lane = 0;
  /// The request body (its `stream` flag is set from `subscribers`).
  chat_request body;
  /// Deadlines, retries, window.
  ask_options options;
  /// Receivers of `chat_chunk` / `stream_done` / `stream_failed`; a
  /// non-empty list makes the ask stream.
  std::vector<caf::actor> subscribers;
};

/// Where a dispatcher's admission stands in a cluster (docs/cluster.md).
enum class cluster_status {
  /// No cluster configured: local limits only.
  none,
  /// Connecting to the limiter for the first time; nothing is admitted.
  joining,
  /// Every admitted ask holds a lease from the shared limiter.
  joined,
  /// The limiter is unreachable: the local fallback limit applies while the
  /// dispatcher tries to re-join.
  fallback,
};

/// Returns "none", "joining", "joined" or "fallback".
inline const char* to_string(cluster_status x) noexcept {
  switch (x) {
  case cluster_status::joining:
    return "joining";
  case cluster_status::joined:
    return "joined";
  case cluster_status::fallback:
    return "fallback";
  default:
    return "none";
  }
}

/// Counters of a dispatcher.
struct dispatcher_stats {
  /// Requests on the wire now.
  std::size_t in_flight = 0;
  /// Highest `in_flight` seen.
  std::size_t max_in_flight = 0;
  /// Asks waiting now.
  std::size_t queued = 0;
  /// Asks admitted so far.
  uint64_t admitted = 0;
  /// Asks that ended so far (any way).
  uint64_t completed = 0;
  /// Request actors alive now (running an ask or idle; the dispatcher keeps
  /// at most `max_concurrency` idle ones).
  std::size_t request_actors = 0;
  /// Asks refused with `overloaded`.
  uint64_t rejected = 0;
  /// Asks cancelled (queued or running).
  uint64_t cancelled = 0;
  /// Asks ended by their deadline (`ask_options::timeout` or
  /// `limits::max_queue_wait`).
  uint64_t timed_out = 0;
  /// Cluster admission state.
  cluster_status cluster = cluster_status::none;
  /// Leases held from the cluster limiter now.
  std::size_t leases = 0;
  /// Times the cluster limiter was lost (each a fallback to the local
  /// limit).
  uint64_t cluster_losses = 0;
};

// -- printing
// -------------------------------------------------------------------

// How CAF prints these types (caf::to_string, deep_to_string, the
// messages of a `maritaca` error): what they carry, short texts shortened,
// never a header value (an ask's extra headers may hold credentials).

/// E.g. `user: "Oi"` or `assistant: get_weather({"city":"Rio"})`.
std::string to_string(const chat_message& x);

/// The messages, e.g. `input([system: "...", user: "Oi"])`.
std::string to_string(const input& x);

/// E.g. `ai_message(id 7, model sabia-4, assistant: "4", stop, 1 attempt)`.
std::string to_string(const ai_message& x);

/// E.g. `chat_chunk(ask 7, seq 3, "word ")`.
std::string to_string(const chat_chunk& x);

/// `stream_done(ask 7, ai_message(...))`.
std::string to_string(const stream_done& x);

/// `stream_failed(ask 7, timeout: ...)`.
std::string to_string(const stream_failed& x);

/// `ask(id 7, lane 0, model sabia-4, 2 messages, stream)`.
std::string to_string(const ask& x);

/// The counters, e.g. `dispatcher_stats(in_flight 2, queued 0, ...)`.
std::string to_string(const dispatcher_stats& x);

} // namespace maritaca

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(maritaca::ai_message)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(maritaca::chat_chunk)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(maritaca::stream_done)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(maritaca::stream_failed)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(maritaca::ask)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(maritaca::dispatcher_stats)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(maritaca::chat_message)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<maritaca::chat_message>)
