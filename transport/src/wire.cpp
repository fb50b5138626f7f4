// The JSON codec of the chat API over RapidJSON.
//
// Encoding streams through a rapidjson::Writer straight into the result
// string (no DOM). Strings are escaped by `append_json_string`, which keeps
// UTF-8 as is, escapes control characters and replaces ill-formed bytes, so
// the output is valid JSON whatever the caller put in the value types.
//
// Decoding parses into a DOM whose memory comes from a buffer on the C++
// stack (heap chunks only for large documents), under a nesting limit, then
// walks the DOM once per object, dispatching on member names. Every type
// check names the field path in its failure. Stream chunks, the hot path,
// are decoded by SAX straight into the chunk (`chunk_handler`) and go
// through the DOM only when that fails, for the failure's message.

#include "maritaca/transport/wire.hpp"

#include "stream_chunk.hpp"

// RapidJSON in a namespace of this file alone: it may then be configured
// here unlike in other files without breaking the one-definition rule.
// Not with RAPIDJSON_SSE2: the SSE2 string scan of RapidJSON 1.1.0 (the
// Debian package) compares with 0x19 instead of 0x1F and so accepts raw
// control bytes 0x1A-0x1F inside strings, which JSON forbids. Strings
// without escapes are scanned with SSE2 by `fast_reader` instead.
#define RAPIDJSON_NAMESPACE maritaca_wire_rapidjson
#define RAPIDJSON_NAMESPACE_BEGIN namespace maritaca_wire_rapidjson {
#define RAPIDJSON_NAMESPACE_END }
#undef RAPIDJSON_SSE2
#undef RAPIDJSON_SSE42

#include <rapidjson/allocators.h>
#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <memory>
#include <optional>
#include <string>

#if defined(__SSE2__)
#include <emmintrin.h> // fast_reader's string scan
#endif

namespace maritaca::wire {

namespace {

namespace rj = RAPIDJSON_NAMESPACE;

/// Deepest nesting of arrays and objects a decoder accepts.
constexpr unsigned max_depth = 128;

/// Longest opaque error text kept by `decode_error`.
constexpr size_t opaque_limit = 512;

/// Bytes on either side of a syntax error quoted in its message.
constexpr size_t excerpt_radius = 20;

// -- UTF-8 --------------------------------------------------------------------

/// Returns the length of the well-formed UTF-8 sequence at `p` (with `n` > 0
/// bytes available and `p[0]` >= 0x80), or 0 when it is ill-formed.
size_t utf8_sequence(const unsigned char* p, size_t n) noexcept {
  auto cont = [](unsigned char c) { return (c & 0xC0) == 0x80; };
  unsigned char c = p[0];
  if (c < 0xC2) // A continuation byte or an overlong two-byte lead.
    return 0;
  if (c < 0xE0) return n >= 2 && cont(p[1]) ? 2 : 0;
  if (c < 0xF0) {
    if (n < 3 || !cont(p[1]) || !cont(p[2])) return 0;
    // Reject overlong forms and UTF-16 surrogates.
    if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] >= 0xA0)) return 0;
    return 3;
  }
  if (c < 0xF5) {
    if (n < 4 || !cont(p[1]) || !cont(p[2]) || !cont(p[3])) return 0;
    // Reject overlong forms and code points above U+10FFFF.
    if ((c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] >= 0x90)) return 0;
    return 4;
  }
  return 0;
}

/// Appends `s` for a human to read: with `escape`, control characters and
/// ill-formed bytes become `\n`, `\xNN` etc.; without, control characters
/// become spaces and ill-formed bytes `?`.
void append_printable(std::string& out, std::string_view s, bool escape) {
  static constexpr char hex[] = "0123456789abcdef";
  auto p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size();
  for (size_t i = 0; i < n;) {
    unsigned char c = p[i];
    if (c >= 0x80) {
      if (auto len = utf8_sequence(p + i, n - i); len > 0) {
        out.append(s.data() + i, len);
        i += len;
        continue;
      }
    } else if (c >= 0x20 && c != 0x7F) {
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    ++i;
    if (!escape) {
      out.push_back(c >= 0x80 ? '?' : ' ');
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else {
      out += "\\x";
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 0xF]);
    }
  }
}

