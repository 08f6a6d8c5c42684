// Prompt datasets as a Task (see dataset.h).
#include "core/text/dataset.h"

#include <ATen/ATen.h>

#include <map>
#include <stdexcept>

#include "core/text/tokenizer.h"
#include "core/util/files.h"
#include "core/util/json.h"
#include "core/util/sha256.h"

namespace mechscope {

using nlohmann::json;

namespace {

// One example: its clean and corrupted input rows (prompt, then all but the last answer token) and the answer.
struct Example {
  int64_t line = 0;
  std::vector<int64_t> clean, corrupted;  // corrupted: empty when the line has none
  std::vector<int64_t> answer;
  size_t prefix = 0;  // the tokenizer's special tokens before the prompt
  size_t prompt = 0;  // prompt tokens, the prefix included
  std::vector<int8_t> span_role;  // per prompt token: Key or Value from the line's spans, else 0
  std::vector<int64_t> wrong;     // the wrong answers' first tokens, compared at the answer's first position
};

class DatasetTask : public Task {
 public:
  DatasetTask(std::vector<Example> ex, std::vector<std::string> vocab, json config)
      : ex_(std::move(ex)), vocab_(std::move(vocab)), config_(std::move(config)) {
    for (size_t i = 0; i < ex_.size(); ++i) {
      by_clean_.emplace(ex_[i].clean, i);
      any_wrong_ = any_wrong_ || !ex_[i].wrong.empty();
    }
  }
  json config() const override { return config_; }
  const std::vector<std::string>& vocab() const override { return vocab_; }
  // The first n lines (all of them when n is larger); the seed is not used: a dataset is its own order.
  Batch sample(int64_t n, uint64_t) const override {
    if (n <= 0) throw std::invalid_argument("a dataset sample needs at least one example");
    std::vector<const Example*> rows;
    for (size_t i = 0; i < ex_.size() && static_cast<int64_t>(i) < n; ++i) rows.push_back(&ex_[i]);
    return batch_of(rows, false);
  }
  std::vector<std::string> corruptible_roles() const override { return {"prompt"}; }
  // The corrupted prompts of the clean rows' lines (found by their tokens: a batch may be any selection of them).
  Batch corrupt(const Batch& clean, uint64_t, const std::string& role) const override {
    if (!role.empty() && role != "prompt")
      throw std::invalid_argument("a dataset corrupts its prompts (role 'prompt'), not '" + role + "'");
    std::vector<const Example*> rows;
    at::Tensor toks = clean.tokens.contiguous(), lens = clean.lengths.contiguous();
    for (int64_t b = 0; b < clean.size(); ++b) {
      const int64_t L = lens[b].item<int64_t>();
      std::vector<int64_t> row(toks[b].data_ptr<int64_t>(), toks[b].data_ptr<int64_t>() + L);
      auto it = by_clean_.find(row);
      if (it == by_clean_.end()) throw std::invalid_argument("corrupt: a batch row that is not one of the dataset's");
      const Example& e = ex_[it->second];
      if (e.corrupted.empty())
        throw std::invalid_argument("line " + std::to_string(e.line) + " of the dataset has no \"corrupted\" prompt");
      rows.push_back(&e);
    }
    Batch out = batch_of(rows, true);
    if (out.tokens.size(1) < clean.tokens.size(1)) {  // the same width as the clean batch
      const int64_t extra = clean.tokens.size(1) - out.tokens.size(1);
      out.tokens = at::constant_pad_nd(out.tokens, {0, extra}, 0);
      out.targets = at::constant_pad_nd(out.targets, {0, extra}, -100);
      out.roles = at::constant_pad_nd(out.roles, {0, extra}, 0);
      if (out.wrong.defined()) out.wrong = at::constant_pad_nd(out.wrong, {0, 0, 0, extra}, -1);
    }
    return out;
  }

