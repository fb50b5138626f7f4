// Integration tests of maritaca-sim over real loopback sockets: routes,
// answers, streams, auth, errors, every fault's wire behaviour, stats and
// TLS. Uses a raw socket client so that nothing of the client library
// stands between the test and the bytes.

#include "support/process.hpp"

#include "maritaca/transport/sse_parser.hpp"
#include "maritaca/transport/wire.hpp"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using maritaca::test::sim_process;

namespace {

using clock_type = std::chrono::steady_clock;

/// Everything a raw exchange observed.
struct raw_response {
  /// Status of the response head, or -1 when no complete head arrived.
  int status = -1;
  /// The head (status line and fields), without the blank line.
  std::string head;
  /// The body, with the chunked coding undone.
  std::string body;
  /// Every byte received.
  std::string raw;
  /// errno of the read that failed (e.g. ECONNRESET), 0 on a clean EOF.
  int error = 0;
  /// Whether the exchange hit its deadline while the socket was open.
  bool timed_out = false;

  /// Returns the value of header `name` (case-insensitive), or "".
  std::string header(const std::string& name) const {
    std::istringstream in{head};
    std::string line;
    while (std::getline(in, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      auto colon = line.find(':');
      if (colon == std::string::npos || colon != name.size()) continue;
      if (strncasecmp(line.c_str(), name.c_str(), name.size()) != 0) continue;
      auto value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ')
        value.erase(0, 1);
      return value;
    }
    return {};
  }
};

/// Connects to 127.0.0.1:`port`; returns the socket or -1.
int connect_to(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

bool send_all(int fd, const std::string& bytes) {
  size_t sent = 0;
  while (sent < bytes.size()) {
    auto n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

/// Undoes the chunked coding of `body` as far as it is complete.
std::string dechunk(const std::string& body) {
  std::string plain;
  size_t pos = 0;
  while (pos < body.size()) {
    auto eol = body.find("\r\n", pos);
    if (eol == std::string::npos) break;
    auto len = std::strtoul(body.substr(pos, eol - pos).c_str(), nullptr, 16);
    if (len == 0) break;
    plain += body.substr(eol + 2, len);
    pos = eol + 2 + len + 2;
  }
  return plain;
}

/// Splits what was received into head and body.
void finish_response(raw_response& r) {
  auto end = r.raw.find("\r\n\r\n");
  if (r.raw.rfind("HTTP/1.", 0) != 0 || end == std::string::npos) return;
  r.head = r.raw.substr(0, end);
  r.status = std::atoi(r.head.substr(9, 3).c_str());
  r.body = r.raw.substr(end + 4);
  if (r.header("Transfer-Encoding") == "chunked") r.body = dechunk(r.body);
}

/// Reads from `fd` until EOF, an error or `timeout`.
void read_until_end(int fd, raw_response& r,
                    std::chrono::milliseconds timeout) {
  auto deadline = clock_type::now() + timeout;
  char buf[16384];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - clock_type::now());
    if (left.count() <= 0) {
      r.timed_out = true;
      break;
    }
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    auto n = ::recv(fd, buf, sizeof(buf), 0);
    if (n < 0) {
      r.error = errno;
      break;
    }
    if (n == 0) break;
    r.raw.append(buf, static_cast<size_t>(n));
  }
}

/// Sends `request` on a fresh connection and reads until the server
/// closes (or `timeout` passes).
raw_response roundtrip(int port, const std::string& request,
                       std::chrono::milliseconds timeout = 10s) {
  raw_response r;
  int fd = connect_to(port);
  REQUIRE(fd >= 0);
  REQUIRE(send_all(fd, request));
  read_until_end(fd, r, timeout);
  close(fd);
  finish_response(r);
  return r;
}

/// A POST request closing the connection after the response.
std::string post(const std::string& target, const std::string& body,
                 const std::string& extra_headers = {},
                 bool keep_alive = false) {
  return "POST " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
         (keep_alive ? "" : "Connection: close\r\n") +
         "Content-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n" + extra_headers + "\r\n" + body;
}

/// A GET request closing the connection after the response.
std::string get(const std::string& target,
                const std::string& extra_headers = {}) {
  return "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
         "Connection: close\r\n" + extra_headers + "\r\n";
}

/// A chat body with one user message (no JSON escaping needed in tests).
std::string chat_body(const std::string& question, bool stream = false,
                      const std::string& extra = {}) {
  return R"({"model":"sabia-4","messages":[{"role":"user","content":")" +
         question + R"("}])" + (stream ? R"(,"stream":true)" : "") + extra +
         "}";
}

