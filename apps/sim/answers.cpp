#include "answers.hpp"

#include "hash.hpp"

#include <rapidjson/document.h>
#include <rapidjson/pointer.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <optional>

namespace maritaca::sim {

namespace {

// -- text helpers -------------------------------------------------------------

bool is_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
         c == '\v';
}

bool is_digit(char c) noexcept {
  return c >= '0' && c <= '9';
}

std::string lower_ascii(std::string_view s) {
  std::string result{s};
  for (auto& c : result)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return result;
}

/// The text of a message: its content or its text parts.
std::string message_text(const chat_message& m) {
  if (m.parts.empty()) return m.text();
  std::string result;
  for (auto& p : m.parts) {
    if (p.type != content_part::kind::text) continue;
    if (!result.empty()) result += ' ';
    result += p.text;
  }
  return result;
}

size_t count_images(const chat_message& m) {
  return static_cast<size_t>(
      std::count_if(m.parts.begin(), m.parts.end(), [](const content_part& p) {
        return p.type == content_part::kind::image_url;
      }));
}

/// Lowercases ASCII, drops apostrophes, turns punctuation into spaces and
/// collapses whitespace, wrapped in single spaces so that phrases can be
/// matched as whole words with `has(" phrase ")`.
std::string normalize(std::string_view text) {
  std::string result = " ";
  for (char c : text) {
    if (c == '\'') continue;
    if (c == '?' || c == '!' || c == '.' || c == ',' || c == ';' || c == ':' ||
        c == '"' || c == '(' || c == ')' || is_space(c))
      c = ' ';
    else
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (c == ' ' && result.back() == ' ') continue;
    result += c;
  }
  if (result.back() != ' ') result += ' ';
  return result;
}

/// Whether normalized `text` contains the words `phrase` ("a b").
bool has(const std::string& text, std::string_view phrase) {
  std::string needle;
  needle.reserve(phrase.size() + 2);
  needle += ' ';
  needle += phrase;
  needle += ' ';
  return text.find(needle) != std::string::npos;
}

template <class... Ts>
bool has_any(const std::string& text, Ts... phrases) {
  return (has(text, phrases) || ...);
}

/// Whether normalized `text` looks Portuguese (answers follow its language).
bool looks_portuguese(const std::string& text) {
  return has_any(text, "qual", "quanto", "quem", "onde", "como", "o que",
                 "você", "voce", "olá", "ola", "oi", "conte", "diga",
                 "explique", "é", "são", "está", "tudo", "obrigado", "obrigada",
                 "meu", "minha", "eu", "uma", "do", "da");
}

std::string format_number(double x) {
  if (std::abs(x) < 1e15 && x == std::floor(x))
    return std::to_string(static_cast<long long>(x));
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.10g", x);
  return buf;
}

// -- arithmetic ---------------------------------------------------------------

struct arithmetic {
  std::string text;  // the expression as found, e.g. "2+2"
  std::string shown; // normalized, e.g. "2 + 2"
  double lhs = 0;
  double rhs = 0;
  char op = '+';
};

/// Parses a number at `s[i]` (digits, optional fraction); advances `i`.
std::optional<double> scan_number(std::string_view s, size_t& i) {
  size_t start = i;
  if (i < s.size() && s[i] == '-' && i + 1 < s.size() && is_digit(s[i + 1]))
    ++i;
  if (i >= s.size() || !is_digit(s[i])) {
    i = start;
    return std::nullopt;
  }
  while (i < s.size() && is_digit(s[i]))
    ++i;
  if (i + 1 < s.size() && s[i] == '.' && is_digit(s[i + 1])) {
    ++i;
    while (i < s.size() && is_digit(s[i]))
      ++i;
  }
  return std::stod(std::string{s.substr(start, i - start)});
}

/// Parses an operator (symbol or word) at `s[i]`; advances `i`.
std::optional<char> scan_operator(std::string_view s, size_t& i) {
  struct entry {
    std::string_view text;
    char op;
  };
  static constexpr entry ops[] = {
      {"+", '+'},
      {"-", '-'},
      {"*", '*'},
      {"/", '/'},
      {"x ", '*'},
      {"\xc3\x97", '*'}, // U+00D7 multiplication sign
      {"\xc3\xb7", '/'}, // U+00F7 division sign
      {"plus ", '+'},
      {"mais ", '+'},
      {"minus ", '-'},
      {"menos ", '-'},
      {"times ", '*'},
      {"vezes ", '*'},
      {"multiplied by ", '*'},
      {"multiplicado por ", '*'},
      {"divided by ", '/'},
      {"dividido por ", '/'},
  };
  for (auto& e : ops) {
    if (s.substr(i, e.text.size()) == e.text) {
      i += e.text.size();
      return e.op;
    }
  }
  return std::nullopt;
}

/// Finds the first "A op B" in lowercase `s`.
std::optional<arithmetic> find_arithmetic(std::string_view s) {
  for (size_t i = 0; i < s.size(); ++i) {
    // A number starts at a digit not preceded by a letter or digit.
    if (!is_digit(s[i]) ||
        (i > 0 && (std::isalnum(static_cast<unsigned char>(s[i - 1])) ||
                   s[i - 1] == '.')))
      continue;
    size_t start =
        i > 0 && s[i - 1] == '-' && (i == 1 || is_space(s[i - 2])) ? i - 1 : i;
    size_t j = start;
    auto lhs = scan_number(s, j);
    if (!lhs) continue;
    size_t lhs_end = j;
    while (j < s.size() && s[j] == ' ')
      ++j;
    auto op = scan_operator(s, j);
    if (!op) {
      i = lhs_end;
      continue;
    }
    while (j < s.size() && s[j] == ' ')
      ++j;
    auto rhs = scan_number(s, j);
    if (!rhs) {
      i = lhs_end;
      continue;
    }
    arithmetic result;
    result.text = std::string{s.substr(start, j - start)};
    result.lhs = *lhs;
    result.rhs = *rhs;
    result.op = *op;
    result.shown = format_number(*lhs) + " " + *op + " " + format_number(*rhs);
    return result;
  }
  return std::nullopt;
}

std::string arithmetic_answer(const arithmetic& a, bool pt) {
  double value = 0;
  switch (a.op) {
  case '+':
    value = a.lhs + a.rhs;
    break;
  case '-':
    value = a.lhs - a.rhs;
    break;
  case '*':
    value = a.lhs * a.rhs;
    break;
  default:
    if (a.rhs == 0)
      return pt ? "Não é possível dividir por zero."
                : "Division by zero is undefined.";
    value = a.lhs / a.rhs;
  }
  return a.shown + " = " + format_number(value) + ".";
}

// -- knowledge ----------------------------------------------------------------

struct capital {
  std::string_view keys[3];
  std::string_view en_country, pt_country, en_city, pt_city;
};

constexpr capital capitals[] = {
    {{"brazil", "brasil", ""}, "Brazil", "do Brasil", "Brasília", "Brasília"},
    {{"france", "frança", "franca"}, "France", "da França", "Paris", "Paris"},
    {{"portugal", "", ""}, "Portugal", "de Portugal", "Lisbon", "Lisboa"},
    {{"argentina", "", ""},
     "Argentina",
     "da Argentina",
     "Buenos Aires",
     "Buenos Aires"},
    {{"japan", "japão", "japao"}, "Japan", "do Japão", "Tokyo", "Tóquio"},
    {{"italy", "itália", "italia"}, "Italy", "da Itália", "Rome", "Roma"},
    {{"germany", "alemanha", ""}, "Germany", "da Alemanha", "Berlin", "Berlim"},
    {{"spain", "espanha", ""}, "Spain", "da Espanha", "Madrid", "Madri"},
};

struct canned {
  std::string_view en;
  std::string_view pt;
};

constexpr canned ai_text{
    "Artificial intelligence (AI) is the field of computer science that builds "
    "systems able to perform tasks that normally require human intelligence, "
    "such as understanding language, recognizing images and making decisions.",
    "Inteligência artificial (IA) é a área da computação que cria sistemas "
    "capazes de realizar tarefas que normalmente exigem inteligência humana, "
    "como entender linguagem, reconhecer imagens e tomar decisões."};

constexpr canned ml_text{
    "Machine learning is a branch of artificial intelligence in which "
    "computers learn patterns from data instead of following explicitly "
    "programmed rules.",
    "Aprendizado de máquina é um ramo da inteligência artificial em que os "
    "computadores aprendem padrões a partir de dados, em vez de seguir regras "
    "programadas explicitamente."};

constexpr canned dl_text{
    "Deep learning is a kind of machine learning that uses neural networks "
    "with many layers to learn representations of data, powering speech "
    "recognition, translation and image understanding.",
    "Aprendizado profundo é um tipo de aprendizado de máquina que usa redes "
    "neurais com muitas camadas para aprender representações dos dados, como "
    "no reconhecimento de fala, na tradução e na visão computacional."};

constexpr canned hello_text{"Hello! How can I help you today?",
                            "Olá! Como posso ajudar você hoje?"};

constexpr canned how_text{
    "I am doing well, thank you for asking! How can I help you?",
    "Estou bem, obrigado por perguntar! Como posso ajudar?"};

constexpr canned story_text{
    "Once upon a time, a small parrot named Maritaca lived in a palm tree in "
    "Brasília. Every morning she listened to the city and learned a new word. "
    "One day a lost child asked her for directions, and Maritaca, repeating "
    "the words she had learned, guided the child safely home. From then on, "
    "everyone in the city knew that listening carefully is the first step to "
    "helping others. The end.",
    "Era uma vez uma pequena maritaca que morava em uma palmeira em Brasília. "
    "Toda manhã ela ouvia a cidade e aprendia uma palavra nova. Um dia, uma "
    "criança perdida pediu ajuda, e a maritaca, repetindo as palavras que "
    "tinha aprendido, guiou a criança de volta para casa. Desde então, todos "
    "na cidade sabem que ouvir com atenção é o primeiro passo para ajudar "
    "alguém. Fim."};

std::string pick(const canned& c, bool pt) {
  return std::string{pt ? c.pt : c.en};
}

/// Finds "my name is X" / "meu nome é X" in `text`; returns X.
std::string find_name(std::string_view text) {
  std::string lower;
  for (char c : text)
    lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (std::string_view marker :
       {"my name is ", "meu nome é ", "meu nome e ", "me chamo "}) {
    auto pos = lower.find(marker);
    if (pos == std::string::npos) continue;
    auto start = pos + marker.size();
    auto end = start;
    while (end < text.size() && text[end] != '.' && text[end] != ',' &&
           text[end] != '!' && text[end] != '?' && text[end] != '\n')
      ++end;
    auto name = std::string{text.substr(start, end - start)};
    while (!name.empty() && is_space(name.back()))
      name.pop_back();
    if (!name.empty()) return name;
  }
  return {};
}

/// The text answer to a conversation whose last user message is `last`.
std::string knowledge_answer(const chat_request& req,
                             const chat_message* last_user) {
  auto text = last_user ? message_text(*last_user) : std::string{};
  auto norm = normalize(text);
  bool pt = looks_portuguese(norm);
  // Conversation memory: the first thing the user said.
  if (has_any(norm, "what did i say first", "what was my first message",
              "o que eu disse primeiro", "qual foi minha primeira mensagem",
              "qual foi a minha primeira mensagem")) {
    for (auto& m : req.messages) {
      if (m.role == "user")
        return (pt ? "Você disse primeiro: \"" : "You first said: \"") +
               message_text(m) + "\"";
    }
  }
  // Conversation memory: a name given earlier.
  if (has_any(norm, "what is my name", "whats my name", "qual é o meu nome",
              "qual e o meu nome", "qual o meu nome", "qual é meu nome")) {
    for (auto& m : req.messages) {
      if (&m == last_user || m.role != "user") continue;
      if (auto name = find_name(message_text(m)); !name.empty())
        return (pt ? "Seu nome é " : "Your name is ") + name + ".";
    }
    return pt ? "Ainda não sei o seu nome." : "I don't know your name yet.";
  }
  if (auto name = find_name(text); !name.empty())
    return (pt ? "Prazer em conhecer você, " : "Nice to meet you, ") + name +
           "!";
  if (has(norm, "capital")) {
    for (auto& c : capitals) {
      for (auto key : c.keys) {
        if (key.empty() || !has(norm, key)) continue;
        if (pt)
          return "A capital " + std::string{c.pt_country} + " é " +
                 std::string{c.pt_city} + ".";
        return "The capital of " + std::string{c.en_country} + " is " +
               std::string{c.en_city} + ".";
      }
    }
  }
  // Arithmetic, when asked for ("What is 2+2?") or given alone ("3 * 4").
  if (auto a = find_arithmetic(lower_ascii(text))) {
    bool asked =
        has_any(norm, "what is", "whats", "how much is", "calculate", "compute",
                "evaluate", "solve", "quanto é", "quanto e", "quanto dá",
                "quanto da", "calcule", "qual é", "qual e", "resolva");
    if (asked || count_words(text) <= count_words(a->text) + 1)
      return arithmetic_answer(*a, pt);
  }
  if (has_any(norm, "what is deep learning", "whats deep learning",
              "o que é aprendizado profundo", "o que é deep learning"))
    return pick(dl_text, pt);
  if (has_any(norm, "what is machine learning", "whats machine learning",
              "o que é aprendizado de máquina", "o que é machine learning"))
    return pick(ml_text, pt);
  if (has_any(norm, "what is ai", "whats ai", "what is artificial intelligence",
              "o que é ia", "o que é inteligência artificial"))
    return pick(ai_text, pt);
  if (has_any(norm, "how are you", "tudo bem", "como vai", "como você está",
              "como voce esta"))
    return pick(how_text, pt);
  if ((has(norm, "story") && has_any(norm, "tell", "write")) ||
      (has_any(norm, "história", "historia") &&
       has_any(norm, "conte", "escreva", "me conte")))
    return pick(story_text, pt);
  // A short greeting.
  if (count_words(norm) <= 4 &&
      has_any(norm, "hello", "hi", "hey", "olá", "ola", "oi", "bom dia",
              "boa tarde", "boa noite"))
    return pick(hello_text, pt);
  // Otherwise echo, with the conversation length so tests can see history.
  std::string result;
  if (auto images = last_user ? count_images(*last_user) : 0; images > 0)
    result = "Recebi " + std::to_string(images) +
             (images == 1 ? " imagem. " : " imagens. ");
  result += "Você disse: \"" + text +
            "\". Esta é uma resposta simulada do maritaca-sim (" +
            std::to_string(req.messages.size()) +
            (req.messages.size() == 1 ? " mensagem" : " mensagens") +
            " na conversa).";
  return result;
}

// -- JSON from a JSON Schema --------------------------------------------------

using writer = rapidjson::Writer<rapidjson::StringBuffer>;

/// What the schema filler may take values from.
struct fill_context {
  /// The last user message.
  std::string user_text;
  /// A place named after "in"/"em"/... in the user text (may be empty).
  std::string place;
  /// An arithmetic expression in the user text (may be empty).
  std::string expression;
  /// Integers found in the user text, consumed in order.
  std::vector<int64_t> integers;
  size_t next_integer = 0;
  /// The text answer, for `response_format` json_schema (may be empty).
  std::string answer_text;
  /// The schema document, for `$ref`.
  const rapidjson::Value* root = nullptr;
};

bool starts_upper(std::string_view word) {
  if (word.empty()) return false;
  auto c = static_cast<unsigned char>(word[0]);
  if (c >= 'A' && c <= 'Z') return true;
  // Latin-1 capitals (À..Þ) in UTF-8: C3 80..C3 9E.
  return c == 0xc3 && word.size() > 1 &&
         static_cast<unsigned char>(word[1]) >= 0x80 &&
         static_cast<unsigned char>(word[1]) <= 0x9e;
}

std::string_view strip_punct(std::string_view w, bool& ended) {
  ended = false;
  while (!w.empty() && std::string_view{".,;:!?\"')("}.find(w.back()) !=
                           std::string_view::npos) {
    w.remove_suffix(1);
    ended = true;
  }
  while (!w.empty() &&
         (w.front() == '"' || w.front() == '\'' || w.front() == '('))
    w.remove_prefix(1);
  return w;
}

/// Finds capitalized words after "in", "em", "no", "na", "at", "for" or
/// "para", e.g. "Rio de Janeiro" in "Qual o clima no Rio de Janeiro?".
std::string find_place(std::string_view text) {
  std::vector<std::string_view> words;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && is_space(text[i]))
      ++i;
    size_t start = i;
    while (i < text.size() && !is_space(text[i]))
      ++i;
    if (i > start) words.push_back(text.substr(start, i - start));
  }
  static constexpr std::string_view markers[] = {
      "in", "em", "no", "na", "at", "for", "para", "In", "Em"};
  static constexpr std::string_view connectors[] = {"de",  "do", "da", "dos",
                                                    "das", "of", "del"};
  for (size_t k = 0; k + 1 < words.size(); ++k) {
    if (std::find(std::begin(markers), std::end(markers), words[k]) ==
            std::end(markers) ||
        !starts_upper(words[k + 1]))
      continue;
    std::string result;
    for (size_t m = k + 1; m < words.size(); ++m) {
      bool ended = false;
      auto w = strip_punct(words[m], ended);
      bool connector = std::find(std::begin(connectors), std::end(connectors),
                                 w) != std::end(connectors);
      if (connector && !ended && m + 1 < words.size() &&
          starts_upper(words[m + 1])) {
        result += ' ';
        result += w;
        continue;
      }
      if (!starts_upper(w)) break;
      if (!result.empty()) result += ' ';
      result += w;
      if (ended) break;
    }
    if (!result.empty()) return result;
  }
  return {};
}

