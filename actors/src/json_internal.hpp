#pragma once

// Private to actors/src: the RapidJSON side of `json_document`, shared by
// structured.cpp, tools.cpp and chain.cpp. Never include from a public
// header.

#include "maritaca/structured.hpp"

#include <rapidjson/document.h>

#include <string>

namespace maritaca {

/// The parsed tree behind a `json_document`.
struct json_document::impl {
  /// The text that was parsed.
  std::string text;
  /// The tree (owns its allocator).
  rapidjson::Document doc;
};

/// Access to the tree of a `json_document`.
struct json_access {
  /// The root value of `x`.
  static const rapidjson::Value& root(const json_document& x) {
    return x.impl_->doc;
  }
};

/// Returns the JSON type of `x`.
json_type type_of(const rapidjson::Value& x) noexcept;

} // namespace maritaca
