// Token parsing for the CLI and the GUI's token editor.
#include "core/io/tokens.h"

#include <cctype>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

#include "core/util/files.h"
#include "core/util/strings.h"

namespace mechscope {

std::vector<int64_t> parse_tokens(const std::string& text, const std::vector<std::string>& vocab, int64_t rows) {
  std::unordered_map<std::string, int64_t> index;
  for (size_t i = 0; i < vocab.size(); ++i) index.emplace(vocab[i], static_cast<int64_t>(i));
  std::vector<int64_t> ids;
  std::string item;
  auto flush = [&] {
    if (item.empty()) return;
    auto it = index.find(item);
    bool digits = std::all_of(item.begin(), item.end(), [](unsigned char c) { return std::isdigit(c); });
    if (it != index.end() && !digits) {
      ids.push_back(it->second);
    } else if (digits) {
      if (item.size() > 12) throw std::invalid_argument("token id '" + item + "' is too large");
      int64_t id = std::stoll(item);
      if (id >= rows)
        throw std::invalid_argument("token id " + item + " is outside the vocabulary (ids 0.." + std::to_string(rows - 1) + ")");
      ids.push_back(id);
    } else {
      auto close = closest_matches(item, vocab, 5);
      throw std::invalid_argument("unknown token '" + item + "'" +
                                  (close.empty() ? std::string("; give ids or strings of the checkpoint's vocabulary")
                                                 : "; closest: " + join(close, ", ")));
    }
    item.clear();
  };
  for (char c : text) {
    if (c == ',' || std::isspace(static_cast<unsigned char>(c))) flush();
    else item += c;
  }
  flush();
  if (ids.empty()) throw std::invalid_argument("no tokens given");
  return ids;
}

std::vector<int64_t> read_token_file(const std::string& path, const std::vector<std::string>& vocab, int64_t rows) {
  // A regular file only (a FIFO would block, /dev/zero never end), capped at 64 MiB while it is read.
  std::istringstream in(read_file_capped(path, uint64_t{64} << 20, "token file"));
  std::ostringstream text;
  std::string line;
  while (std::getline(in, line)) {
    if (!trim(line).empty() && trim(line)[0] == '#') continue;
    text << line << '\n';
  }
  try {
    return parse_tokens(text.str(), vocab, rows);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("token file '" + path + "': " + e.what());
  }
}

std::string token_string(int64_t id, const std::vector<std::string>& vocab) {
  if (id >= 0 && id < static_cast<int64_t>(vocab.size())) return vocab[id];
  return "<row " + std::to_string(id) + ">";
}

}  // namespace mechscope
