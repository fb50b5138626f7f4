// Unit tests of the JSON codec (maritaca/transport/wire.hpp), in memory.

#include "maritaca/transport/wire.hpp"
#include "stream_chunk.hpp"

#include <catch2/catch.hpp>

#include <functional>
#include <string>
#include <thread>
#include <vector>

using namespace maritaca;
using namespace std::string_literals;

namespace {

// -- samples ------------------------------------------------------------------

content_part text_part(std::string text) {
  content_part result;
  result.type = content_part::kind::text;
  result.text = std::move(text);
  return result;
}

content_part image_part(std::string url, std::string detail = "") {
  content_part result;
  result.type = content_part::kind::image_url;
  result.url = std::move(url);
  result.detail = std::move(detail);
  return result;
}

/// A request that sets every field.
chat_request full_request() {
  chat_request r;
  r.model = "sabia-4";
  auto system = chat_message::system("Você é um assistente prestativo.");
  system.name = "regras";
  chat_message user;
  user.role = "user";
  user.parts = {text_part("Descreva a imagem e diga o clima."),
                image_part("https://example.com/praia.png", "high"),
                image_part("data:image/png;base64,iVBORw0KGgo=")};
  chat_message assistant;
  assistant.role = "assistant";
  assistant.tool_calls = {
      {"call_1", "function", "get_weather", R"({"city":"Recife"})"},
      {"call_2", "function", "get_time", "{}"}};
  r.messages = {system,
                user,
                assistant,
                chat_message::tool("call_1", R"({"temp":31})"),
                chat_message::tool("call_2", "14:00"),
                chat_message::assistant("Faz 31 °C em Recife às 14h.")};
  r.temperature = 0.3;
  r.top_p = 0.9;
  r.max_tokens = 512;
  r.n = 2;
  r.stop = {"\n\n", "FIM"};
  r.frequency_penalty = 0.5;
  r.presence_penalty = -1.25;
  r.stream = true;
  r.include_usage = true;
  r.tools = {{"get_weather", "Clima atual de uma cidade",
              R"({"type":"object","properties":{"city":{"type":"string"}},)"
              R"("required":["city"]})"},
             {"get_time", "", ""}};
  r.tool_choice = tool_choice{"function", "get_weather"};
  r.response_format =
      response_format{"json_schema", "resposta", R"({"type":"object"})", true};
  r.user = "u-42";
  r.seed = 7;
  return r;
}

/// A completion with a text choice and a tool-calling choice.
chat_completion full_completion() {
  chat_completion c;
  c.id = "chatcmpl-abc123";
  c.created = 1717171717;
  c.model = "sabia-4";
  c.system_fingerprint = "fp_sabia_1";
  completion_choice first;
  first.index = 0;
  first.message = chat_message::assistant("Olá! Como posso ajudar? 😀");
  first.finish_reason = "stop";
  completion_choice second;
  second.index = 1;
  second.message.role = "assistant";
  second.message.tool_calls = {
      {"call_9", "function", "get_weather", R"({"city":"São Paulo"})"}};
  second.finish_reason = "tool_calls";
  c.choices = {first, second};
  c.usage = usage{50, 20, 70, 10};
  return c;
}

completion_chunk make_chunk(std::vector<chunk_choice> choices) {
  completion_chunk c;
  c.id = "chatcmpl-abc123";
  c.created = 1717171717;
  c.model = "sabia-4";
  c.choices = std::move(choices);
  return c;
}

chunk_choice content_choice(std::string content, std::string role = "",
                            std::string finish = "") {
  chunk_choice c;
  c.role = std::move(role);
  c.content = std::move(content);
  c.finish_reason = std::move(finish);
  return c;
}

/// The chunks of a streamed answer that calls a tool, then the usage chunk.
std::vector<completion_chunk> chunk_samples() {
  std::vector<completion_chunk> xs;
  xs.push_back(make_chunk({content_choice("", "assistant")}));
  xs.push_back(make_chunk({content_choice("Olá, ação!")}));
  chunk_choice call;
  call.tool_calls = {{0, "call_1", "function", "get_weather", ""}};
  xs.push_back(make_chunk({call}));
  call.tool_calls = {{0, "", "", "", R"({"city":)"},
                     {1, "call_2", "function", "get_time", "{}"}};
  xs.push_back(make_chunk({call}));
  auto second = content_choice("Oi", "", "length");
  second.index = 1;
  xs.push_back(make_chunk({content_choice("", "", "tool_calls"), second}));
  auto last = make_chunk({});
  last.usage = usage{12, 34, 46, 8};
  xs.push_back(last);
  return xs;
}

std::vector<model_info> model_samples() {
  return {{"sabia-4", 1735689600, "maritaca"},
          {"sabiazinho-4", 1735689601, "maritaca"},
          {"sabia-4-thinking", 1735689602, "maritaca"}};
}

// Real-looking payloads of the service (see shared/maritaca-api.md).

constexpr const char* service_completion = R"({
  "id": "chatcmpl-7f3a",
  "object": "chat.completion",
  "created": 1717171717,
  "model": "sabia-4",
  "system_fingerprint": "fp_44709d6fcb",
  "choices": [{
    "index": 0,
    "message": {
      "role": "assistant",
      "content": null,
      "tool_calls": [{
        "id": "call_abc",
        "type": "function",
        "function": {"name": "get_weather",
                     "arguments": "{\"city\": \"S\u00e3o Paulo\"}"}
      }]
    },
    "logprobs": null,
    "finish_reason": "tool_calls"
  }],
  "usage": {"prompt_tokens": 82, "completion_tokens": 17,
            "total_tokens": 99,
            "prompt_tokens_details": {"cached_tokens": 64}}
})";

constexpr const char* service_chunks[] = {
    R"({"id":"chatcmpl-7f3a","object":"chat.completion.chunk",)"
    R"("created":1717171717,"model":"sabia-4","choices":[{"index":0,)"
    R"("delta":{"role":"assistant","content":""},"finish_reason":null}]})",
    R"({"id":"chatcmpl-7f3a","object":"chat.completion.chunk",)"
    R"("created":1717171717,"model":"sabia-4","choices":[{"index":0,)"
    R"("delta":{"content":"A capital \u00e9 Bras\u00edlia \ud83d\ude00"},)"
    R"("logprobs":null,"finish_reason":null}],"usage":null})",
    R"({"id":"chatcmpl-7f3a","object":"chat.completion.chunk",)"
    R"("created":1717171717,"model":"sabia-4","choices":[{"index":0,)"
    R"("delta":{"tool_calls":[{"index":0,"id":"call_abc","type":"function",)"
    R"("function":{"name":"get_weather","arguments":""}}]},)"
    R"("finish_reason":null}]})",
    R"({"id":"chatcmpl-7f3a","object":"chat.completion.chunk",)"
    R"("created":1717171717,"model":"sabia-4","choices":[{"index":0,)"
    R"("delta":{"tool_calls":[{"index":0,"function":{"arguments":)"
    R"("{\"city\":"}}]},"finish_reason":null}]})",
    R"({"id":"chatcmpl-7f3a","object":"chat.completion.chunk",)"
    R"("created":1717171717,"model":"sabia-4","choices":[{"index":0,)"
    R"("delta":{},"finish_reason":"stop"}]})",
    R"({"id":"chatcmpl-7f3a","object":"chat.completion.chunk",)"
    R"("created":1717171717,"model":"sabia-4","choices":[],)"
    R"("usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21,)"
    R"("prompt_tokens_details":{"cached_tokens":0}}})",
};

