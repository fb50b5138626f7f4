// Unit tests of the SSE parser, format_data and the chunk decoder.

#include "maritaca/transport/sse_parser.hpp"
#include "stream_chunk.hpp"

#include "maritaca/transport/wire.hpp"

#include <catch2/catch.hpp>

#include <sstream>
#include <string>
#include <string_view>
#include <vector>

using maritaca::completion_chunk;
using maritaca::errc;
using maritaca::failure;
using maritaca::sse::chunk_decoder;
using maritaca::sse::event;
using maritaca::sse::format_data;
using maritaca::sse::parser;
namespace wire = maritaca::wire;

namespace Catch {

template <>
struct StringMaker<event> {
  static std::string convert(const event& x) {
    std::ostringstream out;
    out << "event{type=\"" << x.type << "\", data=\"" << x.data << "\", id=\""
        << x.id << "\", retry_ms=" << x.retry_ms << "}";
    return out.str();
  }
};

template <>
struct StringMaker<failure> {
  static std::string convert(const failure& x) { return x.describe(); }
};

} // namespace Catch

namespace {

/// Makes an event with only `data` (and optionally `type`) set.
event ev(std::string data, std::string type = "") {
  event result;
  result.data = std::move(data);
  result.type = std::move(type);
  return result;
}

/// Feeds `input` whole to a fresh parser and returns its events.
std::vector<event> parse(std::string_view input) {
  parser p;
  std::vector<event> out;
  auto err = p.feed(input, out);
  REQUIRE_FALSE(err);
  return out;
}

/// Feeds `input` to a fresh parser in pieces of `step` bytes.
std::vector<event> parse_in_steps(std::string_view input, std::size_t step) {
  parser p;
  std::vector<event> out;
  for (std::size_t pos = 0; pos < input.size(); pos += step) {
    auto err = p.feed(input.substr(pos, step), out);
    REQUIRE_FALSE(err);
  }
  return out;
}

/// A stream with chunk events, mixed line ends, comments, ids and a BOM.
constexpr std::string_view sample_stream =
    "\xEF\xBB\xBF"
    ": keep-alive\r\n"
    "retry: 2500\n"
    "id: 1\r\n"
    "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"content\":\"Ol\xC3\xA1\"}}]}\r\n"
    "\r\n"
    "data: {\"id\":\"c1\",\r"
    "data: \"choices\":[]}\r"
    "\r"
    "event: message\n"
    "id: 2\n"
    "data:{\"id\":\"c1\",\"usage\":{\"total_tokens\":3}}\n"
    "\n"
    ":\n"
    "event: ping\r\n"
    "\r\n"
    "data: [DONE]\r\n"
    "\r\n";

/// The events of `sample_stream`.
std::vector<event> sample_events() {
  std::vector<event> result;
  auto add = [&](std::string data, std::string type, std::string id) {
    auto& x = result.emplace_back(ev(std::move(data), std::move(type)));
    x.id = std::move(id);
    x.retry_ms = 2500;
  };
  add("{\"id\":\"c1\",\"choices\":[{\"index\":0,"
      "\"delta\":{\"content\":\"Ol\xC3\xA1\"}}]}",
      "", "1");
  add("{\"id\":\"c1\",\n\"choices\":[]}", "", "1");
  add("{\"id\":\"c1\",\"usage\":{\"total_tokens\":3}}", "message", "2");
  add("[DONE]", "", "2");
  return result;
}

} // namespace

// -- parser: lines ------------------------------------------------------------

TEST_CASE("parser accepts LF, CRLF and CR line ends") {
  CHECK(parse("data: a\n\n") == std::vector{ev("a")});
  CHECK(parse("data: a\r\n\r\n") == std::vector{ev("a")});
  CHECK(parse("data: a\r\r") == std::vector{ev("a")});
}

TEST_CASE("parser accepts mixed line ends in one stream") {
  auto events = parse("data: a\rdata: b\r\ndata: c\n\r\n"
                      "data: d\n\r"
                      "data: e\r\n\n");
  CHECK(events == std::vector{ev("a\nb\nc"), ev("d"), ev("e")});
}

TEST_CASE("parser treats CR CR as two line ends, not one") {
  // "\r\r" ends a line and then a blank line: the event is dispatched.
  CHECK(parse("data: a\r\rdata: b\r\r") == std::vector{ev("a"), ev("b")});
}

