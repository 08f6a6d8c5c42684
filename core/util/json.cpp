// Bounded JSON parsing (see json.h).
#include "core/util/json.h"

#include <cmath>

namespace mechscope {

namespace {
// Depth scan; returns the depth reached and, through `where`, the byte at which it first exceeded `stop_at`.
std::size_t scan_depth(std::string_view text, std::size_t stop_at, std::size_t* where) {
  std::size_t depth = 0, deepest = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;  // the escaped character cannot end the string
      else if (c == '"') in_string = false;
      continue;
    }
    switch (c) {
      case '"': in_string = true; break;
      case '[': case '{':
        if (++depth > deepest) {
          deepest = depth;
          if (deepest > stop_at) {
            if (where) *where = i;
            return deepest;
          }
        }
        break;
      case ']': case '}':
        if (depth > 0) --depth;  // unbalanced text is the parser's to report
        break;
      default: break;
    }
  }
  return deepest;
}
}  // namespace

std::size_t json_nesting_depth(std::string_view text, std::size_t stop_at) { return scan_depth(text, stop_at, nullptr); }

std::optional<int64_t> exact_int64(const nlohmann::json& v) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) <= 9007199254740992.0) return static_cast<int64_t>(d);
  }
  return std::nullopt;
}

nlohmann::json parse_json(std::string_view text, std::size_t max_depth) {
  std::size_t where = 0;
  if (scan_depth(text, max_depth, &where) > max_depth)
    throw JsonDepthError("JSON nested deeper than " + std::to_string(max_depth) + " levels (at byte " +
                         std::to_string(where) + "), which no configuration needs; refused");
  return nlohmann::json::parse(text.begin(), text.end());
}

}  // namespace mechscope
