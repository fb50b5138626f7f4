// gateway_embed: a service of your own that mounts the gateway's routes
// next to its own -- the way the seed mounts the model inside FastAPI.
//
//   example_gateway_embed [--base-url URL] [--serve]
//
// Without --serve it calls its own routes once (as a client would) and
// exits; with --serve it serves until Ctrl-C.

#include "example_support.hpp"

#include "maritaca/chat_model.hpp"
#include "maritaca/gateway/http.hpp"
#include "maritaca/gateway/router.hpp"
#include "maritaca/gateway/service.hpp"
#include "maritaca/transport/http_client.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include <future>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

namespace gw = maritaca::gateway;

namespace {

/// What a client sees of one exchange.
struct reply {
  int status = 0;
  std::string body;
  std::string error;
};

/// Collects one exchange of the library's HTTP client; prints streamed
/// pieces as they arrive.
class collector : public maritaca::transport::observer {
public:
  explicit collector(bool print) : print_(print) {}

  void on_head(const maritaca::transport::response_head& head) override {
    result.status = head.status;
  }

  maritaca::transport::data_verdict on_data(std::string_view bytes) override {
    if (print_) std::cout << bytes << std::flush;
    result.body += bytes;
    return true;
  }

  void on_done() override { done.set_value(); }

  void on_failure(const maritaca::failure& what) override {
    result.error = what.describe();
    done.set_value();
  }

  reply result;
  std::promise<void> done;

private:
  bool print_;
};

/// Performs one request and waits for the whole answer.
reply fetch(maritaca::transport::http_client& client, std::string method,
            std::string url, std::string body = {}, bool stream = false) {
  maritaca::transport::request req;
  req.method = std::move(method);
  req.url = std::move(url);
  req.body = std::move(body);
  req.stream = stream;
  req.fields.push_back({"Authorization", "Bearer demo-token"});
  if (!req.body.empty())
    req.fields.push_back({"Content-Type", "application/json"});
  // Plain text pieces, not Server-Sent Events, from /stream.
  if (stream) req.fields.push_back({"Accept", "text/plain"});
  auto obs = std::make_shared<collector>(stream);
  auto done = obs->done.get_future();
  client.start(std::move(req), obs);
  done.wait();
  return obs->result;
}

} // namespace

int main(int argc, char** argv) {
  // --serve is ours; the rest goes to the shared example options.
  bool serve = false;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::string_view{argv[i]} == "--serve")
      serve = true;
    else
      args.push_back(argv[i]);
  }
  std::unique_ptr<maritaca::sim::server> sim;
  auto cfg = maritaca::examples::example_config(static_cast<int>(args.size()),
                                                args.data(), sim);
  caf::actor_system_config sys_cfg;
  maritaca::configure(sys_cfg);
  caf::actor_system sys{sys_cfg};
  std::unique_ptr<gw::http_server> server;
  {
    // [mount]
    // The model, as in the seed: `model = ChatMaritaca()`.
    maritaca::chat_model model{sys, cfg};
    // The gateway's routes over it (bearer tokens, sessions, metrics, ...).
    gw::service_config gateway_cfg;
    gateway_cfg.tokens = {"demo-token"};
    gw::service gateway{model, gateway_cfg};
    // The application: its own route ...
    auto app = std::make_shared<gw::router>();
    app->add(
        "GET", "/hello",
        [](gw::request req, std::shared_ptr<gw::responder> res) {
          auto name = req.query_param("name").value_or("world");
          res->send(gw::response::text(200, "Olá, " + name + "!\n"));
        },
        gw::route_options{/*public_route=*/true});
    // ... and the gateway's, under /ai: /ai/ask, /ai/stream,
    // /ai/v1/chat/completions, /ai/healthz, /ai/metrics, /ai/sessions.
    gateway.mount(*app, "/ai");
    server = std::make_unique<gw::http_server>(
        gw::server_options{
            .host = "127.0.0.1",
            .port = 0,
        },
        gw::router::as_handler(app),
        // 401/404/405 before a body is read: nobody makes us hold one
        // without a token.
        gw::router::as_head_check(app));
    auto url = server->start();
    // [mount]
    std::cout << "serving " << url << "\n";
    if (serve) {
      server->wait_for_signal();
    } else {
      maritaca::transport::http_client client;
      auto hello = fetch(client, "GET", url + "/hello?name=Ana");
      std::cout << "GET /hello: " << hello.status << " " << hello.body;
      auto ask = fetch(client, "POST", url + "/ai/ask",
                       R"({"text": "What is the capital of Brazil?"})");
      std::cout << "POST /ai/ask: " << ask.status << " " << ask.body << "\n";
      std::cout << "GET /ai/stream: ";
      auto story = fetch(client, "GET",
                         url + "/ai/stream?question=What+is+2%2B2", {}, true);
      std::cout << "\n";
      // The gateway speaks the chat API itself: a model can use it.
      auto via = cfg;
      via.base_url = url + "/ai/v1";
      via.api_key = "demo-token";
      maritaca::chat_model through_gateway{sys, via};
      auto answer = through_gateway.invoke("Qual é a capital do Brasil?");
      std::cout << "through the gateway: "
                << (answer ? answer->content()
                           : maritaca::describe(answer.error()))
                << "\n";
      through_gateway.shutdown();
      if (hello.status != 200 || ask.status != 200 || story.status != 200 ||
          !answer)
        std::cout << "failed\n";
    }
    // [shutdown]
    // Close every connection first (handlers hear about it), then end the
    // sessions and the model; the server object goes last, once no actor
    // holds a responder any more.
    server->stop();
    gateway.shutdown();
    model.shutdown();
    // [shutdown]
  }
  sys.await_all_actors_done();
  server.reset();
  return 0;
}