/// Returns the largest prefix length <= `limit` of `s` that does not cut a
/// UTF-8 sequence in two.
size_t utf8_floor(std::string_view s, size_t limit) noexcept {
  if (limit >= s.size()) return s.size();
  // Step back over continuation bytes to the start of the cut sequence.
  size_t i = limit;
  while (i > 0 && limit - i < 3 &&
         (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80)
    --i;
  return (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80 ? limit : i;
}

/// Returns the offset of the first byte of `s` that is not part of
/// well-formed UTF-8, or npos.
size_t find_invalid_utf8(std::string_view s) noexcept {
  auto p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    // Skip ASCII eight bytes at a time.
    if (i + 8 <= n) {
      uint64_t word;
      std::memcpy(&word, p + i, 8);
      if ((word & 0x8080808080808080u) == 0) {
        i += 8;
        continue;
      }
    }
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    auto len = utf8_sequence(p + i, n - i);
    if (len == 0) return i;
    i += len;
  }
  return std::string_view::npos;
}

/// Returns `s` without a leading UTF-8 byte order mark.
std::string_view without_bom(std::string_view s) noexcept {
  return s.substr(0, 3) == "\xEF\xBB\xBF" ? s.substr(3) : s;
}

/// Returns whether decoded string `s` holds a UTF-16 surrogate, which only
/// a lone `\udc00`-style escape produces (RapidJSON lets those through).
/// Surrogates encode as ED A0..BF xx; other sequences after ED stay below.
bool has_surrogate(const char* s, size_t n) noexcept {
  const char* end = s + n;
  for (auto p = s; p < end; ++p) {
    p = static_cast<const char*>(std::memchr(p, 0xED, end - p));
    if (p == nullptr) return false;
    if (p + 1 < end && static_cast<unsigned char>(p[1]) >= 0xA0) return true;
  }
  return false;
}

// -- encoding -----------------------------------------------------------------

/// A RapidJSON output stream appending to a std::string.
struct string_sink {
  using Ch = char;
  std::string* out;
  void Put(char c) { out->push_back(c); }
  void Flush() {}
};

using pool = rj::MemoryPoolAllocator<rj::CrtAllocator>;

/// Writes JSON into a string: structure through rapidjson::Writer, string
/// values through `append_json_string`.
class encoder {
public:
  explicit encoder(std::string& out)
      : out_(out), sink_{&out}, levels_(level_buffer_, sizeof(level_buffer_)),
        writer_(sink_, &levels_) {
    // Nothing else: the writer keeps its level stack in level_buffer_.
  }

  void begin_object() { writer_.StartObject(); }
  void end_object() { writer_.EndObject(); }
  void begin_array() { writer_.StartArray(); }
  void end_array() { writer_.EndArray(); }

  /// Writes a member name. Our names are ASCII literals that need no
  /// escaping: the writer places the separator, the name goes in as is.
  void key(std::string_view k) {
    writer_.RawValue("", 0, rj::kStringType);
    out_.push_back('"');
    out_.append(k);
    out_.push_back('"');
  }

  void null() { writer_.Null(); }
  void boolean(bool x) { writer_.Bool(x); }
  void integer(int64_t x) { writer_.Int64(x); }

  /// Writes `x`, or null when it is not finite (JSON has no NaN).
  void number(double x) {
    if (std::isfinite(x))
      writer_.Double(x);
    else
      writer_.Null();
  }

  void string(std::string_view s) {
    // An empty raw value makes the writer emit its separator and count the
    // value; the escaped text then goes straight into the same string.
    writer_.RawValue("", 0, rj::kStringType);
    append_json_string(out_, s);
  }

  /// Writes a string, or null when `s` is empty.
  void string_or_null(std::string_view s) {
    if (s.empty())
      null();
    else
      string(s);
  }

  /// Embeds the JSON text `json` as a value when it is valid JSON, else as
  /// a string holding the text (so the document stays well-formed and the
  /// receiver rejects the field instead of the whole body).
  void raw(std::string_view json);

  /// Writes `k: s` when `s` is not empty.
  void optional_member(std::string_view k, std::string_view s) {
    if (!s.empty()) {
      key(k);
      string(s);
    }
  }

  /// Writes `k: s`.
  void member(std::string_view k, std::string_view s) {
    key(k);
    string(s);
  }

private:
  std::string& out_;
  string_sink sink_;
  alignas(16) char level_buffer_[1024];
  pool levels_;
  rj::Writer<string_sink, rj::UTF8<>, rj::UTF8<>, pool> writer_;
};

/// Validates JSON text without building anything.
bool is_valid_json(std::string_view json);

void encoder::raw(std::string_view json) {
  // A byte order mark would be garbage inside the document.
  json = without_bom(json);
  if (!is_valid_json(json)) {
    string(json);
    return;
  }
  // As in string(): separator through the writer, then the bytes as is.
  writer_.RawValue("", 0, rj::kObjectType);
  out_.append(json.data(), json.size());
}

void encode_usage(encoder& e, const usage& u) {
  e.begin_object();
  e.key("prompt_tokens");
  e.integer(u.prompt_tokens);
  e.key("completion_tokens");
  e.integer(u.completion_tokens);
  e.key("total_tokens");
  e.integer(u.total_tokens);
  e.key("prompt_tokens_details");
  e.begin_object();
  e.key("cached_tokens");
  e.integer(u.cached_tokens);
  e.end_object();
  e.end_object();
}

void encode_part(encoder& e, const content_part& x) {
  e.begin_object();
  if (x.type == content_part::kind::image_url) {
    e.member("type", "image_url");
    e.key("image_url");
    e.begin_object();
    e.member("url", x.url);
    e.optional_member("detail", x.detail);
    e.end_object();
  } else {
    e.member("type", "text");
    e.member("text", x.text);
  }
  e.end_object();
}

void encode_tool_call(encoder& e, const tool_call& x) {
  e.begin_object();
  e.member("id", x.id);
  e.member("type", x.type.empty() ? std::string_view{"function"} : x.type);
  e.key("function");
  e.begin_object();
  e.member("name", x.name);
  e.member("arguments", x.arguments);
  e.end_object();
  e.end_object();
}

void encode_message(encoder& e, const chat_message& x) {
  e.begin_object();
  e.member("role", x.role);
  e.key("content");
  if (!x.parts.empty()) {
    e.begin_array();
    for (auto& part : x.parts)
      encode_part(e, part);
    e.end_array();
  } else if (x.content) {
    e.string(*x.content);
  } else {
    e.null();
  }
  e.optional_member("name", x.name);
  if (!x.tool_calls.empty()) {
    e.key("tool_calls");
    e.begin_array();
    for (auto& call : x.tool_calls)
      encode_tool_call(e, call);
    e.end_array();
  }
  e.optional_member("tool_call_id", x.tool_call_id);
  e.end_object();
}

void encode_tool(encoder& e, const tool_spec& x) {
  e.begin_object();
  e.member("type", "function");
  e.key("function");
  e.begin_object();
  e.member("name", x.name);
  e.optional_member("description", x.description);
  // Empty parameters mean a function without a schema: leave it out.
  if (!x.parameters.empty()) {
    e.key("parameters");
    e.raw(x.parameters);
  }
  e.end_object();
  e.end_object();
}

void encode_tool_choice(encoder& e, const tool_choice& x) {
  if (x.mode != "function") {
    e.string(x.mode);
    return;
  }
  e.begin_object();
  e.member("type", "function");
  e.key("function");
  e.begin_object();
  e.member("name", x.function);
  e.end_object();
  e.end_object();
}

void encode_response_format(encoder& e, const response_format& x) {
  e.begin_object();
  e.member("type", x.type);
  if (x.type == "json_schema") {
    e.key("json_schema");
    e.begin_object();
    e.member("name", x.schema_name);
    if (!x.schema.empty()) {
      e.key("schema");
      e.raw(x.schema);
    }
    e.key("strict");
    e.boolean(x.strict);
    e.end_object();
  }
  e.end_object();
}

/// Returns a guess of the encoded size of `x`, to reserve once.
size_t estimate_size(const chat_request& x) {
  size_t n = 256;
  for (auto& m : x.messages) {
    n += 64 + m.text().size() + m.name.size() + m.tool_call_id.size();
    for (auto& p : m.parts)
      n += 48 + p.text.size() + p.url.size();
    for (auto& c : m.tool_calls)
      n += 96 + c.id.size() + c.name.size() + c.arguments.size();
  }
  for (auto& t : x.tools)
    n += 96 + t.name.size() + t.description.size() + t.parameters.size();
  return n + n / 8;
}

// -- parsing ------------------------------------------------------------------

using document = rj::GenericDocument<rj::UTF8<>, pool, pool>;
using value = document::ValueType;

/// Returns whether the JSON number `s` has a magnitude below 1 (decides
/// between underflow and overflow when a conversion is out of range).
bool below_one(std::string_view s) {
  auto digits = [&](size_t& i) {
    auto start = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9')
      ++i;
    return s.substr(start, i - start);
  };
  size_t i = s.substr(0, 1) == "-" ? 1 : 0;
  auto integral = digits(i);
  std::string_view fraction;
  if (i < s.size() && s[i] == '.') fraction = digits(++i);
  int64_t exp = 0;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    bool minus = s[++i] == '-';
    if (s[i] == '-' || s[i] == '+') ++i;
    for (char c : digits(i))
      exp = std::min<int64_t>(exp * 10 + (c - '0'), 1'000'000'000);
    if (minus) exp = -exp;
  }
  // The decimal exponent of the first non-zero digit.
  if (auto nz = integral.find_first_not_of('0'); nz != std::string_view::npos)
    return static_cast<int64_t>(integral.size() - nz - 1) + exp < 0;
  auto nz = fraction.find_first_not_of('0');
  return nz == std::string_view::npos ||
         -static_cast<int64_t>(nz) - 1 + exp < 0;
}

/// Forwards SAX events to `Handler`, refusing nesting beyond `max_depth`
/// (the recursive parser and our walks then stay shallow on any input).
template <class Handler>
struct depth_limited {
  Handler& next;
  unsigned depth = 0;
  bool too_deep = false;
  /// Whether to look for surrogates in strings (see `has_surrogate`).
  bool check_surrogates = true;
  bool surrogate = false;
  /// A number beyond the range of double.
  bool too_big = false;

  bool enter() {
    if (++depth <= max_depth) return true;
    too_deep = true;
    return false;
  }

  bool Null() { return next.Null(); }
  bool Bool(bool x) { return next.Bool(x); }
  bool Int(int x) { return next.Int(x); }
  bool Uint(unsigned x) { return next.Uint(x); }
  bool Int64(int64_t x) { return next.Int64(x); }
  bool Uint64(uint64_t x) { return next.Uint64(x); }
  bool Double(double x) { return next.Double(x); }
  /// Numbers arrive as text (see `parse_flags`) and are converted here by
  /// std::from_chars, which rounds exactly and ignores the locale.
  bool RawNumber(const char* s, rj::SizeType n, bool) {
    auto end = s + n;
    if (std::none_of(s, end,
                     [](char c) { return c == '.' || c == 'e' || c == 'E'; })) {
      int64_t i = 0;
      if (auto r = std::from_chars(s, end, i);
          r.ec == std::errc{} && r.ptr == end)
        return next.Int64(i);
      uint64_t u = 0;
      if (auto r = std::from_chars(s, end, u);
          r.ec == std::errc{} && r.ptr == end)
        return next.Uint64(u);
      // Beyond 64 bits: a double, as RapidJSON does.
    }
    double d = 0;
    auto r = std::from_chars(s, end, d);
    if (r.ec == std::errc::result_out_of_range) {
      if (!below_one({s, n})) {
        too_big = true;
        return false;
      }
      d = *s == '-' ? -0.0 : 0.0; // underflow
    } else if (r.ec != std::errc{} || r.ptr != end) {
      return false; // not reached: the parser checked the syntax
    }
    return next.Double(d);
  }
  bool String(const char* s, rj::SizeType n, bool copy) {
    return checked(s, n) && next.String(s, n, copy);
  }
  bool Key(const char* s, rj::SizeType n, bool copy) {
    return checked(s, n) && next.Key(s, n, copy);
  }
  bool checked(const char* s, rj::SizeType n) {
    surrogate = check_surrogates && has_surrogate(s, n);
    return !surrogate;
  }
  bool StartObject() { return enter() && next.StartObject(); }
  bool EndObject(rj::SizeType n) {
    --depth;
    return next.EndObject(n);
  }
  bool StartArray() { return enter() && next.StartArray(); }
  bool EndArray(rj::SizeType n) {
    --depth;
    return next.EndArray(n);
  }
};

/// Makes the failure for a syntax error at `offset` of `in`: the reason and
/// an excerpt of at most 2 * excerpt_radius bytes around the offset.
failure syntax_failure(std::string_view in, size_t offset,
                       std::string_view reason) {
  offset = std::min(offset, in.size());
  size_t first = offset > excerpt_radius ? offset - excerpt_radius : 0;
  // Start the excerpt on a character boundary.
  for (int i = 0; i < 3 && first < offset &&
                  (static_cast<unsigned char>(in[first]) & 0xC0) == 0x80;
       ++i)
    ++first;
  size_t last =
      first + utf8_floor(in.substr(first), offset + excerpt_radius - first);
  std::string msg = "invalid JSON at offset ";
  msg += std::to_string(offset);
  msg += ": ";
  msg += reason;
  msg += " near '";
  append_printable(msg, in.substr(first, last - first), true);
  msg += '\'';
  return make_failure(errc::protocol_error, std::move(msg));
}

/// Zero bytes after the text of a `text_copy`: the NUL that the in-situ
/// parsers stop at. (No scan reads further: `fast_reader` keeps to its end
/// pointer, and RapidJSON's SIMD scans are off, see the top of this file.)
constexpr size_t text_padding = 1;

/// A mutable, NUL-terminated copy of the input for in-situ parsing: in a
/// caller's buffer when it fits, else on the heap.
class text_copy {
public:
  text_copy(std::string_view in, char* buffer, size_t size) {
    if (in.size() + text_padding <= size) {
      data_ = buffer;
    } else {
      // Not make_unique: it would zero the bytes copied over next.
      heap_.reset(new char[in.size() + text_padding]);
      data_ = heap_.get();
    }
    std::memcpy(data_, in.data(), in.size());
    std::memset(data_ + in.size(), 0, text_padding);
  }

  char* data() noexcept { return data_; }

private:
  char* data_ = nullptr;
  std::unique_ptr<char[]> heap_;
};

/// What every decoder asks of the parser: parse in place (strings are not
/// copied) and hand numbers over as text, which `depth_limited` converts
/// exactly (so that 0.7 decodes to the double that encodes as 0.7).
/// RapidJSON 1.1.0's own exact conversion (kParseFullPrecisionFlag) misreads
/// a zero with a large exponent: "0e71" became 1.2e52, after computing
/// clz(0). UTF-8 is checked beforehand, in one fast pass.
constexpr unsigned parse_flags =
    rj::kParseInsituFlag | rj::kParseNumbersAsStringsFlag;

/// Parses `in` by SAX into `handler`, in place in `text` (a NUL-terminated
/// copy of `in`), using `stack` for the parser's scratch memory. Rejects
/// ill-formed UTF-8, lone surrogates, NUL bytes outside strings and nesting
/// deeper than `max_depth`.
template <class Handler>
failure sax_parse(std::string_view in, char* text, Handler& handler,
                  pool& stack) {
  if (auto bad = find_invalid_utf8(in); bad != std::string_view::npos)
    return syntax_failure(in, bad, "Invalid UTF-8 encoding.");
  // Skip a byte order mark.
  size_t skipped = in.size() - without_bom(in).size();
  rj::InsituStringStream is(text + skipped);
  rj::GenericReader<rj::UTF8<>, rj::UTF8<>, pool> reader(&stack, 256);
  depth_limited<Handler> guard{handler};
  // Only an escape `\uDC00`..`\uDFFF` can make a lone surrogate.
  guard.check_surrogates = in.find("\\ud") != std::string_view::npos ||
                           in.find("\\uD") != std::string_view::npos;
  auto result = reader.template Parse<parse_flags>(is, guard);
  if (result.IsError()) {
    auto at = result.Offset() + skipped;
    if (guard.too_deep)
      return syntax_failure(in, at, "nesting deeper than 128 levels.");
    if (guard.too_big)
      return syntax_failure(in, at, "Number too big to be stored in double.");
    if (guard.surrogate)
      return syntax_failure(in, at, "Unpaired UTF-16 surrogate escape.");
    return syntax_failure(in, at, rj::GetParseError_En(result.Code()));
  }
  // The parser reads NUL as the end: text after a NUL byte went unread.
  if (auto at = is.Tell() + skipped; at != in.size())
    return syntax_failure(in, at, "Unexpected NUL byte.");
  return {};
}

/// A parsed document whose memory comes first from buffers inside this
/// object (so small documents cost no heap allocation).
template <size_t TextBytes, size_t ValueBytes, size_t StackBytes>
class parsed_document {
public:
  parsed_document()
      : values_(value_buffer_, sizeof(value_buffer_)),
        stack_(stack_buffer_, sizeof(stack_buffer_)),
        doc_(&values_, 512, &stack_) {
    // Nothing else.
  }

  parsed_document(const parsed_document&) = delete;
  parsed_document& operator=(const parsed_document&) = delete;

  /// Parses `in`; on failure the root stays null. Call once.
  failure parse(std::string_view in) {
    text_.emplace(in, text_buffer_, sizeof(text_buffer_));
    failure result;
    auto generator = [&](document& handler) {
      result = sax_parse(in, text_->data(), handler, stack_);
      return !result;
    };
    doc_.Populate(generator);
    return result;
  }

  const value& root() const noexcept { return doc_; }

private:
  // The document's strings point into the text: it must outlive doc_.
  char text_buffer_[TextBytes];
  std::optional<text_copy> text_;
  alignas(16) char value_buffer_[ValueBytes];
  alignas(16) char stack_buffer_[StackBytes];
  pool values_;
  pool stack_;
  document doc_;
};

/// Accepts any SAX event (for validation only).
struct null_handler : rj::BaseReaderHandler<rj::UTF8<>, null_handler> {};

/// Checks JSON text with `sax_parse`.
failure check_json(std::string_view json) {
  char buffer[512];
  text_copy text{json, buffer, sizeof(buffer)};
  alignas(16) char stack_buffer[512];
  pool stack(stack_buffer, sizeof(stack_buffer));
  null_handler handler;
  return sax_parse(json, text.data(), handler, stack);
}

bool is_valid_json(std::string_view json) {
  return !check_json(json);
}

/// Appends `x` as compact JSON text.
void append_compact(std::string& out, const value& x) {
  string_sink sink{&out};
  rj::Writer<string_sink> writer(sink);
  x.Accept(writer);
}

// -- decoding -----------------------------------------------------------------

/// A position in the decoded document, for error messages. Paths live on
/// the C++ stack next to the values they name.
struct path {
  const path* up = nullptr;
  std::string_view key;
  int64_t index = -1;

  path operator/(std::string_view k) const { return {this, k, -1}; }
  path operator[](size_t i) const {
    return {this, {}, static_cast<int64_t>(i)};
  }
};

/// Renders `p` as `choices[0].delta.content` ("document" for the root).
std::string render(const path& p) {
  const path* chain[max_depth + 8];
  size_t n = 0;
  for (auto q = &p; q->up != nullptr && n < std::size(chain); q = q->up)
    chain[n++] = q;
  if (n == 0) return "document";
  std::string out;
  while (n-- > 0) {
    auto q = chain[n];
    if (q->index >= 0) {
      out += '[';
      out += std::to_string(q->index);
      out += ']';
    } else {
      if (!out.empty()) out += '.';
      out += q->key;
    }
  }
  return out;
}

std::string_view type_name(const value& x) {
  switch (x.GetType()) {
  case rj::kNullType:
    return "null";
  case rj::kFalseType:
  case rj::kTrueType:
    return "boolean";
  case rj::kObjectType:
    return "object";
  case rj::kArrayType:
    return "array";
  case rj::kStringType:
    return "string";
  default:
    return "number";
  }
}

std::string_view view(const value& x) noexcept {
  return {x.GetString(), x.GetStringLength()};
}

/// Returns the member `name` of object `obj`, or null.
const value* find(const value& obj, std::string_view name) {
  for (auto i = obj.MemberBegin(); i != obj.MemberEnd(); ++i)
    if (view(i->name) == name) return &i->value;
  return nullptr;
}

/// Returns the message of an error value: a string as is, the `message`
/// member of an object, else the compact JSON text.
std::string error_text(const value& x) {
  if (x.IsString()) return std::string{view(x)};
  if (x.IsObject())
    if (auto msg = find(x, "message"); msg != nullptr && msg->IsString())
      return std::string{view(*msg)};
  std::string out;
  append_compact(out, x);
  return out;
}

/// Type checks and conversions that record the first failure.
class reader {
public:
  failure error;

  bool fail(const path& p, std::string_view what) {
    auto msg = render(p);
    msg += ": ";
    msg += what;
    error = make_failure(errc::protocol_error, std::move(msg));
    return false;
  }

  bool expected(const path& p, std::string_view what, const value& got) {
    std::string msg = "expected ";
    msg += what;
    msg += ", got ";
    msg += type_name(got);
    return fail(p, msg);
  }

  bool missing(const path& p) { return fail(p, "missing"); }

  bool object(const value& x, const path& p) {
    return x.IsObject() || expected(p, "object", x);
  }

  bool array(const value& x, const path& p) {
    return x.IsArray() || expected(p, "array", x);
  }

  /// A string; null clears `out`.
  bool string(const value& x, const path& p, std::string& out) {
    if (x.IsString()) {
      out.assign(x.GetString(), x.GetStringLength());
      return true;
    }
    if (x.IsNull()) {
      out.clear();
      return true;
    }
    return expected(p, "string", x);
  }

  /// A non-null string.
  bool required_string(const value& x, const path& p, std::string& out) {
    if (!x.IsString()) return expected(p, "string", x);
    out.assign(x.GetString(), x.GetStringLength());
    return true;
  }

  /// An integer (a double with an integral value counts); null keeps `out`.
  bool integer(const value& x, const path& p, int64_t& out) {
    if (x.IsInt64()) {
      out = x.GetInt64();
      return true;
    }
    if (x.IsNull()) return true;
    if (x.IsDouble()) {
      auto d = x.GetDouble();
      if (d == std::trunc(d) && d >= -9.2e18 && d <= 9.2e18) {
        out = static_cast<int64_t>(d);
        return true;
      }
    }
    return expected(p, "integer", x);
  }

  /// An integer; null resets `out`.
  bool integer(const value& x, const path& p, std::optional<int64_t>& out) {
    if (x.IsNull()) {
      out.reset();
      return true;
    }
    int64_t tmp = 0;
    if (!integer(x, p, tmp)) return false;
    out = tmp;
    return true;
  }

  /// Seconds since the epoch: an integer, or a double truncated.
  bool timestamp(const value& x, const path& p, int64_t& out) {
    if (x.IsDouble() && x.GetDouble() >= -9.2e18 && x.GetDouble() <= 9.2e18) {
      out = static_cast<int64_t>(x.GetDouble());
      return true;
    }
    return integer(x, p, out);
  }

  /// A number; null resets `out`.
  bool number(const value& x, const path& p, std::optional<double>& out) {
    if (x.IsNumber()) {
      out = x.GetDouble();
      return true;
    }
    if (x.IsNull()) {
      out.reset();
      return true;
    }
    return expected(p, "number", x);
  }

  /// A boolean; null keeps `out`.
  bool boolean(const value& x, const path& p, bool& out) {
    if (x.IsBool()) {
      out = x.GetBool();
      return true;
    }
    return x.IsNull() || expected(p, "boolean", x);
  }

  /// A JSON object kept as compact JSON text; null clears `out`.
  bool raw_object(const value& x, const path& p, std::string& out) {
    out.clear();
    if (x.IsNull()) return true;
    if (!x.IsObject()) return expected(p, "object", x);
    append_compact(out, x);
    return true;
  }

  bool usage(const value& x, const path& p,
             std::optional<maritaca::usage>& out);
  bool tool_call(const value& x, const path& p, maritaca::tool_call& out);
  bool part(const value& x, const path& p, content_part& out);
  bool message(const value& x, const path& p, chat_message& out,
               bool in_request);
  bool tool(const value& x, const path& p, tool_spec& out);
  bool tool_choice(const value& x, const path& p,
                   std::optional<maritaca::tool_choice>& out);
  bool response_format(const value& x, const path& p,
                       std::optional<maritaca::response_format>& out);
  bool request(const value& x, chat_request& out);
  bool completion(const value& x, chat_completion& out);
  bool delta(const value& x, const path& p, chunk_choice& out);
  bool chunk(const value& x, completion_chunk& out);
  bool model(const value& x, const path& p, model_info& out);

  /// Fails when object `x` carries a non-null top-level `error` member: an
  /// error body where a result was expected.
  bool no_error_member(const value& x, const path& root) {
    auto err = find(x, "error");
    if (err == nullptr || err->IsNull()) return true;
    return fail(root / "error", "error payload: " + error_text(*err));
  }
};

bool reader::usage(const value& x, const path& p,
                   std::optional<maritaca::usage>& out) {
  if (x.IsNull()) {
    out.reset();
    return true;
  }
  if (!object(x, p)) return false;
  auto& u = out.emplace();
  bool has_total = false;
  for (auto i = x.MemberBegin(); i != x.MemberEnd(); ++i) {
    auto k = view(i->name);
    auto& v = i->value;
    if (k == "prompt_tokens") {
      if (!integer(v, p / k, u.prompt_tokens)) return false;
    } else if (k == "completion_tokens") {
      if (!integer(v, p / k, u.completion_tokens)) return false;
    } else if (k == "total_tokens") {
      if (!integer(v, p / k, u.total_tokens)) return false;
      has_total = !v.IsNull();
    } else if (k == "prompt_tokens_details" && !v.IsNull()) {
      auto details = p / k;
      if (!object(v, details)) return false;
      if (auto cached = find(v, "cached_tokens"))
        if (!integer(*cached, details / "cached_tokens", u.cached_tokens))
          return false;
    }
  }
  // Some servers leave the sum out.
  if (!has_total) u.total_tokens = u.prompt_tokens + u.completion_tokens;
  return true;
}

bool reader::tool_call(const value& x, const path& p,
                       maritaca::tool_call& out) {
  if (!object(x, p)) return false;
  bool has_function = false;
  for (auto i = x.MemberBegin(); i != x.MemberEnd(); ++i) {
    auto k = view(i->name);
    auto& v = i->value;
    if (k == "id") {
      if (!string(v, p / k, out.id)) return false;
    } else if (k == "type") {
      if (!string(v, p / k, out.type)) return false;
      if (out.type.empty()) out.type = "function";
    } else if (k == "function") {
      auto fp = p / k;
      if (!object(v, fp)) return false;
      has_function = true;
      for (auto j = v.MemberBegin(); j != v.MemberEnd(); ++j) {
        auto fk = view(j->name);
        auto& fv = j->value;
        if (fk == "name") {
          if (!string(fv, fp / fk, out.name)) return false;
        } else if (fk == "arguments") {
          // Arguments are JSON text; some servers send the object itself.
          if (fv.IsObject() || fv.IsArray()) {
            out.arguments.clear();
            append_compact(out.arguments, fv);
          } else if (!string(fv, fp / fk, out.arguments)) {
            return false;
          }
        }
      }
    }
  }
  return has_function || missing(p / "function");
}

bool reader::part(const value& x, const path& p, content_part& out) {
  if (!object(x, p)) return false;
  auto type = find(x, "type");
  if (type == nullptr) return missing(p / "type");
  if (!type->IsString()) return expected(p / "type", "string", *type);
  if (view(*type) == "text") {
    out.type = content_part::kind::text;
    auto text = find(x, "text");
    if (text == nullptr) return missing(p / "text");
    return required_string(*text, p / "text", out.text);
  }
  if (view(*type) == "image_url") {
    out.type = content_part::kind::image_url;
    auto ip = p / "image_url";
    auto image = find(x, "image_url");
    if (image == nullptr) return missing(ip);
    // Some clients send the URL itself instead of an object.
    if (image->IsString()) return required_string(*image, ip, out.url);
    if (!object(*image, ip)) return false;
    auto url = find(*image, "url");
    if (url == nullptr) return missing(ip / "url");
    if (!required_string(*url, ip / "url", out.url)) return false;
    if (auto detail = find(*image, "detail"))
      return string(*detail, ip / "detail", out.detail);
    return true;
  }
  std::string msg = "unsupported content part type '";
  append_printable(msg, view(*type).substr(0, 64), true);
  msg += '\'';
  return fail(p / "type", msg);
}

bool reader::message(const value& x, const path& p, chat_message& out,
                     bool in_request) {
  if (!object(x, p)) return false;
  bool has_role = false;
  for (auto i = x.MemberBegin(); i != x.MemberEnd(); ++i) {
    auto k = view(i->name);
    auto& v = i->value;
    auto vp = p / k;
    if (k == "role") {
      if (!required_string(v, vp, out.role)) return false;
      has_role = true;
    } else if (k == "content") {
      out.parts.clear();
      if (v.IsNull()) {
        out.content.reset();
      } else if (v.IsString()) {
        out.content.emplace(v.GetString(), v.GetStringLength());
      } else if (v.IsArray()) {
        out.content.reset();
        out.parts.resize(v.Size());
        for (rj::SizeType j = 0; j < v.Size(); ++j)
          if (!part(v[j], vp[j], out.parts[j])) return false;
      } else {
        return expected(vp, "string, array or null", v);
      }
    } else if (k == "tool_calls") {
      if (v.IsNull()) {
        out.tool_calls.clear();
        continue;
      }
      if (!array(v, vp)) return false;
      out.tool_calls.resize(v.Size());
      for (rj::SizeType j = 0; j < v.Size(); ++j)
        if (!tool_call(v[j], vp[j], out.tool_calls[j])) return false;
    } else if (k == "tool_call_id") {
      if (!string(v, vp, out.tool_call_id)) return false;
    } else if (k == "name") {
      if (!string(v, vp, out.name)) return false;
    }
  }
  if (has_role) return true;
  // A completion's message is the assistant's even when unlabelled.
  if (in_request) return missing(p / "role");
  out.role = "assistant";
  return true;
}

bool reader::tool(const value& x, const path& p, tool_spec& out) {
  if (!object(x, p)) return false;
  if (auto type = find(x, "type"); type != nullptr && !type->IsNull()) {
    if (!type->IsString()) return expected(p / "type", "string", *type);
    if (view(*type) != "function")
      return fail(p / "type", "expected \"function\"");
  }
  auto fp = p / "function";
  auto fn = find(x, "function");
  if (fn == nullptr) return missing(fp);
  if (!object(*fn, fp)) return false;
  auto name = find(*fn, "name");
  if (name == nullptr) return missing(fp / "name");
  if (!required_string(*name, fp / "name", out.name)) return false;
  out.description.clear();
  if (auto description = find(*fn, "description"))
    if (!string(*description, fp / "description", out.description))
      return false;
  out.parameters.clear();
  if (auto parameters = find(*fn, "parameters"))
    return raw_object(*parameters, fp / "parameters", out.parameters);
  return true;
}

bool reader::tool_choice(const value& x, const path& p,
                         std::optional<maritaca::tool_choice>& out) {
  if (x.IsNull()) {
    out.reset();
    return true;
  }
  if (x.IsString()) {
    auto mode = view(x);
    if (mode != "none" && mode != "auto" && mode != "required")
      return fail(p, "expected \"none\", \"auto\", \"required\" or an object");
    out.emplace().mode = mode;
    return true;
  }
  if (!x.IsObject()) return expected(p, "string or object", x);
  if (auto type = find(x, "type"); type != nullptr && !type->IsNull())
    if (!type->IsString() || view(*type) != "function")
      return fail(p / "type", "expected \"function\"");
  auto fp = p / "function";
  auto fn = find(x, "function");
  if (fn == nullptr) return missing(fp);
  if (!object(*fn, fp)) return false;
  auto name = find(*fn, "name");
  if (name == nullptr) return missing(fp / "name");
  auto& choice = out.emplace();
  choice.mode = "function";
  return required_string(*name, fp / "name", choice.function);
}

bool reader::response_format(const value& x, const path& p,
                             std::optional<maritaca::response_format>& out) {
  if (x.IsNull()) {
    out.reset();
    return true;
  }
  if (!object(x, p)) return false;
  auto type = find(x, "type");
  if (type == nullptr) return missing(p / "type");
  auto& format = out.emplace();
  if (!required_string(*type, p / "type", format.type)) return false;
  if (format.type == "text" || format.type == "json_object") return true;
  if (format.type != "json_schema")
    return fail(p / "type",
                "expected \"text\", \"json_object\" or \"json_schema\"");
  auto sp = p / "json_schema";
  auto schema = find(x, "json_schema");
  if (schema == nullptr) return missing(sp);
  if (!object(*schema, sp)) return false;
  for (auto i = schema->MemberBegin(); i != schema->MemberEnd(); ++i) {
    auto k = view(i->name);
    auto& v = i->value;
    if (k == "name") {
      if (!string(v, sp / k, format.schema_name)) return false;
    } else if (k == "schema") {
      if (!raw_object(v, sp / k, format.schema)) return false;
    } else if (k == "strict") {
      if (!boolean(v, sp / k, format.strict)) return false;
    }
  }
  return true;
}

bool reader::request(const value& x, chat_request& out) {
  const path root;
  if (!object(x, root)) return false;
  bool has_model = false;
  bool has_messages = false;
  std::optional<int64_t> max_completion_tokens;
  for (auto i = x.MemberBegin(); i != x.MemberEnd(); ++i) {
    auto k = view(i->name);
    auto& v = i->value;
    auto p = root / k;
    bool ok = true;
    if (k == "model") {
      ok = required_string(v, p, out.model);
      has_model = true;
    } else if (k == "messages") {
      if (!array(v, p)) return false;
      has_messages = true;
      out.messages.resize(v.Size());
      for (rj::SizeType j = 0; j < v.Size() && ok; ++j)
        ok = message(v[j], p[j], out.messages[j], true);
    } else if (k == "temperature") {
      ok = number(v, p, out.temperature);
    } else if (k == "top_p") {
      ok = number(v, p, out.top_p);
    } else if (k == "max_tokens") {
      ok = integer(v, p, out.max_tokens);
    } else if (k == "max_completion_tokens") {
      ok = integer(v, p, max_completion_tokens);
    } else if (k == "n") {
      ok = integer(v, p, out.n);
    } else if (k == "stop") {
      // One stop sequence may come as a plain string.
      out.stop.clear();
      if (v.IsString()) {
        out.stop.emplace_back(view(v));
      } else if (!v.IsNull()) {
        if (!array(v, p)) return false;
        out.stop.resize(v.Size());
        for (rj::SizeType j = 0; j < v.Size() && ok; ++j)
          ok = required_string(v[j], p[j], out.stop[j]);
      }
    } else if (k == "frequency_penalty") {
      ok = number(v, p, out.frequency_penalty);
    } else if (k == "presence_penalty") {
      ok = number(v, p, out.presence_penalty);
    } else if (k == "seed") {
      ok = integer(v, p, out.seed);
    } else if (k == "user") {
      ok = string(v, p, out.user);
    } else if (k == "stream") {
      ok = boolean(v, p, out.stream);
    } else if (k == "stream_options") {
      if (!v.IsNull()) {
        if (!object(v, p)) return false;
        if (auto include = find(v, "include_usage"))
          ok = boolean(*include, p / "include_usage", out.include_usage);
      }
    } else if (k == "tools") {
      out.tools.clear();
      if (!v.IsNull()) {
        if (!array(v, p)) return false;
        out.tools.resize(v.Size());
        for (rj::SizeType j = 0; j < v.Size() && ok; ++j)
          ok = tool(v[j], p[j], out.tools[j]);
      }
    } else if (k == "tool_choice") {
      ok = tool_choice(v, p, out.tool_choice);
    } else if (k == "response_format") {
      ok = response_format(v, p, out.response_format);
    }
    if (!ok) return false;
  }
  if (!has_model) return missing(root / "model");
  if (!has_messages) return missing(root / "messages");
  // The newer OpenAI name of max_tokens.
  if (!out.max_tokens && max_completion_tokens)
    out.max_tokens = max_completion_tokens;
  return true;
}

bool reader::completion(const value& x, chat_completion& out) {
  const path root;
  if (!object(x, root) || !no_error_member(x, root)) return false;
  bool has_choices = false;
  for (auto i = x.MemberBegin(); i != x.MemberEnd(); ++i) {
    auto k = view(i->name);
    auto& v = i->value;
    auto p = root / k;
    bool ok = true;
    if (k == "id") {
      ok = string(v, p, out.id);
    } else if (k == "created") {
      ok = timestamp(v, p, out.created);
    } else if (k == "model") {
      ok = string(v, p, out.model);
    } else if (k == "system_fingerprint") {
      ok = string(v, p, out.system_fingerprint);
    } else if (k == "usage") {
      ok = usage(v, p, out.usage);
    } else if (k == "choices") {
      if (!array(v, p)) return false;
      has_choices = true;
      out.choices.resize(v.Size());
      for (rj::SizeType j = 0; j < v.Size() && ok; ++j) {
        auto cp = p[j];
        auto& c = v[j];
        auto& choice = out.choices[j];
        choice.index = j;
        if (!object(c, cp)) return false;
        bool has_message = false;
        for (auto m = c.MemberBegin(); m != c.MemberEnd() && ok; ++m) {
          auto ck = view(m->name);
          if (ck == "index") {
            ok = integer(m->value, cp / ck, choice.index);
          } else if (ck == "message") {
            ok = message(m->value, cp / ck, choice.message, false);
            has_message = true;
          } else if (ck == "finish_reason") {
            ok = string(m->value, cp / ck, choice.finish_reason);
          }
        }
        if (ok && !has_message) return missing(cp / "message");
      }
    }
    if (!ok) return false;
  }
  return has_choices || missing(root / "choices");
}

bool reader::delta(const value& x, const path& p, chunk_choice& out) {
  if (x.IsNull()) return true;
  if (!object(x, p)) return false;
  for (auto i = x.MemberBegin(); i != x.MemberEnd(); ++i) {
    auto k = view(i->name);
    auto& v = i->value;
    if (k == "content") {
      if (!string(v, p / k, out.content)) return false;
    } else if (k == "role") {
      if (!string(v, p / k, out.role)) return false;
    } else if (k == "tool_calls" && !v.IsNull()) {
      auto tp = p / k;
      if (!array(v, tp)) return false;
      out.tool_calls.resize(v.Size());
      for (rj::SizeType j = 0; j < v.Size(); ++j) {
        auto cp = tp[j];
        auto& c = v[j];
        auto& call = out.tool_calls[j];
        call = tool_call_delta{};
        call.index = j;
        if (!object(c, cp)) return false;
        for (auto m = c.MemberBegin(); m != c.MemberEnd(); ++m) {
          auto ck = view(m->name);
          auto& cv = m->value;
          bool ok = true;
          if (ck == "index") {
            ok = integer(cv, cp / ck, call.index);
          } else if (ck == "id") {
            ok = string(cv, cp / ck, call.id);
          } else if (ck == "type") {
            ok = string(cv, cp / ck, call.type);
          } else if (ck == "function" && !cv.IsNull()) {
            auto fp = cp / ck;
            if (!object(cv, fp)) return false;
            if (auto name = find(cv, "name"))
              ok = string(*name, fp / "name", call.name);
            if (auto args = find(cv, "arguments"); ok && args)
              ok = string(*args, fp / "arguments", call.arguments);
          }
          if (!ok) return false;
        }
      }
    }
  }
  return true;
}

bool reader::chunk(const value& x, completion_chunk& out) {
  const path root;
  if (!object(x, root) || !no_error_member(x, root)) return false;
  // Reuse the strings and vectors of `out` (callers decode chunk after
  // chunk into one object), resetting what a chunk may leave out.
  out.id.clear();
  out.model.clear();
  out.created = 0;
  out.usage.reset();
  bool has_choices = false;
  for (auto i = x.MemberBegin(); i != x.MemberEnd(); ++i) {
    auto k = view(i->name);
    auto& v = i->value;
    auto p = root / k;
    bool ok = true;
    if (k == "id") {
      ok = string(v, p, out.id);
    } else if (k == "created") {
      ok = timestamp(v, p, out.created);
    } else if (k == "model") {
      ok = string(v, p, out.model);
    } else if (k == "usage") {
      ok = usage(v, p, out.usage);
    } else if (k == "choices") {
      if (!array(v, p)) return false;
      has_choices = true;
      out.choices.resize(v.Size());
      for (rj::SizeType j = 0; j < v.Size() && ok; ++j) {
        auto cp = p[j];
        auto& c = v[j];
        auto& choice = out.choices[j];
        choice.index = j;
        choice.role.clear();
        choice.content.clear();
        choice.tool_calls.clear();
        choice.finish_reason.clear();
        if (!object(c, cp)) return false;
        for (auto m = c.MemberBegin(); m != c.MemberEnd() && ok; ++m) {
          auto ck = view(m->name);
          if (ck == "delta")
            ok = delta(m->value, cp / ck, choice);
          else if (ck == "index")
            ok = integer(m->value, cp / ck, choice.index);
          else if (ck == "finish_reason")
            ok = string(m->value, cp / ck, choice.finish_reason);
        }
      }
    }
    if (!ok) return false;
  }
  if (!has_choices) {
    out.choices.clear();
    // Only the usage chunk may do without choices.
    if (!out.usage) return missing(root / "choices");
  }
  return true;
}

bool reader::model(const value& x, const path& p, model_info& out) {
  if (!object(x, p)) return false;
  bool has_id = false;
  for (auto i = x.MemberBegin(); i != x.MemberEnd(); ++i) {
    auto k = view(i->name);
    auto& v = i->value;
    bool ok = true;
    if (k == "id") {
      ok = required_string(v, p / k, out.id);
      has_id = true;
    } else if (k == "created") {
      ok = timestamp(v, p / k, out.created);
    } else if (k == "owned_by") {
      ok = string(v, p / k, out.owned_by);
    }
    if (!ok) return false;
  }
  return has_id || missing(p / "id");
}

/// Marks the bytes of `w` (read little-endian) that are a quote, a
/// backslash, a control character or not ASCII: the bytes a string scan
/// must look at one by one. The lowest mark is exact (a borrow can only
/// mark bytes above a true one).
uint64_t special(uint64_t w) noexcept {
  constexpr uint64_t ones = 0x0101010101010101u;
  constexpr uint64_t highs = 0x8080808080808080u;
  auto zero_byte = [](uint64_t v) { return (v - ones) & ~v & highs; };
  return zero_byte(w ^ (ones * '"')) | zero_byte(w ^ (ones * '\\')) |
         ((w - ones * 0x20) & ~w & highs) | (w & highs);
}

/// Returns how many bytes from `in` on are plain (not marked by
/// `special`), scanning 16 bytes at a time with SSE2 where there is
/// SSE2, else 8 at a time; a tail of fewer than 8 bytes is left to the
/// caller's byte-by-byte path.
std::size_t plain_prefix(const char* in, const char* end) noexcept {
  const char* p = in;
#if defined(__SSE2__)
  const auto quote = _mm_set1_epi8('"');
  const auto backslash = _mm_set1_epi8('\\');
  const auto last_control = _mm_set1_epi8(0x1f);
  while (end - p >= 16) {
    auto v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    // Control bytes are those whose unsigned maximum with 0x1f is 0x1f;
    // the sign bit of each byte marks non-ASCII.
    auto hits = _mm_or_si128(
        _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
        _mm_cmpeq_epi8(_mm_max_epu8(v, last_control), last_control));
    auto marks = static_cast<unsigned>(_mm_movemask_epi8(hits)) |
                 static_cast<unsigned>(_mm_movemask_epi8(v));
    if (marks != 0)
      return static_cast<std::size_t>(p - in) +
             static_cast<std::size_t>(std::countr_zero(marks));
    p += 16;
  }
#endif
  if constexpr (std::endian::native == std::endian::little) {
    while (end - p >= 8) {
      uint64_t w;
      std::memcpy(&w, p, 8);
      if (auto marks = special(w); marks != 0)
        return static_cast<std::size_t>(p - in) +
               static_cast<std::size_t>(std::countr_zero(marks) / 8);
      p += 8;
    }
  }
  return static_cast<std::size_t>(p - in);
}

/// Parses a strict subset of JSON into SAX events for `Handler`, without
/// RapidJSON: strings without `\u` escapes or control characters, integers
/// of at most 18 digits without fraction or exponent, nesting of at most 32
/// levels, well-formed UTF-8 (ASCII outside strings). Within that subset it
/// emits exactly the events `sax_parse` would (numbers as `Int64`, strings
/// unescaped in place in `p`), so a handler fills its result the same way.
/// Returns false for anything else (or when the handler refuses an event):
/// the caller then takes the general path, which also names the failure.
/// Stream chunks are almost always inside the subset.
template <class Handler>
class fast_reader {
public:
  fast_reader(char* p, char* end, Handler& handler)
      : p_(p), end_(end), h_(handler) {
    // Nothing else.
  }

  /// Parses the whole text: one value, whitespace around it.
  bool parse() { return skip_ws() && value(0) && (skip_ws(), p_ == end_); }

private:
  static constexpr unsigned max_fast_depth = 32;

  /// Skips whitespace; returns whether a byte follows.
  bool skip_ws() noexcept {
    while (p_ < end_ &&
           (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t'))
      ++p_;
    return p_ < end_;
  }

  /// Reads the string at `p_` (an opening quote), unescaping it in place
  /// and checking its UTF-8.
  bool string(const char*& s, rj::SizeType& n) noexcept {
    char* in = ++p_;
    char* out = in;
    s = in;
    for (;;) {
      // Plain bytes a block at a time (moved only once an escape shifted
      // the text).
      auto plain = plain_prefix(in, end_);
      if (out != in) std::memmove(out, in, plain);
      in += plain;
      out += plain;
      if (in == end_) return false;
      auto c = static_cast<unsigned char>(*in);
      if (c == '"') break;
      if (c < 0x20) return false;
      if (c >= 0x80) {
        auto len = utf8_sequence(reinterpret_cast<unsigned char*>(in),
                                 static_cast<size_t>(end_ - in));
        if (len == 0) return false;
        std::memmove(out, in, len);
        in += len;
        out += len;
        continue;
      }
      if (c == '\\') {
        if (++in == end_) return false;
        switch (*in) {
        case '"':
        case '\\':
        case '/':
          c = static_cast<unsigned char>(*in);
          break;
        case 'b':
          c = '\b';
          break;
        case 'f':
          c = '\f';
          break;
        case 'n':
          c = '\n';
          break;
        case 'r':
          c = '\r';
          break;
        case 't':
          c = '\t';
          break;
        default:
          return false; // \u escapes (and errors) take the general path
        }
      }
      *out++ = static_cast<char>(c);
      ++in;
    }
    n = static_cast<rj::SizeType>(out - s);
    p_ = in + 1;
    return true;
  }

  bool literal(std::string_view word) noexcept {
    if (static_cast<size_t>(end_ - p_) < word.size() ||
        std::memcmp(p_, word.data(), word.size()) != 0)
      return false;
    p_ += word.size();
    return true;
  }

  bool number() {
    bool minus = *p_ == '-';
    if (minus) ++p_;
    auto first = p_;
    int64_t x = 0;
    // At most 18 digits fit an int64_t whatever they are; longer numbers
    // (and their overflow) are left to the general path.
    while (p_ < end_ && *p_ >= '0' && *p_ <= '9') {
      if (p_ - first == 18) return false;
      x = x * 10 + (*p_ - '0');
      ++p_;
    }
    auto digits = p_ - first;
    if (digits == 0 || (digits > 1 && *first == '0')) return false;
    if (p_ < end_ && (*p_ == '.' || *p_ == 'e' || *p_ == 'E')) return false;
    return h_.Int64(minus ? -x : x);
  }

  bool value(unsigned depth) {
    switch (*p_) {
    case '{':
      return object(depth + 1);
    case '[':
      return array(depth + 1);
    case '"': {
      const char* s = nullptr;
      rj::SizeType n = 0;
      const char* token = p_;
      if (!string(s, n)) return false;
      // The handler may want to know where the token lay (quotes included).
      if constexpr (requires { h_.raw_string(token, token); })
        h_.raw_string(token, p_);
      return h_.String(s, n, false);
    }
    case 't':
      return literal("true") && h_.Bool(true);
    case 'f':
      return literal("false") && h_.Bool(false);
    case 'n':
      return literal("null") && h_.Null();
    default:
      if (*p_ == '-' || (*p_ >= '0' && *p_ <= '9')) return number();
      return false;
    }
  }

  bool object(unsigned depth) {
    if (depth > max_fast_depth || !h_.StartObject()) return false;
    ++p_;
    if (!skip_ws()) return false;
    rj::SizeType members = 0;
    if (*p_ == '}') {
      ++p_;
      return h_.EndObject(0);
    }
    for (;;) {
      if (*p_ != '"') return false;
      const char* s = nullptr;
      rj::SizeType n = 0;
      if (!string(s, n) || !h_.Key(s, n, false)) return false;
      if (!skip_ws() || *p_ != ':') return false;
      ++p_;
      if (!skip_ws() || !value(depth)) return false;
      ++members;
      if (!skip_ws()) return false;
      if (*p_ == '}') {
        ++p_;
        return h_.EndObject(members);
      }
      if (*p_ != ',') return false;
      ++p_;
      if (!skip_ws()) return false;
    }
  }

  bool array(unsigned depth) {
    if (depth > max_fast_depth || !h_.StartArray()) return false;
    ++p_;
    if (!skip_ws()) return false;
    rj::SizeType elements = 0;
    if (*p_ == ']') {
      ++p_;
      return h_.EndArray(0);
    }
    for (;;) {
      if (!value(depth)) return false;
      ++elements;
      if (!skip_ws()) return false;
      if (*p_ == ']') {
        ++p_;
        return h_.EndArray(elements);
      }
      if (*p_ != ',') return false;
      ++p_;
      if (!skip_ws()) return false;
    }
  }

  char* p_;
  char* end_;
  Handler& h_;
};

// -- stream chunks by SAX -----------------------------------------------------

/// Whether `k` is the literal `lit` (a length check, then a fixed-size
/// compare the compiler expands inline).
template <std::size_t N>
bool is(std::string_view k, const char (&lit)[N]) noexcept {
  return k.size() == N - 1 && std::memcmp(k.data(), lit, N - 1) == 0;
}

/// Decodes a stream chunk straight from the parser's events into a
/// `completion_chunk`: no DOM, no second walk. It accepts what
/// `reader::chunk` accepts and fills `out` the same way (members in document
/// order, so duplicates end as they do there). Any event it does not expect
/// there (a mistyped member, a non-null top-level `error`, a missing
/// `choices`) stops the parse; the caller then decodes again through the DOM
/// `reader`, whose failure message and precedence of failures stay the
/// reference.
class chunk_handler {
public:
  explicit chunk_handler(completion_chunk& out) : out_(out) {
    // Nothing else.
  }

  /// Whether the whole chunk was accepted.
  bool complete() const noexcept {
    return at_ == ctx::done && (has_choices_ || out_.usage.has_value());
  }

  bool Null() {
    if (ignored()) return scalar();
    if (field_ == fld::content) ++content_values_;
    switch (field_) {
    case fld::id:
    case fld::model:
    case fld::role:
    case fld::content:
    case fld::finish_reason:
    case fld::call_id:
    case fld::call_type:
    case fld::name:
    case fld::arguments:
      target().clear();
      return scalar();
    case fld::total_tokens:
      has_total_ = false;
      return scalar();
    case fld::created:
    case fld::choice_index:
    case fld::call_index:
    case fld::prompt_tokens:
    case fld::completion_tokens:
    case fld::cached_tokens:
    case fld::delta:
    case fld::tool_calls:
    case fld::function:
    case fld::details:
      return scalar(); // null keeps the value, or means "none"
    case fld::usage:
      out_.usage.reset();
      return scalar();
    default:
      return false;
    }
  }

  bool Bool(bool) { return ignored() && scalar(); }
  bool Int(int x) { return Int64(x); }
  bool Uint(unsigned x) { return Int64(x); }

  bool Int64(int64_t x) {
    if (ignored()) return scalar();
    auto* p = integer_target();
    if (p == nullptr) return false;
    *p = x;
    if (field_ == fld::total_tokens) has_total_ = true;
    return scalar();
  }

  bool Uint64(uint64_t) { return ignored() && scalar(); }

  bool Double(double d) {
    if (ignored()) return scalar();
    auto* p = integer_target();
    if (p == nullptr) return false;
    bool in_range = d >= -9.2e18 && d <= 9.2e18;
    // `created` truncates; integers must be integral.
    if (!in_range || (field_ != fld::created && d != std::trunc(d)))
      return false;
    *p = static_cast<int64_t>(d);
    if (field_ == fld::total_tokens) has_total_ = true;
    return scalar();
  }

  bool RawNumber(const char*, rj::SizeType, bool) {
    return false; // depth_limited converts numbers
  }

  /// The raw text of the string token that `String` gets next lies in
  /// [`begin`, `end`) of the input, quotes included (fast_reader only).
  void raw_string(const char* begin, const char* end) noexcept {
    raw_begin_ = begin;
    raw_end_ = end;
  }

  /// Where the content string lay, when the chunk is one
  /// `sse::chunk_decoder` may memoize: one choice object in the whole
  /// document (a repeated `choices` member would reset the content set in
  /// the first), its content set once by a string (whose raw token
  /// `raw_string` noted), no tool calls, no usage. Offsets are from
  /// `base`, the start of the input.
  wire::chunk_layout layout(const char* base) const noexcept {
    wire::chunk_layout result;
    if (choice_objects_ != 1 || content_values_ != 1 ||
        content_begin_ == nullptr || out_.choices.size() != 1 ||
        !out_.choices[0].tool_calls.empty() || out_.usage)
      return result;
    result.memo = true;
    result.content_begin = static_cast<std::size_t>(content_begin_ - base);
    result.content_end = static_cast<std::size_t>(content_end_ - base);
    return result;
  }

  bool String(const char* s, rj::SizeType n, bool) {
    if (ignored()) return scalar();
    if (field_ == fld::content) {
      ++content_values_;
      content_begin_ = raw_begin_;
      content_end_ = raw_end_;
    }
    raw_begin_ = nullptr;
    switch (field_) {
    case fld::id:
    case fld::model:
    case fld::role:
    case fld::content:
    case fld::finish_reason:
    case fld::call_id:
    case fld::call_type:
    case fld::name:
    case fld::arguments:
      target().assign(s, n);
      return scalar();
    default:
      return false;
    }
  }

  bool Key(const char* s, rj::SizeType n, bool) {
    if (skip_ > 0) return true;
    std::string_view k{s, n};
    field_ = fld::ignore;
    switch (at_) {
    case ctx::root:
      if (is(k, "choices"))
        field_ = fld::choices;
      else if (is(k, "id"))
        field_ = fld::id;
      else if (is(k, "model"))
        field_ = fld::model;
      else if (is(k, "created"))
        field_ = fld::created;
      else if (is(k, "usage"))
        field_ = fld::usage;
      else if (is(k, "error"))
        return false; // the DOM reader (or is_error_payload) decides
      break;
    case ctx::choice:
      if (is(k, "delta"))
        field_ = fld::delta;
      else if (is(k, "index"))
        field_ = fld::choice_index;
      else if (is(k, "finish_reason"))
        field_ = fld::finish_reason;
      break;
    case ctx::delta:
      if (is(k, "content"))
        field_ = fld::content;
      else if (is(k, "role"))
        field_ = fld::role;
      else if (is(k, "tool_calls"))
        field_ = fld::tool_calls;
      break;
    case ctx::call:
      if (is(k, "index"))
        field_ = fld::call_index;
      else if (is(k, "id"))
        field_ = fld::call_id;
      else if (is(k, "type"))
        field_ = fld::call_type;
      else if (is(k, "function"))
        field_ = fld::function;
      break;
    case ctx::function:
      // Only the first `name` and `arguments` count (as `find` does).
      if (is(k, "name") && !seen_name_) {
        seen_name_ = true;
        field_ = fld::name;
      } else if (is(k, "arguments") && !seen_arguments_) {
        seen_arguments_ = true;
        field_ = fld::arguments;
      }
      break;
    case ctx::usage:
      if (is(k, "prompt_tokens"))
        field_ = fld::prompt_tokens;
      else if (is(k, "completion_tokens"))
        field_ = fld::completion_tokens;
      else if (is(k, "total_tokens"))
        field_ = fld::total_tokens;
      else if (is(k, "prompt_tokens_details"))
        field_ = fld::details;
      break;
    case ctx::details:
      if (is(k, "cached_tokens") && !seen_cached_) {
        seen_cached_ = true;
        field_ = fld::cached_tokens;
      }
      break;
    default:
      return false;
    }
    return true;
  }

  bool StartObject() {
    if (skip_ > 0 || field_ == fld::ignore) return start_skip();
    switch (at_) {
    case ctx::start:
      out_.id.clear();
      out_.model.clear();
      out_.created = 0;
      out_.usage.reset();
      return enter(ctx::root);
    case ctx::choices: {
      ++choice_objects_;
      auto j = choice_count_++;
      if (j < out_.choices.size()) {
        auto& c = out_.choices[j];
        c.role.clear();
        c.content.clear();
        c.tool_calls.clear();
        c.finish_reason.clear();
      } else {
        out_.choices.emplace_back();
      }
      choice_ = &out_.choices[j];
      choice_->index = static_cast<int64_t>(j);
      return enter(ctx::choice);
    }
    case ctx::calls: {
      auto j = call_count_++;
      if (j < choice_->tool_calls.size())
        choice_->tool_calls[j] = tool_call_delta{};
      else
        choice_->tool_calls.emplace_back();
      call_ = &choice_->tool_calls[j];
      call_->index = static_cast<int64_t>(j);
      return enter(ctx::call);
    }
    default:
      break;
    }
    switch (field_) {
    case fld::usage:
      out_.usage.emplace();
      has_total_ = false;
      return enter(ctx::usage);
    case fld::delta:
      return enter(ctx::delta);
    case fld::function:
      seen_name_ = false;
      seen_arguments_ = false;
      return enter(ctx::function);
    case fld::details:
      seen_cached_ = false;
      return enter(ctx::details);
    default:
      return false;
    }
  }

  bool EndObject(rj::SizeType) {
    if (skip_ > 0) return end_skip();
    switch (at_) {
    case ctx::root:
      at_ = ctx::done;
      if (!has_choices_) out_.choices.clear();
      return true;
    case ctx::choice:
      return leave(ctx::choices);
    case ctx::call:
      return leave(ctx::calls);
    case ctx::delta:
      return leave(ctx::choice);
    case ctx::function:
      return leave(ctx::call);
    case ctx::usage: {
      // Some servers leave the sum out.
      auto& u = *out_.usage;
      if (!has_total_) u.total_tokens = u.prompt_tokens + u.completion_tokens;
      return leave(ctx::root);
    }
    case ctx::details:
      return leave(ctx::usage);
    default:
      return false;
    }
  }

  bool StartArray() {
    if (skip_ > 0 || field_ == fld::ignore) return start_skip();
    if (field_ == fld::choices) {
      has_choices_ = true;
      choice_count_ = 0;
      return enter(ctx::choices);
    }
    if (field_ == fld::tool_calls) {
      call_count_ = 0;
      return enter(ctx::calls);
    }
    return false;
  }

  bool EndArray(rj::SizeType) {
    if (skip_ > 0) return end_skip();
    if (at_ == ctx::choices) {
      out_.choices.resize(choice_count_);
      return leave(ctx::root);
    }
    if (at_ == ctx::calls) {
      choice_->tool_calls.resize(call_count_);
      return leave(ctx::delta);
    }
    return false;
  }

private:
  /// Where the parser is.
  enum class ctx : uint8_t {
    start,
    root,
    choices,
    choice,
    delta,
    calls,
    call,
    function,
    usage,
    details,
    done,
  };

  /// What the next value is (after a key).
  enum class fld : uint8_t {
    none,
    ignore,
    id,
    created,
    model,
    usage,
    choices,
    choice_index,
    delta,
    finish_reason,
    role,
    content,
    tool_calls,
    call_index,
    call_id,
    call_type,
    function,
    name,
    arguments,
    prompt_tokens,
    completion_tokens,
    total_tokens,
    details,
    cached_tokens,
  };

  /// Whether the current value goes nowhere (inside an unknown member).
  bool ignored() const noexcept { return skip_ > 0 || field_ == fld::ignore; }

  /// A scalar value ended. Inside arrays we read, a scalar element is a
  /// type error.
  bool scalar() {
    if (skip_ > 0) return true;
    if (at_ == ctx::choices || at_ == ctx::calls || at_ == ctx::start)
      return false;
    field_ = fld::none;
    return true;
  }

  bool start_skip() {
    if (skip_ == 0 &&
        (at_ == ctx::choices || at_ == ctx::calls || at_ == ctx::start))
      return false;
    ++skip_;
    return true;
  }

  bool end_skip() {
    if (--skip_ == 0) field_ = fld::none;
    return true;
  }

  bool enter(ctx c) {
    at_ = c;
    field_ = fld::none;
    return true;
  }

  bool leave(ctx parent) {
    at_ = parent;
    field_ = fld::none;
    return true;
  }

  std::string& target() {
    switch (field_) {
    case fld::id:
      return out_.id;
    case fld::model:
      return out_.model;
    case fld::role:
      return choice_->role;
    case fld::content:
      return choice_->content;
    case fld::finish_reason:
      return choice_->finish_reason;
    case fld::call_id:
      return call_->id;
    case fld::call_type:
      return call_->type;
    case fld::name:
      return call_->name;
    default:
      return call_->arguments;
    }
  }

  int64_t* integer_target() {
    switch (field_) {
    case fld::created:
      return &out_.created;
    case fld::choice_index:
      return &choice_->index;
    case fld::call_index:
      return &call_->index;
    case fld::prompt_tokens:
      return &out_.usage->prompt_tokens;
    case fld::completion_tokens:
      return &out_.usage->completion_tokens;
    case fld::total_tokens:
      return &out_.usage->total_tokens;
    case fld::cached_tokens:
      return &out_.usage->cached_tokens;
    default:
      return nullptr;
    }
  }

  completion_chunk& out_;
  chunk_choice* choice_ = nullptr;
  tool_call_delta* call_ = nullptr;
  size_t choice_count_ = 0;
  size_t call_count_ = 0;
  /// Depth inside an ignored object or array.
  unsigned skip_ = 0;
  ctx at_ = ctx::start;
  fld field_ = fld::none;
  bool has_choices_ = false;
  bool has_total_ = false;
  bool seen_name_ = false;
  bool seen_arguments_ = false;
  bool seen_cached_ = false;
  /// The raw token of the string being read (see raw_string).
  const char* raw_begin_ = nullptr;
  const char* raw_end_ = nullptr;
  /// How often `content` got a value (string or null), and the raw token
  /// of the last string it got.
  unsigned content_values_ = 0;
  /// Choice objects begun, in every `choices` member.
  unsigned choice_objects_ = 0;
  const char* content_begin_ = nullptr;
  const char* content_end_ = nullptr;
};

/// Renders FastAPI's validation errors (`[{"loc": [...], "msg": ...}]`) as
/// `body.messages: field required; ...`, anything else as compact JSON.
std::string render_detail(const value& x) {
  std::string out;
  if (x.IsArray()) {
    for (auto& item : x.GetArray()) {
      const value* msg = item.IsObject() ? find(item, "msg") : nullptr;
      if (msg == nullptr || !msg->IsString()) {
        out.clear();
        break;
      }
      if (!out.empty()) out += "; ";
      if (auto loc = find(item, "loc"); loc != nullptr && loc->IsArray()) {
        bool first = true;
        for (auto& part : loc->GetArray()) {
          if (!first) out += '.';
          first = false;
          if (part.IsString())
            out += view(part);
          else
            append_compact(out, part);
        }
        out += ": ";
      }
      out += view(*msg);
    }
    if (!out.empty()) return out;
  }
  append_compact(out, x);
  return out;
}

/// Returns `text` cut to `opaque_limit` bytes (with "..." when cut) and
/// made printable.
std::string opaque_text(std::string_view text) {
  std::string out;
  if (text.size() <= opaque_limit) {
    append_printable(out, text, false);
  } else {
    append_printable(out, text.substr(0, utf8_floor(text, opaque_limit - 3)),
                     false);
    out += "...";
  }
  return out;
}

/// Reads scalar `x` into `out` as text (error codes are strings or numbers).
void scalar_text(const value& x, std::string& out) {
  out.clear();
  if (x.IsString())
    out.assign(view(x));
  else if (x.IsNumber() || x.IsBool())
    append_compact(out, x);
}

/// Answers `is_error_payload`: finds a non-null `error` member at depth 1
/// and stops parsing there.
struct error_member_finder
    : rj::BaseReaderHandler<rj::UTF8<>, error_member_finder> {
  unsigned depth = 0;
  bool after_error_key = false;
  bool found = false;

  /// Called for every value; returns false (stop) once the answer is known.
  bool Default() {
    after_error_key = false;
    return true;
  }
  bool Null() {
    after_error_key = false;
    return true;
  }
  bool Key(const char* s, rj::SizeType n, bool) {
    after_error_key = depth == 1 && std::string_view{s, n} == "error";
    return true;
  }
  bool String(const char*, rj::SizeType, bool) { return value(); }
  bool Bool(bool) { return value(); }
  bool Int(int) { return value(); }
  bool Uint(unsigned) { return value(); }
  bool Int64(int64_t) { return value(); }
  bool Uint64(uint64_t) { return value(); }
  bool Double(double) { return value(); }
  bool StartObject() { return value() && ++depth > 0; }
  bool EndObject(rj::SizeType) {
    --depth;
    return true;
  }
  bool StartArray() { return value() && ++depth > 0; }
  bool EndArray(rj::SizeType) {
    --depth;
    return true;
  }

  bool value() {
    if (after_error_key) {
      found = true;
      return false;
    }
    return true;
  }
};

} // namespace

// -- public API ---------------------------------------------------------------

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  auto p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size();
  out.push_back('"');
  // Copy runs of bytes that need no escaping in one go.
  size_t run = 0;
  for (size_t i = 0; i < n;) {
    unsigned char c = p[i];
    if (c >= 0x80) {
      if (auto len = utf8_sequence(p + i, n - i); len > 0) {
        i += len;
        continue;
      }
      // Ill-formed byte: U+FFFD REPLACEMENT CHARACTER.
      out.append(s.data() + run, i - run);
      out += "\xEF\xBF\xBD";
      run = ++i;
      continue;
    }
    if (c >= 0x20 && c != '"' && c != '\\') {
      ++i;
      continue;
    }
    out.append(s.data() + run, i - run);
    switch (c) {
    case '"':
      out += "\\\"";
      break;
    case '\\':
      out += "\\\\";
      break;
    case '\n':
      out += "\\n";
      break;
    case '\r':
      out += "\\r";
      break;
    case '\t':
      out += "\\t";
      break;
    case '\b':
      out += "\\b";
      break;
    case '\f':
      out += "\\f";
      break;
    default:
      out += "\\u00";
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 0xF]);
    }
    run = ++i;
  }
  out.append(s.data() + run, n - run);
  out.push_back('"');
}

