/// @file
/// The transport actor. It owns an `http_client`; every exchange gets a
/// `call_observer` that runs on the client's I/O thread, decodes the
/// response and sends the events straight to the caller with
/// `caf::anon_send`. The observer never touches actor state: it marks its
/// exchange as ended (an atomic flag), and the transport forgets ended
/// exchanges in batches when it starts new ones (no message per exchange).
/// Only an observer that stops an exchange still running (a decode error)
/// sends `(cancel_atom, tag)`, so that the transport closes the connection.

#include "maritaca/transport/transport_actor.hpp"

#include "maritaca/transport/http_client.hpp"
#include "maritaca/transport/sse_parser.hpp"
#include "maritaca/transport/wire.hpp"

#include <caf/actor.hpp>
#include <caf/actor_addr.hpp>
#include <caf/actor_cast.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/system_messages.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace maritaca::transport {

uint64_t next_tag() noexcept {
  static std::atomic<uint64_t> counter{1};
  return counter++;
}

namespace {

/// Upper bound of an error body kept for its message.
constexpr std::size_t max_error_body_bytes = 64u << 10;

/// Upper bound of a server-suggested wait (a day), against absurd values.
constexpr int64_t max_retry_after_ms = 86'400'000;

/// Parses a non-negative decimal number (possibly fractional) filling all of
/// `text`; returns -1 when it is not one.
double parse_number(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t'))
    text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t'))
    text.remove_suffix(1);
  if (text.empty() || text.size() > 32) return -1;
  bool digits = false;
  bool dot = false;
  for (char c : text) {
    if (c >= '0' && c <= '9')
      digits = true;
    else if (c == '.' && !dot)
      dot = true;
    else
      return -1;
  }
  if (!digits) return -1;
  return std::strtod(std::string{text}.c_str(), nullptr);
}

int64_t clamp_ms(double ms) {
  if (!(ms >= 0)) return -1;
  return ms > static_cast<double>(max_retry_after_ms)
             ? max_retry_after_ms
             : static_cast<int64_t>(std::llround(ms));
}

/// Parses an HTTP date (IMF-fixdate, RFC 850 or asctime form) as seconds
/// since the epoch; returns -1 when it is none of them.
int64_t parse_http_date(std::string_view text) {
  std::string copy{text};
  static constexpr const char* formats[] = {
      "%a, %d %b %Y %H:%M:%S GMT", // Sun, 06 Nov 1994 08:49:37 GMT
      "%A, %d-%b-%y %H:%M:%S GMT", // Sunday, 06-Nov-94 08:49:37 GMT
      "%a %b %e %H:%M:%S %Y",      // Sun Nov  6 08:49:37 1994
  };
  for (auto* format : formats) {
    std::tm tm{};
    auto* end = ::strptime(copy.c_str(), format, &tm);
    if (end != nullptr && *end == '\0')
      return static_cast<int64_t>(::timegm(&tm));
  }
  return -1;
}

/// Reads `retry-after-ms` (ms), else `retry-after` (seconds or an HTTP
/// date); returns -1 when neither is usable.
int64_t retry_after_ms(const header_list& fields) {
  if (auto ms = find_header(fields, "retry-after-ms"); !ms.empty())
    if (auto value = parse_number(ms); value >= 0) return clamp_ms(value);
  auto text = find_header(fields, "retry-after");
  if (text.empty()) return -1;
  if (auto seconds = parse_number(text); seconds >= 0)
    return clamp_ms(seconds * 1000.0);
  if (auto when = parse_http_date(text); when >= 0) {
    auto now = static_cast<int64_t>(std::time(nullptr));
    return clamp_ms(static_cast<double>(when > now ? when - now : 0) * 1000.0);
  }
  return -1;
}

/// Reads `x-should-retry`: 1 true, 0 false, -1 absent or unknown.
int8_t should_retry(const header_list& fields) {
  auto text = find_header(fields, "x-should-retry");
  if (text == "true") return 1;
  if (text == "false") return 0;
  return -1;
}

/// Receives one exchange on the I/O thread, decodes it and sends the
/// events to the caller. Callbacks of one exchange never overlap.
class call_observer : public observer {
public:
  call_observer(caf::actor caller, caf::actor_addr transport, const call& c)
      : caller_(std::move(caller)), transport_(std::move(transport)),
        tag_(c.tag), what_(c.what), window_(c.window == 0 ? 1 : c.window),
        max_event_bytes_(c.max_event_bytes) {
    // nop
  }

