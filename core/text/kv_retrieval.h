// P4's key-value retrieval prompt as text (docs/text.md, "Key-value retrieval"), for any model with a tokenizer:
//   Memorize the following dictionary:
//   apple:42
//   river:7
//   ...
//   The value of the key 'river' is
// scored as a multiple choice over the dictionary's values, each the prompt's continuation ("7", no space, as P4's
// kv_retrieval.py appends it). Made as prompt-dataset lines (core/text/dataset.h), so that the same prompts run as
// a dataset file (`make-dataset kv-retrieval`) and as a task to train on (`kv-text`).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/tasks/task.h"

namespace mechscope {

class Tokenizer;

struct KvRetrievalConfig {
  int64_t min_pairs = 10, max_pairs = 50;  ///< pairs per prompt, drawn uniformly in [min, max] (P4: 10-50)
  int64_t values = 100;                    ///< values are the numbers 0 .. values-1 (P4: 100)
  /// Queries per prompt (P4: 1). More, for training: the queries before the last are answered in the prompt
  /// ("... is42" then a new line), each key drawn anew (a key may be asked again), and their answers are labelled
  /// (the line's "labels"), so that one prompt teaches several lookups.
  int64_t queries = 1;
  /// From {"min_pairs": .., "max_pairs": .., "values": .., "queries": ..} (other keys are the caller's); refuses bad
  /// values by name.
  static KvRetrievalConfig from_json(const nlohmann::json& j, const std::string& where);
};

/// The keys: common English nouns, distinct, lowercase ASCII (our own list; P4 draws random words).
const std::vector<std::string>& kv_retrieval_words();

/// The numbers 0 .. values-1 whose continuation of a prompt ending in "is" is one token of `tok` and whose tokens are
/// all different (what a first-token multiple choice can tell apart). Throws std::invalid_argument, saying how many
/// there are, when fewer than `max_pairs`.
std::vector<int64_t> kv_retrieval_values(const KvRetrievalConfig& c, const Tokenizer& tok);

/// Example `seed`'s prompt as a dataset line: clean, corrupted (the query names another key of the dictionary whose
/// prompt has as many tokens; absent when no key does), answer, choices (the dictionary's values in its order) and
/// key/value character spans of every pair (of the dictionary), and with more than one query the "labels" spans of
/// the answers given in the prompt. `values`: kv_retrieval_values' list.
nlohmann::json kv_retrieval_line(const KvRetrievalConfig& c, const std::vector<int64_t>& values, uint64_t seed,
                                 const Tokenizer& tok);

/// The "kv-text" task: {"task": "kv-text", "tokenizer": tokenizer.json's object (or its path, read now and kept
/// as the object, so that a checkpoint trained on it carries its tokenizer), "min_pairs", "max_pairs", "values",
/// "queries"}.
/// Its vocabulary is the tokenizer's (one name per id up to its largest).
std::unique_ptr<Task> make_kv_text_task(const nlohmann::json& config);

}  // namespace mechscope
