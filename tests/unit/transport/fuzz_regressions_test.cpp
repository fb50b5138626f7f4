// Inputs the fuzz targets (fuzz/) found, kept as regression tests.

#include "maritaca/transport/sse_parser.hpp"
#include "maritaca/transport/wire.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <string>

using namespace maritaca;

namespace {

/// Decodes a request whose temperature is the JSON number `num`.
failure temperature_of(const std::string& num, double& out) {
  chat_request x;
  auto err = wire::decode_request(
      R"({"model":"m","messages":[],"temperature":)" + num + "}", x);
  out = x.temperature.value_or(std::nan(""));
  return err;
}

double temperature(const std::string& num) {
  double d = 0;
  auto err = temperature_of(num, d);
  INFO(num << ": " << err.message);
  REQUIRE_FALSE(err);
  return d;
}

} // namespace

// fuzz_wire_decoders, input "0e71": RapidJSON 1.1.0's full-precision
// conversion took a zero significand with a large exponent through
// DiyFp::Normalize (clz(0), undefined) and read 1.2e52.
TEST_CASE("a zero with a large exponent decodes as zero") {
  for (auto num : {"0e71", "0E71", "0e+71", "0.0e100", "0.000e308", "0e38"}) {
    INFO(num);
    auto d = temperature(num);
    CHECK(d == 0.0);
    CHECK_FALSE(std::signbit(d));
  }
  for (auto num : {"-0e71", "-0.0e200"}) {
    INFO(num);
    auto d = temperature(num);
    CHECK(d == 0.0);
    CHECK(std::signbit(d));
  }
  chat_completion c;
  REQUIRE_FALSE(wire::decode_completion(
      R"({"id":"x","created":0e50,"choices":[{"message":{"content":"a"}}]})",
      c));
  CHECK(c.created == 0);
  // The same through a stream.
  sse::chunk_decoder d;
  std::vector<completion_chunk> chunks;
  REQUIRE_FALSE(d.feed("data: {\"created\":0e99,\"choices\":[{\"index\":0e40,"
                       "\"delta\":{\"content\":\"x\"}}]}\n\ndata: [DONE]\n\n",
                       chunks));
  REQUIRE(chunks.size() == 1);
  CHECK(chunks[0].created == 0);
  CHECK(chunks[0].choices.at(0).index == 0);
}

TEST_CASE("numbers keep decoding exactly") {
  CHECK(temperature("0.7") == 0.7);
  CHECK(temperature("-1.25e-3") == -1.25e-3);
  CHECK(temperature("1.7976931348623157e308") ==
        std::numeric_limits<double>::max());
  CHECK(temperature("5e-324") == std::numeric_limits<double>::denorm_min());
  CHECK(temperature("2") == 2.0);
  CHECK(temperature("-0") == 0.0);
  // Integers beyond 64 bits become doubles, as before.
  CHECK(temperature("18446744073709551616") == 18446744073709551616.0);
  CHECK(temperature("-9223372036854775809") == -9223372036854775808.0);
  // Underflow is zero; overflow is an error.
  CHECK(temperature("1e-400") == 0.0);
  CHECK(std::signbit(temperature("-1e-400")));
  CHECK(temperature("0.00000000000000000000000000000000000000001e-300") == 0.0);
  for (auto num : {"1e400", "9e308", "-2e308", "1000000000e300"}) {
    INFO(num);
    double d = 0;
    auto err = temperature_of(num, d);
    CHECK(err.code == errc::protocol_error);
    CHECK(err.message.find("Number too big") != std::string::npos);
  }
  chat_request x;
  REQUIRE_FALSE(wire::decode_request(
      R"({"model":"m","messages":[],"max_tokens":9223372036854775807,"seed":-9223372036854775808})",
      x));
  CHECK(x.max_tokens == std::numeric_limits<int64_t>::max());
  CHECK(x.seed == std::numeric_limits<int64_t>::min());
}

// fuzz_sse_parser, input "data:999...9 {...": the stream chunk decoder's
// fast integer reader multiplied a 19th digit into its int64_t before
// checking the length (signed overflow). Long integers now take the general
// path and decode as they do there.
TEST_CASE("long integers in a stream chunk take the general path") {
  auto created_of = [](const std::string& num) {
    sse::chunk_decoder d;
    std::vector<completion_chunk> chunks;
    auto err = d.feed("data: {\"created\":" + num +
                          ",\"choices\":[{\"index\":0,\"delta\":{\"content\":"
                          "\"x\"}}]}\n\ndata: [DONE]\n\n",
                      chunks);
    INFO(num << ": " << err.message);
    REQUIRE_FALSE(err);
    REQUIRE(chunks.size() == 1);
    CHECK(chunks[0].choices.at(0).content == "x");
    return chunks[0].created;
  };
  CHECK(created_of("999999999999999999") == 999999999999999999);
  CHECK(created_of("-999999999999999999") == -999999999999999999);
  CHECK(created_of("1000000000000000000") == 1000000000000000000);
  CHECK(created_of("9223372036854775807") ==
        std::numeric_limits<int64_t>::max());
  CHECK(created_of("-9223372036854775808") ==
        std::numeric_limits<int64_t>::min());
  // Beyond int64_t: a protocol error, as on the general path.
  for (auto num : {"9999999999999999999", "-9999999999999999999",
                   "99999999999999999999999999999999999999"}) {
    INFO(num);
    sse::chunk_decoder d;
    std::vector<completion_chunk> chunks;
    auto err = d.feed(std::string{"data: {\"created\":"} + num +
                          ",\"choices\":[]}\n\n",
                      chunks);
    CHECK(err.code == errc::protocol_error);
    CHECK(chunks.empty());
  }
  // A bare number where an object belongs is still a protocol error.
  sse::chunk_decoder d;
  std::vector<completion_chunk> chunks;
  auto err =
      d.feed("data:99999999999999999999999999999999999999 {\"`\"}\n\n", chunks);
  CHECK(err.code == errc::protocol_error);
  CHECK(chunks.empty());
}
