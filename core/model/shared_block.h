// Zamba2's shared transformer block at one layer (shared_cfg, SharedBlockConfig in config.h; docs/spec.md "Shared
// blocks"): [resid_pre ; token embedding] -> RMSNorm -> attention (2 d_model in, d_model out) -> RMSNorm -> gated
// MLP -> proj, whose output the block adds to its mixer's input. Parameters under layers.{i}.shared., hooks under
// blocks.{i}.shared. (the attention's under blocks.{i}.shared.attn.). Must not: know about the mixer it feeds.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>

#include "core/model/config.h"
#include "core/model/hooks.h"
#include "core/model/layers.h"
#include "core/model/mixer.h"
#include "core/model/mixers/attention.h"

namespace mechscope {

class SharedBlockImpl : public torch::nn::Module {
 public:
  SharedBlockImpl(const ModelConfig& cfg, int64_t layer);
  /// resid and embedding [b, Lx, d_model] (the embedding of batch b' dividing b, repeated to b) -> the block's
  /// output [b, Lx, d_model] at every position of the input; a partial run (part.prefix) takes the attention's
  /// keys and values before the start from the prefix. part.rows is not used: the mixer it feeds reads every position.
  at::Tensor forward(const at::Tensor& resid, const at::Tensor& embedding, const Partial& part, HookContext* ctx);
  /// Every hook point, in forward order.
  std::vector<std::string> hook_names() const;
  /// Its attention's heads, scope "shared" (labels L{i}.shared.H{h}), not direct (HeadGroup::direct).
  HeadGroup head_group() const;
  std::vector<std::string> prefix_hooks() const { return attn->prefix_hooks(); }
  std::string describe() const;

  std::shared_ptr<NormImpl> norm, norm2;
  std::shared_ptr<AttentionImpl> attn;
  std::shared_ptr<MLPImpl> mlp;
  torch::nn::Linear proj{nullptr};

 private:
  std::string h_in_, h_attn_out_, h_mlp_out_, h_out_;
};

}  // namespace mechscope
