// Token input: "5,9,2" (ids) or "<bos>,k3,v7" (strings of the checkpoint's vocabulary), mixed freely,
// separated by commas and/or whitespace; token files hold the same text. Errors name the bad token.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mechscope {

/// Parses one sequence. An item of digits only is an id (checked against `rows`); anything else is
/// looked up in `vocab`. Throws std::invalid_argument naming the item and suggesting close tokens.
std::vector<int64_t> parse_tokens(const std::string& text, const std::vector<std::string>& vocab, int64_t rows);
/// Reads a token file (one sequence; '#' starts a comment line). Throws std::runtime_error if unreadable.
std::vector<int64_t> read_token_file(const std::string& path, const std::vector<std::string>& vocab, int64_t rows);
/// Display string of a token id ("<row 67>" for padded embedding rows beyond the vocabulary).
std::string token_string(int64_t id, const std::vector<std::string>& vocab);

}  // namespace mechscope
