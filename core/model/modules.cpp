// Norms, GatedMLP, rotary, MHA, the parallel mixer and the residual block (SPEC §1, §2).
#include "core/model/modules.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <mutex>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/nn/init.h>

#include "kernels/binding/attention_ops.h"
#include "kernels/binding/scan_ops.h"

namespace mechscope {

static std::string layer_prefix(int64_t layer) { return "blocks." + std::to_string(layer) + "."; }

// ------------------------------------------------------------------ norms

RMSNormImpl::RMSNormImpl(int64_t d, double eps_) : eps(eps_) {
  weight = register_parameter("weight", at::ones({d}));
}

at::Tensor RMSNormImpl::forward(const at::Tensor& x) {
  at::Tensor xf = x.to(weight.scalar_type());
  return xf * at::rsqrt(xf.pow(2).mean(-1, true) + eps) * weight;
}

NormImpl::NormImpl(int64_t d, const ModelConfig& cfg) {
  // Registered directly under this module's name (norm.weight, norm.bias), as in the reference.
  if (cfg.rms_norm) {
    rms_ = RMSNorm(d, cfg.norm_epsilon);
    register_parameter("weight", rms_->weight);
  } else {
    ln_ = torch::nn::LayerNorm(torch::nn::LayerNormOptions({d}).eps(cfg.norm_epsilon));
    register_parameter("weight", ln_->weight);
    register_parameter("bias", ln_->bias);
  }
}

at::Tensor NormImpl::forward(const at::Tensor& x) {
  if (rms_) return rms_->forward(x);
  return ln_->forward(x.to(ln_->weight.scalar_type()));
}

at::Tensor NormImpl::weight() const { return rms_ ? rms_->weight : ln_->weight; }
at::Tensor NormImpl::bias() const { return rms_ ? at::Tensor() : ln_->bias; }
double NormImpl::eps() const { return rms_ ? rms_->eps : ln_->options.eps(); }

// ------------------------------------------------------------------ MLP

GatedMLPImpl::GatedMLPImpl(int64_t d_model, int64_t hidden) {
  fc1 = register_module("fc1", torch::nn::Linear(torch::nn::LinearOptions(d_model, 2 * hidden).bias(false)));
  fc2 = register_module("fc2", torch::nn::Linear(torch::nn::LinearOptions(hidden, d_model).bias(false)));
}

at::Tensor GatedMLPImpl::forward(const at::Tensor& x) {
  at::Tensor y = fc1->forward(x);
  auto halves = y.chunk(2, -1);
  return fc2->forward(halves[0] * at::silu(halves[1]));
}

// ------------------------------------------------------------------ rotary

namespace {

// apply_rotary without a gradient, on float32 CPU x [b, L, H, D] with a unit last stride: one pass writing the
// rotated copy, instead of the seven full-size ops (multiplies, sums, cats) of the expression below, which were
// a fifth of the attention demo's forward. Same products and sums per element (ATen's path rounds each product
// too: no fused multiply-add here), so the values match the expression's; Model tests compare both paths.
__attribute__((optimize("fp-contract=off"))) at::Tensor rotary_cpu_inference(const at::Tensor& x, const at::Tensor& cos,
                                                                              const at::Tensor& sin, int64_t rd,
                                                                              bool interleaved) {
  const int64_t b = x.size(0), L = x.size(1), H = x.size(2), D = x.size(3), half = rd / 2;
  const int64_t P0 = cos.size(0);  // 1: positions shared by the batch; b: per example
  at::Tensor out = at::empty({b, L, H, D}, x.options());
  const float* src = x.data_ptr<float>();
  const float* cp = cos.data_ptr<float>();
  const float* sp = sin.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  const int64_t sb = x.stride(0), sl = x.stride(1), sh = x.stride(2);
  at::parallel_for(0, b * L, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, H * D)), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t e = i / L, t = i % L;
      const float* c = cp + ((P0 == 1 ? 0 : e) * L + t) * half;
      const float* s = sp + ((P0 == 1 ? 0 : e) * L + t) * half;
      for (int64_t h = 0; h < H; ++h) {
        const float* __restrict xi = src + e * sb + t * sl + h * sh;
        float* __restrict o = dst + (i * H + h) * D;  // a fresh tensor: never overlaps the input
        if (!interleaved) {
          // Vectorised (without the pragma GCC's -O2 cost model left it scalar: 1 ns an element); lane-wise
          // products and sums round exactly as the scalar ones, with contraction off.
#pragma omp simd
          for (int64_t j = 0; j < half; ++j) {
            const float x1 = xi[j], x2 = xi[half + j];
            o[j] = x1 * c[j] - x2 * s[j];
            o[half + j] = x2 * c[j] + x1 * s[j];
          }
        } else {
#pragma omp simd
          for (int64_t j = 0; j < half; ++j) {
            const float x1 = xi[2 * j], x2 = xi[2 * j + 1];
            o[2 * j] = x1 * c[j] - x2 * s[j];
            o[2 * j + 1] = x2 * c[j] + x1 * s[j];
          }
        }
        for (int64_t j = rd; j < D; ++j) o[j] = xi[j];
      }
    }
  });
  return out;
}