TEST_CASE("parser joins CR and LF split across feeds into one line end") {
  parser p;
  std::vector<event> out;
  REQUIRE_FALSE(p.feed("data: a\r", out));
  // The '\n' completes "\r\n": no blank line, so nothing is dispatched.
  REQUIRE_FALSE(p.feed("\ndata: b\r", out));
  CHECK(out.empty());
  CHECK(p.has_partial());
  REQUIRE_FALSE(p.feed("\n", out));
  CHECK(out.empty());
  REQUIRE_FALSE(p.feed("\r", out));
  CHECK(out == std::vector{ev("a\nb")});
  // The '\n' after that '\r' is again part of the same line end.
  REQUIRE_FALSE(p.feed("\n", out));
  CHECK(out.size() == 1);
  CHECK_FALSE(p.has_partial());
}

TEST_CASE("parser keeps an LF after a CR in a later feed from being blank") {
  parser p;
  std::vector<event> out;
  // If the '\n' were a second line end, it would dispatch "a" early.
  REQUIRE_FALSE(p.feed("data: a\r", out));
  REQUIRE_FALSE(p.feed("\n", out));
  REQUIRE_FALSE(p.feed("data: b\n", out));
  CHECK(out.empty());
  REQUIRE_FALSE(p.feed("\n", out));
  CHECK(out == std::vector{ev("a\nb")});
}

TEST_CASE("parser splits a line across feeds") {
  parser p;
  std::vector<event> out;
  REQUIRE_FALSE(p.feed("da", out));
  CHECK(p.has_partial());
  REQUIRE_FALSE(p.feed("ta: hel", out));
  REQUIRE_FALSE(p.feed("lo\n", out));
  CHECK(p.has_partial()); // Data seen, event not yet dispatched.
  CHECK(out.empty());
  REQUIRE_FALSE(p.feed("\n", out));
  CHECK(out == std::vector{ev("hello")});
  CHECK_FALSE(p.has_partial());
}

TEST_CASE("parser does not dispatch an unterminated event") {
  parser p;
  std::vector<event> out;
  REQUIRE_FALSE(p.feed("data: a\n\ndata: b\n", out));
  CHECK(out == std::vector{ev("a")});
  CHECK(p.has_partial());
  REQUIRE_FALSE(p.feed("data: c", out));
  CHECK(out.size() == 1);
}

// -- parser: fields -----------------------------------------------------------

TEST_CASE("parser ignores comments") {
  CHECK(parse(": hello\ndata: x\n: in the middle\ndata: y\n\n") ==
        std::vector{ev("x\ny")});
  // A block of comments only dispatches nothing.
  CHECK(parse(":\n: ping\n\n").empty());
}

TEST_CASE("parser strips exactly one leading space of a value") {
  CHECK(parse("data:x\n\n") == std::vector{ev("x")});
  CHECK(parse("data: x\n\n") == std::vector{ev("x")});
  CHECK(parse("data:  x \n\n") == std::vector{ev(" x ")});
  CHECK(parse("data: a:b: c\n\n") == std::vector{ev("a:b: c")});
}

TEST_CASE("parser reads a line without colon as a field with empty value") {
  // "data" alone is an empty data line: the event has empty data.
  CHECK(parse("data\n\n") == std::vector{ev("")});
  CHECK(parse("data\ndata\n\n") == std::vector{ev("\n")});
  CHECK(parse("data: a\ndata\ndata: b\n\n") == std::vector{ev("a\n\nb")});
  // "event" alone resets the type.
  CHECK(parse("event: x\nevent\ndata: 1\n\n") == std::vector{ev("1")});
}

TEST_CASE("parser joins multi-line data with LF") {
  CHECK(parse("data: line 1\ndata: line 2\ndata:\ndata: line 4\n\n") ==
        std::vector{ev("line 1\nline 2\n\nline 4")});
  CHECK(parse("data:\n\n") == std::vector{ev("")});
}

TEST_CASE("parser sets the event type per event") {
  auto events = parse("event: update\ndata: 1\n\ndata: 2\n\n");
  CHECK(events == std::vector{ev("1", "update"), ev("2")});
}

TEST_CASE("parser drops events without data and resets their type") {
  auto events = parse("event: foo\n\ndata: 2\n\nevent: bar\nid: 9\n\n");
  CHECK(events == std::vector{ev("2")});
}

TEST_CASE("parser ignores unknown fields and is case sensitive") {
  CHECK(parse("foo: bar\nData: x\nDATA: y\ndata: z\n\n") ==
        std::vector{ev("z")});
  CHECK(parse("foo: bar\n\n").empty());
}

