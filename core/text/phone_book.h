// P2's phone-book prompt as text (docs/text.md, "Phone book"): entries "First Last: 6123456789" one per line (a
// ten-digit number whose first digit is 6-9), then a blank line, two of the entries again as few-shot lookups, a
// blank line, and a third entry's name with its colon; the answer is that entry's number, scored by greedy
// generation (the continuation up to its first newline, stripped, equal to the number), as P2's
// pretrained_exps/test_utils.py does. Made as prompt-dataset lines (core/text/dataset.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mechscope {

struct PhoneBookConfig {
  int64_t min_entries = 8, max_entries = 30;  ///< entries per prompt, drawn uniformly (P2's defaults)
  /// From {"min_entries": .., "max_entries": ..}; refuses bad values by name.
  static PhoneBookConfig from_json(const nlohmann::json& j, const std::string& where);
};

/// First names and surnames (our own lists; P2 draws from the `names` package).
const std::vector<std::string>& phone_book_first_names();
const std::vector<std::string>& phone_book_surnames();

/// Example `seed`'s prompt as a dataset line: "clean" (the prompt, ending with the queried name's colon),
/// "answer" (" " and the number: the continuation as the model sees it) and "key"/"value" spans of every entry
/// (the name, the number).
nlohmann::json phone_book_line(const PhoneBookConfig& c, uint64_t seed);

}  // namespace mechscope