// -- helpers ------------------------------------------------------------------

/// Requires `f` to be a protocol error whose message contains `needle`.
void require_protocol_error(const failure& f, const std::string& needle) {
  INFO("message: " << f.message);
  REQUIRE(f.code == errc::protocol_error);
  CHECK_THAT(f.message, Catch::Matchers::Contains(needle));
}

bool is_valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80    ? 1
                 : c >= 0xF0 ? 4
                 : c >= 0xE0 ? 3
                 : c >= 0xC0 ? 2
                             : 0;
    if (len == 0 || i + len > s.size()) return false;
    for (size_t j = 1; j < len; ++j)
      if ((static_cast<unsigned char>(s[i + j]) & 0xC0) != 0x80) return false;
    i += len;
  }
  return true;
}

} // namespace

// -- encoding: exact output
// -----------------------------------------------------

TEST_CASE("a minimal request encodes exactly") {
  chat_request r;
  r.messages = {chat_message::user("Olá")};
  CHECK(wire::encode_request(r) ==
        R"({"model":"sabia-4","messages":[{"role":"user","content":"Olá"}],)"
        R"("stream":false})");
}

TEST_CASE("optional request fields encode only when set") {
  chat_request r;
  r.model = "sabiazinho-4";
  r.messages = {chat_message::system("Seja breve."),
                chat_message::user("Qual é a capital?")};
  r.temperature = 0.7;
  r.max_tokens = 100;
  r.stop = {"\n\n"};
  r.stream = true;
  r.include_usage = true;
  CHECK(wire::encode_request(r) ==
        R"({"model":"sabiazinho-4","messages":[)"
        R"({"role":"system","content":"Seja breve."},)"
        R"({"role":"user","content":"Qual é a capital?"}],)"
        R"("temperature":0.7,"max_tokens":100,"stop":["\n\n"],)"
        R"("stream":true,"stream_options":{"include_usage":true}})");
  SECTION("include_usage needs stream") {
    r.stream = false;
    auto json = wire::encode_request(r);
    CHECK(json.find("stream_options") == std::string::npos);
    CHECK(json.find(R"("stream":false)") != std::string::npos);
  }
}

TEST_CASE("tools, tool messages and formats encode as OpenAI does") {
  chat_request r;
  chat_message assistant;
  assistant.role = "assistant";
  assistant.tool_calls = {{"call_1", "function", "f", R"({"x":1})"}};
  r.messages = {assistant, chat_message::tool("call_1", "ok")};
  r.tools = {{"f", "Faz algo", R"({"type": "object"})"}};
  r.tool_choice = tool_choice{"function", "f"};
  r.response_format = response_format{"json_schema", "s", R"({"a":[1,2]})"};
  CHECK(wire::encode_request(r) ==
        R"({"model":"sabia-4","messages":[)"
        R"({"role":"assistant","content":null,"tool_calls":[{"id":"call_1",)"
        R"("type":"function","function":{"name":"f",)"
        R"("arguments":"{\"x\":1}"}}]},)"
        R"({"role":"tool","content":"ok","tool_call_id":"call_1"}],)"
        R"("stream":false,"tools":[{"type":"function","function":{)"
        R"("name":"f","description":"Faz algo",)"
        R"("parameters":{"type": "object"}}}],)"
        R"("tool_choice":{"type":"function","function":{"name":"f"}},)"
        R"("response_format":{"type":"json_schema","json_schema":{)"
        R"("name":"s","schema":{"a":[1,2]},"strict":false}}})");
  SECTION("string tool choices and json_object") {
    r.tool_choice = tool_choice{"required", ""};
    r.response_format = response_format{"json_object"};
    auto json = wire::encode_request(r);
    CHECK(json.find(R"("tool_choice":"required")") != std::string::npos);
    CHECK(json.find(R"("response_format":{"type":"json_object"})") !=
          std::string::npos);
  }
}

TEST_CASE("content parts encode as OpenAI content parts") {
  chat_request r;
  chat_message user;
  user.role = "user";
  user.content = "ignored when parts are set";
  user.parts = {text_part("O que é isto?"),
                image_part("https://x.test/a.png", "low"),
                image_part("data:image/png;base64,AAAA")};
  r.messages = {user};
  CHECK(wire::encode_request(r) ==
        R"({"model":"sabia-4","messages":[{"role":"user","content":[)"
        R"({"type":"text","text":"O que é isto?"},)"
        R"({"type":"image_url","image_url":{"url":"https://x.test/a.png",)"
        R"("detail":"low"}},)"
        R"({"type":"image_url","image_url":{)"
        R"("url":"data:image/png;base64,AAAA"}}]}],"stream":false})");
}

