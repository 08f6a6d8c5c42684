// Line-by-line scoring of a prompt dataset (see scoring.h).
#include "core/text/scoring.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>
#include <stdexcept>

#include "core/interventions/sweep.h"
#include "core/model/generate.h"
#include "core/model/model.h"
#include "core/text/tokenizer.h"

namespace mechscope {

ScoreBy score_by(const std::string& name) {
  if (name == "logprob") return ScoreBy::LogProb;
  if (name == "first-token") return ScoreBy::FirstToken;
  if (name == "choice") return ScoreBy::Choice;
  if (name == "generation") return ScoreBy::Generation;
  throw std::invalid_argument("score: '" + name + "' is not a way of scoring (logprob, first-token, choice, generation)");
}

namespace {

// Sequences prompt + continuation (one row each, right-padded: a causal model never reads what follows a row), and
// for each row the summed log-probability of its continuation's first `upto` tokens (all when upto <= 0) and whether
// each of them is the argmax where it is predicted.
std::vector<std::pair<double, bool>> continuation_scores(LanguageModel& model, const std::vector<int64_t>& prompt,
                                                         const std::vector<std::vector<int64_t>>& conts, int64_t upto) {
  size_t longest = 0;
  for (const auto& c : conts) longest = std::max(longest, c.size());
  const auto R = static_cast<int64_t>(conts.size()), L = static_cast<int64_t>(prompt.size() + longest);
  at::Tensor tokens = at::zeros({R, L}, at::kLong);
  for (int64_t r = 0; r < R; ++r) {
    for (size_t k = 0; k < prompt.size(); ++k) tokens[r][static_cast<int64_t>(k)] = prompt[k];
    const auto& c = conts[static_cast<size_t>(r)];
    for (size_t k = 0; k < c.size(); ++k) tokens[r][static_cast<int64_t>(prompt.size() + k)] = c[k];
  }
  at::NoGradGuard no_grad;
  const at::Tensor logp = at::log_softmax(model.forward(tokens).to(at::kDouble), -1);  // [R, L, V]
  const at::Tensor best = logp.argmax(-1);
  std::vector<std::pair<double, bool>> out;
  for (int64_t r = 0; r < R; ++r) {
    const auto& c = conts[static_cast<size_t>(r)];
    const size_t n = upto > 0 ? std::min<size_t>(static_cast<size_t>(upto), c.size()) : c.size();
    double sum = 0;
    bool all = true;
    for (size_t k = 0; k < n; ++k) {
      const int64_t at = static_cast<int64_t>(prompt.size() + k) - 1;  // where token k is predicted
      sum += logp[r][at][c[k]].item<double>();
      all = all && best[r][at].item<int64_t>() == c[k];
    }
    out.push_back({sum, all});
  }
  return out;
}

std::string strip(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r"), e = s.find_last_not_of(" \t\r");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

LineScore generation_score(LanguageModel& model, const PromptLine& p, const Tokenizer* tok,
                           const std::vector<int64_t>& newline_ids, const ScoreOptions& o) {
  LineScore s;
  s.line = p.line;
  s.logprob = std::numeric_limits<double>::quiet_NaN();
  GenerationOptions g;
  g.max_new_tokens = o.max_new_tokens;
  g.stop = newline_ids;
  const at::Tensor out = greedy_generate(model, at::tensor(p.prompt, at::kLong).unsqueeze(0), g);
  std::vector<int64_t> ids;
  for (int64_t k = 0; k < out.size(1) && out[0][k].item<int64_t>() >= 0; ++k) ids.push_back(out[0][k].item<int64_t>());
  if (!tok || p.answer_text.empty()) {  // ids: the generation begins with the answer's tokens
    s.correct = ids.size() >= p.answer.size() && std::equal(p.answer.begin(), p.answer.end(), ids.begin());
    for (size_t k = 0; k < ids.size(); ++k) s.generated += (k ? "," : "") + std::to_string(ids[k]);
    return s;
  }
  const std::string text = tok->decode(ids, true);
  s.generated = text.substr(0, text.find('\n'));
  s.correct = strip(s.generated) == strip(p.answer_text);
  return s;
}

}  // namespace

std::vector<LineScore> score_lines(LanguageModel& model, const std::vector<PromptLine>& lines, const Tokenizer* tok,
                                   const ScoreOptions& o) {
  std::vector<int64_t> newline_ids;  // generation stops at a token that holds a newline
  if (o.by == ScoreBy::Generation && tok)
    for (int64_t id = 0; id < std::min<int64_t>(tok->vocab_size(), model.config().padded_vocab_size()); ++id) {
      std::string t;
      try {
        t = tok->decode({id}, false);
      } catch (const std::exception&) {
        continue;  // an id the tokenizer leaves out
      }
      if (t.find('\n') != std::string::npos) newline_ids.push_back(id);
    }
  std::vector<LineScore> out;
  for (size_t i = 0; i < lines.size(); ++i) {
    const PromptLine& p = lines[i];
    if (o.cancel && o.cancel->load()) throw Cancelled();
    if (o.progress) o.progress(static_cast<double>(i) / static_cast<double>(lines.size()), "line " + std::to_string(p.line));
    if (o.by == ScoreBy::Generation) {
      out.push_back(generation_score(model, p, tok, newline_ids, o));
      continue;
    }
    LineScore s;
    s.line = p.line;
    if (o.by == ScoreBy::Choice) {
      if (p.choices.empty()) throw std::invalid_argument("score --by choice: line " + std::to_string(p.line) + " has no \"choices\"");
      const auto scores = continuation_scores(model, p.prompt, p.choices, 0);
      s.chosen = 0;
      for (size_t c = 1; c < scores.size(); ++c)
        if (scores[c].first > scores[static_cast<size_t>(s.chosen)].first) s.chosen = static_cast<int64_t>(c);
      s.logprob = scores[static_cast<size_t>(p.answer_choice)].first;
      s.correct = s.chosen == p.answer_choice;
    } else {
      const auto scores = continuation_scores(model, p.prompt, {p.answer}, o.by == ScoreBy::FirstToken ? 1 : 0);
      s.logprob = scores[0].first;
      s.correct = scores[0].second;
    }
    out.push_back(s);
  }
  if (o.progress) o.progress(1.0, "scored");
  return out;
}

}  // namespace mechscope
