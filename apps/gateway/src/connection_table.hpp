#pragma once

/// @file
/// The gateway's table of open client connections: how many each client
/// address holds, and which connection goes when a cap is reached. Plain
/// C++ (no Beast): the server's connections implement `table_entry`.

#include <cstddef>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace maritaca::gateway::detail {

/// What the table needs of a connection. Both calls are thread-safe.
class table_entry {
public:
  virtual ~table_entry();

  /// Whether the connection is only waiting for a request head (none
  /// arrived yet, or it idles between keep-alive requests): closing it
  /// loses no work.
  virtual bool sheddable() const noexcept = 0;

  /// Closes the connection to make room for another one.
  virtual void shed() = 0;
};

/// One admitted connection.
struct table_slot {
  std::string client;
  std::weak_ptr<table_entry> entry;
  /// Shed: no longer counted, not picked again.
  bool shed = false;
};

/// Counts connections in all and per client address, and decides whom a
/// new connection displaces. When a cap is reached (`max_total`, or
/// `max_per_client` for the new connection's address), a sheddable
/// connection goes first: of the new one's own address for the
/// per-client cap, else of the address holding the most connections; the
/// oldest of them. With none to shed, the new connection is refused. So a
/// flood of slow connections from a few addresses cannot keep clients of
/// other addresses out.
class connection_table {
public:
  /// Where an entry sits, for `remove`.
  using position = std::list<table_slot>::iterator;

  /// A table with these caps (`max_per_client` 0: no per-client cap).
  connection_table(std::size_t max_total, std::size_t max_per_client);

  /// Admits `entry` from `client`, shedding an older connection when a cap
  /// requires it. Returns false when the entry is refused (the caller
  /// closes it); otherwise `pos` is where it sits.
  bool admit(const std::string& client, std::weak_ptr<table_entry> entry,
             position& pos);

  /// Forgets an admitted entry (its connection is gone).
  void remove(position pos);

  /// Returns the admitted entries still alive, oldest first.
  std::vector<std::shared_ptr<table_entry>> entries() const;

  /// Returns the number of admitted connections not shed yet.
  std::size_t open() const;

  /// Returns the number of connections shed so far.
  std::size_t shed_count() const;

private:
  /// Picks a sheddable entry of `client`, or of the address holding the
  /// most connections when `client` is null. Every other entry it locks
  /// goes to `seen`, for the caller to release after unlocking. Requires
  /// `mtx_`.
  std::shared_ptr<table_entry>
  pick_victim_locked(const std::string* client,
                     std::vector<std::shared_ptr<table_entry>>& seen);

  /// Marks `slot` shed and takes it out of the counts. Requires `mtx_`.
  void mark_shed_locked(table_slot& slot);

  std::size_t max_total_;
  std::size_t max_per_client_;
  mutable std::mutex mtx_;
  std::list<table_slot> slots_;
  std::unordered_map<std::string, std::size_t> per_client_;
  std::size_t open_ = 0;
  std::size_t shed_ = 0;
};

} // namespace maritaca::gateway::detail
