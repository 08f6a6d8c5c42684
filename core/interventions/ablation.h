// Head ablation (spec §4): zero, mean and resample replacements of head outputs, single heads and sets, and the
// batched sweep over every head (a head's ablation changes its mixer's output by a linear function of its slice,
// so the layers before it come from a cached run and the ablated residuals of many heads stack along the batch).
// Must not: do file I/O.
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

#include "core/interventions/heads.h"
#include "core/interventions/metrics.h"
#include "core/interventions/sweep.h"

namespace mechscope {

class LanguageModel;

enum class AblationKind { Zero, Mean, Resample };
AblationKind parse_ablation(const std::string& text);  ///< "zero" | "mean" | "resample"
const char* ablation_name(AblationKind kind);
/// Every kind's name, in the order above (what a front-end offers).
const std::vector<std::string>& ablation_names();

/// Replacement values for ablated heads. Mean: per position, over the reference batch's real (unpadded)
/// examples. Resample: example i takes reference example i mod B_ref (draw the reference with another seed).
class Ablator {
 public:
  /// `reference` is needed for Mean and Resample (ignored for Zero).
  Ablator(LanguageModel& model, AblationKind kind, const Batch& reference = {});
  AblationKind kind() const { return kind_; }
  /// The value head `h` takes, for a head slice `current` [B, L, D] of a run.
  at::Tensor replacement(const HeadRef& h, const at::Tensor& current) const;
  /// replacement(h, current) - current [B, L, D].
  at::Tensor change(const HeadRef& h, const at::Tensor& current) const;
  /// The same at the readout only: `current_at` [R, D] is the head slice at the readout positions of a run
  /// over B x L tokens.
  at::Tensor change_at(const HeadRef& h, const at::Tensor& current_at, const Readout& readout, int64_t B,
                       int64_t L) const;
  /// Hooks that ablate `heads` in a forward (run_with_hooks); heads of one hook share one function. `first_row`:
  /// the batch row the run's row 0 stands for (a resampled head takes reference row (first_row + b) mod B_ref), so
  /// that one example of a batch, run alone, is ablated as it is in the whole batch.
  std::vector<Hook> hooks(const std::vector<HeadRef>& heads, int64_t first_row = 0) const;

 private:
  at::Tensor replacement(const HeadRef& h, int64_t B, int64_t L, at::ScalarType dtype,
                         int64_t first_row = 0) const;  // [B, L, D]
  LanguageModel& model_;
  AblationKind kind_;
  ActivationCache reference_;   // hook name -> [B_ref, L_ref, H, D]
  ActivationCache mean_;        // hook name -> [L_ref, H, D]
  at::Tensor ref_lengths_;
};

/// Hook names a clean cache needs for `ablated_final_resid`: each block's residual after its mixer (hook_resid_mid,
/// or hook_resid_post in a block without an MLP), the head outputs, and the last block's output.
std::vector<std::string> ablation_cache_names(const LanguageModel& model);
/// The final residual [B, L, d_model] of the cached run with `heads` ablated together, without recomputing the
/// layers before the first ablated head (its mixer changes by a linear function of the head slices). Equal to
/// the residual of run_with_hooks(tokens, ablator.hooks(heads)) to float tolerance. Empty `heads`: the clean one.
at::Tensor ablated_final_resid(LanguageModel& model, const at::Tensor& tokens, const ActivationCache& clean_cache,
                               const Ablator& ablator, const std::vector<HeadRef>& heads);

/// What an outcome view reads of an ablated run: the final residual at rows [B, P, d_model] for every example,
/// and at every position of one example [L, d_model] (undefined when example < 0).
struct ReadoutResid {
  at::Tensor at_rows;
  at::Tensor example_full;
};
/// ablated_final_resid read only where a view looks: when every ablated head is in one layer, the layers after
/// it run in full for the one example and at `rows` only for the batch (the last block's work elsewhere is
/// skipped); otherwise the full final residual is computed and gathered. Same values as ablated_final_resid.
ReadoutResid ablated_readout_resid(LanguageModel& model, const at::Tensor& tokens, const ActivationCache& clean_cache,
                                   const Ablator& ablator, const std::vector<HeadRef>& heads, const at::Tensor& rows,
                                   int64_t example);

struct HeadSweepResult {
  std::vector<HeadRef> heads;       ///< per row: the head (the first head of a group)
  std::vector<std::string> labels;  ///< per row: group_label of what was ablated
  MetricTable base;     ///< [1]: no ablation
  MetricTable ablated;  ///< [rows]: each head (or group) alone ablated
};
/// Ablates each head alone (every head of the model when `heads` is empty) and reads the metrics (KL against
/// the unablated run).
HeadSweepResult head_ablation_sweep(LanguageModel& model, const at::Tensor& tokens, const Readout& readout,
                                    const Ablator& ablator, const std::vector<HeadRef>& heads,
                                    const SweepOptions& options = {});
/// The same with each group of heads ablated together; a group's heads share one layer and mixer.
HeadSweepResult head_group_sweep(LanguageModel& model, const at::Tensor& tokens, const Readout& readout,
                                 const Ablator& ablator, const std::vector<std::vector<HeadRef>>& groups,
                                 const SweepOptions& options = {});

}  // namespace mechscope
