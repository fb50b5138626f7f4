// Integration tests of maritaca-gateway: the gateway and maritaca-sim run as
// child processes on loopback; a raw-socket client checks every route, the
// error cases, incremental streaming and that a client leaving mid-stream
// frees the upstream slot.

#include "support/process.hpp"
#include "support/raw_http.hpp"

#include "maritaca/transport/sse_parser.hpp"
#include "maritaca/transport/wire.hpp"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

using namespace maritaca;
using namespace std::chrono_literals;
using maritaca::test::bin_path;
using maritaca::test::child_process;
using maritaca::test::sim_process;

namespace {

/// The upstream key: it must never come back from the gateway.
const std::string upstream_key = "sk-upstream-SECRET-4711";

/// Tokens of the main gateway.
const std::string token = "gw-token-alpha";
const std::string token2 = "gw-token-beta";

using clock_type = std::chrono::steady_clock;

// The raw HTTP client of tests/support/raw_http.hpp.
using conn = maritaca::test::raw_conn;
using result = maritaca::test::raw_result;
using maritaca::test::make_request;
using maritaca::test::roundtrip;

std::string bearer(const std::string& t = token) {
  return "Authorization: Bearer " + t + "\r\n";
}

result get(int port, const std::string& target,
           const std::string& headers = bearer()) {
  return roundtrip(port, make_request("GET", target, headers));
}

result post(int port, const std::string& target, const std::string& body,
            const std::string& headers = bearer()) {
  return roundtrip(port, make_request("POST", target, headers, body));
}

int sim_in_flight(const sim_process& sim) {
  return static_cast<int>(maritaca::test::read_stats(sim).in_flight);
}

int sim_max_in_flight(const sim_process& sim) {
  return static_cast<int>(maritaca::test::read_stats(sim).max_in_flight);
}

/// Waits until the simulator has nothing in flight.
bool sim_idle_within(const sim_process& sim, std::chrono::milliseconds t) {
  auto end = clock_type::now() + t;
  while (clock_type::now() < end) {
    if (sim_in_flight(sim) == 0) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

/// The port of a base URL "http://127.0.0.1:PORT".
int port_of(const std::string& url) {
  return std::atoi(url.substr(url.rfind(':') + 1).c_str());
}

/// Sets an environment variable for the next child process only.
class scoped_env {
public:
  scoped_env(const char* name, const std::string& value) : name_(name) {
    setenv(name, value.c_str(), 1);
  }
  ~scoped_env() { unsetenv(name_); }

private:
  const char* name_;
};

/// A gateway process in front of `upstream`.
struct gateway_process {
  gateway_process(const std::string& upstream, std::vector<std::string> args,
                  const std::string& stderr_file = {})
      : proc(make_argv(upstream, std::move(args), stderr_file), "http") {
    url = proc.first_line();
    port = port_of(url);
  }

  static std::vector<std::string> make_argv(const std::string& upstream,
                                            std::vector<std::string> args,
                                            const std::string& stderr_file) {
    std::vector<std::string> argv{bin_path("maritaca-gateway"), "--listen",
                                  "127.0.0.1:0", "--upstream", upstream};
    argv.insert(argv.end(), args.begin(), args.end());
    if (stderr_file.empty()) return argv;
    // Through a shell, to keep the gateway's stderr in a file.
    std::string cmd = "exec";
    for (auto& a : argv)
      cmd += " '" + a + "'";
    cmd += " 2>" + stderr_file;
    return {"/bin/sh", "-c", cmd};
  }

  child_process proc;
  std::string url;
  int port = 0;
};

/// The simulator (upstream key required, 60 ms between tokens) and the main
/// gateway, shared by the tests of this program.
struct fixture {
  fixture()
      : sim({"--api-key", upstream_key, "--token-delay-ms", "60"}),
        log_file("/tmp/maritaca-gateway-test-" + std::to_string(::getpid()) +
                 ".log"),
        gw(make_gateway(sim.base_url(), log_file)) {
    // nop
  }

  ~fixture() { std::remove(log_file.c_str()); }

  static gateway_process make_gateway(const std::string& upstream,
                                      const std::string& log) {
    scoped_env key{"MARITACA_API_KEY", upstream_key};
    return gateway_process{
        upstream,
        {"--token", token, "--token", token2, "--max-retries", "0",
         "--max-concurrency", "4", "--forward-header", "x-sim-fault",
         "--forward-header", "x-sim-token-delay-ms", "--forward-header",
         "x-sim-chunks", "--access-log", "--verbose", "--threads", "2"},
        log};
  }

  sim_process sim;
  std::string log_file;
  gateway_process gw;
};

fixture& env() {
  static fixture f;
  return f;
}

bool contains(const std::string& s, const std::string& what) {
  return s.find(what) != std::string::npos;
}

/// Parses the `data:` payloads of an SSE body.
std::vector<std::string> sse_payloads(const std::string& body) {
  sse::parser p;
  std::vector<sse::event> events;
  p.feed(body, events);
  std::vector<std::string> out;
  for (auto& e : events)
    out.push_back(e.data);
  return out;
}

const std::string weather_tool =
    R"([{"type":"function","function":{"name":"get_weather",)"
    R"("description":"Get the current weather of a city",)"
    R"("parameters":{"type":"object","properties":{"city":{"type":"string"}},)"
    R"("required":["city"]}}}])";

} // namespace

// -- basics
// -----------------------------------------------------------------------

TEST_CASE("the gateway prints its base URL and serves /healthz without auth") {
  auto& e = env();
  CHECK(e.gw.url.rfind("http://127.0.0.1:", 0) == 0);
  auto r = get(e.gw.port, "/healthz", "");
  CHECK(r.status == 200);
  CHECK(r.body == R"({"status":"ok"})");
}

TEST_CASE("POST /ask answers like the seed's FastAPI example") {
  auto& e = env();
  auto r =
      post(e.gw.port, "/ask", R"({"text":"What is the capital of Brazil?"})");
  CHECK(r.status == 200);
  CHECK(r.header("content-type") == "application/json");
  CHECK(r.body == R"({"answer":"The capital of Brazil is Brasília."})");
  // Either token works.
  r = post(e.gw.port, "/ask", R"({"text":"What is 2+2?"})", bearer(token2));
  CHECK(r.status == 200);
  CHECK(contains(r.body, "4"));
}

TEST_CASE("requests without a valid bearer token get 401 JSON") {
  auto& e = env();
  for (auto headers : {std::string{}, bearer("wrong"),
                       std::string{"Authorization: Basic Zm9vOmJhcg==\r\n"},
                       std::string{"Authorization: Bearer \r\n"},
                       bearer(token + "x"), bearer(token.substr(1))}) {
    auto r = post(e.gw.port, "/ask", R"({"text":"hi"})", headers);
    CHECK(r.status == 401);
    CHECK(r.header("www-authenticate") == "Bearer");
    CHECK(contains(r.body, R"("type":"authentication_error")"));
  }
  for (auto target : {"/stream?question=hi", "/v1/models", "/metrics"}) {
    CHECK(get(e.gw.port, target, "").status == 401);
  }
  CHECK(post(e.gw.port, "/v1/chat/completions", "{}", "").status == 401);
  CHECK(post(e.gw.port, "/sessions", "", "").status == 401);
  // The scheme is case-insensitive.
  auto r = post(e.gw.port, "/ask", R"({"text":"What is 2+2?"})",
                "Authorization: bearer " + token + "\r\n");
  CHECK(r.status == 200);
}

TEST_CASE("malformed bodies get 400 saying what is wrong") {
  auto& e = env();
  auto r = post(e.gw.port, "/ask", R"({"text": )");
  CHECK(r.status == 400);
  CHECK(contains(r.body, "not valid JSON"));
  CHECK(contains(r.body, R"("type":"invalid_request_error")"));
  r = post(e.gw.port, "/ask", R"({"question":"hi"})");
  CHECK(r.status == 400);
  CHECK(contains(r.body, "missing field 'text'"));
  r = post(e.gw.port, "/ask", R"({"text":42})");
  CHECK(r.status == 400);
  CHECK(contains(r.body, "'text' must be a string"));
  r = post(e.gw.port, "/ask", R"({"text":""})");
  CHECK(r.status == 400);
  r = post(e.gw.port, "/ask", R"(["text"])");
  CHECK(r.status == 400);
  CHECK(contains(r.body, "JSON object"));
  r = post(e.gw.port, "/v1/chat/completions", R"({"model":"sabia-4"})");
  CHECK(r.status == 400);
  CHECK(contains(r.body, "messages"));
  r = post(e.gw.port, "/v1/chat/completions", R"({"messages":[}")");
  CHECK(r.status == 400);
  r = get(e.gw.port, "/stream");
  CHECK(r.status == 400);
  CHECK(contains(r.body, "question"));
}

TEST_CASE("unknown routes get 404, wrong methods 405") {
  auto& e = env();
  auto r = get(e.gw.port, "/nope");
  CHECK(r.status == 404);
  CHECK(contains(r.body, R"("error")"));
  r = get(e.gw.port, "/ask");
  CHECK(r.status == 405);
  CHECK(r.header("allow") == "POST");
}

TEST_CASE("limits: body 413, header 431, URL 414") {
  auto& e = env();
  std::string big(1u << 20, 'x');
  auto body = R"({"text":")" + big + R"("})";
  auto r = post(e.gw.port, "/ask", body);
  CHECK(r.status == 413);
  CHECK(contains(r.body, "too large"));
  // Just under the limit is fine (and reaches the upstream).
  // (The upstream body adds some 70 bytes: keep under the sim's 1 MiB.)
  auto fits = R"({"text":")" + std::string((1u << 20) - 1000, 'y') + R"("})";
  CHECK(post(e.gw.port, "/ask", fits).status == 200);
  std::string huge_header = "X-Filler: " + std::string(20'000, 'h') + "\r\n";
  r = roundtrip(e.gw.port, make_request("GET", "/healthz", huge_header));
  CHECK(r.status == 431);
  r = get(e.gw.port, "/stream?question=" + std::string(9000, 'q'));
  CHECK(r.status == 414);
}

// -- streaming
// --------------------------------------------------------------------

TEST_CASE("GET /stream writes text/plain chunks as they arrive") {
  auto& e = env();
  auto r = roundtrip(e.gw.port,
                     make_request("GET", "/stream?question=What+is+2%2B2%3F",
                                  bearer() + "x-sim-token-delay-ms: 250\r\n"));
  CHECK(r.status == 200);
  CHECK(r.header("content-type") == "text/plain; charset=utf-8");
  CHECK(r.header("transfer-encoding") == "chunked");
  CHECK(r.complete);
  CHECK(r.body == "2 + 2 = 4.");
  // Five pieces 250 ms apart: several reads, the first well before the end.
  REQUIRE(r.arrivals.size() >= 3);
  CHECK(r.arrivals.back() - r.arrivals.front() > 0.6);
}

TEST_CASE("GET /stream with Accept: text/event-stream sends SSE") {
  auto& e = env();
  auto r = get(e.gw.port, "/stream?question=What+is+2%2B2%3F",
               bearer() + "Accept: text/event-stream\r\n");
  CHECK(r.status == 200);
  CHECK(r.header("content-type") == "text/event-stream");
  sse::parser p;
  std::vector<sse::event> events;
  p.feed(r.body, events);
  REQUIRE(events.size() >= 2);
  std::string text;
  for (std::size_t i = 0; i + 1 < events.size(); ++i)
    text += events[i].data;
  CHECK(text == "2 + 2 = 4.");
  CHECK(events.back().type == "end");
  CHECK(events.back().data == "[DONE]");
}

// -- OpenAI-compatible
// ------------------------------------------------------------

TEST_CASE("POST /v1/chat/completions, not streamed, also under /api") {
  auto& e = env();
  for (auto path : {"/v1/chat/completions", "/api/chat/completions"}) {
    auto r = post(e.gw.port, path,
                  R"({"model":"sabia-4","messages":[{"role":"user",)"
                  R"("content":"What is the capital of France?"}]})");
    REQUIRE(r.status == 200);
    chat_completion c;
    REQUIRE_FALSE(wire::decode_completion(r.body, c));
    REQUIRE(c.choices.size() == 1);
    CHECK(c.choices[0].message.text() == "The capital of France is Paris.");
    CHECK(c.choices[0].finish_reason == "stop");
    CHECK(c.model == "sabia-4");
    REQUIRE(c.usage);
    CHECK(c.usage->total_tokens > 0);
  }
}

TEST_CASE("tools and response_format pass through") {
  auto& e = env();
  auto r = post(e.gw.port, "/v1/chat/completions",
                R"({"model":"sabia-4","messages":[{"role":"user","content":)"
                R"("What is the weather in Paris?"}],"tools":)" +
                    weather_tool + "}");
  REQUIRE(r.status == 200);
  chat_completion c;
  REQUIRE_FALSE(wire::decode_completion(r.body, c));
  REQUIRE(c.choices.size() == 1);
  CHECK(c.choices[0].finish_reason == "tool_calls");
  REQUIRE(c.choices[0].message.tool_calls.size() == 1);
  CHECK(c.choices[0].message.tool_calls[0].name == "get_weather");
  CHECK(contains(c.choices[0].message.tool_calls[0].arguments, "city"));
  r = post(e.gw.port, "/v1/chat/completions",
           R"({"model":"sabia-4","messages":[{"role":"user","content":)"
           R"("What is the capital of Brazil?"}],)"
           R"("response_format":{"type":"json_object"}})");
  REQUIRE(r.status == 200);
  REQUIRE_FALSE(wire::decode_completion(r.body, c));
  CHECK(c.choices[0].message.text() ==
        R"({"answer":"The capital of Brazil is Brasília."})");
}

TEST_CASE("POST /v1/chat/completions streamed, with tools and usage") {
  auto& e = env();
  auto r = post(e.gw.port, "/v1/chat/completions",
                R"({"model":"sabia-4","stream":true,)"
                R"("stream_options":{"include_usage":true},)"
                R"("messages":[{"role":"user","content":"What is 2+2?"}]})");
  REQUIRE(r.status == 200);
  CHECK(r.header("content-type") == "text/event-stream");
  auto payloads = sse_payloads(r.body);
  REQUIRE(payloads.size() >= 3);
  CHECK(payloads.back() == "[DONE]");
  std::string text;
  bool usage = false;
  bool role = false;
  std::string finish;
  for (std::size_t i = 0; i + 1 < payloads.size(); ++i) {
    completion_chunk c;
    REQUIRE_FALSE(wire::decode_chunk(payloads[i], c));
    if (c.usage) usage = true;
    for (auto& ch : c.choices) {
      text += ch.content;
      role = role || ch.role == "assistant";
      if (!ch.finish_reason.empty()) finish = ch.finish_reason;
    }
  }
  CHECK(text == "2 + 2 = 4.");
  CHECK(usage);
  CHECK(role);
  CHECK(finish == "stop");
  // Streamed tool calls: the argument pieces join by index.
  r = post(e.gw.port, "/v1/chat/completions",
           R"({"model":"sabia-4","stream":true,"messages":[{"role":"user",)"
           R"("content":"What is the weather in Paris?"}],"tools":)" +
               weather_tool + "}");
  REQUIRE(r.status == 200);
  payloads = sse_payloads(r.body);
  std::string name;
  std::string args;
  usage = false;
  for (std::size_t i = 0; i + 1 < payloads.size(); ++i) {
    completion_chunk c;
    REQUIRE_FALSE(wire::decode_chunk(payloads[i], c));
    usage = usage || c.usage.has_value();
    for (auto& ch : c.choices)
      for (auto& d : ch.tool_calls) {
        name += d.name;
        args += d.arguments;
      }
  }
  CHECK(name == "get_weather");
  CHECK(contains(args, "\"city\""));
  CHECK_FALSE(usage); // not asked for
}

TEST_CASE("GET /v1/models and /api/models list the upstream's models") {
  auto& e = env();
  for (auto path : {"/v1/models", "/api/models"}) {
    auto r = get(e.gw.port, path);
    REQUIRE(r.status == 200);
    std::vector<model_info> xs;
    REQUIRE_FALSE(wire::decode_models(r.body, xs));
    REQUIRE_FALSE(xs.empty());
    CHECK(xs[0].id == "sabia-4");
  }
}

TEST_CASE("GET /v1/models/{id} retrieves one model") {
  auto& e = env();
  auto r = get(e.gw.port, "/v1/models/sabia-4");
  CHECK(r.status == 200);
  CHECK(contains(r.body, R"("id":"sabia-4")"));
  CHECK(contains(r.body, R"("object":"model")"));
  r = get(e.gw.port, "/api/models/no-such-model");
  CHECK(r.status == 404);
  CHECK(contains(r.body, "model_not_found"));
}

TEST_CASE("upstream errors keep their status, with an OpenAI error body") {
  auto& e = env();
  auto chat = std::string{R"({"model":"sabia-4","messages":[{"role":"user",)"
                          R"("content":"hi"}]})"};
  auto r = post(e.gw.port, "/v1/chat/completions", chat,
                bearer() + "x-sim-fault: 429;retry-after=1\r\n");
  CHECK(r.status == 429);
  CHECK(r.header("retry-after") == "1");
  CHECK(contains(r.body, R"("type":"rate_limit_error")"));
  CHECK(contains(r.body, R"("code":"rate_limited")"));
  r = post(e.gw.port, "/v1/chat/completions", chat,
           bearer() + "x-sim-fault: 503\r\n");
  CHECK(r.status == 503);
  CHECK(contains(r.body, R"("type":"server_error")"));
  // Streams fail with a status as long as nothing was sent.
  auto stream = std::string{R"({"model":"sabia-4","stream":true,)"
                            R"("messages":[{"role":"user","content":"hi"}]})"};
  r = post(e.gw.port, "/v1/chat/completions", stream,
           bearer() + "x-sim-fault: 429;retry-after=2\r\n");
  CHECK(r.status == 429);
  CHECK(r.header("retry-after") == "2");
  r = get(e.gw.port, "/stream?question=hi", bearer() + "x-sim-fault: 500\r\n");
  CHECK(r.status == 500);
  r = post(e.gw.port, "/ask", R"({"text":"hi"})",
           bearer() + "x-sim-fault: 429\r\n");
  CHECK(r.status == 429);
  // The upstream's 404 for an unknown model.
  r = post(
      e.gw.port, "/v1/chat/completions",
      R"({"model":"gpt-nope","messages":[{"role":"user","content":"hi"}]})");
  CHECK(r.status == 404);
  CHECK(contains(r.body, R"("type":"not_found_error")"));
  // A stream that breaks after data ends with an error event.
  r = post(e.gw.port, "/v1/chat/completions",
           R"({"model":"sabia-4","stream":true,"messages":[{"role":"user",)"
           R"("content":"Tell a story"}]})",
           bearer() + "x-sim-fault: error-mid\r\nx-sim-token-delay-ms: 20\r\n");
  CHECK(r.status == 200);
  auto payloads = sse_payloads(r.body);
  REQUIRE_FALSE(payloads.empty());
  CHECK(wire::is_error_payload(payloads.back()));
  // Plain text cannot carry it: the body is cut (no last chunk).
  r = get(e.gw.port, "/stream?question=Tell+a+story",
          bearer() + "x-sim-fault: reset-mid\r\nx-sim-token-delay-ms: 20\r\n");
  CHECK(r.status == 200);
  CHECK_FALSE(r.complete);
}

TEST_CASE("an unreachable upstream gives 502") {
  gateway_process gw{"http://127.0.0.1:1/api", {"--max-retries", "0"}};
  auto r = post(gw.port, "/ask", R"({"text":"hi"})", "");
  CHECK(r.status == 502);
  CHECK(contains(r.body, "connect_failed"));
}

// -- sessions
// ---------------------------------------------------------------------

TEST_CASE("sessions keep a conversation") {
  auto& e = env();
  auto r = post(e.gw.port, "/sessions", R"({"system":"Be brief."})");
  REQUIRE(r.status == 201);
  auto pos = r.body.find("\"id\":\"");
  REQUIRE(pos != std::string::npos);
  auto id = r.body.substr(pos + 6, r.body.find('"', pos + 6) - pos - 6);
  CHECK(id.rfind("sess_", 0) == 0);
  r = post(e.gw.port, "/sessions/" + id + "/ask",
           R"({"text":"My name is Ana."})");
  CHECK(r.status == 200);
  r = post(e.gw.port, "/sessions/" + id + "/ask",
           R"({"text":"What is my name?"})");
  CHECK(r.status == 200);
  CHECK(r.body == R"({"answer":"Your name is Ana."})");
  r = post(e.gw.port, "/sessions/" + id + "/ask", R"({"txt":"x"})");
  CHECK(r.status == 400);
  // The session, listed and shown with its history.
  r = get(e.gw.port, "/sessions");
  CHECK(r.status == 200);
  CHECK(contains(r.body, "\"id\":\"" + id + "\""));
  r = get(e.gw.port, "/sessions/" + id);
  CHECK(r.status == 200);
  CHECK(contains(r.body, "\"id\":\"" + id + "\""));
  CHECK(contains(r.body, "Be brief."));
  CHECK(contains(r.body, "My name is Ana."));
  CHECK(contains(r.body, "Your name is Ana."));
  CHECK(get(e.gw.port, "/sessions/sess_nope").status == 404);
  // A streamed ask keeps the history too.
  r = post(e.gw.port, "/sessions/" + id + "/ask",
           R"({"text":"What is my name?"})",
           bearer() + "Accept: text/event-stream\r\n");
  CHECK(r.status == 200);
  CHECK(r.header("content-type") == "text/event-stream");
  CHECK(r.arrivals.size() > 1);
  std::string streamed;
  for (auto& p : sse_payloads(r.body))
    if (p != "[DONE]") streamed += p;
  CHECK(streamed == "Your name is Ana.");
  CHECK(contains(get(e.gw.port, "/sessions/" + id).body,
                 "\"What is my name?\"},{\"role\":\"assistant\""));
  r = roundtrip(e.gw.port, make_request("DELETE", "/sessions/" + id, bearer()));
  CHECK(r.status == 204);
  r = post(e.gw.port, "/sessions/" + id + "/ask", R"({"text":"Hi"})");
  CHECK(r.status == 404);
  r = roundtrip(e.gw.port, make_request("DELETE", "/sessions/" + id, bearer()));
  CHECK(r.status == 404);
  CHECK(post(e.gw.port, "/sessions", R"({"system":1})").status == 400);
}

// -- connections
// ------------------------------------------------------------------

TEST_CASE("keep-alive and pipelined requests on one connection") {
  auto& e = env();
  conn c{e.gw.port};
  auto one = make_request("POST", "/ask", bearer(),
                          R"({"text":"What is 2+2?"})", true);
  auto two = make_request("GET", "/healthz", "", "", false);
  c.send(one + two);
  std::string all;
  auto end = clock_type::now() + 10s;
  while (clock_type::now() < end) {
    bool eof = false;
    all += c.read_some(100ms, eof);
    if (eof) break;
  }
  auto first = all.find("HTTP/1.1 200");
  REQUIRE(first != std::string::npos);
  auto second = all.find("HTTP/1.1 200", first + 1);
  REQUIRE(second != std::string::npos);
  CHECK(contains(all, "4"));
  CHECK(contains(all.substr(second), R"({"status":"ok"})"));
}

TEST_CASE("slow and idle clients time out") {
  auto& e = env();
  gateway_process gw{e.sim.base_url(),
                     {"--header-timeout", "0.5", "--idle-timeout", "0.7",
                      "--body-timeout", "0.5"}};
  {
    // A head that never ends.
    conn c{gw.port};
    c.send("GET /healthz HTTP/1.1\r\nHost: x\r\n");
    auto start = clock_type::now();
    CHECK(c.closed_within(5s));
    CHECK(clock_type::now() - start < 3s);
  }
  {
    // A body that never comes.
    conn c{gw.port};
    c.send("POST /ask HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{");
    CHECK(c.closed_within(5s));
  }
  {
    // Idle after one answer on a keep-alive connection.
    conn c{gw.port};
    c.send(make_request("GET", "/healthz", "", "", true));
    bool eof = false;
    auto answer = c.read_some(5s, eof);
    CHECK(contains(answer, "200 OK"));
    auto start = clock_type::now();
    CHECK(c.closed_within(5s));
    CHECK(clock_type::now() - start >= 500ms);
  }
}

TEST_CASE("a flood of slow and half-open connections does not stop others") {
  auto& e = env();
  // A gateway of its own: short head timeout, few connections allowed.
  scoped_env key{"MARITACA_API_KEY", upstream_key};
  gateway_process gw{
      e.sim.base_url(),
      {"--header-timeout", "1", "--max-connections", "64", "--threads", "2"}};
  auto answered = [&] {
    auto r = get(gw.port, "/healthz", "");
    return r.status == 200 && r.complete;
  };
  std::vector<std::unique_ptr<conn>> flood;
  SECTION("below the connection limit, others are served at once") {
    for (int i = 0; i < 40; ++i) {
      auto c = std::make_unique<conn>(gw.port);
      if (i % 2 == 0) {
        // Slow: a head that trickles in and never ends.
        c->send("GET /healthz HTTP/1.1\r\nHo");
      } else {
        // Half-open: connects, sends nothing, closes its sending side.
        ::shutdown(c->fd(), SHUT_WR);
      }
      flood.push_back(std::move(c));
    }
    for (int i = 0; i < 5; ++i)
      CHECK(answered());
    auto r = post(gw.port, "/ask", R"({"text":"What is 2+2?"})", "");
    CHECK(r.status == 200);
    CHECK(contains(r.body, "4"));
  }
  SECTION("beyond the limit, newcomers displace connections without a head") {
    for (int i = 0; i < 200; ++i) {
      auto c = std::make_unique<conn>(gw.port);
      c->send("GET /healthz HTTP/1.1\r\n");
      flood.push_back(std::move(c));
    }
    // A new client takes the slot of a flood connection still waiting for
    // its head; the loop is bounded, so a gateway that stays stuck fails.
    auto deadline = clock_type::now() + 15s;
    bool served = false;
    while (!served && clock_type::now() < deadline) {
      served = answered();
      if (!served) std::this_thread::sleep_for(100ms);
    }
    CHECK(served);
    // Every flood connection ends: displaced, or by the head timeout (1 s).
    std::size_t closed = 0;
    for (auto& c : flood)
      if (c->closed_within(3s)) ++closed;
    CHECK(closed == flood.size());
  }
}

TEST_CASE("a client leaving mid-stream cancels its upstream request") {
  auto& e = env();
  REQUIRE(sim_idle_within(e.sim, 5s));
  auto leave_after_first_piece = [&](const std::string& raw) {
    conn c{e.gw.port};
    c.send(raw);
    std::string got;
    auto end = clock_type::now() + 10s;
    // Wait for the head and some content.
    while (clock_type::now() < end &&
           got.find("\r\n\r\n") == std::string::npos) {
      bool eof = false;
      got += c.read_some(100ms, eof);
      if (eof) break;
    }
    CHECK(contains(got, "200 OK"));
    // The upstream is busy now (a long answer, 200 ms per token).
    CHECK(sim_in_flight(e.sim) == 1);
    c.close();
    CHECK(sim_idle_within(e.sim, 5s));
  };
  auto slow = bearer() + "x-sim-token-delay-ms: 200\r\n";
  leave_after_first_piece(
      make_request("GET", "/stream?question=Tell+a+story", slow));
  leave_after_first_piece(
      make_request("POST", "/v1/chat/completions", slow,
                   R"({"model":"sabia-4","stream":true,"messages":[{"role":)"
                   R"("user","content":"Tell a story"}]})"));
  // Also while waiting for a non-streamed answer.
  {
    conn c{e.gw.port};
    c.send(make_request("POST", "/ask",
                        bearer() + "x-sim-fault: stall-first\r\n",
                        R"({"text":"hi"})"));
    auto end = clock_type::now() + 5s;
    while (clock_type::now() < end && sim_in_flight(e.sim) != 1)
      std::this_thread::sleep_for(20ms);
    CHECK(sim_in_flight(e.sim) == 1);
    c.close();
    CHECK(sim_idle_within(e.sim, 5s));
  }
  auto m = get(e.gw.port, "/metrics");
  CHECK(contains(m.body, "maritaca_gateway_client_disconnects_total"));
  CHECK_FALSE(contains(m.body, "maritaca_gateway_client_disconnects_total 0"));
}

TEST_CASE("--max-concurrency bounds the upstream requests") {
  auto& e = env();
  REQUIRE(sim_idle_within(e.sim, 5s));
  std::string ignored;
  maritaca::test::http_post(e.sim.port(), "/sim/stats/reset", "", ignored);
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i)
    threads.emplace_back([&, i] {
      auto r = get(e.gw.port,
                   "/stream?question=What+is+" + std::to_string(i) + "%2B2",
                   bearer() + "x-sim-token-delay-ms: 50\r\n");
      if (r.status == 200 && r.complete) ++ok;
    });
  for (auto& t : threads)
    t.join();
  CHECK(ok == 8);
  auto max = sim_max_in_flight(e.sim);
  CHECK(max >= 1);
  CHECK(max <= 4);
}

// -- metrics and secrets
// ----------------------------------------------------------

TEST_CASE("GET /metrics speaks Prometheus text") {
  auto& e = env();
  post(e.gw.port, "/ask", R"({"text":"What is 2+2?"})");
  get(e.gw.port, "/stream?question=What+is+2%2B2");
  auto r = get(e.gw.port, "/metrics");
  REQUIRE(r.status == 200);
  CHECK(contains(r.header("content-type"), "text/plain"));
  for (auto name :
       {"maritaca_gateway_requests_total{route=\"/ask\",status=\"200\"}",
        "maritaca_gateway_requests_total{route=\"/ask\",status=\"401\"}",
        "maritaca_gateway_requests_in_flight 1",
        "maritaca_gateway_upstream_in_flight",
        "maritaca_gateway_upstream_queued 0",
        "maritaca_gateway_upstream_latency_seconds_bucket{le=\"+Inf\"}",
        "maritaca_gateway_time_to_first_token_seconds_count",
        "maritaca_gateway_tokens_in_total", "maritaca_gateway_tokens_out_total",
        "# TYPE maritaca_gateway_upstream_latency_seconds histogram"})
    CHECK(contains(r.body, name));
  CHECK_FALSE(contains(r.body, "maritaca_gateway_tokens_out_total 0\n"));
}

TEST_CASE("the upstream key never reaches a client, the log or /metrics") {
  auto& e = env();
  // Exercise error paths too.
  post(e.gw.port, "/v1/chat/completions",
       R"({"model":"sabia-4","messages":[{"role":"user","content":"hi"}]})",
       bearer() + "x-sim-fault: 500\r\n");
  std::string seen;
  for (auto path : {"/metrics", "/v1/models", "/healthz", "/nope"})
    seen += get(e.gw.port, path).body;
  CHECK_FALSE(contains(seen, upstream_key));
  std::ifstream log{e.log_file};
  std::string text{std::istreambuf_iterator<char>{log}, {}};
  CHECK(contains(text, "POST /ask 200"));
  CHECK_FALSE(contains(text, upstream_key));
  CHECK_FALSE(contains(text, token));
  // A wrong upstream key: 502 (a 401 would blame the client's token), no
  // key with it.
  std::string log2 = e.log_file + ".2";
  {
    scoped_env key{"MARITACA_API_KEY", "sk-wrong-key-0815"};
    gateway_process gw{e.sim.base_url(), {"--access-log", "--verbose"}, log2};
    auto r = post(gw.port, "/ask", R"({"text":"hi"})", "");
    CHECK(r.status == 502);
    CHECK(contains(r.body, "upstream_auth_failed"));
    CHECK_FALSE(contains(r.body, "sk-wrong-key-0815"));
    CHECK_FALSE(contains(get(gw.port, "/metrics", "").body, "sk-wrong"));
  }
  std::ifstream in2{log2};
  std::string text2{std::istreambuf_iterator<char>{in2}, {}};
  CHECK(contains(text2, "no --token"));
  CHECK_FALSE(contains(text2, "sk-wrong-key-0815"));
  std::remove(log2.c_str());
}

TEST_CASE("tokens from MARITACA_GATEWAY_TOKENS and --token-file") {
  auto& e = env();
  std::string file = "/tmp/maritaca-gw-tokens-" + std::to_string(getpid());
  {
    std::ofstream out{file};
    out << "# clients\nfile-token-1\n\n  file-token-2  \n";
  }
  scoped_env tokens{"MARITACA_GATEWAY_TOKENS", "env-a, env-b"};
  scoped_env key{"MARITACA_API_KEY", upstream_key};
  gateway_process gw{e.sim.base_url(), {"--token-file", file}};
  for (auto t : {"env-a", "env-b", "file-token-1", "file-token-2"})
    CHECK(
        post(gw.port, "/ask", R"({"text":"What is 2+2?"})", bearer(t)).status ==
        200);
  CHECK(post(gw.port, "/ask", R"({"text":"hi"})", bearer("clients")).status ==
        401);
  // Without --forward-header, x-sim-fault stays at the gateway.
  CHECK(post(gw.port, "/ask", R"({"text":"What is 2+2?"})",
             bearer("env-a") + "x-sim-fault: 500\r\n")
            .status == 200);
  std::remove(file.c_str());
}

TEST_CASE("bad command lines exit with status 2") {
  for (auto args : std::vector<std::vector<std::string>>{
           {"--bogus"},
           {"--listen", "nowhere"},
           {"--max-concurrency", "0"},
           {"--api-key-file", "/nonexistent/key"},
           {"--forward-header", "bad header"}}) {
    std::vector<std::string> argv{bin_path("maritaca-gateway")};
    argv.insert(argv.end(), args.begin(), args.end());
    child_process p{argv};
    CHECK(p.wait() == 2);
  }
  child_process help{{bin_path("maritaca-gateway"), "--help"}, "usage:"};
  CHECK(help.wait() == 0);
}