std::vector<int64_t> find_integers(std::string_view text) {
  std::vector<int64_t> result;
  for (size_t i = 0; i < text.size();) {
    if (!is_digit(text[i])) {
      ++i;
      continue;
    }
    size_t start = i;
    while (i < text.size() && is_digit(text[i]) && i - start < 18)
      ++i;
    result.push_back(std::stoll(std::string{text.substr(start, i - start)}));
    while (i < text.size() && is_digit(text[i]))
      ++i;
  }
  return result;
}

bool key_matches(const std::string& key,
                 std::initializer_list<std::string_view> names) {
  for (auto name : names)
    if (key.find(name) != std::string::npos) return true;
  return false;
}

/// Picks a string for property `key` of `schema`. Rules, in order:
/// answer-like keys (answer, response, result, ...) get the text answer in
/// json_schema mode; expression-like keys the arithmetic expression;
/// query-like keys the user's text; location-like keys the place after
/// "in"/"em"; date/email/uri formats a fixed sample; else "example".
std::string pick_string(const rapidjson::Value& schema, std::string_view key,
                        fill_context& ctx) {
  auto k = lower_ascii(key);
  if (!ctx.answer_text.empty() &&
      key_matches(k, {"answer", "response", "result", "resposta", "reply",
                      "output", "content", "text", "summary", "explanation"}))
    return ctx.answer_text;
  if (key_matches(k, {"expr", "formula", "calc"}))
    return ctx.expression.empty() ? ctx.user_text : ctx.expression;
  if (key_matches(k, {"query", "question", "prompt", "search", "text",
                      "message", "input", "topic", "pergunta", "consulta"}) ||
      k == "q")
    return ctx.user_text;
  if (key_matches(k, {"city", "location", "place", "cidade", "local", "country",
                      "pais", "region", "state", "address", "destination",
                      "origin", "where", "town", "lugar"}))
    return ctx.place.empty() ? "example" : ctx.place;
  if (auto f = schema.FindMember("format");
      f != schema.MemberEnd() && f->value.IsString()) {
    std::string_view format = f->value.GetString();
    if (format == "date") return "2024-01-01";
    if (format == "date-time") return "2024-01-01T00:00:00Z";
    if (format == "email") return "user@example.com";
    if (format == "uri" || format == "url") return "https://example.com";
  }
  return "example";
}

