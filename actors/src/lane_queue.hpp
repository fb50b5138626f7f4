#pragma once

// The dispatcher's queue: asks wait in lanes, first in first out within a
// lane, and the lanes with work take turns (round robin), so one lane with
// a hundred asks does not starve another with one. A plain data structure
// (no actors), tested in memory (tests/unit/actors/lane_queue_test.cpp).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <unordered_map>
#include <utility>

namespace maritaca::detail {

/// Items of type `T` in lanes; `IdOf{}(item)` is an item's unique id (for
/// `remove`).
template <class T, class IdOf>
class lane_queue {
public:
  /// Whether nothing waits.
  bool empty() const noexcept { return turns_.empty(); }

  /// How many items wait.
  std::size_t size() const noexcept { return lane_of_.size(); }

  /// Appends `x` to `lane`; a lane that was empty joins the end of the turn
  /// order.
  void push(uint64_t lane, T x) {
    auto& q = lanes_[lane];
    if (q.empty()) turns_.push_back(lane);
    lane_of_.emplace(IdOf{}(x), lane);
    q.push_back(std::move(x));
  }

  /// The next item: the oldest of the lane whose turn it is. Requires
  /// `!empty()`.
  T& front() { return lanes_.find(turns_.front())->second.front(); }

  /// Takes the next item; its lane goes to the end of the turn order (or
  /// out of it, when that was its last item). Requires `!empty()`.
  T pop() {
    auto lane = turns_.front();
    turns_.pop_front();
    auto i = lanes_.find(lane);
    auto x = std::move(i->second.front());
    i->second.pop_front();
    if (i->second.empty())
      lanes_.erase(i);
    else
      turns_.push_back(lane);
    lane_of_.erase(IdOf{}(x));
    return x;
  }

  /// Takes the item with id `id` out of its lane, keeping every other order.
  std::optional<T> remove(uint64_t id) {
    auto i = lane_of_.find(id);
    if (i == lane_of_.end()) return std::nullopt;
    auto lane = i->second;
    lane_of_.erase(i);
    auto& q = lanes_[lane];
    auto j = std::find_if(q.begin(), q.end(),
                          [&](const T& x) { return IdOf{}(x) == id; });
    std::optional<T> result{std::move(*j)};
    q.erase(j);
    if (q.empty()) drop_lane(lane);
    return result;
  }

  /// Takes every item for which `pred(item)` holds out (`pred` may use the
  /// item before it goes, e.g. to answer it).
  template <class Pred>
  void remove_if(Pred pred) {
    for (auto i = lanes_.begin(); i != lanes_.end();) {
      auto& q = i->second;
      auto gone = [&](T& x) {
        if (!pred(x)) return false;
        lane_of_.erase(IdOf{}(x));
        return true;
      };
      q.erase(std::remove_if(q.begin(), q.end(), gone), q.end());
      if (q.empty()) {
        turns_.erase(std::find(turns_.begin(), turns_.end(), i->first));
        i = lanes_.erase(i);
      } else {
        ++i;
      }
    }
  }

  /// Calls `f` for every waiting item.
  template <class F>
  void for_each(F f) {
    for (auto& [lane, q] : lanes_)
      for (auto& x : q)
        f(x);
  }

private:
  void drop_lane(uint64_t lane) {
    lanes_.erase(lane);
    turns_.erase(std::find(turns_.begin(), turns_.end(), lane));
  }

  std::unordered_map<uint64_t, std::deque<T>> lanes_;
  /// The lanes with items, in the order they take turns.
  std::deque<uint64_t> turns_;
  /// Waiting item id -> its lane.
  std::unordered_map<uint64_t, uint64_t> lane_of_;
};

} // namespace maritaca::detail
