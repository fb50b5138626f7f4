#pragma once

/// @file
/// The chat model: what users hold. A cheap, copyable handle to a runtime
/// (a transport actor and a dispatcher, optionally an actor system of its
/// own) plus the settings of its asks.
///
/// | blocking (plain code)  | asynchronous                               |
/// |------------------------|--------------------------------------------|
/// | `invoke()`             | `ainvoke()` -> future, or from an actor    |
/// | `stream()` (iterate)   | `astream()` -> a subscriber actor          |
/// | `batch()`              | `abatch()` -> future, or from an actor     |

#include "maritaca/dispatcher.hpp"
#include "maritaca/error.hpp"
#include "maritaca/messages.hpp"
#include "maritaca/options.hpp"
#include "maritaca/transport/transport_actor.hpp"

#include <caf/actor_system.hpp>
#include <caf/expected.hpp>
#include <caf/scheduled_actor.hpp>
#include <caf/scoped_actor.hpp>

#include <chrono>
#include <functional>
#include <future>
#include <iterator>
#include <memory>
#include <optional>
#include <type_traits>
#include <vector>

namespace caf {
class actor_system_config;
} // namespace caf

namespace maritaca {

class chunk_stream;

/// A chat model (the C++ `ChatMaritaca`).
namespace detail {

/// The results of an actor's `abatch`, filled in any order and handed to
/// its callback, in input order, once all are in.
class batch_results {
public:
  using result_type = caf::expected<ai_message>;
  using callback = std::function<void(std::vector<result_type>)>;

  /// Results for `n` asks; with none, calls `f` at once.
  static std::shared_ptr<batch_results> make(std::size_t n, callback f);

  /// Stores the result of ask `i`; the last one calls the callback.
  void set(std::size_t i, result_type r);

private:
  std::vector<result_type> results_;
  std::size_t missing_ = 0;
  callback done_;
};

} // namespace detail

class chat_model {
public:
  /// Result of a blocking ask.
  using result_type = caf::expected<ai_message>;

  /// Creates a model with its own actor system (configured by
  /// `maritaca::configure`, and `maritaca::configure_cluster` when
  /// `cfg.limits.cluster` is enabled).
  ///
  /// With `cfg.limits.cluster.listen` set, the model also spawns a cluster
  /// limiter and publishes it there; it throws `std::runtime_error` when it
  /// cannot (e.g. the port is taken).
  explicit chat_model(model_config cfg = model_config::from_env());

  /// Creates a model on the caller's actor system (which should have been
  /// configured with `maritaca::configure` for readable errors, and with
  /// `maritaca::configure_cluster` for a cluster).
  explicit chat_model(caf::actor_system& sys,
                      model_config cfg = model_config::from_env());

  /// Returns a model sharing this one's runtime (and so its concurrency and
  /// rate limits) with other per-ask settings. Base URL, API key, TLS
  /// settings and limits belong to the runtime and stay; everything else
  /// (model, sampling, tools, extra headers, deadlines, retries) is `cfg`'s.
  chat_model with_config(model_config cfg) const;

  /// Returns a model whose asks offer `tools` (and `choice`).
  chat_model bind_tools(std::vector<tool_spec> tools,
                        std::optional<tool_choice> choice = {}) const;

  // -- blocking
  // -----------------------------------------------------------------

  /// Asks and waits for the answer.
  result_type invoke(input in) const;

  /// Asks with a streamed answer; iterate the chunks in a plain loop.
  chunk_stream stream(input in) const;

  /// Asks all, at most `max_concurrency` at once, and returns the answers in
  /// input order; each is a message or its own error.
  std::vector<result_type> batch(std::vector<input> ins) const;

  /// Lists the service's models.
  caf::expected<std::vector<model_info>> models() const;

  // -- asynchronous, for plain code
  // ---------------------------------------------

  /// Asks without blocking; the future becomes ready with the answer.
  std::future<result_type> ainvoke(input in) const;

  /// `batch` without blocking.
  std::future<std::vector<result_type>> abatch(std::vector<input> ins) const;

  /// Streams the answer to `subscriber` (which receives `chat_chunk`s, then
  /// `stream_done` or `stream_failed`). Returns the ask's id (see `cancel`).
  uint64_t astream(caf::actor subscriber, input in) const;

