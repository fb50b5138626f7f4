// The command-line walk shared by maritaca-sim and maritaca-gateway
// (apps/common/include/maritaca/apps/flags.hpp), in memory.

#include "maritaca/apps/flags.hpp"

#include <catch2/catch.hpp>

#include <array>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

using maritaca::apps::flag_reader;
using maritaca::apps::parse_number;

namespace {

constexpr std::array<std::string_view, 3> known{"--listen", "--threads",
                                                "--seed"};

/// Walks `args` (without the program name): "flag=value" per flag, or
/// "error: ..." where the walk stopped.
std::vector<std::string> walk(std::vector<const char*> args) {
  args.insert(args.begin(), "prog");
  flag_reader r{static_cast<int>(args.size()), args.data()};
  std::vector<std::string> out;
  while (r.next()) {
    std::string error;
    if (!r.take_value(known, error)) {
      out.push_back("error: " + error);
      break;
    }
    out.push_back(r.flag() + "=" + r.value());
  }
  return out;
}

} // namespace

TEST_CASE("flags take their value from the next argument or after '='") {
  using v = std::vector<std::string>;
  CHECK(walk({}).empty());
  CHECK(walk({"--listen", "127.0.0.1:0", "--threads=2"}) ==
        v{"--listen=127.0.0.1:0", "--threads=2"});
  // Only the first '=' splits; the value may hold more of them or be empty.
  CHECK(walk({"--seed=a=b", "--threads="}) == v{"--seed=a=b", "--threads="});
  // A value that looks like a flag is still the value.
  CHECK(walk({"--listen", "--threads"}) == v{"--listen=--threads"});
}

TEST_CASE("unknown flags and missing values stop the walk with a message") {
  using v = std::vector<std::string>;
  CHECK(walk({"--threads", "2", "--colour", "red"}) ==
        v{"--threads=2", "error: unknown option '--colour'"});
  CHECK(walk({"--colour=red"}) == v{"error: unknown option '--colour'"});
  CHECK(walk({"--threads"}) == v{"error: option --threads needs a value"});
  // A bare word is not split at '=': it is an unknown option as a whole.
  CHECK(walk({"x=1"}) == v{"error: unknown option 'x=1'"});
}

TEST_CASE("a flag names a bad value") {
  const char* args[] = {"prog", "--threads=many"};
  flag_reader r{2, args};
  REQUIRE(r.next());
  std::string error;
  REQUIRE(r.take_value(known, error));
  CHECK(r.bad_value() == "bad value 'many' for --threads");
  CHECK_FALSE(r.next());
}

TEST_CASE("parse_number takes whole numbers within bounds only") {
  int x = -1;
  CHECK(parse_number<int>("42", x, 0, 100));
  CHECK(x == 42);
  for (auto bad : {"", "4x", " 4", "101", "-1", "1.5", "0x10"}) {
    INFO(bad);
    int y = 7;
    CHECK_FALSE(parse_number<int>(bad, y, 0, 100));
    CHECK(y == 7);
  }
  uint16_t port = 0;
  CHECK(parse_number<uint16_t>("65535", port, 0, 65535));
  CHECK(port == 65535);
  CHECK_FALSE(parse_number<uint16_t>("65536", port, 0, 65535));
  double rate = 0;
  CHECK(parse_number<double>("0.25", rate, 0.0, 1.0));
  CHECK(rate == 0.25);
  CHECK_FALSE(parse_number<double>("1.5", rate, 0.0, 1.0));
  int64_t big = 0;
  CHECK_FALSE(parse_number<int64_t>("9223372036854775808", big,
                                    std::numeric_limits<int64_t>::min(),
                                    std::numeric_limits<int64_t>::max()));
}
