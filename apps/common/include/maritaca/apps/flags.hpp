#pragma once

/// @file
/// Command-line parsing shared by the programs under apps/: the walk over
/// `--flag value` / `--flag=value` arguments and the number parser.

#include <charconv>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

namespace maritaca::apps {

/// Parses all of `text` as a number in [`min`, `max`] into `out`. Returns
/// false (leaving `out` alone) on anything else.
template <class T>
bool parse_number(std::string_view text, T& out, T min, T max) {
  T value{};
  auto [end, ec] =
      std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size() || value < min ||
      value > max)
    return false;
  out = value;
  return true;
}

/// Walks a command line, accepting both `--flag value` and `--flag=value`.
class flag_reader {
public:
  /// Reads `argv[1]` to `argv[argc - 1]`.
  flag_reader(int argc, const char* const* argv) noexcept;

  /// Moves to the next flag; returns false when no argument is left.
  bool next();

  /// Returns the current flag, without its `=value` part.
  const std::string& flag() const noexcept { return flag_; }

  /// Returns the current flag's value (valid after `take_value`).
  const std::string& value() const noexcept { return value_; }

  /// Takes the value of the current flag, which must be one of `known`:
  /// the inline `=value`, else the next argument. Returns false and sets
  /// `error` for an unknown flag or a missing value.
  bool take_value(std::span<const std::string_view> known, std::string& error);

  /// Returns the error text for a value the current flag does not accept.
  std::string bad_value() const;

private:
  int argc_;
  const char* const* argv_;
  /// Index of the current argument.
  int pos_ = 0;
  std::string flag_;
  std::string value_;
  /// The current argument carried its value after '='.
  bool has_value_ = false;
};

} // namespace maritaca::apps
