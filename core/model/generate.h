// Incremental decoding and greedy generation (docs/text.md, "Generation"): a model reads its input a chunk at a
// time, each chunk a partial run (LanguageModel::forward_blocks_partial) from the positions already read, whose
// prefixes are a cache: attention's keys and values of every position, an SSM's last state and its convolution's
// last inputs, a shared block's token embedding. The logits equal the full forward's at the same positions (up to
// rounding: the same sums in another order), tested for every preset and family variant against it.
// Must not: know about tasks, tokenizers or files.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

#include "core/model/mixer.h"

namespace mechscope {

class LanguageModel;

/// The cache of one batch of sequences read so far.
class IncrementalDecoder {
 public:
  explicit IncrementalDecoder(LanguageModel& model);
  /// Reads tokens [batch, n] (the next n positions of every row; the batch fixed by the first call) and returns the
  /// logits at its last position [batch, vocab_rows].
  at::Tensor feed(const at::Tensor& tokens);
  /// Positions read so far.
  int64_t length() const { return length_; }

 private:
  LanguageModel& model_;
  std::vector<LayerPrefix> layers_;
  std::vector<std::vector<std::string>> hooks_;  // per layer: the prefix hooks it keeps
  int64_t length_ = 0, batch_ = -1;
};

struct GenerationOptions {
  int64_t max_new_tokens = 32;
  std::vector<int64_t> stop;  ///< ids that end a row (kept in its output)
  int64_t prompt_chunk = 64;  ///< positions per partial run while reading the prompt (bounds an SSM's transient states)
};

/// Greedy continuation of prompts [batch, L] (one length for all rows): [batch, n] ids, n <= max_new_tokens (fewer
/// when every row stopped); after a row's stop id its entries are -1.
at::Tensor greedy_generate(LanguageModel& model, const at::Tensor& prompts, const GenerationOptions& options);
/// The reference: the full forward over the prompt and everything generated so far, at every step.
at::Tensor greedy_generate_reference(LanguageModel& model, const at::Tensor& prompts, const GenerationOptions& options);

}  // namespace mechscope