/// Returns the effective type of `schema`: its "type" (the first non-null
/// one of a list), else guessed from "properties"/"items", else "string".
std::string_view schema_type(const rapidjson::Value& schema) {
  if (auto t = schema.FindMember("type"); t != schema.MemberEnd()) {
    if (t->value.IsString()) return t->value.GetString();
    if (t->value.IsArray()) {
      for (auto& x : t->value.GetArray())
        if (x.IsString() && std::string_view{x.GetString()} != "null")
          return x.GetString();
    }
  }
  if (schema.HasMember("properties")) return "object";
  if (schema.HasMember("items")) return "array";
  return "string";
}

double bounded(const rapidjson::Value& schema, double x) {
  if (auto m = schema.FindMember("minimum");
      m != schema.MemberEnd() && m->value.IsNumber())
    x = std::max(x, m->value.GetDouble());
  if (auto m = schema.FindMember("maximum");
      m != schema.MemberEnd() && m->value.IsNumber())
    x = std::min(x, m->value.GetDouble());
  return x;
}

/// Writes a value satisfying `schema` (types and required keys): enums get
/// their first value, strings `pick_string`, integers the next integer of
/// the user text (else 1), numbers 1, booleans true, arrays one item,
/// objects every property (required ones always).
void fill(const rapidjson::Value& schema, std::string_view key, writer& w,
          fill_context& ctx, int depth) {
  if (depth > 8 || !schema.IsObject()) {
    w.String("example");
    return;
  }
  if (auto ref = schema.FindMember("$ref");
      ref != schema.MemberEnd() && ref->value.IsString() && ctx.root) {
    std::string_view target = ref->value.GetString();
    if (target.size() > 0 && target[0] == '#') {
      rapidjson::Pointer ptr{target.data() + 1, target.size() - 1};
      if (auto* v = ptr.IsValid() ? ptr.Get(*ctx.root) : nullptr) {
        fill(*v, key, w, ctx, depth + 1);
        return;
      }
    }
    w.String("example");
    return;
  }
  if (auto e = schema.FindMember("enum");
      e != schema.MemberEnd() && e->value.IsArray() && !e->value.Empty()) {
    e->value[0].Accept(w);
    return;
  }
  if (auto c = schema.FindMember("const"); c != schema.MemberEnd()) {
    c->value.Accept(w);
    return;
  }
  for (const char* alt : {"anyOf", "oneOf", "allOf"}) {
    auto a = schema.FindMember(alt);
    if (a == schema.MemberEnd() || !a->value.IsArray() || a->value.Empty())
      continue;
    // The first alternative that is not just `null`.
    for (auto& option : a->value.GetArray()) {
      if (option.IsObject() && schema_type(option) == "null" &&
          option.HasMember("type"))
        continue;
      fill(option, key, w, ctx, depth + 1);
      return;
    }
  }
  auto type = schema_type(schema);
  if (type == "object") {
    w.StartObject();
    std::vector<std::string_view> written;
    if (auto p = schema.FindMember("properties");
        p != schema.MemberEnd() && p->value.IsObject()) {
      for (auto& prop : p->value.GetObject()) {
        std::string_view name{prop.name.GetString(),
                              prop.name.GetStringLength()};
        w.Key(name.data(), static_cast<rapidjson::SizeType>(name.size()));
        fill(prop.value, name, w, ctx, depth + 1);
        written.push_back(name);
      }
    }
    // Required keys without a property schema still must be present.
    if (auto r = schema.FindMember("required");
        r != schema.MemberEnd() && r->value.IsArray()) {
      for (auto& x : r->value.GetArray()) {
        if (!x.IsString()) continue;
        std::string_view name{x.GetString(), x.GetStringLength()};
        if (std::find(written.begin(), written.end(), name) != written.end())
          continue;
        w.Key(name.data(), static_cast<rapidjson::SizeType>(name.size()));
        w.String("example");
      }
    }
    w.EndObject();
  } else if (type == "array") {
    w.StartArray();
    int64_t count = 1;
    if (auto m = schema.FindMember("minItems");
        m != schema.MemberEnd() && m->value.IsInt64())
      count = std::clamp<int64_t>(m->value.GetInt64(), 1, 8);
    static const rapidjson::Value empty_schema{rapidjson::kObjectType};
    auto items = schema.FindMember("items");
    const auto& item_schema =
        items != schema.MemberEnd() && items->value.IsObject() ? items->value
                                                               : empty_schema;
    for (int64_t i = 0; i < count; ++i)
      fill(item_schema, key, w, ctx, depth + 1);
    w.EndArray();
  } else if (type == "integer") {
    int64_t x = ctx.next_integer < ctx.integers.size()
                    ? ctx.integers[ctx.next_integer++]
                    : 1;
    w.Int64(static_cast<int64_t>(bounded(schema, static_cast<double>(x))));
  } else if (type == "number") {
    auto x = bounded(schema, 1.0);
    if (x == std::floor(x) && std::abs(x) < 1e15)
      w.Int64(static_cast<int64_t>(x));
    else
      w.Double(x);
  } else if (type == "boolean") {
    w.Bool(true);
  } else if (type == "null") {
    w.Null();
  } else {
    auto s = pick_string(schema, key, ctx);
    w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
  }
}

