// The Mamba2 mixer (mamba_ssm modules/mamba2.py; spec §1 "Mamba2"): in_proj -> [z0, x0, z, xBC, dt], causal conv,
// the SSD recurrence (chunked, or the fused kernel), the gated RMSNorm, out_proj. Its heads are the SSD heads (size
// headdim). Hooks under blocks.{i}.ssm. (spec §2); hook_state and hook_pattern run only when asked.
#pragma once

#include <string>
#include <vector>

#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include "core/model/mixer.h"

namespace mechscope {

class Mamba2Impl : public MixerImpl {
 public:
  Mamba2Impl(const ModelConfig& cfg, int64_t layer);
  using MixerImpl::forward;
  /// As Mamba1Impl::forward; with rows, hook_gate (computed at the rows only) sees [batch, P, ...] too.
  at::Tensor forward(const at::Tensor& x, const Partial& part, HookContext* ctx) override;
  std::vector<std::string> hook_names() const override;
  std::vector<HeadGroup> head_groups() const override;
  std::vector<std::string> prefix_hooks() const override { return {h_mixer_in_, h_state_}; }
  double prefix_state_bytes(int64_t batch, int64_t len) const override;
  std::map<std::string, std::string> patch_sites() const override;
  int64_t sweep_floats_per_token(int64_t len, bool states) const override;
  double transient_bytes(int64_t batch, int64_t len) const override;
  double widest_features() const override { return 2.0 * d_inner + 2.0 * G * N; }
  std::string describe() const override;

  torch::nn::Linear in_proj{nullptr};   // [2 d_inner + 2 G N + H, d_model]
  torch::nn::Conv1d conv1d{nullptr};    // weight [d_ssm + 2 G N, 1, d_conv]
  torch::nn::Linear out_proj{nullptr};  // [d_model, d_inner]
  at::Tensor dt_bias;                   // [H]
  at::Tensor A_log;                     // [H]
  at::Tensor D;                         // [H] or [d_ssm] when D_has_hdim
  at::Tensor norm_weight;               // [d_ssm] (state-dict name mixer.norm.weight), when rmsnorm
  int64_t d_inner, d_ssm, d_mlp, H, P, G, N, d_conv, chunk;

 private:
  Mamba2Config cfg_;
  int64_t d_model_;
  std::string h_mixer_in_;
  std::string h_conv_, h_x_, h_gate_, h_dt_, h_B_, h_C_, h_state_, h_y_, h_head_out_, h_pattern_;
};

}  // namespace mechscope
