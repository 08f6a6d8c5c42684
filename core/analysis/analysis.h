// Analyses (spec §5): attention and implicit SSM attention maps, gather / aggregate / causal / induction /
// previous-token head scores, embedding geometry (PCA, cosine similarity, locality), and the logit lens.
// Each returns tensors with named axes; core/io/results writes them. Must not: do file I/O or know about Qt.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "core/interventions/interventions.h"
#include "core/tasks/task.h"

namespace mechscope {

class LanguageModel;

// ---------------------------------------------------------------- attention maps

/// One layer's mixing pattern [batch, heads, q_pos, k_pos]: softmax attention for "attn"; the implicit attention
/// of spec §5 for "ssm" (Mamba2 per head; Mamba1 per channel, averaged over `groups` equal channel groups,
/// groups = 1: the channel average, groups = d_inner: every channel). `hooks` change the run (an ablation).
struct AttentionMap {
  int64_t layer = 0;
  std::string mixer;  ///< "attn" or "ssm"
  at::Tensor pattern;
};
AttentionMap attention_map(LanguageModel& model, const at::Tensor& tokens, int64_t layer, const std::string& mixer,
                           int64_t mamba1_groups = 1, const std::vector<Hook>& hooks = {});
/// Every layer and mixer (Mamba1 channel-averaged).
std::vector<AttentionMap> attention_maps(LanguageModel& model, const at::Tensor& tokens);
/// Min-max normalisation over the causal (k <= q) entries of each [q, k] map.
at::Tensor normalise_map(const at::Tensor& pattern);
/// Attention mass: |pattern| normalised per row to sum 1 (spec §5); softmax rows are unchanged.
at::Tensor attention_mass(const at::Tensor& pattern);

// ---------------------------------------------------------------- head scores

struct HeadScores {
  std::vector<HeadRef> heads;
  at::Tensor gather;      ///< [heads]: mass a segment's last token puts on the rest of its segment (NaN: no segments)
  at::Tensor aggregate;   ///< [heads]: mass from the answer-predicting position onto the segment holding the answer
  at::Tensor causal;      ///< [heads]: accuracy drop when the head alone is zero-ablated
  at::Tensor induction;   ///< [heads]: on repeated random sequences, mass from t to t - T + 1
  at::Tensor prev_token;  ///< [heads]: on the same sequences, mass from t to t - 1
};
/// `batch` comes from a task (roles define segments); the repeated sequences use token ids [first_id, vocab) of
/// length `repeat_len` per half, seeded by `seed`.
HeadScores head_scores(LanguageModel& model, const Batch& batch, int64_t first_id, int64_t repeat_len, uint64_t seed,
                       const SweepOptions& options = {});
const std::vector<std::string>& head_score_names();  ///< gather, aggregate, causal, induction, prev_token
/// The reading in one sentence: the top aggregate head, its causal score and rank among the heads, and
/// the most causal head ("top aggregate head L1.attn.H0 (0.997): causal 1.000, rank 1 of 5 by causal score;
/// most causal L1.attn.H0 (1.000)"). Empty when no head has an aggregate score (a task without segments).
std::string top_aggregate_reading(const HeadScores& s);
at::Tensor head_score(const HeadScores& s, const std::string& name);

// ---------------------------------------------------------------- embedding geometry

struct EmbeddingGeometry {
  at::Tensor rows;         ///< [n, d] the rows analysed
  at::Tensor projection;   ///< [n, components] PCA coordinates
  at::Tensor explained;    ///< [components] fraction of variance per component
  at::Tensor cosine;       ///< [n, n]
  double locality = 0;     ///< spec §5 with `k`
  int64_t k = 5;
};
EmbeddingGeometry embedding_geometry(const at::Tensor& rows, int64_t components = 3, int64_t k = 5);
/// Mean over rows of the fraction of the k nearest neighbours (cosine, itself excluded) within +-k in index.
double locality_score(const at::Tensor& rows, int64_t k = 5);
/// The rows a model and task suggest: the task's position tokens, else a learned position table, else empty.
at::Tensor probe_rows(const LanguageModel& model, const Task* task, std::vector<int64_t>* ids = nullptr);

// ---------------------------------------------------------------- logit lens

struct LogitLens {
  std::vector<std::string> stages;  ///< "embed", "L0", "L1", ...: the residual after each
  at::Tensor prob;                  ///< [stages]: mean answer probability at the readout
  at::Tensor accuracy;              ///< [stages]
  at::Tensor example_prob;          ///< [stages, pos]: probability of each position's target in example 0 (NaN: none)
  at::Tensor example_top;           ///< [stages, pos]: top token of example 0 (int64)
};
LogitLens logit_lens(LanguageModel& model, const Batch& batch);

}  // namespace mechscope
