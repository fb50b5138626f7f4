// maritaca: the command-line client.
//
//   maritaca ask [options] PROMPT        prints the answer
//   maritaca ask --stream PROMPT         prints chunks as they come
//   maritaca ask --json PROMPT           prints the whole response as JSON
//   maritaca ask --tools FILE PROMPT     offers tools; prints the tool calls
//   maritaca ask --schema FILE PROMPT    prints JSON checked against a schema
//   maritaca batch [--concurrency N] FILE|-   one prompt per line -> JSON lines
//   maritaca chat                        a REPL keeping history
//   maritaca models                      lists the models
//
// With neither --base-url (or MARITACA_API_BASE) nor an API key it starts
// the bundled simulator in-process and says so on stderr. The command line
// is checked first: a usage error starts nothing.

#include "cli.hpp"

#include "maritaca/limiter.hpp"

#include "maritaca/sim/server.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

namespace cli = maritaca::cli;

int main(int argc, char** argv) {
  try {
    auto o = cli::parse(argc, argv);
    if (o.command.empty() || o.command == "help") {
      (o.command.empty() ? std::cerr : std::cout) << cli::usage();
      return o.command.empty() ? 2 : 0;
    }
    // Where to send: --base-url, else MARITACA_API_BASE, else the real
    // service when there is a key, else the bundled simulator.
    std::unique_ptr<maritaca::sim::server> sim;
    std::string base_url;
    auto env_key = std::getenv("MARITACA_API_KEY");
    auto env_base = std::getenv("MARITACA_API_BASE");
    auto has_key = o.api_key || (env_key != nullptr && *env_key != '\0');
    if (o.base_url) {
      base_url = *o.base_url;
    } else if (env_base != nullptr && *env_base != '\0') {
      base_url = env_base;
    } else if (has_key) {
      base_url = maritaca::default_base_url;
    } else {
      sim = std::make_unique<maritaca::sim::server>();
      base_url = sim->start();
      std::cerr << "maritaca: no API key and no --base-url: using the bundled "
                   "simulator at "
                << base_url << std::endl;
    }
    // The configuration reads the tool and schema files: before any actor.
    auto mc = cli::make_config(o, base_url);
    // The bundled simulator listens on loopback: never through a proxy.
    if (sim) mc.proxy.clear();
    caf::actor_system_config cfg;
    maritaca::configure(cfg);
    if (!o.cluster_join.empty()) maritaca::configure_cluster(cfg);
    caf::actor_system sys{cfg};
    int rc = 0;
    {
      maritaca::chat_model model{sys, mc};
      if (o.command == "ask")
        rc = cli::run_ask(model, o);
      else if (o.command == "batch")
        rc = cli::run_batch(model, o);
      else if (o.command == "chat")
        rc = cli::run_chat(model, o);
      else
        rc = cli::run_models(model);
      model.shutdown();
    }
    return rc;
  } catch (const cli::usage_error& e) {
    std::cerr << "maritaca: " << e.what << " (see maritaca --help)"
              << std::endl;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "maritaca: error: " << e.what() << std::endl;
    return 1;
  }
}