// The angles position * base^(-2i / rd), i < rd / 2, of float32 positions [P0, L]: their cos and sin [P0, L, rd/2].
std::pair<at::Tensor, at::Tensor> rotary_angles(int64_t rd, double base, const at::Tensor& pos) {
  at::Tensor inv_freq = 1.0 / at::pow(base, at::arange(0, rd, 2, pos.options()) / static_cast<double>(rd));  // [rd/2]
  at::Tensor freqs = pos.unsqueeze(-1) * inv_freq;
  return {freqs.cos(), freqs.sin()};
}

}  // namespace

at::Tensor apply_rotary(const at::Tensor& x, int64_t rd, double base, bool interleaved, const at::Tensor* positions) {
  const int64_t L = x.size(1), half = rd / 2;
  auto f32 = x.options().dtype(at::kFloat);
  at::Tensor pos = positions ? positions->to(at::kFloat) : at::arange(L, f32).unsqueeze(0);  // [1 or b, L]
  auto [c, s] = rotary_angles(rd, base, pos);
  at::Tensor cos = c.to(x.scalar_type()).view({pos.size(0), L, 1, half});
  at::Tensor sin = s.to(x.scalar_type()).view({pos.size(0), L, 1, half});
  // split/chunk rather than narrow: one SplitBackward (a cat) instead of a zero-filled full-size gradient per
  // slice (SliceBackward was a quarter of a training step's time on the attention demo).
  const int64_t rest = x.size(-1) - rd;
  if (x.dim() == 4 && x.device().is_cpu() && x.scalar_type() == at::kFloat && x.stride(-1) == 1 &&
      !kernels::wants_grad({x}))
    return rotary_cpu_inference(x, cos.contiguous(), sin.contiguous(), rd, interleaved);
  std::vector<at::Tensor> parts = rest > 0 ? x.split_with_sizes({rd, rest}, -1) : std::vector<at::Tensor>{x};
  const at::Tensor& xr = parts[0];
  at::Tensor out;
  if (!interleaved) {
    auto halves = xr.chunk(2, -1);
    const at::Tensor &x1 = halves[0], &x2 = halves[1];
    out = at::cat({x1 * cos - x2 * sin, x2 * cos + x1 * sin}, -1);
  } else {
    at::Tensor pairs = xr.unflatten(-1, {half, 2});
    at::Tensor x1 = pairs.select(-1, 0), x2 = pairs.select(-1, 1);
    out = at::stack({x1 * cos - x2 * sin, x2 * cos + x1 * sin}, -1).flatten(-2);
  }
  if (rest == 0) return out;
  return at::cat({out, parts[1]}, -1);
}

// ------------------------------------------------------------------ attention

