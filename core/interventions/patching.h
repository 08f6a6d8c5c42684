// Activation and attribution patching (spec §4): the grid of sites x positions (x heads), its pair run (clean and
// corrupted, the kept examples), the score aligned to each example's corruption, and the building blocks the two
// sweeps (activation_patching.cpp, attribution_patching.cpp) share, public so that a new patching intervention
// (path patching, a plugin's own) composes them too. Must not: do file I/O.
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
#include "core/interventions/sweep.h"

namespace mechscope {

class LanguageModel;

/// Sites of spec §4: resid_pre, resid_mid, resid_post, mixer_in, mixer_out, mlp_in, mlp_out, heads, conv_out, state.
const std::vector<std::string>& patch_sites();
/// The hook a site reads at a layer (heads: the head group of scope `mixer`, or the layer's first); "" where the
/// layer has no such site (mlp_* without an MLP, conv_out / state on attention layers). Throws for an unknown site.
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
  /// corrupted, "corrupted+1" is the key's value token: spec §6's induction reading is a high layer-1 score there.
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

/// Logits [B, L, V] of the corrupted run with one cell patched: `hook`'s value at position `pos` (and head `head`
/// when >= 0) replaced by the clean run's. What a click on a patching grid shows. With `aligned` (the corrupted
/// batch's Batch::aligned), clean position `pos` goes to each corrupted row's aligned position (none: no patch).
at::Tensor patch_one_cell(LanguageModel& model, const at::Tensor& clean_tokens, const at::Tensor& corrupted_tokens,
                          const std::string& hook, int64_t pos, int64_t head = -1, const at::Tensor& aligned = {});

namespace patching {

/// `rows` [B, L', ...] (a corrupted run's activation) takes `clean` [B, L, ...] at clean position `pos` (head `head`
/// when >= 0): at the same position, or with `aligned` [B, L] at each row's aligned position (-1: left alone).
void copy_cell(at::Tensor rows, const at::Tensor& clean, int64_t pos, int64_t head, const at::Tensor& aligned);

/// One cell of a grid: a row (a layer, or a head), a position, the head (< 0: the whole site).
struct Cell {
  int64_t row, pos, head;
};

/// A grid's rows for a site: label, hook ("" where the layer has no such site), layer and head (-1 for whole-site
/// rows); `hooks` the distinct hooks of the rows that have the site.
struct PatchPlan {
  struct Row {
    std::string label, hook;
    int64_t layer, head;
  };
  std::vector<Row> rows;
  std::vector<std::string> hooks;
};
/// The grid's rows for a site (validated; throws if no layer has it).
PatchPlan plan_rows(const LanguageModel& model, const std::string& site);

/// Copies the clean value [B, L, ...] into the variant rows of a stacked activation [k * B, L, ...] at each cell's
/// position (variant j takes cell j).
at::Tensor patch_stacked(const at::Tensor& value, const at::Tensor& clean, const std::vector<Cell>& cells, int64_t B);

/// The clean and corrupted runs of a pair: readout (the last labelled position), the answer probabilities [E],
/// the kept examples [E] (p(y|o) - p(y|c) above the threshold), the readout logits [R, V] and the caches asked for.
struct PairRun {
  Readout readout;          ///< the clean batch's (last labelled positions)
  Readout corrupt_readout;  ///< the corrupted batch's: the same but for positions where Batch::aligned is given
  at::Tensor p_clean, p_corrupt, keep;
  at::Tensor clean_read;
  ActivationCache clean_cache, corrupt_cache;
  at::Tensor corrupt_read;
};
PairRun run_pair(LanguageModel& model, const Batch& clean, const Batch& corrupted,
                 const std::vector<std::string>& clean_names, const std::vector<std::string>& corrupt_names,
                 double keep_threshold);
/// A result with the plan's rows, the pair's statistics, and a score grid of NaN (a site a layer does not have).
/// Throws when no example is kept.
PatchResult start_result(const std::string& site, const PatchPlan& plan, const PairRun& pr, int64_t L,
                         double keep_threshold);

/// PatchResult::aligned, accumulated cell by cell: each example's score at a cell goes to the anchors that fall on
/// the cell's position in that example.
class Aligner {
 public:
  Aligner(const Batch& clean, const Batch& corrupted, const PairRun& pr, int64_t rows);
  /// The per-example scores [E] of the cell (row, pos).
  void add(int64_t row, int64_t pos, const float* scores);
  /// Writes `aligned` and `aligned_examples`.
  void finish(PatchResult& res) const;

 private:
  std::vector<std::vector<std::pair<int64_t, int64_t>>> by_pos_;  // position -> (anchor, example)
  std::vector<double> sum_;
  std::vector<int64_t> count_;
  int64_t A_ = 0, examples_ = 0;
};

}  // namespace patching

}  // namespace mechscope
