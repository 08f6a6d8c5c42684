// Small string helpers shared by core and the CLI: joining, splitting, glob matching and
// "did you mean" suggestions. No torch, no I/O.
#pragma once

#include <string>
#include <vector>

namespace mechscope {

std::string join(const std::vector<std::string>& items, const std::string& sep);
std::vector<std::string> split(const std::string& s, char sep);
std::string trim(const std::string& s);
/// Shell-style match with '*' (any run, including dots) and '?' (one character).
bool glob_match(const std::string& pattern, const std::string& text);
/// Up to `limit` candidates closest to `word` by edit distance (only reasonably close ones).
std::vector<std::string> closest_matches(const std::string& word, const std::vector<std::string>& candidates,
                                         size_t limit);
/// " (did you mean a, b?)" for the close candidates, or "".
std::string closest_matches_hint(const std::string& word, const std::vector<std::string>& candidates);
/// printf-style formatting of one number: fmt("%.3f", 0.9981) -> "0.998".
std::string fmt(const char* format, double v);
/// Fixed-point with `digits` decimals ("0.998").
std::string format_double(double v, int digits);
/// A CSV cell (RFC 4180): as it is, or quoted with its quotes doubled when it holds a comma, quote or line break.
std::string csv_quote(const std::string& cell);
/// Human-readable byte count ("3.2 MiB").
std::string format_bytes(double bytes);

}  // namespace mechscope