TEST_CASE("parser keeps the last event id across events") {
  parser p;
  std::vector<event> out;
  REQUIRE_FALSE(p.feed("id: 7\ndata: a\n\ndata: b\n\n", out));
  REQUIRE(out.size() == 2);
  CHECK(out[0].id == "7");
  CHECK(out[1].id == "7");
  // An id in an event without data still sets the last event id.
  REQUIRE_FALSE(p.feed("id: 8\n\ndata: c\n\n", out));
  REQUIRE(out.size() == 3);
  CHECK(out[2].id == "8");
  CHECK(p.last_event_id() == "8");
  // "id" alone (an empty value) resets it.
  REQUIRE_FALSE(p.feed("id\ndata: d\n\n", out));
  REQUIRE(out.size() == 4);
  CHECK(out[3].id.empty());
}

TEST_CASE("parser ignores an id holding NUL") {
  using namespace std::literals;
  parser p;
  std::vector<event> out;
  REQUIRE_FALSE(p.feed("id: 1\ndata: a\n\nid: 2\0x\ndata: b\n\n"sv, out));
  REQUIRE(out.size() == 2);
  CHECK(out[0].id == "1");
  CHECK(out[1].id == "1");
}

TEST_CASE("parser accepts retry with ASCII digits only") {
  parser p;
  std::vector<event> out;
  CHECK(p.retry_ms() == -1);
  REQUIRE_FALSE(p.feed("data: a\n\n", out));
  CHECK(out.back().retry_ms == -1);
  REQUIRE_FALSE(p.feed("retry: 3000\ndata: b\n\n", out));
  CHECK(out.back().retry_ms == 3000);
  // None of these is all digits: each is ignored.
  for (auto line :
       {"retry: 30a\n", "retry: -5\n", "retry:\n", "retry\n", "retry:  100\n",
        "retry: 1.5\n", "retry: +1\n", "retry: 99999999999999999999999\n"}) {
    INFO(line);
    REQUIRE_FALSE(p.feed(line, out));
    CHECK(p.retry_ms() == 3000);
  }
  // It persists into later events, even when set in an event without data.
  REQUIRE_FALSE(p.feed("retry:0\n\ndata: c\n\n", out));
  CHECK(out.back().retry_ms == 0);
  CHECK(out.back().data == "c");
}

// -- parser: BOM --------------------------------------------------------------

TEST_CASE("parser skips a UTF-8 BOM at the start of the stream") {
  CHECK(parse("\xEF\xBB\xBF"
              "data: x\n\n") == std::vector{ev("x")});
  // Split inside the BOM, too.
  CHECK(parse_in_steps("\xEF\xBB\xBF"
                       "data: x\n\n",
                       1) == std::vector{ev("x")});
}

TEST_CASE("parser skips only one BOM, at the very start") {
  // A second BOM is part of the field name "\xEF\xBB\xBF" "data": unknown.
  CHECK(parse("\xEF\xBB\xBF"
              "data: x\n\n"
              "\xEF\xBB\xBF"
              "data: y\n\n") == std::vector{ev("x")});
  CHECK(parse("\xEF\xBB\xBF\xEF\xBB\xBF"
              "data: x\n\n")
            .empty());
}

TEST_CASE("parser keeps the bytes of an incomplete BOM") {
  // "\xEF\xBB" starts a BOM but is not one: the field name is not "data".
  std::string_view input = "\xEF\xBB"
                           "data: x\n\n";
  CHECK(parse(input).empty());
  CHECK(parse_in_steps(input, 1).empty());
  parser p;
  std::vector<event> out;
  REQUIRE_FALSE(p.feed("\xEF", out));
  CHECK(p.has_partial());
}

// -- parser: arbitrary splits -------------------------------------------------

TEST_CASE("parser reads a sample stream whole") {
  CHECK(parse(sample_stream) == sample_events());
}

TEST_CASE("parser gives the same events for every split in two pieces") {
  auto expected = sample_events();
  for (std::size_t i = 0; i <= sample_stream.size(); ++i) {
    parser p;
    std::vector<event> out;
    REQUIRE_FALSE(p.feed(sample_stream.substr(0, i), out));
    REQUIRE_FALSE(p.feed(sample_stream.substr(i), out));
    INFO("split at " << i);
    REQUIRE(out == expected);
    REQUIRE_FALSE(p.has_partial());
  }
}

