/// @file
/// The gateway's table of open client connections.

#include "connection_table.hpp"

namespace maritaca::gateway::detail {

table_entry::~table_entry() = default;

connection_table::connection_table(std::size_t max_total,
                                   std::size_t max_per_client)
    : max_total_(max_total), max_per_client_(max_per_client) {
  // nop
}

bool connection_table::admit(const std::string& client,
                             std::weak_ptr<table_entry> entry, position& pos) {
  // Victims close outside the lock: shed() posts to their strands. And
  // every entry the search locked is released outside it too: the last
  // reference to a connection runs its destructor, which calls `remove`.
  std::vector<std::shared_ptr<table_entry>> victims;
  std::vector<std::shared_ptr<table_entry>> seen;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (max_per_client_ > 0) {
      auto i = per_client_.find(client);
      if (i != per_client_.end() && i->second >= max_per_client_) {
        auto victim = pick_victim_locked(&client, seen);
        if (!victim) return false;
        victims.push_back(std::move(victim));
      }
    }
    if (open_ >= max_total_) {
      auto victim = pick_victim_locked(nullptr, seen);
      if (!victim) return false;
      victims.push_back(std::move(victim));
    }
    slots_.push_back(table_slot{client, std::move(entry), false});
    pos = std::prev(slots_.end());
    ++per_client_[client];
    ++open_;
  }
  for (auto& v : victims)
    v->shed();
  return true;
}

void connection_table::remove(position pos) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (!pos->shed) {
    auto i = per_client_.find(pos->client);
    if (i != per_client_.end() && --i->second == 0) per_client_.erase(i);
    --open_;
  }
  slots_.erase(pos);
}

std::vector<std::shared_ptr<table_entry>> connection_table::entries() const {
  std::vector<std::shared_ptr<table_entry>> out;
  std::lock_guard<std::mutex> guard{mtx_};
  out.reserve(slots_.size());
  for (auto& s : slots_)
    if (auto e = s.entry.lock()) out.push_back(std::move(e));
  return out;
}

std::size_t connection_table::open() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return open_;
}

std::size_t connection_table::shed_count() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return shed_;
}

std::shared_ptr<table_entry> connection_table::pick_victim_locked(
    const std::string* client,
    std::vector<std::shared_ptr<table_entry>>& seen) {
  // Without a client: shed from the address that holds the most.
  std::string busiest;
  if (!client) {
    std::size_t most = 0;
    for (auto& [addr, n] : per_client_)
      if (n > most) {
        most = n;
        busiest = addr;
      }
  }
  table_slot* fallback = nullptr;
  std::shared_ptr<table_entry> fallback_entry;
  for (auto& s : slots_) {
    if (s.shed) continue;
    if (client && s.client != *client) continue;
    auto e = s.entry.lock();
    if (!e) continue;
    if (!e->sheddable()) {
      seen.push_back(std::move(e));
      continue;
    }
    if (client || s.client == busiest) {
      mark_shed_locked(s);
      return e;
    }
    // The oldest sheddable one of any address, if the busiest has none.
    if (!fallback) {
      fallback = &s;
      fallback_entry = std::move(e);
    } else {
      seen.push_back(std::move(e));
    }
  }
  if (fallback) mark_shed_locked(*fallback);
  return fallback_entry;
}

void connection_table::mark_shed_locked(table_slot& slot) {
  slot.shed = true;
  auto i = per_client_.find(slot.client);
  if (i != per_client_.end() && --i->second == 0) per_client_.erase(i);
  --open_;
  ++shed_;
}

} // namespace maritaca::gateway::detail
