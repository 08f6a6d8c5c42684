// Bounded JSON parsing: every JSON text that comes from outside (configs, checkpoint attributes, safetensors
// headers, results files, typed options) goes through parse_json, which refuses nesting deeper than
// kMaxJsonDepth before nlohmann's parser builds anything. The parser itself is iterative, but copying,
// comparing and dump() of a json value recurse, so a value nested a million deep would overflow the stack
// later, far from where it was read (docs/robustness.md).
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace mechscope {

/// Deep enough for any configuration MechScope or transformers writes (they nest at most 4-5 levels).
constexpr std::size_t kMaxJsonDepth = 256;

/// Thrown for text nested deeper than the bound (callers add which file or attribute it was).
class JsonDepthError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The deepest nesting of arrays and objects in `text` (strings and escapes skipped), stopping early once
/// `stop_at` is exceeded. Linear, no allocation.
std::size_t json_nesting_depth(std::string_view text, std::size_t stop_at = static_cast<std::size_t>(-1));

/// nlohmann::json::parse(text) after refusing nesting deeper than `max_depth`: "JSON nested deeper than 256
/// levels (at byte N)". Syntax errors propagate as nlohmann::json::parse_error, as before.
nlohmann::json parse_json(std::string_view text, std::size_t max_depth = kMaxJsonDepth);

}  // namespace mechscope
