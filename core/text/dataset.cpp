// Prompt datasets as a Task (see dataset.h).
#include "core/text/dataset.h"

#include <ATen/ATen.h>

#include <deque>
#include <map>
#include <mutex>
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
  bool choices = false;           // `wrong` are the other candidates of a multiple choice
  std::vector<size_t> labelled;   // prompt tokens (indices into `clean`) predicted too: the line's "labels" spans
  size_t corrupted_prompt = 0;    // the corrupted prompt's tokens, the prefix included
  std::vector<int64_t> align;     // the line's "aligned": the corrupted position of each clean position (-1: none)
};

// Rows right-padded (id 0 behind each row's length: causal models never read it, and no target lies there).
Batch batch_of(const std::vector<const Example*>& rows, bool corrupted) {
  size_t L = 1;
  size_t W = 0;
  bool any_wrong = false, choices = !rows.empty();
  for (const auto* e : rows) {
    L = std::max(L, corrupted ? e->corrupted.size() : e->clean.size()), W = std::max(W, e->wrong.size());
    any_wrong = any_wrong || !e->wrong.empty();
    choices = choices && e->choices;
  }
  const auto B = static_cast<int64_t>(rows.size());
  at::Tensor tokens = at::zeros({B, static_cast<int64_t>(L)}, at::kLong);
  at::Tensor targets = at::full({B, static_cast<int64_t>(L)}, -100, at::kLong);
  at::Tensor roles = at::zeros({B, static_cast<int64_t>(L)}, at::kChar);
  at::Tensor lengths = at::zeros({B}, at::kLong);
  at::Tensor readout = at::zeros({B}, at::kLong);  // each example is read where its answer's first token is predicted
  auto T = tokens.accessor<int64_t, 2>(), G = targets.accessor<int64_t, 2>();
  auto R = roles.accessor<int8_t, 2>();
  for (int64_t b = 0; b < B; ++b) {
    const Example& e = *rows[static_cast<size_t>(b)];
    const std::vector<int64_t>& in = corrupted ? e.corrupted : e.clean;
    const size_t prompt = corrupted ? e.corrupted_prompt : e.prompt;  // they differ on an "aligned" line
    for (size_t p = 0; p < in.size(); ++p) {
      T[b][static_cast<int64_t>(p)] = in[p];
      R[b][static_cast<int64_t>(p)] = static_cast<int8_t>(p < e.prefix             ? Role::Bos
                                                           : p + 1 == prompt       ? Role::Query
                                                           : p >= prompt           ? Role::Answer
                                                                                   : Role::Filler);
      if (prompt == e.prompt && p < e.span_role.size() && e.span_role[p] != 0 && p + 1 != e.prompt)
        R[b][static_cast<int64_t>(p)] = e.span_role[p];
    }
    for (size_t j = 0; j < e.answer.size(); ++j) G[b][static_cast<int64_t>(prompt - 1 + j)] = e.answer[j];
    if (!corrupted || e.align.empty())
      for (size_t p : e.labelled) G[b][static_cast<int64_t>(p - 1)] = e.clean[p];  // the clean text's tokens
    lengths[b] = static_cast<int64_t>(in.size());
    readout[b] = static_cast<int64_t>(prompt) - 1;
  }
  Batch out{tokens, targets, roles, lengths, at::Tensor(), false, at::Tensor(), readout};
  if (any_wrong) {  // [B, L, W]: the wrong answers' first tokens at each example's first answer position
    out.wrong = at::full({B, static_cast<int64_t>(L), static_cast<int64_t>(W)}, -1, at::kLong);
    auto Wr = out.wrong.accessor<int64_t, 3>();
    for (int64_t b = 0; b < B; ++b) {
      const Example& e = *rows[static_cast<size_t>(b)];
      const size_t prompt = corrupted ? e.corrupted_prompt : e.prompt;
      for (size_t w = 0; w < e.wrong.size(); ++w) Wr[b][static_cast<int64_t>(prompt - 1)][static_cast<int64_t>(w)] = e.wrong[w];
    }
    out.multiple_choice = choices;
  }
  return out;
}