/// Builds JSON text satisfying the schema `schema_text` (an empty object
/// when the schema does not parse).
std::string from_schema(std::string_view schema_text, fill_context& ctx) {
  rapidjson::Document doc;
  doc.Parse(schema_text.data(), schema_text.size());
  if (doc.HasParseError() || !doc.IsObject()) return "{}";
  ctx.root = &doc;
  rapidjson::StringBuffer buf;
  writer w{buf};
  fill(doc, "", w, ctx, 0);
  ctx.root = nullptr;
  return std::string{buf.GetString(), buf.GetSize()};
}

fill_context make_context(const chat_message* last_user) {
  fill_context ctx;
  if (last_user == nullptr) return ctx;
  ctx.user_text = message_text(*last_user);
  ctx.place = find_place(ctx.user_text);
  ctx.integers = find_integers(ctx.user_text);
  if (auto a = find_arithmetic(lower_ascii(ctx.user_text)))
    ctx.expression = a->text;
  return ctx;
}

// -- tools --------------------------------------------------------------------

/// Words too common to tie a prompt to a tool.
bool is_stop_word(std::string_view w) {
  static constexpr std::string_view words[] = {
      "about",   "after",     "again",      "their",       "there",
      "these",   "those",     "which",      "while",       "where",
      "would",   "could",     "should",     "other",       "using",
      "given",   "value",     "values",     "return",      "returns",
      "based",   "string",    "number",     "object",      "function",
      "input",   "output",    "current",    "specified",   "provided",
      "example", "parameter", "parameters", "information", "retorna",
      "valor",   "para",      "sobre",      "dados",       "fetch",
  };
  return std::find(std::begin(words), std::end(words), w) != std::end(words);
}

