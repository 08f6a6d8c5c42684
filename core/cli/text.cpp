// mechscope-cli tokenize: text through a model's tokenizer.json (core/text/tokenizer.h), as ids or, with --json,
// ids, token strings and the input bytes each covers.
#include <filesystem>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/cli/commands.h"
#include "core/io/tokens.h"
#include "core/text/tokenizer.h"
#include "core/util/files.h"

namespace mechscope::cli {

using nlohmann::json;

std::string tokenizer_path_of(const std::string& model, bool required) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_regular_file(model, ec) && fs::path(model).filename() == "tokenizer.json") return model;
  const fs::path dir = fs::is_directory(model, ec) ? fs::path(model) : fs::path(model).parent_path();
  const fs::path t = dir / "tokenizer.json";
  if (fs::is_regular_file(t, ec)) return t.string();
  if (!required) return "";
  throw std::runtime_error("'" + model + "' has no tokenizer.json beside it (a MechScope checkpoint keeps its task's " +
                           "vocabulary, not a tokenizer; give --tokenizer FILE)");
}

namespace {

std::string read_text_file(const std::string& path) { return read_file_capped(path, uint64_t{64} << 20, "text file"); }

}  // namespace

std::vector<int64_t> typed_input(const TypedInput& in, const std::string& model, const std::vector<std::string>& vocab,
                                 int64_t rows) {
  if (!in.text.empty() || !in.text_file.empty()) {
    const Tokenizer tok = Tokenizer::from_file(tokenizer_path_of(model));
    const std::vector<int64_t> ids = tok.encode(in.text_file.empty() ? in.text : read_text_file(in.text_file));
    if (ids.empty()) throw std::invalid_argument("the text encodes to no tokens");
    for (int64_t id : ids)
      if (id >= rows)
        throw std::invalid_argument("the tokenizer gives id " + std::to_string(id) + ", beyond the model's " +
                                    std::to_string(rows) + " embedding rows: tokenizer.json does not belong to this model");
    return ids;
  }
  return in.tokens.empty() ? read_token_file(in.tokens_file, vocab, rows) : parse_tokens(in.tokens, vocab, rows);
}

int run_tokenize(const TokenizeOptions& o) {
  if (o.model.empty() == o.tokenizer.empty())
    throw std::invalid_argument("tokenize: give exactly one of --checkpoint (a model with tokenizer.json) or --tokenizer");
  if ((o.text.empty() ? 0 : 1) + (o.text_file.empty() ? 0 : 1) + (o.ids.empty() ? 0 : 1) != 1)
    throw std::invalid_argument("tokenize: give exactly one of --text, --text-file or --decode");
  const std::string path = o.tokenizer.empty() ? tokenizer_path_of(o.model) : o.tokenizer;
  const Tokenizer tok = Tokenizer::from_file(path);
  if (!o.ids.empty()) {
    const std::string text = tok.decode(o.ids, !o.keep_special);
    if (o.json) std::cout << json({{"tokenizer", path}, {"ids", o.ids}, {"text", text}}).dump(2) << "\n";
    else std::cout << text << "\n";
    return 0;
  }
  const std::string text = o.text_file.empty() ? o.text : read_text_file(o.text_file);
  const auto toks = tok.encode_tokens(text, !o.no_special);
  if (!o.json) {
    for (size_t k = 0; k < toks.size(); ++k) std::cout << (k ? "," : "") << toks[k].id;
    std::cout << "\n";
    return 0;
  }
  json list = json::array();
  for (const auto& t : toks)
    list.push_back({{"id", t.id},
                    {"token", t.token},
                    {"bytes", {t.begin, t.end}},
                    {"text", text.substr(t.begin, t.end - t.begin)},
                    {"special", t.special}});
  std::cout << json({{"tokenizer", path}, {"describe", tok.describe()}, {"tokens", list}})
                   .dump(2, ' ', false, json::error_handler_t::replace)
            << "\n";
  return 0;
}

}  // namespace mechscope::cli