  /// Called by the actor for `(ack_atom, tag, n)`; returns whether reading
  /// may go on (fewer than `window` batches unacknowledged).
  bool acknowledge(uint32_t n) noexcept {
    auto left = unacked_ -= static_cast<int64_t>(n);
    return left < static_cast<int64_t>(window_);
  }

  // Only error answers (retry hints) and raw calls read the fields.
  bool wants_fields(int status) const override {
    return status < 200 || status >= 300 || what_ == expect::raw;
  }

  void on_head(const response_head& head) override {
    ok_ = head.status >= 200 && head.status < 300;
    head_.status = head.status;
    head_.fields = head.fields;
  }

  data_verdict on_data(std::string_view bytes) override {
    if (ended()) return false;
    if (!ok_) {
      // The error body only feeds the failure message: keep its start.
      auto room =
          max_error_body_bytes - std::min(max_error_body_bytes, body_.size());
      body_.append(bytes.substr(0, room));
      return true;
    }
    if (what_ != expect::chunks) {
      body_.append(bytes);
      return true;
    }
    sse::chunk_batch batch;
    // Batches of a stream tend to be alike: no growing step by step.
    batch.pieces.reserve(last_batch_);
    if (auto what = decoder().feed(bytes, batch)) {
      // Chunks decoded before the bad event still go out first.
      if (batch.chunks > 0)
        caf::anon_send(caller_, chunks_atom::value, tag_, std::move(batch));
      what.response_started = true;
      what.status = head_.status;
      fail(std::move(what));
      // The response is still coming: the transport cancels the exchange
      // (closing the connection); stop reading meanwhile.
      notify_transport();
      return false;
    }
    // Only comments, keep-alive bytes or a partial event: no progress for
    // the idle deadline.
    if (batch.chunks == 0) return {true, decoder().done()};
    last_batch_ = batch.pieces.size();
    ++unacked_;
    caf::anon_send(caller_, chunks_atom::value, tag_, std::move(batch));
    return unacked_.load() < static_cast<int64_t>(window_);
  }

  void on_done() override {
    if (ended()) return;
    if (!ok_) return fail(status_failure());
    switch (what_) {
    case expect::completion: {
      chat_completion result;
      if (auto what = wire::decode_completion(body_, result))
        return fail(decode_failure(std::move(what)));
      finish();
      caf::anon_send(caller_, completion_atom::value, tag_, std::move(result));
      break;
    }
    case expect::models: {
      std::vector<model_info> result;
      if (auto what = wire::decode_models(body_, result))
        return fail(decode_failure(std::move(what)));
      finish();
      caf::anon_send(caller_, models_atom::value, tag_, std::move(result));
      break;
    }
    case expect::raw:
      finish();
      caf::anon_send(caller_, body_atom::value, tag_, std::move(head_),
                     std::move(body_));
      break;
    case expect::chunks:
      if (auto what = decoder().finish(); what || !decoder().done())
        return fail(decode_failure(
            what ? std::move(what)
                 : make_failure(errc::protocol_error,
                                "the stream ended without [DONE]")));
      finish();
      caf::anon_send(caller_, done_atom::value, tag_);
      break;
    }
  }

  void on_failure(const failure& what) override {
    if (ended()) return;
    fail(what);
  }

  /// Returns whether the exchange has ended (any thread).
  bool ended() const noexcept { return ended_.load(std::memory_order_acquire); }

private:
  /// The failure of a non-2xx response.
  failure status_failure() const {
    failure result;
    result.code = errc_from_status(head_.status);
    result.status = head_.status;
    auto error = wire::decode_error(body_);
    result.message = error.message.empty()
                         ? "HTTP status " + std::to_string(head_.status)
                         : std::move(error.message);
    result.retry_after_ms = retry_after_ms(head_.fields);
    result.should_retry = should_retry(head_.fields);
    result.response_started = true;
    return result;
  }

  failure decode_failure(failure what) const {
    what.status = head_.status;
    what.response_started = true;
    return what;
  }

  /// Marks the exchange as ended before its last event goes out (the
  /// transport may forget it from then on).
  void finish() noexcept { ended_.store(true, std::memory_order_release); }

  void fail(failure what) {
    finish();
    caf::anon_send(caller_, failed_atom::value, tag_, std::move(what));
  }

  /// The stream decoder, made on a 2xx stream's first bytes (other
  /// exchanges need neither it nor its buffers).
  sse::chunk_decoder& decoder() {
    if (!decoder_) decoder_.emplace(max_event_bytes_);
    return *decoder_;
  }

