#pragma once

/// @file
/// The simulator's HTTP(S) server: a multi-threaded Beast server with one
/// strand per connection. Usable as a program (maritaca-sim) or embedded in
/// another program or a unit test (it runs on its own threads), CMake
/// target `maritaca::sim`:
///
///     maritaca::sim::server sim;
///     maritaca::chat_model
///     model{maritaca::model_config{}.with_base_url(sim.start())};
///
/// It speaks the service's chat completions and models endpoints (under
/// /api and /v1), deterministically, with the fault injection of its
/// request headers (see `maritaca-sim --help`).

#include "maritaca/sim/options.hpp"

#include <memory>
#include <string>

namespace maritaca::sim {

/// A Maritaca-compatible server. Not copyable; stops when destroyed.
class server {
public:
  /// Prepares a server on 127.0.0.1 with an ephemeral port and one I/O
  /// thread (nothing listens yet): the offline default of programs and
  /// tests. `start()` returns the base URL to give a model.
  server();

  /// Prepares a server with `opts` (nothing listens yet).
  explicit server(options opts);

  /// Stops the server (see `stop`).
  ~server();

  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// Binds, listens and starts the I/O threads. Returns the base URL, e.g.
  /// "http://127.0.0.1:40123/api". Throws `std::runtime_error` when the
  /// address cannot be bound or the TLS files cannot be loaded.
  std::string start();

  /// Returns the base URL (empty before `start`).
  const std::string& url() const noexcept;

  /// Stops accepting, drops all connections and joins the I/O threads.
  /// Idempotent.
  void stop();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace maritaca::sim