/// Whether the user's normalized text `norm` mentions `tool`: its name
/// (also with '_'/'-' as spaces), a part of its name of 5+ letters, or a
/// word of its description of 5+ letters that is not a stop word, each
/// as a whole word.
bool mentions(const std::string& norm, const tool_spec& tool) {
  auto name = lower_ascii(tool.name);
  if (!name.empty() && norm.find(name) != std::string::npos) return true;
  auto spaced = name;
  std::replace(spaced.begin(), spaced.end(), '_', ' ');
  std::replace(spaced.begin(), spaced.end(), '-', ' ');
  if (!spaced.empty() && has(norm, spaced)) return true;
  auto check_words = [&](const std::string& text) {
    auto words = normalize(text);
    size_t i = 1;
    while (i < words.size()) {
      auto end = words.find(' ', i);
      if (end == std::string::npos) break;
      auto w = std::string_view{words}.substr(i, end - i);
      if (w.size() >= 5 && !is_stop_word(w) && has(norm, w)) return true;
      i = end + 1;
    }
    return false;
  };
  return check_words(spaced) || check_words(tool.description);
}

std::vector<tool_call> plan_tool_calls(const chat_request& req,
                                       const chat_message* last_user,
                                       uint64_t request_hash) {
  std::vector<const tool_spec*> chosen;
  auto mode = req.tool_choice ? req.tool_choice->mode : std::string{"auto"};
  if (req.tools.empty() || mode == "none") return {};
  static const tool_spec unknown_tool{};
  if (mode == "function") {
    auto i = std::find_if(req.tools.begin(), req.tools.end(),
                          [&](const tool_spec& t) {
                            return t.name == req.tool_choice->function;
                          });
    if (i != req.tools.end()) chosen.push_back(&*i);
  } else {
    // Mentions count only when the user spoke last.
    bool user_last = !req.messages.empty() && &req.messages.back() == last_user;
    if (user_last) {
      auto norm = normalize(message_text(*last_user));
      for (auto& t : req.tools)
        if (mentions(norm, t)) chosen.push_back(&t);
    }
    if (chosen.empty() && mode == "required")
      chosen.push_back(&req.tools.front());
  }
  std::vector<tool_call> result;
  auto ctx = make_context(last_user);
  for (size_t i = 0; i < chosen.size(); ++i) {
    tool_call call;
    call.id = "call_" +
              hex64(mix64(request_hash ^ mix64(i + 1))).substr(0, 16) +
              hex64(mix64(request_hash + i)).substr(0, 8);
    call.name = chosen[i]->name;
    call.arguments = from_schema(chosen[i]->parameters, ctx);
    result.push_back(std::move(call));
  }
  if (mode == "function" && result.empty()) {
    // A forced function that was not offered: call it without arguments.
    tool_call call;
    call.id = "call_" + hex64(mix64(request_hash ^ 1));
    call.name = req.tool_choice->function;
    call.arguments = "{}";
    result.push_back(std::move(call));
  }
  return result;
}

