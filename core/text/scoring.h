// Scoring a model on a prompt dataset line by line (docs/text.md, "Scoring"), the ways the papers score their
// pretrained experiments:
//   logprob      the answer's log-probability as the prompt's continuation, summed over its tokens (teacher-forced);
//                correct when each of its tokens is the argmax where it is predicted;
//   first-token  the same for the answer's first token only;
//   choice       a multiple choice (the line's "choices"): each candidate's summed log-probability as the
//                continuation, correct when the answer's is the highest (P4's kv_retrieval.py; candidates may share
//                first tokens and differ in length);
//   generation   greedy generation with the caches (core/model/generate.h) up to the first newline or max_new
//                tokens, correct when the text before the newline, stripped of spaces, is the answer stripped
//                (P2's phone-book evaluation).
// Must not: print (the command does), write files.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/text/dataset.h"

namespace mechscope {

class LanguageModel;
class Tokenizer;

enum class ScoreBy { LogProb, FirstToken, Choice, Generation };
/// "logprob", "first-token", "choice", "generation"; throws std::invalid_argument naming them for another name.
ScoreBy score_by(const std::string& name);

struct LineScore {
  int64_t line = 0;
  double logprob = 0;          ///< the answer's summed log-probability (logprob, first-token, choice), else NaN
  bool correct = false;
  int64_t chosen = -1;         ///< choice: the candidate with the highest log-probability
  std::string generated;       ///< generation: the text before the first newline, as generated
};

struct ScoreOptions {
  ScoreBy by = ScoreBy::LogProb;
  int64_t max_new_tokens = 50;  ///< generation (P2: 50)
  std::function<void(double, const std::string&)> progress;
  const std::atomic<bool>* cancel = nullptr;
};

/// Scores every line; `tokenizer` is needed to decode generations (null: ids compared with the answer's).
std::vector<LineScore> score_lines(LanguageModel& model, const std::vector<PromptLine>& lines, const Tokenizer* tokenizer,
                                   const ScoreOptions& options);

}  // namespace mechscope
