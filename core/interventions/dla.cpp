// Direct logit attribution (see dla.h).
#include "core/interventions/dla.h"

#include <algorithm>

#include <ATen/ATen.h>

#include "core/interventions/heads.h"
#include "core/model/model.h"

namespace mechscope {

namespace {

bool has_hook(const LanguageModel& m, const std::string& name) {
  const auto& names = m.hook_names();
  return std::find(names.begin(), names.end(), name) != names.end();
}

}  // namespace

DlaResult direct_logit_attribution(LanguageModel& model, const at::Tensor& tokens, const Readout& readout) {
  at::NoGradGuard no_grad;
  model.check_tokens(tokens);
  const int64_t n = model.n_layers();
  std::vector<std::string> names = {"hook_embed"};
  if (has_hook(model, "hook_pos_embed")) names.push_back("hook_pos_embed");
  for (int64_t l = 0; l < n; ++l) {
    if (has_hook(model, layer_prefix(l) + "hook_mixer_out")) names.push_back(layer_prefix(l) + "hook_mixer_out");
    if (has_hook(model, layer_prefix(l) + "hook_mlp_out")) names.push_back(layer_prefix(l) + "hook_mlp_out");
    for (const auto& g : model.head_groups(l))
      if (g.direct || g.post_norm) names.push_back(g.hook);
  }
  names.push_back(layer_prefix(n - 1) + "hook_resid_post");
  auto [logits, cache] = model.run_with_cache(tokens, HookSelection::of(names));
  auto read = [&](const std::string& name) { return gather_readout(cache.at(name), readout).to(at::kFloat); };

  NormImpl* norm = &model.final_norm();
  at::Tensor x = read(layer_prefix(n - 1) + "hook_resid_post");  // [R, d]
  at::Tensor U = model.unembedding_matrix().detach().to(at::kFloat).index_select(0, readout.target);  // [R, d]
  at::Tensor dir = U * norm->weight().detach().to(at::kFloat);  // [R, d]
  at::Tensor scale;
  if (norm->is_rms()) scale = at::rsqrt(x.pow(2).mean(-1, true) + norm->eps());
  else scale = at::rsqrt(x.var(-1, false, true) + norm->eps());
  auto project = [&](at::Tensor c) {  // [R, d] -> mean over readout of its logit share
    if (!norm->is_rms()) c = c - c.mean(-1, true);
    return ((c * scale) * dir).sum(-1).mean().item<double>();
  };

  DlaResult res;
  std::vector<double> vals;
  auto add = [&](const std::string& label, double v) {
    res.components.push_back(label);
    vals.push_back(v);
  };
  add("embed", project(read("hook_embed")));
  if (has_hook(model, "hook_pos_embed")) add("pos_embed", project(read("hook_pos_embed")));
  for (int64_t l = 0; l < n; ++l) {
    if (!has_hook(model, layer_prefix(l) + "hook_mixer_out")) {  // a block that is only its MLP
      add("L" + std::to_string(l) + ".mlp", project(read(layer_prefix(l) + "hook_mlp_out")));
      continue;
    }
    at::Tensor rest = read(layer_prefix(l) + "hook_mixer_out");
    const BlockImpl& block = model.block(l);
    // Heads behind a post-mixer RMSNorm (Gemma 2's attention, HeadGroup::post_norm): with the norm's scale frozen at
    // its value in this run, norm(o) = w * o / rms(o) splits into w * (head h's share of o) / rms(o), which sum to it
    // exactly (o: the heads' shares and out_proj's bias, which stays in the rest).
    auto frozen_scale = [&](const HeadGroup& g) {
      at::Tensor z = read(g.hook);
      at::Tensor o = g.bias.defined() ? g.bias.to(at::kFloat).expand_as(rest).clone() : at::zeros_like(rest);
      for (int64_t h = 0; h < g.heads; ++h) o = o + g.project(h, z.select(1, h)).to(at::kFloat);
      return block.post_mixer_norm->weight().detach().to(at::kFloat) *
             at::rsqrt(o.pow(2).mean(-1, true) + block.post_mixer_norm->eps());
    };
    for (const auto& proj : model.head_groups(l)) {
      // A shared block's heads have no direct path: they reach the residual only through the mixer they feed,
      // whose output (mixer_rest here) holds their effect.
      if (!proj.direct && !proj.post_norm) continue;
      const at::Tensor frozen = proj.post_norm ? frozen_scale(proj) : at::Tensor();
      at::Tensor z = read(proj.hook);  // [R, H, D]
      for (int64_t h = 0; h < proj.heads; ++h) {
        at::Tensor c = proj.project(h, z.select(1, h)).to(at::kFloat);
        if (frozen.defined()) c = c * frozen;
        rest = rest - c;
        add(HeadRef{l, proj.scope, h}.label(), project(c));
      }
    }
    add("L" + std::to_string(l) + ".mixer_rest", project(rest));
    if (has_hook(model, layer_prefix(l) + "hook_mlp_out")) add("L" + std::to_string(l) + ".mlp", project(read(layer_prefix(l) + "hook_mlp_out")));
  }
  if (!norm->is_rms()) add("norm_bias", (U * norm->bias().detach().to(at::kFloat)).sum(-1).mean().item<double>());
  res.value = at::tensor(vals, at::kDouble).to(at::kFloat);
  // The logit before a final soft-cap (Gemma 2), which is what the components sum to: the cap is not linear.
  const at::Tensor read_logits = model.config().final_logit_softcap > 0
                                     ? model.unembed(read(layer_prefix(n - 1) + "hook_resid_post").to(logits.scalar_type()), nullptr, false)
                                     : gather_readout(logits, readout);
  res.answer_logit = read_logits.gather(-1, readout.target.unsqueeze(-1)).mean().item<double>();
  return res;
}

}  // namespace mechscope