TEST_CASE("invalid raw JSON is sent as a string and caught by validation") {
  auto r = full_request();
  r.tools[0].parameters = "{not json";
  auto json = wire::encode_request(r);
  CHECK(json.find(R"("parameters":"{not json")") != std::string::npos);
  // Still well-formed JSON: only the field is wrong.
  chat_request back;
  require_protocol_error(wire::decode_request(json, back),
                         "tools[0].function.parameters: expected object");
  auto err = wire::validate_request(r);
  CHECK(err.code == errc::invalid_argument);
  CHECK_THAT(err.message,
             Catch::Matchers::StartsWith("tools[0].function.parameters: "));
  r.tools[0].parameters = "[1]";
  CHECK_THAT(wire::validate_request(r).message,
             Catch::Matchers::Contains("expected a JSON object"));
}

TEST_CASE("validate_request accepts good requests and names bad fields") {
  CHECK_FALSE(wire::validate_request(full_request()));
  auto expect = [](chat_request r, const char* field) {
    auto err = wire::validate_request(r);
    INFO(err.message);
    CHECK(err.code == errc::invalid_argument);
    CHECK_THAT(err.message, Catch::Matchers::StartsWith(field));
  };
  auto r = full_request();
  r.model.clear();
  expect(r, "model:");
  r = full_request();
  r.messages.clear();
  expect(r, "messages:");
  r = full_request();
  r.messages[2].role.clear();
  expect(r, "messages[2].role:");
  r = full_request();
  r.temperature = std::numeric_limits<double>::quiet_NaN();
  expect(r, "temperature:");
  r = full_request();
  r.tool_choice = tool_choice{"sometimes", ""};
  expect(r, "tool_choice:");
  r = full_request();
  r.tool_choice = tool_choice{"function", ""};
  expect(r, "tool_choice.function.name:");
  r = full_request();
  r.response_format->schema = R"({"type":)";
  expect(r, "response_format.json_schema.schema:");
  r = full_request();
  r.response_format->type = "xml";
  expect(r, "response_format.type:");
}

TEST_CASE("non-finite numbers encode as null") {
  chat_request r;
  r.messages = {chat_message::user("x")};
  r.temperature = std::numeric_limits<double>::infinity();
  auto json = wire::encode_request(r);
  CHECK(json.find(R"("temperature":null)") != std::string::npos);
  chat_request back;
  REQUIRE_FALSE(wire::decode_request(json, back));
  CHECK_FALSE(back.temperature);
}

TEST_CASE("chunks encode as the service sends them") {
  auto xs = chunk_samples();
  CHECK(wire::encode_chunk(xs[0]) ==
        R"({"id":"chatcmpl-abc123","object":"chat.completion.chunk",)"
        R"("created":1717171717,"model":"sabia-4","choices":[{"index":0,)"
        R"("delta":{"role":"assistant"},"finish_reason":null}]})");
  CHECK(wire::encode_chunk(xs[3]) ==
        R"({"id":"chatcmpl-abc123","object":"chat.completion.chunk",)"
        R"("created":1717171717,"model":"sabia-4","choices":[{"index":0,)"
        R"("delta":{"tool_calls":[)"
        R"({"index":0,"function":{"arguments":"{\"city\":"}},)"
        R"({"index":1,"id":"call_2","type":"function",)"
        R"("function":{"name":"get_time","arguments":"{}"}}]},)"
        R"("finish_reason":null}]})");
  CHECK(wire::encode_chunk(xs.back()) ==
        R"({"id":"chatcmpl-abc123","object":"chat.completion.chunk",)"
        R"("created":1717171717,"model":"sabia-4","choices":[],)"
        R"("usage":{"prompt_tokens":12,"completion_tokens":34,)"
        R"("total_tokens":46,"prompt_tokens_details":{"cached_tokens":8}}})");
}

TEST_CASE("completions, models and errors encode exactly") {
  chat_completion c;
  c.id = "c1";
  c.created = 5;
  c.model = "sabia-4";
  completion_choice choice;
  choice.message.role = "assistant";
  choice.message.tool_calls = {{"t", "function", "f", "{}"}};
  choice.finish_reason = "tool_calls";
  c.choices = {choice};
  CHECK(wire::encode_completion(c) ==
        R"({"id":"c1","object":"chat.completion","created":5,)"
        R"("model":"sabia-4","choices":[{"index":0,"message":{)"
        R"("role":"assistant","content":null,"tool_calls":[{"id":"t",)"
        R"("type":"function","function":{"name":"f","arguments":"{}"}}]},)"
        R"("finish_reason":"tool_calls"}]})");
  CHECK(wire::encode_models({{"sabia-4", 1, "maritaca"}}) ==
        R"({"object":"list","data":[{"id":"sabia-4","object":"model",)"
        R"("created":1,"owned_by":"maritaca"}]})");
  CHECK(wire::encode_models({}) == R"({"object":"list","data":[]})");
  api_error e{"Limite de requisições", "rate_limit_exceeded", "requests"};
  CHECK(wire::encode_error(e) ==
        R"({"error":{"message":"Limite de requisições",)"
        R"("type":"requests","code":"rate_limit_exceeded"}})");
  CHECK(wire::encode_error({"Não encontrado", "", ""}) ==
        R"({"error":{"message":"Não encontrado","type":null,"code":null}})");
  CHECK(wire::encode_error(e, wire::error_shape::detail) ==
        R"({"detail":"Limite de requisições"})");
}

// -- round trips
// ----------------------------------------------------------------

TEST_CASE("every request field round-trips") {
  auto r = full_request();
  chat_request back;
  auto err = wire::decode_request(wire::encode_request(r), back);
  INFO(err.message);
  REQUIRE_FALSE(err);
  CHECK(back == r);
  SECTION("variants") {
    for (auto mode : {"none", "auto", "required"}) {
      r.tool_choice = tool_choice{mode, ""};
      REQUIRE_FALSE(wire::decode_request(wire::encode_request(r), back));
      CHECK(back == r);
    }
    r.response_format = response_format{"json_object"};
    REQUIRE_FALSE(wire::decode_request(wire::encode_request(r), back));
    CHECK(back == r);
    r.response_format = response_format{"text"};
    r.tool_choice.reset();
    r.tools.clear();
    r.stop.clear();
    r.temperature.reset();
    r.seed.reset();
    r.user.clear();
    REQUIRE_FALSE(wire::decode_request(wire::encode_request(r), back));
    CHECK(back == r);
  }
}

TEST_CASE("completions round-trip") {
  auto c = full_completion();
  chat_completion back;
  REQUIRE_FALSE(wire::decode_completion(wire::encode_completion(c), back));
  CHECK(back == c);
  c.usage.reset();
  c.system_fingerprint.clear();
  REQUIRE_FALSE(wire::decode_completion(wire::encode_completion(c), back));
  CHECK(back == c);
}

TEST_CASE("chunks round-trip") {
  for (auto& x : chunk_samples()) {
    completion_chunk back;
    auto json = wire::encode_chunk(x);
    INFO(json);
    REQUIRE_FALSE(wire::decode_chunk(json, back));
    CHECK(back == x);
  }
}

TEST_CASE("decoding chunks into one object resets what a chunk leaves out") {
  auto xs = chunk_samples();
  completion_chunk reused;
  for (int round = 0; round < 2; ++round) {
    for (auto& x : xs) {
      REQUIRE_FALSE(wire::decode_chunk(wire::encode_chunk(x), reused));
      CHECK(reused == x);
    }
  }
}

TEST_CASE("models and errors round-trip") {
  auto xs = model_samples();
  std::vector<model_info> back;
  REQUIRE_FALSE(wire::decode_models(wire::encode_models(xs), back));
  CHECK(back == xs);
  api_error e{"Chave inválida", "invalid_api_key", "auth_error"};
  CHECK(wire::decode_error(wire::encode_error(e)) == e);
  CHECK(wire::decode_error(wire::encode_error(e, wire::error_shape::detail)) ==
        api_error{"Chave inválida", "", ""});
}

// -- decoding the service
// -------------------------------------------------------

