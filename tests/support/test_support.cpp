// Test helpers (see test_support.h).
#include "tests/support/test_support.h"

#include <cmath>
#include <unistd.h>

#include <atomic>
#include <filesystem>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

namespace mechscope::test {

ModelConfig small_config(const std::string& name, const nlohmann::json& overrides) {
  // Test variants of the imported families' blocks, on the presets they extend (test_support.h).
  const std::string preset = name == "llama-like" || name == "mixtral-like" || name == "gemma2-like" ? "transformer"
                             : name == "falcon-h1"                         ? "parallel-hybrid"
                             : name == "falcon-mamba"                      ? "mamba1"
                             : name == "zamba-like"                        ? "mamba2"
                             : name == "jamba-like" || name == "nemotron-like" ? "hybrid"
                                                                           : name;
  nlohmann::json base = {{"d_model", 32}, {"vocab_size", 37}};
  if (overrides.contains("n_layer")) base["n_layer"] = overrides["n_layer"];  // keeps the preset's layer pattern
  nlohmann::json j = ModelConfig::preset_json(preset, base);
  if (name == "jamba-like") j["ssm_cfg"] = {{"layer", "Mamba1"}, {"d_conv", 4}, {"expand", 2}};
  if (j.contains("attn_cfg") && j["attn_cfg"].is_object() && !j["attn_cfg"].empty()) j["attn_cfg"]["rotary_emb_dim"] = preset == "gpt-neox" ? 4 : 8;
  if (j["ssm_cfg"].value("layer", "") == "Mamba2") {
    j["ssm_cfg"]["headdim"] = 8;
    j["ssm_cfg"]["d_state"] = 8;
    j["ssm_cfg"]["chunk_size"] = 8;
  } else if (j["ssm_cfg"].value("layer", "") == "Mamba1") {
    j["ssm_cfg"]["d_state"] = 4;
  }
  // The test variant of Pythia's block also slides a 5-position window (Mistral's) over the sequences, so that
  // every test that runs each preset covers windows too.
  if (preset == "gpt-neox") j["attn_cfg"]["sliding_window"] = 5;
  if (name == "llama-like") {  // Qwen3's q/k norms, Qwen2's window on one layer, Gemma's GeGLU and embedding scale
    j["attn_cfg"]["qk_norm"] = true;
    j["attn_cfg"]["sliding_window"] = 4;
    j["attn_cfg"]["sliding_window_layers"] = {1};
    j["mlp_activation"] = "gelu_tanh";
    j["embedding_multiplier"] = 1.5;
  } else if (name == "falcon-h1") {  // the summed parallel hybrid, an SSM narrower than d_inner, norm before the gate
    j["parallel_mix"] = "sum";
    j["ssm_cfg"]["d_ssm"] = 48;
    j["ssm_cfg"]["norm_before_gate"] = true;
    j["d_intermediate"] = 40;
  } else if (name == "falcon-mamba") {  // weightless RMS norms of dt, B and C
    j["ssm_cfg"]["bcdt_rms_eps"] = 1e-3;
  } else if (name == "gemma2-like") {  // norms after the attention and the MLP, soft-capped scores and logits, a window
    // on layer 0, the scores scaled by another factor than 1/sqrt(head_dim)
    j["post_norms"] = true;
    j["final_logit_softcap"] = 2.0;
    j["attn_cfg"]["softcap"] = 1.5;
    j["attn_cfg"]["softmax_scale"] = 0.4;
    j["attn_cfg"]["sliding_window"] = 4;
    j["attn_cfg"]["sliding_window_layers"] = {0};
    j["mlp_activation"] = "gelu_tanh";
  } else if (name == "mixtral-like") {  // a mixture of experts at every layer, the picked weights renormalised
    j["d_intermediate"] = 0;
  } else if (name == "jamba-like") {  // Mamba1 with weighted dt/B/C norms; experts at layers 1 and 3 with a gated
    // shared expert (Qwen2-MoE's), dense MLPs at 0 and 2; attention without rotary
    j["ssm_cfg"]["bcdt_rms_eps"] = 1e-3;
    j["ssm_cfg"]["bcdt_norm_weights"] = true;
    j["attn_cfg"]["rotary_emb_dim"] = 0;
    j["d_intermediate"] = 40;
  }
  j.merge_patch(overrides);
  if (name == "nemotron-like") {  // Mamba2, MLP-only and position-free attention layers in turn (M - * M - * ...),
    // the MLPs plain with squared ReLU and only in the MLP-only layers
    std::vector<int64_t> attn, only;
    for (int64_t i = 0; i < j["n_layer"].get<int64_t>(); ++i) {
      if (i % 3 == 2) attn.push_back(i);
      if (i % 3 == 1) only.push_back(i);
    }
    j["attn_layer_idx"] = attn;
    if (!overrides.contains("attn_cfg")) j["attn_cfg"]["rotary_emb_dim"] = 0;
    j["mlp_type"] = "plain";
    j["mlp_activation"] = "relu2";
    if (j.value("d_intermediate", 0) == 0 && !overrides.contains("d_intermediate")) j["d_intermediate"] = 48;
    if (j.value("d_intermediate", 0) > 0 && !only.empty()) {
      j["mlp_only_layer_idx"] = only;
      j["mlp_layer_idx"] = only;
    }
  }
  if (name == "zamba-like") {  // Zamba2's shared block (rotary, GeLU MLP) feeding the Mamba2 input at the odd layers
    std::vector<int64_t> odd;
    for (int64_t i = 1; i < j["n_layer"].get<int64_t>(); i += 2) odd.push_back(i);
    const int64_t d = j["d_model"].get<int64_t>();
    j["shared_cfg"] = {{"layers", odd},
                       {"attn", {{"num_heads", 4}, {"head_dim", 2 * d / 4}, {"qkv_proj_bias", false}, {"out_proj_bias", false},
                                 {"softmax_scale", 1.0 / std::sqrt(d / 4.0)}, {"causal", true}, {"rotary_emb_dim", 8}}},
                       {"hidden", 24}};
  }
  if (name == "mixtral-like") j["moe_cfg"] = {{"num_experts", 4}, {"top_k", 2}, {"hidden", 24}, {"normalize_top_k", true}};
  if (name == "jamba-like") {  // the odd layers, or every layer where the overrides leave no dense MLP
    std::vector<int64_t> odd;
    for (int64_t i = 1; i < j["n_layer"].get<int64_t>(); i += 2) odd.push_back(i);
    j["moe_cfg"] = {{"num_experts", 3}, {"top_k", 2}, {"hidden", 20}, {"shared_hidden", 16}, {"shared_gate", true}};
    if (j.value("d_intermediate", 0) > 0) j["moe_cfg"]["layers"] = odd;
  }
  return ModelConfig::from_json(j);
}

std::vector<std::string> test_presets() {
  std::vector<std::string> names = ModelConfig::preset_names();
  names.insert(names.end(), {"llama-like", "falcon-h1", "falcon-mamba", "mixtral-like", "jamba-like", "nemotron-like",
                              "zamba-like", "gemma2-like"});
  return names;
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

std::vector<at::Tensor> grads_of(const std::function<at::Tensor(const std::vector<at::Tensor>&)>& op,
                                 const std::vector<at::Tensor>& inputs, const at::Tensor& w) {
  std::vector<at::Tensor> leaves;
  for (const auto& t : inputs) leaves.push_back(t.detach().clone().requires_grad_(true));
  (op(leaves) * w).sum().backward();
  std::vector<at::Tensor> g;
  for (const auto& t : leaves) g.push_back(t.grad());
  return g;
}

std::string scratch_dir() {
  static std::atomic<int> counter{0};
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = info ? std::string(info->test_suite_name()) + "." + info->name() : "scratch";
  auto dir = std::filesystem::temp_directory_path() /
             ("mechscope-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

at::Tensor random_tokens(int64_t batch, int64_t L, int64_t vocab, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randint(vocab, {batch, L}, gen, at::kLong);
}

}  // namespace mechscope::test