maritaca::chat_completion decode_completion(const std::string& body) {
  maritaca::chat_completion result;
  auto err = maritaca::wire::decode_completion(body, result);
  INFO(body);
  REQUIRE_FALSE(err);
  REQUIRE(result.choices.size() >= 1);
  return result;
}

/// The decoded events of a stream body, and how decoding ended.
struct decoded_stream {
  std::vector<maritaca::completion_chunk> chunks;
  maritaca::failure error;
  bool done = false;
};

decoded_stream decode_stream(const std::string& body) {
  decoded_stream result;
  maritaca::sse::chunk_decoder decoder;
  result.error = decoder.feed(body, result.chunks);
  if (!result.error) result.error = decoder.finish();
  result.done = decoder.done();
  return result;
}

/// The text of a stream's content deltas.
std::string joined_content(const decoded_stream& s) {
  std::string result;
  for (auto& c : s.chunks)
    for (auto& choice : c.choices)
      result += choice.content;
  return result;
}

/// Reads `/sim/stats` (or the answer of a reset) into its four numbers.
maritaca::test::sim_stats
read_stats(int port, const char* target = "/sim/stats", bool reset = false) {
  auto r = roundtrip(port, reset ? post(target, "") : get(target));
  REQUIRE(r.status == 200);
  return maritaca::test::parse_sim_stats(r.body);
}

/// Polls the stats until `in_flight` is `expected` (up to 3 s).
long wait_in_flight(int port, long expected) {
  auto deadline = clock_type::now() + 3s;
  long seen = -1;
  while (clock_type::now() < deadline) {
    seen = read_stats(port).in_flight;
    if (seen == expected) break;
    std::this_thread::sleep_for(20ms);
  }
  return seen;
}

const std::string weather_tool =
    R"("tools":[{"type":"function","function":{"name":"get_weather",)"
    R"("description":"Get the current weather for a city","parameters":)"
    R"({"type":"object","properties":{"city":{"type":"string"},)"
    R"("unit":{"type":"string","enum":["celsius","fahrenheit"]},)"
    R"("days":{"type":"integer"}},"required":["city"]}}}])";

} // namespace

// -- routes and answers
// ----------------------------------------------------------

TEST_CASE("sim prints its URL and lists the models") {
  sim_process sim;
  CHECK(sim.base_url().rfind("http://127.0.0.1:", 0) == 0);
  CHECK(sim.base_url().size() > 4);
  CHECK(sim.base_url().substr(sim.base_url().size() - 4) == "/api");
  for (auto target : {"/api/models", "/v1/models"}) {
    auto r = roundtrip(sim.port(), get(target));
    REQUIRE(r.status == 200);
    CHECK(r.header("Content-Type") == "application/json");
    std::vector<maritaca::model_info> models;
    REQUIRE_FALSE(maritaca::wire::decode_models(r.body, models));
    REQUIRE(models.size() == 3);
    CHECK(models[0].id == "sabia-4");
    CHECK(models[1].id == "sabiazinho-4");
    CHECK(models[2].id == "sabia-4-thinking");
  }
}

TEST_CASE("sim answers the seed questions correctly") {
  sim_process sim;
  struct qa {
    std::string question;
    std::string expected;
  };
  std::vector<qa> cases{
      {"What is 2+2?", "4"},
      {"What is the capital of Brazil?", "Brasília"},
      {"Qual é a capital do Brasil?", "Brasília"},
      {"What is 17 + 25?", "42"},
      {"What is AI?", "intelligence"},
      {"What is machine learning?", "data"},
      {"What is deep learning?", "neural networks"},
      {"Hello!", "help"},
      {"How are you?", "well"},
      {"Tell a story.", "Once upon a time"},
      {"Something else entirely", "Você disse: \\\"Something else entirely"},
  };
  for (auto& c : cases) {
    for (auto target : {"/api/chat/completions", "/v1/chat/completions"}) {
      auto r = roundtrip(sim.port(), post(target, chat_body(c.question)));
      INFO(c.question << " -> " << r.body);
      REQUIRE(r.status == 200);
      auto x = decode_completion(r.body);
      auto& choice = x.choices.front();
      CHECK(x.id.rfind("chatcmpl-", 0) == 0);
      CHECK(x.model == "sabia-4");
      CHECK(choice.message.role == "assistant");
      CHECK(choice.finish_reason == "stop");
      REQUIRE(choice.message.content.has_value());
      auto expected = c.expected;
      // The echo case is written as it appears in the JSON text.
      if (expected.find("\\\"") != std::string::npos)
        CHECK(r.body.find(expected) != std::string::npos);
      else
        CHECK(choice.message.content->find(expected) != std::string::npos);
      REQUIRE(x.usage.has_value());
      CHECK(x.usage->prompt_tokens > 0);
      CHECK(x.usage->completion_tokens > 0);
      CHECK(x.usage->total_tokens ==
            x.usage->prompt_tokens + x.usage->completion_tokens);
    }
  }
}