// Examples as a task: the batches of batch_of; a corrupted batch found by the clean rows' tokens.
class TextExamplesTask : public Task {
 public:
  TextExamplesTask(std::vector<std::string> vocab, json config) : vocab_(std::move(vocab)), config_(std::move(config)) {}
  json config() const override { return config_; }
  const std::vector<std::string>& vocab() const override { return vocab_; }
  std::vector<std::string> corruptible_roles() const override { return {"prompt"}; }
  // The corrupted prompts of the clean rows' examples (found by their tokens: a batch may be any selection of them).
  Batch corrupt(const Batch& clean, uint64_t, const std::string& role) const override {
    if (!role.empty() && role != "prompt")
      throw std::invalid_argument("a text task corrupts its prompts (role 'prompt'), not '" + role + "'");
    std::vector<const Example*> rows;
    std::vector<std::shared_ptr<const void>> hold;  // what keeps the found examples alive
    at::Tensor toks = clean.tokens.contiguous(), lens = clean.lengths.contiguous();
    for (int64_t b = 0; b < clean.size(); ++b) {
      const int64_t L = lens[b].item<int64_t>();
      std::vector<int64_t> row(toks[b].data_ptr<int64_t>(), toks[b].data_ptr<int64_t>() + L);
      const Example* e = find(row, hold);
      if (!e) throw std::invalid_argument("corrupt: a batch row that is not one of the task's examples (of its last four samples)");
      if (e->corrupted.empty())
        throw std::invalid_argument("line " + std::to_string(e->line) + " of the dataset has no \"corrupted\" prompt");
      rows.push_back(e);
    }
    Batch out = batch_of(rows, true);
    bool any_aligned = false;
    for (const auto* e : rows) any_aligned = any_aligned || !e->align.empty();
    if (any_aligned) {  // each clean position's place in its corrupted row
      const int64_t W = clean.tokens.size(1);
      out.aligned = at::full({clean.size(), W}, -1, at::kLong);
      auto A = out.aligned.accessor<int64_t, 2>();
      for (int64_t b = 0; b < clean.size(); ++b) {
        const Example& e = *rows[static_cast<size_t>(b)];
        for (int64_t p = 0; p < std::min<int64_t>(W, static_cast<int64_t>(e.clean.size())); ++p)
          A[b][p] = e.align.empty() ? p : e.align[static_cast<size_t>(p)];
      }
    }
    if (out.tokens.size(1) < clean.tokens.size(1)) {  // at least the clean batch's width
      const int64_t extra = clean.tokens.size(1) - out.tokens.size(1);
      out.tokens = at::constant_pad_nd(out.tokens, {0, extra}, 0);
      out.targets = at::constant_pad_nd(out.targets, {0, extra}, -100);
      out.roles = at::constant_pad_nd(out.roles, {0, extra}, 0);
      if (out.wrong.defined()) out.wrong = at::constant_pad_nd(out.wrong, {0, 0, 0, extra}, -1);
    }
    return out;
  }

 protected:
  /// The example whose clean row this is (null: none), with what keeps it alive pushed onto `hold`.
  virtual const Example* find(const std::vector<int64_t>& clean_row, std::vector<std::shared_ptr<const void>>& hold) const = 0;
  std::vector<std::string> vocab_;
  json config_;
};

class DatasetTask : public TextExamplesTask {
 public:
  DatasetTask(std::vector<Example> ex, std::vector<std::string> vocab, json config)
      : TextExamplesTask(std::move(vocab), std::move(config)), ex_(std::move(ex)) {
    for (size_t i = 0; i < ex_.size(); ++i) by_clean_.emplace(ex_[i].clean, i);
  }
  // The first n lines (all of them when n is larger); the seed is not used: a dataset is its own order.
  Batch sample(int64_t n, uint64_t) const override {
    if (n <= 0) throw std::invalid_argument("a dataset sample needs at least one example");
    std::vector<const Example*> rows;
    for (size_t i = 0; i < ex_.size() && static_cast<int64_t>(i) < n; ++i) rows.push_back(&ex_[i]);
    return batch_of(rows, false);
  }

