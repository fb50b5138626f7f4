// Security defaults, each checked against a running maritaca-sim: the API
// key stays out of errors and the CLI's output; CR/LF/NUL in header values
// are refused before anything is sent; TLS needs a trusted certificate for
// the right host; response bodies and SSE events have upper bounds.

#include "maritaca/chat_model.hpp"
#include "maritaca/transport/sse_parser.hpp"
#include "maritaca/transport/transport_actor.hpp"

#include "support/actors.hpp"

#include <caf/all.hpp>
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

using namespace maritaca;
using namespace std::chrono_literals;

namespace {

/// The key under test: it must never show up anywhere.
const std::string secret_key = "sk-test-SECRET-7c4f0e9b2a";

/// A distinctive part of the key, to catch partial echoes too.
const std::string secret_part = "SECRET-7c4f";

bool contains(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

/// Everything a caller can read about `err`.
std::string all_renderings(caf::actor_system& sys, const caf::error& err) {
  auto f = to_failure(err);
  return describe(err) + "\n" + sys.render(err) + "\n" + f.message + "\n" +
         f.describe();
}

/// A chat model for `sim` with `key`, no retries.
model_config keyed_config(const test::sim_process& sim,
                          const std::string& key) {
  auto cfg = test::sim_config(sim);
  cfg.api_key = key;
  cfg.retry.max_retries = 0;
  return cfg;
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

std::string read_all(const std::string& path) {
  std::ifstream in{path};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// What a CLI run printed.
struct cli_run {
  int status = -1;
  std::string out;
  std::string err;
};

/// Runs `maritaca ARGS` (with `env` assignments before it) and captures its
/// stdout and stderr. Bounded: `timeout` kills it after 60 s.
cli_run run_cli(const std::vector<std::string>& args,
                const std::vector<std::string>& env = {}) {
  std::string base{"/tmp/maritaca-security-"};
  base += std::to_string(::getpid());
  std::string cmd = "env -u MARITACA_API_KEY -u MARITACA_API_BASE";
  for (auto& e : env)
    (cmd += ' ') += shell_quote(e);
  cmd += " timeout 60 ";
  cmd += shell_quote(test::bin_path("maritaca"));
  for (auto& a : args)
    (cmd += ' ') += shell_quote(a);
  cmd += " >" + base + ".out 2>" + base + ".err </dev/null";
  cli_run r;
  auto rc = std::system(cmd.c_str());
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  r.out = read_all(base + ".out");
  r.err = read_all(base + ".err");
  std::remove((base + ".out").c_str());
  std::remove((base + ".err").c_str());
  return r;
}

/// A self-signed certificate for `dns_name` only (no IP address in it).
test::test_cert make_name_only_cert(const std::string& dns_name) {
  char tmpl[] = "/tmp/maritaca-sec-cert-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  test::test_cert result{std::string{tmpl} + "/cert.pem",
                         std::string{tmpl} + "/key.pem"};
  auto cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj '/CN=" +
             dns_name + "' -addext 'subjectAltName=DNS:" + dns_name +
             "' -keyout " + result.key_file + " -out " + result.cert_file +
             " >/dev/null 2>&1";
  REQUIRE(std::system(cmd.c_str()) == 0);
  return result;
}

/// What the transport sent back for one call.
struct call_outcome {
  std::size_t chunks = 0;
  std::optional<chat_completion> completion;
  bool done = false;
  std::optional<failure> failed;
  bool timed_out = false;
};

/// Runs `c` through `t` from a scoped actor until its terminal event.
call_outcome run_call(caf::actor_system& sys,
                      const transport::transport_actor& t, transport::call c) {
  using namespace maritaca::transport;
  caf::scoped_actor self{sys};
  auto tag = c.tag = next_tag();
  self->send(t, exchange_atom::value, std::move(c));
  call_outcome out;
  for (bool end = false; !end;) {
    self->receive(
        [&](chunks_atom, uint64_t, sse::chunk_batch& xs) {
          out.chunks += xs.chunks;
          self->send(t, ack_atom::value, tag, uint32_t{1});
        },
        [&](completion_atom, uint64_t, chat_completion& x) {
          out.completion = std::move(x);
          end = true;
        },
        [&](done_atom, uint64_t) {
          out.done = true;
          end = true;
        },
        [&](failed_atom, uint64_t, failure& f) {
          out.failed = std::move(f);
          end = true;
        },
        caf::after(std::chrono::seconds{20}) >>
            [&] {
              out.timed_out = true;
              end = true;
            });
  }
  return out;
}

transport::request chat_call_request(const test::sim_process& sim, bool stream,
                                     int words = 0) {
  transport::request req;
  req.url = completions_url(sim.base_url());
  req.fields.push_back({"Content-Type", "application/json"});
  if (words > 0) req.fields.push_back({"x-sim-chunks", std::to_string(words)});
  req.body = std::string{R"({"model":"sabia-4","messages":[{"role":"user",)"
                         R"("content":"Oi"}])"} +
             (stream ? ",\"stream\":true}" : "}");
  req.stream = stream;
  req.limits.total = 20s;
  return req;
}

} // namespace

// -- the API key --------------------------------------------------------------

TEST_CASE("the API key appears in no error of the library") {
  test::sim_process sim{{"--api-key", "other"}};
  test::test_system ts;
  chat_model model{ts.sys, keyed_config(sim, secret_key)};

  SECTION("a refused key (401)") {
    auto r = model.invoke("Oi");
    REQUIRE_FALSE(r);
    CHECK(code_of(r.error()) == errc::unauthorized);
    auto text = all_renderings(ts.sys, r.error());
    INFO(text);
    CHECK_FALSE(contains(text, secret_part));
  }
  SECTION("a refused key on a stream and on the models list") {
    auto s = model.stream("Oi");
    for ([[maybe_unused]] auto& chunk : s) {
      // Nothing arrives.
    }
    REQUIRE_FALSE(s.result());
    CHECK(code_of(s.result().error()) == errc::unauthorized);
    CHECK_FALSE(
        contains(all_renderings(ts.sys, s.result().error()), secret_part));
    auto models = model.models();
    REQUIRE_FALSE(models);
    CHECK_FALSE(contains(all_renderings(ts.sys, models.error()), secret_part));
  }
  SECTION("no server at all") {
    auto cfg = keyed_config(sim, secret_key);
    cfg.base_url = "http://127.0.0.1:1/api";
    chat_model nowhere{ts.sys, cfg};
    auto r = nowhere.invoke("Oi");
    REQUIRE_FALSE(r);
    CHECK(code_of(r.error()) == errc::connect_failed);
    CHECK_FALSE(contains(all_renderings(ts.sys, r.error()), secret_part));
  }
  SECTION("a key the library refuses (a line break in it)") {
    chat_model broken{ts.sys,
                      keyed_config(sim, secret_key + "\r\nX-Injected: 1")};
    auto r = broken.invoke("Oi");
    REQUIRE_FALSE(r);
    CHECK(code_of(r.error()) == errc::invalid_argument);
    auto text = all_renderings(ts.sys, r.error());
    INFO(text);
    CHECK_FALSE(contains(text, secret_part));
    CHECK_FALSE(contains(text, "X-Injected"));
  }
}

TEST_CASE("the CLI prints the API key nowhere") {
  auto cli = test::bin_path("maritaca");
  REQUIRE(::access(cli.c_str(), X_OK) == 0);
  const std::vector<std::string> common{"--max-retries", "0", "--timeout",
                                        "10"};
  auto args = [&](std::vector<std::string> xs) {
    xs.insert(xs.end(), common.begin(), common.end());
    return xs;
  };

  SECTION("a refused key (401)") {
    test::sim_process sim{{"--api-key", "other"}};
    for (bool stream : {false, true}) {
      INFO("stream " << stream);
      std::vector<std::string> a{"ask",          "--json",    "--base-url",
                                 sim.base_url(), "--api-key", secret_key};
      if (stream) a.push_back("--stream");
      a.push_back("Oi");
      auto r = run_cli(args(a));
      INFO("stdout: " << r.out << "\nstderr: " << r.err);
      CHECK(r.status != 0);
      CHECK(contains(r.out + r.err, "401"));
      CHECK_FALSE(contains(r.out, secret_part));
      CHECK_FALSE(contains(r.err, secret_part));
    }
    // The key from the environment, and the models command.
    auto r = run_cli(args({"models", "--base-url", sim.base_url()}),
                     {"MARITACA_API_KEY=" + secret_key});
    INFO("stdout: " << r.out << "\nstderr: " << r.err);
    CHECK(r.status != 0);
    CHECK_FALSE(contains(r.out + r.err, secret_part));
  }
  SECTION("an accepted key") {
    test::sim_process sim{{"--api-key", secret_key}};
    auto r = run_cli(args({"ask", "--json", "--base-url", sim.base_url(),
                           "--api-key", secret_key, "Oi"}));
    INFO("stdout: " << r.out << "\nstderr: " << r.err);
    CHECK(r.status == 0);
    CHECK(r.out.rfind("{", 0) == 0);
    CHECK_FALSE(contains(r.out, secret_part));
    CHECK_FALSE(contains(r.err, secret_part));
    auto s = run_cli(
        args({"ask", "--json", "--stream", "--base-url", sim.base_url(), "Oi"}),
        {"MARITACA_API_KEY=" + secret_key});
    INFO("stdout: " << s.out << "\nstderr: " << s.err);
    CHECK(s.status == 0);
    CHECK_FALSE(contains(s.out + s.err, secret_part));
  }
}

// -- header injection ---------------------------------------------------------

TEST_CASE("CR, LF or NUL in a header value is refused before sending") {
  test::sim_process sim;
  test::test_system ts;
  const std::vector<std::string> bad{"\r\n", "\n", "\r", std::string{"\0", 1}};
  auto refused = [&](const model_config& cfg) {
    chat_model model{ts.sys, cfg};
    auto r = model.invoke("Oi");
    REQUIRE_FALSE(r);
    CHECK(code_of(r.error()) == errc::invalid_argument);
    auto s = model.stream("Oi");
    for ([[maybe_unused]] auto& chunk : s) {
      // Nothing arrives.
    }
    REQUIRE_FALSE(s.result());
    CHECK(code_of(s.result().error()) == errc::invalid_argument);
  };
  for (std::size_t i = 0; i < bad.size(); ++i) {
    INFO("bad sequence #" << i);
    refused(keyed_config(sim, "sk-good" + bad[i] + "X-Evil: 1"));
    auto cfg = test::sim_config(sim);
    cfg.retry.max_retries = 0;
    refused(test::with_header(cfg, "User-Agent", "agent/1" + bad[i] + "x"));
    refused(test::with_header(cfg, "X-Trace", bad[i] + "Host: evil"));
    // A broken header name is refused just as well.
    refused(test::with_header(cfg, "X-Trace" + bad[i] + "X-Evil", "1"));
  }
  // Not one of them reached the server.
  CHECK(test::read_stats(sim).requests == 0);
  // The same model with clean values does.
  chat_model ok{ts.sys,
                test::with_header(test::sim_config(sim), "X-Trace", "abc")};
  CHECK(ok.invoke("Oi"));
  CHECK(test::read_stats(sim).requests == 1);
}

// -- TLS ----------------------------------------------------------------------

TEST_CASE("a self-signed server is refused unless its CA is given") {
  auto cert = test::make_test_cert("localhost");
  test::sim_process sim{
      {"--tls-cert", cert.cert_file, "--tls-key", cert.key_file}};
  REQUIRE(sim.base_url().rfind("https://", 0) == 0);
  test::test_system ts;
  auto cfg = test::sim_config(sim);
  cfg.retry.max_retries = 0;
  CHECK(cfg.verify_peer); // the default
  {
    chat_model model{ts.sys, cfg};
    auto r = model.invoke("Oi");
    REQUIRE_FALSE(r);
    CHECK(code_of(r.error()) == errc::tls_failed);
    auto s = model.stream("Oi");
    for ([[maybe_unused]] auto& chunk : s) {
      // Nothing arrives.
    }
    REQUIRE_FALSE(s.result());
    CHECK(code_of(s.result().error()) == errc::tls_failed);
  }
  {
    auto trusted = cfg;
    trusted.ca_file = cert.cert_file;
    chat_model model{ts.sys, trusted};
    auto r = model.invoke("Oi");
    INFO((r ? "" : describe(r.error())));
    CHECK(r);
  }
}

TEST_CASE("a certificate for another host name is refused") {
  test::test_system ts;
  SECTION("made for other.test only, reached as 127.0.0.1") {
    auto cert = make_name_only_cert("other.test");
    test::sim_process sim{
        {"--tls-cert", cert.cert_file, "--tls-key", cert.key_file}};
    auto cfg = test::sim_config(sim);
    cfg.retry.max_retries = 0;
    cfg.ca_file = cert.cert_file; // the chain is trusted, the name is not
    chat_model model{ts.sys, cfg};
    auto r = model.invoke("Oi");
    REQUIRE_FALSE(r);
    CHECK(code_of(r.error()) == errc::tls_failed);
  }
  SECTION("made for other.test (and 127.0.0.1), reached as localhost") {
    auto cert = test::make_test_cert("other.test");
    test::sim_process sim{
        {"--tls-cert", cert.cert_file, "--tls-key", cert.key_file}};
    auto cfg = test::sim_config(sim);
    cfg.retry.max_retries = 0;
    cfg.ca_file = cert.cert_file;
    cfg.base_url = "https://localhost:" + std::to_string(sim.port()) + "/api";
    chat_model model{ts.sys, cfg};
    auto r = model.invoke("Oi");
    REQUIRE_FALSE(r);
    CHECK(code_of(r.error()) == errc::tls_failed);
    // The control: the same server by the address the certificate names.
    cfg.base_url = sim.base_url();
    chat_model by_ip{ts.sys, cfg};
    CHECK(by_ip.invoke("Oi"));
  }
}

// -- bounds -------------------------------------------------------------------

TEST_CASE("the bounds of bodies and events have safe defaults") {
  CHECK(transport::client_config{}.max_body_bytes == 32u << 20);
  CHECK(transport::client_config{}.verify_peer);
  CHECK(transport::call{}.max_event_bytes == 1u << 20);
  CHECK(sse::default_max_event_bytes == 1u << 20);
  CHECK(model_config{}.verify_peer);
}

TEST_CASE("an SSE event over the bound ends as protocol_error") {
  test::sim_process sim;
  test::test_system ts;
  auto t = transport::spawn_transport(ts.sys);
  transport::call c;
  c.what = transport::expect::chunks;
  c.req = chat_call_request(sim, true);
  SECTION("within the bound") {
    auto out = run_call(ts.sys, t, c);
    CHECK(out.done);
    CHECK(out.chunks > 0);
  }
  SECTION("over it") {
    c.max_event_bytes = 64; // every chunk event is larger
    auto out = run_call(ts.sys, t, c);
    REQUIRE(out.failed);
    CHECK(out.failed->code == errc::protocol_error);
    CHECK(contains(out.failed->message, "exceeds 64 bytes"));
    CHECK(out.chunks == 0);
    CHECK_FALSE(out.done);
  }
  caf::anon_send_exit(t, caf::exit_reason::user_shutdown);
}

TEST_CASE("a non-streamed body over the bound ends as protocol_error") {
  test::sim_process sim;
  test::test_system ts;
  transport::client_config cfg;
  cfg.max_body_bytes = 2048;
  auto t = transport::spawn_transport(ts.sys, cfg);
  transport::call c;
  c.what = transport::expect::completion;
  SECTION("within the bound") {
    c.req = chat_call_request(sim, false, 5);
    auto out = run_call(ts.sys, t, c);
    INFO((out.failed ? out.failed->describe() : ""));
    REQUIRE(out.completion);
  }
  SECTION("over it") {
    c.req = chat_call_request(sim, false, 2000); // ~12 KB of answer
    auto out = run_call(ts.sys, t, c);
    REQUIRE(out.failed);
    CHECK(out.failed->code == errc::protocol_error);
    CHECK(contains(out.failed->message, "2048"));
    CHECK_FALSE(out.completion);
  }
  caf::anon_send_exit(t, caf::exit_reason::user_shutdown);
}
