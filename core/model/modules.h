// The modules of SPEC §1 (mamba_ssm's MixerModel semantics and state-dict names): norms, GatedMLP, MHA,
// Mamba1, Mamba2, the parallel hybrid mixer and the residual block. Every intermediate that SPEC §2 names
// passes through hook_point(). Must not: do I/O, or know about tasks.
#pragma once

#include <memory>
#include <string>

#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include "core/model/config.h"
#include "core/model/hooks.h"

namespace mechscope {

/// t [batch, L, ...] at rows [batch, P] (positions per example) -> [batch, P, ...].
at::Tensor gather_rows(const at::Tensor& t, const at::Tensor& rows);
/// Outputs [from, from + n) of a linear layer only: x W[from:from+n]^T (+ bias there).
at::Tensor linear_outputs(const torch::nn::Linear& lin, const at::Tensor& x, int64_t from, int64_t n);

/// What one layer saw before position `start` in an earlier run over the whole input (SPEC §4, causality: a
/// change at position p leaves every layer's positions < p as they were, so a layer can run positions >= p
/// only). Batch b' of the earlier run; a partial run may stack variants along the batch, b = repeat * b'.
struct LayerPrefix {
  int64_t start = 0;
  at::Tensor k, v;      ///< attention: the run's hook_k / hook_v [b', L, Hkv, D]
  at::Tensor mixer_in;  ///< SSMs: the run's hook_mixer_in [b', L, d_model] (for the conv window before start)
  at::Tensor state;     ///< SSMs: the run's hook_state [b', L, ...] (the state leaving start - 1)
};

/// A partial run of a layer: its input holds positions >= prefix->start only (prefix null: from 0), and with
/// rows [batch, P] (positions relative to that input) only the outputs there are wanted.
struct Partial {
  const LayerPrefix* prefix = nullptr;
  const at::Tensor* rows = nullptr;
  int64_t start() const { return prefix ? prefix->start : 0; }
};
/// t [b', ...] repeated along the batch to [b, ...], b = repeat * b' (the order of stacked variants).
at::Tensor repeat_batch(const at::Tensor& t, int64_t b);

/// RMSNorm (mamba_ssm's triton RMSNorm): x * rsqrt(mean(x^2) + eps) * weight. Parameter: weight [d].
class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t d, double eps);
  at::Tensor forward(const at::Tensor& x);
  at::Tensor weight;  // [d]
  double eps;
};
TORCH_MODULE(RMSNorm);

/// LayerNorm or RMSNorm by config, with the reference's input cast to the weight's dtype.
class NormImpl : public torch::nn::Module {
 public:
  NormImpl(int64_t d, const ModelConfig& cfg);
  at::Tensor forward(const at::Tensor& x);
  at::Tensor weight() const;
  at::Tensor bias() const;  ///< undefined for RMSNorm
  bool is_rms() const { return static_cast<bool>(rms_); }
  double eps() const;

 private:
  torch::nn::LayerNorm ln_{nullptr};
  RMSNorm rms_{nullptr};
};

/// GatedMLP: fc1 (no bias) -> [value | gate] -> value * silu(gate) -> fc2 (no bias).
class GatedMLPImpl : public torch::nn::Module {
 public:
  GatedMLPImpl(int64_t d_model, int64_t hidden);
  at::Tensor forward(const at::Tensor& x);
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};  // fc1 [2*hidden, d]; fc2 [d, hidden]
};

/// Rotary embedding tables and application (flash_attn RotaryEmbedding, rotate-half or interleaved).
/// `positions` [batch, pos] (optional): the position of each row when x holds gathered rows, not 0..pos-1.
at::Tensor apply_rotary(const at::Tensor& x /*[batch, pos, heads, D]*/, int64_t rotary_dim, double base, bool interleaved,
                        const at::Tensor* positions = nullptr);

