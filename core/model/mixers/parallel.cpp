// The parallel hybrid mixer (see parallel.h).
#include "core/model/mixers/parallel.h"

#include <algorithm>

#include <ATen/ATen.h>

namespace mechscope {

ParallelMixerImpl::ParallelMixerImpl(const ModelConfig& cfg, int64_t layer) {
  ssm = register_module("ssm", make_mixer(cfg.ssm_kind(), cfg, layer));  // built first: the reference's RNG order
  attn = register_module("attn", make_mixer(MixerKind::Attention, cfg, layer));
  if (cfg.parallel_mix == "tanh_beta") beta = register_parameter("beta", at::zeros({1}));
}

at::Tensor ParallelMixerImpl::forward(const at::Tensor& h, const Partial& part, HookContext* ctx) {
  at::Tensor s = ssm->forward(h, part, ctx);
  if (!beta.defined()) return s + attn->forward(h, part, ctx);  // parallel_mix "sum"
  return s + at::tanh(beta) * attn->forward(h, part, ctx);
}

std::vector<std::string> ParallelMixerImpl::hook_names() const {
  auto names = attn->hook_names();
  auto more = ssm->hook_names();
  names.insert(names.end(), more.begin(), more.end());
  return names;
}

std::vector<HeadGroup> ParallelMixerImpl::head_groups() const {
  std::vector<HeadGroup> groups = attn->head_groups();
  if (beta.defined())
    for (auto& g : groups) g.scale = at::tanh(beta.detach());
  for (auto& g : ssm->head_groups()) groups.push_back(g);
  return groups;
}

std::vector<std::string> ParallelMixerImpl::prefix_hooks() const {
  auto names = attn->prefix_hooks();
  auto more = ssm->prefix_hooks();
  names.insert(names.end(), more.begin(), more.end());
  return names;
}

int64_t ParallelMixerImpl::sweep_floats_per_token(int64_t len, bool states) const {
  return attn->sweep_floats_per_token(len, states) + ssm->sweep_floats_per_token(len, states);
}

double ParallelMixerImpl::transient_bytes(int64_t batch, int64_t len) const {
  return std::max(attn->transient_bytes(batch, len), ssm->transient_bytes(batch, len));
}

std::string ParallelMixerImpl::describe() const {
  return ssm->describe() + (beta.defined() ? " + tanh(beta) * " : " + ") + attn->describe();
}

}  // namespace mechscope
