// Uses the installed headers and libraries: a chat model against the base
// URL given as argv[1] (an installed maritaca-sim process), the bundled
// simulator embedded in-process (maritaca::sim), and the gateway's routes
// and server in front of it (maritaca::gateway), asked once over HTTP.
#include <maritaca/chat_model.hpp>
#include <maritaca/gateway/http.hpp>
#include <maritaca/gateway/router.hpp>
#include <maritaca/gateway/service.hpp>
#include <maritaca/sim/server.hpp>
#include <maritaca/transport/http_client.hpp>

#include <future>
#include <iostream>
#include <memory>

namespace {

/// Collects one exchange of the library's HTTP client.
class collector : public maritaca::transport::observer {
public:
  void on_head(const maritaca::transport::response_head& head) override {
    status = head.status;
  }
  maritaca::transport::data_verdict on_data(std::string_view bytes) override {
    body += bytes;
    return true;
  }
  void on_done() override { done.set_value(); }
  void on_failure(const maritaca::failure& f) override {
    body = f.describe();
    done.set_value();
  }
  int status = 0;
  std::string body;
  std::promise<void> done;
};

int fail(const std::string& what) {
  std::cerr << what << '\n';
  return 1;
}

} // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: consumer BASE_URL\n";
    return 2;
  }
  // A separate simulator process.
  maritaca::model_config cfg;
  cfg.base_url = argv[1];
  maritaca::chat_model model{cfg};
  auto answer = model.invoke("What is 2+2?");
  if (!answer) return fail(maritaca::describe(answer.error()));
  std::cout << answer->content() << '\n';

  // The embedded simulator: two lines.
  maritaca::sim::server sim;
  maritaca::chat_model offline{
      maritaca::model_config{}.with_base_url(sim.start())};
  auto capital = offline.invoke("What is the capital of Brazil?");
  if (!capital) return fail(maritaca::describe(capital.error()));
  std::cout << capital->content() << '\n';

  // The gateway's routes in front of the embedded simulator.
  namespace gw = maritaca::gateway;
  gw::service svc{offline};
  auto routes = std::make_shared<gw::router>();
  svc.mount(*routes);
  gw::server_options opts;
  opts.port = 0;
  gw::http_server server{opts, gw::router::as_handler(routes),
                         gw::router::as_head_check(routes)};
  auto url = server.start();
  maritaca::transport::http_client client;
  auto obs = std::make_shared<collector>();
  maritaca::transport::request req;
  req.url = url + "/ask";
  req.fields.push_back({"Content-Type", "application/json"});
  req.body = R"({"text":"What is 2+2?"})";
  client.start(req, obs);
  obs->done.get_future().wait();
  server.stop();
  svc.shutdown();
  offline.shutdown();
  if (obs->status != 200) return fail("gateway: " + obs->body);
  std::cout << "gateway: " << obs->body << '\n';
  return 0;
}
