// The pieces every block and mixer shares: RMSNorm/LayerNorm, the gated MLP, rotary embeddings, and the row
// helpers of partial runs (a run at chosen rows, or from a position on). Must not: know about mixers, blocks or
// hooks.
#pragma once

#include <memory>
#include <string>

#include <torch/nn/module.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include "core/model/config.h"

namespace mechscope {

/// While one lives on this thread, make_linear and make_embedding build their parameters uninitialised, at full
/// shape: no random draws and no memory touched (the allocator's pages are committed only when written), for a
/// model whose every parameter is replaced next (model_from_weights). Without one they draw as LibTorch's
/// modules do, in construction order (the reference initialisation).
class SkipParameterInit {
 public:
  SkipParameterInit();
  ~SkipParameterInit();
  SkipParameterInit(const SkipParameterInit&) = delete;
  SkipParameterInit& operator=(const SkipParameterInit&) = delete;
  static bool active();

 private:
  bool previous_;
};
/// torch::nn::Linear(in -> out, bias), uninitialised under SkipParameterInit.
torch::nn::Linear make_linear(int64_t in, int64_t out, bool bias);
/// torch::nn::Embedding(n, d), uninitialised under SkipParameterInit.
torch::nn::Embedding make_embedding(int64_t n, int64_t d);

/// t [batch, L, ...] at rows [batch, P] (positions per example) -> [batch, P, ...].
at::Tensor gather_rows(const at::Tensor& t, const at::Tensor& rows);
/// Outputs [from, from + n) of a linear layer only: x W[from:from+n]^T (+ bias there).
at::Tensor linear_outputs(const torch::nn::Linear& lin, const at::Tensor& x, int64_t from, int64_t n);
/// t [b', ...] repeated along the batch to [b, ...], b = repeat * b' (the order of stacked variants: variant-major).
at::Tensor repeat_batch(const at::Tensor& t, int64_t b);

/// RMSNorm (mamba_ssm's triton RMSNorm): x * rsqrt(mean(x^2) + eps) * weight. Parameter: weight [d].
class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t d, double eps);
  at::Tensor forward(const at::Tensor& x);
  at::Tensor weight;  // [d]
  double eps;
};
TORCH_MODULE(RMSNorm);

/// LayerNorm or RMSNorm by config, with the reference's input cast to the weight's dtype.
/// Parameters `weight` [d] (and `bias` [d] for LayerNorm), registered under this module's own name.
class NormImpl : public torch::nn::Module {
 public:
  NormImpl(int64_t d, const ModelConfig& cfg);
  at::Tensor forward(const at::Tensor& x /*[..., d]*/);
  at::Tensor weight() const;
  at::Tensor bias() const;  ///< undefined for RMSNorm
  bool is_rms() const { return static_cast<bool>(rms_); }
  double eps() const;

 private:
  torch::nn::LayerNorm ln_{nullptr};
  RMSNorm rms_{nullptr};
};

/// The MLP of a block, by config (mlp_type, mlp_activation, mlp_bias). Gated (mamba_ssm modules/mlp.py's
/// GatedMLP, and Llama's SwiGLU): fc1 -> [value | gate] -> value * act(gate) -> fc2, fc1 [2*hidden, d_model].
/// Plain (GPT-2, GPT-NeoX): fc2(act(fc1(x))), fc1 [hidden, d_model]. fc2 [d_model, hidden] either way.
class MLPImpl : public torch::nn::Module {
 public:
  explicit MLPImpl(const ModelConfig& cfg);
  /// The same with `hidden` units exactly (not rounded): an expert of a mixture (core/model/moe.h).
  MLPImpl(const ModelConfig& cfg, int64_t hidden);
  at::Tensor forward(const at::Tensor& x /*[..., d_model]*/);
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
  bool gated = true;

 private:
  at::Tensor act(const at::Tensor& x) const;
  enum class Act { Silu, Gelu, GeluTanh, Relu, Relu2 } act_ = Act::Silu;
};

/// Rotary embedding (flash_attn RotaryEmbedding, rotate-half or interleaved) of the first `rotary_dim` features of
/// each head of x [batch, pos, heads, D]. `positions` [1 or batch, pos] (optional): the position of each row when
/// x holds gathered rows or a suffix, not 0..pos-1.
at::Tensor apply_rotary(const at::Tensor& x, int64_t rotary_dim, double base, bool interleaved,
                        const at::Tensor* positions = nullptr, const RotaryScaling* scaling = nullptr);
/// cos and sin [P0, L, rotary_dim / 2] of the angles position * base^(-2i / rotary_dim) of float32 positions
/// [P0, L]: the very expression apply_rotary evaluates (the fused attention kernel rotates by these tables).
/// With `scaling` (type set), the inverse frequencies are scaled as RotaryScaling says, in float32 as transformers does.
std::pair<at::Tensor, at::Tensor> rotary_angles(int64_t rotary_dim, double base, const at::Tensor& positions,
                                                const RotaryScaling* scaling = nullptr);

}  // namespace mechscope
