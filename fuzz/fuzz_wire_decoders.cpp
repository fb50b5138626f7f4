// Fuzzes the JSON decoders of wire.hpp: every input goes through each of
// them. Whatever decodes must survive a round trip (encode, decode again:
// the same value; encode again: the same text); decode_error never fails
// and yields UTF-8; a decodable chunk is never an error payload.

#include "maritaca/transport/wire.hpp"

#include "fuzz_util.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

using namespace maritaca;

namespace {

void check_request(std::string_view in) {
  chat_request x;
  if (auto err = wire::decode_request(in, x)) {
    FUZZ_CHECK(err.code == errc::protocol_error);
    FUZZ_CHECK(!err.message.empty());
    return;
  }
  // validate_request must not crash on anything decoded.
  (void)wire::validate_request(x);
  auto text = wire::encode_request(x);
  chat_request y;
  auto err = wire::decode_request(text, y);
  if (err) std::fprintf(stderr, "re-decode: %s\n", err.message.c_str());
  FUZZ_CHECK(!err);
  // encode_request sends stream_options only with stream.
  if (!x.stream) x.include_usage = false;
  FUZZ_CHECK(x == y);
  FUZZ_CHECK(wire::encode_request(y) == text);
}

void check_completion(std::string_view in) {
  chat_completion x;
  if (auto err = wire::decode_completion(in, x)) {
    FUZZ_CHECK(err.code == errc::protocol_error);
    return;
  }
  auto text = wire::encode_completion(x);
  chat_completion y;
  FUZZ_CHECK(!wire::decode_completion(text, y));
  FUZZ_CHECK(x == y);
  FUZZ_CHECK(wire::encode_completion(y) == text);
}

void check_chunk(std::string_view in) {
  completion_chunk x;
  if (auto err = wire::decode_chunk(in, x)) {
    FUZZ_CHECK(err.code == errc::protocol_error);
    return;
  }
  // chunk_decoder tells error payloads apart before decoding chunks.
  FUZZ_CHECK(!wire::is_error_payload(in));
  auto text = wire::encode_chunk(x);
  completion_chunk y;
  FUZZ_CHECK(!wire::decode_chunk(text, y));
  FUZZ_CHECK(x == y);
  // Decoding into a used chunk gives the same as into a fresh one.
  FUZZ_CHECK(!wire::decode_chunk(text, x));
  FUZZ_CHECK(x == y);
  FUZZ_CHECK(wire::encode_chunk(y) == text);
}

void check_models(std::string_view in) {
  std::vector<model_info> x;
  if (auto err = wire::decode_models(in, x)) {
    FUZZ_CHECK(err.code == errc::protocol_error);
    return;
  }
  auto text = wire::encode_models(x);
  std::vector<model_info> y;
  FUZZ_CHECK(!wire::decode_models(text, y));
  FUZZ_CHECK(x == y);
}

void check_error(std::string_view in) {
  auto x = wire::decode_error(in);
  FUZZ_CHECK(fuzz::valid_utf8(x.message));
  FUZZ_CHECK(fuzz::valid_utf8(x.code));
  FUZZ_CHECK(fuzz::valid_utf8(x.type));
  // Both shapes read back.
  FUZZ_CHECK(wire::decode_error(wire::encode_error(x)) == x);
  auto detail =
      wire::decode_error(wire::encode_error(x, wire::error_shape::detail));
  FUZZ_CHECK(detail.message == x.message);
  FUZZ_CHECK(wire::is_error_payload(wire::encode_error(x)));
}

void check_string(std::string_view in) {
  // append_json_string makes a JSON string of anything; UTF-8 reads back.
  std::string body = "{\"detail\":";
  wire::append_json_string(body, in);
  body += "}";
  auto x = wire::decode_error(body);
  if (fuzz::valid_utf8(in))
    FUZZ_CHECK(x.message == in);
  else
    FUZZ_CHECK(fuzz::valid_utf8(x.message));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  std::string_view in{reinterpret_cast<const char*>(data), size};
  check_request(in);
  check_completion(in);
  check_chunk(in);
  check_models(in);
  check_error(in);
  check_string(in);
  return 0;
}