TEST_CASE("a service completion with tool calls and null content decodes") {
  chat_completion c;
  REQUIRE_FALSE(wire::decode_completion(service_completion, c));
  CHECK(c.id == "chatcmpl-7f3a");
  CHECK(c.created == 1717171717);
  CHECK(c.model == "sabia-4");
  CHECK(c.system_fingerprint == "fp_44709d6fcb");
  REQUIRE(c.choices.size() == 1);
  auto& m = c.choices[0].message;
  CHECK(m.role == "assistant");
  CHECK_FALSE(m.content.has_value());
  CHECK(m.text().empty());
  REQUIRE(m.tool_calls.size() == 1);
  CHECK(m.tool_calls[0] == tool_call{"call_abc", "function", "get_weather",
                                     R"({"city": "São Paulo"})"});
  CHECK(c.choices[0].finish_reason == "tool_calls");
  CHECK(c.usage == usage{82, 17, 99, 64});
}

TEST_CASE("service chunks decode, including the usage-only chunk") {
  std::vector<completion_chunk> xs(std::size(service_chunks));
  for (size_t i = 0; i < xs.size(); ++i) {
    auto err = wire::decode_chunk(service_chunks[i], xs[i]);
    INFO(i << ": " << err.message);
    REQUIRE_FALSE(err);
    CHECK(xs[i].id == "chatcmpl-7f3a");
    CHECK(xs[i].model == "sabia-4");
    CHECK_FALSE(wire::is_error_payload(service_chunks[i]));
  }
  CHECK(xs[0].choices.at(0).role == "assistant");
  CHECK(xs[0].choices.at(0).content.empty());
  CHECK(xs[0].choices.at(0).finish_reason.empty());
  CHECK(xs[1].choices.at(0).content == "A capital é Brasília 😀");
  CHECK_FALSE(xs[1].usage);
  CHECK(xs[2].choices.at(0).tool_calls ==
        std::vector<tool_call_delta>{
            {0, "call_abc", "function", "get_weather", ""}});
  CHECK(xs[3].choices.at(0).tool_calls ==
        std::vector<tool_call_delta>{{0, "", "", "", R"({"city":)"}});
  CHECK(xs[4].choices.at(0).finish_reason == "stop");
  CHECK(xs[4].choices.at(0).content.empty());
  CHECK(xs[5].choices.empty());
  CHECK(xs[5].usage == usage{9, 12, 21, 0});
}

TEST_CASE("decoders are liberal where the service may vary") {
  SECTION("unknown fields, doubles and missing optionals") {
    completion_chunk c;
    REQUIRE_FALSE(wire::decode_chunk(
        R"({"choices":[{"delta":{"content":"x","reasoning_content":"hm",)"
        R"("refusal":null},"extra":{"a":[1]}}],"created":1717171717.9,)"
        R"("service_tier":"flex"})",
        c));
    CHECK(c.created == 1717171717);
    CHECK(c.id.empty());
    CHECK(c.choices.at(0).content == "x");
    CHECK(c.choices.at(0).index == 0);
  }
  SECTION("usage without total or details") {
    completion_chunk c;
    REQUIRE_FALSE(wire::decode_chunk(
        R"({"choices":[],"usage":{"prompt_tokens":3.0,"completion_tokens":4,)"
        R"("prompt_tokens_details":null}})",
        c));
    CHECK(c.usage == usage{3, 4, 7, 0});
  }
  SECTION("a usage chunk without choices") {
    completion_chunk c;
    REQUIRE_FALSE(wire::decode_chunk(R"({"usage":{"prompt_tokens":1}})", c));
    CHECK(c.choices.empty());
    CHECK(c.usage->prompt_tokens == 1);
  }
  SECTION("content as parts, arguments as an object, BOM") {
    chat_completion c;
    REQUIRE_FALSE(wire::decode_completion(
        "\xEF\xBB\xBF"
        R"({"choices":[{"message":{"content":[{"type":"text","text":"a"}],)"
        R"("tool_calls":[{"id":"t","function":{"name":"f",)"
        R"("arguments":{"k": [1, 2]}}}]}}]})",
        c));
    auto& m = c.choices.at(0).message;
    CHECK(m.role == "assistant");
    CHECK(m.parts == std::vector<content_part>{text_part("a")});
    CHECK(m.tool_calls.at(0).type == "function");
    CHECK(m.tool_calls.at(0).arguments == R"({"k":[1,2]})");
  }
  SECTION("requests: one stop string, image URL string, nulls") {
    chat_request r;
    REQUIRE_FALSE(wire::decode_request(
        R"({"model":"sabia-4","messages":[{"role":"user","content":[)"
        R"({"type":"image_url","image_url":"https://x.test/i.png"}]}],)"
        R"("stop":"FIM","temperature":1,"max_tokens":null,"tools":null,)"
        R"("tool_choice":null,"max_completion_tokens":64,"user":null})",
        r));
    CHECK(r.stop == std::vector<std::string>{"FIM"});
    CHECK(r.temperature == 1.0);
    CHECK(r.max_tokens == 64);
    CHECK_FALSE(r.tool_choice);
    CHECK(r.messages.at(0).parts ==
          std::vector<content_part>{image_part("https://x.test/i.png")});
  }
  SECTION("models as a bare array") {
    std::vector<model_info> ms;
    REQUIRE_FALSE(wire::decode_models(
        R"([{"id":"sabia-4","created":1.5e9},{"id":"sabiazinho-4"}])", ms));
    REQUIRE(ms.size() == 2);
    CHECK(ms[0] == model_info{"sabia-4", 1500000000, ""});
    CHECK(ms[1].id == "sabiazinho-4");
  }
}

// -- errors
// -----------------------------------------------------------------------

TEST_CASE("both error shapes decode") {
  CHECK(wire::decode_error(R"({"detail":"Modelo não encontrado"})") ==
        api_error{"Modelo não encontrado", "", ""});
  CHECK(wire::decode_error(
            R"({"detail":[{"loc":["body","messages",0,"role"],)"
            R"("msg":"field required","type":"value_error.missing"},)"
            R"({"loc":["body","model"],"msg":"str type expected"}]})")
            .message ==
        "body.messages.0.role: field required; body.model: str type "
        "expected");
  CHECK(wire::decode_error(R"({"detail":{"reason":"quota"}})").message ==
        R"({"reason":"quota"})");
  CHECK(wire::decode_error(
            R"({"error":{"message":"Rate limit exceeded","code":429,)"
            R"("type":"rate_limit_error","param":null}})") ==
        api_error{"Rate limit exceeded", "429", "rate_limit_error"});
  CHECK(wire::decode_error(R"({"error":{"message":"x","code":"bad_key"}})") ==
        api_error{"x", "bad_key", ""});
  CHECK(wire::decode_error(R"({"error":"Unauthorized"})") ==
        api_error{"Unauthorized", "", ""});
  CHECK(wire::decode_error(R"({"message":"Internal Server Error"})").message ==
        "Internal Server Error");
  CHECK(wire::decode_error(R"({"detail":null})").message ==
        R"({"detail":null})");
}

