// Hugging Face JambaForCausalLM (model_type "jamba", AI21's Jamba): a hybrid of Mamba1 layers and attention layers
// without positional encoding (layer i attends where i % attn_layer_period == attn_layer_offset), each followed by a
// SwiGLU MLP or, where i % expert_layer_period == expert_layer_offset, a mixture of num_experts such MLPs whose top
// num_experts_per_tok probabilities are used as they are (not renormalised). Its Mamba1 normalises dt (low rank),
// B and C by RMSNorms with weights (dt_layernorm, b_layernorm, c_layernorm; epsilon rms_norm_eps).
#include "core/io/families/family.h"

#include <ATen/ATen.h>

namespace mechscope::families {

namespace {

// Layer i is picked when i % period == offset (Jamba's layers_block_type and layers_num_experts).
std::vector<int64_t> every(const Cfg& c, const std::string& period_key, const std::string& offset_key, int64_t def_period,
                           int64_t def_offset, int64_t L) {
  const int64_t period = c.get<int64_t>(period_key, def_period), offset = c.get<int64_t>(offset_key, def_offset);
  if (period < 1 || offset < 0 || offset >= period)
    throw CheckpointError(c.where() + ": " + offset_key + " " + std::to_string(offset) + " must lie in [0, " + period_key +
                          " " + std::to_string(period) + ")");
  std::vector<int64_t> layers;
  for (int64_t i = 0; i < L; ++i)
    if (i % period == offset) layers.push_back(i);
  return layers;
}

// One Jamba Mamba layer (model.layers.i.mamba.) as MechScope's Mamba1 with weighted dt/B/C norms.
void map_jamba_mamba(Mapped& m, Tensors& t, const std::string& f, const std::string& n, bool proj_bias, bool conv_bias) {
  for (const char* p : {"in_proj.weight", "conv1d.weight", "x_proj.weight", "dt_proj.weight", "dt_proj.bias", "A_log", "D",
                        "out_proj.weight"})
    put(m, t, n + p, f + p);
  if (conv_bias) put(m, t, n + "conv1d.bias", f + "conv1d.bias");
  if (proj_bias) {
    put(m, t, n + "in_proj.bias", f + "in_proj.bias");
    put(m, t, n + "out_proj.bias", f + "out_proj.bias");
  }
  put(m, t, n + "dt_norm_weight", f + "dt_layernorm.weight");
  put(m, t, n + "B_norm_weight", f + "b_layernorm.weight");
  put(m, t, n + "C_norm_weight", f + "c_layernorm.weight");
}

}  // namespace

Mapped map_hf_jamba(const json& j, Tensors& t, const std::string& where) {
  Cfg c(j, where);
  require_silu(c);  // the MLPs' activation and the Mamba convolution's
  if (c.has("sliding_window"))
    throw CheckpointError(where + ": sliding_window " + c.raw("sliding_window").dump() + ": transformers applies it to "
                          "Jamba only in some attention implementations; MechScope refuses to guess which");
  const int64_t d = c.count("hidden_size", kMaxDModel), L = c.count("num_hidden_layers", kMaxLayers);
  const int64_t V = c.count("vocab_size", kMaxVocab), inter = c.count("intermediate_size", kMaxIntermediate);
  const LlamaAttention heads = hf_attention_heads(c, d);
  const std::vector<int64_t> attn_idx = every(c, "attn_layer_period", "attn_layer_offset", 8, 4, L);
  const int64_t E = c.get<int64_t>("num_experts", 16);
  if (E < 1 || E > kMaxExperts)
    throw CheckpointError(where + ": num_experts " + std::to_string(E) + " is outside [1, " + std::to_string(kMaxExperts) + "]");
  std::vector<int64_t> moe_idx = every(c, "expert_layer_period", "expert_layer_offset", 2, 1, L);
  if (E == 1) moe_idx.clear();  // one expert: Jamba's dense MLP
  const double eps = c.number("rms_norm_eps", 1e-6);
  const bool proj_bias = c.get<bool>("mamba_proj_bias", false), conv_bias = c.get<bool>("mamba_conv_bias", true);
  json ssm = {{"layer", "Mamba1"},
              {"d_state", c.get<int64_t>("mamba_d_state", 16)},
              {"d_conv", c.get<int64_t>("mamba_d_conv", 4)},
              {"expand", c.get<int64_t>("mamba_expand", 2)},
              {"conv_bias", conv_bias},
              {"bias", proj_bias},
              {"bcdt_rms_eps", eps},
              {"bcdt_norm_weights", true}};
  if (c.has("mamba_dt_rank")) ssm["dt_rank"] = c.raw("mamba_dt_rank");
  const bool tie = c.get<bool>("tie_word_embeddings", false);
  json attn = {{"num_heads", heads.heads},  {"num_heads_kv", heads.kv_heads}, {"qkv_proj_bias", false},
               {"out_proj_bias", false},    {"causal", true},                 {"rotary_emb_dim", 0}};
  if (heads.head_dim * heads.heads != d) attn["head_dim"] = heads.head_dim;
  Mapped m;
  const bool all_moe = static_cast<int64_t>(moe_idx.size()) == L;
  m.model_config = transformer_config(d, all_moe ? 0 : inter, L, V, attn, true, eps, tie);
  m.model_config["attn_layer_idx"] = attn_idx;
  m.model_config["ssm_cfg"] = ssm;
  if (!moe_idx.empty()) {
    const int64_t top_k = c.count("num_experts_per_tok", E);
    json moe = {{"num_experts", E}, {"top_k", top_k}, {"hidden", inter}};
    if (!all_moe) moe["layers"] = moe_idx;
    m.model_config["moe_cfg"] = moe;
  } else {
    (void)c.has("num_experts_per_tok");  // no mixture reads it
  }
  // use_mamba_kernels, use_mambapy, use_associative_scan: implementations of the same scan; num_logits_to_keep:
  // generation; the routers' training settings.
  c.finish("hf-jamba", {"use_mamba_kernels", "num_logits_to_keep", "output_router_logits", "router_aux_loss_coef"});
  if (!all_moe) note_mlp_padding(m, inter);
  put(m, t, "backbone.embedding.weight", "model.embed_tokens.weight");
  put(m, t, "backbone.norm_f.weight", "model.final_layernorm.weight");
  const ExpertLayout layout{"feed_forward.", "feed_forward.", "router.weight", "gate_proj", "up_proj", "down_proj"};
  for (int64_t i = 0; i < L; ++i) {
    const std::string f = "model.layers." + std::to_string(i) + ".", n = "backbone.layers." + std::to_string(i) + ".";
    put(m, t, n + "norm.weight", f + "input_layernorm.weight");
    put(m, t, n + "norm2.weight", f + "pre_ff_layernorm.weight");
    if (std::find(attn_idx.begin(), attn_idx.end(), i) != attn_idx.end())
      map_llama_attention(m, t, f + "self_attn.", n + "mixer.", heads, where);
    else
      map_jamba_mamba(m, t, f + "mamba.", n + "mixer.", proj_bias, conv_bias);
    if (std::find(moe_idx.begin(), moe_idx.end(), i) != moe_idx.end())
      map_experts(m, t, f, n + "mlp.", layout, E, inter, where);
    else
      map_swiglu(m, t, f + "feed_forward.", n + "mlp.", inter, false, where);
  }
  if (!tie) put(m, t, "lm_head.weight", "lm_head.weight");
  else if (t.has("lm_head.weight")) handle_tied_head(m, t, true, "lm_head.weight", where);
  return m;
}

}  // namespace mechscope::families
