/// @file
/// `maritaca batch`: one prompt per line, answered concurrently (within the
/// dispatcher's limits), printed as JSON lines in input order, with a
/// progress bar on stderr when stderr is a terminal.

#include "cli.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
#include <iostream>
#include <string>
#include <vector>

namespace maritaca::cli {

namespace {

using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

double seconds_since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

/// A progress bar on stderr, drawn only when stderr is a terminal:
/// `[=====>    ] 120/400  30%  41.2/s  ETA 6s`. It is taken off the screen
/// before every stdout line, so answers and bar never interleave.
class progress_bar {
public:
  explicit progress_bar(std::size_t total)
      : total_(total), on_(isatty(STDERR_FILENO) != 0),
        start_(clock_type::now()) {
    // nop
  }

  ~progress_bar() { clear(); }

  /// Whether the bar is drawn at all.
  bool on() const noexcept { return on_; }

  /// Takes the bar off the screen.
  void clear() {
    if (!on_ || !drawn_) return;
    std::fputs("\r\033[K", stderr);
    std::fflush(stderr);
    drawn_ = false;
  }

  /// Draws the bar for `done` answers, `failed` of them errors.
  void draw(std::size_t done, std::size_t failed) {
    if (!on_ || total_ == 0) return;
    auto elapsed = seconds_since(start_);
    auto rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0.0;
    char tail[96];
    auto percent = static_cast<int>(100 * done / total_);
    if (done > 0 && done < total_ && rate > 0) {
      auto eta = static_cast<long>((total_ - done) / rate + 0.5);
      std::snprintf(tail, sizeof(tail), " %zu/%zu %3d%% %.1f/s ETA %lds", done,
                    total_, percent, rate, eta);
    } else {
      std::snprintf(tail, sizeof(tail), " %zu/%zu %3d%% %.1f/s", done, total_,
                    percent, rate);
    }
    std::string text = tail;
    if (failed > 0) text += " (" + std::to_string(failed) + " failed)";
    // The bar takes what the terminal's width leaves.
    auto width = terminal_width();
    auto room = width > text.size() + 8 ? width - text.size() - 3 : 0;
    std::string bar;
    if (room > 0) {
      auto full = room * done / total_;
      bar = "[" + std::string(full, '=') +
            (full < room ? ">" + std::string(room - full - 1, ' ') : "") + "]";
    }
    std::fprintf(stderr, "\r%s%s\033[K", bar.c_str(), text.c_str());
    std::fflush(stderr);
    drawn_ = true;
  }

private:
  static std::size_t terminal_width() {
    winsize ws{};
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
      return ws.ws_col;
    return 80;
  }

  std::size_t total_;
  bool on_;
  bool drawn_ = false;
  clock_type::time_point start_;
};

using pending = std::future<chat_model::result_type>;

/// How many of `futures` from `from` on are ready (the earlier ones were
/// taken).
std::size_t ready_from(std::vector<pending>& futures, std::size_t from) {
  std::size_t n = 0;
  for (auto i = from; i < futures.size(); ++i)
    if (futures[i].wait_for(0s) == std::future_status::ready) ++n;
  return n;
}

} // namespace

int run_batch(const chat_model& model, const options& o) {
  std::ifstream file;
  std::istream* in = &std::cin;
  if (o.args[0] != "-") {
    file.open(o.args[0]);
    if (!file) throw usage_error{"cannot open " + o.args[0]};
    in = &file;
  }
  auto start = clock_type::now();
  std::vector<pending> futures;
  std::string line;
  while (std::getline(*in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    futures.push_back(model.ainvoke(make_input(o, line)));
  }
  progress_bar bar{futures.size()};
  std::size_t failed = 0;
  std::size_t retried = 0;
  for (std::size_t i = 0; i < futures.size(); ++i) {
    // Redraw while the next answer in order is still coming.
    while (bar.on() && futures[i].wait_for(100ms) != std::future_status::ready)
      bar.draw(i + ready_from(futures, i), failed);
    auto result = futures[i].get();
    bar.clear();
    if (result) {
      if (result->attempts > 1) ++retried;
      std::cout << to_json(*result) << std::endl;
    } else {
      ++failed;
      std::cout << to_json(result.error()) << std::endl;
    }
    bar.draw(i + 1 + ready_from(futures, i + 1), failed);
  }
  bar.clear();
  auto elapsed = seconds_since(start);
  std::fprintf(
      stderr,
      "maritaca: %zu prompts: %zu answered, %zu failed, %zu "
      "retried; %.1f s (%.1f/s)\n",
      futures.size(), futures.size() - failed, failed, retried, elapsed,
      elapsed > 0 ? static_cast<double>(futures.size()) / elapsed : 0.0);
  return failed == 0 ? 0 : 1;
}

} // namespace maritaca::cli