 private:
  // Rows right-padded (id 0 behind each row's length: causal models never read it, and no target lies there).
  Batch batch_of(const std::vector<const Example*>& rows, bool corrupted) const {
    size_t L = 1;
    size_t W = 0;
    for (const auto* e : rows) L = std::max(L, e->clean.size()), W = std::max(W, e->wrong.size());
    const auto B = static_cast<int64_t>(rows.size());
    at::Tensor tokens = at::zeros({B, static_cast<int64_t>(L)}, at::kLong);
    at::Tensor targets = at::full({B, static_cast<int64_t>(L)}, -100, at::kLong);
    at::Tensor roles = at::zeros({B, static_cast<int64_t>(L)}, at::kChar);
    at::Tensor lengths = at::zeros({B}, at::kLong);
    auto T = tokens.accessor<int64_t, 2>(), G = targets.accessor<int64_t, 2>();
    auto R = roles.accessor<int8_t, 2>();
    for (int64_t b = 0; b < B; ++b) {
      const Example& e = *rows[static_cast<size_t>(b)];
      const std::vector<int64_t>& in = corrupted ? e.corrupted : e.clean;
      for (size_t p = 0; p < in.size(); ++p) {
        T[b][static_cast<int64_t>(p)] = in[p];
        R[b][static_cast<int64_t>(p)] = static_cast<int8_t>(p < e.prefix               ? Role::Bos
                                                             : p + 1 == e.prompt       ? Role::Query
                                                             : p >= e.prompt           ? Role::Answer
                                                                                       : Role::Filler);
        if (p < e.span_role.size() && e.span_role[p] != 0 && p + 1 != e.prompt) R[b][static_cast<int64_t>(p)] = e.span_role[p];
      }
      for (size_t j = 0; j < e.answer.size(); ++j) G[b][static_cast<int64_t>(e.prompt - 1 + j)] = e.answer[j];
      lengths[b] = static_cast<int64_t>(in.size());
    }
    Batch out{tokens, targets, roles, lengths};
    if (any_wrong_) {  // [B, L, W]: the wrong answers' first tokens at each example's first answer position
      out.wrong = at::full({B, static_cast<int64_t>(L), static_cast<int64_t>(W)}, -1, at::kLong);
      for (int64_t b = 0; b < B; ++b) {
        const Example& e = *rows[static_cast<size_t>(b)];
        for (size_t w = 0; w < e.wrong.size(); ++w)
          out.wrong[b][static_cast<int64_t>(e.prompt - 1)][static_cast<int64_t>(w)] = e.wrong[w];
      }
    }
    return out;
  }

