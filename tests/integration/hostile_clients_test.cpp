// Hostile clients against the servers we ship (maritaca-gateway and
// maritaca-sim, as child processes on loopback), over raw sockets: HTTP
// framing that never ends, request smuggling, HEAD, bodies sent without a
// token, floods of slow connections from one address, and the gateway's
// graceful shutdown. Memory bounds are read from /proc of the server.

#include "support/process.hpp"
#include "support/raw_http.hpp"

#include "maritaca/transport/sse_parser.hpp"

#include <catch2/catch.hpp>

#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace maritaca;
using namespace std::chrono_literals;
using test::bin_path;
using test::child_process;
using test::raw_conn;
using test::sim_process;

namespace {

using clock_type = std::chrono::steady_clock;

const std::string token = "gw-hostile-token-1234";

std::string bearer() {
  return "Authorization: Bearer " + token + "\r\n";
}

bool contains(const std::string& s, const std::string& what) {
  return s.find(what) != std::string::npos;
}

/// How often `what` occurs in `s`.
std::size_t count_of(const std::string& s, const std::string& what) {
  std::size_t n = 0;
  for (auto at = s.find(what); at != std::string::npos;
       at = s.find(what, at + what.size()))
    ++n;
  return n;
}

/// The port of a base URL "http://127.0.0.1:PORT[/api]".
int port_of(const std::string& url) {
  auto colon = url.rfind(':');
  return std::atoi(url.c_str() + colon + 1);
}

/// A gateway process; `log` (if given) receives its stderr.
struct gateway_process {
  gateway_process(const std::string& upstream, std::vector<std::string> args,
                  const std::string& log = {})
      : proc(make_argv(upstream, std::move(args), log), "http") {
    port = port_of(proc.first_line());
  }

  static std::vector<std::string> make_argv(const std::string& upstream,
                                            std::vector<std::string> args,
                                            const std::string& log) {
    std::string cmd = "exec '" + bin_path("maritaca-gateway") +
                      "' --listen 127.0.0.1:0 --upstream '" + upstream + "'";
    for (auto& a : args)
      cmd += " '" + a + "'";
    cmd += log.empty() ? " 2>/dev/null" : " 2>" + log;
    return {"/bin/sh", "-c", cmd};
  }

  child_process proc;
  int port = 0;
};

/// One server under attack: its port, process and a protected POST path.
struct target {
  std::string name;
  int port = 0;
  pid_t pid = -1;
  std::string post_path;
  std::string auth;
};

/// The simulator (key required) and a gateway in front of it (token
/// required), shared by the tests of this program.
struct fixture {
  fixture()
      : sim({"--api-key", "sk-hostile-upstream", "--token-delay-ms", "20"}),
        key_set(::setenv("MARITACA_API_KEY", "sk-hostile-upstream", 1)),
        gw(sim.base_url(), {"--token", token, "--max-retries", "0",
                            "--header-timeout", "3", "--body-timeout", "3"}) {
    // nop
  }

  std::vector<target> targets() {
    return {{"gateway", gw.port, gw.proc.pid(), "/ask", bearer()},
            {"sim", sim.port(), sim.process().pid(), "/v1/chat/completions",
             "Authorization: Bearer sk-hostile-upstream\r\n"}};
  }

  sim_process sim;
  /// The gateways started by these tests get the upstream key.
  int key_set;
  gateway_process gw;
};

fixture& env() {
  static fixture f;
  return f;
}

/// Sends `head`, then `filler` over and over (up to 64 MiB), as a peer
/// whose chunk line, extension or trailer never ends. Returns what the
/// server answered before closing.
std::string flood_after(int port, const std::string& head,
                        const std::string& start, char filler) {
  raw_conn c{port};
  std::string answer;
  if (!c.send(head) || !c.send(start)) return answer;
  std::string piece(64 * 1024, filler);
  for (int i = 0; i < 1024; ++i) {
    bool eof = false;
    answer += c.read_some(0ms, eof);
    if (eof || !answer.empty() || !c.send(piece)) break;
  }
  answer += c.read_until_close(5s);
  return answer;
}

} // namespace

// -- unbounded framing
// ------------------------------------------------------------

