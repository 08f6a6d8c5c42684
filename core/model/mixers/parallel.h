// The parallel hybrid mixer (ours, after P1's hybrid_par.py; spec §1): ssm(h) + tanh(beta) * attn(h) on the same
// normed input h, or ssm(h) + attn(h) where parallel_mix is "sum" (Falcon-H1). Parameters mixer.ssm.* (the SSM the
// config names), mixer.attn.* and, for tanh_beta, mixer.beta [1] (initialised to 0). Its heads are the attention's
// (scaled by tanh(beta) on their way to the residual) and then the SSM's.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/model/mixer.h"

namespace mechscope {

class ParallelMixerImpl : public MixerImpl {
 public:
  ParallelMixerImpl(const ModelConfig& cfg, int64_t layer);
  using MixerImpl::forward;
  at::Tensor forward(const at::Tensor& h, const Partial& part, HookContext* ctx) override;
  std::vector<std::string> hook_names() const override;
  std::vector<HeadGroup> head_groups() const override;
  std::vector<std::string> prefix_hooks() const override;
  double prefix_state_bytes(int64_t batch, int64_t len) const override { return ssm->prefix_state_bytes(batch, len); }
  std::map<std::string, std::string> patch_sites() const override { return ssm->patch_sites(); }
  int64_t sweep_floats_per_token(int64_t len, bool states) const override;
  double transient_bytes(int64_t batch, int64_t len) const override;
  double widest_features() const override { return ssm->widest_features(); }
  std::string describe() const override;

  std::shared_ptr<MixerImpl> ssm;   // registered as "ssm"
  std::shared_ptr<MixerImpl> attn;  // registered as "attn"
  at::Tensor beta;                  // [1]; undefined where parallel_mix is "sum"
};

}  // namespace mechscope
