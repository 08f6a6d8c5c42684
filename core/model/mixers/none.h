// The absent mixer of a block that is only an MLP (ModelConfig::mlp_only_layer_idx; Nemotron-H's "-" layers): no
// parameters, no hooks, no heads. BlockImpl skips its norm and mixer altogether; this object only answers the
// questions every layer is asked (heads, sites, sizes, `info`'s line). Must not: be run (forward throws).
#pragma once

#include <string>
#include <vector>

#include "core/model/mixer.h"

namespace mechscope {

class NoMixerImpl : public MixerImpl {
 public:
  using MixerImpl::forward;
  at::Tensor forward(const at::Tensor& x, const Partial& part, HookContext* ctx) override;
  std::vector<std::string> hook_names() const override { return {}; }
  std::vector<HeadGroup> head_groups() const override { return {}; }
  std::vector<std::string> prefix_hooks() const override { return {}; }
  int64_t sweep_floats_per_token(int64_t, bool) const override { return 0; }
  double transient_bytes(int64_t, int64_t) const override { return 0; }
  double widest_features() const override { return 0; }
  std::string describe() const override { return "no mixer (the block is only its MLP)"; }
};

}  // namespace mechscope