TEST_CASE("chunk lines, extensions and trailers that never end are refused") {
  for (auto& t : env().targets()) {
    INFO(t.name);
    auto head = "POST " + t.post_path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
                t.auth +
                "Content-Type: application/json\r\n"
                "Transfer-Encoding: chunked\r\n\r\n";
    auto before = test::memory_of(t.pid, "VmHWM");
    REQUIRE(before > 0);
    // Three connections at once, one per trick.
    std::vector<std::string> answers(3);
    std::vector<std::thread> attackers;
    attackers.emplace_back(
        [&] { answers[0] = flood_after(t.port, head, "1;", 'e'); });
    attackers.emplace_back(
        [&] { answers[1] = flood_after(t.port, head, "", '0'); });
    attackers.emplace_back([&] {
      answers[2] = flood_after(t.port, head, "1\r\nx\r\n0\r\nX-T: ", 'v');
    });
    for (auto& a : attackers)
      a.join();
    for (auto& a : answers) {
      INFO(a.substr(0, 200));
      // 400 and closed (or closed at once): never read on and on.
      CHECK((a.empty() || a.rfind("HTTP/1.1 400", 0) == 0));
    }
    auto growth = test::memory_of(t.pid, "VmHWM") - before;
    INFO("peak RSS grew by " << growth / 1024 << " KiB");
    CHECK(growth < (test::under_asan ? 32 : 8) * 1024 * 1024);
    // And the server goes on serving.
    std::string body;
    CHECK(test::http_get(t.port, t.name == "sim" ? "/sim/stats" : "/healthz",
                         body) == 200);
  }
}

TEST_CASE("a request head of many small fields meets the head limit") {
  for (auto& t : env().targets()) {
    INFO(t.name);
    std::string head = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    raw_conn c{t.port};
    c.send(head);
    // 200,000 fields in pieces: the parser consumes each as it comes.
    std::string answer;
    for (int i = 0; i < 200 && answer.empty(); ++i) {
      std::string piece;
      for (int j = 0; j < 1000; ++j)
        piece += "X-F" + std::to_string(j) + ": v\r\n";
      if (!c.send(piece)) break;
      bool eof = false;
      answer += c.read_some(1ms, eof);
      if (eof) break;
    }
    answer += c.read_until_close(5s);
    CHECK(answer.rfind("HTTP/1.1 431", 0) == 0);
  }
}

// -- request smuggling
// ------------------------------------------------------------