TEST_CASE("parser gives the same events when fed one byte at a time") {
  CHECK(parse_in_steps(sample_stream, 1) == sample_events());
  // Empty feeds change nothing.
  parser p;
  std::vector<event> out;
  for (char c : sample_stream) {
    REQUIRE_FALSE(p.feed({}, out));
    REQUIRE_FALSE(p.feed(std::string_view{&c, 1}, out));
  }
  CHECK(out == sample_events());
}

TEST_CASE("parser gives the same events for every split in three pieces") {
  // A shorter stream keeps this quadratic loop fast.
  std::string_view input = "data: a\r\ndata: b\r\rid: 3\ndata: c\n\n";
  auto expected = parse(input);
  REQUIRE(expected.size() == 2);
  for (std::size_t i = 0; i <= input.size(); ++i) {
    for (std::size_t j = i; j <= input.size(); ++j) {
      parser p;
      std::vector<event> out;
      REQUIRE_FALSE(p.feed(input.substr(0, i), out));
      REQUIRE_FALSE(p.feed(input.substr(i, j - i), out));
      REQUIRE_FALSE(p.feed(input.substr(j), out));
      INFO("split at " << i << " and " << j);
      REQUIRE(out == expected);
    }
  }
}

// -- parser: bound ------------------------------------------------------------

TEST_CASE("parser rejects an oversized event") {
  parser p{64};
  std::vector<event> out;
  auto input = "data: ok\n\ndata: " + std::string(100, 'x') + "\n\n";
  auto err = p.feed(input, out);
  CHECK(err.code == errc::protocol_error);
  CHECK(err.message == "SSE event exceeds 64 bytes");
  // The event before the oversized one was still delivered.
  CHECK(out == std::vector{ev("ok")});
  // The parser refuses further input.
  err = p.feed("data: small\n\n", out);
  CHECK(err.code == errc::protocol_error);
  CHECK(out.size() == 1);
}

TEST_CASE("parser rejects an oversized line before it ends") {
  // The line never ends, yet the parser does not buffer it without bound.
  parser p{64};
  std::vector<event> out;
  failure err;
  for (int i = 0; i < 100 && !err; ++i)
    err = p.feed("xxxxxxxx", out);
  CHECK(err.code == errc::protocol_error);
  CHECK(err.message == "SSE event exceeds 64 bytes");
}

TEST_CASE("parser rejects an event grown by many small data lines") {
  parser p{64};
  std::vector<event> out;
  failure err;
  int lines = 0;
  for (; lines < 100 && !err; ++lines)
    err = p.feed("data: x\n", out);
  CHECK(err.code == errc::protocol_error);
  CHECK(err.message == "SSE event exceeds 64 bytes");
  CHECK(lines > 5);
  CHECK(lines < 100);
  CHECK(out.empty());
}

TEST_CASE("parser bounds the line plus the data of the event") {
  // A line of exactly the bound passes; one more byte fails.
  {
    parser p{16};
    std::vector<event> out;
    REQUIRE_FALSE(p.feed("data: 0123456789\n\n", out)); // 16 bytes
    CHECK(out == std::vector{ev("0123456789")});
    // The bound is per event: the next one starts from zero again.
    REQUIRE_FALSE(p.feed("data: 0123456789\n\n", out));
    CHECK(out.size() == 2);
  }
  {
    parser p{16};
    std::vector<event> out;
    CHECK(p.feed("data: 0123456789a\n\n", out).code == errc::protocol_error);
    CHECK(out.empty());
  }
  {
    // 10 bytes of data plus an 8-byte line exceed 16.
    parser p{16};
    std::vector<event> out;
    CHECK(p.feed("data: 0123456789\ndata: xx\n\n", out).code ==
          errc::protocol_error);
  }
}

TEST_CASE("parser lets many small events through a small bound") {
  parser p{32};
  std::vector<event> out;
  std::string input;
  for (int i = 0; i < 1000; ++i)
    input += ": comment\ndata: 0123456789\n\n";
  REQUIRE_FALSE(p.feed(input, out));
  CHECK(out.size() == 1000);
}

// -- format_data --------------------------------------------------------------

TEST_CASE("format_data writes one data line per payload line") {
  CHECK(format_data("{}") == "data: {}\n\n");
  CHECK(format_data("a\nb") == "data: a\ndata: b\n\n");
  CHECK(format_data("") == "data: \n\n");
  CHECK(format_data("a\r\nb\rc") == "data: a\ndata: b\ndata: c\n\n");
}

