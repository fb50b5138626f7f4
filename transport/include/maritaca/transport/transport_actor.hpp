#pragma once

/// @file
/// The transport actor: the typed CAF façade over `http_client`. A caller
/// (usually a request actor) sends `(exchange_atom, call)`; the transport
/// starts the HTTP exchange and the I/O thread sends the decoded results
/// straight back to the caller as messages (see "events" below). The
/// io_context never runs inside an actor, and Asio handlers never touch actor
/// state: they only send messages.

#include "maritaca/atoms.hpp"
#include "maritaca/transport/http_client.hpp"
#include "maritaca/transport/sse_parser.hpp"
#include "maritaca/types.hpp"

#include <caf/actor_system.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <cstdint>
#include <vector>

namespace maritaca::transport {

// The transport's atoms (maritaca/atoms.hpp), under their old names here.
using maritaca::ack_atom;
using maritaca::body_atom;
using maritaca::cancel_atom;
using maritaca::chunks_atom;
using maritaca::completion_atom;
using maritaca::done_atom;
using maritaca::exchange_atom;
using maritaca::failed_atom;
using maritaca::models_atom;
using maritaca::stats_atom;

/// How the transport decodes a successful (2xx) response.
enum class expect : uint8_t {
  /// A `chat.completion` JSON body -> one `completion_atom` event.
  completion,
  /// An SSE stream of chunks -> `chunks_atom` events, then `done_atom`.
  chunks,
  /// A models list -> one `models_atom` event.
  models,
  /// Any body -> one `body_atom` event.
  raw,
};

/// Returns a process-wide unique tag for a `call`.
uint64_t next_tag() noexcept;

/// One exchange to run.
struct call {
  /// Chosen by the caller (see `next_tag`); every event carries it.
  uint64_t tag = 0;
  /// The HTTP request.
  transport::request req;
  /// How to decode a 2xx response.
  transport::expect what = expect::completion;
  /// Streams: the transport stops reading the socket while this many chunk
  /// batches are unacknowledged (credit-based back-pressure).
  uint32_t window = 16;
  /// Streams: upper bound of one SSE event.
  std::size_t max_event_bytes = 1u << 20;
};

/// The transport's interface.
///
/// Events the caller (the sender of `exchange_atom`) receives, all tagged:
/// - `(chunks_atom, tag, sse::chunk_batch)`: the chunks decoded from one
///   read; answer each with `(ack_atom, tag, 1)` (or batch the acks);
/// - `(completion_atom, tag, chat_completion)`, `(models_atom, tag, models)`
///   or `(body_atom, tag, head, body)`: the result of a non-stream call;
/// - `(done_atom, tag)`: a stream ended properly;
/// - `(failed_atom, tag, failure)`: HTTP status >= 300 (with the server's
///   error message, `retry_after_ms` from `retry-after-ms` / `retry-after`,
///   and `should_retry` from `x-should-retry`), a transport error, a decode
///   error, or cancellation.
/// Exactly one of completion/models/body/done/failed ends every call. The
/// transport monitors the caller: when it goes down, its exchanges are
/// cancelled.
using transport_actor =
    caf::typed_actor<caf::reacts_to<exchange_atom, call>,
                     caf::reacts_to<cancel_atom, uint64_t>,
                     caf::reacts_to<ack_atom, uint64_t, uint32_t>,
                     caf::replies_to<stats_atom>::with<pool_stats>>;

/// Spawns a transport owning an `http_client` with `cfg`. The client (and
/// its I/O threads) lives until the actor exits; every running exchange then
/// ends with `failed_atom` / `errc::cancelled`.
transport_actor spawn_transport(caf::actor_system& sys, client_config cfg = {});

} // namespace maritaca::transport

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(maritaca::transport::call)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(maritaca::transport::pool_stats)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(maritaca::transport::response_head)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(maritaca::failure)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(maritaca::chat_completion)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(maritaca::completion_chunk)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(maritaca::sse::chunk_batch)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<maritaca::model_info>)