std::string encode_request(const chat_request& x) {
  std::string out;
  out.reserve(estimate_size(x));
  encoder e{out};
  e.begin_object();
  e.member("model", x.model);
  e.key("messages");
  e.begin_array();
  for (auto& m : x.messages)
    encode_message(e, m);
  e.end_array();
  auto optional_number = [&](std::string_view k, std::optional<double> v) {
    if (v) {
      e.key(k);
      e.number(*v);
    }
  };
  auto optional_integer = [&](std::string_view k, std::optional<int64_t> v) {
    if (v) {
      e.key(k);
      e.integer(*v);
    }
  };
  optional_number("temperature", x.temperature);
  optional_number("top_p", x.top_p);
  optional_integer("max_tokens", x.max_tokens);
  optional_integer("n", x.n);
  if (!x.stop.empty()) {
    e.key("stop");
    e.begin_array();
    for (auto& s : x.stop)
      e.string(s);
    e.end_array();
  }
  optional_number("frequency_penalty", x.frequency_penalty);
  optional_number("presence_penalty", x.presence_penalty);
  optional_integer("seed", x.seed);
  e.optional_member("user", x.user);
  e.key("stream");
  e.boolean(x.stream);
  if (x.stream && x.include_usage) {
    e.key("stream_options");
    e.begin_object();
    e.key("include_usage");
    e.boolean(true);
    e.end_object();
  }
  if (!x.tools.empty()) {
    e.key("tools");
    e.begin_array();
    for (auto& t : x.tools)
      encode_tool(e, t);
    e.end_array();
  }
  if (x.tool_choice) {
    e.key("tool_choice");
    encode_tool_choice(e, *x.tool_choice);
  }
  if (x.response_format) {
    e.key("response_format");
    encode_response_format(e, *x.response_format);
  }
  e.end_object();
  return out;
}