AttentionImpl::AttentionImpl(const ModelConfig& cfg, int64_t layer) : cfg_(cfg.attn) {
  H = cfg.attn.num_heads;
  Hkv = cfg.attn_heads_kv();
  D = cfg.attn_head_dim(cfg.d_model);
  scale_ = cfg.attn.softmax_scale > 0 ? cfg.attn.softmax_scale : 1.0 / std::sqrt(static_cast<double>(D));
  in_proj = register_module("in_proj", torch::nn::Linear(torch::nn::LinearOptions(cfg.d_model, (H + 2 * Hkv) * D)
                                                             .bias(cfg.attn.qkv_proj_bias)));
  out_proj = register_module("out_proj",
                             torch::nn::Linear(torch::nn::LinearOptions(H * D, cfg.d_model).bias(cfg.attn.out_proj_bias)));
  const std::string p = layer_prefix(layer) + "attn.";
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
    auto [c, s] = rotary_angles(rd, cfg_.rotary_emb_base, at::arange(L, at::kFloat).unsqueeze(0));
    rotary_tables_->cos = c[0].contiguous();
    rotary_tables_->sin = s[0].contiguous();
  }
  return {rotary_tables_->cos, rotary_tables_->sin};
}

at::Tensor gather_rows(const at::Tensor& t, const at::Tensor& rows) {
  return t.index({at::arange(t.size(0), rows.options()).unsqueeze(1), rows});
}

at::Tensor linear_outputs(const torch::nn::Linear& lin, const at::Tensor& x, int64_t from, int64_t n) {
  const at::Tensor& bias = lin->bias;
  return at::linear(x, lin->weight.narrow(0, from, n), bias.defined() ? bias.narrow(0, from, n) : at::Tensor());
}

at::Tensor AttentionImpl::forward(const at::Tensor& x, HookContext* ctx) { return forward_partial(x, Partial{}, ctx); }

// Repeats a prefix tensor of batch b' along the batch to b = repeat * b' (variants stacked as [repeat, b']).
at::Tensor repeat_batch(const at::Tensor& t, int64_t b) {
  const int64_t reps = b / t.size(0);
  if (reps * t.size(0) != b)
    throw std::invalid_argument("partial run: batch " + std::to_string(b) + " is not a multiple of the prefix's " +
                                std::to_string(t.size(0)));
  if (reps == 1) return t;
  auto shape = t.sizes().vec();
  shape.insert(shape.begin(), reps);
  auto flat = t.sizes().vec();
  flat[0] = b;
  return t.unsqueeze(0).expand(shape).reshape(flat);
}