/// Multi-head causal self-attention (mamba_ssm MHA). Hooks under `blocks.{i}.attn.`.
class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(const ModelConfig& cfg, int64_t layer);
  at::Tensor forward(const at::Tensor& x /*[batch, pos, d_model]*/, HookContext* ctx);
  /// A partial run (Partial): the outputs of the positions from part.start() on, or only at part.rows
  /// ([batch, P, d_model]), with the keys and values before the start from the prefix. With rows, only those
  /// queries are computed (projected alone), and the hooks from there on (hook_q, hook_attn_scores,
  /// hook_pattern, hook_z) see [batch, P, ...]; the others every position computed. Rows with no prefix and
  /// nothing wanting the hooks between the projections and hook_z take the fused CPU kernel
  /// (kernels/binding/attention_ops.h); the ATen expressions are its reference.
  at::Tensor forward_partial(const at::Tensor& x, const Partial& part, HookContext* ctx = nullptr);
  torch::nn::Linear in_proj{nullptr};   // [(H + 2 Hkv) D, d_model]
  torch::nn::Linear out_proj{nullptr};  // [d_model, H D]
  int64_t H, Hkv, D;
  std::vector<std::string> hook_names() const;

 private:
  AttnConfig cfg_;
  double scale_;
  std::string h_q_, h_k_, h_v_, h_scores_, h_pattern_, h_z_;
  // The rotary angles of positions 0..L-1 for the fused rows kernel, kept for the longest L seen (the parts of a
  // sweep call from several threads, hence the lock; shared so that the module stays copyable).
  struct RotaryTables;
  std::shared_ptr<RotaryTables> rotary_tables_;
  std::pair<at::Tensor, at::Tensor> rotary_tables(int64_t L);
};

/// Mamba1 mixer (mamba_simple.py). Heads are its d_inner channels. Hooks under `blocks.{i}.ssm.`.
class Mamba1Impl : public torch::nn::Module {
 public:
  Mamba1Impl(const ModelConfig& cfg, int64_t layer);
  at::Tensor forward(const at::Tensor& x /*[batch, pos, d_model]*/, HookContext* ctx);
  /// A partial run (Partial): the positions from part.start() on, the conv window and the scan's entering state
  /// from the prefix; with rows, the output there only ([batch, P, d_model]; the scan still runs over every
  /// position computed, and hook_head_out sees [batch, P, ...]). hook_state and hook_pattern cannot be taken
  /// in a run from a start > 0 (they would miss the prefix).
  at::Tensor forward_partial(const at::Tensor& x, const Partial& part, HookContext* ctx = nullptr);
  torch::nn::Linear in_proj{nullptr};   // [2 d_inner, d_model]
  torch::nn::Conv1d conv1d{nullptr};    // weight [d_inner, 1, d_conv], bias [d_inner]
  torch::nn::Linear x_proj{nullptr};    // [dt_rank + 2N, d_inner]
  torch::nn::Linear dt_proj{nullptr};   // [d_inner, dt_rank] + bias
  torch::nn::Linear out_proj{nullptr};  // [d_model, d_inner]
  at::Tensor A_log;                     // [d_inner, N]
  at::Tensor D;                         // [d_inner]
  int64_t d_inner, d_state, d_conv, dt_rank;
  std::vector<std::string> hook_names() const;

 private:
  std::string h_conv_, h_x_, h_gate_, h_dt_, h_B_, h_C_, h_state_, h_y_, h_head_out_, h_pattern_;
};

/// Mamba2 mixer (mamba2.py) with chunked SSD and the gated RMSNorm. Hooks under `blocks.{i}.ssm.`.
class Mamba2Impl : public torch::nn::Module {
 public:
  Mamba2Impl(const ModelConfig& cfg, int64_t layer);
  at::Tensor forward(const at::Tensor& x /*[batch, pos, d_model]*/, HookContext* ctx);
  /// As Mamba1Impl::forward_partial; with rows, hook_gate (computed at the rows only) sees [batch, P, ...] too.
  at::Tensor forward_partial(const at::Tensor& x, const Partial& part, HookContext* ctx = nullptr);
  torch::nn::Linear in_proj{nullptr};   // [2 d_inner + 2 G N + H, d_model]
  torch::nn::Conv1d conv1d{nullptr};    // weight [d_ssm + 2 G N, 1, d_conv]
  torch::nn::Linear out_proj{nullptr};  // [d_model, d_inner]
  at::Tensor dt_bias;                   // [H]
  at::Tensor A_log;                     // [H]
  at::Tensor D;                         // [H] or [d_ssm] when D_has_hdim
  at::Tensor norm_weight;               // [d_ssm] (state-dict name mixer.norm.weight), when rmsnorm
  int64_t d_inner, d_ssm, d_mlp, H, P, G, N, d_conv, chunk;
  std::vector<std::string> hook_names() const;