TEST_CASE("format_data output parses back to the payload") {
  for (std::string_view payload :
       {"{\"id\":\"x\",\"choices\":[]}", "[DONE]", "", "a\nb", "\n",
        "line 1\n\nline 3\n", " leading space", "  two", "a: b",
        ": not a comment", "data: nested", "ol\xC3\xA1\n\xF0\x9F\x90\xA6"}) {
    INFO(payload);
    auto events = parse(format_data(payload));
    REQUIRE(events.size() == 1);
    CHECK(events[0].data == payload);
  }
  // CR cannot be carried, so CR and CRLF read back as LF.
  CHECK(parse(format_data("a\r\nb\rc")) == std::vector{ev("a\nb\nc")});
}

TEST_CASE("format_data output of several events concatenates") {
  auto input = format_data("one") + format_data("two\nlines");
  CHECK(parse(input) == std::vector{ev("one"), ev("two\nlines")});
}

// -- chunk_decoder ------------------------------------------------------------

namespace {

/// A streamed answer with content and a tool call, as the service sends it.
constexpr std::string_view maritaca_stream =
    ": ping\r\n"
    "\r\n"
    "data: {\"id\":\"chatcmpl-9a\",\"object\":\"chat.completion.chunk\","
    "\"created\":1718000000,\"model\":\"sabia-4\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
    "\"finish_reason\":null}]}\r\n"
    "\r\n"
    "data: {\"id\":\"chatcmpl-9a\",\"object\":\"chat.completion.chunk\","
    "\"created\":1718000000,\"model\":\"sabia-4\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"content\":\"Vou consultar \"},\"finish_reason\":null}]}\r\n"
    "\r\n"
    "data: {\"id\":\"chatcmpl-9a\",\"object\":\"chat.completion.chunk\","
    "\"created\":1718000000,\"model\":\"sabia-4\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"content\":\"o tempo.\"},\"finish_reason\":null}]}\r\n"
    "\r\n"
    "data: {\"id\":\"chatcmpl-9a\",\"object\":\"chat.completion.chunk\","
    "\"created\":1718000000,\"model\":\"sabia-4\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\","
    "\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
    "\"arguments\":\"\"}}]},\"finish_reason\":null}]}\r\n"
    "\r\n"
    "data: {\"id\":\"chatcmpl-9a\",\"object\":\"chat.completion.chunk\","
    "\"created\":1718000000,\"model\":\"sabia-4\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
    "{\"arguments\":\"{\\\"city\\\": \"}}]},\"finish_reason\":null}]}\r\n"
    "\r\n"
    "data: {\"id\":\"chatcmpl-9a\",\"object\":\"chat.completion.chunk\","
    "\"created\":1718000000,\"model\":\"sabia-4\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
    "{\"arguments\":\"\\\"Recife\\\"}\"}}]},\"finish_reason\":null}]}\r\n"
    "\r\n"
    "data: {\"id\":\"chatcmpl-9a\",\"object\":\"chat.completion.chunk\","
    "\"created\":1718000000,\"model\":\"sabia-4\",\"choices\":[{\"index\":0,"
    "\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\r\n"
    "\r\n"
    "data: {\"id\":\"chatcmpl-9a\",\"object\":\"chat.completion.chunk\","
    "\"created\":1718000000,\"model\":\"sabia-4\",\"choices\":[],"
    "\"usage\":{\"prompt_tokens\":42,\"completion_tokens\":17,"
    "\"total_tokens\":59}}\r\n"
    "\r\n"
    "data: [DONE]\r\n"
    "\r\n";

/// Feeds `input` whole to a fresh decoder, expecting no failure.
std::vector<completion_chunk> decode(std::string_view input,
                                     bool expect_done = true) {
  chunk_decoder dec;
  std::vector<completion_chunk> out;
  auto err = dec.feed(input, out);
  REQUIRE_FALSE(err);
  CHECK(dec.done() == expect_done);
  return out;
}

} // namespace