TEST_CASE("sim answers deterministically and sees the history") {
  sim_process sim;
  auto body = chat_body("Qual é a capital do Brasil?");
  auto a = roundtrip(sim.port(), post("/api/chat/completions", body));
  auto b = roundtrip(sim.port(), post("/api/chat/completions", body));
  REQUIRE(a.status == 200);
  CHECK(a.body == b.body);
  auto c = roundtrip(sim.port(),
                     post("/api/chat/completions", chat_body("What is 2+2?")));
  CHECK(decode_completion(a.body).id != decode_completion(c.body).id);
  // History: the answer names the first user message.
  auto history =
      R"({"model":"sabia-4","messages":[{"role":"system","content":"Be brief."},)"
      R"({"role":"user","content":"My name is Ana."},)"
      R"({"role":"assistant","content":"Nice to meet you, Ana!"},)"
      R"({"role":"user","content":"What did I say first?"}]})";
  auto h = roundtrip(sim.port(), post("/api/chat/completions", history));
  REQUIRE(h.status == 200);
  CHECK(decode_completion(h.body).choices[0].message.text() ==
        "You first said: \"My name is Ana.\"");
}

TEST_CASE("sim truncates at max_tokens and stop sequences") {
  sim_process sim;
  auto r =
      roundtrip(sim.port(),
                post("/api/chat/completions",
                     chat_body("Tell a story.", false, R"(,"max_tokens":5)")));
  REQUIRE(r.status == 200);
  auto x = decode_completion(r.body);
  CHECK(x.choices[0].finish_reason == "length");
  CHECK(x.choices[0].message.text() == "Once upon a time, a");
  CHECK(x.usage->completion_tokens == 5);
  auto s = roundtrip(sim.port(), post("/api/chat/completions",
                                      chat_body("Tell a story.", false,
                                                R"(,"stop":["parrot"])")));
  CHECK(decode_completion(s.body).choices[0].message.text() ==
        "Once upon a time, a small ");
}

TEST_CASE("sim streams SSE ending in [DONE] with a usage chunk") {
  sim_process sim;
  auto question = std::string{"Qual é a capital do Brasil?"};
  auto plain = decode_completion(
      roundtrip(sim.port(), post("/api/chat/completions", chat_body(question)))
          .body);
  auto r =
      roundtrip(sim.port(),
                post("/api/chat/completions",
                     chat_body(question, true,
                               R"(,"stream_options":{"include_usage":true})")));
  REQUIRE(r.status == 200);
  CHECK(r.header("Content-Type") == "text/event-stream");
  CHECK(r.header("Transfer-Encoding") == "chunked");
  // The raw stream ends with the [DONE] event and the last chunk.
  CHECK(r.raw.size() > 20);
  CHECK(r.raw.substr(r.raw.size() - 21) == "data: [DONE]\n\n\r\n0\r\n\r\n");
  auto s = decode_stream(r.body);
  REQUIRE_FALSE(s.error);
  REQUIRE(s.done);
  REQUIRE(s.chunks.size() >= 4);
  CHECK(s.chunks.front().choices.at(0).role == "assistant");
  // One chunk per word, each with its trailing space.
  auto words = s.chunks.size() - 3; // role, finish, usage
  CHECK(words == 6);
  CHECK(s.chunks[1].choices.at(0).content == "A ");
  CHECK(joined_content(s) == plain.choices[0].message.text());
  auto& finish = s.chunks[s.chunks.size() - 2];
  CHECK(finish.choices.at(0).finish_reason == "stop");
  auto& last = s.chunks.back();
  CHECK(last.choices.empty());
  REQUIRE(last.usage.has_value());
  CHECK(*last.usage == *plain.usage);
  for (auto& c : s.chunks)
    CHECK(c.id == plain.id);
}

TEST_CASE("sim streams exactly x-sim-chunks words") {
  sim_process sim;
  auto r =
      roundtrip(sim.port(), post("/api/chat/completions", chat_body("x", true),
                                 "x-sim-chunks: 5000\r\n"));
  REQUIRE(r.status == 200);
  auto s = decode_stream(r.body);
  REQUIRE_FALSE(s.error);
  CHECK(s.done);
  CHECK(s.chunks.size() == 5000 + 2);
  auto plain =
      roundtrip(sim.port(), post("/api/chat/completions",
                                 chat_body("x", false, R"(,"max_tokens":7)"),
                                 "x-sim-chunks: 5000\r\n"));
  auto x = decode_completion(plain.body);
  CHECK(x.choices[0].finish_reason == "length");
  CHECK(x.usage->completion_tokens == 7);
}