  std::vector<Example> ex_;
  std::vector<std::string> vocab_;
  json config_;
  std::map<std::vector<int64_t>, size_t> by_clean_;
  bool any_wrong_ = false;
};

// Ids of a JSON list, each a row of the model.
std::vector<int64_t> ids_of(const json& v, int64_t rows, const std::string& what) {
  std::vector<int64_t> out;
  for (const auto& x : v) {
    if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() >= rows)
      throw std::invalid_argument(what + ": " + x.dump() + " is not a token id of the model (0.." +
                                  std::to_string(rows - 1) + ")");
    out.push_back(x.get<int64_t>());
  }
  if (out.empty()) throw std::invalid_argument(what + " is empty");
  return out;
}

// The first and last tokens overlapping bytes [b, e) of the prompt; their offsets must be their own.
std::pair<size_t, size_t> span_tokens(const std::vector<EncodedToken>& toks, size_t b, size_t e, const std::string& at,
                                      const std::string& name) {
  size_t first = SIZE_MAX, last = 0;
  for (size_t k = 0; k < toks.size(); ++k) {
    if (toks[k].end <= b || toks[k].begin >= e || toks[k].begin == toks[k].end) continue;
    if (!toks[k].exact)
      throw std::invalid_argument(at + ": \"" + name + "\" needs each token's own characters, which this tokenizer's " +
                                  "normalizer or Metaspace does not keep (docs/text.md)");
    first = std::min(first, k);
    last = k;
  }
  if (first == SIZE_MAX) throw std::invalid_argument(at + ": \"" + name + "\" covers no token of the prompt");
  return {first, last};
}

// The first tokens of a line's wrong answers, each tokenized as the answer is (compared with the answer's first).
std::vector<int64_t> wrong_first_tokens(const json& j, const std::vector<int64_t>& prompt, int64_t answer_first,
                                        const Tokenizer* tok, int64_t rows, const std::string& at) {
  std::vector<int64_t> out;
  const json& ws = j.at("wrong");
  if (!ws.is_array() || ws.empty()) throw std::invalid_argument(at + ": \"wrong\" is not a non-empty list of answers");
  for (size_t w = 0; w < ws.size(); ++w) {
    const std::string what = at + ": wrong answer " + std::to_string(w + 1);
    int64_t first = -1;
    if (ws[w].is_string()) {
      if (!tok || !j.at("clean").is_string()) throw std::invalid_argument(what + " is text; the prompt is ids: give ids");
      const std::vector<int64_t> both = tok->encode(j.at("clean").get<std::string>() + ws[w].get<std::string>(), false);
      if (both.size() <= prompt.size() || !std::equal(prompt.begin(), prompt.end(), both.begin()))
        throw std::invalid_argument(what + " does not continue the prompt's tokens; give it as ids");
      first = both[prompt.size()];
    } else {
      first = ids_of(ws[w], rows, what).front();
    }
    if (first == answer_first)
      throw std::invalid_argument(what + " begins with the answer's first token (" + std::to_string(first) +
                                  "): their logit difference would be 0");
    out.push_back(first);
  }
  return out;
}

Example read_line(const json& j, int64_t line, const Tokenizer* tok, int64_t rows, const std::string& where) {
  const std::string at = where + " line " + std::to_string(line);
  if (!j.is_object()) throw std::invalid_argument(at + ": not a JSON object");
  for (const auto& [k, v] : j.items())
    if (k != "clean" && k != "corrupted" && k != "answer" && k != "wrong" && k != "key" && k != "value")
      throw std::invalid_argument(at + ": '" + k + "' is not a key MechScope's datasets know (clean, corrupted, answer, "
                                  "wrong, key, value)");
  if (!j.contains("clean") || !j.contains("answer")) throw std::invalid_argument(at + ": needs \"clean\" and \"answer\"");
  Example e;
  e.line = line;
  auto check_rows = [&](const std::vector<int64_t>& ids, const std::string& what) {
    for (int64_t id : ids)
      if (id >= rows)
        throw std::invalid_argument(at + ": " + what + " encodes to id " + std::to_string(id) + ", beyond the model's " +
                                    std::to_string(rows) + " rows (another model's tokenizer?)");
  };
  // The prompt: the tokenizer's special tokens, then the text's own tokens (or the ids given).
  std::vector<int64_t> prefix, prompt;
  std::vector<int8_t> span_role;  // per prompt token (without the prefix)
  if (j.at("clean").is_string()) {
    if (!tok) throw std::invalid_argument(at + ": the prompts are text, and the model has no tokenizer.json");
    const std::string clean = j.at("clean").get<std::string>();
    // One encoding: the template's special tokens (covering no input) before the text's own tokens.
    std::vector<EncodedToken> own;
    for (const auto& t : tok->encode_tokens(clean, true)) {
      const bool from_template = t.special && t.begin == 0 && t.end == 0;
      if (from_template && own.empty()) prefix.push_back(t.id);
      else if (!from_template) own.push_back(t);
    }
    for (const auto& t : own) prompt.push_back(t.id);
    // Key and value spans: [begin, end) in characters of the clean text. As in the built-in tasks, a key's first
    // token starts a segment and the tokens after it through the value's last are its values (what head scores'
    // gather and aggregate read).
    std::map<std::string, std::pair<size_t, size_t>> spans;
    for (const char* name : {"key", "value"}) {
      if (!j.contains(name)) continue;
      const json& s = j.at(name);
      if (!s.is_array() || s.size() != 2 || !s[0].is_number_integer() || !s[1].is_number_integer() ||
          s[0].get<int64_t>() < 0 || s[1].get<int64_t>() <= s[0].get<int64_t>())
        throw std::invalid_argument(at + ": \"" + name + "\" is not a span [begin, end) of characters");
      std::vector<size_t> byte_at;  // byte offset of each character, and the end
      for (size_t i = 0; i < clean.size(); ++i)
        if ((static_cast<unsigned char>(clean[i]) & 0xC0) != 0x80) byte_at.push_back(i);
      byte_at.push_back(clean.size());
      if (s[1].get<size_t>() >= byte_at.size())
        throw std::invalid_argument(at + ": \"" + name + "\" ends past the clean text's " +
                                    std::to_string(byte_at.size() - 1) + " characters");
      spans[name] = span_tokens(own, byte_at[s[0].get<size_t>()], byte_at[s[1].get<size_t>()], at, name);
    }
    if (!spans.empty()) {
      span_role.assign(own.size(), 0);
      const bool both = spans.size() == 2;
      if (both && spans["key"].second >= spans["value"].first)
        throw std::invalid_argument(at + ": the \"value\" span must come after the \"key\" span's tokens");
      if (spans.count("key")) {
        const auto [kf, kl] = spans["key"];
        span_role[kf] = static_cast<int8_t>(Role::Key);
        const size_t end = both ? spans["value"].second : kl;
        for (size_t k = kf + 1; k <= end; ++k) span_role[k] = static_cast<int8_t>(Role::Value);
      } else {
        for (size_t k = spans["value"].first; k <= spans["value"].second; ++k) span_role[k] = static_cast<int8_t>(Role::Value);
      }
    }
    if (j.at("answer").is_string()) {  // the continuation of the prompt's tokens
      const std::vector<int64_t> both = tok->encode(clean + j.at("answer").get<std::string>(), false);
      if (both.size() <= prompt.size() || !std::equal(prompt.begin(), prompt.end(), both.begin()))
        throw std::invalid_argument(at + ": the answer does not continue the prompt's tokens (prompt and answer "
                                    "tokenized together merge across their boundary); give the answer as ids");
      e.answer.assign(both.begin() + static_cast<std::ptrdiff_t>(prompt.size()), both.end());
    }
  } else {
    if (j.contains("key") || j.contains("value"))
      throw std::invalid_argument(at + ": \"key\" and \"value\" are character spans of a text prompt");
    prompt = ids_of(j.at("clean"), rows, at + ": \"clean\"");
  }
  if (e.answer.empty()) {
    if (!j.at("answer").is_array()) throw std::invalid_argument(at + ": a text answer needs a text prompt; give ids");
    e.answer = ids_of(j.at("answer"), rows, at + ": \"answer\"");
  }
  if (j.contains("wrong")) e.wrong = wrong_first_tokens(j, prompt, e.answer.front(), tok, rows, at);
  if (prompt.empty()) throw std::invalid_argument(at + ": the clean prompt has no tokens");
  e.prefix = prefix.size();
  if (!span_role.empty()) {
    e.span_role.assign(prefix.size(), 0);
    e.span_role.insert(e.span_role.end(), span_role.begin(), span_role.end());
  }
  e.clean = prefix;
  e.clean.insert(e.clean.end(), prompt.begin(), prompt.end());
  e.prompt = e.clean.size();
  if (j.contains("corrupted")) {
    std::vector<int64_t> corr = prefix;
    if (j.at("corrupted").is_string()) {
      if (!tok) throw std::invalid_argument(at + ": the prompts are text, and the model has no tokenizer.json");
      const auto c = tok->encode(j.at("corrupted").get<std::string>(), false);
      corr.insert(corr.end(), c.begin(), c.end());
    } else {
      const auto c = ids_of(j.at("corrupted"), rows, at + ": \"corrupted\"");
      corr.insert(corr.end(), c.begin(), c.end());
    }
    if (corr.size() != e.clean.size())
      throw std::invalid_argument(at + ": the clean prompt has " + std::to_string(e.clean.size()) +
                                  " tokens and the corrupted one " + std::to_string(corr.size()) +
                                  "; patching compares them position by position");
    e.corrupted = corr;
  }
  check_rows(e.clean, "the clean prompt");
  check_rows(e.corrupted, "the corrupted prompt");
  check_rows(e.answer, "the answer");
  // Teacher forcing: every answer token but the last is input too.
  for (size_t k = 0; k + 1 < e.answer.size(); ++k) {
    e.clean.push_back(e.answer[k]);
    if (!e.corrupted.empty()) e.corrupted.push_back(e.answer[k]);
  }
  return e;
}

}  // namespace