TEST_CASE("chunk_decoder decodes a Maritaca stream") {
  auto chunks = decode(maritaca_stream);
  REQUIRE(chunks.size() == 8);
  for (auto& chunk : chunks) {
    CHECK(chunk.id == "chatcmpl-9a");
    CHECK(chunk.model == "sabia-4");
    CHECK(chunk.created == 1718000000);
  }
  REQUIRE(chunks[0].choices.size() == 1);
  CHECK(chunks[0].choices[0].role == "assistant");
  // Content deltas join into the text.
  std::string text;
  for (auto& chunk : chunks)
    for (auto& choice : chunk.choices)
      text += choice.content;
  CHECK(text == "Vou consultar o tempo.");
  // Tool-call pieces join by index into one call.
  std::string arguments;
  for (auto i = 3; i <= 5; ++i) {
    REQUIRE(chunks[i].choices.size() == 1);
    REQUIRE(chunks[i].choices[0].tool_calls.size() == 1);
    CHECK(chunks[i].choices[0].tool_calls[0].index == 0);
    arguments += chunks[i].choices[0].tool_calls[0].arguments;
  }
  CHECK(arguments == "{\"city\": \"Recife\"}");
  auto& first_call = chunks[3].choices[0].tool_calls[0];
  CHECK(first_call.id == "call_1");
  CHECK(first_call.type == "function");
  CHECK(first_call.name == "get_weather");
  REQUIRE(chunks[6].choices.size() == 1);
  CHECK(chunks[6].choices[0].finish_reason == "tool_calls");
  // The usage chunk has no choices.
  CHECK(chunks[7].choices.empty());
  REQUIRE(chunks[7].usage.has_value());
  CHECK(chunks[7].usage->prompt_tokens == 42);
  CHECK(chunks[7].usage->completion_tokens == 17);
  CHECK(chunks[7].usage->total_tokens == 59);
  for (auto i = 0; i < 7; ++i)
    CHECK_FALSE(chunks[i].usage.has_value());
}

TEST_CASE("chunk_decoder gives the same chunks however the stream splits") {
  auto expected = decode(maritaca_stream);
  // One byte at a time.
  {
    chunk_decoder dec;
    std::vector<completion_chunk> out;
    for (char c : maritaca_stream)
      REQUIRE_FALSE(dec.feed(std::string_view{&c, 1}, out));
    CHECK(out == expected);
    CHECK(dec.done());
    CHECK_FALSE(dec.finish());
  }
  // Every split in two pieces.
  for (std::size_t i = 0; i <= maritaca_stream.size(); ++i) {
    chunk_decoder dec;
    std::vector<completion_chunk> out;
    REQUIRE_FALSE(dec.feed(maritaca_stream.substr(0, i), out));
    REQUIRE_FALSE(dec.feed(maritaca_stream.substr(i), out));
    INFO("split at " << i);
    REQUIRE(out == expected);
    REQUIRE(dec.done());
  }
}

TEST_CASE("chunk_decoder turns an error payload into a failure") {
  chunk_decoder dec;
  std::vector<completion_chunk> out;
  // Cut the stream after its first chunk, then send an error.
  auto first_end = maritaca_stream.find("\r\n\r\ndata: {") + 4;
  first_end = maritaca_stream.find("\r\n\r\n", first_end) + 4;
  auto input = std::string{maritaca_stream.substr(0, first_end)} +
               "data: {\"error\":{\"message\":\"Model overloaded, try later\","
               "\"type\":\"server_error\",\"code\":\"overloaded\"}}\n\n";
  auto err = dec.feed(input, out);
  CHECK(err.code == errc::server_error);
  CHECK(err.message == "Model overloaded, try later");
  CHECK(out.size() == 1);
  // The failure sticks.
  CHECK(dec.feed("data: [DONE]\n\n", out) == err);
  CHECK_FALSE(dec.done());
  CHECK(dec.finish() == err);
}

TEST_CASE("chunk_decoder turns an event of type error into a failure") {
  {
    chunk_decoder dec;
    std::vector<completion_chunk> out;
    auto err = dec.feed("event: error\ndata: {\"error\":{\"message\":\"boom\","
                        "\"type\":\"server_error\"}}\n\n",
                        out);
    CHECK(err.code == errc::server_error);
    CHECK(err.message == "boom");
  }
  {
    // Its data need not be JSON: the text becomes the message.
    chunk_decoder dec;
    std::vector<completion_chunk> out;
    auto err = dec.feed("event: error\ndata: upstream closed\n\n", out);
    CHECK(err.code == errc::server_error);
    CHECK(err.message == "upstream closed");
  }
}