 private:
  const Example* find(const std::vector<int64_t>& row, std::vector<std::shared_ptr<const void>>&) const override {
    auto it = by_clean_.find(row);
    return it == by_clean_.end() ? nullptr : &ex_[it->second];
  }
  std::vector<Example> ex_;
  std::map<std::vector<int64_t>, size_t> by_clean_;
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

// The first and last tokens overlapping bytes [b, e) of the prompt, from the tokens' own offsets; false where one
// of them has none of its own (a normalizer or Metaspace changed its text: the caller counts tokens instead).
bool span_tokens_by_offsets(const std::vector<EncodedToken>& toks, size_t b, size_t e, std::pair<size_t, size_t>& out) {
  size_t first = SIZE_MAX, last = 0;
  for (size_t k = 0; k < toks.size(); ++k) {
    if (toks[k].end <= b || toks[k].begin >= e || toks[k].begin == toks[k].end) continue;
    if (!toks[k].exact) return false;
    first = std::min(first, k);
    last = k;
  }
  out = {first, last};
  return true;
}

// The tokens overlapping bytes [b, e) of `clean` counted by encoding: the text before a character boundary that
// tokenizes alone as the prompt's first tokens ends between two tokens, there that many; the span is the tokens
// from the last such boundary at or before b to the first at or after e. Exact for any normalizer, at a few
// encodings per span.
std::pair<size_t, size_t> span_tokens_by_prefixes(const Tokenizer& tok, const std::string& clean,
                                                  const std::vector<int64_t>& ids, size_t b, size_t e,
                                                  const std::string& at, const std::string& name) {
  auto tokens_before = [&](size_t end) -> int64_t {  // -1: a token crosses `end`
    const std::vector<int64_t> pre = tok.encode(clean.substr(0, end), false);
    return pre.size() <= ids.size() && std::equal(pre.begin(), pre.end(), ids.begin()) ? static_cast<int64_t>(pre.size()) : -1;
  };
  auto boundary = [&](size_t i) { return i >= clean.size() || (static_cast<unsigned char>(clean[i]) & 0xC0) != 0x80; };
  int64_t first = -1, stop = -1;
  for (size_t i = b;; --i) {
    if (boundary(i) && (first = tokens_before(i)) >= 0) break;
    if (i == 0) break;
  }
  for (size_t i = e; i <= clean.size(); ++i)
    if (boundary(i) && (stop = tokens_before(i)) >= 0) break;
  if (first < 0 || stop < 0)  // the whole text and the empty one always are boundaries; a tokenizer that disagrees
    throw std::invalid_argument(at + ": \"" + name + "\": the prompt's tokens cannot be matched to its characters");
  if (stop <= first) throw std::invalid_argument(at + ": \"" + name + "\" covers no token of the prompt");
  return {static_cast<size_t>(first), static_cast<size_t>(stop - 1)};
}

// A text or id answer of a line tokenized as the continuation of its prompt (the tokens after the prompt's).
std::vector<int64_t> continuation(const json& j, const json& answer, const std::vector<int64_t>& prompt,
                                  const Tokenizer* tok, int64_t rows, const std::string& what) {
  if (!answer.is_string()) return ids_of(answer, rows, what);
  if (!tok || !j.at("clean").is_string()) throw std::invalid_argument(what + " is text; the prompt is ids: give ids");
  const std::vector<int64_t> both = tok->encode(j.at("clean").get<std::string>() + answer.get<std::string>(), false);
  if (both.size() <= prompt.size() || !std::equal(prompt.begin(), prompt.end(), both.begin()))
    throw std::invalid_argument(what + " does not continue the prompt's tokens (prompt and answer tokenized together "
                                "merge across their boundary); give it as ids");
  return {both.begin() + static_cast<std::ptrdiff_t>(prompt.size()), both.end()};
}

// The first tokens of a line's wrong answers ("wrong") or of its other candidates ("choices", which hold the answer
// too), each tokenized as the answer is, compared with the answer's first.
std::vector<int64_t> wrong_first_tokens(const json& j, const char* key, const std::vector<int64_t>& prompt,
                                        const std::vector<int64_t>& answer, const Tokenizer* tok, int64_t rows,
                                        const std::string& at, bool first_tokens = true) {
  std::vector<int64_t> out;
  const json& ws = j.at(key);
  const bool choices = std::string(key) == "choices";
  if (!ws.is_array() || ws.empty() || (choices && ws.size() < 2))
    throw std::invalid_argument(at + ": \"" + key + "\" is not a " + (choices ? "list of two or more answers" : "non-empty list of answers"));
  if (choices && ws[0].is_number_integer())
    throw std::invalid_argument(at + ": \"choices\" is a list of answers, each text or a list of ids");
  bool answer_seen = false;
  for (size_t w = 0; w < ws.size(); ++w) {
    const std::string what = at + ": " + (choices ? "choice " : "wrong answer ") + std::to_string(w + 1);
    const std::vector<int64_t> ids = continuation(j, ws[w], prompt, tok, rows, what);
    if (choices && ids == answer) {
      if (answer_seen) throw std::invalid_argument(what + " repeats the answer");
      answer_seen = true;
      continue;
    }
    if (first_tokens && ids.front() == answer.front())
      throw std::invalid_argument(what + " begins with the answer's first token (" + std::to_string(ids.front()) +
                                  "): candidates are told apart by their first tokens, and these are the same");
    out.push_back(ids.front());
  }
  if (choices && !answer_seen) throw std::invalid_argument(at + ": the answer is not one of the \"choices\"");
  return out;
}

// Character spans [begin, end) of a line's "key" or "value": one span, or a list of them.
std::vector<std::pair<int64_t, int64_t>> spans_of(const json& s, const std::string& at, const std::string& name) {
  auto one = [&](const json& x) {
    if (!x.is_array() || x.size() != 2 || !x[0].is_number_integer() || !x[1].is_number_integer() ||
        x[0].get<int64_t>() < 0 || x[1].get<int64_t>() <= x[0].get<int64_t>())
      throw std::invalid_argument(at + ": \"" + name + "\" is not a span [begin, end) of characters or a list of them");
    return std::make_pair(x[0].get<int64_t>(), x[1].get<int64_t>());
  };
  std::vector<std::pair<int64_t, int64_t>> out;
  if (s.is_array() && !s.empty() && s[0].is_array()) {
    for (const auto& x : s) out.push_back(one(x));
  } else {
    out.push_back(one(s));
  }
  return out;
}

// The (first, last) prompt tokens of each character span of a line's `name` ("key", "value", "labels").
std::vector<std::pair<size_t, size_t>> span_token_ranges(const json& j, const char* name, const std::string& clean,
                                                         const std::vector<EncodedToken>& own, const Tokenizer& tok,
                                                         const std::string& at) {
  std::vector<size_t> byte_at;  // byte offset of each character, and the end
  for (size_t i = 0; i < clean.size(); ++i)
    if ((static_cast<unsigned char>(clean[i]) & 0xC0) != 0x80) byte_at.push_back(i);
  byte_at.push_back(clean.size());
  std::vector<std::pair<size_t, size_t>> out;
  std::vector<int64_t> ids;  // the prompt's ids, for counting tokens (made once, when a span needs them)
  for (const auto& [b, e] : spans_of(j.at(name), at, name)) {
    if (static_cast<size_t>(e) >= byte_at.size())
      throw std::invalid_argument(at + ": \"" + name + "\" ends past the clean text's " +
                                  std::to_string(byte_at.size() - 1) + " characters");
    const size_t bb = byte_at[static_cast<size_t>(b)], eb = byte_at[static_cast<size_t>(e)];
    std::pair<size_t, size_t> r;
    if (!span_tokens_by_offsets(own, bb, eb, r)) {
      if (ids.empty())
        for (const auto& t : own) ids.push_back(t.id);
      r = span_tokens_by_prefixes(tok, clean, ids, bb, eb, at, name);
    } else if (r.first == SIZE_MAX) {
      throw std::invalid_argument(at + ": \"" + name + "\" covers no token of the prompt");
    }
    out.push_back(r);
  }
  return out;
}

// Roles of the prompt's own tokens from the line's key and value spans: each key's first token starts a segment and
// the tokens after it through its value's last (the value of the same index) are its values.
std::vector<int8_t> span_roles(const json& j, const std::string& clean, const std::vector<EncodedToken>& own,
                               const Tokenizer& tok, const std::string& at) {
  std::map<std::string, std::vector<std::pair<size_t, size_t>>> tokens;  // name -> (first, last) token per span
  for (const char* name : {"key", "value"})
    if (j.contains(name)) tokens[name] = span_token_ranges(j, name, clean, own, tok, at);
  std::vector<int8_t> role(own.size(), 0);
  const auto& keys = tokens["key"];
  const auto& values = tokens["value"];
  if (!keys.empty() && !values.empty() && keys.size() != values.size())
    throw std::invalid_argument(at + ": " + std::to_string(keys.size()) + " \"key\" spans and " +
                                std::to_string(values.size()) + " \"value\" spans; they pair by their order");
  for (size_t i = 0; i < keys.size(); ++i) {
    const auto [kf, kl] = keys[i];
    if (!values.empty() && kl >= values[i].first)
      throw std::invalid_argument(at + ": value span " + std::to_string(i + 1) + " must come after its key's tokens");
    role[kf] = static_cast<int8_t>(Role::Key);
    const size_t end = values.empty() ? kl : values[i].second;
    for (size_t k = kf + 1; k <= end; ++k) role[k] = static_cast<int8_t>(Role::Value);
  }
  if (keys.empty())
    for (const auto& [vf, vl] : values)
      for (size_t k = vf; k <= vl; ++k) role[k] = static_cast<int8_t>(Role::Value);
  return role;
}

// A line's "aligned": [[i, j], ...], token i of the clean prompt (its own tokens, 0-based, after the tokenizer's
// special tokens) at token j of the corrupted one; as the clean position of each row position of the example
// (answer tokens not yet appended): the special tokens before the prompt, the pairs given, the prompt's last token
// (the readout) and the answer's tokens are aligned, every other position is not (-1).
std::vector<int64_t> aligned_positions(const json& a, const Example& e, const std::string& at) {
  const auto n_clean = static_cast<int64_t>(e.prompt - e.prefix), n_corr = static_cast<int64_t>(e.corrupted_prompt - e.prefix);
  if (!a.is_array())
    throw std::invalid_argument(at + ": \"aligned\" is not a list of [clean token, corrupted token] pairs");
  std::vector<int64_t> out(e.prompt + e.answer.size() - 1, -1);
  for (size_t k = 0; k < e.prefix; ++k) out[k] = static_cast<int64_t>(k);
  for (const auto& pr : a) {
    if (!pr.is_array() || pr.size() != 2 || !pr[0].is_number_integer() || !pr[1].is_number_integer() ||
        pr[0].get<int64_t>() < 0 || pr[0].get<int64_t>() >= n_clean || pr[1].get<int64_t>() < 0 ||
        pr[1].get<int64_t>() >= n_corr)
      throw std::invalid_argument(at + ": \"aligned\" pair " + pr.dump() + " is not [clean token 0.." +
                                  std::to_string(n_clean - 1) + ", corrupted token 0.." + std::to_string(n_corr - 1) + "]");
    int64_t& slot = out[e.prefix + pr[0].get<size_t>()];
    if (slot >= 0) throw std::invalid_argument(at + ": \"aligned\" pairs clean token " + pr[0].dump() + " twice");
    slot = static_cast<int64_t>(e.prefix) + pr[1].get<int64_t>();
  }
  out[e.prompt - 1] = static_cast<int64_t>(e.corrupted_prompt) - 1;
  for (size_t k = 0; k + 1 < e.answer.size(); ++k) out[e.prompt + k] = static_cast<int64_t>(e.corrupted_prompt + k);
  return out;
}

// `first_tokens`: wrong answers and choices are told apart by their first tokens (a batch's multiple choice); false
// for the scoring command, which sums each candidate's tokens.
Example read_line(const json& j, int64_t line, const Tokenizer* tok, int64_t rows, const std::string& where,
                  bool first_tokens = true) {
  const std::string at = where + " line " + std::to_string(line);
  if (!j.is_object()) throw std::invalid_argument(at + ": not a JSON object");
  for (const auto& [k, v] : j.items())
    if (k != "clean" && k != "corrupted" && k != "answer" && k != "wrong" && k != "choices" && k != "key" &&
        k != "value" && k != "labels" && k != "aligned")
      throw std::invalid_argument(at + ": '" + k + "' is not a key MechScope's datasets know (clean, corrupted, answer, "
                                  "wrong, choices, key, value, labels, aligned)");
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
  std::vector<size_t> labelled;   // prompt tokens (without the prefix) of the "labels" spans
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
    if (j.contains("key") || j.contains("value")) span_role = span_roles(j, clean, own, *tok, at);
    if (j.contains("labels"))
      for (const auto& [f, l] : span_token_ranges(j, "labels", clean, own, *tok, at))
        for (size_t k = f; k <= l; ++k) labelled.push_back(k);
  } else {
    if (j.contains("key") || j.contains("value") || j.contains("labels"))
      throw std::invalid_argument(at + ": \"key\", \"value\" and \"labels\" are character spans of a text prompt");
    prompt = ids_of(j.at("clean"), rows, at + ": \"clean\"");
  }
  if (prompt.empty()) throw std::invalid_argument(at + ": the clean prompt has no tokens");
  e.answer = continuation(j, j.at("answer"), prompt, tok, rows, at + ": the answer");
  if (j.contains("wrong") && j.contains("choices"))
    throw std::invalid_argument(at + ": give \"wrong\" answers or \"choices\", not both");
  for (const char* key : {"wrong", "choices"})
    if (j.contains(key)) e.wrong = wrong_first_tokens(j, key, prompt, e.answer, tok, rows, at, first_tokens);
  e.choices = j.contains("choices");
  e.prefix = prefix.size();
  if (!span_role.empty()) {
    e.span_role.assign(prefix.size(), 0);
    e.span_role.insert(e.span_role.end(), span_role.begin(), span_role.end());
  }
  e.clean = prefix;
  e.clean.insert(e.clean.end(), prompt.begin(), prompt.end());
  e.prompt = e.clean.size();
  for (size_t k : labelled) {
    if (prefix.size() + k == 0)
      throw std::invalid_argument(at + ": \"labels\" covers the prompt's first token, which nothing before it predicts");
    e.labelled.push_back(prefix.size() + k);
  }
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
    if (corr.size() != e.clean.size() && !j.contains("aligned"))
      throw std::invalid_argument(at + ": the clean prompt has " + std::to_string(e.clean.size()) +
                                  " tokens and the corrupted one " + std::to_string(corr.size()) +
                                  "; patching compares them position by position (or give \"aligned\" positions)");
    e.corrupted = corr;
  } else if (j.contains("aligned")) {
    throw std::invalid_argument(at + ": \"aligned\" pairs clean and corrupted positions; the line has no corrupted prompt");
  }
  e.corrupted_prompt = e.corrupted.size();
  if (j.contains("aligned")) e.align = aligned_positions(j.at("aligned"), e, at);
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

