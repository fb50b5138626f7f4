// Fuzzes the client's response framing without sockets: raw bytes go
// through the bounded response parser (transport/bounded_parser.hpp) as
// transport/src/http_client.cpp reads a response: a read buffer with a
// bound, a body taken in pieces of 16 KiB, reads cut at points derived from
// the input.
//
// Checks: a head the parser accepts is within the head limit, however it
// was cut into reads; the parser never needs more unparsed bytes than the
// buffer's bound holds (else the client fails the read with
// buffer_overflow, a protocol_error); the body bytes it hands out never
// exceed what arrived; whole and cut feeds agree on the outcome.

#include "maritaca/transport/bounded_parser.hpp"

#include "fuzz_util.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace http = boost::beast::http;
using namespace maritaca;

namespace {

/// The client's bounds, scaled down so that the fuzzer reaches them.
constexpr std::size_t head_limit = 2048;
constexpr std::size_t buffer_bound = head_limit + 512;

/// What one feed made of the input.
struct outcome {
  bool header_done = false;
  bool done = false;
  bool failed = false;
  std::size_t body = 0;
  int status = 0;
};

/// Feeds `in` in reads of at most `cut(i)` bytes (0: all that fits).
template <class Cut>
outcome feed(std::string_view in, Cut cut) {
  transport::bounded_parser<false, http::buffer_body> p;
  p.head_limit(head_limit);
  p.body_limit(boost::none);
  std::array<char, 16 * 1024> piece;
  outcome out;
  std::string buffer; // read but not consumed
  std::size_t pos = 0;
  for (int i = 0; !p.is_done(); ++i) {
    // A read: as much as the input and the bound allow.
    auto room = buffer_bound - buffer.size();
    auto want = cut(i) == 0 ? room : std::min<std::size_t>(room, cut(i));
    auto n = std::min(want, in.size() - pos);
    buffer.append(in.substr(pos, n));
    pos += n;
    // As the client: the body goes into a fresh piece per read.
    auto gave_piece = p.is_header_done();
    if (gave_piece) {
      p.get().body().data = piece.data();
      p.get().body().size = piece.size();
    }
    boost::beast::error_code ec;
    auto used = p.put(boost::asio::buffer(buffer.data(), buffer.size()), ec);
    buffer.erase(0, used);
    if (gave_piece) out.body += piece.size() - p.get().body().size;
    if (p.is_header_done()) {
      out.header_done = true;
      out.status = static_cast<int>(p.get().result_int());
    }
    if (ec == http::error::need_buffer) ec = {};
    if (ec == http::error::need_more) {
      ec = {};
      if (buffer.size() >= buffer_bound) return out.failed = true, out;
      if (pos == in.size() && used == 0) return out; // waits for more
      continue;
    }
    if (ec) return out.failed = true, out;
    if (pos == in.size() && used == 0 && !p.is_done()) return out;
  }
  out.done = true;
  return out;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  std::string_view in{reinterpret_cast<const char*>(data), size};
  auto whole = feed(in, [](int) { return std::size_t{0}; });
  // Cut points from the input's own bytes: 1..64 bytes a read.
  auto cut = feed(in, [in](int i) {
    return in.empty() ? std::size_t{1}
                      : std::size_t{1} +
                            static_cast<unsigned char>(
                                in[static_cast<std::size_t>(i) % in.size()]) %
                                64;
  });
  for (auto* o : {&whole, &cut}) {
    FUZZ_CHECK(o->body <= in.size());
    if (o->done) FUZZ_CHECK(o->header_done);
  }
  // A complete response reads the same however the reads fall.
  if (whole.done && cut.done) {
    FUZZ_CHECK(whole.status == cut.status);
    FUZZ_CHECK(whole.body == cut.body);
  }
  // A head over the limit never completes, cut or not.
  if (whole.header_done != cut.header_done)
    FUZZ_CHECK(whole.failed || cut.failed);
  return 0;
}