TEST_CASE("sim delays stream chunks as asked") {
  sim_process sim{{"--token-delay-ms", "40"}};
  auto start = clock_type::now();
  auto r = roundtrip(sim.port(), post("/api/chat/completions",
                                      chat_body("How are you?", true)));
  auto took = clock_type::now() - start;
  REQUIRE(r.status == 200);
  auto s = decode_stream(r.body);
  REQUIRE(s.done);
  // 13 words, 40 ms before each.
  CHECK(s.chunks.size() == 13 + 2);
  CHECK(took >= 13 * 40ms);
  // The header overrides the flag.
  start = clock_type::now();
  r = roundtrip(sim.port(),
                post("/api/chat/completions", chat_body("How are you?", true),
                     "x-sim-token-delay-ms: 0\r\n"));
  CHECK(decode_stream(r.body).done);
  CHECK(clock_type::now() - start < 400ms);
}

TEST_CASE("sim keeps connections alive and closes idle ones") {
  sim_process sim{{"--idle-timeout", "1"}};
  int fd = connect_to(sim.port());
  REQUIRE(fd >= 0);
  // Two pipelined requests on one connection; the second closes it.
  REQUIRE(
      send_all(fd, post("/api/chat/completions", chat_body("Hi"), {}, true) +
                       post("/api/chat/completions", chat_body("Hi"))));
  raw_response r;
  read_until_end(fd, r, 5s);
  close(fd);
  CHECK_FALSE(r.timed_out);
  size_t count = 0;
  for (auto pos = r.raw.find("HTTP/1.1 200"); pos != std::string::npos;
       pos = r.raw.find("HTTP/1.1 200", pos + 1))
    ++count;
  CHECK(count == 2);
  // A request sent while a stream is still running is answered after it.
  fd = connect_to(sim.port());
  REQUIRE(fd >= 0);
  REQUIRE(send_all(fd, post("/api/chat/completions",
                            chat_body("How are you?", true),
                            "x-sim-token-delay-ms: 30\r\n", true)));
  pollfd first{fd, POLLIN, 0};
  REQUIRE(poll(&first, 1, 5000) == 1);
  REQUIRE(send_all(fd, post("/api/chat/completions", chat_body("Hi"))));
  raw_response both;
  read_until_end(fd, both, 5s);
  close(fd);
  CHECK_FALSE(both.timed_out);
  CHECK(both.raw.find("data: [DONE]") != std::string::npos);
  CHECK(both.raw.find("HTTP/1.1 200", both.raw.find("data: [DONE]")) !=
        std::string::npos);
  // An idle connection is closed by the server after the idle timeout.
  fd = connect_to(sim.port());
  REQUIRE(fd >= 0);
  auto start = clock_type::now();
  raw_response idle;
  read_until_end(fd, idle, 5s);
  close(fd);
  CHECK_FALSE(idle.timed_out);
  CHECK(idle.raw.empty());
  CHECK(clock_type::now() - start >= 900ms);
}

// -- tools and JSON output
// --------------------------------------------------------

TEST_CASE("sim calls tools the prompt mentions") {
  sim_process sim;
  auto body = chat_body("What is the weather in Paris for 3 days?", false,
                        "," + weather_tool);
  auto r = roundtrip(sim.port(), post("/api/chat/completions", body));
  REQUIRE(r.status == 200);
  auto x = decode_completion(r.body);
  auto& choice = x.choices[0];
  CHECK(choice.finish_reason == "tool_calls");
  CHECK_FALSE(choice.message.content.has_value());
  REQUIRE(choice.message.tool_calls.size() == 1);
  auto& call = choice.message.tool_calls[0];
  CHECK(call.id.rfind("call_", 0) == 0);
  CHECK(call.name == "get_weather");
  CHECK(call.arguments == R"({"city":"Paris","unit":"celsius","days":3})");
  // Streamed, the pieces join by index into the same call.
  auto streamed =
      roundtrip(sim.port(), post("/api/chat/completions",
                                 chat_body("What is the weather in Paris for "
                                           "3 days?",
                                           true, "," + weather_tool)));
  auto s = decode_stream(streamed.body);
  REQUIRE_FALSE(s.error);
  REQUIRE(s.done);
  std::string id, name, args;
  size_t pieces = 0;
  for (auto& c : s.chunks) {
    for (auto& ch : c.choices) {
      for (auto& d : ch.tool_calls) {
        CHECK(d.index == 0);
        id += d.id;
        name += d.name;
        args += d.arguments;
        ++pieces;
      }
    }
  }
  CHECK(id == call.id);
  CHECK(name == "get_weather");
  CHECK(args == call.arguments);
  CHECK(pieces > 3);
  CHECK(s.chunks.back().choices.at(0).finish_reason == "tool_calls");
  // Not mentioned, not called; with "required", called anyway.
  auto plain = decode_completion(
      roundtrip(sim.port(),
                post("/api/chat/completions",
                     chat_body("Hello!", false, "," + weather_tool)))
          .body);
  CHECK(plain.choices[0].message.tool_calls.empty());
  auto forced = decode_completion(
      roundtrip(sim.port(), post("/api/chat/completions",
                                 chat_body("Hello!", false,
                                           "," + weather_tool +
                                               R"(,"tool_choice":"required")")))
          .body);
  REQUIRE(forced.choices[0].message.tool_calls.size() == 1);
  CHECK(forced.choices[0].message.tool_calls[0].arguments ==
        R"({"city":"example","unit":"celsius","days":1})");
  auto none = decode_completion(
      roundtrip(sim.port(), post("/api/chat/completions",
                                 chat_body("weather in Paris", false,
                                           "," + weather_tool +
                                               R"(,"tool_choice":"none")")))
          .body);
  CHECK(none.choices[0].message.tool_calls.empty());
}

