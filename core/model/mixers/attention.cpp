// Multi-head causal self-attention (see attention.h).
#include "core/model/mixers/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <sstream>

#include <ATen/ATen.h>

#include "core/model/layers.h"
#include "kernels/binding/attention_ops.h"

namespace mechscope {

AttentionImpl::AttentionImpl(const ModelConfig& cfg, int64_t layer)
    : AttentionImpl(cfg.attn, cfg.norm_epsilon, cfg.d_model, cfg.d_model, cfg.attention_window(layer),
                    layer_prefix(layer) + "attn.") {}

AttentionImpl::AttentionImpl(const AttnConfig& a, double norm_eps, int64_t d_in, int64_t d_out, int64_t window,
                             const std::string& p)
    : cfg_(a) {
  cfg_.sliding_window = window;  // this layer's window (0 where only other layers slide)
  if (window > 0 && a.sliding_rotary_base > 0) {  // Gemma 3's local layers: their own base, no scaling
    cfg_.rotary_emb_base = a.sliding_rotary_base;
    cfg_.rotary_scaling = RotaryScaling{};
  }
  H = a.num_heads;
  Hkv = a.num_heads_kv > 0 ? a.num_heads_kv : a.num_heads;
  D = a.head_dim > 0 ? a.head_dim : d_in / a.num_heads;
  scale_ = a.softmax_scale > 0 ? a.softmax_scale : 1.0 / std::sqrt(static_cast<double>(D));
  in_proj = register_module("in_proj", make_linear(d_in, (H + 2 * Hkv) * D, a.qkv_proj_bias));
  out_proj = register_module("out_proj", make_linear(H * D, d_out, a.out_proj_bias));
  if (a.qk_norm) {  // Qwen3: RMSNorm over each head's features, before the rotary, with the model's epsilon
    q_norm = register_module("q_norm", RMSNorm(D, norm_eps));
    k_norm = register_module("k_norm", RMSNorm(D, norm_eps));
  } else if (a.qk_norm_whole) {  // OLMoE: over each whole projection
    q_norm = register_module("q_norm", RMSNorm(H * D, norm_eps));
    k_norm = register_module("k_norm", RMSNorm(Hkv * D, norm_eps));
  }
  h_q_ = p + "hook_q";
  h_k_ = p + "hook_k";
  h_v_ = p + "hook_v";
  h_scores_ = p + "hook_attn_scores";
  h_pattern_ = p + "hook_pattern";
  h_z_ = p + "hook_z";
  rotary_tables_ = std::make_shared<RotaryTables>();
}

std::vector<std::string> AttentionImpl::hook_names() const { return {h_q_, h_k_, h_v_, h_scores_, h_pattern_, h_z_}; }

struct AttentionImpl::RotaryTables {
  std::mutex lock;
  at::Tensor cos, sin;  // [L, rd/2], float32 CPU
};

std::pair<at::Tensor, at::Tensor> AttentionImpl::rotary_tables(int64_t L) {
  const int64_t rd = cfg_.rotary_emb_dim;
  if (rd == 0) return {};
  std::lock_guard<std::mutex> guard(rotary_tables_->lock);
  if (!rotary_tables_->cos.defined() || rotary_tables_->cos.size(0) < L) {
    // The very expression apply_rotary evaluates, so the kernel rotates by the same angles.
    auto [c, s] = rotary_angles(rd, cfg_.rotary_emb_base, at::arange(L, at::kFloat).unsqueeze(0), &cfg_.rotary_scaling);
    rotary_tables_->cos = c[0].contiguous();
    rotary_tables_->sin = s[0].contiguous();
  }
  return {rotary_tables_->cos, rotary_tables_->sin};
}

std::vector<HeadGroup> AttentionImpl::head_groups() const {
  HeadGroup g;
  g.scope = "attn";
  g.hook = h_z_;
  g.pattern_hook = h_pattern_;
  g.scores_hook = h_scores_;
  g.heads = H;
  g.head_dim = D;
  g.weight = out_proj->weight.detach();
  if (out_proj->bias.defined()) g.bias = out_proj->bias.detach();
  return {g};
}

int64_t AttentionImpl::sweep_floats_per_token(int64_t len, bool) const { return 4 * H * len + 3 * H * cfg_.head_dim; }

double AttentionImpl::transient_bytes(int64_t batch, int64_t len) const {
  const double B = static_cast<double>(batch), L = static_cast<double>(len), f = 4.0;
  return 3.0 * B * cfg_.num_heads * L * L * f;  // scores, softmax and their product in flight
}

std::string AttentionImpl::describe() const {
  std::ostringstream o;
  o << H << " attention heads (head_dim " << D;
  if (Hkv != H) o << ", " << Hkv << " kv heads";
  if (cfg_.rotary_emb_dim > 0) o << ", rotary " << cfg_.rotary_emb_dim;
  if (cfg_.sliding_window > 0) o << ", sliding window " << cfg_.sliding_window;
  if (cfg_.qk_norm) o << ", q/k RMSNorm";
  if (cfg_.qk_norm_whole) o << ", q/k RMSNorm over the whole projections";
  if (cfg_.clip_qkv > 0) o << ", q/k/v clipped at " << cfg_.clip_qkv;
  if (cfg_.softcap > 0) o << ", scores soft-capped at " << cfg_.softcap;
  if (cfg_.hard_alibi_heads > 0)
    o << ", Hard-ALiBi on heads 0-" << cfg_.hard_alibi_heads - 1 << " (head h sees h positions back)";
  o << ")";
  return o.str();
}

at::Tensor AttentionImpl::beyond_hard_alibi(const at::Tensor& distance) const {
  // Head h < hard_alibi_heads keeps the keys at distance 0..h; the later heads every one (a reach past any length).
  std::vector<int64_t> reach(H, std::numeric_limits<int64_t>::max());
  for (int64_t h = 0; h < cfg_.hard_alibi_heads; ++h) reach[h] = h;
  const at::Tensor r = at::tensor(reach, distance.options()).view({1, H, 1, 1});
  return distance > r;  // [b|1, H, Lq, Lk]
}

void AttentionImpl::normalise_qkv(at::Tensor& q, at::Tensor& k, at::Tensor& v) {
  if (q_norm && cfg_.qk_norm_whole) {
    q = q_norm->forward(q);
    k = k_norm->forward(k);
  } else if (q_norm) {
    q = q_norm->forward(q.unflatten(-1, {H, D})).flatten(-2);
    k = k_norm->forward(k.unflatten(-1, {Hkv, D})).flatten(-2);
  }
  if (cfg_.clip_qkv > 0) {  // OLMoE, after the norms and before the rotary, as transformers orders it
    q = q.clamp(-cfg_.clip_qkv, cfg_.clip_qkv);
    k = k.clamp(-cfg_.clip_qkv, cfg_.clip_qkv);
    v = v.clamp(-cfg_.clip_qkv, cfg_.clip_qkv);
  }
}

at::Tensor AttentionImpl::forward(const at::Tensor& x, const Partial& part, HookContext* ctx) {
  const int64_t b = x.size(0), Lx = x.size(1), s = part.start();
  const at::Tensor* rows = part.rows;
  if (cfg_.rotary_scaling.type == "dynamic" && s + Lx > cfg_.rotary_scaling.original_max_position)
    throw std::invalid_argument("a sequence of " + std::to_string(s + Lx) + " positions is longer than this model's " +
                                std::to_string(cfg_.rotary_scaling.original_max_position) +
                                " (max_position_embeddings): its dynamic NTK rotary changes its base with the length of "
                                "the input there, which MechScope does not compute");
  at::Tensor q, k, v;
  if (!rows) {
    at::Tensor qkv = in_proj->forward(x);  // [b, L, (H + 2 Hkv) D]
    auto parts = qkv.split_with_sizes({H * D, Hkv * D, Hkv * D}, -1);
    q = parts[0], k = parts[1], v = parts[2];
    normalise_qkv(q, k, v);
  } else {  // only the queries at `rows`
    q = linear_outputs(in_proj, gather_rows(x, *rows), 0, H * D);  // [b, P, H D]
    auto kv = linear_outputs(in_proj, x, H * D, 2 * Hkv * D).chunk(2, -1);
    k = kv[0], v = kv[1];
    normalise_qkv(q, k, v);
    const bool hooked = ctx && (ctx->wants(h_q_) || ctx->wants(h_k_) || ctx->wants(h_v_) || ctx->wants(h_scores_) ||
                                ctx->wants(h_pattern_));
    if (s == 0 && !hooked && cfg_.sliding_window == 0 && cfg_.hard_alibi_heads == 0 && cfg_.softcap == 0 &&
        x.device().is_cpu() && x.scalar_type() == at::kFloat) {
      auto [cos, sin] = rotary_tables(Lx);
      at::Tensor z = kernels::rows_attention(q.unflatten(-1, {H, D}), k.unflatten(-1, {Hkv, D}), v.unflatten(-1, {Hkv, D}),
                                             *rows, cos, sin, cfg_.rotary_emb_dim, cfg_.rotary_emb_interleaved, scale_);
      if (z.defined()) return out_proj->forward(hook_point(ctx, h_z_, z).reshape({b, z.size(1), H * D}));
    }
  }
  q = q.unflatten(-1, {H, D});    // [b, Lx or P, H, D]
  k = k.unflatten(-1, {Hkv, D});  // [b, Lx, Hkv, D]
  v = v.unflatten(-1, {Hkv, D});
  // Absolute positions of the queries (null: 0..Lx-1) and of the keys computed here.
  at::Tensor qpos, kpos;
  if (rows) qpos = *rows + s;
  if (s > 0) {
    kpos = at::arange(s, s + Lx, x.options().dtype(at::kLong)).unsqueeze(0);
    if (!rows) qpos = kpos;
  }
  if (cfg_.rotary_emb_dim > 0) {
    q = apply_rotary(q, cfg_.rotary_emb_dim, cfg_.rotary_emb_base, cfg_.rotary_emb_interleaved, qpos.defined() ? &qpos : nullptr,
                     &cfg_.rotary_scaling);
    k = apply_rotary(k, cfg_.rotary_emb_dim, cfg_.rotary_emb_base, cfg_.rotary_emb_interleaved, kpos.defined() ? &kpos : nullptr,
                     &cfg_.rotary_scaling);
  }
  q = hook_point(ctx, h_q_, q);
  k = hook_point(ctx, h_k_, k);
  v = hook_point(ctx, h_v_, v);
  if (s > 0) {  // the keys and values before `start`, as the earlier run computed them
    k = at::cat({repeat_batch(part.prefix->positions(h_k_, 0, s), b).to(k.scalar_type()), k}, 1);
    v = at::cat({repeat_batch(part.prefix->positions(h_v_, 0, s), b).to(v.scalar_type()), v}, 1);
  }
  if (Hkv != H) {
    k = k.repeat_interleave(H / Hkv, 2);
    v = v.repeat_interleave(H / Hkv, 2);
  }
  const int64_t Lk = k.size(1);
  at::Tensor future;  // the keys a query does not see: later ones, and those beyond a sliding window
  const int64_t window = cfg_.sliding_window;
  if (qpos.defined()) {
    const at::Tensor kidx = at::arange(Lk, qpos.options()).view({1, 1, 1, Lk}), qidx = qpos.view({qpos.size(0), 1, -1, 1});
    future = kidx > qidx;  // [b|1, 1, Lq, Lk]
    if (window > 0) future = future.logical_or(kidx <= qidx - window);
    if (cfg_.hard_alibi_heads > 0) future = future.logical_or(beyond_hard_alibi(qidx - kidx));
  } else {
    future = at::ones({Lx, Lx}, x.options().dtype(at::kBool)).triu(1);
    if (window > 0) future = future.logical_or(at::ones({Lx, Lx}, x.options().dtype(at::kBool)).tril(-window));
    if (cfg_.hard_alibi_heads > 0) {
      const at::Tensor idx = at::arange(Lx, x.options().dtype(at::kLong));
      future = future.logical_or(beyond_hard_alibi((idx.view({Lx, 1}) - idx.view({1, Lx})).view({1, 1, Lx, Lx})));
    }
  }
  at::Tensor scores = at::matmul(q.transpose(1, 2), k.permute({0, 2, 3, 1})) * scale_;  // [b, H, Lq, Lk]
  if (cfg_.softcap > 0) scores = at::tanh(scores / cfg_.softcap) * cfg_.softcap;  // Gemma 2, as transformers orders it
  scores = scores.masked_fill(future, -std::numeric_limits<double>::infinity());
  scores = hook_point(ctx, h_scores_, scores);
  // In a half-precision model the softmax runs in float32 (as transformers' eager attention does), then casts back.
  at::Tensor pattern = hook_point(ctx, h_pattern_, scores.scalar_type() == at::kFloat || scores.scalar_type() == at::kDouble
                                                       ? at::softmax(scores, -1)
                                                       : at::softmax(scores, -1, at::kFloat).to(scores.scalar_type()));
  at::Tensor z = at::matmul(pattern, v.transpose(1, 2)).transpose(1, 2);       // [b, Lq, H, D]
  z = hook_point(ctx, h_z_, z);
  return out_proj->forward(z.reshape({b, z.size(1), H * D}));
}

}  // namespace mechscope
