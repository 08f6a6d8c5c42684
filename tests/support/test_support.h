// Helpers shared by the tests: small configs, tensor comparison, scratch folders.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "core/model/config.h"

namespace mechscope::test {

/// A small model config of a preset with overrides (JSON merge patch).
/// A preset at test size (d_model 32, vocabulary 37, small heads and states), with `overrides` merged last. Besides the
/// presets, variants of imported families' blocks: "llama-like" (transformer with q/k norms, a window on layer
/// 1 only, a GeGLU MLP, an embedding multiplier), "falcon-h1" (the parallel hybrid summed, a Mamba2 of width 48 in
/// d_inner 64, its norm before the gate, an MLP), "falcon-mamba" (Mamba1 with RMS-normed dt, B and C),
/// "mixtral-like" and "jamba-like" (mixtures of experts), "nemotron-like" (MLP-only layers), "zamba-like"
/// (Mamba2 with Zamba2's shared block feeding the mixer at the odd layers) and "gemma2-like" (norms after the
/// attention and the MLP, soft-capped scores and logits).
ModelConfig small_config(const std::string& preset, const nlohmann::json& overrides = nlohmann::json::object());
/// Every preset, then the family variants small_config knows.
std::vector<std::string> test_presets();
/// max |a - b| as a double.
double max_abs_diff(const at::Tensor& a, const at::Tensor& b);
/// Gradients of sum(op(inputs) * w) with respect to fresh leaf copies of `inputs`, in input order.
std::vector<at::Tensor> grads_of(const std::function<at::Tensor(const std::vector<at::Tensor>&)>& op,
                                 const std::vector<at::Tensor>& inputs, const at::Tensor& w);
/// A fresh scratch folder under the build tree (or /tmp), unique per test.
std::string scratch_dir();
/// Random token ids [batch, L] in [0, vocab).
at::Tensor random_tokens(int64_t batch, int64_t L, int64_t vocab, uint64_t seed);

}  // namespace mechscope::test
