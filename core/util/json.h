// Bounded JSON parsing: every JSON text that comes from outside (configs, checkpoint attributes, safetensors
// headers, results files, typed options) goes through parse_json, which refuses nesting deeper than
// kMaxJsonDepth before nlohmann's parser builds anything. The parser itself is iterative, but copying,
// comparing and dump() of a json value recurse, so a value nested a million deep would overflow the stack
// later, far from where it was read (docs/robustness.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <type_traits>
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

/// `v` as an int64 when it holds exactly an integer: 64 and 64.0 do, 64.5, 2^64+5 (which JSON readers keep as a
/// float), true and "64" do not (nlohmann's get<int64_t>() would truncate, wrap or convert them silently).
std::optional<int64_t> exact_int64(const nlohmann::json& v);

/// get<T>() for a JSON value, except that an integer T takes only exact integers within its range (exact_int64);
/// throws std::invalid_argument describing what was found otherwise.
template <typename T>
T get_exact(const nlohmann::json& v) {
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    const auto i = exact_int64(v);
    if (!i || *i < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
        (*i > 0 && static_cast<uint64_t>(*i) > static_cast<uint64_t>(std::numeric_limits<T>::max())))
      throw std::invalid_argument("expected an integer" + std::string(std::is_unsigned_v<T> ? " >= 0" : "") +
                                  " in range, found " + v.dump());
    return static_cast<T>(*i);
  } else {
    return v.get<T>();
  }
}

}  // namespace mechscope