TEST_CASE("Transfer-Encoding other than a lone chunked is 400 and close") {
  for (auto& t : env().targets()) {
    INFO(t.name);
    auto request = [&](const std::string& version, const std::string& fields) {
      // A second request hides in the body: it must never be served.
      return "POST " + t.post_path + " " + version + "\r\nHost: 127.0.0.1\r\n" +
             t.auth + fields +
             "\r\n5\r\nhello\r\n0\r\n\r\n"
             "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    };
    for (auto& [version, fields] :
         std::vector<std::pair<std::string, std::string>>{
             {"HTTP/1.1",
              "Transfer-Encoding: xchunked\r\nContent-Length: 5\r\n"},
             {"HTTP/1.1",
              "Transfer-Encoding: chunked, identity\r\nContent-Length: 5\r\n"},
             {"HTTP/1.1",
              "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"},
             {"HTTP/1.1",
              "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"},
             {"HTTP/1.1", "Transfer-Encoding: gzip, chunked\r\n"},
             {"HTTP/1.0", "Transfer-Encoding: chunked\r\n"},
         }) {
      INFO(version << " " << fields);
      raw_conn c{t.port};
      c.send(request(version, fields));
      auto all = c.read_until_close(5s);
      INFO(all);
      // One answer (each carries a Server field): 400.
      CHECK(all.rfind("HTTP/1.", 0) == 0);
      CHECK(all.compare(9, 3, "400") == 0);
      CHECK(count_of(all, "\r\nServer: maritaca-") == 1);
    }
  }
}

TEST_CASE("HEAD answers carry no body and keep the connection in step") {
  auto& e = env();
  struct probe {
    int port;
    std::string target;
    std::string auth;
  };
  for (auto& p : {probe{e.gw.port, "/healthz", ""},
                  probe{e.gw.port, "/v1/models", bearer()},
                  probe{e.sim.port(), "/v1/models",
                        "Authorization: Bearer sk-hostile-upstream\r\n"}}) {
    INFO(p.target);
    raw_conn c{p.port};
    // HEAD, then GET on the same connection: a body after the HEAD answer
    // would be read as the start of the GET answer.
    c.send("HEAD " + p.target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + p.auth +
           "\r\nGET " + p.target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + p.auth +
           "Connection: close\r\n\r\n");
    auto all = c.read_until_close(10s);
    INFO(all);
    auto first_end = all.find("\r\n\r\n");
    REQUIRE(first_end != std::string::npos);
    CHECK(all.rfind("HTTP/1.1 200", 0) == 0);
    // Right after the HEAD answer's head comes the GET answer.
    CHECK(all.compare(first_end + 4, 12, "HTTP/1.1 200") == 0);
    test::raw_result head;
    test::parse_response(all.substr(0, first_end + 4), head, true);
    test::raw_result get;
    test::parse_response(all.substr(first_end + 4), get);
    CHECK(get.complete);
    CHECK_FALSE(get.body.empty());
    // The HEAD answer announces the GET answer's length.
    if (!head.header("content-length").empty())
      CHECK(std::stoul(head.header("content-length")) == get.body.size());
  }
  SECTION("HEAD on a route without GET is 405 without a body") {
    raw_conn c{e.gw.port};
    c.send("HEAD /ask HTTP/1.1\r\nHost: 127.0.0.1\r\n" + bearer() +
           "\r\nGET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           "Connection: close\r\n\r\n");
    auto all = c.read_until_close(10s);
    auto first_end = all.find("\r\n\r\n");
    REQUIRE(first_end != std::string::npos);
    CHECK(all.rfind("HTTP/1.1 405", 0) == 0);
    CHECK(all.compare(first_end + 4, 12, "HTTP/1.1 200") == 0);
  }
}

TEST_CASE("a request without a valid token gets 401 before its body") {
  for (auto& t : env().targets()) {
    INFO(t.name);
    // A large body is announced and awaited with 100-continue: without a
    // token neither the invitation nor a read of the body comes.
    raw_conn c{t.port};
    c.send("POST " + t.post_path +
           " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           "Content-Length: 1000000\r\nExpect: 100-continue\r\n\r\n");
    auto all = c.read_until_close(5s);
    CHECK(all.rfind("HTTP/1.1 401", 0) == 0);
    CHECK_FALSE(contains(all, "100 Continue"));
    // With the token, the body is invited.
    raw_conn ok{t.port};
    ok.send("POST " + t.post_path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
            t.auth +
            "Content-Type: application/json\r\nContent-Length: 10\r\n"
            "Expect: 100-continue\r\n\r\n");
    bool eof = false;
    auto first = ok.read_some(5s, eof);
    CHECK(first.rfind("HTTP/1.1 100 Continue", 0) == 0);
  }
}

// -- slow peers
// -------------------------------------------------------------------

TEST_CASE("slow connections from a few addresses do not starve others") {
  // Few slots, a cap per address, and a long head timeout: only the caps
  // and shedding can keep the gateway serving.
  gateway_process gw{env().sim.base_url(),
                     {"--max-connections", "64", "--max-connections-per-client",
                      "16", "--header-timeout", "30", "--threads", "2"}};
  std::atomic<bool> stop{false};
  std::atomic<int> opened{0};
  // 1,100 slow connections from 127.0.0.2..127.0.0.9 that come back when
  // closed: each sends the start of a head and then nothing.
  std::vector<std::thread> attackers;
  std::vector<std::atomic<int>> held(8);
  for (int a = 0; a < 8; ++a)
    attackers.emplace_back([&, a] {
      auto source = "127.0.0." + std::to_string(a + 2);
      std::vector<std::unique_ptr<raw_conn>> conns;
      while (!stop) {
        for (auto i = conns.begin(); i != conns.end();) {
          bool eof = false;
          (*i)->read_some(0ms, eof);
          i = eof ? conns.erase(i) : i + 1;
        }
        held[a] = static_cast<int>(conns.size());
        if (opened < 1100) {
          try {
            auto c = std::make_unique<raw_conn>(gw.port, source);
            c->send("GET /healthz HTTP/1.1\r\nHo");
            conns.push_back(std::move(c));
            ++opened;
            continue;
          } catch (const std::exception&) {
            // refused: try again below
          }
        }
        std::this_thread::sleep_for(2ms);
      }
    });
  // Meanwhile, a client from 127.0.0.1 asks 40 times.
  std::this_thread::sleep_for(300ms);
  int served = 0;
  int most_held = 0;
  auto note_held = [&] {
    for (auto& h : held)
      most_held = std::max(most_held, h.load());
  };
  for (int i = 0; i < 40; ++i) {
    auto r = test::roundtrip(
        gw.port, test::make_request("GET", "/healthz", bearer()), 5s);
    if (r.status == 200 && r.complete) ++served;
    note_held();
  }
  // Let the flood run its course (bounded).
  for (int i = 0; i < 400 && opened < 1100; ++i) {
    std::this_thread::sleep_for(50ms);
    note_held();
  }
  stop = true;
  for (auto& a : attackers)
    a.join();
  CHECK(opened >= 1100);
  CHECK(served == 40);
  // No address holds more than its cap of 16 (plus the few the attacker
  // has not seen closed yet).
  CHECK(most_held <= 20);
}

// -- graceful shutdown
// ------------------------------------------------------------

TEST_CASE("SIGTERM drains, then ends streams with an error event") {
  auto log = "/tmp/maritaca-hostile-drain-" + std::to_string(::getpid());
  sim_process sim{{"--token-delay-ms", "50"}};
  gateway_process gw{sim.base_url(),
                     {"--max-concurrency", "2", "--drain-timeout", "1",
                      "--forward-header", "x-sim-chunks", "--forward-header",
                      "x-sim-latency-ms", "--access-log"},
                     log};
  // Two slots. A: a long stream (400 words, 20 s); D: an ask that takes
  // 300 ms, done within the drain period; B: an ask that takes 5 s, running
  // when the drain period ends; C: queued behind them.
  raw_conn a{gw.port};
  a.send(test::make_request(
      "POST", "/v1/chat/completions", "x-sim-chunks: 400\r\n",
      R"({"model":"sabia-4","stream":true,"messages":[{"role":"user","content":"Oi"}]})"));
  std::this_thread::sleep_for(200ms);
  raw_conn d{gw.port};
  d.send(test::make_request("POST", "/ask", "x-sim-latency-ms: 300\r\n",
                            R"({"text":"What is 2+2?"})"));
  std::this_thread::sleep_for(50ms);
  raw_conn b{gw.port};
  b.send(test::make_request("POST", "/ask", "x-sim-latency-ms: 5000\r\n",
                            R"({"text":"Tell a story."})"));
  std::this_thread::sleep_for(50ms);
  raw_conn c{gw.port};
  c.send(test::make_request("POST", "/ask", "x-sim-latency-ms: 100\r\n",
                            R"({"text":"Oi"})"));
  std::this_thread::sleep_for(100ms);
  gw.proc.kill(SIGTERM);
  std::string out_a, out_b, out_c, out_d;
  std::thread ta{[&] { out_a = a.read_until_close(15s); }};
  std::thread tb{[&] { out_b = b.read_until_close(15s); }};
  std::thread tc{[&] { out_c = c.read_until_close(15s); }};
  out_d = d.read_until_close(15s);
  ta.join();
  tb.join();
  tc.join();
  auto exit_code = gw.proc.wait();
  CHECK(exit_code == 0);
  // D finished within the drain period.
  test::raw_result rd;
  test::parse_response(out_d, rd);
  CHECK(rd.status == 200);
  CHECK(contains(rd.body, "4"));
  // A: chunks, then an error event, then the end of the body.
  test::raw_result ra;
  test::parse_response(out_a, ra);
  CHECK(ra.status == 200);
  CHECK(ra.complete);
  sse::parser p;
  std::vector<sse::event> events;
  p.feed(ra.body, events);
  REQUIRE(events.size() >= 2);
  CHECK(contains(events.front().data, "chat.completion.chunk"));
  CHECK(contains(events.back().data, "shutting_down"));
  // B (running) and C (queued): 503.
  for (auto* out : {&out_b, &out_c}) {
    test::raw_result r;
    test::parse_response(*out, r);
    CHECK(r.status == 503);
    CHECK(contains(r.body, "shutting_down"));
  }
  // The log says what happened.
  std::ifstream in{log};
  std::stringstream ss;
  ss << in.rdbuf();
  auto text = ss.str();
  INFO(text);
  CHECK(contains(text, "shutting down"));
  CHECK(contains(text, "ended by error event shutting_down"));
  CHECK(contains(text, "/ask 503"));
  std::remove(log.c_str());
}
