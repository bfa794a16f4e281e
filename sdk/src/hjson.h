// The Hjson reader behind Json::parse (hjson.cpp).
#pragma once

#include <string>
#include <string_view>

#include "ktf/json.h"

namespace ktf::detail {

/// Parses Hjson (a superset of JSON); errors are ktf::Error "source:line:col: message" with the
/// line quoted (at most 100 characters) and a caret under the column.
Json parse_hjson(std::string_view text, const std::string& source);

}  // namespace ktf::detail