std::unique_ptr<Task> make_dataset_task(const std::string& path, const Tokenizer* tokenizer,
                                        const std::vector<std::string>& vocab) {
  const std::string where = "dataset '" + path + "'";
  std::string text;
  try {
    text = read_file_capped(path, uint64_t{256} << 20, "dataset");  // a FIFO refused without blocking
  } catch (const FileError& e) {
    throw std::invalid_argument(e.what());
  }
  std::vector<Example> ex;
  const auto rows = static_cast<int64_t>(vocab.size());
  size_t start = 0;
  for (int64_t line = 1; start < text.size(); ++line) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string l = text.substr(start, end - start);
    start = end + 1;
    if (!l.empty() && l.back() == '\r') l.pop_back();
    if (l.find_first_not_of(" \t") == std::string::npos) continue;  // blank lines
    json j;
    try {
      j = parse_json(l);
    } catch (const std::exception& e) {
      throw std::invalid_argument(where + " line " + std::to_string(line) + ": not valid JSON: " + e.what());
    }
    try {
      ex.push_back(read_line(j, line, tokenizer, rows, where));
    } catch (const json::exception& e) {
      throw std::invalid_argument(where + " line " + std::to_string(line) + ": " + e.what());
    } catch (const TokenizerError& e) {
      throw std::invalid_argument(where + " line " + std::to_string(line) + ": " + e.what());
    }
  }
  if (ex.empty()) throw std::invalid_argument(where + " has no examples");
  json config = {{"task", "dataset"}, {"file", path}, {"lines", ex.size()}, {"sha256", sha256_hex(text)}};
  return std::make_unique<DatasetTask>(std::move(ex), vocab, config);
}

}  // namespace mechscope
