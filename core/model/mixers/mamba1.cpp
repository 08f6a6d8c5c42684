// The Mamba1 mixer (see mamba1.h).
#include "core/model/mixers/mamba1.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <ATen/ATen.h>
#include <torch/nn/init.h>

#include "core/model/mixers/ssm_common.h"

namespace mechscope {

Mamba1Impl::Mamba1Impl(const ModelConfig& cfg, int64_t layer) {
  const Mamba1Config& m = cfg.mamba1;
  d_inner = cfg.mamba1_d_inner();
  d_state = m.d_state;
  d_conv = m.d_conv;
  dt_rank = m.dt_rank;
  bcdt_rms_eps_ = m.bcdt_rms_eps;
  in_proj = register_module("in_proj", make_linear(cfg.d_model, 2 * d_inner, m.bias));
  conv1d = register_module("conv1d", torch::nn::Conv1d(torch::nn::Conv1dOptions(d_inner, d_inner, d_conv)
                                                           .groups(d_inner).padding(d_conv - 1).bias(m.conv_bias)));
  x_proj = register_module("x_proj",
                           make_linear(d_inner, dt_rank + 2 * d_state, false));
  dt_proj = register_module("dt_proj", make_linear(dt_rank, d_inner, true));
  {
    at::NoGradGuard no_grad;
    const double std = std::pow(static_cast<double>(dt_rank), -0.5) * m.dt_scale;
    if (m.dt_init == "constant") dt_proj->weight.fill_(std);
    else dt_proj->weight.uniform_(-std, std);
    dt_proj->bias.copy_(ssm::inverse_softplus_dt(d_inner, m.dt_min, m.dt_max, m.dt_init_floor));
  }
  A_log = register_parameter("A_log", at::log(at::arange(1, d_state + 1, at::kFloat)).repeat({d_inner, 1}));
  D = register_parameter("D", at::ones({d_inner}));
  if (m.bcdt_norm_weights) {  // Jamba's dt_layernorm, b_layernorm, c_layernorm (ones at initialisation)
    bcdt_norm_weights_ = {register_parameter("dt_norm_weight", at::ones({dt_rank})),
                          register_parameter("B_norm_weight", at::ones({d_state})),
                          register_parameter("C_norm_weight", at::ones({d_state}))};
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

std::vector<std::string> Mamba1Impl::hook_names() const {
  return {h_conv_, h_x_, h_gate_, h_dt_, h_B_, h_C_, h_state_, h_pattern_, h_y_, h_head_out_};
}

std::vector<HeadGroup> Mamba1Impl::head_groups() const {
  HeadGroup g;
  g.scope = "ssm";
  g.hook = h_head_out_;
  g.pattern_hook = h_pattern_;
  g.heads = d_inner;
  g.head_dim = 1;
  g.channels = true;
  g.weight = out_proj->weight.detach();
  return {g};
}

double Mamba1Impl::prefix_state_bytes(int64_t batch, int64_t len) const { return 4.0 * batch * len * (d_inner * d_state); }

std::map<std::string, std::string> Mamba1Impl::patch_sites() const { return {{"conv_out", h_conv_}, {"state", h_state_}}; }

int64_t Mamba1Impl::sweep_floats_per_token(int64_t, bool states) const {
  return 12 * d_inner * 4 + (states ? 3 * d_model_ * 2 * 64 : 0);
}

double Mamba1Impl::transient_bytes(int64_t batch, int64_t len) const {
  const double B = static_cast<double>(batch), L = static_cast<double>(len), f = 4.0;
  return 2.0 * B * L * d_inner * d_state * f;
}

std::string Mamba1Impl::describe() const {
  return std::to_string(d_inner) + " channels as heads (d_state " + std::to_string(d_state) + ", d_conv " +
         std::to_string(d_conv) + ", dt_rank " + std::to_string(dt_rank) +
         (bcdt_rms_eps_ > 0 ? (bcdt_norm_weights_.empty() ? ", RMS-normed dt, B, C" : ", weighted RMS-normed dt, B, C") : "") + ")";
}

at::Tensor Mamba1Impl::forward(const at::Tensor& hs, const Partial& part, HookContext* ctx) {
  ssm::check_partial_hooks(part, ctx, h_state_, h_pattern_);
  const at::Tensor* rows = part.rows;
  const auto dtype = hs.scalar_type();
  at::Tensor xz = in_proj->forward(hs);                                         // [b, L, 2 d_inner]
  // split, not narrow: one SplitBackward instead of a zero-filled full-size gradient per slice.
  auto xz_parts = xz.split_with_sizes({d_inner, d_inner}, -1);
  at::Tensor x = xz_parts[0];
  at::Tensor z = xz_parts[1];
  at::Tensor window = ssm::conv_window(part, h_mixer_in_, d_conv, hs.size(0), [&](const at::Tensor& before) {
    return in_proj->forward(before).split_with_sizes({d_inner, d_inner}, -1)[0];
  });
  x = at::silu(hook_point(ctx, h_conv_, ssm::causal_conv(conv1d, x, window)));       // [b, L, d_inner]
  x = hook_point(ctx, h_x_, x.unsqueeze(-1)).squeeze(-1);                       // hook [b, L, H = d_inner, P = 1]
  at::Tensor x_dbl = x_proj->forward(x);                                        // [b, L, dt_rank + 2N]
  auto dbl = x_dbl.split_with_sizes({dt_rank, d_state, d_state}, -1);
  if (bcdt_rms_eps_ > 0) {  // Falcon-Mamba: RMS norms without weights of the low-rank dt, B and C; Jamba's weighted
    auto rms = [&](const at::Tensor& v) {
      at::Tensor f = v.to(at::kFloat);
      return (f * at::rsqrt(f.pow(2).mean(-1, true) + bcdt_rms_eps_)).to(v.scalar_type());
    };
    for (size_t i = 0; i < dbl.size(); ++i) {
      dbl[i] = rms(dbl[i]);
      if (!bcdt_norm_weights_.empty()) dbl[i] = bcdt_norm_weights_[i] * dbl[i];
    }
  }
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
  at::Tensor h0;  // a partial run's state entering its first position [b, d_inner, N]
  if (part.start() > 0) {
    h0 = part.prefix->positions(h_state_, part.start() - 1, 1).select(1, 0).to(at::kFloat);  // [b', d_inner, 1, N]
    h0 = repeat_batch(h0.reshape({h0.size(0), d_inner, d_state}), hs.size(0));
  }
  if (ctx && ctx->wants(h_state_)) {
    at::Tensor states = ssm::hooked_states(  // hook [b, L, d_inner, 1, N], from h0 in a partial run
        ctx, h_state_, xf, [&] { return kernels::selective_scan_states(xf, dtf, A, Bf, Cf, Df).second; },
        [&](at::Tensor& dA, at::Tensor& dBx) { mamba1_discretize(xf, dtf, A, Bf, dA, dBx); }, 3, h0);
    y = mamba1_readout(states, xf, Cf, Df);
  } else if (h0.defined()) {  // the scan continues from the state the earlier run left before the first position
    if (kernels::fast_scan_applies(xf) && xf.is_cpu()) {
      y = kernels::selective_scan_from(xf, dtf, A, Bf, Cf, Df, h0);
    } else {
      at::Tensor dA, dBx;
      mamba1_discretize(xf, dtf, A, Bf, dA, dBx);
      y = mamba1_readout(linear_scan_sequential(dA, dBx, h0), xf, Cf, Df);
    }
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

}  // namespace mechscope
