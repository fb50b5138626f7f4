/// Tests of maritaca/transport/poll_backoff.hpp: when an idle thread polls.

#include "maritaca/transport/poll_backoff.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <string>

using maritaca::transport::poll_backoff;

namespace {

/// Runs `n` rounds of "out of work": every poll reports `outcome`. Returns
/// one character per round: 'p' polled, '-' blocked at once.
std::string rounds(poll_backoff& b, int n, bool outcome) {
  std::string out;
  for (int i = 0; i < n; ++i) {
    if (b.should_poll()) {
      out += 'p';
      if (outcome)
        b.found();
      else
        b.missed();
    } else {
      out += '-';
    }
  }
  return out;
}

} // namespace

TEST_CASE("a thread whose polls find work polls every time") {
  poll_backoff b;
  CHECK(rounds(b, 10, true) == "pppppppppp");
}

TEST_CASE("misses in a row double the rounds without a poll") {
  poll_backoff b;
  CHECK(rounds(b, 16, false) == "p-p--p----p-----");
}

TEST_CASE("the rounds without a poll stop growing at max_skip") {
  poll_backoff b;
  // 7 polls, each followed by 1, 2, 4, ... 64 rounds without a poll.
  auto warm = rounds(b, 7 + 1 + 2 + 4 + 8 + 16 + 32 + 64, false);
  CHECK(std::count(warm.begin(), warm.end(), 'p') == 7);
  CHECK(warm.back() == '-');
  // From now on, one poll every max_skip + 1 rounds.
  auto steady = rounds(b, 3 * (poll_backoff::max_skip + 1), false);
  std::string period(poll_backoff::max_skip, '-');
  CHECK(steady == "p" + period + "p" + period + "p" + period);
}

TEST_CASE("one poll that finds work ends the back-off") {
  poll_backoff b;
  CHECK(rounds(b, 6, false) == "p-p--p");
  // The latest miss left 4 rounds without a poll, found or not.
  CHECK(rounds(b, 4, true) == "----");
  CHECK(rounds(b, 1, true) == "p");
  CHECK(rounds(b, 3, true) == "ppp");
  CHECK(rounds(b, 4, false) == "p-p-");
}

TEST_CASE("a poll cut short without an outcome leaves the back-off as it was") {
  poll_backoff b;
  CHECK(rounds(b, 3, false) == "p-p");
  // Two rounds without a poll are pending; a poll with no report adds none.
  CHECK(rounds(b, 2, false) == "--");
  CHECK(b.should_poll());
  CHECK(b.should_poll());
  // The back-off still stands at 2: the next miss makes it 4.
  CHECK(rounds(b, 6, false) == "p----p");
}