// -- synthetic content
// ------------------------------------------------------------

constexpr std::string_view synthetic_vocabulary[] = {
    "sabiá",     "canta", "na",   "palmeira", "maritaca", "voa",
    "no",        "céu",   "azul", "do",       "cerrado",  "ao",
    "amanhecer", "entre", "ipês", "floridos",
};

int64_t prompt_tokens(const chat_request& req) {
  int64_t result = 0;
  for (auto& m : req.messages) {
    result += count_words(message_text(m));
    result += static_cast<int64_t>(count_images(m)) * 85;
    for (auto& c : m.tool_calls)
      result += 1 + count_words(c.arguments);
  }
  return result;
}

/// Cuts `text` before the first stop sequence; returns whether it did.
bool apply_stop(std::string& text, const std::vector<std::string>& stop) {
  size_t cut = std::string::npos;
  for (auto& s : stop)
    if (!s.empty()) cut = std::min(cut, text.find(s));
  if (cut == std::string::npos) return false;
  text.resize(cut);
  return true;
}

/// Cuts `text` to its first `n` words; returns whether it did.
bool truncate_words(std::string& text, int64_t n) {
  size_t pos = 0;
  for (int64_t i = 0; i < n && pos < text.size(); ++i)
    pos = next_piece(text, pos);
  if (pos >= text.size()) return false;
  text.resize(pos);
  while (!text.empty() && is_space(text.back()))
    text.pop_back();
  return true;
}

} // namespace

