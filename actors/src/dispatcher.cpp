#include "maritaca/dispatcher.hpp"

#include "maritaca/error.hpp"
#include "maritaca/request.hpp"

#include <caf/actor_system.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <algorithm>
#include <chrono>
#include <deque>
#include <unordered_map>

namespace maritaca {

namespace {

using clock_type = std::chrono::steady_clock;

/// A token bucket refilled continuously: `capacity` per minute.
class bucket {
public:
  explicit bucket(double capacity = 0) : capacity_(capacity), level_(capacity) {
    last_ = clock_type::now();
  }

  bool unlimited() const noexcept { return capacity_ <= 0; }

  /// Refills, then returns how long until `amount` is available (0: now).
  std::chrono::milliseconds wait_for(double amount) {
    if (unlimited())
      return std::chrono::milliseconds{0};
    refill();
    // An ask larger than the whole bucket waits for a full bucket only.
    amount = std::min(amount, capacity_);
    if (level_ >= amount)
      return std::chrono::milliseconds{0};
    auto per_ms = capacity_ / 60'000.0;
    return std::chrono::milliseconds{
      static_cast<int64_t>((amount - level_) / per_ms) + 1};
  }

  void take(double amount) {
    if (!unlimited())
      level_ -= amount;
  }

  void give_back(double amount) {
    if (!unlimited())
      level_ = std::min(capacity_, level_ + amount);
  }

private:
  void refill() {
    auto now = clock_type::now();
    auto ms = std::chrono::duration<double, std::milli>(now - last_).count();
    last_ = now;
    level_ = std::min(capacity_, level_ + ms * capacity_ / 60'000.0);
  }

  double capacity_;
  double level_;
  clock_type::time_point last_;
};

/// An ask waiting for a slot.
struct pending {
  maritaca::ask ask;
  caf::typed_response_promise<ai_message> rp;
};

/// A running request actor.
struct running {
  caf::actor worker;
  /// Tokens taken from the token bucket at admission.
  double estimate = 0;
};

struct dispatcher_state {
  transport::transport_actor wire;
  maritaca::endpoint where;
  maritaca::limits admission;
  /// Queued asks per lane; `ready` lists the lanes with queued asks in the
  /// order they take turns.
  std::unordered_map<uint64_t, std::deque<pending>> lanes;
  std::deque<uint64_t> ready;
  /// Queued ask id -> lane (for cancel).
  std::unordered_map<uint64_t, uint64_t> queued_lane;
  std::size_t queued = 0;
  /// Running ask id -> its request actor.
  std::unordered_map<uint64_t, running> active;
  /// Request actor address -> ask id (for down messages).
  std::unordered_map<caf::actor_addr, uint64_t> by_worker;
  bucket requests;
  bucket tokens;
  bool tick_scheduled = false;
  dispatcher_stats stats;

  /// On exit every queued ask gets `cancelled` (linked request actors see
  /// the exit and answer theirs). Runs on the actor's own thread.
  ~dispatcher_state() {
    auto err = make_error(errc::cancelled, "the dispatcher shut down");
    for (auto& [lane, q] : lanes)
      for (auto& p : q) {
        for (auto& s : p.ask.subscribers)
          caf::anon_send(s, stream_failed{p.ask.id, err});
        p.rp.deliver(err);
      }
  }

