// Mamba1 and Mamba2 mixers (SPEC §1) with their SSM hook points (SPEC §2). The expensive hooks
// (per-position states, implicit attention) run only when a HookContext asks for them.
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <ATen/ATen.h>
#include <torch/nn/init.h>

#include "core/model/modules.h"
#include "core/model/scan.h"
#include "kernels/binding/scan_ops.h"

namespace mechscope {

namespace {

std::string ssm_prefix(int64_t layer) { return "blocks." + std::to_string(layer) + ".ssm."; }

// dt initialisation of both Mambas: softplus^-1 of log-uniform values in [dt_min, dt_max], floored.
at::Tensor inverse_softplus_dt(int64_t n, double dt_min, double dt_max, double floor) {
  at::Tensor dt = at::exp(at::rand({n}) * (std::log(dt_max) - std::log(dt_min)) + std::log(dt_min)).clamp_min(floor);
  return dt + at::log(-at::expm1(-dt));
}

// Depthwise causal convolution: conv1d with padding d_conv-1, keeping the first L outputs. x [b, L, C] -> [b, L, C].
// With `window` [b, w, C] (the w <= d_conv-1 inputs before x's first position, in a partial run), those take
// the place of the zero padding.
// The CPU kernel takes it where the fast path applies (float32, width <= 16): in inference it reads the split
// projection where it lies, 2x at::conv1d's speed; in training, forward and backward together made the SSM demos'
// steps 1.1x faster (docs/benchmarks.md). at::conv1d is the reference and serves every other case.
at::Tensor causal_conv(torch::nn::Conv1d& conv, const at::Tensor& x, const at::Tensor& window = {}) {
  const int64_t L = x.size(1), w = window.defined() ? window.size(1) : 0;
  at::Tensor in = w > 0 ? at::cat({window.to(x.scalar_type()), x}, 1) : x;
  if (kernels::fast_scan_applies(in) && in.is_cpu() && conv->weight.size(-1) <= 16 &&
      conv->weight.scalar_type() == at::kFloat)
    return kernels::causal_conv1d(in, conv->weight, conv->bias).narrow(1, w, L);
  return conv->forward(in.transpose(1, 2)).narrow(2, w, L).transpose(1, 2);
}

// A partial run's conv window: `project` maps the earlier run's normed inputs before `start` to the conv's
// inputs there; repeated to the partial run's batch b.
template <class Project>
at::Tensor conv_window(const Partial& part, int64_t d_conv, int64_t b, Project project) {
  const int64_t s = part.start();
  if (s == 0) return {};
  const int64_t w = std::min<int64_t>(s, d_conv - 1);
  return repeat_batch(project(part.prefix->mixer_in.narrow(1, s - w, w)), b);
}

// A partial run may not take hooks that need the positions before its start.
void check_partial_hooks(const Partial& part, HookContext* ctx, const std::string& state, const std::string& pattern) {
  if (part.start() > 0 && ctx && (ctx->wants(state) || ctx->wants(pattern)))
    throw std::logic_error("a partial run (from position " + std::to_string(part.start()) + ") cannot take " +
                           (ctx->wants(state) ? state : pattern) + ": it needs every position");
}

// The state hook: let the hooks see all states, and if a hook replaced any element, continue the recurrence
// from the replaced values (SPEC §2). `states` [b, L, ...] come from a scan; `discretize` gives the decay and
// input of the recurrence (only needed when something was replaced). Returns the states actually used.
template <typename Discretize>
at::Tensor states_through_hook(HookContext* ctx, const std::string& name, at::Tensor states, Discretize discretize,
                               int64_t head_dim_insert /* -1: states already [b, L, H, P, N] */) {
  at::Tensor shown = head_dim_insert >= 0 ? states.unsqueeze(head_dim_insert) : states;
  at::Tensor after = ctx->run(name, shown);
  if (!after.is_same(shown)) {
    at::Tensor replaced = after.ne(shown);
    if (replaced.any().item<bool>()) {
      at::Tensor values = after;
      if (head_dim_insert >= 0) {
        replaced = replaced.squeeze(head_dim_insert);
        values = values.squeeze(head_dim_insert);
      }
      at::Tensor dA, dBx;
      discretize(dA, dBx);
      states = linear_scan_with_replacement(dA.expand_as(dBx), dBx, replaced, values, states);
      ctx->recache(name, head_dim_insert >= 0 ? states.unsqueeze(head_dim_insert) : states);
    }
  }
  return states;
}

// The fast kernels serve a forward when they apply (float32 CPU) and no gradient flows through the states.
bool fast_states_ok(const at::Tensor& x) { return kernels::fast_scan_applies(x) && !at::GradMode::is_enabled(); }

// Per-position states of a layer for the state hook: from the kernel (`fast_states`) when it applies, else the
// step-by-step recurrence; then through the hook (replacements carry forward).
template <typename FastStates, typename Discretize>
at::Tensor hooked_states(HookContext* ctx, const std::string& name, const at::Tensor& x, FastStates fast_states,
                         Discretize discretize, int64_t head_dim_insert) {
  at::Tensor states;
  if (fast_states_ok(x)) {
    states = fast_states();
  } else {
    at::Tensor dA, dBx;
    discretize(dA, dBx);
    states = linear_scan_sequential(dA, dBx);
  }
  return states_through_hook(ctx, name, states, discretize, head_dim_insert);
}

}  // namespace

// ------------------------------------------------------------------ Mamba1

Mamba1Impl::Mamba1Impl(const ModelConfig& cfg, int64_t layer) {
  const Mamba1Config& m = cfg.mamba1;
  d_inner = cfg.mamba1_d_inner();
  d_state = m.d_state;
  d_conv = m.d_conv;
  dt_rank = m.dt_rank;
  in_proj = register_module("in_proj", torch::nn::Linear(torch::nn::LinearOptions(cfg.d_model, 2 * d_inner).bias(m.bias)));
  conv1d = register_module("conv1d", torch::nn::Conv1d(torch::nn::Conv1dOptions(d_inner, d_inner, d_conv)
                                                           .groups(d_inner).padding(d_conv - 1).bias(m.conv_bias)));
  x_proj = register_module("x_proj",
                           torch::nn::Linear(torch::nn::LinearOptions(d_inner, dt_rank + 2 * d_state).bias(false)));
  dt_proj = register_module("dt_proj", torch::nn::Linear(torch::nn::LinearOptions(dt_rank, d_inner).bias(true)));
  {
    at::NoGradGuard no_grad;
    const double std = std::pow(static_cast<double>(dt_rank), -0.5) * m.dt_scale;
    if (m.dt_init == "constant") dt_proj->weight.fill_(std);
    else dt_proj->weight.uniform_(-std, std);
    dt_proj->bias.copy_(inverse_softplus_dt(d_inner, m.dt_min, m.dt_max, m.dt_init_floor));
  }
  A_log = register_parameter("A_log", at::log(at::arange(1, d_state + 1, at::kFloat)).repeat({d_inner, 1}));
  D = register_parameter("D", at::ones({d_inner}));
  out_proj = register_module("out_proj", torch::nn::Linear(torch::nn::LinearOptions(d_inner, cfg.d_model).bias(m.bias)));
  const std::string p = ssm_prefix(layer);
  h_conv_ = p + "hook_conv_out";
  h_x_ = p + "hook_x";
  h_gate_ = p + "hook_gate";
  h_dt_ = p + "hook_dt";
  h_B_ = p + "hook_B";
  h_C_ = p + "hook_C";
  h_state_ = p + "hook_state";
  h_y_ = p + "hook_y";
  h_head_out_ = p + "hook_head_out";
  h_pattern_ = p + "hook_pattern";
}

std::vector<std::string> Mamba1Impl::hook_names() const {
  return {h_conv_, h_x_, h_gate_, h_dt_, h_B_, h_C_, h_state_, h_pattern_, h_y_, h_head_out_};
}

at::Tensor Mamba1Impl::forward(const at::Tensor& hs, HookContext* ctx) { return forward_partial(hs, Partial{}, ctx); }

at::Tensor Mamba1Impl::forward_partial(const at::Tensor& hs, const Partial& part, HookContext* ctx) {
  check_partial_hooks(part, ctx, h_state_, h_pattern_);
  const at::Tensor* rows = part.rows;
  const auto dtype = hs.scalar_type();
  at::Tensor xz = in_proj->forward(hs);                                         // [b, L, 2 d_inner]
  // split, not narrow: one SplitBackward instead of a zero-filled full-size gradient per slice.
  auto xz_parts = xz.split_with_sizes({d_inner, d_inner}, -1);
  at::Tensor x = xz_parts[0];
  at::Tensor z = xz_parts[1];
  at::Tensor window = conv_window(part, d_conv, hs.size(0), [&](const at::Tensor& before) {
    return in_proj->forward(before).split_with_sizes({d_inner, d_inner}, -1)[0];
  });
  x = at::silu(hook_point(ctx, h_conv_, causal_conv(conv1d, x, window)));       // [b, L, d_inner]
  x = hook_point(ctx, h_x_, x.unsqueeze(-1)).squeeze(-1);                       // hook [b, L, H = d_inner, P = 1]
  at::Tensor x_dbl = x_proj->forward(x);                                        // [b, L, dt_rank + 2N]
  auto dbl = x_dbl.split_with_sizes({dt_rank, d_state, d_state}, -1);
  at::Tensor dt = at::softplus(dt_proj->forward(dbl[0]));  // [b, L, d_inner]
  dt = hook_point(ctx, h_dt_, dt);
  at::Tensor B = hook_point(ctx, h_B_, dbl[1].unsqueeze(2)).squeeze(2);         // [b, L, N]
  at::Tensor C = hook_point(ctx, h_C_, dbl[2].unsqueeze(2)).squeeze(2);
  z = hook_point(ctx, h_gate_, z.unsqueeze(-1)).squeeze(-1);

  // The scan runs in float32 whatever the model dtype (as selective_scan_ref does).
  at::Tensor xf = x.to(at::kFloat), dtf = dt.to(at::kFloat), Bf = B.to(at::kFloat), Cf = C.to(at::kFloat);
  at::Tensor A = -at::exp(A_log.to(at::kFloat));                               // [d_inner, N]
  at::Tensor Df = D.to(at::kFloat);
  at::Tensor y;
  if (part.start() > 0) {  // the scan continues from the state the earlier run left before the first position
    at::Tensor h0 = part.prefix->state.select(1, part.start() - 1).to(at::kFloat);  // [b', d_inner, 1, N]
    h0 = repeat_batch(h0.reshape({h0.size(0), d_inner, d_state}), hs.size(0));     // [b, d_inner, N]
    if (kernels::fast_scan_applies(xf) && xf.is_cpu()) {
      y = kernels::selective_scan_from(xf, dtf, A, Bf, Cf, Df, h0);
    } else {
      at::Tensor dA, dBx;
      mamba1_discretize(xf, dtf, A, Bf, dA, dBx);
      y = mamba1_readout(linear_scan_sequential(dA, dBx, h0), xf, Cf, Df);
    }
  } else if (ctx && ctx->wants(h_state_)) {
    at::Tensor states = hooked_states(  // hook [b, L, d_inner, 1, N]
        ctx, h_state_, xf, [&] { return kernels::selective_scan_states(xf, dtf, A, Bf, Cf, Df).second; },
        [&](at::Tensor& dA, at::Tensor& dBx) { mamba1_discretize(xf, dtf, A, Bf, dA, dBx); }, 3);
    y = mamba1_readout(states, xf, Cf, Df);
  } else if (kernels::fast_scan_applies(xf)) {
    y = kernels::selective_scan(xf, dtf, A, Bf, Cf, Df);
  } else {
    y = mamba1_scan(xf, dtf, A, Bf, Cf, Df);
  }
  if (ctx && ctx->wants(h_pattern_)) ctx->run(h_pattern_, mamba1_implicit_attention(dtf, A, Bf, Cf));
  y = hook_point(ctx, h_y_, y.to(dtype).unsqueeze(-1)).squeeze(-1);            // [b, L, d_inner]
  if (rows) {
    y = gather_rows(y, *rows);
    z = gather_rows(z, *rows);
  }
  at::Tensor out = hook_point(ctx, h_head_out_, (y * at::silu(z)).unsqueeze(-1)).squeeze(-1);
  return out_proj->forward(out);
}

// ------------------------------------------------------------------ Mamba2

Mamba2Impl::Mamba2Impl(const ModelConfig& cfg, int64_t layer) : cfg_(cfg.mamba2) {
  const Mamba2Config& m = cfg.mamba2;
  d_inner = cfg.mamba2_d_inner();
  d_ssm = m.d_ssm;
  d_mlp = d_inner - d_ssm;
  P = m.headdim;
  H = d_ssm / P;
  G = m.ngroups;
  N = m.d_state;
  d_conv = m.d_conv;
  chunk = m.chunk_size;
  const int64_t d_in_proj = 2 * d_inner + 2 * G * N + H;
  const int64_t conv_dim = d_ssm + 2 * G * N;
  in_proj = register_module("in_proj", torch::nn::Linear(torch::nn::LinearOptions(cfg.d_model, d_in_proj).bias(m.bias)));
  conv1d = register_module("conv1d", torch::nn::Conv1d(torch::nn::Conv1dOptions(conv_dim, conv_dim, d_conv)
                                                           .groups(conv_dim).padding(d_conv - 1).bias(m.conv_bias)));
  if (m.conv_init > 0) {
    at::NoGradGuard no_grad;
    conv1d->weight.uniform_(-m.conv_init, m.conv_init);
  }
  dt_bias = register_parameter("dt_bias", inverse_softplus_dt(H, m.dt_min, m.dt_max, m.dt_init_floor));
  A_log = register_parameter("A_log", at::log(at::empty({H}).uniform_(m.A_init_min, m.A_init_max)));
  D = register_parameter("D", at::ones({m.D_has_hdim ? d_ssm : H}));
  if (m.rmsnorm) {
    auto norm = register_module("norm", std::make_shared<torch::nn::Module>());
    norm_weight = norm->register_parameter("weight", at::ones({d_ssm}));
  }
  out_proj = register_module("out_proj", torch::nn::Linear(torch::nn::LinearOptions(d_inner, cfg.d_model).bias(m.bias)));
  const std::string p = ssm_prefix(layer);
  h_conv_ = p + "hook_conv_out";
  h_x_ = p + "hook_x";
  h_gate_ = p + "hook_gate";
  h_dt_ = p + "hook_dt";
  h_B_ = p + "hook_B";
  h_C_ = p + "hook_C";
  h_state_ = p + "hook_state";
  h_y_ = p + "hook_y";
  h_head_out_ = p + "hook_head_out";
  h_pattern_ = p + "hook_pattern";
}

std::vector<std::string> Mamba2Impl::hook_names() const {
  return {h_conv_, h_x_, h_gate_, h_dt_, h_B_, h_C_, h_state_, h_pattern_, h_y_, h_head_out_};
}

at::Tensor Mamba2Impl::forward(const at::Tensor& hs, HookContext* ctx) { return forward_partial(hs, Partial{}, ctx); }

at::Tensor Mamba2Impl::forward_partial(const at::Tensor& hs, const Partial& part, HookContext* ctx) {
  check_partial_hooks(part, ctx, h_state_, h_pattern_);
  const at::Tensor* rows = part.rows;
  const auto dtype = hs.scalar_type();
  // Order of in_proj's outputs: [z0 (d_mlp), x0 (d_mlp), z (d_ssm), xBC (d_ssm + 2GN), dt (H)].
  const int64_t gates = 2 * d_mlp + d_ssm;
  at::Tensor zxbcdt, gate_part, scan_part;
  if (rows) {
    // Only the scan's inputs (xBC, dt) are needed at every position; the gates (z0, x0, z) at the rows only.
    gate_part = linear_outputs(in_proj, gather_rows(hs, *rows), 0, gates);            // [b, P, gates]
    scan_part = linear_outputs(in_proj, hs, gates, in_proj->weight.size(0) - gates);  // [b, L, xBC + dt]
  } else {
    zxbcdt = in_proj->forward(hs);
    auto both = zxbcdt.split_with_sizes({gates, zxbcdt.size(-1) - gates}, -1);
    gate_part = both[0];
    scan_part = both[1];
  }
  // split, not narrow: one SplitBackward instead of a zero-filled full-size gradient per slice.
  auto g3 = gate_part.split_with_sizes({d_mlp, d_mlp, d_ssm}, -1);
  auto s2 = scan_part.split_with_sizes({d_ssm + 2 * G * N, H}, -1);
  at::Tensor z0 = g3[0], x0 = g3[1], z = g3[2];
  at::Tensor xBC = s2[0], dt_raw = s2[1];
  at::Tensor window = conv_window(part, d_conv, hs.size(0), [&](const at::Tensor& before) {
    return linear_outputs(in_proj, before, gates, xBC.size(-1));
  });
  xBC = at::silu(hook_point(ctx, h_conv_, causal_conv(conv1d, xBC, window)));    // [b, L, d_ssm + 2GN]
  auto xbc = xBC.split_with_sizes({d_ssm, G * N, G * N}, -1);
  at::Tensor x = hook_point(ctx, h_x_, xbc[0].unflatten(-1, {H, P}));          // [b, L, H, P]
  at::Tensor B = hook_point(ctx, h_B_, xbc[1].unflatten(-1, {G, N}));          // [b, L, G, N]
  at::Tensor C = hook_point(ctx, h_C_, xbc[2].unflatten(-1, {G, N}));
  z = hook_point(ctx, h_gate_, z.unflatten(-1, {H, P}));                         // [b, L, H, P]
  at::Tensor dt = at::softplus(dt_raw + dt_bias);                                // [b, L, H]
  if (cfg_.dt_limit_min > 0.0 || cfg_.dt_limit_max > 0.0)
    dt = dt.clamp(cfg_.dt_limit_min, cfg_.dt_limit_max > 0.0 ? cfg_.dt_limit_max : INFINITY);
  dt = hook_point(ctx, h_dt_, dt);

  at::Tensor xf = x.to(at::kFloat), dtf = dt.to(at::kFloat), Bf = B.to(at::kFloat), Cf = C.to(at::kFloat);
  at::Tensor A = -at::exp(A_log.to(at::kFloat));                                // [H]
  at::Tensor Dk = cfg_.D_has_hdim ? D.to(at::kFloat).view({H, P}) : D.to(at::kFloat);
  at::Tensor y;
  if (ctx && ctx->wants(h_state_)) {
    at::Tensor states = hooked_states(  // hook [b, L, H, P, N]
        ctx, h_state_, xf, [&] { return kernels::ssd_scan_states(xf, dtf, A, Bf, Cf, Dk).second; },
        [&](at::Tensor& dA, at::Tensor& dBx) { mamba2_discretize(xf, dtf, A, Bf, dA, dBx); }, -1);
    y = mamba2_readout(states, xf, Cf, Dk);
  } else if (kernels::fast_scan_applies(xf)) {
    // The fused recurrence beats the chunked SSD's matrix products on CPU, forward (about 3x from 64 to 1024
    // positions) and forward+backward (docs/benchmarks.md); the chunked SSD is the path without it.
    y = kernels::ssd_scan(xf, dtf, A, Bf, Cf, Dk);
  } else {
    y = mamba2_ssd(xf, dtf, A, Bf, Cf, Dk, chunk);
  }
  if (part.start() > 0) {
    // The state entering the first position [b, H, P, N]: decays by exp(A_h sum dt), read out by C.
    const int64_t b = hs.size(0), Lx = hs.size(1);
    at::Tensor h0 = repeat_batch(part.prefix->state.select(1, part.start() - 1).to(at::kFloat), b);
    // Per group one product [L, N] x [N, (H/G) P] (few large products: ATen loops small batched ones per matrix).
    at::Tensor hg = h0.reshape({b, G, (H / G) * P, N});                                 // heads of group g together
    at::Tensor read = at::matmul(Cf.transpose(1, 2), hg.transpose(-1, -2))             // [b, G, L, (H/G) P]
                          .transpose(1, 2).reshape({b, Lx, H, P});
    y = y + at::exp(dtf.cumsum(1) * A).unsqueeze(-1) * read;
  }
  if (ctx && ctx->wants(h_pattern_)) ctx->run(h_pattern_, mamba2_implicit_attention(dtf, A, Bf, Cf, Dk));
  y = hook_point(ctx, h_y_, y.to(dtype));                                       // [b, L, H, P]

  if (rows) y = gather_rows(y, *rows);  // the gates are already at the rows
  at::Tensor yf = y.flatten(2), zf = z.flatten(2);                              // [b, L or P, d_ssm]
  at::Tensor out;
  if (cfg_.rmsnorm) {
    // Gated RMSNorm over groups of d_ssm / G channels, eps 1e-5 (layernorm_gated.rms_norm_ref).
    at::Tensor g = cfg_.norm_before_gate ? yf : yf * at::silu(zf);
    at::Tensor gg = g.to(at::kFloat).unflatten(-1, {G, d_ssm / G});
    at::Tensor normed = (gg * at::rsqrt(gg.pow(2).mean(-1, true) + 1e-5)).flatten(2) * norm_weight.to(at::kFloat);
    if (cfg_.norm_before_gate) normed = normed * at::silu(zf.to(at::kFloat));
    out = normed.to(dtype);
  } else {
    out = yf * at::silu(zf);
  }
  out = hook_point(ctx, h_head_out_, out.unflatten(-1, {H, P})).flatten(2);     // hook [b, L, H, P]
  if (d_mlp > 0) out = at::cat({at::silu(z0) * x0, out}, -1);
  return out_proj->forward(out);
}

}  // namespace mechscope