TEST_CASE("other error bodies become cleaned, bounded text") {
  auto e =
      wire::decode_error("<html>\r\n<body>502 Bad Gateway</body>\t</html>");
  CHECK(e.message == "<html>  <body>502 Bad Gateway</body> </html>");
  CHECK(e.code.empty());
  CHECK(wire::decode_error("").message.empty());
  CHECK(wire::decode_error("not \xFF utf8\x01").message == "not ? utf8 ");
  // JSON, but neither shape: kept as text.
  CHECK(wire::decode_error(R"({"status":500})").message == R"({"status":500})");
  std::string long_body;
  for (int i = 0; i < 300; ++i)
    long_body += "çã"; // 4 bytes per round: a cut may fall inside a letter.
  long_body += "x";
  auto cut = wire::decode_error(long_body).message;
  CHECK(cut.size() <= 512);
  CHECK(cut.size() >= 500);
  CHECK_THAT(cut, Catch::Matchers::EndsWith("..."));
  CHECK(is_valid_utf8(cut));
}

TEST_CASE("is_error_payload looks for a top-level error member") {
  CHECK(wire::is_error_payload(R"({"error":{"message":"overloaded"}})"));
  CHECK(wire::is_error_payload(R"( {"id":"x","error":"boom"})"));
  CHECK(wire::is_error_payload("\xEF\xBB\xBF{\"error\":{}}"));
  CHECK_FALSE(wire::is_error_payload(R"({"error":null,"choices":[]})"));
  CHECK_FALSE(wire::is_error_payload(R"({"detail":{"error":1}})"));
  CHECK_FALSE(wire::is_error_payload(R"(["error",1])"));
  CHECK_FALSE(
      wire::is_error_payload(R"({"choices":[{"delta":{"content":"error"}}]})"));
  CHECK_FALSE(wire::is_error_payload("[DONE]"));
  CHECK_FALSE(wire::is_error_payload(""));
}

// -- Portuguese and escapes
// -------------------------------------------------------