  /// Cancels the ask `id`: its requester gets `errc::cancelled`, a running
  /// HTTP exchange is aborted and the slot freed.
  void cancel(uint64_t id) const;

  // -- asynchronous, for actors
  // -------------------------------------------------

  /// Sends an ask from `self` (any actor: event-based, typed, blocking):
  /// `model.ainvoke(self, "Oi").then(...)`. From an actor of the model's
  /// own system, hold `for_actor()`'s handle: an owning one is refused
  /// with `invalid_argument` (see `for_actor`).
  template <class Self>
  auto ainvoke(Self* self, input in) const {
    return self->request(dispatcher(), caf::infinite, ask_atom::value,
                         actor_ask(self, std::move(in)));
  }

  /// Sends a streamed ask from `self`; chunks go to `subscriber`, the
  /// aggregated answer is also the response to `self`.
  template <class Self>
  auto astream(Self* self, caf::actor subscriber, input in) const {
    return self->request(
        dispatcher(), caf::infinite, ask_atom::value,
        actor_ask(self, std::move(in), {std::move(subscriber)}));
  }

  /// Sends all asks from `self` (an event-based actor, typed or not) and
  /// calls `f` with the results in input order once all are in.
  template <class Self>
  void abatch(Self* self, std::vector<input> ins,
              std::function<void(std::vector<result_type>)> f) const {
    auto results = detail::batch_results::make(ins.size(), std::move(f));
    for (std::size_t i = 0; i < ins.size(); ++i)
      self->request(dispatcher(), caf::infinite, ask_atom::value,
                    actor_ask(self, std::move(ins[i])))
          .then([results, i](ai_message& m) { results->set(i, std::move(m)); },
                [results, i](caf::error& e) { results->set(i, std::move(e)); });
  }

  // -- building blocks
  // ----------------------------------------------------------

  /// Builds the request body for `in` with this model's settings.
  chat_request make_request(input in) const;

  /// Builds an ask (fresh id) for `in`.
  ask make_ask(input in, std::vector<caf::actor> subscribers = {}) const;

  /// Builds the ask an actor `self` sends: `make_ask`, refused (see
  /// `ask_options::refused`) when this handle owns the actor system that
  /// runs `self`.
  template <class Self>
  ask actor_ask(Self* self, input in,
                std::vector<caf::actor> subscribers = {}) const {
    auto x = make_ask(std::move(in), std::move(subscribers));
    // Event-based actors run on the system's own threads; a blocking one
    // (a scoped_actor) is plain code on the caller's thread.
    if constexpr (std::is_base_of_v<caf::scheduled_actor, Self>)
      refuse_if_owned_by(self->home_system(), x);
    return x;
  }

  /// The dispatcher of the runtime.
  dispatcher_actor dispatcher() const;

  /// The transport of the runtime.
  transport::transport_actor transport() const;

  /// The actor system.
  caf::actor_system& system() const;

  /// The port of the cluster limiter this model published (0: none).
  uint16_t cluster_port() const noexcept;

  /// The settings.
  const model_config& config() const noexcept { return *config_; }

  /// Shuts the runtime down now: queued and running asks end with
  /// `errc::cancelled`. Also happens when the last handle goes away.
  void shutdown() const;

  /// Returns a handle for an actor to keep: the same model, but it does not
  /// keep the model's own actor system (if it made one) alive. An actor
  /// holding the last owning handle would destroy its system on one of the
  /// system's own threads; the library's actors (sessions, agent and chain
  /// runs) keep this handle, so the system goes when the caller's last
  /// handle goes, and asks still running then end as `cancelled`. Keep
  /// such a handle only inside actors of `system()`.
  chat_model for_actor() const;

  /// Registers an actor of `system()` that must not outlive the model: when
  /// the runtime shuts down (`shutdown()`, or the caller's last handle of a
  /// model that made its own system) it gets an exit message
  /// (`user_shutdown`), at once if the runtime is already down. Sessions
  /// register themselves. An actor that ends first calls `unbind`.
  void bind(const caf::actor_addr& who) const;

  /// Undoes `bind` (nothing if `who` is not registered).
  void unbind(const caf::actor_addr& who) const;

private:
  struct runtime;
  struct owner;

  chat_model(std::shared_ptr<runtime> rt, std::shared_ptr<owner> own,
             model_config cfg);