  /// Makes the transport cancel (and forget) this exchange, which still
  /// runs on the client.
  void notify_transport() {
    if (auto hdl = caf::actor_cast<caf::actor>(transport_))
      caf::anon_send(hdl, cancel_atom::value, tag_);
  }

  caf::actor caller_;
  caf::actor_addr transport_;
  uint64_t tag_;
  expect what_;
  uint32_t window_;
  std::size_t max_event_bytes_;
  /// See decoder().
  std::optional<sse::chunk_decoder> decoder_;
  /// Pieces in the last batch sent.
  std::size_t last_batch_ = 0;
  std::atomic<int64_t> unacked_{0};
  response_head head_;
  bool ok_ = false;
  /// Ended: set and read on the I/O thread, read by the transport actor.
  std::atomic<bool> ended_{false};
  std::string body_;
};

/// What the transport knows of one running call.
struct call_entry {
  exchange_id id = 0;
  caf::actor_addr caller;
  std::shared_ptr<call_observer> obs;
};

struct transport_state {
  /// Destroyed with the state (in the actor's on_exit): cancels running
  /// exchanges and joins the I/O threads.
  std::unique_ptr<http_client> client;
  /// Calls by tag: running ones and ended ones not yet forgotten.
  std::unordered_map<uint64_t, call_entry> calls;
  /// Forget ended calls when `calls` reaches this size.
  std::size_t sweep_at = 64;
  /// Callers, monitored from their first call until they go down
  /// (request actors live long: no monitor and demonitor per call).
  std::unordered_set<caf::actor_addr> callers;

  static inline const char* name = "maritaca.transport";
};

using transport_pointer = transport_actor::stateful_pointer<transport_state>;

/// Forgets every ended call. Runs when the table has doubled since the
/// last sweep, so each call costs O(1) on average and at most about as
/// many ended calls as running ones are kept.
void sweep(transport_state& st) {
  for (auto i = st.calls.begin(); i != st.calls.end();) {
    if (i->second.obs->ended())
      i = st.calls.erase(i);
    else
      ++i;
  }
  st.sweep_at = std::max<std::size_t>(64, 2 * st.calls.size());
}

transport_actor::behavior_type transport_impl(transport_pointer self,
                                              client_config cfg) {
  self->state.client = std::make_unique<http_client>(std::move(cfg));
  // A caller that went down no longer wants its exchanges.
  self->set_down_handler([self](caf::down_msg& msg) {
    auto& st = self->state;
    for (auto i = st.calls.begin(); i != st.calls.end();) {
      if (i->second.caller == msg.source) {
        if (!i->second.obs->ended()) st.client->cancel(i->second.id);
        i = st.calls.erase(i);
      } else {
        ++i;
      }
    }
    st.callers.erase(msg.source);
  });
  return {
      [self](exchange_atom, call& c) {
        auto caller = caf::actor_cast<caf::actor>(self->current_sender());
        if (!caller) return; // nobody to tell anything
        auto& st = self->state;
        if (st.calls.count(c.tag) != 0) {
          caf::anon_send(caller, failed_atom::value, c.tag,
                         make_failure(errc::invalid_argument,
                                      "tag " + std::to_string(c.tag) +
                                          " is already in use"));
          return;
        }
        if (st.calls.size() >= st.sweep_at) sweep(st);
        auto obs = std::make_shared<call_observer>(caller, self->address(), c);
        if (st.callers.insert(caller.address()).second) self->monitor(caller);
        // Only chunk streams are read piece by piece.
        c.req.stream = c.what == expect::chunks;
        auto id = st.client->start(std::move(c.req), obs);
        st.calls.emplace(c.tag, call_entry{id, caller.address(), obs});
      },
      [self](cancel_atom, uint64_t tag) {
        auto& st = self->state;
        auto i = st.calls.find(tag);
        if (i == st.calls.end()) return;
        // An exchange still running on the client is aborted; a decode
        // error's observer has ended it on its side but not on the client's.
        st.client->cancel(i->second.id);
        st.calls.erase(i);
      },
      [self](ack_atom, uint64_t tag, uint32_t count) {
        auto& st = self->state;
        auto i = st.calls.find(tag);
        if (i == st.calls.end() || i->second.obs->ended()) return;
        if (i->second.obs->acknowledge(count)) st.client->resume(i->second.id);
      },
      [self](stats_atom) { return self->state.client->stats(); },
  };
}

} // namespace

transport_actor spawn_transport(caf::actor_system& sys, client_config cfg) {
  return sys.spawn(transport_impl, std::move(cfg));
}

} // namespace maritaca::transport
