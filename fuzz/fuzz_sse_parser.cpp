// Fuzzes sse::parser and sse::chunk_decoder: the input is a byte stream fed
// once whole and once in pseudo-random pieces (derived from the input, so a
// crash reproduces). Both ways must give the same events, chunks and
// failures; events stay within the bound; the decoder's chunks are those of
// each event decoded alone; format_data reads back.

#include "maritaca/transport/sse_parser.hpp"
#include "maritaca/transport/wire.hpp"
#include "stream_chunk.hpp"

#include "fuzz_util.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

using namespace maritaca;

namespace {

/// FNV-1a of `s`: picks the split points and the bound.
uint32_t hash(std::string_view s) {
  uint32_t h = 2166136261u;
  for (unsigned char c : s)
    h = (h ^ c) * 16777619u;
  return h;
}

/// `s` with "\r\n" and "\r" turned into "\n" (what SSE data reads back as).
std::string normalize_line_ends(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r') {
      out += '\n';
      if (i + 1 < s.size() && s[i + 1] == '\n') ++i;
    } else {
      out += s[i];
    }
  }
  return out;
}

struct parse_result {
  std::vector<sse::event> events;
  failure error;
  bool partial = false;
  std::string last_id;
  int64_t retry_ms = -1;
};

template <class Feed>
parse_result run_parser(std::size_t bound, Feed&& feed) {
  sse::parser p{bound};
  parse_result r;
  feed([&](std::string_view piece) {
    auto err = p.feed(piece, r.events);
    if (err && !r.error) r.error = err;
    // Once failed, the parser keeps failing the same way.
    if (r.error) FUZZ_CHECK(err == r.error);
  });
  r.partial = p.has_partial();
  r.last_id = p.last_event_id();
  r.retry_ms = p.retry_ms();
  return r;
}

struct decode_result {
  std::vector<completion_chunk> chunks;
  failure error;
  bool done = false;
  failure finish;
};

template <class Feed>
decode_result run_decoder(std::size_t bound, Feed&& feed) {
  sse::chunk_decoder d{bound};
  decode_result r;
  feed([&](std::string_view piece) {
    auto err = d.feed(piece, r.chunks);
    if (err && !r.error) r.error = err;
  });
  r.done = d.done();
  r.finish = d.finish();
  return r;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  std::string_view in{reinterpret_cast<const char*>(data), size};
  auto h = hash(in);
  // Mostly the default bound; sometimes a small one that inputs can exceed.
  std::size_t bound = sse::default_max_event_bytes;
  switch (h % 4) {
  case 1:
    bound = 64;
    break;
  case 2:
    bound = (h >> 8) % 512 + 1;
    break;
  default:
    break;
  }
  auto whole = [&](auto&& fn) { fn(in); };
  auto pieces = [&](auto&& fn) { fuzz::for_each_piece(in, h, fn); };

  // The parser: split-invariant, and events within the bound.
  auto a = run_parser(bound, whole);
  auto b = run_parser(bound, pieces);
  FUZZ_CHECK(a.events == b.events);
  FUZZ_CHECK(a.error == b.error);
  FUZZ_CHECK(!a.error || a.error.code == errc::protocol_error);
  if (!a.error) {
    FUZZ_CHECK(a.partial == b.partial);
    FUZZ_CHECK(a.last_id == b.last_id);
    FUZZ_CHECK(a.retry_ms == b.retry_ms);
  }
  for (auto& ev : a.events)
    FUZZ_CHECK(ev.data.size() + ev.type.size() <= bound);

  // The chunk decoder: split-invariant too.
  auto c = run_decoder(bound, whole);
  auto d = run_decoder(bound, pieces);
  FUZZ_CHECK(c.chunks == d.chunks);
  FUZZ_CHECK(c.error == d.error);
  FUZZ_CHECK(c.done == d.done);
  FUZZ_CHECK(c.finish == d.finish);
  FUZZ_CHECK(c.done || c.finish.code != errc::none);

  // The batch form (fed in pieces) holds the same chunks, flattened.
  {
    sse::chunk_decoder dec{bound};
    sse::chunk_batch batch;
    pieces([&](std::string_view piece) { (void)dec.feed(piece, batch); });
    std::size_t n = 0;
    bool same = batch.chunks == c.chunks.size();
    for (auto& chunk : c.chunks) {
      if (batch.id.empty() && !chunk.id.empty()) same = false;
      for (auto& choice : chunk.choices)
        same = same && n < batch.pieces.size() &&
               batch.pieces[n++].choice == choice;
      if (chunk.usage)
        same = same && n < batch.pieces.size() &&
               batch.pieces[n++].usage == chunk.usage;
    }
    FUZZ_CHECK(same && n == batch.pieces.size());
  }

  // The decoder's chunks are those of each event decoded alone: its memo
  // of the last chunk's layout changes nothing.
  if (!a.error) {
    std::vector<completion_chunk> alone;
    for (auto& ev : a.events) {
      if (ev.type == "error") break;
      if (!ev.type.empty() && ev.type != "message") continue;
      if (ev.data == "[DONE]") break;
      completion_chunk x;
      bool error_payload = false;
      if (wire::decode_stream_chunk(ev.data, x, error_payload) || error_payload)
        break;
      alone.push_back(std::move(x));
    }
    FUZZ_CHECK(alone == c.chunks);
  }

  // format_data: any payload reads back as one event (line ends as '\n').
  auto payload = in.substr(0, 4096);
  std::vector<sse::event> events;
  sse::parser p;
  FUZZ_CHECK(!p.feed(sse::format_data(payload), events));
  FUZZ_CHECK(events.size() == 1);
  FUZZ_CHECK(events[0].data == normalize_line_ends(payload));
  FUZZ_CHECK(events[0].type.empty());
  FUZZ_CHECK(!p.has_partial());
  return 0;
}
