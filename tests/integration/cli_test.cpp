// The `maritaca` CLI as a user meets it: usage errors that start nothing,
// --stream --json, --timeout bounding the whole ask, batch's order and
// summary, and the chat REPL's commands, which never reach the model. The
// CLI runs as a child process against maritaca-sim (or its bundled one).

#include "support/process.hpp"
#include "support/raw_http.hpp"

#include "maritaca/transport/wire.hpp"

#include <catch2/catch.hpp>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

using namespace maritaca;
using namespace std::chrono_literals;
using test::run_program;

namespace {

bool contains(const std::string& s, const std::string& what) {
  return s.find(what) != std::string::npos;
}

/// The lines of `s`.
std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos < s.size()) {
    auto eol = s.find('\n', pos);
    if (eol == std::string::npos) eol = s.size();
    out.push_back(s.substr(pos, eol - pos));
    pos = eol + 1;
  }
  return out;
}

} // namespace

TEST_CASE("usage errors exit 2 and start nothing") {
  struct bad {
    std::vector<std::string> args;
    std::string says;
  };
  for (auto& b : std::vector<bad>{
           {{"ask"}, "ask expects one PROMPT"},
           {{"ask", "two", "prompts"}, "not also 'prompts'"},
           {{"models", "extra"}, "not also 'extra'"},
           {{"chat", "extra"}, "not also 'extra'"},
           {{"batch"}, "batch expects one FILE"},
           {{"ask", "--base-url", "notaurl", "Oi"}, "invalid URL 'notaurl'"},
           {{"ask", "--base-url", "http://u:pw-SECRET@h/api", "Oi"},
            "user info"},
           {{"batch", "--stream", "-"}, "--stream applies to ask only"},
           {{"frobnicate"}, "unknown command 'frobnicate'"},
       }) {
    auto r = run_program("maritaca", b.args);
    INFO(r.err);
    CHECK(r.status == 2);
    CHECK(contains(r.err, b.says));
    // Nothing started: no simulator, no request.
    CHECK_FALSE(contains(r.err, "bundled simulator"));
    CHECK_FALSE(contains(r.err, "SECRET"));
  }
}

TEST_CASE("ask --stream --json prints one chunk per JSON line") {
  test::sim_process sim;
  auto r = run_program("maritaca", {"ask", "--stream", "--json", "--base-url",
                                    sim.base_url(), "What is 2+2?"});
  INFO(r.err);
  REQUIRE(r.status == 0);
  std::string text;
  std::size_t n = 0;
  for (auto& line : lines_of(r.out)) {
    if (line.empty()) continue;
    ++n;
    completion_chunk c;
    INFO(line);
    REQUIRE_FALSE(wire::decode_chunk(line, c));
    for (auto& choice : c.choices)
      text += choice.content;
  }
  CHECK(n > 3);
  CHECK(text == "2 + 2 = 4.");
}

TEST_CASE("--timeout bounds the whole ask, retries included") {
  // A server that never answers: each attempt would wait for its first
  // byte, and retries would add up.
  test::scripted_server srv{[](int, const std::atomic<bool>& stopping) {
    while (!stopping)
      std::this_thread::sleep_for(20ms);
  }};
  auto r =
      run_program("maritaca", {"ask", "--base-url", srv.base_url(), "--timeout",
                               "1", "--max-retries", "5", "Oi"});
  INFO(r.err);
  CHECK(r.status == 1);
  CHECK(contains(r.err, "timeout"));
  CHECK(r.took < 5s);
}

TEST_CASE("batch answers in input order and ends with a summary") {
  test::sim_process sim;
  auto r = run_program("maritaca", {"batch", "--base-url", sim.base_url(), "-"},
                       "What is 2+2?\nWhat is the capital of Brazil?\n"
                       "What is 1+1?\n");
  INFO(r.err);
  CHECK(r.status == 0);
  auto lines = lines_of(r.out);
  REQUIRE(lines.size() == 3);
  CHECK(contains(lines[0], "4"));
  CHECK(contains(lines[1], "Bras"));
  CHECK(contains(lines[2], "2"));
  CHECK(contains(r.err, "3 prompts: 3 answered, 0 failed"));
  // stderr is no terminal here: no progress bar.
  CHECK_FALSE(contains(r.err, "\r"));
}

TEST_CASE("chat: commands never reach the model") {
  test::sim_process sim;
  auto file = "/tmp/maritaca-cli-chat-" + std::to_string(::getpid()) + ".json";
  auto r = run_program("maritaca", {"chat", "--base-url", sim.base_url()},
                       "My name is Ana.\n"
                       "/bogus\n"
                       "/model sabiazinho-4\n"
                       "/save " +
                           file +
                           "\n"
                           "/clear\n"
                           "What is my name?\n"
                           "/load " +
                           file +
                           "\n"
                           "What is my name?\n"
                           "/history\n"
                           "/exit\n"
                           "never sent\n");
  INFO(r.out << r.err);
  CHECK(r.status == 0);
  CHECK(contains(r.out, "unknown command '/bogus'"));
  CHECK(contains(r.out, "asking sabiazinho-4"));
  CHECK(contains(r.out, "saved 2 messages to " + file));
  CHECK(contains(r.out, "loaded 2 messages"));
  // After /clear the name is gone; after /load it is back.
  auto first = r.out.find("I don't know your name yet.");
  auto second = r.out.find("Your name is Ana.");
  CHECK(first != std::string::npos);
  CHECK(second != std::string::npos);
  CHECK(first < second);
  // Only the three questions reached the simulator.
  std::string stats;
  test::http_get(sim.port(), "/sim/stats", stats);
  CHECK(contains(stats, "\"requests\":3"));
  std::remove(file.c_str());
}
