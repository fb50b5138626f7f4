#pragma once

/// @file
/// The gateway's routes, implemented with the actor API: `/ask`, `/stream`,
/// the OpenAI-compatible `/v1/chat/completions`, `/v1/models`, `/healthz`,
/// `/metrics` and chat sessions. A `service` mounts them into a `router`,
/// next to a user's own routes -- the way the seed mounts the model inside
/// FastAPI. Every upstream request goes through the model's dispatcher, so
/// its concurrency and rate limits hold for everything the gateway sends.

#include "maritaca/chat_model.hpp"
#include "maritaca/gateway/metrics.hpp"
#include "maritaca/gateway/router.hpp"

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace maritaca::gateway {

/// Settings of the routes.
struct service_config {
  /// Bearer tokens accepted on every route but /healthz; empty: no check.
  std::vector<std::string> tokens;
  /// Request header fields copied to the upstream request (e.g.
  /// "x-sim-fault" for tests against maritaca-sim). Empty by default:
  /// nothing a client sends reaches the upstream but the body.
  std::vector<std::string> forward_headers;
  /// Chat sessions open at once; more get 429.
  std::size_t max_sessions = 1000;
  /// A session unused for this long is closed.
  std::chrono::seconds session_ttl{1800};
  /// Bound of stream pieces written to a client but not yet on the wire;
  /// beyond it the gateway stops acknowledging chunks, which slows the
  /// upstream read (back-pressure).
  std::size_t stream_write_window = 16;
};

/// The gateway's routes over one chat model.
class service {
public:
  /// Serves asks through `model` (its settings -- model name, sampling,
  /// deadlines, retries -- apply to /ask, /stream and sessions).
  explicit service(chat_model model, service_config cfg = {});

  /// Ends the open sessions.
  ~service();

  service(const service&) = delete;
  service& operator=(const service&) = delete;

  /// Adds the gateway's routes to `r`, each path prefixed with `prefix`
  /// (e.g. "/ai"; empty: at the root). Sets the router's tokens and
  /// metrics to this service's unless the router has some already.
  void mount(router& r, const std::string& prefix = "") const;

  /// The metrics the routes record.
  std::shared_ptr<gateway::metrics> metrics() const;

  /// The token set made from the configuration.
  std::shared_ptr<const token_set> tokens() const;

  /// The chat model.
  const chat_model& model() const;

  /// Ends the open sessions (also done by the destructor).
  void shutdown();

  /// Internal: the implementation.
  struct impl;

private:
  std::shared_ptr<impl> impl_;
};

} // namespace maritaca::gateway
