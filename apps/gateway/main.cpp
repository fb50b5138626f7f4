/// @file
/// maritaca-gateway: a web service in front of a Maritaca-compatible API
/// (see `--help` and docs/gateway.md). Prints its base URL as the first
/// stdout line, serves until SIGINT or SIGTERM.

#include "maritaca/gateway/http.hpp"
#include "maritaca/gateway/options.hpp"
#include "maritaca/gateway/router.hpp"
#include "maritaca/gateway/service.hpp"
#include "maritaca/limiter.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <memory>
#include <optional>

namespace gw = maritaca::gateway;

namespace {

/// The upstream settings of the chat model.
maritaca::model_config make_model_config(const gw::options& o) {
  maritaca::model_config cfg;
  cfg.base_url = o.upstream;
  cfg.api_key = o.api_key;
  cfg.model = o.model;
  cfg.ca_file = o.ca_file;
  cfg.limits.max_concurrency = o.max_concurrency;
  cfg.limits.max_queue = o.max_queue;
  cfg.retry.max_retries = o.max_retries;
  cfg.timeouts.total = o.upstream_timeout;
  cfg.timeouts.first_byte =
      std::min(cfg.timeouts.first_byte, o.upstream_timeout);
  cfg.timeouts.idle = std::min(o.upstream_idle_timeout, o.upstream_timeout);
  auto& cl = cfg.limits.cluster;
  cl.listen = o.cluster_listen;
  cl.join = o.cluster_join;
  cl.global_concurrency =
      o.cluster_concurrency != 0 ? o.cluster_concurrency : o.max_concurrency;
  cl.fallback_concurrency = o.cluster_fallback;
  cl.lease_ttl = o.cluster_lease_ttl;
  return cfg;
}

const char* get_env(const char* name) {
  return std::getenv(name);
}

/// Graceful shutdown: stop accepting and let the answers in progress
/// finish for up to `drain`; then end the rest (streams get an error
/// event, queued asks 503 -- the service maps the cancellations), give
/// those last bytes a moment, and close what is left. Every step is told
/// on stderr.
void shut_down(gw::http_server& srv, gw::service& svc,
               maritaca::chat_model& model, std::chrono::milliseconds drain) {
  using namespace std::chrono_literals;
  auto open = srv.connections();
  std::cerr << "maritaca-gateway: shutting down: " << open
            << " connection(s) open, answers in progress get up to "
            << drain.count() / 1000.0 << " s\n";
  auto left = open > 0 ? srv.drain(drain) : 0;
  if (left > 0)
    std::cerr << "maritaca-gateway: " << left
              << " connection(s) still answering after the drain period: "
                 "ending their streams with an error event, queued asks "
                 "with 503\n";
  // Shutdown order: end sessions and the model's asks (the service answers
  // them), let those answers go out, close every connection, and only
  // after every actor is done drop the server their responders point into.
  svc.shutdown();
  model.shutdown();
  if (left > 0) left = srv.drain(2s);
  srv.stop();
  if (left > 0)
    std::cerr << "maritaca-gateway: closed " << left
              << " connection(s) that did not finish\n";
  std::cerr << "maritaca-gateway: stopped\n";
}

} // namespace

int main(int argc, char** argv) {
  gw::options opts;
  std::string error;
  switch (gw::parse_options(argc, argv, get_env, opts, error)) {
  case gw::parse_result::help:
    std::cout << gw::usage();
    return 0;
  case gw::parse_result::error:
    std::cerr << "maritaca-gateway: " << error << " (see --help)\n";
    return 2;
  case gw::parse_result::run:
    break;
  }
  if (opts.api_key.empty())
    std::cerr << "maritaca-gateway: warning: no upstream API key "
                 "(--api-key-file or MARITACA_API_KEY): "
              << maritaca::transport::redact_userinfo(opts.upstream)
              << " will likely refuse every ask (clients get 502)\n";
  if (opts.tokens.empty())
    std::cerr << "maritaca-gateway: warning: no --token given, every route "
                 "is open to anyone who can connect\n";
  caf::actor_system_config cfg;
  maritaca::configure(cfg);
  auto model_cfg = make_model_config(opts);
  // CAF's network actors only where a cluster needs them.
  if (model_cfg.limits.cluster.enabled()) maritaca::configure_cluster(cfg);
  caf::actor_system sys{cfg};
  std::unique_ptr<gw::http_server> srv;
  int rc = 0;
  {
    std::optional<maritaca::chat_model> made;
    try {
      made.emplace(sys, model_cfg);
    } catch (const std::exception& e) {
      std::cerr << "maritaca-gateway: " << e.what() << '\n';
      return 1;
    }
    auto& model = *made;
    if (model.cluster_port() != 0)
      std::cerr << "maritaca-gateway: cluster limiter on port "
                << model.cluster_port() << " (at most "
                << model_cfg.limits.cluster.global_concurrency
                << " requests at once in the cluster)\n";
    gw::service_config scfg;
    scfg.tokens = opts.tokens;
    scfg.forward_headers = opts.forward_headers;
    scfg.max_sessions = opts.max_sessions;
    scfg.session_ttl = opts.session_ttl;
    auto svc = std::make_unique<gw::service>(model, scfg);
    auto routes = std::make_shared<gw::router>();
    routes->set_access_log(opts.access_log);
    svc->mount(*routes);
    srv = std::make_unique<gw::http_server>(opts.server,
                                            gw::router::as_handler(routes),
                                            gw::router::as_head_check(routes));
    try {
      auto url = srv->start();
      // The one stdout line: whoever started us waits for it.
      std::printf("%s\n", url.c_str());
      std::fflush(stdout);
      srv->wait_for_signal();
    } catch (const std::exception& e) {
      std::cerr << "maritaca-gateway: " << e.what() << '\n';
      rc = 1;
    }
    if (rc == 0) {
      shut_down(*srv, *svc, model, opts.drain_timeout);
    } else {
      srv->stop();
      svc->shutdown();
      model.shutdown();
    }
  }
  sys.await_all_actors_done();
  srv.reset();
  return rc;
}
