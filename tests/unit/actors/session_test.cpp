// In-memory tests of the session helpers: token estimates, trimming,
// saving and loading a history.

#include "maritaca/session.hpp"

#include <catch2/catch.hpp>

using namespace maritaca;

TEST_CASE("trim_history drops the oldest turns, keeps system and last") {
  std::vector<chat_message> h{chat_message::system("sys")};
  for (int i = 0; i < 10; ++i) {
    h.push_back(chat_message::user(std::string(400, 'u')));
    h.push_back(chat_message::assistant(std::string(400, 'a')));
  }
  h.push_back(chat_message::user("last question"));
  trim_history(h, 350);
  REQUIRE(h.size() >= 2);
  CHECK(h.front().role == "system");
  CHECK(h.back().text() == "last question");
  int64_t total = 0;
  for (auto& m : h)
    total += estimate_tokens(m);
  CHECK(total <= 350);
  // A budget of 0 keeps everything.
  std::vector<chat_message> all(5, chat_message::user("x"));
  trim_history(all, 0);
  CHECK(all.size() == 5);
}

TEST_CASE("trim_history never leaves a tool answer first") {
  std::vector<chat_message> h;
  chat_message call = chat_message::assistant("");
  call.tool_calls.push_back({"c1", "function", "f", "{}"});
  h.push_back(chat_message::user(std::string(400, 'u')));
  h.push_back(call);
  h.push_back(chat_message::tool("c1", std::string(40, 't')));
  h.push_back(chat_message::user("next"));
  trim_history(h, 30);
  REQUIRE_FALSE(h.empty());
  CHECK(h.front().role != "tool");
  CHECK(h.back().text() == "next");
}

TEST_CASE("save_history and load_history round-trip") {
  std::vector<chat_message> h{chat_message::system("Você é útil."),
                              chat_message::user("Olá! 😀"),
                              chat_message::assistant("Oi, tudo bem?")};
  auto json = save_history("sabia-4", h);
  std::vector<chat_message> back;
  REQUIRE_FALSE(load_history(json, back));
  CHECK(back == h);
  auto err = load_history("[1,2", back);
  CHECK(err.code == errc::protocol_error);
}
