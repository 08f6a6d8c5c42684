// Norms, the gated MLP, rotary embeddings and the row helpers of partial runs (see layers.h).
#include "core/model/layers.h"

#include <algorithm>
#include <cmath>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "kernels/binding/scan_ops.h"

namespace mechscope {

// ------------------------------------------------------------------ construction

namespace {
thread_local bool skip_parameter_init = false;
}  // namespace

SkipParameterInit::SkipParameterInit() : previous_(skip_parameter_init) { skip_parameter_init = true; }
SkipParameterInit::~SkipParameterInit() { skip_parameter_init = previous_; }
bool SkipParameterInit::active() { return skip_parameter_init; }

// Uninitialised: the module is built at a 1 x 1 size (its own draws are a few numbers, under the caller's RngGuard),
// then its parameters take their full shapes in place (the registered tensors stay the same objects) and its options
// the real sizes.
torch::nn::Linear make_linear(int64_t in, int64_t out, bool bias) {
  if (!skip_parameter_init) return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
  torch::nn::Linear lin(torch::nn::LinearOptions(1, 1).bias(bias));
  lin->weight.set_data(at::empty({out, in}));
  if (bias) lin->bias.set_data(at::empty({out}));
  lin->options = torch::nn::LinearOptions(in, out).bias(bias);
  return lin;
}

torch::nn::Embedding make_embedding(int64_t n, int64_t d) {
  if (!skip_parameter_init) return torch::nn::Embedding(n, d);
  torch::nn::Embedding emb(1, 1);
  emb->weight.set_data(at::empty({n, d}));
  emb->options = torch::nn::EmbeddingOptions(n, d);
  return emb;
}

// ------------------------------------------------------------------ rows

at::Tensor gather_rows(const at::Tensor& t, const at::Tensor& rows) {
  return t.index({at::arange(t.size(0), rows.options()).unsqueeze(1), rows});
}

at::Tensor linear_outputs(const torch::nn::Linear& lin, const at::Tensor& x, int64_t from, int64_t n) {
  const at::Tensor& bias = lin->bias;
  return at::linear(x, lin->weight.narrow(0, from, n), bias.defined() ? bias.narrow(0, from, n) : at::Tensor());
}

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

MLPImpl::MLPImpl(const ModelConfig& cfg) : MLPImpl(cfg, cfg.mlp_hidden()) {}

MLPImpl::MLPImpl(const ModelConfig& cfg, int64_t hidden) : gated(cfg.mlp_type == "gated") {
  fc1 = register_module("fc1", make_linear(cfg.d_model, (gated ? 2 : 1) * hidden, cfg.mlp_bias));
  fc2 = register_module("fc2", make_linear(hidden, cfg.d_model, cfg.mlp_bias));
  const std::string& a = cfg.mlp_activation;
  act_ = a == "gelu"        ? Act::Gelu
         : a == "gelu_tanh" ? Act::GeluTanh
         : a == "relu"      ? Act::Relu
         : a == "relu2"     ? Act::Relu2
                            : Act::Silu;
}

at::Tensor MLPImpl::act(const at::Tensor& x) const {
  switch (act_) {
    case Act::Gelu: return at::gelu(x);
    case Act::GeluTanh: return at::gelu(x, "tanh");
    case Act::Relu: return at::relu(x);
    case Act::Relu2: return at::square(at::relu(x));  // Nemotron-H's squared ReLU
    case Act::Silu: break;
  }
  return at::silu(x);
}

at::Tensor MLPImpl::forward(const at::Tensor& x) {
  at::Tensor y = fc1->forward(x);
  if (!gated) return fc2->forward(act(y));
  auto halves = y.chunk(2, -1);
  return fc2->forward(halves[0] * act(halves[1]));
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

}  // namespace

std::pair<at::Tensor, at::Tensor> rotary_angles(int64_t rd, double base, const at::Tensor& pos,
                                                const RotaryScaling* scaling) {
  at::Tensor inv_freq = 1.0 / at::pow(base, at::arange(0, rd, 2, pos.options()) / static_cast<double>(rd));  // [rd/2]
  if (scaling && scaling->type == "linear") {
    inv_freq = inv_freq / scaling->factor;
  } else if (scaling && scaling->type == "llama3") {
    // transformers' _compute_llama3_parameters, step by step.
    const double old_len = static_cast<double>(scaling->original_max_position), factor = scaling->factor;
    const double low = scaling->low_freq_factor, high = scaling->high_freq_factor;
    const double low_wavelen = old_len / low, high_wavelen = old_len / high;
    at::Tensor wavelen = 2 * M_PI / inv_freq;
    at::Tensor scaled = at::where(wavelen > low_wavelen, inv_freq / factor, inv_freq);
    at::Tensor smooth = (old_len / wavelen - low) / (high - low);
    at::Tensor smoothed = (1 - smooth) * scaled / factor + smooth * scaled;
    at::Tensor medium = at::logical_not(wavelen < high_wavelen).logical_and(at::logical_not(wavelen > low_wavelen));
    inv_freq = at::where(medium, smoothed, scaled);
  } else if (scaling && scaling->type == "yarn") {
    // transformers' _compute_yarn_parameters: the correction range in double, the ramp and the blend in float32.
    const double d = static_cast<double>(rd), b = base, old_len = static_cast<double>(scaling->original_max_position);
    auto correction_dim = [&](double rotations) { return d * std::log(old_len / (rotations * 2 * M_PI)) / (2 * std::log(b)); };
    double low = correction_dim(scaling->beta_fast), high = correction_dim(scaling->beta_slow);
    if (scaling->truncate) low = std::floor(low), high = std::ceil(high);
    low = std::max(low, 0.0), high = std::min(high, d - 1);
    if (low == high) high += 0.001;  // as transformers: no division by zero
    at::Tensor ramp = ((at::arange(rd / 2, pos.options()) - low) / (high - low)).clamp(0, 1);
    at::Tensor extrapolation = 1 - ramp;
    at::Tensor pos_freqs = at::pow(base, at::arange(0, rd, 2, pos.options()) / d);
    at::Tensor interpolated = 1.0 / (scaling->factor * pos_freqs);
    inv_freq = interpolated * (1 - extrapolation) + (1.0 / pos_freqs) * extrapolation;
  }
  at::Tensor freqs = pos.unsqueeze(-1) * inv_freq;
  if (scaling && scaling->type == "yarn" && scaling->attention_factor != 1.0)
    return {freqs.cos() * scaling->attention_factor, freqs.sin() * scaling->attention_factor};
  return {freqs.cos(), freqs.sin()};
}

at::Tensor apply_rotary(const at::Tensor& x, int64_t rd, double base, bool interleaved, const at::Tensor* positions,
                        const RotaryScaling* scaling) {
  const int64_t L = x.size(1), half = rd / 2;
  auto f32 = x.options().dtype(at::kFloat);
  at::Tensor pos = positions ? positions->to(at::kFloat) : at::arange(L, f32).unsqueeze(0);  // [1 or b, L]
  auto [c, s] = rotary_angles(rd, base, pos, scaling);
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

}  // namespace mechscope
