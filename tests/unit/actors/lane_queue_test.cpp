// In-memory tests of the dispatcher's queue: FIFO within a lane, lanes
// taking turns, removal by id and by condition.

#include "lane_queue.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

using maritaca::detail::lane_queue;

namespace {

struct item {
  uint64_t id;
  std::string who;
};

struct id_of {
  uint64_t operator()(const item& x) const noexcept { return x.id; }
};

using queue = lane_queue<item, id_of>;

std::vector<uint64_t> drain(queue& q) {
  std::vector<uint64_t> out;
  while (!q.empty())
    out.push_back(q.pop().id);
  return out;
}

} // namespace

TEST_CASE("items of one lane come first in, first out") {
  queue q;
  for (uint64_t i = 1; i <= 5; ++i)
    q.push(7, {i, "a"});
  CHECK(q.size() == 5);
  CHECK(q.front().id == 1);
  CHECK(drain(q) == std::vector<uint64_t>{1, 2, 3, 4, 5});
  CHECK(q.empty());
  CHECK(q.size() == 0);
}

TEST_CASE("lanes take turns: one ask is not starved behind a hundred") {
  queue q;
  for (uint64_t i = 1; i <= 100; ++i)
    q.push(1, {i, "a"});
  // B's one ask arrives after A's hundred.
  q.push(2, {1000, "b"});
  CHECK(q.pop().id == 1);
  CHECK(q.pop().id == 1000);
  CHECK(q.pop().id == 2);
  CHECK(q.size() == 98);
}

TEST_CASE("three lanes rotate and a lane that empties leaves the turns") {
  queue q;
  q.push(1, {11, "a"});
  q.push(1, {12, "a"});
  q.push(2, {21, "b"});
  q.push(3, {31, "c"});
  q.push(3, {32, "c"});
  CHECK(drain(q) == std::vector<uint64_t>{11, 21, 31, 12, 32});
}

TEST_CASE("remove takes one item out and keeps every order") {
  queue q;
  q.push(1, {11, "a"});
  q.push(1, {12, "a"});
  q.push(2, {21, "b"});
  CHECK_FALSE(q.remove(99));
  auto gone = q.remove(11);
  REQUIRE(gone);
  CHECK(gone->who == "a");
  CHECK(q.size() == 2);
  // Lane 2's only item: the lane leaves the turn order with it.
  CHECK(q.remove(21));
  CHECK(drain(q) == std::vector<uint64_t>{12});
}

TEST_CASE("remove_if answers and drops the items it takes") {
  queue q;
  for (uint64_t i = 1; i <= 6; ++i)
    q.push(i % 2, {i, i % 2 ? "odd" : "even"});
  std::vector<uint64_t> answered;
  q.remove_if([&](item& x) {
    if (x.id % 3 != 0) return false;
    answered.push_back(x.id);
    return true;
  });
  std::sort(answered.begin(), answered.end());
  CHECK(answered == std::vector<uint64_t>{3, 6});
  CHECK(q.size() == 4);
  CHECK_FALSE(q.remove(3));
  std::size_t seen = 0;
  q.for_each([&](item&) { ++seen; });
  CHECK(seen == 4);
  // Taking a whole lane out drops it from the turns.
  q.remove_if([](item& x) { return x.id % 2 == 0; });
  CHECK(drain(q) == std::vector<uint64_t>{1, 5});
}
