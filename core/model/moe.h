// A mixture of experts in place of a block's MLP (ModelConfig::moe; Mixtral, Qwen2/Qwen3-MoE, Jamba): a router picks
// each position's top_k experts, whose outputs are summed with the router's probabilities, plus an optional shared
// expert. Must not: know about blocks, mixers or the residual stream.
#pragma once

#include <string>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>

#include "core/model/config.h"
#include "core/model/hooks.h"
#include "core/model/layers.h"

namespace mechscope {

/// Parameters: router.weight [E, d_model]; experts.{e}.fc1 / fc2 (each an MLPImpl of moe.hidden units);
/// shared.fc1 / fc2 and shared_gate.weight [1, d_model] where the config has them. The hook `router_hook` (given at
/// construction, "blocks.{i}.hook_mlp_router") holds the router's logits [batch, pos, E]: what a hook writes there
/// is what the experts are picked and weighted from.
class MoEImpl : public torch::nn::Module {
 public:
  MoEImpl(const ModelConfig& cfg, std::string router_hook);
  at::Tensor forward(const at::Tensor& x /*[..., d_model]*/, HookContext* ctx = nullptr);
  /// The picked experts [..., top_k] (descending probability) and their weights [..., top_k] for router logits
  /// [..., E]: softmax in float32, top_k, renormalised where the config says, in x's dtype.
  std::pair<at::Tensor, at::Tensor> route(const at::Tensor& logits, at::ScalarType dtype) const;
  int64_t num_experts() const { return static_cast<int64_t>(experts->size()); }
  MLPImpl& expert(int64_t e) const { return *experts->ptr<MLPImpl>(e); }

  torch::nn::Linear router{nullptr};
  torch::nn::ModuleList experts{nullptr};
  std::shared_ptr<MLPImpl> shared;   // null without a shared expert
  torch::nn::Linear shared_gate{nullptr};

 private:
  int64_t top_k_;
  bool normalize_;
  std::string router_hook_;
};

}  // namespace mechscope