namespace {

/// The roles of chat messages the service documents (developer: as the
/// Responses API and OpenAI's chat API take it).
bool is_known_role(std::string_view role) {
  return role == "system" || role == "user" || role == "assistant" ||
         role == "tool" || role == "developer";
}

/// `x` as a short text for an error message ("0.7", "-5", "2").
std::string number_text(double x) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), x);
  return ec == std::errc{} ? std::string{buf, end} : std::string{"?"};
}

/// At most the first 40 bytes of `s` (never half a UTF-8 sequence),
/// control characters as '?': safe to quote.
std::string printable(std::string_view s) {
  auto n = std::min<std::size_t>(s.size(), 40);
  while (n < s.size() && n > 0 &&
         (static_cast<unsigned char>(s[n]) & 0xc0) == 0x80)
    --n;
  std::string out{s.substr(0, n)};
  for (auto& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  return out;
}

} // namespace

failure validate_request(const chat_request& x) {
  auto bad = [](std::string field, std::string_view what) {
    field += ": ";
    field += what;
    return make_failure(errc::invalid_argument, std::move(field));
  };
  // Raw JSON members must parse and hold an object (empty means absent).
  auto check_object = [&](std::string_view json, std::string field) -> failure {
    json = without_bom(json);
    if (json.empty()) return {};
    if (auto err = check_json(json)) return bad(std::move(field), err.message);
    if (json[json.find_first_not_of(" \t\r\n")] != '{')
      return bad(std::move(field), "expected a JSON object");
    return {};
  };
  auto check_number = [&](const std::optional<double>& v,
                          std::string_view field) -> failure {
    if (v && !std::isfinite(*v))
      return bad(std::string{field}, "not a finite number");
    return {};
  };
  // A number must be finite and within [lo, hi] (the documented range).
  auto check_range = [&](const std::optional<double>& v, std::string_view field,
                         double lo, double hi) -> failure {
    if (auto err = check_number(v, field)) return err;
    if (v && (*v < lo || *v > hi))
      return bad(std::string{field}, "must be between " + number_text(lo) +
                                         " and " + number_text(hi) + ", not " +
                                         number_text(*v));
    return {};
  };
  auto check_count = [&](const std::optional<int64_t>& v,
                         std::string_view field, int64_t lo,
                         int64_t hi) -> failure {
    if (v && (*v < lo || *v > hi))
      return bad(std::string{field}, "must be between " + std::to_string(lo) +
                                         " and " + std::to_string(hi) +
                                         ", not " + std::to_string(*v));
    return {};
  };
  if (x.model.empty()) return bad("model", "empty");
  if (x.messages.empty()) return bad("messages", "empty");
  for (size_t i = 0; i < x.messages.size(); ++i) {
    auto& role = x.messages[i].role;
    auto field = "messages[" + std::to_string(i) + "].role";
    if (role.empty()) return bad(field, "empty");
    if (!is_known_role(role))
      return bad(field, "unknown role '" + printable(role) +
                            "' (system, developer, user, assistant or tool)");
  }
  if (auto err = check_range(x.temperature, "temperature", 0, 2)) return err;
  if (auto err = check_range(x.top_p, "top_p", 0, 1)) return err;
  if (auto err = check_range(x.frequency_penalty, "frequency_penalty", -2, 2))
    return err;
  if (auto err = check_range(x.presence_penalty, "presence_penalty", -2, 2))
    return err;
  if (auto err = check_count(x.max_tokens, "max_tokens", 1, INT32_MAX))
    return err;
  if (auto err = check_count(x.n, "n", 1, 128)) return err;
  for (size_t i = 0; i < x.tools.size(); ++i) {
    auto field = "tools[" + std::to_string(i) + "].function";
    if (x.tools[i].name.empty()) return bad(field + ".name", "empty");
    if (auto err = check_object(x.tools[i].parameters, field + ".parameters"))
      return err;
  }
  if (auto& choice = x.tool_choice) {
    auto& mode = choice->mode;
    if (mode == "function") {
      if (choice->function.empty())
        return bad("tool_choice.function.name", "empty");
    } else if (mode != "none" && mode != "auto" && mode != "required") {
      return bad("tool_choice", "unknown mode '" + mode + "'");
    }
  }
  if (auto& format = x.response_format) {
    if (format->type == "json_schema") {
      if (auto err = check_object(format->schema,
                                  "response_format.json_schema.schema"))
        return err;
    } else if (format->type != "text" && format->type != "json_object") {
      return bad("response_format.type", "unknown type '" + format->type + "'");
    }
  }
  return {};
}