namespace {

// The examples of a generator: each sample's lines read as a dataset's; the last few samples kept for corrupt().
class GeneratedTask : public TextExamplesTask {
 public:
  GeneratedTask(std::function<json(uint64_t)> line, std::shared_ptr<const Tokenizer> tok, std::vector<std::string> vocab,
                json config)
      : TextExamplesTask(std::move(vocab), std::move(config)), line_(std::move(line)), tok_(std::move(tok)) {}
  Batch sample(int64_t n, uint64_t seed) const override {
    if (n <= 0) throw std::invalid_argument("a sample needs at least one example");
    auto kept = std::make_shared<Kept>();
    const std::string where = config_.value("task", std::string("text task")) + " (seed " + std::to_string(seed) + ")";
    for (int64_t i = 0; i < n; ++i) {
      kept->ex.push_back(read_line(line_(example_seed(seed, i)), i + 1, tok_.get(), static_cast<int64_t>(vocab_.size()), where + " example"));
    }
    std::vector<const Example*> rows;
    for (size_t i = 0; i < kept->ex.size(); ++i) {
      rows.push_back(&kept->ex[i]);
      kept->by_clean.emplace(kept->ex[i].clean, i);
    }
    Batch out = batch_of(rows, false);
    std::lock_guard<std::mutex> lock(mu_);
    recent_.push_back(kept);
    if (recent_.size() > 4) recent_.pop_front();
    return out;
  }

