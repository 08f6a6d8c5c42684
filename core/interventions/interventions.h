// Causal interventions (SPEC §4): head ablation, attention knockout, activation patching (including SSM state
// patching that carries forward), attribution patching and direct logit attribution, with the metrics they read.
// Every sweep has a plain path (one forward per intervention, through the public hooks) and a batched path
// (prefix reuse, variants stacked along the batch, readout positions only) that must agree with it.
// Must not: do file I/O or know about Qt.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "core/model/hooks.h"
#include "core/tasks/task.h"

namespace mechscope {

class LanguageModel;

// ---------------------------------------------------------------- readout and metrics

/// Where metrics read the logits: (example, position, target) triples, R of them.
struct Readout {
  at::Tensor example;   ///< [R] int64
  at::Tensor position;  ///< [R] int64
  at::Tensor target;    ///< [R] int64: the answer token
  int64_t num_examples = 0;
  int64_t size() const { return example.defined() ? example.size(0) : 0; }
  /// Every labelled position (target != -100): what task accuracy reads.
  static Readout all_labelled(const Batch& batch);
  /// The last labelled position of each example: the answer a clean/corrupted pair differs on (SPEC §3).
  static Readout last_labelled(const Batch& batch);
};

/// Per-example metrics [E] (each the mean over the example's readout positions) of readout logits [R, V]:
/// probability of the answer, logit difference (answer vs best wrong), correct (argmax == answer) and,
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

// ---------------------------------------------------------------- control of long work

/// Thrown when a sweep sees its cancel flag.
struct Cancelled : std::runtime_error {
  Cancelled() : std::runtime_error("cancelled") {}
};

struct SweepOptions {
  bool batched = true;                   ///< false: the plain one-forward-per-intervention loop (the baseline)
  int64_t memory_budget_mb = 1024;       ///< batched variants are split to stay under this (estimated)
  double keep_threshold = 0.01;          ///< patching keeps examples with p(y|o) - p(y|c) above this (SPEC §4)
  std::function<void(double fraction, const std::string& what)> progress;  ///< optional
  const std::atomic<bool>* cancel = nullptr;                               ///< optional
};

// ---------------------------------------------------------------- heads and ablation

/// A head: an attention head ("attn"), a Mamba2 head or a Mamba1 channel ("ssm") of one layer.
struct HeadRef {
  int64_t layer = 0;
  std::string mixer;  ///< "attn" or "ssm"
  int64_t head = 0;
  std::string label() const;  ///< "L1.attn.H0"
  bool operator==(const HeadRef& o) const { return layer == o.layer && mixer == o.mixer && head == o.head; }
};
/// Every head of the model, layer by layer (attention before SSM in a parallel layer).
std::vector<HeadRef> all_heads(const LanguageModel& model);
/// Parses "L1.attn.H0", "1.attn.0" or "1.0" (the layer's only mixer); checks it against the model.
HeadRef parse_head(const std::string& text, const LanguageModel& model);
/// parse_head, or a range of one layer's heads "L0.ssm.H0-15" (a Mamba1 channel group).
std::vector<HeadRef> parse_heads(const std::string& text, const LanguageModel& model);
/// "L1.attn.H0" for one head; a set in layer order, runs of consecutive heads of one mixer as "L0.ssm.H0-15",
/// joined by '+'.
std::string group_label(const std::vector<HeadRef>& group);
/// Every layer's Mamba1 channels in groups of `size` consecutive channels (the last of a layer may be smaller);
/// attention and Mamba2 heads stay one per group. size 1: every head alone.
std::vector<std::vector<HeadRef>> channel_groups(const LanguageModel& model, int64_t size);
/// The hook whose per-head slice ablation replaces: blocks.{l}.attn.hook_z or blocks.{l}.ssm.hook_head_out.
std::string head_hook_name(const LanguageModel& model, const HeadRef& head);

enum class AblationKind { Zero, Mean, Resample };
AblationKind parse_ablation(const std::string& text);  ///< "zero" | "mean" | "resample"
const char* ablation_name(AblationKind kind);

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
  /// Hooks that ablate `heads` in a forward (run_with_hooks); heads of one hook share one function.
  std::vector<Hook> hooks(const std::vector<HeadRef>& heads) const;