TEST_CASE("chunk_decoder fails on malformed JSON") {
  chunk_decoder dec;
  std::vector<completion_chunk> out;
  auto err = dec.feed("data: {\"id\":\"c\",\"choices\":[]}\n\n"
                      "data: {\"id\": \"c\", \"choices\": [\n\n",
                      out);
  CHECK(err.code == errc::protocol_error);
  CHECK_FALSE(err.message.empty());
  // The good chunk before it was kept, the broken one was not.
  REQUIRE(out.size() == 1);
  CHECK(out[0].id == "c");
  CHECK(dec.finish().code == errc::protocol_error);
}

TEST_CASE("chunk_decoder fails on a chunk of the wrong shape") {
  chunk_decoder dec;
  std::vector<completion_chunk> out;
  CHECK(dec.feed("data: [1, 2, 3]\n\n", out).code == errc::protocol_error);
  CHECK(out.empty());
}

TEST_CASE("chunk_decoder reports a stream that ends without DONE") {
  auto full = std::string{maritaca_stream};
  auto cut = full.substr(0, full.find("data: [DONE]"));
  chunk_decoder dec;
  std::vector<completion_chunk> out;
  REQUIRE_FALSE(dec.feed(cut, out));
  CHECK(out.size() == 8);
  CHECK_FALSE(dec.done());
  auto err = dec.finish();
  CHECK(err.code == errc::protocol_error);
  CHECK(err.message == "stream ended without [DONE]");
  // An unterminated [DONE] event does not count either.
  REQUIRE_FALSE(dec.feed("data: [DONE]\n", out));
  CHECK(dec.finish().code == errc::protocol_error);
  REQUIRE_FALSE(dec.feed("\n", out));
  CHECK(dec.done());
  CHECK_FALSE(dec.finish());
}

TEST_CASE("chunk_decoder ignores everything after DONE") {
  chunk_decoder dec;
  std::vector<completion_chunk> out;
  REQUIRE_FALSE(dec.feed("data: [DONE]\n\ndata: not json\n\n", out));
  REQUIRE_FALSE(dec.feed("data: {\"error\":{\"message\":\"late\"}}\n\n", out));
  CHECK(out.empty());
  CHECK(dec.done());
  CHECK_FALSE(dec.finish());
}

TEST_CASE("chunk_decoder ignores events of other types") {
  auto chunks = decode("event: ping\ndata: not json\n\n"
                       "event: message\ndata: {\"id\":\"m\",\"choices\":[]}\n\n"
                       "data: [DONE]\n\n");
  REQUIRE(chunks.size() == 1);
  CHECK(chunks[0].id == "m");
}

TEST_CASE("chunk_decoder reads chunks written by format_data") {
  // Round trip with the encoder, as the simulator streams.
  completion_chunk chunk;
  chunk.id = "chatcmpl-rt";
  chunk.created = 1;
  chunk.model = "sabia-4";
  chunk.choices.emplace_back().content = "linha 1\nlinha 2";
  auto input =
      format_data(maritaca::wire::encode_chunk(chunk)) + format_data("[DONE]");
  auto chunks = decode(input);
  REQUIRE(chunks.size() == 1);
  CHECK(chunks[0] == chunk);
}

TEST_CASE("chunk_decoder rejects an oversized event") {
  chunk_decoder dec{128};
  std::vector<completion_chunk> out;
  auto err = dec.feed("data: " + std::string(200, ' ') + "{}\n\n", out);
  CHECK(err.code == errc::protocol_error);
  CHECK(err.message == "SSE event exceeds 128 bytes");
  CHECK(dec.finish() == err);
}