TEST_CASE("Portuguese text and escapes round-trip exactly") {
  const std::string text =
      "Ação, coração, pão, maçã — “aspas” ¿ñ? 😀 \\ \" / \x01\x1f\x7f\t\n";
  chat_request r;
  r.messages = {chat_message::user(text)};
  auto json = wire::encode_request(r);
  // UTF-8 as is, control characters escaped.
  CHECK(json.find("Ação, coração, pão, maçã — “aspas” ¿ñ? 😀") != json.npos);
  CHECK(json.find(R"(\\ \" / \u0001\u001f)"
                  "\x7f"
                  R"(\t\n")") != json.npos);
  chat_request back;
  REQUIRE_FALSE(wire::decode_request(json, back));
  CHECK(back.messages.at(0).text() == text);
}

TEST_CASE("\\u escapes decode to UTF-8, surrogate pairs included") {
  completion_chunk c;
  REQUIRE_FALSE(
      wire::decode_chunk(R"({"choices":[{"delta":{"content":)"
                         R"("A\u00e7\u00e3o \ud83d\ude00 \u00E9 \u0000!"}}]})",
                         c));
  CHECK(c.choices.at(0).content == "Ação 😀 é \0!"s);
  auto json = wire::encode_chunk(c);
  CHECK(json.find(R"("Ação 😀 é \u0000!")") != json.npos);
}

TEST_CASE("append_json_string escapes and repairs") {
  std::string out = "x";
  wire::append_json_string(out, "a\"b\\c\b\f\n\r\t\x01 é");
  CHECK(out == R"(x"a\"b\\c\b\f\n\r\t\u0001 é")");
  out.clear();
  // Ill-formed UTF-8: stray continuation, overlong, surrogate, truncated.
  wire::append_json_string(out, "ok\x80|\xC0\xAF|\xED\xA0\x80|\xE2\x82");
  CHECK(out == "\"ok\xEF\xBF\xBD|\xEF\xBF\xBD\xEF\xBF\xBD|"
               "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD|"
               "\xEF\xBF\xBD\xEF\xBF\xBD\"");
  chat_request r;
  r.messages = {chat_message::user("bad \xFF byte")};
  chat_request back;
  REQUIRE_FALSE(wire::decode_request(wire::encode_request(r), back));
  CHECK(back.messages.at(0).text() == "bad \xEF\xBF\xBD byte");
}

TEST_CASE("large documents decode beyond the inline buffers") {
  const std::string unit = "Olá, \"mundo\" é\n";
  std::string text;
  chat_request r;
  for (int i = 0; i < 300; ++i) {
    r.messages.push_back(chat_message::user(std::to_string(i) + text));
    text += unit;
  }
  while (text.size() < 1000000)
    text += text;
  r.messages.push_back(chat_message::assistant(text));
  auto json = wire::encode_request(r);
  REQUIRE(json.size() > 1000000);
  chat_request back;
  REQUIRE_FALSE(wire::decode_request(json, back));
  CHECK(back == r);
  completion_chunk chunk = make_chunk({content_choice(text)});
  completion_chunk chunk_back;
  REQUIRE_FALSE(wire::decode_chunk(wire::encode_chunk(chunk), chunk_back));
  CHECK(chunk_back == chunk);
}

// -- malformed and mistyped input
// -------------------------------------------------

namespace {

enum class decoder { request, completion, chunk, models };

failure decode_with(decoder d, std::string_view json) {
  switch (d) {
  case decoder::request: {
    chat_request x;
    return wire::decode_request(json, x);
  }
  case decoder::completion: {
    chat_completion x;
    return wire::decode_completion(json, x);
  }
  case decoder::chunk: {
    completion_chunk x;
    return wire::decode_chunk(json, x);
  }
  default: {
    std::vector<model_info> x;
    return wire::decode_models(json, x);
  }
  }
}

struct bad_case {
  decoder d;
  const char* json;
  const char* needle;
};

} // namespace

TEST_CASE("mistyped or missing fields name the field") {
  auto [d, json, needle] = GENERATE(values<bad_case>({
      {decoder::chunk, R"({"id":"x","choices":{}})",
       "choices: expected array, got object"},
      {decoder::chunk, R"({"choices":[{"index":0,"delta":{"content":5}}]})",
       "choices[0].delta.content: expected string, got number"},
      {decoder::chunk, R"({"id":"x"})", "choices: missing"},
      {decoder::chunk,
       R"({"choices":[{"delta":{"tool_calls":[{"index":"a"}]}}]})",
       "choices[0].delta.tool_calls[0].index: expected integer, got string"},
      {decoder::chunk,
       R"({"choices":[{},{"delta":{"tool_calls":[{"function":{"name":1}}]}}]})",
       "choices[1].delta.tool_calls[0].function.name: expected string"},
      {decoder::chunk, R"({"choices":[{"finish_reason":3}]})",
       "choices[0].finish_reason: expected string"},
      {decoder::chunk, R"({"choices":[{"delta":[]}]})",
       "choices[0].delta: expected object, got array"},
      {decoder::chunk, R"({"choices":[],"usage":{"prompt_tokens":"3"}})",
       "usage.prompt_tokens: expected integer, got string"},
      {decoder::chunk, R"({"choices":[],"usage":{"total_tokens":1.5}})",
       "usage.total_tokens: expected integer, got number"},
      {decoder::chunk, R"({"choices":[],"created":"now"})",
       "created: expected integer"},
      {decoder::chunk, R"([1])", "document: expected object, got array"},
      {decoder::chunk, R"({"error":{"message":"overloaded","code":503}})",
       "error: error payload: overloaded"},
      {decoder::completion, R"({"choices":[{"index":0}]})",
       "choices[0].message: missing"},
      {decoder::completion, R"({"id":"x"})", "choices: missing"},
      {decoder::completion, R"({"choices":[{"message":{"content":1}}]})",
       "choices[0].message.content: expected string, array or null, got "
       "number"},
      {decoder::completion,
       R"({"choices":[{"message":{"tool_calls":[{"id":"a"}]}}]})",
       "choices[0].message.tool_calls[0].function: missing"},
      {decoder::completion, R"({"choices":[],"usage":[]})",
       "usage: expected object, got array"},
      {decoder::completion, R"({"choices":[],"model":false})",
       "model: expected string, got boolean"},
      {decoder::request, R"({"messages":[]})", "model: missing"},
      {decoder::request, R"({"model":"sabia-4"})", "messages: missing"},
      {decoder::request, R"({"model":1,"messages":[]})",
       "model: expected string, got number"},
      {decoder::request, R"({"model":"m","messages":{}})",
       "messages: expected array, got object"},
      {decoder::request, R"({"model":"m","messages":[{"content":"x"}]})",
       "messages[0].role: missing"},
      {decoder::request, R"({"model":"m","messages":[{"role":"user"},3]})",
       "messages[1]: expected object, got number"},
      {decoder::request,
       R"({"model":"m","messages":[{"role":"user","content":[)"
       R"({"type":"input_audio","input_audio":{}}]}]})",
       "messages[0].content[0].type: unsupported content part type "
       "'input_audio'"},
      {decoder::request,
       R"({"model":"m","messages":[{"role":"user","content":[{"type":"text"}]}]})",
       "messages[0].content[0].text: missing"},
      {decoder::request,
       R"({"model":"m","messages":[{"role":"user","content":[)"
       R"({"type":"image_url","image_url":{"detail":"low"}}]}]})",
       "messages[0].content[0].image_url.url: missing"},
      {decoder::request, R"({"model":"m","messages":[],"temperature":"hot"})",
       "temperature: expected number, got string"},
      {decoder::request, R"({"model":"m","messages":[],"max_tokens":1.5})",
       "max_tokens: expected integer, got number"},
      {decoder::request, R"({"model":"m","messages":[],"n":1e30})",
       "n: expected integer"},
      {decoder::request,
       R"({"model":"m","messages":[],"seed":18446744073709551615})",
       "seed: expected integer"},
      {decoder::request, R"({"model":"m","messages":[],"stop":[1]})",
       "stop[0]: expected string, got number"},
      {decoder::request, R"({"model":"m","messages":[],"stream":"yes"})",
       "stream: expected boolean, got string"},
      {decoder::request,
       R"({"model":"m","messages":[],"stream_options":{"include_usage":1}})",
       "stream_options.include_usage: expected boolean"},
      {decoder::request,
       R"({"model":"m","messages":[],"tools":[{"type":"function",)"
       R"("function":{"name":"f","parameters":"{}"}}]})",
       "tools[0].function.parameters: expected object, got string"},
      {decoder::request,
       R"({"model":"m","messages":[],"tools":[{"function":{}}]})",
       "tools[0].function.name: missing"},
      {decoder::request,
       R"({"model":"m","messages":[],"tools":[{"type":"retrieval"}]})",
       "tools[0].type: expected \"function\""},
      {decoder::request,
       R"({"model":"m","messages":[],"tool_choice":"sometimes"})",
       "tool_choice: expected \"none\", \"auto\", \"required\" or an object"},
      {decoder::request,
       R"({"model":"m","messages":[],"tool_choice":{"type":"function"}})",
       "tool_choice.function: missing"},
      {decoder::request,
       R"({"model":"m","messages":[],"response_format":{"type":"xml"}})",
       "response_format.type: expected \"text\", \"json_object\" or "
       "\"json_schema\""},
      {decoder::request,
       R"({"model":"m","messages":[],"response_format":{"type":"json_schema",)"
       R"("json_schema":{"name":"s","schema":true}}})",
       "response_format.json_schema.schema: expected object, got boolean"},
      {decoder::request, R"("hello")", "document: expected object, got string"},
      {decoder::models, R"({"object":"list"})", "data: missing"},
      {decoder::models, R"({"data":{}})", "data: expected array, got object"},
      {decoder::models, R"({"data":[{"created":1}]})", "data[0].id: missing"},
      {decoder::models, R"({"data":[{"id":"a","created":"x"}]})",
       "data[0].created: expected integer"},
      {decoder::models, R"("x")", "document: expected object or array"},
  }));
  INFO(json);
  require_protocol_error(decode_with(d, json), needle);
}

TEST_CASE("syntax errors quote a short excerpt and the parser's reason") {
  auto err =
      decode_with(decoder::request, R"({"model":"sabia-4" "messages":[]})");
  require_protocol_error(err, "invalid JSON at offset 19: ");
  require_protocol_error(err, "Missing a comma or '}' after an object member.");
  require_protocol_error(err, R"(near '{"model":"sabia-4" "messages":[]}')");
  SECTION("the excerpt is short and escapes control characters") {
    std::string json = "{\"id\":\"" + std::string(100, 'a') + "\"\n\r\t,}" +
                       std::string(100, ' ');
    err = decode_with(decoder::chunk, json);
    require_protocol_error(err, "offset 112: Missing a name");
    // 20 bytes either side of the offset; each escape adds a byte.
    require_protocol_error(err, "near '" + std::string(15, 'a') +
                                    R"("\n\r\t,})" + std::string(19, ' ') +
                                    "'");
  }
  SECTION("the excerpt does not cut UTF-8 sequences") {
    std::string json = R"({"choices":[{"delta":{"content":"çççççççççççççç"} x)";
    err = decode_with(decoder::chunk, json);
    require_protocol_error(err, "Missing a comma");
    CHECK(is_valid_utf8(err.message));
  }
  SECTION("empty, truncated and trailing garbage") {
    require_protocol_error(decode_with(decoder::chunk, ""),
                           "The document is empty.");
    require_protocol_error(decode_with(decoder::chunk, "{\"choices\":["),
                           "offset 12");
    require_protocol_error(decode_with(decoder::models, "[] []"),
                           "The document root must not be followed");
  }
  SECTION("NaN and comments are not JSON") {
    require_protocol_error(
        decode_with(decoder::request,
                    R"({"model":"m","messages":[],"temperature":NaN})"),
        "Invalid value.");
    require_protocol_error(decode_with(decoder::request, "{/*c*/}"),
                           "Missing a name for object member.");
  }
}