  static inline const char* name = "maritaca.dispatcher";
};

using dispatcher_self
  = caf::stateful_actor<dispatcher_state, dispatcher_actor::base>;

/// Estimates the tokens of an ask before it runs: ~4 bytes per token of
/// prompt, plus the answer bound.
double estimate_tokens(const ask& x) {
  std::size_t bytes = 0;
  for (auto& m : x.body.messages) {
    bytes += m.text().size();
    for (auto& p : m.parts)
      bytes += p.text.size();
  }
  return static_cast<double>(bytes / 4 + 1)
         + static_cast<double>(x.body.max_tokens.value_or(256));
}

void pump(dispatcher_self* self);

void admit(dispatcher_self* self, pending&& p, double estimate) {
  auto& st = self->state;
  request_job job;
  job.kind = request_kind::chat;
  job.ask = std::move(p.ask);
  job.where = st.where;
  job.wire = st.wire;
  // Only a token budget needs the usage back (one message less per ask).
  if (!st.tokens.unlimited())
    job.owner = self;
  auto id = job.ask.id;
  auto worker = spawn_request(self->system(), std::move(job));
  // Linked: when the dispatcher goes, running requests cancel and reply.
  // Monitored: its down message frees the slot, exactly once.
  self->link_to(worker);
  self->monitor(worker);
  st.active.emplace(id, running{worker, estimate});
  st.by_worker.emplace(worker.address(), id);
  ++st.stats.admitted;
  st.stats.in_flight = st.active.size();
  st.stats.max_in_flight = std::max(st.stats.max_in_flight, st.active.size());
  // The worker answers the original requester directly.
  p.rp.delegate(worker, run_atom::value);
}

/// Admits queued asks while slots and rate budget allow.
void pump(dispatcher_self* self) {
  auto& st = self->state;
  while (!st.ready.empty() && st.active.size() < st.admission.max_concurrency) {
    auto lane = st.ready.front();
    auto& q = st.lanes[lane];
    auto estimate = estimate_tokens(q.front().ask);
    auto wait = std::max(st.requests.wait_for(1), st.tokens.wait_for(estimate));
    if (wait.count() > 0) {
      if (!st.tick_scheduled) {
        st.tick_scheduled = true;
        self->delayed_send(self, wait, tick_atom::value);
      }
      return;
    }
    st.requests.take(1);
    st.tokens.take(estimate);
    auto p = std::move(q.front());
    q.pop_front();
    st.ready.pop_front();
    if (q.empty())
      st.lanes.erase(lane);
    else
      st.ready.push_back(lane); // round robin: the lane goes last
    st.queued_lane.erase(p.ask.id);
    --st.queued;
    st.stats.queued = st.queued;
    admit(self, std::move(p), estimate);
  }
}

void on_worker_down(dispatcher_self* self, const caf::down_msg& msg) {
  auto& st = self->state;
  auto i = st.by_worker.find(msg.source);
  if (i == st.by_worker.end())
    return;
  st.active.erase(i->second);
  st.by_worker.erase(i);
  ++st.stats.completed;
  st.stats.in_flight = st.active.size();
  pump(self);
}

/// Ends a queued ask with `why`; returns whether it was queued.
bool drop_queued(dispatcher_self* self, uint64_t id, failure why) {
  auto& st = self->state;
  auto i = st.queued_lane.find(id);
  if (i == st.queued_lane.end())
    return false;
  auto lane = i->second;
  st.queued_lane.erase(i);
  auto& q = st.lanes[lane];
  auto j = std::find_if(q.begin(), q.end(),
                        [&](auto& p) { return p.ask.id == id; });
  if (j == q.end())
    return false;
  auto err = make_error(std::move(why));
  for (auto& s : j->ask.subscribers)
    caf::anon_send(s, stream_failed{id, err});
  j->rp.deliver(err);
  q.erase(j);
  --st.queued;
  st.stats.queued = st.queued;
  if (q.empty()) {
    st.lanes.erase(lane);
    st.ready.erase(std::find(st.ready.begin(), st.ready.end(), lane));
  }
  return true;
}

} // namespace

dispatcher_actor spawn_dispatcher(caf::actor_system& sys,
                                  transport::transport_actor wire,
                                  endpoint where, limits admission) {
  auto impl = [](dispatcher_self* self, transport::transport_actor wire,
                 endpoint where,
                 limits admission) -> dispatcher_actor::behavior_type {
    auto& st = self->state;
    st.wire = std::move(wire);
    st.where = std::move(where);
    admission.max_concurrency = std::max<std::size_t>(admission.max_concurrency,
                                                      1);
    st.admission = admission;
    st.requests = bucket{static_cast<double>(admission.requests_per_minute)};
    st.tokens = bucket{static_cast<double>(admission.tokens_per_minute)};
    self->set_down_handler(
      [=](caf::down_msg& msg) { on_worker_down(self, msg); });
    return {
      [=](ask_atom, ask& x) -> caf::typed_response_promise<ai_message> {
        auto& st = self->state;
        // Lane 0: the sender's own lane. (Read the sender first: making the
        // response promise takes it out of the current message.)
        auto lane = x.lane;
        if (lane == 0 && self->current_sender())
          lane = self->current_sender()->id() | (uint64_t{1} << 63);
        auto rp = self->make_response_promise<ai_message>();
        if (x.id == 0)
          x.id = next_request_id();
        if (st.queued >= st.admission.max_queue) {
          ++st.stats.rejected;
          auto err = make_error(errc::overloaded,
                                "dispatcher queue full ("
                                  + std::to_string(st.admission.max_queue)
                                  + " asks waiting)");
          for (auto& s : x.subscribers)
            caf::anon_send(s, stream_failed{x.id, err});
          rp.deliver(err);
          return rp;
        }
        auto& q = st.lanes[lane];
        if (q.empty())
          st.ready.push_back(lane);
        auto id = x.id;
        st.queued_lane.emplace(id, lane);
        q.push_back(pending{std::move(x), rp});
        ++st.queued;
        st.stats.queued = st.queued;
        if (st.admission.max_queue_wait.count() > 0)
          self->delayed_send(self, st.admission.max_queue_wait,
                             expire_atom::value, id);
        pump(self);
        return rp;
      },
      [=](cancel_atom, uint64_t id) {
        auto& st = self->state;
        if (auto i = st.active.find(id); i != st.active.end()) {
          ++st.stats.cancelled;
          caf::anon_send(i->second.worker, cancel_atom::value, id);
          return;
        }
        if (drop_queued(self, id,
                        make_failure(errc::cancelled,
                                     "cancelled by the caller")))
          ++st.stats.cancelled;
      },
      [=](models_atom) -> caf::typed_response_promise<std::vector<model_info>> {
        // Listing models bypasses the queue but not the transport's pool.
        auto& st = self->state;
        auto rp = self->make_response_promise<std::vector<model_info>>();
        request_job job;
        job.kind = request_kind::models;
        job.ask.id = next_request_id();
        job.where = st.where;
        job.wire = st.wire;
        auto worker = spawn_request(self->system(), std::move(job));
        self->link_to(worker);
        rp.delegate(worker, run_atom::value);
        return rp;
      },
      [=](stats_atom) { return self->state.stats; },
      [=](settle_atom, uint64_t id, int64_t used) {
        // Settle the token bucket with what the ask really used.
        auto& st = self->state;
        auto i = st.active.find(id);
        if (i == st.active.end() || used < 0)
          return;
        auto diff = i->second.estimate - static_cast<double>(used);
        if (diff > 0)
          st.tokens.give_back(diff);
        else
          st.tokens.take(-diff);
        i->second.estimate = static_cast<double>(used);
      },
      [=](expire_atom, uint64_t id) {
        drop_queued(self, id,
                    make_timeout(deadline::queue,
                                 "no slot became free within the queue "
                                 "bound"));
      },
      [=](tick_atom) {
        self->state.tick_scheduled = false;
        pump(self);
      },
    };
  };
  return sys.spawn(impl, std::move(wire), std::move(where), admission);
}

} // namespace maritaca
