/// @file
/// `maritaca chat`: a REPL keeping the conversation. On a terminal it has
/// line editing and history (libedit, the history kept in
/// ~/.maritaca_history); answers stream as they come; lines starting with
/// '/' are commands and never reach the model.

#include "cli.hpp"

#include "maritaca/session.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#ifdef MARITACA_HAVE_LIBEDIT
#include <editline/readline.h>
#endif

namespace maritaca::cli {

namespace {

constexpr const char* help_text =
    "commands (they never reach the model):\n"
    "  /help            this text\n"
    "  /history         the conversation so far\n"
    "  /save FILE       save the conversation as JSON\n"
    "  /load FILE       replace the conversation by a saved one\n"
    "  /clear           forget the conversation (the system prompt stays)\n"
    "  /model NAME      ask NAME from now on\n"
    "  /system TEXT     set the system prompt (empty TEXT: none)\n"
    "  /exit, /quit     leave (so does Ctrl-D)\n"
    "a line starting with // is sent with one '/' less\n";

/// Reads lines: with libedit on a terminal, else from stdin as it is.
class line_reader {
public:
  line_reader() : interactive_(isatty(STDIN_FILENO) != 0) {
#ifdef MARITACA_HAVE_LIBEDIT
    if (!interactive_) return;
    if (auto home = std::getenv("HOME"); home && *home)
      history_file_ = std::string{home} + "/.maritaca_history";
    using_history();
    stifle_history(1000);
    if (!history_file_.empty()) read_history(history_file_.c_str());
#endif
  }

  ~line_reader() {
#ifdef MARITACA_HAVE_LIBEDIT
    if (interactive_ && !history_file_.empty())
      write_history(history_file_.c_str());
#endif
  }

  line_reader(const line_reader&) = delete;
  line_reader& operator=(const line_reader&) = delete;

  /// Whether a person types (prompts and hints make sense).
  bool interactive() const noexcept {
    return interactive_;
  }

  /// Reads the next line; false at the end of input (Ctrl-D).
  bool next(std::string& line) {
#ifdef MARITACA_HAVE_LIBEDIT
    if (interactive_) {
      char* text = readline("> ");
      if (text == nullptr) return false;
      line = text;
      std::free(text);
      if (!line.empty()) add_history(line.c_str());
      return true;
    }
#endif
    if (interactive_) std::cout << "> " << std::flush;
    return static_cast<bool>(std::getline(std::cin, line));
  }

private:
  bool interactive_;
  std::string history_file_;
};

/// The conversation and the model it goes to.
struct conversation {
  chat_model model;
  std::string system_prompt;
  /// User and assistant messages (the system prompt is not in here).
  std::vector<chat_message> turns;

  /// The whole history, as sent.
  std::vector<chat_message> history() const {
    std::vector<chat_message> out;
    if (!system_prompt.empty())
      out.push_back(chat_message::system(system_prompt));
    out.insert(out.end(), turns.begin(), turns.end());
    return out;
  }
};

/// Splits "/command rest" into its command and the rest.
std::pair<std::string, std::string> split_command(const std::string& line) {
  auto space = line.find(' ');
  if (space == std::string::npos) return {line, {}};
  auto rest = line.substr(space + 1);
  auto b = rest.find_first_not_of(' ');
  return {line.substr(0, space), b == std::string::npos ? "" : rest.substr(b)};
}

std::string read_text(const std::string& path, bool& ok) {
  std::ifstream in{path, std::ios::binary};
  ok = static_cast<bool>(in);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

/// Runs a slash command; false for /exit.
bool command(conversation& c, const std::string& line) {
  auto [name, arg] = split_command(line);
  if (name == "/exit" || name == "/quit") return false;
  if (name == "/help") {
    std::cout << help_text;
  } else if (name == "/history") {
    for (auto& m : c.history())
      std::cout << m.role << ": " << m.text() << '\n';
  } else if (name == "/clear") {
    c.turns.clear();
    std::cout << "(conversation cleared)\n";
  } else if (name == "/save") {
    if (arg.empty()) {
      std::cout << "usage: /save FILE\n";
    } else if (std::ofstream out{arg};
               out << save_history(c.model.config().model, c.history())
                   << '\n') {
      std::cout << "(saved " << c.history().size() << " messages to " << arg
                << ")\n";
    } else {
      std::cout << "(cannot write " << arg << ")\n";
    }
  } else if (name == "/load") {
    bool ok = false;
    auto text = arg.empty() ? std::string{} : read_text(arg, ok);
    std::vector<chat_message> loaded;
    if (arg.empty()) {
      std::cout << "usage: /load FILE\n";
    } else if (!ok) {
      std::cout << "(cannot read " << arg << ")\n";
    } else if (auto f = load_history(text, loaded)) {
      std::cout << "(" << arg << ": " << f.message << ")\n";
    } else {
      c.turns.clear();
      c.system_prompt.clear();
      for (auto& m : loaded) {
        if (m.role == "system" && c.turns.empty() && c.system_prompt.empty())
          c.system_prompt = m.text();
        else
          c.turns.push_back(std::move(m));
      }
      std::cout << "(loaded " << c.history().size() << " messages from " << arg
                << ")\n";
    }
  } else if (name == "/model") {
    if (arg.empty()) {
      std::cout << "(model " << c.model.config().model << ")\n";
    } else {
      c.model = c.model.with_config(c.model.config().with_model(arg));
      std::cout << "(asking " << arg << " from now on)\n";
    }
  } else if (name == "/system") {
    c.system_prompt = arg;
    std::cout << (arg.empty() ? "(no system prompt)\n"
                              : "(system prompt set)\n");
  } else {
    std::cout << "unknown command '" << name
              << "' (/help lists the commands; start with // to send a '/')\n";
  }
  return true;
}

/// Asks with the whole conversation, printing the answer as it streams.
void ask(conversation& c, std::string text) {
  auto history = c.history();
  history.push_back(chat_message::user(text));
  input in;
  in.messages = std::move(history);
  auto chunks = c.model.stream(std::move(in));
  for (auto& chunk : chunks)
    std::cout << chunk.content << std::flush;
  auto& result = chunks.result();
  std::cout << std::endl;
  if (!result) {
    // The question leaves no trace: it can be asked again.
    report(result.error());
    return;
  }
  c.turns.push_back(chat_message::user(std::move(text)));
  c.turns.push_back(result->message);
}

} // namespace

int run_chat(const chat_model& model, const options& o) {
  conversation c{model, o.system_prompt, {}};
  line_reader reader;
  if (reader.interactive())
    std::cout << "(chatting with " << model.config().model
              << "; /help lists the commands, Ctrl-D leaves)\n";
  std::string line;
  for (;;) {
    if (!reader.next(line)) {
      // Ctrl-D: leave a clean line behind.
      if (reader.interactive()) std::cout << std::endl;
      break;
    }
    if (line.empty()) continue;
    if (line.rfind("//", 0) == 0) {
      ask(c, line.substr(1));
      continue;
    }
    if (line.front() == '/') {
      if (!command(c, line)) break;
      continue;
    }
    ask(c, line);
  }
  return 0;
}

} // namespace maritaca::cli
