#pragma once

// The blocking side of a stream subscription, shared by chunk_stream and
// chain_stream: a scoped actor waits for the next message about one ask.

#include "maritaca/messages.hpp"

#include <caf/error.hpp>
#include <caf/scoped_actor.hpp>

#include <chrono>
#include <cstdint>
#include <utility>

namespace maritaca::detail {

/// What `receive_stream_step` got.
struct stream_step {
  /// A chunk, the answer, the error, or nothing within the timeout.
  enum kind_type { chunk, done, failed, timed_out } kind = timed_out;
  /// The chunk (kind `chunk`).
  chat_chunk next;
  /// The end of the stream (kind `done`).
  stream_done end;
  /// The error (kind `failed`).
  caf::error error;
};

/// Waits up to `timeout` for the next chunk, `stream_done` or
/// `stream_failed` of ask `id` in the mailbox of `self`; messages of other
/// asks are dropped. `extra` handlers (e.g. for a chain's output) run for
/// the messages they match and the wait goes on.
template <class... Extra>
stream_step receive_stream_step(caf::scoped_actor& self, uint64_t id,
                                std::chrono::milliseconds timeout,
                                Extra&&... extra) {
  stream_step out;
  bool waiting = true;
  while (waiting) {
    self->receive(
        [&](chat_chunk& x) {
          if (x.request_id != id) return;
          out.kind = stream_step::chunk;
          out.next = std::move(x);
          waiting = false;
        },
        [&](stream_done& x) {
          if (x.request_id != id) return;
          out.kind = stream_step::done;
          out.end = std::move(x);
          waiting = false;
        },
        [&](stream_failed& x) {
          if (x.request_id != id) return;
          out.kind = stream_step::failed;
          out.error = std::move(x.error);
          waiting = false;
        },
        std::forward<Extra>(extra)...,
        caf::after(timeout) >> [&] { waiting = false; });
  }
  return out;
}

} // namespace maritaca::detail
