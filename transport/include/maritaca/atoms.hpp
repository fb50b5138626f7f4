#pragma once

/// @file
/// Every atom of the library's actor protocols, in one place with unique
/// names and values: the transport's events and the actors' messages. A
/// name means one thing everywhere (the transport's `cancel_atom` is the
/// dispatcher's). CAF 0.17 atoms: at most 10 characters.

#include <caf/atom.hpp>

namespace maritaca {

// -- asks, sessions, dispatcher
// ------------------------------------------------

/// Ask something (dispatcher, session).
using ask_atom = caf::atom_constant<caf::atom("m_ask")>;
/// Ask something, streaming the answer to a subscriber.
using stream_atom = caf::atom_constant<caf::atom("m_stream")>;
/// Cancel an ask by its id (dispatcher), an exchange by its tag
/// (transport).
using cancel_atom = caf::atom_constant<caf::atom("m_cancel")>;
/// Query counters (dispatcher: `dispatcher_stats`, transport:
/// `pool_stats`).
using stats_atom = caf::atom_constant<caf::atom("m_stats")>;
/// List the service's models (dispatcher), or the transport's event with
/// the decoded list.
using models_atom = caf::atom_constant<caf::atom("m_models")>;
/// Read a session's history.
using history_atom = caf::atom_constant<caf::atom("m_history")>;
/// Clear a session's history.
using clear_atom = caf::atom_constant<caf::atom("m_clear")>;
/// Save a session as JSON.
using save_atom = caf::atom_constant<caf::atom("m_save")>;
/// Load a session from JSON.
using load_atom = caf::atom_constant<caf::atom("m_load")>;
/// Append messages to a session's history without asking.
using append_atom = caf::atom_constant<caf::atom("m_append")>;
/// Internal: start a request actor.
using run_atom = caf::atom_constant<caf::atom("m_run")>;
/// Internal: wake up (retry timers, rate-limit timers, deadlines).
using tick_atom = caf::atom_constant<caf::atom("m_tick")>;
/// Internal: a request actor reports the tokens an ask used.
using settle_atom = caf::atom_constant<caf::atom("m_settle")>;
/// Internal: `(expire_atom, generation)` makes the dispatcher end the asks
/// whose deadline passed; `(expire_atom, id)` tells a request actor that its
/// ask's deadline passed.
using expire_atom = caf::atom_constant<caf::atom("m_expire")>;

// -- cluster limiter
// -------------------------------------------------------------

/// Client -> limiter: asks for one slot.
using acquire_atom = caf::atom_constant<caf::atom("m_acquire")>;
/// Limiter -> client: a slot is the client's until released or expired.
using grant_atom = caf::atom_constant<caf::atom("m_grant")>;
/// Client -> limiter: frees a slot or drops a waiting acquire.
using release_atom = caf::atom_constant<caf::atom("m_release")>;
/// Client -> limiter: renews the client's leases (and checks liveness).
using renew_atom = caf::atom_constant<caf::atom("m_renew")>;
/// Internal: a dispatcher (re-)joins its limiter.
using join_atom = caf::atom_constant<caf::atom("m_join")>;
/// Internal: the limiter's lease expiry sweep.
using expiry_atom = caf::atom_constant<caf::atom("m_expiry")>;

// -- tools, agents, chains
// ------------------------------------------------------

/// Run one tool call.
using tool_call_atom = caf::atom_constant<caf::atom("m_toolcall")>;
/// Run an agent.
using agent_atom = caf::atom_constant<caf::atom("m_agent")>;
/// Run a chain.
using chain_atom = caf::atom_constant<caf::atom("m_chain")>;

// -- the transport's exchanges
// --------------------------------------------------

/// Starts an exchange: `(exchange_atom, call)`.
using exchange_atom = caf::atom_constant<caf::atom("mx_xchg")>;
/// Acknowledges chunk batches: `(ack_atom, tag, count)`.
using ack_atom = caf::atom_constant<caf::atom("mx_ack")>;
/// Event: `(chunks_atom, tag, sse::chunk_batch)`.
using chunks_atom = caf::atom_constant<caf::atom("mx_chunks")>;
/// Event: `(completion_atom, tag, chat_completion)`.
using completion_atom = caf::atom_constant<caf::atom("mx_compl")>;
/// Event: `(body_atom, tag, response_head, std::string)`.
using body_atom = caf::atom_constant<caf::atom("mx_body")>;
/// Event: `(done_atom, tag)` -- a stream ended with `[DONE]`.
using done_atom = caf::atom_constant<caf::atom("mx_done")>;
/// Event: `(failed_atom, tag, failure)`.
using failed_atom = caf::atom_constant<caf::atom("mx_failed")>;

} // namespace maritaca
