/// @file
/// The command-line walk shared by the programs under apps/.

#include "maritaca/apps/flags.hpp"

#include <algorithm>

namespace maritaca::apps {

flag_reader::flag_reader(int argc, const char* const* argv) noexcept
    : argc_(argc), argv_(argv) {
  // nop
}

bool flag_reader::next() {
  if (++pos_ >= argc_) return false;
  flag_ = argv_[pos_];
  value_.clear();
  has_value_ = false;
  // Accept both "--flag value" and "--flag=value".
  if (auto eq = flag_.find('=');
      flag_.rfind("--", 0) == 0 && eq != std::string::npos) {
    value_ = flag_.substr(eq + 1);
    flag_.resize(eq);
    has_value_ = true;
  }
  return true;
}

bool flag_reader::take_value(std::span<const std::string_view> known,
                             std::string& error) {
  if (std::find(known.begin(), known.end(), flag_) == known.end()) {
    error = "unknown option '" + flag_ + "'";
    return false;
  }
  if (!has_value_) {
    if (pos_ + 1 >= argc_) {
      error = "option " + flag_ + " needs a value";
      return false;
    }
    value_ = argv_[++pos_];
  }
  return true;
}

std::string flag_reader::bad_value() const {
  return "bad value '" + value_ + "' for " + flag_;
}

} // namespace maritaca::apps