TEST_CASE("sim answers with the tool result") {
  sim_process sim;
  auto body =
      R"({"model":"sabia-4","messages":[{"role":"user","content":"Weather in Paris?"},)"
      R"({"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function",)"
      R"("function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},)"
      R"({"role":"tool","tool_call_id":"call_1","content":"22 C and sunny"}],)" +
      weather_tool + "}";
  auto r = roundtrip(sim.port(), post("/api/chat/completions", body));
  REQUIRE(r.status == 200);
  auto x = decode_completion(r.body);
  CHECK(x.choices[0].finish_reason == "stop");
  CHECK(x.choices[0].message.text() == "The result is: 22 C and sunny");
}

TEST_CASE("sim honours response_format") {
  sim_process sim;
  auto r = roundtrip(
      sim.port(),
      post("/api/chat/completions",
           chat_body("What is 2+2?", false,
                     R"(,"response_format":{"type":"json_object"})")));
  REQUIRE(r.status == 200);
  CHECK(decode_completion(r.body).choices[0].message.text() ==
        R"({"answer":"2 + 2 = 4."})");
  auto schema =
      R"(,"response_format":{"type":"json_schema","json_schema":{"name":"a",)"
      R"("schema":{"type":"object","properties":{"answer":{"type":"string"},)"
      R"("confidence":{"type":"number"},"ok":{"type":"boolean"}},)"
      R"("required":["answer","confidence","ok"]}}})";
  auto s = roundtrip(
      sim.port(),
      post("/api/chat/completions",
           chat_body("What is the capital of Brazil?", false, schema)));
  REQUIRE(s.status == 200);
  CHECK(decode_completion(s.body).choices[0].message.text() ==
        R"({"answer":"The capital of Brazil is Brasília.","confidence":1,)"
        R"("ok":true})");
}

// -- auth and bad requests
// --------------------------------------------------------

TEST_CASE("sim requires the API key when given one") {
  sim_process sim{{"--api-key", "sekret"}};
  auto no_key = roundtrip(sim.port(), get("/api/models"));
  CHECK(no_key.status == 401);
  CHECK(no_key.body.find("\"detail\"") != std::string::npos);
  CHECK(no_key.body.find("sekret") == std::string::npos);
  CHECK(roundtrip(sim.port(),
                  get("/api/models", "Authorization: Bearer wrong\r\n"))
            .status == 401);
  CHECK(roundtrip(sim.port(),
                  get("/api/models", "Authorization: Bearer sekret\r\n"))
            .status == 200);
  CHECK(
      roundtrip(sim.port(), get("/api/models", "Authorization: Key sekret\r\n"))
          .status == 200);
  CHECK(roundtrip(sim.port(), post("/api/chat/completions", chat_body("Hi")))
            .status == 401);
  CHECK(roundtrip(sim.port(), post("/api/chat/completions", chat_body("Hi"),
                                   "Authorization: Bearer sekret\r\n"))
            .status == 200);
}

