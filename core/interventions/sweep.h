// The sweep engine (spec §4, "Sweeps are exact and fast"): what every batched sweep is built from. Options with
// progress and cancel; the memory budget and the stack of variants per forward; readout rows, so that a last block
// runs and unembeds at the answer positions only; parts of a stack run side by side on threads; means over the
// kept examples. The interventions (ablation.cpp, activation_patching.cpp, ...) and a plugin's own sweep compose
// these. Must not: know about any one intervention.
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

#include "core/interventions/metrics.h"

namespace mechscope {

class LanguageModel;

// ---------------------------------------------------------------- control of long work

/// Thrown when a sweep sees its cancel flag.
struct Cancelled : std::runtime_error {
  Cancelled() : std::runtime_error("cancelled") {}
};

struct SweepOptions {
  bool batched = true;                   ///< false: the plain one-forward-per-intervention loop (the baseline)
  int64_t memory_budget_mb = 1024;       ///< batched variants are split to stay under this (estimated)
  double keep_threshold = 0.01;          ///< patching keeps examples with p(y|o) - p(y|c) above this (spec §4)
  std::function<void(double fraction, const std::string& what)> progress;  ///< optional
  const std::atomic<bool>* cancel = nullptr;                               ///< optional
};

/// Throws Cancelled when the options' cancel flag is set.
void check_cancel(const SweepOptions& options);
/// Reports progress (fraction done, what) when the options have a callback.
void report_progress(const SweepOptions& options, double fraction, const std::string& what);

/// Mean over the kept examples of per-example values [..., E] -> [...] (undefined in, undefined out).
at::Tensor mean_over(const at::Tensor& values, const at::Tensor& keep /*[E] bool*/);
/// [E] bool: the examples that have at least one readout position.
at::Tensor examples_with_readout(const Readout& readout);
/// Per-example metrics averaged over the kept examples.
MetricTable table_of(const ExampleMetrics& metrics, const at::Tensor& keep);

/// Rough bytes one example of one variant needs while layers run (the widest layer's activations; `states`: a
/// sweep that holds SSM states per position).
int64_t bytes_per_example(const LanguageModel& model, int64_t L, bool states);
/// Variants per stacked forward: under the memory budget, about kStackTokens tokens at most, and at least one per
/// intra-op thread when the budget allows (so that run_example_parts has a part for each); in [1, total].
inline constexpr int64_t kStackTokens = 8192;
int64_t chunk_size(const SweepOptions& options, int64_t per_variant_bytes, int64_t total, int64_t tokens_per_variant);

/// Readout positions as rows per example: rows [B, P] (each example's positions, padded by repeating its last;
/// examples without one read position 0) and, per readout entry, its column in rows: slot [R].
std::pair<at::Tensor, at::Tensor> readout_rows(const Readout& readout, int64_t B);

/// Where each example's readouts start when the readout lists examples in ascending order (as Readout's
/// constructors do): start[i] .. start[i + 1] are example i's entries. `sorted` false: another order, and callers
/// take their whole-batch path. Lets a part of the examples unembed its own readout rows.
struct ReadoutSpans {
  bool sorted = true;
  std::vector<int64_t> start;  ///< [E + 1]
  ReadoutSpans(const Readout& readout, int64_t E);
  /// The readout entries of examples [b, e): (their examples relative to b, their slots), in readout order.
  std::pair<at::Tensor, at::Tensor> of(const Readout& readout, const at::Tensor& slot, int64_t b, int64_t e) const;
};

/// The readout logits of rows [b, e) of a variant-major stack of B-example variants, `out` [e - b, P, d] being their
/// residuals at the readout rows (`slot`: each readout's column there): variant by variant, in readout order, so
/// that consecutive parts concatenate to [K * R, V]. Needs spans.sorted.
at::Tensor unembed_part_readouts(LanguageModel& model, const at::Tensor& out, int64_t b, int64_t e, int64_t B,
                                 const ReadoutSpans& spans, const Readout& readout, const at::Tensor& slot);
/// The whole-batch twin, for a readout in another order: residuals at the readout rows [K * B, P, d] -> [K, R, V].
at::Tensor unembed_all_readouts(LanguageModel& model, const at::Tensor& out, int64_t K, int64_t B,
                                const Readout& readout, const at::Tensor& slot);
/// Runs stacked residuals [K * B, L, d] (variant-major) from block `from` to the end and returns the logits at the
/// readout [K, R, V]; the last block runs at the readout rows only (forward_blocks_at). `rows_of(b, e)` gives rows
/// [b, e) of the stack, so a caller may build them inside the parts. `embedding` [B, L, d]: hook_embed's value for
/// a model whose shared blocks read it (LanguageModel::needs_embedding), undefined otherwise.
at::Tensor finish_and_read(LanguageModel& model, int64_t from, int64_t K, int64_t B, const Readout& readout,
                           const at::Device& device, const at::Tensor& embedding,
                           const std::function<at::Tensor(int64_t, int64_t)>& rows_of);

}  // namespace mechscope
