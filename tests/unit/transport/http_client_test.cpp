// Unit tests of the in-memory helpers of http_client.hpp: parse_url and
// find_header. The client itself is tested over real sockets in
// tests/integration/http_client_test.cpp.

#include "maritaca/transport/http_client.hpp"

#include <catch2/catch.hpp>

using namespace maritaca;
using namespace maritaca::transport;

namespace {

url_parts parsed(std::string_view url) {
  url_parts out;
  auto what = parse_url(url, out);
  INFO(url << ": " << what.describe());
  REQUIRE_FALSE(what);
  return out;
}

errc parse_error(std::string_view url) {
  url_parts out;
  return parse_url(url, out).code;
}

} // namespace

TEST_CASE("parse_url splits http and https URLs") {
  auto x = parsed("https://chat.maritaca.ai/api");
  CHECK(x.scheme == "https");
  CHECK(x.host == "chat.maritaca.ai");
  CHECK(x.port == 443);
  CHECK(x.target == "/api");
  x = parsed("http://127.0.0.1:8080/api/chat/completions?a=1&b=2");
  CHECK(x.scheme == "http");
  CHECK(x.host == "127.0.0.1");
  CHECK(x.port == 8080);
  CHECK(x.target == "/api/chat/completions?a=1&b=2");
}

TEST_CASE("parse_url defaults ports and the target") {
  CHECK(parsed("http://example.com").port == 80);
  CHECK(parsed("https://example.com").port == 443);
  CHECK(parsed("http://example.com").target == "/");
  CHECK(parsed("http://example.com:").port == 80);
  CHECK(parsed("http://example.com?q=1").target == "/?q=1");
  CHECK(parsed("http://example.com/a#frag").target == "/a");
  CHECK(parsed("HTTPS://Example.COM/Path").scheme == "https");
  CHECK(parsed("HTTPS://Example.COM/Path").host == "example.com");
  CHECK(parsed("HTTPS://Example.COM/Path").target == "/Path");
}

TEST_CASE("parse_url accepts IPv6 literals in brackets") {
  auto x = parsed("http://[::1]:9000/v1");
  CHECK(x.host == "::1");
  CHECK(x.port == 9000);
  CHECK(x.target == "/v1");
  x = parsed("https://[2001:db8::7]");
  CHECK(x.host == "2001:db8::7");
  CHECK(x.port == 443);
  CHECK(x.target == "/");
}

TEST_CASE("parse_url refuses what it cannot use") {
  CHECK(parse_error("ftp://example.com/") == errc::invalid_argument);
  CHECK(parse_error("ws://example.com/") == errc::invalid_argument);
  CHECK(parse_error("example.com/api") == errc::invalid_argument);
  CHECK(parse_error("") == errc::invalid_argument);
  CHECK(parse_error("http://") == errc::invalid_argument);
  CHECK(parse_error("http:///path") == errc::invalid_argument);
  CHECK(parse_error("http://host:0/") == errc::invalid_argument);
  CHECK(parse_error("http://host:65536/") == errc::invalid_argument);
  CHECK(parse_error("http://host:12a/") == errc::invalid_argument);
  CHECK(parse_error("http://[::1/") == errc::invalid_argument);
  CHECK(parse_error("http://[::1]x/") == errc::invalid_argument);
  CHECK(parse_error("http://user:pw@host/") == errc::invalid_argument);
  CHECK(parse_error("http://ho st/") == errc::invalid_argument);
  CHECK(parse_error("http://host/a b") == errc::invalid_argument);
  CHECK(parse_error("http://host/a\r\nX: y") == errc::invalid_argument);
  url_parts out;
  auto what = parse_url("gopher://x/", out);
  CHECK(what.message.find("gopher://x/") != std::string::npos);
}

TEST_CASE("find_header ignores case and returns the first match") {
  header_list fields{{"Content-Type", "application/json"},
                     {"retry-after", "2"},
                     {"RETRY-AFTER", "9"},
                     {"X-Empty", ""}};
  CHECK(find_header(fields, "content-type") == "application/json");
  CHECK(find_header(fields, "CONTENT-TYPE") == "application/json");
  CHECK(find_header(fields, "Retry-After") == "2");
  CHECK(find_header(fields, "x-empty").empty());
  CHECK(find_header(fields, "missing").empty());
  CHECK(find_header({}, "anything").empty());
}