TEST_CASE("invalid UTF-8, NUL bytes and deep nesting are protocol errors") {
  require_protocol_error(
      decode_with(decoder::chunk,
                  "{\"choices\":[{\"delta\":{\"content\":\"\xC3\x28\"}}]}"),
      "Invalid UTF-8 encoding.");
  require_protocol_error(
      decode_with(decoder::chunk,
                  "{\"choices\":[{\"delta\":{\"content\":\"\xED\xA0\x80\"}}]}"),
      "Invalid UTF-8 encoding.");
  require_protocol_error(
      decode_with(decoder::chunk,
                  R"({"choices":[{"delta":{"content":"\ud83d"}}]})"),
      "surrogate");
  // RapidJSON decodes a lone low surrogate escape; the codec does not.
  for (auto json : {R"({"choices":[{"delta":{"content":"a\udc00"}}]})",
                    R"({"choices":[{"delta":{"content":"\uDFFF!"}}]})",
                    R"({"choices":[],"\udc00":1})"})
    require_protocol_error(decode_with(decoder::chunk, json),
                           "Unpaired UTF-16 surrogate escape.");
  require_protocol_error(
      decode_with(decoder::chunk, "{\"choices\":[]}\0garbage"s), "NUL byte");
  require_protocol_error(decode_with(decoder::chunk, "{\"a\":\"\0\"}"s),
                         "Missing a closing quotation mark");
  std::string deep(100000, '[');
  require_protocol_error(decode_with(decoder::request, deep),
                         "nesting deeper than 128 levels");
  std::string object_deep =
      R"({"model":"m","messages":[],"tools":[{"function":)"
      R"({"name":"f","parameters":)";
  for (int i = 0; i < 200; ++i)
    object_deep += R"({"a":)";
  require_protocol_error(decode_with(decoder::request, object_deep), "nesting");
  CHECK_FALSE(wire::is_error_payload(std::string(100000, '{') + "\"error\""));
  CHECK(wire::decode_error(deep).message.size() <= 512);
}

// -- robustness
// ---------------------------------------------------------------------

namespace {

/// Decodes `json` with every decoder; a decoded value must survive
/// encode -> decode -> encode unchanged, a failure must be a described
/// protocol error. Appends what went wrong to `problems`.
void exercise(std::string_view json, std::vector<std::string>& problems) {
  auto check = [&](const char* what, const failure& err, auto&& reencode) {
    if (err) {
      if (err.code != errc::protocol_error || err.message.empty() ||
          !is_valid_utf8(err.message))
        problems.push_back(std::string{what} + ": bad failure for " +
                           std::string{json});
      return;
    }
    auto [first, second] = reencode();
    if (first != second)
      problems.push_back(std::string{what} + ": unstable for " +
                         std::string{json});
  };
  chat_request req;
  check("request", wire::decode_request(json, req), [&] {
    auto a = wire::encode_request(req);
    chat_request again;
    auto err = wire::decode_request(a, again);
    return std::pair{a, err ? err.message : wire::encode_request(again)};
  });
  chat_completion comp;
  check("completion", wire::decode_completion(json, comp), [&] {
    auto a = wire::encode_completion(comp);
    chat_completion again;
    auto err = wire::decode_completion(a, again);
    return std::pair{a, err ? err.message : wire::encode_completion(again)};
  });
  completion_chunk chunk;
  check("chunk", wire::decode_chunk(json, chunk), [&] {
    auto a = wire::encode_chunk(chunk);
    completion_chunk again;
    auto err = wire::decode_chunk(a, again);
    return std::pair{a, err ? err.message : wire::encode_chunk(again)};
  });
  std::vector<model_info> models;
  check("models", wire::decode_models(json, models), [&] {
    auto a = wire::encode_models(models);
    std::vector<model_info> again;
    auto err = wire::decode_models(a, again);
    return std::pair{a, err ? err.message : wire::encode_models(again)};
  });
  auto e = wire::decode_error(json);
  if (!is_valid_utf8(e.message) || !is_valid_utf8(e.code))
    problems.push_back("error: invalid UTF-8 for " + std::string{json});
  (void)wire::is_error_payload(json);
}

std::vector<std::string> robustness_corpus() {
  std::vector<std::string> docs;
  docs.push_back(wire::encode_request(full_request()));
  docs.push_back(wire::encode_completion(full_completion()));
  for (auto& x : chunk_samples())
    docs.push_back(wire::encode_chunk(x));
  docs.push_back(wire::encode_models(model_samples()));
  docs.push_back(wire::encode_error({"Limite excedido", "429", "rate"}));
  docs.push_back(R"({"detail":[{"loc":["body",0],"msg":"inválido"}]})");
  docs.push_back(service_completion);
  for (auto x : service_chunks)
    docs.push_back(x);
  return docs;
}

} // namespace

TEST_CASE("every prefix of a valid document fails cleanly") {
  std::vector<std::string> problems;
  size_t fed = 0;
  for (auto& doc : robustness_corpus()) {
    REQUIRE(doc.back() == '}'); // No strict prefix is a JSON document.
    for (size_t n = 0; n < doc.size(); ++n) {
      std::string_view prefix{doc.data(), n};
      exercise(prefix, problems);
      ++fed;
      // A strict prefix of an object is never a complete document.
      chat_request req;
      completion_chunk chunk;
      if (wire::decode_request(prefix, req).code != errc::protocol_error ||
          wire::decode_chunk(prefix, chunk).code != errc::protocol_error)
        problems.push_back("prefix accepted: " + std::string{prefix});
    }
  }
  INFO((problems.empty() ? "" : problems.front()));
  CHECK(problems.empty());
  CHECK(fed > 3000);
}