failure decode_request(std::string_view json, chat_request& out) {
  parsed_document<4096, 8192, 2048> doc;
  if (auto err = doc.parse(json)) return err;
  out = chat_request{};
  reader r;
  r.request(doc.root(), out);
  return std::move(r.error);
}

std::string encode_completion(const chat_completion& x) {
  std::string out;
  encoder e{out};
  e.begin_object();
  e.member("id", x.id);
  e.member("object", "chat.completion");
  e.key("created");
  e.integer(x.created);
  e.member("model", x.model);
  e.optional_member("system_fingerprint", x.system_fingerprint);
  e.key("choices");
  e.begin_array();
  for (auto& c : x.choices) {
    e.begin_object();
    e.key("index");
    e.integer(c.index);
    e.key("message");
    encode_message(e, c.message);
    e.key("finish_reason");
    e.string_or_null(c.finish_reason);
    e.end_object();
  }
  e.end_array();
  if (x.usage) {
    e.key("usage");
    encode_usage(e, *x.usage);
  }
  e.end_object();
  return out;
}

failure decode_completion(std::string_view json, chat_completion& out) {
  parsed_document<4096, 8192, 2048> doc;
  if (auto err = doc.parse(json)) return err;
  out = chat_completion{};
  reader r;
  r.completion(doc.root(), out);
  return std::move(r.error);
}

