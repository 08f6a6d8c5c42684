// The residual block (see block.h).
#include "core/model/block.h"

#include <ATen/ATen.h>

namespace mechscope {

BlockImpl::BlockImpl(const ModelConfig& cfg, int64_t layer)
    : kind(cfg.mixer_kind(layer)), parallel_(cfg.parallel_residual && cfg.layer_has_mlp(layer)) {
  // Registration order is construction order: the reference initialisation draws in this order.
  if (cfg.shared_layer(layer)) shared = register_module("shared", std::make_shared<SharedBlockImpl>(cfg, layer));
  if (kind != MixerKind::None) {
    norm = register_module("norm", std::make_shared<NormImpl>(cfg.d_model, cfg));
    mixer_ = register_module("mixer", make_mixer(cfg, layer));
    if (cfg.post_norms) post_mixer_norm = register_module("post_mixer_norm", std::make_shared<NormImpl>(cfg.d_model, cfg));
  } else {  // only an MLP: no norm, no mixer parameters (NoMixerImpl answers the per-layer questions)
    mixer_ = make_mixer(cfg, layer);
  }
  const std::string p = layer_prefix(layer);
  if (cfg.layer_has_mlp(layer)) {
    norm2 = register_module("norm2", std::make_shared<NormImpl>(cfg.d_model, cfg));
    if (cfg.moe_layer(layer)) {
      h_router_ = p + "hook_mlp_router";
      moe = register_module("mlp", std::make_shared<MoEImpl>(cfg, h_router_));
    } else {
      mlp = register_module("mlp", std::make_shared<MLPImpl>(cfg));
    }
    if (cfg.post_norms) post_mlp_norm = register_module("post_mlp_norm", std::make_shared<NormImpl>(cfg.d_model, cfg));
  }
  h_resid_pre_ = p + "hook_resid_pre";
  h_mixer_in_ = p + "hook_mixer_in";
  h_mixer_out_ = p + "hook_mixer_out";
  h_resid_mid_ = p + "hook_resid_mid";
  h_mlp_in_ = p + "hook_mlp_in";
  h_mlp_out_ = p + "hook_mlp_out";
  h_resid_post_ = p + "hook_resid_post";
}

std::vector<std::string> BlockImpl::hook_names() const {
  std::vector<std::string> names = {h_resid_pre_};
  if (shared)
    for (const auto& n : shared->hook_names()) names.push_back(n);
  if (kind != MixerKind::None) {  // a block without a mixer has no mixer hooks and no sum between mixer and MLP
    names.push_back(h_mixer_in_);
    std::vector<std::string> mixer_names = mixer_->hook_names();
    names.insert(names.end(), mixer_names.begin(), mixer_names.end());
    names.push_back(h_mixer_out_);
    if (has_mlp() && !parallel_) names.push_back(h_resid_mid_);
  }
  if (has_mlp()) names.push_back(h_mlp_in_);
  if (moe) names.push_back(h_router_);
  if (has_mlp()) names.push_back(h_mlp_out_);
  names.push_back(h_resid_post_);
  return names;
}

std::vector<std::string> BlockImpl::prefix_hooks() const {
  std::vector<std::string> names = mixer_->prefix_hooks();
  if (shared) {
    for (const auto& n : shared->prefix_hooks()) names.push_back(n);
    names.push_back("hook_embed");
  }
  return names;
}

std::vector<HeadGroup> BlockImpl::head_groups() const {
  std::vector<HeadGroup> groups = mixer_->head_groups();
  if (post_mixer_norm) {  // the heads' sum is normalised before it joins the residual: no linear map of one head
    int64_t columns = 0;
    for (const auto& g : groups) columns += g.heads * g.head_dim;
    for (auto& g : groups) {
      g.direct = false;
      // Linear again with the norm's scale frozen, where the heads are all of out_proj's input (attention).
      g.post_norm = post_mixer_norm->is_rms() && groups.size() == 1 && g.offset == 0 && columns == g.weight.size(1);
    }
  }
  if (shared) groups.push_back(shared->head_group());
  return groups;
}

at::Tensor BlockImpl::shared_embedding(const Partial& part, int64_t len) const {
  if (part.embedding) return *part.embedding;
  if (part.prefix && part.prefix->tensors.count("hook_embed"))
    return part.prefix->positions("hook_embed", part.start(), len);
  throw std::logic_error(h_resid_pre_ + ": this layer's shared block reads the token embedding (hook_embed), which "
                         "this run did not pass");
}

std::string BlockImpl::site_hook(const std::string& site) const {
  const std::map<std::string, const std::string*> own = {
      {"resid_pre", &h_resid_pre_}, {"resid_mid", &h_resid_mid_}, {"resid_post", &h_resid_post_},
      {"mixer_in", &h_mixer_in_},   {"mixer_out", &h_mixer_out_}, {"mlp_in", &h_mlp_in_},
      {"mlp_out", &h_mlp_out_}};
  auto it = own.find(site);
  if (kind == MixerKind::None && (site == "mixer_in" || site == "mixer_out" || site == "resid_mid")) return {};
  if (it != own.end()) {
    const bool mlp_site = site == "resid_mid" || site == "mlp_in" || site == "mlp_out";
    if (site == "resid_mid" && parallel_) return {};  // no residual between the mixer and the MLP
    return mlp_site && !has_mlp() ? std::string() : *it->second;
  }
  auto sites = mixer_->patch_sites();
  auto m = sites.find(site);
  return m == sites.end() ? std::string() : m->second;
}

at::Tensor BlockImpl::forward(const at::Tensor& resid_in, HookContext* ctx) {
  return forward_partial(resid_in, Partial{}, ctx);
}

at::Tensor BlockImpl::forward_rows(const at::Tensor& resid, const at::Tensor& rows, HookContext* ctx) {
  return forward_partial(resid, Partial{nullptr, &rows}, ctx);
}

at::Tensor BlockImpl::forward_partial(const at::Tensor& resid_in, const Partial& part, HookContext* ctx) {
  at::Tensor resid = hook_point(ctx, h_resid_pre_, resid_in);
  if (kind == MixerKind::None) return forward_after_mixer(part.rows ? gather_rows(resid, *part.rows) : resid, ctx);
  at::Tensor mixer_input = resid;
  if (shared) mixer_input = resid + shared->forward(resid, shared_embedding(part, resid.size(1)), part, ctx);
  at::Tensor h = hook_point(ctx, h_mixer_in_, norm->forward(mixer_input));
  at::Tensor m = mixer_->forward(h, part, ctx);
  if (post_mixer_norm) m = post_mixer_norm->forward(m);
  m = hook_point(ctx, h_mixer_out_, m);
  const at::Tensor at_rows = part.rows ? gather_rows(resid, *part.rows) : resid;
  if (!parallel_) return forward_after_mixer(at_rows + m, ctx);
  // Parallel: the MLP reads the block's input, not the mixer's sum. Added in the order GPT-NeoX adds:
  // mlp_out + mixer_out + resid_pre.
  at::Tensor h2 = hook_point(ctx, h_mlp_in_, norm2->forward(at_rows));
  at::Tensor f = hook_point(ctx, h_mlp_out_, feed_forward(h2, ctx));
  return hook_point(ctx, h_resid_post_, f + m + at_rows);
}

at::Tensor BlockImpl::forward_after_mixer(const at::Tensor& resid_mid, HookContext* ctx) {
  at::Tensor resid = resid_mid;
  if (has_mlp() && !parallel_) {
    if (kind != MixerKind::None) resid = hook_point(ctx, h_resid_mid_, resid);  // without a mixer: resid_pre itself
    at::Tensor h2 = hook_point(ctx, h_mlp_in_, norm2->forward(resid));
    resid = resid + hook_point(ctx, h_mlp_out_, feed_forward(h2, ctx));
  }
  return hook_point(ctx, h_resid_post_, resid);
}

at::Tensor BlockImpl::feed_forward(const at::Tensor& h2, HookContext* ctx) {
  at::Tensor f = moe ? moe->forward(h2, ctx) : mlp->forward(h2);
  return post_mlp_norm ? post_mlp_norm->forward(f) : f;
}

}  // namespace mechscope