 private:
  at::Tensor replacement(const HeadRef& h, int64_t B, int64_t L, at::ScalarType dtype) const;  // [B, L, D]
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

/// Readout positions as rows per example: rows [B, P] (each example's positions, padded by repeating its last;
/// examples without one read position 0) and, per readout entry, its column in rows: slot [R].
std::pair<at::Tensor, at::Tensor> readout_rows(const Readout& readout, int64_t B);

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

// ---------------------------------------------------------------- attention knockout

/// Blocks query->key edges of attention heads of one layer (the score becomes -inf before the softmax).
struct Knockout {
  int64_t layer = 0;
  std::vector<int64_t> heads;                         ///< empty: every head of the layer
  std::vector<std::pair<int64_t, int64_t>> edges;     ///< (query position, key position), every example
  bool last_row = false;  ///< also block every edge from each example's readout position to the earlier keys
};
/// Hooks implementing the knockouts (one per layer) for a run whose readout is `readout`.
std::vector<Hook> knockout_hooks(const LanguageModel& model, const std::vector<Knockout>& knockouts,
                                 const Readout& readout);

// ---------------------------------------------------------------- activation and attribution patching

/// Sites of SPEC §4: resid_pre, resid_mid, resid_post, mixer_in, mixer_out, mlp_in, mlp_out, heads, conv_out, state.
const std::vector<std::string>& patch_sites();
/// The hook a site reads at a layer (heads: the layer's first mixer with heads is `mixer`); "" where the layer
/// has no such site (mlp_* without an MLP, conv_out / state on attention layers).
std::string site_hook_name(const LanguageModel& model, const std::string& site, int64_t layer,
                           const std::string& mixer = "");

struct PatchResult {
  std::string site;
  std::vector<std::string> rows;   ///< "L0", "L1", ... or head labels for the heads site
  int64_t positions = 0;
  at::Tensor score;                ///< [rows, pos]: mean over kept examples of (p_patched - p_c) / (p_o - p_c); NaN: no site
  at::Tensor prob, logit_diff, accuracy, kl;  ///< [rows, pos] (exact patching only; KL against the clean run)
  int64_t kept_examples = 0, total_examples = 0;  ///< examples with p(y|o) - p(y|c) > 0.01
  double clean_prob = 0, corrupted_prob = 0;      ///< means over kept examples
  /// The score aligned to each example's own positions, where `score` averages absolute positions (MQAR's
  /// keys sit anywhere): anchors (aligned_anchors()) "corrupted-1" .. "corrupted+3" around the example's
  /// corrupted token (its first position where the clean and corrupted inputs differ) and "readout" (the
  /// position the metric reads). aligned [rows, anchors]: the mean over kept examples of the example's score at
  /// that position (NaN where no kept example has it within its length, or the row no site). With a key
  /// corrupted, "corrupted+1" is the key's value token: SPEC §6's induction reading is a high layer-1 score there.
  at::Tensor aligned;
  int64_t aligned_examples = 0;  ///< kept examples whose inputs differ somewhere (the others have no anchor)
};
/// The anchors of PatchResult::aligned, in order.
const std::vector<std::string>& aligned_anchors();
/// Exact patching: run the corrupted input, overwrite ONE site at ONE position with the clean run's value,
/// for every layer and position (and head for "heads"). Readout: `Readout::last_labelled(clean)`.
/// State patching replaces h_t and continues the scan from it. Throws if no example is kept.
PatchResult activation_patching(LanguageModel& model, const Batch& clean, const Batch& corrupted,
                                const std::string& site, const SweepOptions& options = {});
/// Attribution patching: grad of the answer probability at the corrupted run times (clean - corrupted), summed
/// over the site's features, normalised like `score`. One forward and one backward for all layers and positions.
PatchResult attribution_patching(LanguageModel& model, const Batch& clean, const Batch& corrupted,
                                 const std::string& site, const SweepOptions& options = {});
/// Pearson correlation of two score grids over the cells finite in both.
double score_correlation(const at::Tensor& a, const at::Tensor& b);

// ---------------------------------------------------------------- direct logit attribution

struct DlaResult {
  std::vector<std::string> components;  ///< "embed", "L0.attn.H0", ..., "L0.mixer_rest", "L0.mlp", "norm_bias"
  at::Tensor value;                     ///< [components]: mean over readout positions of the answer logit share
  double answer_logit = 0;              ///< mean answer logit; sum of `value` equals it (to float tolerance)
};
/// Each component's output through the final norm (with the clean run's scale) onto the answer's unembedding.
DlaResult direct_logit_attribution(LanguageModel& model, const at::Tensor& tokens, const Readout& readout);

}  // namespace mechscope