TEST_CASE("sim rejects bad requests with FastAPI-style errors") {
  sim_process sim;
  auto detail_of = [](const raw_response& r) {
    return maritaca::wire::decode_error(r.body).message;
  };
  auto bad_json = roundtrip(
      sim.port(), post("/api/chat/completions", R"({"model": "sabia-4", )"));
  CHECK(bad_json.status == 422);
  CHECK(bad_json.body.rfind("{\"detail\":", 0) == 0);
  CHECK_FALSE(detail_of(bad_json).empty());
  auto no_messages = roundtrip(
      sim.port(), post("/api/chat/completions", R"({"model":"sabia-4"})"));
  CHECK(no_messages.status == 422);
  auto unknown_model =
      roundtrip(sim.port(), post("/api/chat/completions",
                                 R"({"model":"gpt-9","messages":[)"
                                 R"({"role":"user","content":"x"}]})"));
  CHECK(unknown_model.status == 404);
  CHECK(detail_of(unknown_model).find("gpt-9") != std::string::npos);
  auto empty =
      roundtrip(sim.port(), post("/api/chat/completions",
                                 R"({"model":"sabia-4","messages":[]})"));
  CHECK(empty.status == 400);
  CHECK(roundtrip(sim.port(), get("/api/nothing")).status == 404);
  CHECK(roundtrip(sim.port(), get("/api/chat/completions")).status == 405);
  CHECK(roundtrip(sim.port(), post("/api/models", "{}")).status == 405);
  // Over 1 MiB of body: 413.
  auto big = chat_body(std::string(1100 * 1024, 'a'));
  CHECK(roundtrip(sim.port(), post("/api/chat/completions", big)).status ==
        413);
  CHECK(roundtrip(sim.port(), post("/api/chat/completions", chat_body("Hi"),
                                   "x-sim-fault: explode\r\n"))
            .status == 400);
}

// -- faults
// -------------------------------------------------------------------------

TEST_CASE("sim injects error statuses with retry headers") {
  sim_process sim;
  auto r = roundtrip(sim.port(), post("/api/chat/completions", chat_body("Hi"),
                                      "x-sim-fault: 429;retry-after=3\r\n"));
  CHECK(r.status == 429);
  CHECK(r.header("Retry-After") == "3");
  CHECK(r.body == R"({"detail":"rate limited"})");
  r = roundtrip(sim.port(), post("/api/chat/completions", chat_body("Hi"),
                                 "x-sim-fault: 429;retry-after-ms=250\r\n"));
  CHECK(r.status == 429);
  CHECK(r.header("retry-after-ms") == "250");
  CHECK(r.header("Retry-After").empty());
  r = roundtrip(sim.port(), post("/api/chat/completions", chat_body("Hi"),
                                 "x-sim-fault: 500\r\n"));
  CHECK(r.status == 500);
  CHECK(r.body.rfind("{\"detail\":", 0) == 0);
  r = roundtrip(sim.port(), post("/api/chat/completions", chat_body("Hi"),
                                 "x-sim-fault: 503;should-retry=false\r\n"));
  CHECK(r.status == 503);
  CHECK(r.header("x-should-retry") == "false");
  r = roundtrip(sim.port(), post("/api/chat/completions", chat_body("Hi"),
                                 "x-sim-fault: 503;shape=openai\r\n"));
  CHECK(r.status == 503);
  CHECK(maritaca::wire::decode_error(r.body).message == "service unavailable");
  CHECK(r.body.rfind("{\"error\":", 0) == 0);
}

TEST_CASE("sim resets connections before and in the middle of answers") {
  sim_process sim;
  auto before =
      roundtrip(sim.port(), post("/api/chat/completions", chat_body("Hi"),
                                 "x-sim-fault: reset-before\r\n"));
  CHECK(before.raw.empty());
  CHECK(before.status == -1);
  CHECK(before.error == ECONNRESET);
  auto mid = roundtrip(sim.port(),
                       post("/api/chat/completions", chat_body("Tell a story."),
                            "x-sim-fault: reset-mid\r\n"));
  CHECK(mid.status == 200);
  CHECK(mid.error == ECONNRESET);
  auto length = std::atol(mid.header("Content-Length").c_str());
  CHECK(length > 0);
  CHECK(mid.body.size() > 0);
  CHECK(static_cast<long>(mid.body.size()) < length);
  auto stream = roundtrip(sim.port(), post("/api/chat/completions",
                                           chat_body("Tell a story.", true),
                                           "x-sim-fault: reset-mid\r\n"));
  CHECK(stream.status == 200);
  CHECK(stream.error == ECONNRESET);
  auto s = decode_stream(stream.body);
  CHECK_FALSE(s.done);
  CHECK(s.chunks.size() > 10); // role plus about half of the 70 words
  CHECK(s.chunks.size() < 50);
}

