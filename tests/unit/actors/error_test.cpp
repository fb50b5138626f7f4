// In-memory tests of the maritaca error category.

#include "maritaca/error.hpp"
#include "maritaca/messages.hpp"

#include <caf/deep_to_string.hpp>
#include <caf/make_message.hpp>
#include <caf/sec.hpp>
#include <catch2/catch.hpp>

using namespace maritaca;

namespace {

bool contains(const std::string& s, const std::string& what) {
  return s.find(what) != std::string::npos;
}

} // namespace

TEST_CASE("make_error keeps the whole failure") {
  failure f;
  f.code = errc::rate_limited;
  f.status = 429;
  f.message = "slow down";
  f.retry_after_ms = 2000;
  auto err = make_error(f);
  CHECK(is_maritaca_error(err));
  CHECK(err.category() == error_category);
  CHECK(code_of(err) == errc::rate_limited);
  CHECK(to_failure(err) == f);
  auto text = describe(err);
  CHECK(text.find("rate_limited") != std::string::npos);
  CHECK(text.find("429") != std::string::npos);
  CHECK(text.find("2000 ms") != std::string::npos);
}

TEST_CASE("CAF's own errors map to the closest code") {
  CHECK(code_of(caf::error{}) == errc::none);
  CHECK(code_of(caf::make_error(caf::sec::request_timeout)) == errc::timeout);
  CHECK(code_of(caf::make_error(caf::sec::request_receiver_down)) ==
        errc::cancelled);
  auto f = to_failure(caf::make_error(caf::sec::request_timeout));
  CHECK(f.code == errc::timeout);
  CHECK(f.which == deadline::total);
}

TEST_CASE("timeouts name their deadline") {
  auto err = make_error(make_timeout(deadline::idle, "no bytes"));
  CHECK(to_failure(err).which == deadline::idle);
  CHECK(describe(err).find("idle") != std::string::npos);
}

TEST_CASE("CAF's own printing shows our errors and messages") {
  auto f = make_failure(errc::rate_limited, "slow down");
  f.status = 429;
  f.retry_after_ms = 250;
  auto text = caf::to_string(make_error(f));
  INFO(text);
  CHECK_FALSE(contains(text, "<unprintable>"));
  CHECK(contains(text, "rate_limited"));
  CHECK(contains(text, "slow down"));
  ai_message m;
  m.request_id = 7;
  m.model = "sabia-4";
  m.message = chat_message::assistant("2 + 2 = 4.");
  m.finish_reason = "stop";
  auto printed = caf::deep_to_string(caf::make_message(m));
  INFO(printed);
  CHECK(contains(printed, "2 + 2 = 4."));
  CHECK(contains(printed, "sabia-4"));
  chat_chunk c;
  c.request_id = 7;
  c.content = "word ";
  CHECK(contains(caf::deep_to_string(caf::make_message(c)), "word "));
  // An ask shows no header value: extra headers may hold credentials.
  ask x;
  x.options.headers.push_back({"Authorization", "Bearer sk-SECRET"});
  x.body.messages.push_back(chat_message::user("Oi"));
  auto shown = caf::deep_to_string(caf::make_message(x));
  INFO(shown);
  CHECK_FALSE(contains(shown, "SECRET"));
  CHECK(contains(shown, "1 message"));
}
