#include "maritaca/transport/sse_parser.hpp"

#include "stream_chunk.hpp"

#include "maritaca/transport/wire.hpp"

#include <algorithm>
#include <charconv>
#include <utility>

namespace maritaca::sse {

namespace {

/// The UTF-8 byte order mark, skipped at the very start of a stream.
constexpr std::string_view utf8_bom = "\xEF\xBB\xBF";

/// Returns whether `x` is a non-empty run of ASCII digits.
bool all_digits(std::string_view x) noexcept {
  return !x.empty() && std::all_of(x.begin(), x.end(),
                                   [](char c) { return c >= '0' && c <= '9'; });
}

} // namespace

// -- parser -------------------------------------------------------------------

parser::parser(std::size_t max_event_bytes)
    : max_event_bytes_(max_event_bytes) {
  // Sized for a typical chunk; both grow (and stay grown) as needed.
  line_.reserve(256);
  data_.reserve(256);
}

bool parser::fits(std::size_t line_bytes) const noexcept {
  // A data line grows `data_` by at most its own length (the "data:" prefix
  // pays for the '\n' separator), so checking before the line is applied
  // keeps the dispatched data within the bound as well.
  auto held = data_.size() + type_.size();
  return held <= max_event_bytes_ && line_bytes <= max_event_bytes_ - held;
}

failure parser::too_big() const {
  return make_failure(errc::protocol_error,
                      "SSE event exceeds " + std::to_string(max_event_bytes_) +
                          " bytes");
}

bool parser::has_partial() const noexcept {
  return !line_.empty() || has_data_ || !type_.empty() ||
         (!bom_done_ && bom_matched_ > 0);
}

namespace {

/// Appends events to a vector (the public `parser::feed`).
struct append_sink {
  std::vector<event>& out;
  event& next() { return out.emplace_back(); }
};

/// Event buffers above this size are given back after a feed.
constexpr std::size_t max_kept_event_bytes = 64u << 10;

/// Writes events over the slots of a vector, reusing their strings.
struct reuse_sink {
  std::vector<event>& slots;
  std::size_t& used;
  event& next() {
    if (used == slots.size()) slots.emplace_back();
    return slots[used++];
  }
};

} // namespace

failure parser::feed(std::string_view bytes, std::vector<event>& out) {
  append_sink sink{out};
  return feed_to(bytes, sink);
}

template <class Sink>
failure parser::feed_to(std::string_view bytes, Sink& out) {
  if (failed_) return too_big();
  // Skip a BOM at the start of the stream, which may itself arrive split.
  if (!bom_done_) {
    while (bom_matched_ < utf8_bom.size() && !bytes.empty() &&
           bytes.front() == utf8_bom[bom_matched_]) {
      ++bom_matched_;
      bytes.remove_prefix(1);
    }
    if (bom_matched_ < utf8_bom.size() && bytes.empty())
      return {}; // Still undecided: wait for more bytes.
    bom_done_ = true;
    // A partial match followed by something else was content after all.
    if (bom_matched_ < utf8_bom.size())
      line_.append(utf8_bom.substr(0, bom_matched_));
  }
  // Positions of the next '\n' and '\r' at or after `pos` (or `size` when
  // there is none). Each is searched again only once `pos` passed it, so
  // the input is scanned at most once per kind of line end.
  const auto size = bytes.size();
  auto next_lf = std::min(bytes.find('\n'), size);
  auto next_cr = std::min(bytes.find('\r'), size);
  std::size_t pos = 0;
  while (pos < size) {
    // A '\r' ended the previous line (maybe in the previous feed): a '\n'
    // right after it belongs to the same line end.
    if (skip_lf_) {
      skip_lf_ = false;
      if (bytes[pos] == '\n') {
        ++pos;
        continue;
      }
    }
    if (next_lf < pos) next_lf = std::min(bytes.find('\n', pos), size);
    if (next_cr < pos) next_cr = std::min(bytes.find('\r', pos), size);
    auto eol = std::min(next_lf, next_cr);
    auto len = eol - pos;
    // Check the bound before buffering or applying any byte of the line.
    if (!fits(line_.size() + len)) {
      failed_ = true;
      return too_big();
    }
    if (eol == size) {
      // No line end: keep the fragment for the next feed.
      line_.append(bytes.substr(pos, len));
      break;
    }
    if (line_.empty()) {
      // The whole line is in `bytes`: parse it in place.
      process_line(bytes.substr(pos, len), out);
    } else {
      line_.append(bytes.substr(pos, len));
      process_line(line_, out);
      line_.clear();
    }
    skip_lf_ = bytes[eol] == '\r';
    pos = eol + 1;
  }
  return {};
}

template <class Sink>
void parser::process_line(std::string_view line, Sink& out) {
  // A blank line dispatches the event; one without data is dropped.
  if (line.empty()) {
    if (has_data_) {
      // Copies leave the buffers of this parser, with their capacity, for
      // the next event; they allocate at most once per string (not at all
      // into a reused event).
      auto& ev = out.next();
      ev.type = type_;
      ev.data = data_;
      ev.id = last_id_;
      ev.retry_ms = retry_ms_;
      has_data_ = false;
    }
    type_.clear();
    data_.clear();
    return;
  }
  if (line.front() == ':') return; // A comment.
  // `name: value` (one leading space of the value is dropped) or `name`
  // alone, which means an empty value.
  std::string_view name = line;
  std::string_view value;
  if (auto colon = line.find(':'); colon != std::string_view::npos) {
    name = line.substr(0, colon);
    value = line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  }
  if (name == "data") {
    if (has_data_) data_ += '\n';
    data_.append(value);
    has_data_ = true;
  } else if (name == "event") {
    type_.assign(value);
  } else if (name == "id") {
    if (value.find('\0') == std::string_view::npos) last_id_.assign(value);
  } else if (name == "retry") {
    // Only ASCII digits count; values beyond int64_t are ignored too.
    int64_t ms = 0;
    if (all_digits(value)) {
      auto [end, ec] =
          std::from_chars(value.data(), value.data() + value.size(), ms);
      if (ec == std::errc{}) retry_ms_ = ms;
    }
  }
  // Any other field is ignored.
}

// -- format_data --------------------------------------------------------------

std::string format_data(std::string_view payload) {
  std::string result;
  result.reserve(payload.size() + 8);
  // Each line of the payload (ended by '\n', "\r\n" or '\r') becomes one
  // data line; the last one is whatever follows the last line end.
  for (;;) {
    auto eol = payload.find_first_of("\r\n");
    result += "data: ";
    if (eol == std::string_view::npos) {
      result.append(payload);
      result += '\n';
      break;
    }
    result.append(payload.substr(0, eol));
    result += '\n';
    auto skip = payload.compare(eol, 2, "\r\n") == 0 ? 2 : 1;
    payload.remove_prefix(eol + skip);
  }
  result += '\n';
  return result;
}

// -- chunk_decoder ------------------------------------------------------------

chunk_decoder::chunk_decoder(std::size_t max_event_bytes)
    : parser_(max_event_bytes) {
  // Nothing else.
}

namespace {

/// Receives the chunks of `chunk_decoder::feed` as a vector of chunks.
struct vector_sink {
  std::vector<completion_chunk>& out;

