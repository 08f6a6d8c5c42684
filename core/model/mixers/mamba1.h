// The Mamba1 mixer (mamba_ssm modules/mamba_simple.py; spec §1 "Mamba1"): in_proj -> [x, z], causal conv, x_proj ->
// [dt, B, C], the selective scan, y * silu(z) -> out_proj. Its heads are its d_inner channels (head size 1). Hooks
// under blocks.{i}.ssm. (spec §2); the expensive ones (hook_state, hook_pattern) run only when asked.
#pragma once

#include <string>
#include <vector>

#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include "core/model/mixer.h"

namespace mechscope {

class Mamba1Impl : public MixerImpl {
 public:
  Mamba1Impl(const ModelConfig& cfg, int64_t layer);
  using MixerImpl::forward;
  /// x [batch, pos, d_model] -> [batch, pos, d_model]. A partial run (Partial): the positions from part.start()
  /// on, the conv window and the scan's entering state from the prefix (hook_mixer_in, hook_state); with rows, the
  /// output there only ([batch, P, d_model]; the scan still runs over every position computed, and hook_head_out
  /// sees [batch, P, ...]). hook_state and hook_pattern cannot be taken in a run from a start > 0.
  at::Tensor forward(const at::Tensor& x, const Partial& part, HookContext* ctx) override;
  std::vector<std::string> hook_names() const override;
  std::vector<HeadGroup> head_groups() const override;
  std::vector<std::string> prefix_hooks() const override { return {h_mixer_in_, h_state_}; }
  double prefix_state_bytes(int64_t batch, int64_t len) const override;
  std::map<std::string, std::string> patch_sites() const override;
  int64_t sweep_floats_per_token(int64_t len, bool states) const override;
  double transient_bytes(int64_t batch, int64_t len) const override;
  double widest_features() const override { return 2.0 * d_inner; }
  std::string describe() const override;

  torch::nn::Linear in_proj{nullptr};   // [2 d_inner, d_model]
  torch::nn::Conv1d conv1d{nullptr};    // weight [d_inner, 1, d_conv], bias [d_inner]
  torch::nn::Linear x_proj{nullptr};    // [dt_rank + 2N, d_inner]
  torch::nn::Linear dt_proj{nullptr};   // [d_inner, dt_rank] + bias
  torch::nn::Linear out_proj{nullptr};  // [d_model, d_inner]
  at::Tensor A_log;                     // [d_inner, N]
  at::Tensor D;                         // [d_inner]
  int64_t d_inner, d_state, d_conv, dt_rank;

 private:
  int64_t d_model_;
  double bcdt_rms_eps_ = 0;  // ssm_cfg.bcdt_rms_eps: > 0 normalises dt (low rank), B and C (Falcon-Mamba)
  std::vector<at::Tensor> bcdt_norm_weights_;  // ssm_cfg.bcdt_norm_weights: dt, B, C norms' weights (Jamba); or none
  std::string h_mixer_in_;
  std::string h_conv_, h_x_, h_gate_, h_dt_, h_B_, h_C_, h_state_, h_y_, h_head_out_, h_pattern_;
};

}  // namespace mechscope