at::Tensor AttentionImpl::forward_partial(const at::Tensor& x, const Partial& part, HookContext* ctx) {
  const int64_t b = x.size(0), Lx = x.size(1), s = part.start();
  const at::Tensor* rows = part.rows;
  at::Tensor q, k, v;
  if (!rows) {
    at::Tensor qkv = in_proj->forward(x);  // [b, L, (H + 2 Hkv) D]
    auto parts = qkv.split_with_sizes({H * D, Hkv * D, Hkv * D}, -1);
    q = parts[0], k = parts[1], v = parts[2];
  } else {  // only the queries at `rows`
    q = linear_outputs(in_proj, gather_rows(x, *rows), 0, H * D);  // [b, P, H D]
    auto kv = linear_outputs(in_proj, x, H * D, 2 * Hkv * D).chunk(2, -1);
    k = kv[0], v = kv[1];
    const bool hooked = ctx && (ctx->wants(h_q_) || ctx->wants(h_k_) || ctx->wants(h_v_) || ctx->wants(h_scores_) ||
                                ctx->wants(h_pattern_));
    if (s == 0 && !hooked && x.device().is_cpu() && x.scalar_type() == at::kFloat) {
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
    q = apply_rotary(q, cfg_.rotary_emb_dim, cfg_.rotary_emb_base, cfg_.rotary_emb_interleaved, qpos.defined() ? &qpos : nullptr);
    k = apply_rotary(k, cfg_.rotary_emb_dim, cfg_.rotary_emb_base, cfg_.rotary_emb_interleaved, kpos.defined() ? &kpos : nullptr);
  }
  q = hook_point(ctx, h_q_, q);
  k = hook_point(ctx, h_k_, k);
  v = hook_point(ctx, h_v_, v);
  if (s > 0) {  // the keys and values before `start`, as the earlier run computed them
    k = at::cat({repeat_batch(part.prefix->k.narrow(1, 0, s), b).to(k.scalar_type()), k}, 1);
    v = at::cat({repeat_batch(part.prefix->v.narrow(1, 0, s), b).to(v.scalar_type()), v}, 1);
  }
  if (Hkv != H) {
    k = k.repeat_interleave(H / Hkv, 2);
    v = v.repeat_interleave(H / Hkv, 2);
  }
  const int64_t Lk = k.size(1);
  at::Tensor future;
  if (qpos.defined()) {
    future = at::arange(Lk, qpos.options()).view({1, 1, 1, Lk}) > qpos.view({qpos.size(0), 1, -1, 1});  // [b|1, 1, Lq, Lk]
  } else {
    future = at::ones({Lx, Lx}, x.options().dtype(at::kBool)).triu(1);
  }
  at::Tensor scores = at::matmul(q.transpose(1, 2), k.permute({0, 2, 3, 1})) * scale_;  // [b, H, Lq, Lk]
  scores = scores.masked_fill(future, -std::numeric_limits<double>::infinity());
  scores = hook_point(ctx, h_scores_, scores);
  at::Tensor pattern = hook_point(ctx, h_pattern_, at::softmax(scores, -1));
  at::Tensor z = at::matmul(pattern, v.transpose(1, 2)).transpose(1, 2);       // [b, Lq, H, D]
  z = hook_point(ctx, h_z_, z);
  return out_proj->forward(z.reshape({b, z.size(1), H * D}));
}

// ------------------------------------------------------------------ parallel mixer

ParallelMixerImpl::ParallelMixerImpl(const ModelConfig& cfg, int64_t layer) {
  if (cfg.ssm_layer == "Mamba2") mamba2 = register_module("ssm", std::make_shared<Mamba2Impl>(cfg, layer));
  else mamba1 = register_module("ssm", std::make_shared<Mamba1Impl>(cfg, layer));
  attn = register_module("attn", std::make_shared<AttentionImpl>(cfg, layer));
  beta = register_parameter("beta", at::zeros({1}));
}

at::Tensor ParallelMixerImpl::forward(const at::Tensor& h, HookContext* ctx) {
  at::Tensor s = mamba2 ? mamba2->forward(h, ctx) : mamba1->forward(h, ctx);
  return s + at::tanh(beta) * attn->forward(h, ctx);
}

at::Tensor ParallelMixerImpl::forward_partial(const at::Tensor& h, const Partial& part, HookContext* ctx) {
  at::Tensor s = mamba2 ? mamba2->forward_partial(h, part, ctx) : mamba1->forward_partial(h, part, ctx);
  return s + at::tanh(beta) * attn->forward_partial(h, part, ctx);
}

std::vector<std::string> ParallelMixerImpl::hook_names() const {
  auto names = attn->hook_names();
  auto more = mamba2 ? mamba2->hook_names() : mamba1->hook_names();
  names.insert(names.end(), more.begin(), more.end());
  return names;
}

// ------------------------------------------------------------------ block

BlockImpl::BlockImpl(const ModelConfig& cfg, int64_t layer) : kind(cfg.mixer_kind(layer)) {
  norm = register_module("norm", std::make_shared<NormImpl>(cfg.d_model, cfg));
  switch (kind) {
    case MixerKind::Attention: attn = register_module("mixer", std::make_shared<AttentionImpl>(cfg, layer)); break;
    case MixerKind::Mamba1: mamba1 = register_module("mixer", std::make_shared<Mamba1Impl>(cfg, layer)); break;
    case MixerKind::Mamba2: mamba2 = register_module("mixer", std::make_shared<Mamba2Impl>(cfg, layer)); break;
    case MixerKind::Parallel: parallel = register_module("mixer", std::make_shared<ParallelMixerImpl>(cfg, layer)); break;
  }
  if (cfg.has_mlp()) {
    norm2 = register_module("norm2", std::make_shared<NormImpl>(cfg.d_model, cfg));
    mlp = register_module("mlp", std::make_shared<GatedMLPImpl>(cfg.d_model, cfg.mlp_hidden()));
  }
  const std::string p = layer_prefix(layer);
  h_resid_pre_ = p + "hook_resid_pre";
  h_mixer_in_ = p + "hook_mixer_in";
  h_mixer_out_ = p + "hook_mixer_out";
  h_resid_mid_ = p + "hook_resid_mid";
  h_mlp_in_ = p + "hook_mlp_in";
  h_mlp_out_ = p + "hook_mlp_out";
  h_resid_post_ = p + "hook_resid_post";
}

std::vector<std::string> BlockImpl::hook_names() const {
  std::vector<std::string> names = {h_resid_pre_, h_mixer_in_};
  std::vector<std::string> mixer_names = attn ? attn->hook_names()
                                         : mamba1 ? mamba1->hook_names()
                                         : mamba2 ? mamba2->hook_names()
                                                  : parallel->hook_names();
  names.insert(names.end(), mixer_names.begin(), mixer_names.end());
  names.push_back(h_mixer_out_);
  if (mlp) names.insert(names.end(), {h_resid_mid_, h_mlp_in_, h_mlp_out_});
  names.push_back(h_resid_post_);
  return names;
}

at::Tensor BlockImpl::forward(const at::Tensor& resid_in, HookContext* ctx) {
  at::Tensor resid = hook_point(ctx, h_resid_pre_, resid_in);
  at::Tensor h = hook_point(ctx, h_mixer_in_, norm->forward(resid));
  at::Tensor m = attn ? attn->forward(h, ctx)
               : mamba1 ? mamba1->forward(h, ctx)
               : mamba2 ? mamba2->forward(h, ctx)
                        : parallel->forward(h, ctx);
  m = hook_point(ctx, h_mixer_out_, m);
  return forward_after_mixer(resid + m, ctx);
}

at::Tensor BlockImpl::forward_rows(const at::Tensor& resid, const at::Tensor& rows, HookContext* ctx) {
  return forward_partial(resid, Partial{nullptr, &rows}, ctx);
}

at::Tensor BlockImpl::forward_partial(const at::Tensor& resid_in, const Partial& part, HookContext* ctx) {
  at::Tensor resid = hook_point(ctx, h_resid_pre_, resid_in);
  at::Tensor h = hook_point(ctx, h_mixer_in_, norm->forward(resid));
  at::Tensor m = attn ? attn->forward_partial(h, part, ctx)
               : mamba1 ? mamba1->forward_partial(h, part, ctx)
               : mamba2 ? mamba2->forward_partial(h, part, ctx)
                        : parallel->forward_partial(h, part, ctx);
  m = hook_point(ctx, h_mixer_out_, m);
  return forward_after_mixer((part.rows ? gather_rows(resid, *part.rows) : resid) + m, ctx);
}

at::Tensor BlockImpl::forward_after_mixer(const at::Tensor& resid_mid, HookContext* ctx) {
  at::Tensor resid = resid_mid;
  if (mlp) {
    resid = hook_point(ctx, h_resid_mid_, resid);
    at::Tensor h2 = hook_point(ctx, h_mlp_in_, norm2->forward(resid));
    resid = resid + hook_point(ctx, h_mlp_out_, mlp->forward(h2));
  }
  return hook_point(ctx, h_resid_post_, resid);
}

}  // namespace mechscope