  /// Marks `x` refused when this handle owns `home`, the system of the
  /// actor about to send it.
  void refuse_if_owned_by(caf::actor_system& home, ask& x) const;

  std::shared_ptr<runtime> rt_;
  /// The model's own actor system (null for a handle from `for_actor` or a
  /// model on the caller's system).
  std::shared_ptr<owner> owner_;
  /// Shared by the copies of this handle (a session keeps one): settings
  /// are never changed in place, `with_config` and `bind_tools` make new
  /// ones.
  std::shared_ptr<const model_config> config_;
};

/// Input iterator over the chunks of a blocking stream (`chunk_stream`,
/// `chain_stream`): each step waits for `Stream::next()`; the iterator
/// equals the end one once the stream ended.
template <class Stream>
class chunk_iterator {
public:
  using iterator_category = std::input_iterator_tag;
  using value_type = chat_chunk;
  using difference_type = std::ptrdiff_t;
  using pointer = const chat_chunk*;
  using reference = const chat_chunk&;

  /// The end iterator.
  chunk_iterator() = default;

  /// An iterator at the next chunk of `s` (waits for it).
  explicit chunk_iterator(Stream* s) : stream_(s) { ++*this; }

  /// The current chunk.
  reference operator*() const { return current_; }

  /// The current chunk.
  pointer operator->() const { return &current_; }

  /// Waits for the next chunk.
  chunk_iterator& operator++() {
    if (auto x = stream_->next())
      current_ = std::move(*x);
    else
      stream_ = nullptr;
    return *this;
  }

  /// Waits for the next chunk.
  void operator++(int) { ++*this; }

  /// Equal when both are at the end (or at the same stream).
  friend bool operator==(const chunk_iterator& x, const chunk_iterator& y) {
    return x.stream_ == y.stream_;
  }

private:
  Stream* stream_ = nullptr;
  chat_chunk current_;
};

/// Iterates the chunks of a streamed answer from plain code:
/// `for (auto& chunk : model.stream("Tell a story.")) ...`. Once the loop
/// ends, `result()` holds the whole answer or the error.
class chunk_stream {
public:
  /// Input iterator over the chunks.
  using iterator = chunk_iterator<chunk_stream>;

  /// Takes over a stream.
  chunk_stream(chunk_stream&&) noexcept;

  /// Takes over a stream.
  chunk_stream& operator=(chunk_stream&&) noexcept;

  /// Cancels the ask when the stream has not ended yet.
  ~chunk_stream();

  /// Waits for the next chunk; `nullopt` once the stream ended.
  std::optional<chat_chunk> next();

  /// Waits for the end and returns the aggregated answer or the error.
  const chat_model::result_type& result();

  /// Cancels the stream (the answer becomes `errc::cancelled`).
  void cancel();

  /// The ask's id.
  uint64_t id() const noexcept { return id_; }

  /// Starts iterating (waits for the first chunk).
  iterator begin() { return iterator{this}; }

  /// The end.
  iterator end() { return iterator{}; }

private:
  friend class chat_model;

  chunk_stream(const chat_model& model, input in);

  std::unique_ptr<caf::scoped_actor> self_;
  dispatcher_actor dispatcher_;
  std::chrono::milliseconds timeout_;
  uint64_t id_ = 0;
  bool ended_ = false;
  chat_model::result_type result_;
};

/// Prepares `cfg` for maritaca: registers the error category renderer.
void configure(caf::actor_system_config& cfg);

/// Gives the actor system made from `cfg` the scheduler of a model's own
/// system: CAF's work sharing (one queue; idle workers block on a condition
/// variable) whose idle workers first look at the queue for `spin` (see
/// `model_config::scheduler_idle_spin`). Suits a system whose actors mostly
/// pass messages to and from I/O threads; call it before the system is
/// constructed. `spin` 0: plain work sharing.
void use_polling_scheduler(caf::actor_system_config& cfg,
                           std::chrono::microseconds spin);

/// Waits for all futures and returns their values in order (the seed's
/// `asyncio.gather`).
template <class T>
std::vector<T> gather(std::vector<std::future<T>> futures) {
  std::vector<T> result;
  result.reserve(futures.size());
  for (auto& f : futures)
    result.push_back(f.get());
  return result;
}

} // namespace maritaca

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(maritaca::input)