 private:
  struct Kept {
    std::vector<Example> ex;
    std::map<std::vector<int64_t>, size_t> by_clean;
  };
  const Example* find(const std::vector<int64_t>& row, std::vector<std::shared_ptr<const void>>& hold) const override {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = recent_.rbegin(); it != recent_.rend(); ++it) {
      auto f = (*it)->by_clean.find(row);
      if (f == (*it)->by_clean.end()) continue;
      hold.push_back(*it);
      return &(*it)->ex[f->second];
    }
    return nullptr;
  }
  std::function<json(uint64_t)> line_;
  std::shared_ptr<const Tokenizer> tok_;
  mutable std::mutex mu_;
  mutable std::deque<std::shared_ptr<Kept>> recent_;
};

}  // namespace

std::unique_ptr<Task> make_generated_text_task(std::function<json(uint64_t)> line, std::shared_ptr<const Tokenizer> tok,
                                               std::vector<std::string> vocab, json config) {
  return std::make_unique<GeneratedTask>(std::move(line), std::move(tok), std::move(vocab), std::move(config));
}

namespace {

// Calls `each(json, line number)` for the non-blank lines of a JSONL file (at most `max_lines` of them when > 0);
// returns the file's text. Errors name the file and line.
std::string for_each_line(const std::string& path, int64_t max_lines,
                          const std::function<void(const json&, int64_t, const std::string&)>& each) {
  const std::string where = "dataset '" + path + "'";
  std::string text;
  try {
    text = read_file_capped(path, uint64_t{256} << 20, "dataset");  // a FIFO refused without blocking
  } catch (const FileError& e) {
    throw std::invalid_argument(e.what());
  }
  size_t start = 0;
  int64_t taken = 0;
  for (int64_t line = 1; start < text.size() && (max_lines <= 0 || taken < max_lines); ++line) {
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
      each(j, line, where);
      ++taken;
    } catch (const json::exception& e) {
      throw std::invalid_argument(where + " line " + std::to_string(line) + ": " + e.what());
    } catch (const TokenizerError& e) {
      throw std::invalid_argument(where + " line " + std::to_string(line) + ": " + e.what());
    }
  }
  if (taken == 0) throw std::invalid_argument(where + " has no examples");
  return text;
}

}  // namespace

