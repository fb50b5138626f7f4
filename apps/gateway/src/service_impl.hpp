#pragma once

// What the gateway's routes share (service.cpp: the routes and one-shot
// calls; streams.cpp: the actors that stream answers). Private to
// apps/gateway/src. No Beast here.

#include "codec.hpp"

#include "maritaca/gateway/service.hpp"

#include "maritaca/session.hpp"

#include <caf/actor_cast.hpp>
#include <caf/atom.hpp>
#include <caf/send.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <unordered_map>

namespace maritaca::gateway {

namespace detail {

/// The client of an HTTP request went away.
using gone_atom = caf::atom_constant<caf::atom("gw_gone")>;
/// A stream piece is on the wire.
using wrote_atom = caf::atom_constant<caf::atom("gw_wrote")>;

using clock_type = std::chrono::steady_clock;

/// Seconds since `t`.
inline double seconds_since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

/// How a streamed answer is written.
enum class stream_mode {
  /// `GET /stream`: the content pieces as text/plain chunks.
  text,
  /// `GET /stream` with `Accept: text/event-stream`: one event per piece.
  sse,
  /// `POST /v1/chat/completions` with `"stream": true`: OpenAI chunks.
  openai,
};

/// An open chat session.
struct session_entry {
  session_actor handle;
  clock_type::time_point last_used;
};

} // namespace detail

/// What the routes share.
struct service::impl {
  impl(chat_model m, service_config c)
      : model(std::move(m)), cfg(std::move(c)),
        stats(std::make_shared<gateway::metrics>()),
        tokens(std::make_shared<token_set>(cfg.tokens)),
        rng(std::random_device{}()) {
    // nop
  }

  chat_model model;
  service_config cfg;
  std::shared_ptr<gateway::metrics> stats;
  std::shared_ptr<const token_set> tokens;
  /// Sessions are touched from I/O threads, so a mutex guards the map (it
  /// holds only actor handles, never actor state).
  std::mutex mtx;
  std::unordered_map<std::string, detail::session_entry> sessions;
  std::mt19937_64 rng;
  /// Set by `service::shutdown`: asks cut short by it answer 503.
  std::atomic<bool> down{false};

  /// The client's view of failure `f`: the upstream's error, or 503
  /// "shutting down" for an ask the gateway's shutdown cancelled.
  detail::http_error client_error(const failure& f) const {
    if (f.code == errc::cancelled && down.load())
      return detail::http_error{503, "server_error", "shutting_down",
                                "the gateway is shutting down", -1};
    return detail::map_failure(f);
  }

  /// Closes sessions unused for longer than the TTL. Requires `mtx`.
  void sweep_locked() {
    auto now = detail::clock_type::now();
    for (auto i = sessions.begin(); i != sessions.end();) {
      if (now - i->second.last_used > cfg.session_ttl) {
        caf::anon_send_exit(i->second.handle, caf::exit_reason::user_shutdown);
        i = sessions.erase(i);
      } else {
        ++i;
      }
    }
    stats->set_sessions(sessions.size());
  }

  /// Returns a fresh unguessable session id. Requires `mtx`.
  std::string new_session_id_locked() {
    static constexpr char digits[] = "0123456789abcdef";
    std::string id = "sess_";
    for (int i = 0; i < 2; ++i) {
      auto x = rng();
      for (int j = 0; j < 16; ++j, x >>= 4)
        id += digits[x & 0xf];
    }
    return id;
  }

  /// Prepares an ask for `req`: fairness lane per bearer token (FIFO per
  /// client, clients take turns) and the forwarded header fields.
  void adjust(ask& x, const request& req) const {
    auto auth = req.header("authorization");
    if (!auth.empty()) {
      // FNV-1a of the credential, so that it is not kept anywhere.
      uint64_t h = 1469598103934665603ull;
      for (unsigned char c : auth)
        h = (h ^ c) * 1099511628211ull;
      x.lane = (h >> 3) | (uint64_t{1} << 61);
    }
    for (auto& name : cfg.forward_headers)
      if (auto v = req.header(name); !v.empty())
        x.options.headers.push_back({name, std::string{v}});
  }
};

namespace detail {

using impl_ptr = std::shared_ptr<service::impl>;
using responder_ptr = std::shared_ptr<responder>;

/// Tells `self` (by a message) when the client of `res` goes away.
template <class Self>
void watch_client(Self* self, const responder_ptr& res) {
  res->on_disconnect([addr = self->address()] {
    if (auto a = caf::actor_cast<caf::actor>(addr))
      caf::anon_send(a, gone_atom::value);
  });
}

/// Records the usage of an answer.
inline void count_tokens(const impl_ptr& svc, const ai_message& m) {
  if (m.usage)
    svc->stats->add_tokens(m.usage->prompt_tokens, m.usage->completion_tokens);
}

/// Spawns the actor streaming ask `x` to the client of `res` in `mode`.
void spawn_stream(const impl_ptr& svc, responder_ptr res, ask x,
                  stream_mode mode, bool include_usage);

/// Spawns the actor streaming the answer of session `s` to `text`.
void spawn_session_stream(const impl_ptr& svc, responder_ptr res,
                          session_actor s, std::string text, stream_mode mode);

} // namespace detail

} // namespace maritaca::gateway
