// Multi-head causal self-attention (mamba_ssm modules/mha.py; spec §1 "MHA"): in_proj -> [q | k | v], (per-head
// RMSNorm of q and k: Qwen3's qk_norm), rotary, grouped kv heads, causal softmax (within a sliding window; Hard-ALiBi's per-head windows), out_proj. Hooks under blocks.{i}.attn. (spec §2). Must not: know about blocks.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <torch/nn/modules/linear.h>

#include "core/model/layers.h"
#include "core/model/mixer.h"

namespace mechscope {

class AttentionImpl : public MixerImpl {
 public:
  AttentionImpl(const ModelConfig& cfg, int64_t layer);
  /// An attention of `a` reading d_in features and writing d_out, with hooks `hook_prefix` + "hook_q" etc. (a
  /// shared block's: 2 d_model in, d_model out, under blocks.{i}.shared.attn.); `window` its sliding window.
  AttentionImpl(const AttnConfig& a, double norm_eps, int64_t d_in, int64_t d_out, int64_t window,
                const std::string& hook_prefix);
  using MixerImpl::forward;
  /// x [batch, pos, d_model] -> [batch, pos, d_model]. A partial run (Partial): the outputs of the positions from
  /// part.start() on, or only at part.rows ([batch, P, d_model]), with the keys and values before the start from
  /// the prefix (hook_k, hook_v). With rows, only those queries are computed (projected alone), and the hooks
  /// from there on (hook_q, hook_attn_scores, hook_pattern, hook_z) see [batch, P, ...]; the others every position
  /// computed. Rows with no prefix and nothing wanting the hooks between the projections and hook_z take the
  /// fused CPU kernel (kernels/binding/attention_ops.h); the ATen expressions are its reference.
  at::Tensor forward(const at::Tensor& x, const Partial& part, HookContext* ctx) override;
  std::vector<std::string> hook_names() const override;
  std::vector<HeadGroup> head_groups() const override;
  std::vector<std::string> prefix_hooks() const override { return {h_k_, h_v_}; }
  int64_t sweep_floats_per_token(int64_t len, bool states) const override;
  double transient_bytes(int64_t batch, int64_t len) const override;
  double widest_features() const override { return 0; }
  std::string describe() const override;

  torch::nn::Linear in_proj{nullptr};   // [(H + 2 Hkv) D, d_model]
  torch::nn::Linear out_proj{nullptr};  // [d_model, H D]
  RMSNorm q_norm{nullptr}, k_norm{nullptr};  // [D] each with attn_cfg.qk_norm; [H D], [Hkv D] with qk_norm_whole
  int64_t H, Hkv, D;

 private:
  AttnConfig cfg_;
  double scale_;
  std::string h_q_, h_k_, h_v_, h_scores_, h_pattern_, h_z_;
  // The rotary angles of positions 0..L-1 for the fused rows kernel, kept for the longest L seen (the parts of a
  // sweep call from several threads, hence the lock; shared so that the module stays copyable).
  struct RotaryTables;
  std::shared_ptr<RotaryTables> rotary_tables_;
  std::pair<at::Tensor, at::Tensor> rotary_tables(int64_t L);
  /// qk_norm (Qwen3): q [.., H D] and k [.., Hkv D] with each head RMS-normalised; qk_norm_whole (OLMoE): each
  /// projection as a whole; then clip_qkv's clamp of q, k and v. Unchanged without them.
  void normalise_qkv(at::Tensor& q, at::Tensor& k, at::Tensor& v);
  /// Hard-ALiBi's mask from query-minus-key distances [b|1, 1, Lq, Lk]: true [b|1, H, Lq, Lk] where head h <
  /// hard_alibi_heads may not look (more than h positions back).
  at::Tensor beyond_hard_alibi(const at::Tensor& distance) const;
};

}  // namespace mechscope