std::vector<PromptLine> read_prompt_lines(const std::string& path, const Tokenizer* tokenizer, int64_t rows,
                                          int64_t max_lines) {
  std::vector<PromptLine> out;
  for_each_line(path, max_lines, [&](const json& j, int64_t line, const std::string& where) {
    const Example e = read_line(j, line, tokenizer, rows, where, false);  // a dataset line's checks
    PromptLine p;
    p.line = line;
    p.prompt.assign(e.clean.begin(), e.clean.begin() + static_cast<std::ptrdiff_t>(e.prompt));
    p.answer = e.answer;
    if (j.at("answer").is_string()) p.answer_text = j.at("answer").get<std::string>();
    if (j.contains("choices")) {
      const std::vector<int64_t> own(p.prompt.begin() + static_cast<std::ptrdiff_t>(e.prefix), p.prompt.end());
      for (size_t c = 0; c < j.at("choices").size(); ++c) {
        p.choices.push_back(continuation(j, j.at("choices")[c], own, tokenizer, rows,
                                         where + " line " + std::to_string(line) + ": choice " + std::to_string(c + 1)));
        if (p.choices.back() == p.answer && p.answer_choice < 0) p.answer_choice = static_cast<int64_t>(c);
      }
    }
    out.push_back(std::move(p));
  });
  return out;
}

std::unique_ptr<Task> make_dataset_task(const std::string& path, const Tokenizer* tokenizer,
                                        const std::vector<std::string>& vocab) {
  std::vector<Example> ex;
  const auto rows = static_cast<int64_t>(vocab.size());
  const std::string text = for_each_line(path, 0, [&](const json& j, int64_t line, const std::string& where) {
    ex.push_back(read_line(j, line, tokenizer, rows, where));
    // One way of scoring per dataset: a batch is a multiple choice only when all its lines are.
    if (ex.size() > 1 && ex.back().choices != ex.front().choices) {
      const Example& c = ex.back().choices ? ex.back() : ex.front();
      const Example& o = ex.back().choices ? ex.front() : ex.back();
      throw std::invalid_argument(where + ": line " + std::to_string(c.line) + " is a multiple choice (\"choices\") and line " +
                                  std::to_string(o.line) + " is not: a dataset's lines all have \"choices\" or none do "
                                  "(the accuracy of a batch is one kind)");
    }
  });
  json config = {{"task", "dataset"}, {"file", path}, {"lines", ex.size()}, {"sha256", sha256_hex(text)}};
  return std::make_unique<DatasetTask>(std::move(ex), vocab, config);
}

}  // namespace mechscope