std::string encode_chunk(const completion_chunk& x) {
  std::string out;
  out.reserve(160 + x.id.size() + x.model.size() +
              (x.choices.empty() ? 0 : x.choices[0].content.size() + 64));
  encoder e{out};
  e.begin_object();
  e.member("id", x.id);
  e.member("object", "chat.completion.chunk");
  e.key("created");
  e.integer(x.created);
  e.member("model", x.model);
  e.key("choices");
  e.begin_array();
  for (auto& c : x.choices) {
    e.begin_object();
    e.key("index");
    e.integer(c.index);
    e.key("delta");
    e.begin_object();
    e.optional_member("role", c.role);
    e.optional_member("content", c.content);
    if (!c.tool_calls.empty()) {
      e.key("tool_calls");
      e.begin_array();
      for (auto& t : c.tool_calls) {
        e.begin_object();
        e.key("index");
        e.integer(t.index);
        e.optional_member("id", t.id);
        e.optional_member("type", t.type);
        e.key("function");
        e.begin_object();
        e.optional_member("name", t.name);
        // The first piece of a call (the one naming it) carries
        // `"arguments": ""` as OpenAI's stream does.
        if (t.id.empty())
          e.optional_member("arguments", t.arguments);
        else
          e.member("arguments", t.arguments);
        e.end_object();
        e.end_object();
      }
      e.end_array();
    }
    e.end_object();
    e.key("finish_reason");
    e.string_or_null(c.finish_reason);
    e.end_object();
  }
  e.end_array();
  if (x.usage) {
    e.key("usage");
    encode_usage(e, *x.usage);
  }
  e.end_object();
  return out;
}

