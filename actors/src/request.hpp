#pragma once

/// @file
/// The request actor: it runs one admitted ask at a time. It builds the
/// HTTP request, asks the transport, retries per `retry_policy`, fans
/// streamed chunks out to subscribers with credit-based back-pressure,
/// aggregates the final answer and guarantees exactly one terminal message
/// to its requester and to each subscriber. A dispatcher keeps its request
/// actors between asks (spawning and ending an actor per ask cost more than
/// the rest of the actor work of an ask).

#include "dispatcher_impl.hpp"

#include "maritaca/messages.hpp"
#include "maritaca/transport/transport_actor.hpp"

#include <caf/actor.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace maritaca {

/// What the request actor does.
enum class request_kind : uint8_t {
  /// `POST /chat/completions`.
  chat,
  /// `GET /models`.
  models,
};

/// Everything a request actor needs.
struct request_job {
  /// Chat or models.
  request_kind kind = request_kind::chat;
  /// The ask (ignored for models but for its id and options).
  maritaca::ask ask;
  /// Where to send it.
  maritaca::endpoint where;
  /// The transport.
  transport::transport_actor wire;
  /// The dispatcher that owns the actor: after each job the actor reports
  /// `(settle_atom, ask id, tokens used or -1)` to it and waits for the
  /// next one. Null: the actor quits after this job.
  detail::dispatcher_impl owner;
};

/// Spawns an idle request actor. `(run_atom, request_job)` starts a job
/// (usually delegated by the dispatcher, so that the reply reaches the
/// original requester); an actor that is still busy answers it with
/// `invalid_argument`. `(cancel_atom, id)` cancels the job of ask `id` and
/// `(expire_atom, id)` ends it with `timeout`; an exit message ends the
/// running job with `cancelled`, then the actor.
caf::actor spawn_request(caf::actor_system& sys);

/// The failure of an ask that outlived its deadline (`ask_options::timeout`,
/// enforced by the dispatcher): `errc::timeout`, `deadline::total`.
failure ask_deadline_failure();

/// A retry decision.
struct retry_decision {
  /// Whether to try again.
  bool retry = false;
  /// How long to wait before.
  std::chrono::milliseconds delay{0};
};

/// Decides whether attempt `retries_done + 1` follows `what`:
/// `x-should-retry` wins when present; otherwise timeouts, connection
/// failures before any response byte, 408, 409, 429 and (if enabled) 5xx
/// are retried, never once stream data was delivered. The delay is the
/// server's `retry-after(-ms)` capped by `max_retry_after`, else
/// `min(initial * 2^n, max_backoff)` times a factor in [1 - jitter, 1]
/// taken from `random01` (in [0, 1)).
retry_decision decide_retry(const failure& what, uint32_t retries_done,
                            const retry_policy& policy, bool data_delivered,
                            double random01);

/// Joins streamed chunks into the final answer: content per choice, tool
/// calls joined by index, usage, finish reason, id and model.
class chunk_aggregator {
public:
  /// Adds one chunk.
  void add(const completion_chunk& x);

  /// Adds the chunks of a transport batch (before their pieces are taken).
  void add(const sse::chunk_batch& x);

  /// Returns the answer (choice 0) built so far.
  ai_message result() const;

  /// Returns whether any chunk was added.
  bool empty() const noexcept { return chunks_ == 0; }

private:
  // Notes the id and model of a chunk (the first non-empty ones stay).
  void add_header(const std::string& id, const std::string& model);

  // Adds a choice's delta.
  void add_choice(const chunk_choice& c);

  struct choice_state {
    std::string role;
    std::string content;
    bool has_content = false;
    std::map<int64_t, tool_call> calls;
    std::string finish_reason;
  };
  uint64_t chunks_ = 0;
  std::string id_;
  std::string model_;
  std::optional<maritaca::usage> usage_;
  std::map<int64_t, choice_state> choices_;
};

/// Builds the answer from a non-streamed completion (choice 0).
ai_message to_ai_message(chat_completion&& x);

} // namespace maritaca

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(maritaca::request_job)
