// The Mamba2 mixer (see mamba2.h).
#include "core/model/mixers/mamba2.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <ATen/ATen.h>
#include <torch/nn/init.h>

#include "core/model/mixers/ssm_common.h"

namespace mechscope {

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
  in_proj = register_module("in_proj", make_linear(cfg.d_model, d_in_proj, m.bias));
  conv1d = register_module("conv1d", torch::nn::Conv1d(torch::nn::Conv1dOptions(conv_dim, conv_dim, d_conv)
                                                           .groups(conv_dim).padding(d_conv - 1).bias(m.conv_bias)));
  if (m.conv_init > 0) {
    at::NoGradGuard no_grad;
    conv1d->weight.uniform_(-m.conv_init, m.conv_init);
  }
  dt_bias = register_parameter("dt_bias", ssm::inverse_softplus_dt(H, m.dt_min, m.dt_max, m.dt_init_floor));
  A_log = register_parameter("A_log", at::log(at::empty({H}).uniform_(m.A_init_min, m.A_init_max)));
  D = register_parameter("D", at::ones({m.D_has_hdim ? d_ssm : H}));
  if (m.rmsnorm) {
    auto norm = register_module("norm", std::make_shared<torch::nn::Module>());
    norm_weight = norm->register_parameter("weight", at::ones({d_ssm}));
  }
  out_proj = register_module("out_proj", make_linear(d_inner, cfg.d_model, m.bias));
  const std::string p = layer_prefix(layer) + "ssm.";
  h_mixer_in_ = layer_prefix(layer) + "hook_mixer_in";
  d_model_ = cfg.d_model;
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

std::vector<HeadGroup> Mamba2Impl::head_groups() const {
  HeadGroup g;
  g.scope = "ssm";
  g.hook = h_head_out_;
  g.pattern_hook = h_pattern_;
  g.heads = H;
  g.head_dim = P;
  g.weight = out_proj->weight.detach();
  g.offset = d_mlp;
  return {g};
}

double Mamba2Impl::prefix_state_bytes(int64_t batch, int64_t len) const { return 4.0 * batch * len * (H * P * N); }

std::map<std::string, std::string> Mamba2Impl::patch_sites() const { return {{"conv_out", h_conv_}, {"state", h_state_}}; }

int64_t Mamba2Impl::sweep_floats_per_token(int64_t, bool states) const {
  return 12 * H * 4 + (states ? 3 * d_model_ * 2 * 64 : 0);
}

double Mamba2Impl::transient_bytes(int64_t batch, int64_t len) const {
  const double B = static_cast<double>(batch), L = static_cast<double>(len), f = 4.0;
  const double Hd = static_cast<double>(H), Q = static_cast<double>(std::min<int64_t>(chunk, len));
  return 3.0 * B * Hd * L * Q * f + B * std::ceil(L / Q) * d_ssm * N * f;
}

std::string Mamba2Impl::describe() const {
  return std::to_string(H) + " SSM heads (headdim " + std::to_string(P) + ", d_state " + std::to_string(N) +
         ", groups " + std::to_string(G) + ", chunk " + std::to_string(chunk) + ")";
}

at::Tensor Mamba2Impl::forward(const at::Tensor& hs, const Partial& part, HookContext* ctx) {
  ssm::check_partial_hooks(part, ctx, h_state_, h_pattern_);
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
  at::Tensor window = ssm::conv_window(part, h_mixer_in_, d_conv, hs.size(0), [&](const at::Tensor& before) {
    return linear_outputs(in_proj, before, gates, xBC.size(-1));
  });
  xBC = at::silu(hook_point(ctx, h_conv_, ssm::causal_conv(conv1d, xBC, window)));    // [b, L, d_ssm + 2GN]
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
  at::Tensor h0;  // a partial run's state entering its first position [b, H, P, N]
  if (part.start() > 0)
    h0 = repeat_batch(part.prefix->positions(h_state_, part.start() - 1, 1).select(1, 0).to(at::kFloat), hs.size(0));
  const bool hooked = ctx && ctx->wants(h_state_);
  if (hooked) {
    at::Tensor states = ssm::hooked_states(  // hook [b, L, H, P, N], from h0 in a partial run
        ctx, h_state_, xf, [&] { return kernels::ssd_scan_states(xf, dtf, A, Bf, Cf, Dk).second; },
        [&](at::Tensor& dA, at::Tensor& dBx) { mamba2_discretize(xf, dtf, A, Bf, dA, dBx); }, -1, h0);
    y = mamba2_readout(states, xf, Cf, Dk);
  } else if (kernels::fast_scan_applies(xf)) {
    // The fused recurrence beats the chunked SSD's matrix products on CPU, forward (about 3x from 64 to 1024
    // positions) and forward+backward (docs/benchmarks.md); the chunked SSD is the path without it.
    y = kernels::ssd_scan(xf, dtf, A, Bf, Cf, Dk);
  } else {
    y = mamba2_ssd(xf, dtf, A, Bf, Cf, Dk, chunk);
  }
  if (h0.defined() && !hooked) {
    // The state entering the first position decays by exp(A_h sum dt) and is read out by C.
    const int64_t b = hs.size(0), Lx = hs.size(1);
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
    // Gated RMSNorm over groups of d_ssm / G channels, eps norm_eps (layernorm_gated.rms_norm_ref: 1e-5; HF Mamba2's
    // MambaRMSNormGated: layer_norm_epsilon).
    at::Tensor g = cfg_.norm_before_gate ? yf : yf * at::silu(zf);
    at::Tensor gg = g.to(at::kFloat).unflatten(-1, {G, d_ssm / G});
    at::Tensor normed = (gg * at::rsqrt(gg.pow(2).mean(-1, true) + cfg_.norm_eps)).flatten(2) * norm_weight.to(at::kFloat);
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
