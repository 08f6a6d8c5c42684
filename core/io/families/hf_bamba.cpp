// Hugging Face BambaForCausalLM (model_type "bamba"): a hybrid of Mamba2 layers (model.layers.*.mamba, the layout and
// grouped gated RMSNorm of Hugging Face's Mamba2) and Llama attention layers (attn_layer_indices; no biases, rotary
// on the first partial_rotary_factor of each head), each followed by a SwiGLU MLP (feed_forward, after
// pre_ff_layernorm): MechScope's hybrid with an MLP in every block.
#include "core/io/families/family.h"

#include <ATen/ATen.h>

namespace mechscope::families {

Mapped map_hf_bamba(const json& j, Tensors& t, const std::string& where) {
  Cfg c(j, where);
  require_silu(c);
  Mapped m;
  const int64_t d = c.count("hidden_size", kMaxDModel), L = c.count("num_hidden_layers", kMaxLayers);
  const int64_t V = c.count("vocab_size", kMaxVocab), inter = c.count("intermediate_size", kMaxIntermediate);
  const int64_t H = c.count("num_attention_heads", kMaxDModel), Hkv = c.get<int64_t>("num_key_value_heads", H);
  if (d % H != 0 || Hkv <= 0 || H % Hkv != 0)
    throw CheckpointError(where + ": hidden_size " + std::to_string(d) + ", num_attention_heads " + std::to_string(H) +
                          " and num_key_value_heads " + std::to_string(Hkv) + " do not divide");
  const int64_t D = d / H;
  for (const char* k : {"attention_bias", "mlp_bias"})
    if (c.get<bool>(k, false)) throw CheckpointError(where + ": " + std::string(k) + " true is not Bamba's layout");
  Rope rope = read_rope(c, 10000.0, true);
  const int64_t rotary = hf_partial_rotary(c, rope, D, 0.5);
  const std::vector<int64_t> attn_idx = hf_layer_list(c, "attn_layer_indices");
  const double eps = c.number("rms_norm_eps", 1e-5);
  const json ssm = hf_mamba2_layer_ssm(c, d, eps);
  const json attn = rotary_attn_cfg({d, H, Hkv, D, rotary}, rope);
  const bool tie = c.get<bool>("tie_word_embeddings", false);
  m.model_config = transformer_config(d, inter, L, V, attn, true, eps, tie);
  m.model_config["attn_layer_idx"] = attn_idx;
  m.model_config["ssm_cfg"] = ssm;
  // num_logits_to_keep (generation) and z_loss_coefficient (a training loss) leave the forward pass unchanged.
  c.finish("hf-bamba", {"num_logits_to_keep", "z_loss_coefficient"});
  note_mlp_padding(m, inter);
  put(m, t, "backbone.embedding.weight", "model.embed_tokens.weight");
  put(m, t, "backbone.norm_f.weight", "model.final_layernorm.weight");
  const std::set<int64_t> attention(attn_idx.begin(), attn_idx.end());
  for (int64_t i = 0; i < L; ++i) {
    const std::string f = "model.layers." + std::to_string(i) + ".", n = "backbone.layers." + std::to_string(i) + ".";
    put(m, t, n + "norm.weight", f + "input_layernorm.weight");
    put(m, t, n + "norm2.weight", f + "pre_ff_layernorm.weight");
    if (attention.count(i)) {
      map_llama_attention(m, t, f + "self_attn.", n + "mixer.", {H, Hkv, D}, where);
    } else {
      map_hf_mamba2_layer(m, t, f + "mamba.", n + "mixer.", ssm);
    }
    map_swiglu(m, t, f + "feed_forward.", n + "mlp.", inter, false, where);
  }
  handle_tied_head(m, t, tie, "lm_head.weight", where);
  return m;
}

}  // namespace mechscope::families