TEST_CASE("sim stalls before or in the middle of answers") {
  sim_process sim;
  auto first = roundtrip(sim.port(),
                         post("/api/chat/completions", chat_body("Hi"),
                              "x-sim-fault: stall-first\r\n"),
                         600ms);
  CHECK(first.timed_out);
  CHECK(first.raw.empty());
  auto stalled =
      roundtrip(sim.port(),
                post("/api/chat/completions", chat_body("Tell a story.", true),
                     "x-sim-fault: stall-mid\r\n"),
                600ms);
  CHECK(stalled.timed_out);
  CHECK(stalled.status == 200);
  auto s = decode_stream(stalled.body);
  CHECK_FALSE(s.done);
  CHECK(s.chunks.size() > 10);
  // The stall bound ("ms") ends a stall by closing the connection.
  auto bounded = roundtrip(sim.port(),
                           post("/api/chat/completions", chat_body("Hi"),
                                "x-sim-fault: stall-first;ms=200\r\n"),
                           5s);
  CHECK_FALSE(bounded.timed_out);
  CHECK(bounded.raw.empty());
  // Clients that gave up are not in flight any more.
  CHECK(wait_in_flight(sim.port(), 0) == 0);
}

TEST_CASE("sim sends malformed JSON and streams without [DONE]") {
  sim_process sim;
  auto bad =
      roundtrip(sim.port(), post("/api/chat/completions", chat_body("Hi"),
                                 "x-sim-fault: bad-json\r\n"));
  CHECK(bad.status == 200);
  maritaca::chat_completion x;
  CHECK(maritaca::wire::decode_completion(bad.body, x));
  auto bad_stream = roundtrip(sim.port(), post("/api/chat/completions",
                                               chat_body("Tell a story.", true),
                                               "x-sim-fault: bad-json\r\n"));
  CHECK(bad_stream.status == 200);
  auto s = decode_stream(bad_stream.body);
  CHECK(s.error.code == maritaca::errc::protocol_error);
  CHECK(s.chunks.size() > 10); // good chunks came first
  auto no_done = roundtrip(sim.port(), post("/api/chat/completions",
                                            chat_body("Tell a story.", true),
                                            "x-sim-fault: no-done\r\n"));
  CHECK(no_done.status == 200);
  CHECK_FALSE(no_done.timed_out);
  CHECK(no_done.error == 0);
  auto n = decode_stream(no_done.body);
  CHECK_FALSE(n.done);
  CHECK(n.error.code == maritaca::errc::protocol_error);
  CHECK(n.chunks.back().choices.at(0).finish_reason == "stop");
  auto error_mid = roundtrip(sim.port(), post("/api/chat/completions",
                                              chat_body("Tell a story.", true),
                                              "x-sim-fault: error-mid\r\n"));
  auto e = decode_stream(error_mid.body);
  CHECK(e.error);
  CHECK(e.error.message.find("simulated error") != std::string::npos);
}

TEST_CASE("sim applies a keyed fault only once") {
  sim_process sim;
  auto send = [&](const std::string& key) {
    return roundtrip(sim.port(),
                     post("/api/chat/completions", chat_body("Hi"),
                          "x-sim-fault-once: 503;key=" + key + "\r\n"))
        .status;
  };
  CHECK(send("a") == 503);
  CHECK(send("a") == 200);
  CHECK(send("a") == 200);
  CHECK(send("b") == 503);
  CHECK(send("b") == 200);
  auto twice = [&] {
    return roundtrip(sim.port(),
                     post("/api/chat/completions", chat_body("Hi"),
                          "x-sim-fault-once: 429;key=c;times=2\r\n"))
        .status;
  };
  CHECK(twice() == 429);
  CHECK(twice() == 429);
  CHECK(twice() == 200);
}

TEST_CASE("sim draws random faults with --fail-rate") {
  {
    sim_process sim{{"--fail-rate", "1", "--fail-kinds", "503"}};
    for (int i = 0; i < 5; ++i)
      CHECK(roundtrip(sim.port(), post("/api/chat/completions",
                                       chat_body("Hi " + std::to_string(i))))
                .status == 503);
  }
  sim_process sim{{"--fail-rate", "0.5", "--fail-kinds",
                   "429;retry-after=1,500", "--seed", "7"}};
  int ok = 0, failed = 0;
  for (int i = 0; i < 40; ++i) {
    auto r = roundtrip(sim.port(), post("/api/chat/completions",
                                        chat_body("Hi " + std::to_string(i))));
    if (r.status == 200)
      ++ok;
    else if (r.status == 429 || r.status == 500)
      ++failed;
  }
  CHECK(ok + failed == 40);
  CHECK(ok >= 5);
  CHECK(failed >= 5);
  // Models and stats never fail at random.
  CHECK(roundtrip(sim.port(), get("/api/models")).status == 200);
}

// -- stats
// ----------------------------------------------------------------------------

