#pragma once

/// @file
/// The cluster limiter: one concurrency and rate budget shared by the
/// dispatchers of many processes. It is published on a port with CAF's
/// middleman; dispatchers elsewhere reach it with the middleman's
/// `connect_atom` (CAF's remote_actor) and admit each ask only with a lease
/// from it, while the HTTP work stays in their own process. Every message
/// it takes or sends is made of atoms and integers, so it crosses nodes.
///
/// Protocol (client: a dispatcher, local or remote):
/// - `(acquire_atom, lease, tokens)`: asks for one slot, `lease` being an id
///   unique for the client and `tokens` an estimate for the token budget.
///   When a slot (and the rate budget) is free, the limiter sends
///   `(grant_atom, lease, ttl_ms)` to the client. Acquires wait FIFO.
/// - `(release_atom, lease, tokens_used)`: frees the slot, or drops a
///   waiting acquire; `tokens_used` settles the token budget (< 0: keep the
///   estimate).
/// - `(renew_atom)` -> `(held, ttl_ms)`: extends every lease of the sender
///   by the TTL; also the join handshake and the heartbeat. A lease not
///   renewed within its TTL is taken back.
/// - `(stats_atom)` -> `(in_use, max_in_use, waiting, clients, expired)`.
///
/// The limiter monitors every client: when a client ends, or its node's
/// connection drops, its leases and waiting acquires are released at once.

#include "maritaca/atoms.hpp"
#include "maritaca/messages.hpp"

#include <caf/actor.hpp>
#include <caf/atom.hpp>
#include <caf/expected.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace caf {
class actor_system;
class actor_system_config;
} // namespace caf

namespace maritaca {

/// The limiter's budget.
struct limiter_config {
  /// Slots (requests on the wire) at once in the whole cluster.
  std::size_t max_concurrency = 16;
  /// Grants per minute; 0 means unlimited.
  uint32_t requests_per_minute = 0;
  /// Tokens per minute (estimated at acquire, settled at release); 0 means
  /// unlimited.
  uint64_t tokens_per_minute = 0;
  /// A lease not renewed for this long is taken back.
  std::chrono::milliseconds lease_ttl{10'000};
};

/// Spawns a limiter (see the protocol above).
caf::actor spawn_limiter(caf::actor_system& sys, limiter_config cfg);

/// Splits "HOST:PORT" (or "[IPv6]:PORT") into `host` and `port`; returns
/// false when `address` has no valid port.
bool parse_host_port(const std::string& address, std::string& host,
                     uint16_t& port);

/// Publishes `limiter` on `address` ("HOST:PORT"; port 0 picks a free one)
/// with the middleman of `sys` (which must have been loaded, see
/// `configure_cluster`); returns the port.
caf::expected<uint16_t> publish_limiter(caf::actor_system& sys,
                                        const caf::actor& limiter,
                                        const std::string& address);

/// Prepares an actor system configuration for a cluster: loads CAF's
/// middleman (network actors) and sets its heartbeat. Call before
/// constructing the actor system, in every process that publishes or joins
/// a limiter (a `chat_model` with its own system does it by itself).
void configure_cluster(caf::actor_system_config& cfg);

} // namespace maritaca