  /// A chunk copied from the memo `memo` with content `text`.
  void copied(const completion_chunk& memo, std::string_view text) {
    out.emplace_back(memo).choices[0].content.assign(text);
  }

  /// A chunk decoded in full (the sink may take its parts).
  void decoded(completion_chunk& x) { out.push_back(std::move(x)); }
};

/// Receives the chunks of `chunk_decoder::feed` as a `chunk_batch`.
struct batch_sink {
  chunk_batch& out;

  void header(const completion_chunk& x) {
    if (out.id.empty()) out.id = x.id;
    if (out.model.empty()) out.model = x.model;
    ++out.chunks;
  }

  void copied(const completion_chunk& memo, std::string_view text) {
    header(memo);
    auto& from = memo.choices[0];
    auto& to = out.pieces.emplace_back().choice;
    to.index = from.index;
    to.role = from.role;
    to.content.assign(text);
    to.finish_reason = from.finish_reason;
  }

  void decoded(completion_chunk& x) {
    header(x);
    for (auto& c : x.choices)
      out.pieces.push_back({std::move(c), std::nullopt});
    if (x.usage) out.pieces.push_back({chunk_choice{}, x.usage});
  }
};

} // namespace

failure chunk_decoder::feed(std::string_view bytes,
                            std::vector<completion_chunk>& out) {
  vector_sink sink{out};
  return feed_to(bytes, sink);
}

failure chunk_decoder::feed(std::string_view bytes, chunk_batch& out) {
  batch_sink sink{out};
  return feed_to(bytes, sink);
}

template <class Sink>
failure chunk_decoder::feed_to(std::string_view bytes, Sink& out) {
  if (failure_ || done_)
    return failure_; // Sticky failure, or data after [DONE]: ignored.
  // The event slots belong to the thread, not to the decoder: a decoder
  // lives for one exchange (a 50-chunk stream would allocate every event's
  // string and grow the vector anew), and each feed consumes its events
  // before it returns, so one thread's slots serve every stream it decodes.
  // The first `used` are this feed's events; the strings of the rest keep
  // their capacity.
  thread_local std::vector<event> slots;
  std::size_t used = 0;
  // Whatever way this feed returns, a huge event's buffer is not kept.
  struct trim_guard {
    std::vector<event>& slots;
    std::size_t& used;
    ~trim_guard() {
      for (std::size_t i = 0; i < used; ++i)
        if (slots[i].data.capacity() > max_kept_event_bytes)
          slots[i].data = std::string{};
    }
  } trim{slots, used};
  // Events completed before an oversized one still count, so decode them
  // first and report the parser's failure afterwards.
  reuse_sink sink{slots, used};
  auto parse_err = parser_.feed_to(bytes, sink);
  for (std::size_t i = 0; i < used; ++i) {
    auto& ev = slots[i];
    if (ev.type == "error") {
      failure_ =
          make_failure(errc::server_error, wire::decode_error(ev.data).message);
      return failure_;
    }
    if (!ev.type.empty() && ev.type != "message") continue;
    if (ev.data == "[DONE]") {
      done_ = true;
      return {};
    }
    if (auto text = memo_text(ev.data)) {
      ++memo_hits_;
      out.copied(memo_, *text);
      continue;
    }
    bool error_payload = false;
    wire::chunk_layout layout;
    auto err =
        wire::decode_stream_chunk(ev.data, scratch_, error_payload, &layout);
    if (error_payload)
      err =
          make_failure(errc::server_error, wire::decode_error(ev.data).message);
    if (err) {
      failure_ = std::move(err);
      return failure_;
    }
    if (layout.memo) {
      std::string_view data{ev.data};
      memo_ = scratch_;
      memo_.choices[0].content.clear();
      memo_prefix_.assign(data.substr(0, layout.content_begin));
      memo_suffix_.assign(data.substr(layout.content_end));
    }
    out.decoded(scratch_);
  }
  failure_ = std::move(parse_err);
  return failure_;
}

std::optional<std::string_view>
chunk_decoder::memo_text(std::string_view data) const {
  // The prefix holds at least `{"choices":[{"delta":{"content":`.
  if (memo_prefix_.empty() ||
      data.size() < memo_prefix_.size() + memo_suffix_.size() + 2 ||
      !data.starts_with(memo_prefix_) || !data.ends_with(memo_suffix_))
    return std::nullopt;
  // What lies between must be one string token needing no unescaping.
  auto token =
      data.substr(memo_prefix_.size(),
                  data.size() - memo_prefix_.size() - memo_suffix_.size());
  if (token.front() != '"' || token.back() != '"') return std::nullopt;
  auto text = token.substr(1, token.size() - 2);
  if (!wire::is_plain_json_text(text)) return std::nullopt;
  return text;
}

failure chunk_decoder::finish() const {
  if (failure_) return failure_;
  if (!done_)
    return make_failure(errc::protocol_error, "stream ended without [DONE]");
  return {};
}

} // namespace maritaca::sse