namespace {

/// Decodes `json` by SAX into `out`: first with `fast_reader`, then with
/// RapidJSON. Returns false when neither accepted it (the DOM reader then
/// tells why). Never accepts a document with a top-level `error` member.
bool decode_chunk_sax(std::string_view json, completion_chunk& out,
                      chunk_layout* layout = nullptr) {
  char buffer[1024];
  text_copy text{json, buffer, sizeof(buffer)};
  {
    auto skipped = json.size() - without_bom(json).size();
    chunk_handler handler{out};
    fast_reader fast{text.data() + skipped, text.data() + json.size(), handler};
    if (fast.parse() && handler.complete()) {
      if (layout != nullptr) *layout = handler.layout(text.data());
      return true;
    }
  }
  // The subset parser may have unescaped strings in place.
  std::memcpy(text.data(), json.data(), json.size());
  alignas(16) char stack_buffer[1024];
  pool stack(stack_buffer, sizeof(stack_buffer));
  chunk_handler handler{out};
  return !sax_parse(json, text.data(), handler, stack) && handler.complete();
}

} // namespace

failure decode_stream_chunk(std::string_view json, completion_chunk& out,
                            bool& error_payload, chunk_layout* layout) {
  error_payload = false;
  if (layout != nullptr) *layout = chunk_layout{};
  if (decode_chunk_sax(json, out, layout)) return {};
  if (is_error_payload(json)) {
    error_payload = true;
    return {};
  }
  return decode_chunk(json, out);
}

