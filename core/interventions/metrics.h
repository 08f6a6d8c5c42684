// Readouts and metrics (spec §4): where a sweep reads the logits (the answer positions) and what it reads there:
// answer probability, logit difference, accuracy and KL to a reference run, per example. Must not: run models.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "core/model/hooks.h"
#include "core/tasks/task.h"

namespace mechscope {

/// Where metrics read the logits: (example, position, target) triples, R of them.
struct Readout {
  at::Tensor example;   ///< [R] int64
  at::Tensor position;  ///< [R] int64
  at::Tensor target;    ///< [R] int64: the answer token
  at::Tensor wrong;     ///< [R, W] int64: given wrong answers (-1: none), or undefined (Batch::wrong)
  bool multiple_choice = false;  ///< correct: the answer beats the given wrong answers (Batch::multiple_choice)
  int64_t num_examples = 0;
  int64_t size() const { return example.defined() ? example.size(0) : 0; }
  /// Every labelled position (target != -100): what task accuracy reads.
  static Readout all_labelled(const Batch& batch);
  /// The last labelled position of each example: the answer a clean/corrupted pair differs on (spec §3).
  static Readout last_labelled(const Batch& batch);
};

/// Per-example metrics [E] (each the mean over the example's readout positions) of readout logits [R, V]:
/// probability of the answer, logit difference (answer vs the best of the readout's given wrong answers where it has
/// them, else vs the best other token), correct (argmax == answer; in a multiple choice, the answer's logit above
/// every given wrong answer's) and,
/// with `reference` logits [R, V], KL(reference || these).
struct ExampleMetrics {
  at::Tensor prob, logit_diff, correct, kl;
};
ExampleMetrics example_metrics(const at::Tensor& readout_logits, const Readout& readout,
                               const at::Tensor& reference_logits = {});
/// The reference side of the KL, computed once for the many calls of a sweep: softmax p [..., R, V] of the
/// reference logits and sum p log p [..., R] (undefined members: no KL).
struct MetricReference {
  at::Tensor p, neg_entropy;
};
MetricReference metric_reference(const at::Tensor& reference_logits);
/// example_metrics with a precomputed reference (broadcast against the logits' leading dimensions).
ExampleMetrics example_metrics(const at::Tensor& readout_logits, const Readout& readout, const MetricReference& reference);
/// Rows of a per-position tensor [B, L, ...] at the readout positions -> [R, ...].
at::Tensor gather_readout(const at::Tensor& per_position, const Readout& readout);

/// One number per variant (mean over the kept examples): prob, logit_diff, accuracy, kl; each [variants].
struct MetricTable {
  at::Tensor prob, logit_diff, accuracy, kl;
};

}  // namespace mechscope