 private:
  Mamba2Config cfg_;
  std::string h_conv_, h_x_, h_gate_, h_dt_, h_B_, h_C_, h_state_, h_y_, h_head_out_, h_pattern_;
};

/// Parallel hybrid mixer (after P1's hybrid_par.py): ssm(h) + tanh(beta) * attn(h) on the same normed input.
/// Parameters mixer.ssm.*, mixer.attn.*, mixer.beta [1] (initialised to 0).
class ParallelMixerImpl : public torch::nn::Module {
 public:
  ParallelMixerImpl(const ModelConfig& cfg, int64_t layer);
  at::Tensor forward(const at::Tensor& h, HookContext* ctx);
  at::Tensor forward_partial(const at::Tensor& h, const Partial& part, HookContext* ctx = nullptr);
  std::shared_ptr<AttentionImpl> attn;
  std::shared_ptr<Mamba1Impl> mamba1;  // one of mamba1 / mamba2, registered as "ssm"
  std::shared_ptr<Mamba2Impl> mamba2;
  at::Tensor beta;  // [1]
  std::vector<std::string> hook_names() const;
};

/// Pre-norm residual block: norm -> mixer -> add, then norm2 -> mlp -> add when d_intermediate > 0.
class BlockImpl : public torch::nn::Module {
 public:
  BlockImpl(const ModelConfig& cfg, int64_t layer);
  at::Tensor forward(const at::Tensor& resid /*[batch, pos, d_model]*/, HookContext* ctx);
  /// The rest of the block after the mixer's residual add: resid_mid -> (MLP) -> resid_post.
  at::Tensor forward_after_mixer(const at::Tensor& resid_mid, HookContext* ctx);
  /// The block's output at rows [batch, P] (positions per example) only: [batch, P, d_model].
  /// Equals forward(resid) gathered at those rows; attention computes only those queries, SSMs still scan
  /// every position but gate, project and run the MLP at the rows. Hooks before the row gather see every
  /// position; those after it (the head outputs, hook_mixer_out and the rest of the block) see [batch, P, ...].
  at::Tensor forward_rows(const at::Tensor& resid, const at::Tensor& rows, HookContext* ctx = nullptr);
  /// A partial run (Partial): resid holds positions >= start; the output those positions, or the rows.
  at::Tensor forward_partial(const at::Tensor& resid, const Partial& part, HookContext* ctx = nullptr);
  MixerKind kind;
  std::shared_ptr<NormImpl> norm, norm2;
  // Exactly one mixer, registered as "mixer" (so its parameters are mixer.*).
  std::shared_ptr<AttentionImpl> attn;
  std::shared_ptr<Mamba1Impl> mamba1;
  std::shared_ptr<Mamba2Impl> mamba2;
  std::shared_ptr<ParallelMixerImpl> parallel;
  std::shared_ptr<GatedMLPImpl> mlp;
  // The block's mixers of each kind, alone or inside the parallel mixer (null when absent).
  std::shared_ptr<AttentionImpl> attention_mixer() const { return attn ? attn : parallel ? parallel->attn : nullptr; }
  std::shared_ptr<Mamba1Impl> mamba1_mixer() const { return mamba1 ? mamba1 : parallel ? parallel->mamba1 : nullptr; }
  std::shared_ptr<Mamba2Impl> mamba2_mixer() const { return mamba2 ? mamba2 : parallel ? parallel->mamba2 : nullptr; }
  std::vector<std::string> hook_names() const;

 private:
  std::string h_resid_pre_, h_mixer_in_, h_mixer_out_, h_resid_mid_, h_mlp_in_, h_mlp_out_, h_resid_post_;
};

}  // namespace mechscope