const std::vector<model_info>& served_models() {
  static const std::vector<model_info> models{
      {"sabia-4", 1735689600, "maritaca"},
      {"sabiazinho-4", 1735689600, "maritaca"},
      {"sabia-4-thinking", 1735689600, "maritaca"},
  };
  return models;
}

bool is_served_model(std::string_view name) noexcept {
  for (auto& m : served_models())
    if (m.id == name) return true;
  return false;
}

size_t next_piece(std::string_view text, size_t pos) noexcept {
  while (pos < text.size() && !is_space(text[pos]))
    ++pos;
  while (pos < text.size() && is_space(text[pos]))
    ++pos;
  return pos;
}

int64_t count_words(std::string_view text) noexcept {
  int64_t n = 0;
  size_t pos = 0;
  while (pos < text.size() && is_space(text[pos]))
    ++pos;
  while (pos < text.size()) {
    pos = next_piece(text, pos);
    ++n;
  }
  return n;
}

void append_synthetic_piece(std::string& out, int64_t i, int64_t n) {
  constexpr auto size = std::size(synthetic_vocabulary);
  out += synthetic_vocabulary[static_cast<size_t>(i) % size];
  if (i + 1 < n) out += ' ';
}

void materialize(answer& x) {
  if (x.synthetic_words < 0) return;
  x.content.clear();
  x.content.reserve(static_cast<size_t>(x.synthetic_words) * 8);
  for (int64_t i = 0; i < x.synthetic_words; ++i)
    append_synthetic_piece(x.content, i, x.synthetic_words);
  x.synthetic_words = -1;
}

