// Prompt datasets (docs/text.md): a JSONL file of clean prompts, corrupted prompts and answers, run through the
// interventions like a built-in task. Each line is one example:
//   {"clean": "When Mary and John went to the store, John gave a drink to", "corrupted": "... Mary gave ...",
//    "answer": " Mary"}
// "answer" is text (tokenized as the continuation of the clean prompt: prompt + answer tokenized together, the
// tokens after the prompt's, so a leading space comes out as the model saw it) or a list of token ids;
// "corrupted" is optional (patching and attribution need it); "wrong" optionally lists wrong answers (text or ids),
// whose first tokens set the logit difference at the answer's first position (Batch::wrong); "key" and "value" are
// optional character spans
// [begin, end) of the clean text: the key's first token starts a segment and the tokens after it through the
// value's last are its values, as in the built-in tasks (what head scores' gather and aggregate read). The prompt gets
// the tokenizer's own special tokens before it (BOS); its last token is the query. A multi-token answer is
// teacher-forced: each of its tokens is a labelled position.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/tasks/task.h"

namespace mechscope {

class Tokenizer;

/// The task of a dataset file for a model with `vocab` (its names, one per embedding row; ids beyond it are refused)
/// and its tokenizer (null: every prompt and answer must then be ids; a text is refused naming the line). Throws
/// std::invalid_argument naming the file and line: malformed JSON, an unknown key, a corrupted prompt whose token
/// count differs from the clean one's, an answer that does not continue its prompt's tokens, an empty file.
std::unique_ptr<Task> make_dataset_task(const std::string& path, const Tokenizer* tokenizer,
                                        const std::vector<std::string>& vocab);

/// One line of a dataset as the scoring command reads it (core/text/scoring.h): token ids, not a batch.
struct PromptLine {
  int64_t line = 0;
  std::vector<int64_t> prompt;                ///< the clean prompt, the tokenizer's special tokens (BOS) first
  std::vector<int64_t> answer;                ///< the answer's tokens as the prompt's continuation
  std::string answer_text;                    ///< the answer as text ("" when given as ids)
  std::vector<std::vector<int64_t>> choices;  ///< each candidate's tokens as the continuation (empty: no "choices")
  int64_t answer_choice = -1;                 ///< the answer's index among them
};
/// The first `max_lines` lines of a dataset file (all when <= 0), checked as make_dataset_task checks them
/// (corrupted prompts are not read here). Throws std::invalid_argument naming the file and line.
std::vector<PromptLine> read_prompt_lines(const std::string& path, const Tokenizer* tokenizer, int64_t rows,
                                          int64_t max_lines = 0);

/// A task whose examples are dataset lines made on demand: example i of sample(n, seed) is the line `line` makes of
/// its own seed, read as a dataset reads its lines (the kv-text task, core/text/kv_retrieval.h). `vocab` must cover
/// every id the tokenizer gives. Its corrupt() knows the examples of its recent samples.
std::unique_ptr<Task> make_generated_text_task(std::function<nlohmann::json(uint64_t)> line,
                                               std::shared_ptr<const Tokenizer> tokenizer, std::vector<std::string> vocab,
                                               nlohmann::json config);

}  // namespace mechscope
