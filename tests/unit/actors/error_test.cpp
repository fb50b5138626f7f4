// In-memory tests of the maritaca error category.

#include "maritaca/error.hpp"

#include <caf/sec.hpp>
#include <catch2/catch.hpp>

using namespace maritaca;

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