answer make_answer(const chat_request& req, uint64_t request_hash,
                   int64_t chunks) {
  answer result;
  result.id = "chatcmpl-" + hex64(request_hash) + hex64(mix64(request_hash));
  result.created = 1767225600; // 2026-01-01: fixed for determinism
  const chat_message* last_user = nullptr;
  for (auto i = req.messages.rbegin(); i != req.messages.rend(); ++i) {
    if (i->role == "user") {
      last_user = &*i;
      break;
    }
  }
  result.tokens.prompt_tokens = prompt_tokens(req);
  if (chunks >= 0) {
    result.synthetic_words = chunks;
    if (req.max_tokens && *req.max_tokens < chunks) {
      result.synthetic_words = std::max<int64_t>(0, *req.max_tokens);
      result.finish_reason = "length";
    }
    result.tokens.completion_tokens = result.synthetic_words;
  } else if (result.tool_calls = plan_tool_calls(req, last_user, request_hash);
             !result.tool_calls.empty()) {
    result.finish_reason = "tool_calls";
    for (auto& c : result.tool_calls)
      result.tokens.completion_tokens +=
          1 + static_cast<int64_t>(c.arguments.size() + 3) / 4;
  } else {
    // After tool results, answer with them; else from the knowledge table.
    std::string text;
    if (!req.messages.empty() && req.messages.back().role == "tool") {
      std::vector<std::string> results;
      for (auto i = req.messages.rbegin();
           i != req.messages.rend() && i->role == "tool"; ++i)
        results.insert(results.begin(), message_text(*i));
      if (results.size() == 1) {
        text = "The result is: " + results.front();
      } else {
        text = "The results are: ";
        for (size_t i = 0; i < results.size(); ++i)
          text += (i > 0 ? "; " : "") + results[i];
      }
    } else {
      text = knowledge_answer(req, last_user);
    }
    if (req.response_format && req.response_format->type == "json_object") {
      rapidjson::StringBuffer buf;
      writer w{buf};
      w.StartObject();
      w.Key("answer");
      w.String(text.data(), static_cast<rapidjson::SizeType>(text.size()));
      w.EndObject();
      text.assign(buf.GetString(), buf.GetSize());
    } else if (req.response_format &&
               req.response_format->type == "json_schema") {
      auto ctx = make_context(last_user);
      ctx.answer_text = text;
      text = from_schema(req.response_format->schema.empty()
                             ? std::string_view{"{\"type\":\"object\"}"}
                             : std::string_view{req.response_format->schema},
                         ctx);
    }
    if (apply_stop(text, req.stop)) result.finish_reason = "stop";
    if (req.max_tokens &&
        truncate_words(text, std::max<int64_t>(0, *req.max_tokens)))
      result.finish_reason = "length";
    result.tokens.completion_tokens = count_words(text);
    result.content = std::move(text);
  }
  result.tokens.total_tokens =
      result.tokens.prompt_tokens + result.tokens.completion_tokens;
  return result;
}

} // namespace maritaca::sim