TEST_CASE("chunk_decoder's memo gives the chunks each event gives alone") {
  // After a chunk of the common form the decoder copies chunks with the same
  // bytes around their content; everything else must still be parsed.
  auto head = std::string{R"({"id":"chatcmpl-memo-0123456789abcdef",)"} +
              R"("created":1718000000,"model":"sabia-4",)" +
              R"("choices":[{"index":0,"delta":{"content":)";
  std::string tail = R"(},"finish_reason":null}]})";
  std::vector<std::string> datas{
      head + R"("Olá")" + tail,
      head + R"("mundo, ")" + tail,          // copied from the memo
      head + R"("com \"aspas\"")" + tail,    // escapes: parsed
      head + R"("a","content":"b")" + tail,  // a second member: parsed
      head + R"(null)" + tail,               // null content: parsed
      head + R"("")" + tail,                 // empty text: copied
      head + "\"\xC3\xA7\xC3\xA3o\"" + tail, // UTF-8: copied
      head + R"("x")" + R"(},"finish_reason":"stop"}]})", // other tail
      head + R"("y")" + tail,                             // memo again
      R"({"id":"chatcmpl-memo-0123456789abcdef","choices":[],)"
      R"("usage":{"prompt_tokens":1,"completion_tokens":2}})",
      head + R"("z")" + tail + " ", // trailing blank: parsed
  };
  std::string stream;
  std::vector<completion_chunk> alone;
  for (auto& d : datas) {
    stream += format_data(d);
    completion_chunk x;
    bool error_payload = false;
    REQUIRE_FALSE(wire::decode_stream_chunk(d, x, error_payload));
    alone.push_back(std::move(x));
  }
  // A repeated `choices` member resets the content the first one set: such
  // a chunk must not become the memo (decoded alone, the next one has no
  // content either).
  {
    auto twice = [](const std::string& content) {
      return R"({"choices":[{"index":0,"delta":{"content":)" + content +
             R"(}}],"choices":[{"index":0}]})";
    };
    chunk_decoder dec;
    std::vector<completion_chunk> out;
    REQUIRE_FALSE(dec.feed(
        format_data(twice(R"("a")")) + format_data(twice(R"("b")")), out));
    REQUIRE(out.size() == 2);
    CHECK(dec.memo_hits() == 0);
    CHECK(out[0].choices.at(0).content.empty());
    CHECK(out[1].choices.at(0).content.empty());
  }
  // Bad bytes in a copied position still fail as when parsed.
  for (auto bad : {std::string{"\"a\x01\""}, std::string{"\"a\xFF\""}}) {
    chunk_decoder dec;
    std::vector<completion_chunk> out;
    CHECK(dec.feed(format_data(head + R"("ok")" + tail) +
                       format_data(head + bad + tail),
                   out)
              .code == errc::protocol_error);
    CHECK(out.size() == 1);
  }
  stream += format_data("[DONE]");
  chunk_decoder dec;
  std::vector<completion_chunk> chunks;
  REQUIRE_FALSE(dec.feed(stream, chunks));
  CHECK(dec.done());
  // Chunks 1, 5 and 6 were copied; every other one missed the memo.
  CHECK(dec.memo_hits() == 3);
  REQUIRE(chunks.size() == alone.size());
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    INFO("chunk " << i);
    CHECK(chunks[i] == alone[i]);
  }
  CHECK(chunks[1].choices.at(0).content == "mundo, ");
  CHECK(chunks[2].choices.at(0).content == "com \"aspas\"");
  CHECK(chunks[3].choices.at(0).content == "b");
  CHECK(chunks[4].choices.at(0).content.empty());
  CHECK(chunks[6].choices.at(0).content == "\xC3\xA7\xC3\xA3o");
  CHECK(chunks[7].choices.at(0).finish_reason == "stop");
  CHECK(chunks[8].choices.at(0).finish_reason.empty());
}

TEST_CASE("chunk_decoder fills a batch with the pieces of the chunks") {
  // The same stream as a vector of chunks and as a batch (split in two
  // feeds): id and model once, each chunk's choices then its usage.
  auto chunks = decode(maritaca_stream);
  chunk_decoder dec;
  std::vector<maritaca::sse::chunk_batch> batches(2);
  std::string_view input{maritaca_stream};
  auto half = input.size() / 2;
  REQUIRE_FALSE(dec.feed(input.substr(0, half), batches[0]));
  REQUIRE_FALSE(dec.feed(input.substr(half), batches[1]));
  CHECK(dec.done());
  std::vector<maritaca::sse::chunk_batch::piece> expected;
  for (auto& c : chunks) {
    for (auto& choice : c.choices)
      expected.push_back({choice, std::nullopt});
    if (c.usage) expected.push_back({{}, c.usage});
  }
  std::vector<maritaca::sse::chunk_batch::piece> pieces;
  std::size_t count = 0;
  for (auto& b : batches) {
    CHECK(b.id == "chatcmpl-9a");
    CHECK(b.model == "sabia-4");
    count += b.chunks;
    for (auto& p : b.pieces)
      pieces.push_back(p);
  }
  CHECK(count == chunks.size());
  REQUIRE(pieces.size() == expected.size());
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    INFO("piece " << i);
    CHECK(pieces[i].choice == expected[i].choice);
    CHECK(pieces[i].usage == expected[i].usage);
  }
}
