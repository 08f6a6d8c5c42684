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
ModelConfig small_config(const std::string& preset, const nlohmann::json& overrides = nlohmann::json::object());
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