TEST_CASE("byte-flipped documents never crash a decoder") {
  std::vector<std::string> problems;
  size_t fed = 0;
  size_t accepted = 0;
  for (auto& doc : robustness_corpus()) {
    for (size_t i = 0; i < doc.size(); ++i) {
      for (unsigned char mask : {0x01, 0x20, 0x80, 0xFF}) {
        auto copy = doc;
        copy[i] = static_cast<char>(copy[i] ^ mask);
        exercise(copy, problems);
        ++fed;
        completion_chunk chunk;
        accepted += !wire::decode_chunk(copy, chunk);
      }
      // Also drop the byte.
      auto copy = doc;
      copy.erase(i, 1);
      exercise(copy, problems);
      ++fed;
    }
  }
  INFO((problems.empty() ? "" : problems.front()));
  CHECK(problems.empty());
  CHECK(fed > 15000);
  CHECK(accepted > 0); // Some flips (inside strings) keep the chunk valid.
}

TEST_CASE("decoders and encoders run concurrently") {
  auto xs = chunk_samples();
  std::vector<std::string> jsons;
  for (auto& x : xs)
    jsons.push_back(wire::encode_chunk(x));
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < mismatches.size(); ++t)
    threads.emplace_back([&, t] {
      completion_chunk c;
      for (int round = 0; round < 2000; ++round) {
        auto i = (round + t) % xs.size();
        if (wire::decode_chunk(jsons[i], c) || !(c == xs[i]) ||
            wire::encode_chunk(c) != jsons[i])
          ++mismatches[t];
      }
    });
  for (auto& th : threads)
    th.join();
  CHECK(mismatches == std::vector<int>(4, 0));
}

TEST_CASE("raw control bytes inside strings are rejected everywhere") {
  // RapidJSON 1.1.0's SSE2 scan let 0x1A-0x1F through after the first 16
  // bytes of a string; requests (the gateway's input) take that parser.
  for (int byte = 0x01; byte < 0x20; ++byte) {
    auto text = std::string(40, 'a') + static_cast<char>(byte) + "b";
    chat_request req;
    auto err = wire::decode_request(
        R"({"model":"m","messages":[{"role":"user","content":")" + text +
            R"("}]})",
        req);
    CHECK(err.code == errc::protocol_error);
    completion_chunk c;
    CHECK(wire::decode_chunk(
              R"({"choices":[{"delta":{"content":")" + text + R"("}}]})", c)
              .code == errc::protocol_error);
  }
}

TEST_CASE("chunks decode alike on the fast and the general path") {
  // The fast path takes strings without \u escapes and plain integers; the
  // others go through RapidJSON. Both must give the same chunk.
  auto decode = [](const std::string& json) {
    completion_chunk c;
    auto err = wire::decode_chunk(json, c);
    REQUIRE_FALSE(err);
    return c;
  };
  SECTION("escapes that shift the text, long and short strings") {
    auto text = "line one\nline two\t\"quoted\" back\\slash / ção "s;
    auto fast = decode(R"({"id":"abcdefghijklmnopqrstuvwxyz0123456789",)"
                       R"("choices":[{"delta":{"content":)"
                       R"("line one\nline two\t\"quoted\" back\\slash \/ )"
                       "\xC3\xA7\xC3\xA3o "
                       R"("}}]})");
    auto general = decode(R"({"id":"abcdefghijklmnopqrstuvwxyz0123456789",)"
                          R"("choices":[{"delta":{"content":)"
                          R"("line one\u000aline two\t\"quoted\" back\\slash )"
                          R"(/ \u00e7\u00e3o "}}]})");
    CHECK(fast.choices.at(0).content == text);
    CHECK(fast == general);
  }
  SECTION("a special byte at every offset of a string") {
    // The fast path scans strings a block (16 or 8 bytes) at a time: put
    // each kind of byte it must stop at before, on and after every block
    // boundary, and compare with the general path (a \u escape sends the
    // whole chunk there).
    auto chunk = [](const std::string& content) {
      return R"({"choices":[{"delta":{"content":")" + content + R"("}}]})";
    };
    struct special {
      std::string raw;      // as the fast path reads it
      std::string expected; // decoded
    };
    std::vector<special> specials{{R"(\")", "\""},
                                  {R"(\\)", "\\"},
                                  {R"(\n)", "\n"},
                                  {"\xC3\xA7", "\xC3\xA7"},
                                  {"\xF0\x9F\x90\xA6", "\xF0\x9F\x90\xA6"}};
    for (std::size_t at = 0; at <= 40; ++at) {
      auto before = std::string(at, 'a');
      auto after = std::string(40 - at, 'b');
      for (auto& x : specials) {
        auto fast = decode(chunk(before + x.raw + after));
        auto general = decode(chunk(R"(\u0061)" + before + x.raw + after));
        REQUIRE(fast.choices.at(0).content == before + x.expected + after);
        CHECK(general.choices.at(0).content ==
              "a" + before + x.expected + after);
      }
      // Bytes no string may hold fail on both paths alike.
      for (auto bad : {"\x01"s, "\x1f"s, "\xFF"s, "\xC3"s}) {
        completion_chunk c;
        auto fast = wire::decode_chunk(chunk(before + bad + after), c);
        auto general =
            wire::decode_chunk(chunk(R"(\u0061)" + before + bad + after), c);
        CHECK(fast.code == errc::protocol_error);
        CHECK(general.code == errc::protocol_error);
      }
    }
  }
  SECTION("numbers outside the fast subset") {
    auto a = decode(R"({"created":1.7e9,"choices":[{"index":2.0}]})");
    auto b = decode(R"({"created":1700000000,"choices":[{"index":2}]})");
    CHECK(a == b);
    CHECK(a.choices.at(0).index == 2);
  }
  SECTION("duplicate members end as in the DOM") {
    auto c = decode(
        R"({"choices":[{"index":0},{"index":1}],"choices":[{"delta":)"
        R"({"tool_calls":[{"function":{"name":"f","name":"g",)"
        R"("arguments":"{}"}}]}}],"usage":{"prompt_tokens":1,)"
        R"("prompt_tokens_details":{"cached_tokens":1,"cached_tokens":2}}})");
    REQUIRE(c.choices.size() == 1);
    CHECK(c.choices[0].tool_calls.at(0).name == "f");
    CHECK(c.usage == usage{1, 0, 1, 1});
  }
  SECTION("error payloads are told apart in one pass") {
    completion_chunk c;
    bool error_payload = false;
    CHECK_FALSE(wire::decode_stream_chunk(R"({"error":{"message":"boom"}})", c,
                                          error_payload));
    CHECK(error_payload);
    CHECK_FALSE(wire::decode_stream_chunk(R"({"error":null,"choices":[]})", c,
                                          error_payload));
    CHECK_FALSE(error_payload);
    auto err = wire::decode_stream_chunk(R"({"choices":1})", c, error_payload);
    CHECK_FALSE(error_payload);
    CHECK(err.code == errc::protocol_error);
    CHECK(err.message == wire::decode_chunk(R"({"choices":1})", c).message);
  }
}
