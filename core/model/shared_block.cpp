// Zamba2's shared transformer block at one layer (see shared_block.h).
#include "core/model/shared_block.h"

#include <ATen/ATen.h>

namespace mechscope {

namespace {

// The MLP's settings: a gated MLP of shared_cfg's activation, without biases.
ModelConfig mlp_config(const ModelConfig& cfg) {
  ModelConfig m = cfg;
  m.mlp_type = "gated";
  m.mlp_activation = cfg.shared.mlp_activation;
  m.mlp_bias = false;
  return m;
}

}  // namespace

SharedBlockImpl::SharedBlockImpl(const ModelConfig& cfg, int64_t layer) {
  const int64_t d = cfg.d_model;
  const std::string p = layer_prefix(layer) + "shared.";
  // Registration order is construction order: the reference initialisation draws in this order.
  norm = register_module("norm", std::make_shared<NormImpl>(2 * d, cfg));
  attn = register_module("attn", std::make_shared<AttentionImpl>(cfg.shared.attn, cfg.norm_epsilon, 2 * d, d, 0, p + "attn."));
  norm2 = register_module("norm2", std::make_shared<NormImpl>(d, cfg));
  mlp = register_module("mlp", std::make_shared<MLPImpl>(mlp_config(cfg), cfg.shared.hidden));
  proj = register_module("proj", make_linear(d, d, false));
  h_in_ = p + "hook_in";
  h_attn_out_ = p + "hook_attn_out";
  h_mlp_out_ = p + "hook_mlp_out";
  h_out_ = p + "hook_out";
}

std::vector<std::string> SharedBlockImpl::hook_names() const {
  std::vector<std::string> names = {h_in_};
  for (const auto& n : attn->hook_names()) names.push_back(n);
  names.insert(names.end(), {h_attn_out_, h_mlp_out_, h_out_});
  return names;
}

HeadGroup SharedBlockImpl::head_group() const {
  HeadGroup g = attn->head_groups().at(0);
  g.scope = "shared";
  g.direct = false;
  return g;
}

std::string SharedBlockImpl::describe() const {
  return "shared block: " + attn->describe() + " on [residual ; embedding], gated MLP hidden " +
         std::to_string(mlp->fc2->weight.size(1));
}

at::Tensor SharedBlockImpl::forward(const at::Tensor& resid, const at::Tensor& embedding, const Partial& part,
                                    HookContext* ctx) {
  const at::Tensor emb = repeat_batch(embedding, resid.size(0)).to(resid.scalar_type());
  at::Tensor x = hook_point(ctx, h_in_, at::cat({resid, emb}, -1));  // [b, Lx, 2 d]
  at::Tensor a = hook_point(ctx, h_attn_out_, attn->forward(norm->forward(x), Partial{part.prefix, nullptr}, ctx));
  at::Tensor f = hook_point(ctx, h_mlp_out_, mlp->forward(norm2->forward(a)));
  return hook_point(ctx, h_out_, proj->forward(f));
}

}  // namespace mechscope