bool is_plain_json_text(std::string_view text) noexcept {
  auto* p = text.data();
  auto* end = p + text.size();
  for (;;) {
    p += plain_prefix(p, end);
    if (p == end) return true;
    auto c = static_cast<unsigned char>(*p);
    if (c < 0x80) {
      // A quote, a backslash or a control byte, or a plain byte of the
      // short tail plain_prefix leaves.
      if (c == '"' || c == '\\' || c < 0x20) return false;
      ++p;
      continue;
    }
    auto len = utf8_sequence(reinterpret_cast<const unsigned char*>(p),
                             static_cast<size_t>(end - p));
    if (len == 0) return false;
    p += len;
  }
}

failure decode_chunk(std::string_view json, completion_chunk& out) {
  if (decode_chunk_sax(json, out)) return {};
  // Something is off: the DOM reader names it.
  parsed_document<1024, 4096, 2048> doc;
  if (auto err = doc.parse(json)) return err;
  reader r;
  r.chunk(doc.root(), out);
  return std::move(r.error);
}

namespace {

void write_model(encoder& e, const model_info& x) {
  e.begin_object();
  e.member("id", x.id);
  e.member("object", "model");
  e.key("created");
  e.integer(x.created);
  e.member("owned_by", x.owned_by);
  e.end_object();
}

} // namespace

std::string encode_models(const std::vector<model_info>& xs) {
  std::string out;
  encoder e{out};
  e.begin_object();
  e.member("object", "list");
  e.key("data");
  e.begin_array();
  for (auto& x : xs)
    write_model(e, x);
  e.end_array();
  e.end_object();
  return out;
}

std::string encode_model(const model_info& x) {
  std::string out;
  encoder e{out};
  write_model(e, x);
  return out;
}

failure decode_models(std::string_view json, std::vector<model_info>& out) {
  parsed_document<1024, 4096, 2048> doc;
  if (auto err = doc.parse(json)) return err;
  out.clear();
  reader r;
  const path root;
  auto& x = doc.root();
  const value* data = &x;
  path data_path = root;
  if (x.IsObject()) {
    data_path = root / "data";
    data = find(x, "data");
    if (data == nullptr) {
      r.missing(data_path);
      return std::move(r.error);
    }
  }
  if (!data->IsArray()) {
    r.expected(data_path, x.IsObject() ? "array" : "object or array", *data);
    return std::move(r.error);
  }
  out.resize(data->Size());
  for (rj::SizeType i = 0; i < data->Size(); ++i)
    if (!r.model((*data)[i], data_path[i], out[i])) break;
  return std::move(r.error);
}

std::string encode_error(const api_error& x, error_shape shape) {
  std::string out;
  encoder e{out};
  e.begin_object();
  if (shape == error_shape::detail) {
    e.member("detail", x.message);
  } else {
    e.key("error");
    e.begin_object();
    e.member("message", x.message);
    e.key("type");
    e.string_or_null(x.type);
    e.key("code");
    e.string_or_null(x.code);
    e.end_object();
  }
  e.end_object();
  return out;
}

api_error decode_error(std::string_view body) {
  api_error result;
  parsed_document<1024, 4096, 2048> doc;
  if (!doc.parse(body)) {
    auto& x = doc.root();
    if (x.IsObject()) {
      if (auto err = find(x, "error"); err != nullptr && !err->IsNull()) {
        if (err->IsObject()) {
          result.message = error_text(*err);
          if (auto code = find(*err, "code")) scalar_text(*code, result.code);
          if (auto type = find(*err, "type")) scalar_text(*type, result.type);
        } else if (err->IsString()) {
          result.message = view(*err);
        } else {
          result.message = render_detail(*err);
        }
        return result;
      }
      if (auto detail = find(x, "detail");
          detail != nullptr && !detail->IsNull()) {
        if (detail->IsString())
          result.message = view(*detail);
        else
          result.message = opaque_text(render_detail(*detail));
        return result;
      }
      // Other servers in front of the service say just `message`.
      if (auto msg = find(x, "message"); msg != nullptr && msg->IsString()) {
        result.message = view(*msg);
        return result;
      }
    }
  }
  result.message = opaque_text(body);
  return result;
}

bool is_error_payload(std::string_view json) {
  // Most payloads are chunks: rule them out without parsing.
  if (!::memmem(json.data(), json.size(), "\"error\"", 7)) return false;
  json = without_bom(json);
  size_t first = json.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos || json[first] != '{') return false;
  alignas(16) char buffer[1024];
  pool stack(buffer, sizeof(buffer));
  rj::MemoryStream is(json.data(), json.size());
  rj::GenericReader<rj::UTF8<>, rj::UTF8<>, pool> reader(&stack, 256);
  error_member_finder finder;
  depth_limited<error_member_finder> guard{finder};
  reader.Parse<rj::kParseDefaultFlags>(is, guard);
  return finder.found;
}

} // namespace maritaca::wire