TEST_CASE("sim counts requests, connections and requests in flight") {
  sim_process sim;
  auto zero = read_stats(sim.port(), "/sim/stats/reset", true);
  CHECK(zero.requests == 0);
  CHECK(zero.in_flight == 0);
  for (int i = 0; i < 3; ++i)
    roundtrip(sim.port(), post("/api/chat/completions", chat_body("Hi")));
  roundtrip(sim.port(), get("/api/models"));
  roundtrip(sim.port(), post("/api/chat/completions", chat_body("Hi"),
                             "x-sim-fault: reset-before\r\n"));
  auto after = read_stats(sim.port());
  CHECK(after.requests == 4);
  CHECK(after.connections == 6); // 5 exchanges and this one
  CHECK(after.in_flight == 0);
  CHECK(after.max_in_flight == 1);
  // Four slow streams at once.
  std::vector<std::thread> clients;
  std::atomic<int> done{0};
  for (int i = 0; i < 4; ++i)
    clients.emplace_back([&] {
      auto r = roundtrip(sim.port(), post("/api/chat/completions",
                                          chat_body("How are you?", true),
                                          "x-sim-token-delay-ms: 60\r\n"));
      if (decode_stream(r.body).done) ++done;
    });
  std::this_thread::sleep_for(300ms);
  auto busy = read_stats(sim.port());
  for (auto& t : clients)
    t.join();
  CHECK(done == 4);
  CHECK(busy.in_flight == 4);
  CHECK(busy.max_in_flight == 4);
  auto idle = read_stats(sim.port());
  CHECK(idle.in_flight == 0);
  CHECK(idle.max_in_flight == 4);
  CHECK(idle.requests == 8);
  auto reset = read_stats(sim.port(), "/sim/stats/reset", true);
  CHECK(reset.requests == 0);
  CHECK(reset.connections == 0);
  CHECK(reset.max_in_flight == 0);
}

TEST_CASE("sim ends a request in flight when its client leaves") {
  sim_process sim;
  int fd = connect_to(sim.port());
  REQUIRE(fd >= 0);
  REQUIRE(send_all(fd, post("/api/chat/completions",
                            chat_body("Tell a story.", true),
                            "x-sim-token-delay-ms: 2000\r\n")));
  // Wait for the first event, then hang up in the middle of the stream.
  pollfd p{fd, POLLIN, 0};
  REQUIRE(poll(&p, 1, 5000) == 1);
  CHECK(read_stats(sim.port()).in_flight == 1);
  close(fd);
  CHECK(wait_in_flight(sim.port(), 0) == 0);
}

// -- TLS and process behaviour
// ------------------------------------------------------

TEST_CASE("sim serves HTTPS with --tls-cert and --tls-key") {
  auto cert = maritaca::test::make_test_cert("localhost");
  sim_process sim{{"--tls-cert", cert.cert_file, "--tls-key", cert.key_file}};
  CHECK(sim.base_url().rfind("https://127.0.0.1:", 0) == 0);
  char out[] = "/tmp/maritaca-sim-tls-XXXXXX";
  int fd = mkstemp(out);
  REQUIRE(fd >= 0);
  close(fd);
  auto cmd = "curl -sS --max-time 10 --cacert " + cert.cert_file +
             " -H 'Content-Type: application/json' -d '" +
             chat_body("What is 2+2?", true) + "' " + sim.base_url() +
             "/chat/completions -o " + out;
  CHECK(std::system(cmd.c_str()) == 0);
  std::ifstream in{out};
  std::string body{std::istreambuf_iterator<char>{in}, {}};
  std::remove(out);
  auto s = decode_stream(body);
  CHECK_FALSE(s.error);
  CHECK(s.done);
  CHECK(joined_content(s).find("4") != std::string::npos);
  // Plain HTTP to the TLS port gets no HTTP answer.
  auto plain = roundtrip(sim.port(), get("/api/models"), 3s);
  CHECK(plain.status == -1);
}

TEST_CASE("sim handles --help, bad flags and SIGTERM") {
  using maritaca::test::bin_path;
  using maritaca::test::child_process;
  {
    child_process help{{bin_path("maritaca-sim"), "--help"}, "usage:"};
    CHECK(help.first_line().rfind("usage: maritaca-sim", 0) == 0);
    CHECK(help.wait() == 0);
  }
  for (auto bad : {std::vector<std::string>{"--nope"},
                   std::vector<std::string>{"--listen", "nowhere"},
                   std::vector<std::string>{"--fail-rate", "2"},
                   std::vector<std::string>{"--fail-kinds", "explode"},
                   std::vector<std::string>{"--tls-cert", "x.pem"}}) {
    std::vector<std::string> argv{bin_path("maritaca-sim")};
    argv.insert(argv.end(), bad.begin(), bad.end());
    child_process p{argv};
    CHECK(p.wait() == 2);
  }
  sim_process sim;
  sim.process().kill(SIGTERM);
  CHECK(sim.process().wait() == 0);
}
