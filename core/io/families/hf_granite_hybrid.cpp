// Hugging Face GraniteMoeHybridForCausalLM (model_type "granitemoehybrid": IBM's Granite 4.0 H), the dense models
// (num_local_experts 0): each layer a Mamba2 (model.layers.*.mamba, Hugging Face's Mamba2 layout and grouped gated
// RMSNorm) or a Llama attention (self_attn; rotary only when position_embedding_type is "rope"), then a SwiGLU MLP
// (shared_mlp: input_linear [gate; value], output_linear), each added to the residual times residual_multiplier:
// MechScope's hybrid with an MLP in every block. The muP settings are folded in: residual_multiplier into the
// outputs' projections (o_proj, the Mamba2 out_proj, output_linear), attention_multiplier as the softmax scale,
// logits_scaling into an untied lm_head (refused on a tied one), embedding_multiplier -> embedding_multiplier.
// The mixture-of-experts models (num_local_experts > 0: Granite 4.0 H Tiny and Small) add to the shared MLP a mixture
// (block_sparse_moe: router.layer, input_linear [E, 2 I, d] gate rows first, output_linear [E, d, I]) whose weights are
// the softmax over the top num_experts_per_tok logits: MechScope's renormalised top-k, with the shared MLP as its
// shared expert (ungated) and residual_multiplier folded into every expert's output.
#include "core/io/families/family.h"

#include <ATen/ATen.h>

namespace mechscope::families {

namespace {

// Weight `name`, where the mapping has it, times s.
void scale(Mapped& m, const std::string& name, double s) {
  if (m.weights.count(name)) scale_rows(m.weights.at(name), 0, m.weights.at(name).size(0), s);
}

// The layers' kinds: transformers 5 writes "linear_attention" (Mamba2) and "full_attention"/"attention", 4.x
// "mamba" and "attention".
std::vector<bool> attention_layers(const Cfg& c, int64_t L) {
  const std::string key = c.has("layer_types") ? "layer_types" : "layers_block_type";
  std::vector<std::string> kinds = hf_layer_kinds(c, key, L);
  if (kinds.empty()) kinds.assign(static_cast<size_t>(L), "mamba");
  std::vector<bool> attention;
  for (const auto& k : kinds) {
    if (k == "mamba" || k == "linear_attention") attention.push_back(false);
    else if (k == "attention" || k == "full_attention") attention.push_back(true);
    else throw CheckpointError(c.where() + ": " + key + " holds '" + k + "'; MechScope knows mamba and attention layers");
  }
  return attention;
}

}  // namespace

Mapped map_hf_granite_hybrid(const json& j, Tensors& t, const std::string& where) {
  Cfg c(j, where);
  require_silu(c);  // the MLP's activation and the Mamba2 convolution's
  const int64_t experts = c.get<int64_t>("num_local_experts", 8);
  if (experts < 0 || experts > kMaxExperts)
    throw CheckpointError(where + ": num_local_experts " + std::to_string(experts) + " is outside [0, " +
                          std::to_string(kMaxExperts) + "]");
  const int64_t d = c.count("hidden_size", kMaxDModel), L = c.count("num_hidden_layers", kMaxLayers);
  const int64_t V = c.count("vocab_size", kMaxVocab), inter = c.count("shared_intermediate_size", kMaxIntermediate);
  const LlamaAttention heads = hf_attention_heads(c, d);
  const int64_t H = heads.heads, Hkv = heads.kv_heads, D = heads.head_dim;
  const std::vector<bool> attention = attention_layers(c, L);
  const Rope rope = read_rope(c, 10000.0);
  const std::string pos = c.has("position_embedding_type") ? c.raw("position_embedding_type").get<std::string>() : "nope";
  if (pos != "rope" && pos != "nope")
    throw CheckpointError(where + ": position_embedding_type '" + pos + "'; MechScope knows rope and nope (none)");
  const bool bias = c.get<bool>("attention_bias", false), tie = c.get<bool>("tie_word_embeddings", false);
  const double residual = hf_multiplier(c, "residual_multiplier", true), logits = hf_multiplier(c, "logits_scaling", true);
  const double scale_qk = hf_multiplier(c, "attention_multiplier", true), emb = hf_multiplier(c, "embedding_multiplier", true);
  if (tie && logits != 1.0)
    throw CheckpointError(where + ": logits_scaling " + std::to_string(logits) + " on a head tied to the embedding; "
                          "MechScope folds the scaling into an untied head only");
  const double eps = c.number("rms_norm_eps", 1e-6);
  const json ssm = hf_mamba2_layer_ssm(c, d, eps);
  json attn = rotary_attn_cfg({d, H, Hkv, D, pos == "rope" ? D : 0, bias, bias}, rope);
  attn["softmax_scale"] = scale_qk;
  Mapped m;
  m.model_config = transformer_config(d, experts > 0 ? 0 : inter, L, V, attn, true, eps, tie);
  int64_t expert_hidden = 0;
  if (experts > 0) {
    expert_hidden = c.count("intermediate_size", kMaxIntermediate);
    m.model_config["moe_cfg"] = {{"num_experts", experts},
                                 {"top_k", c.count("num_experts_per_tok", experts)},
                                 {"hidden", expert_hidden},
                                 {"normalize_top_k", true},
                                 {"shared_hidden", inter}};
  }
  std::vector<int64_t> attn_idx;
  for (int64_t i = 0; i < L; ++i)
    if (attention[static_cast<size_t>(i)]) attn_idx.push_back(i);
  m.model_config["attn_layer_idx"] = attn_idx;
  m.model_config["ssm_cfg"] = ssm;
  if (emb != 1.0) m.model_config["embedding_multiplier"] = emb;
  // Without experts, intermediate_size and num_experts_per_tok size nothing; the routers' training settings and
  // generation's leave the forward pass unchanged.
  c.finish("hf-granite-hybrid", {"intermediate_size", "num_experts_per_tok", "output_router_logits",
                                 "router_aux_loss_coef", "num_logits_to_keep"});
  if (experts == 0) note_mlp_padding(m, inter);

  put(m, t, "backbone.embedding.weight", "model.embed_tokens.weight");
  put(m, t, "backbone.norm_f.weight", "model.norm.weight");
  const int64_t hidden = gated_mlp_hidden(inter);
  for (int64_t i = 0; i < L; ++i) {
    const std::string f = "model.layers." + std::to_string(i) + ".", n = "backbone.layers." + std::to_string(i) + ".";
    put(m, t, n + "norm.weight", f + "input_layernorm.weight");
    put(m, t, n + "norm2.weight", f + "post_attention_layernorm.weight");
    if (attention[static_cast<size_t>(i)]) map_llama_attention(m, t, f + "self_attn.", n + "mixer.", {H, Hkv, D, bias, bias}, where);
    else map_hf_mamba2_layer(m, t, f + "mamba.", n + "mixer.", ssm);
    scale(m, n + "mixer.out_proj.weight", residual);
    scale(m, n + "mixer.out_proj.bias", residual);
    if (experts > 0) {  // the shared MLP exactly (no padding), the experts, each output times residual_multiplier
      const ExpertLayout layout{"block_sparse_moe.", "block_sparse_moe.", "router.layer.weight", "", "", "",
                                "router.layer.weight", "input_linear.weight", "output_linear.weight"};
      map_experts(m, t, f, n + "mlp.", layout, experts, expert_hidden, where);
      for (int64_t e = 0; e < experts; ++e) scale(m, n + "mlp.experts." + std::to_string(e) + ".fc2.weight", residual);
    }
    const std::string mlp = experts > 0 ? n + "mlp.shared." : n + "mlp.";
    const int64_t hidden_here = experts > 0 ? inter : hidden;
    // shared_mlp: input_linear [gate; value] (act on the first half), GatedMLP's fc1 [value; gate].
    at::Tensor in = t.take(f + "shared_mlp.input_linear.weight"), out = t.take(f + "shared_mlp.output_linear.weight");
    if (in.dim() != 2 || in.size(0) != 2 * inter || in.size(1) != d || out.dim() != 2 || out.size(0) != d ||
        out.size(1) != inter)
      throw CheckpointError(where + ": " + f + "shared_mlp has input_linear " + dims_text(in) + " and output_linear " +
                            dims_text(out) + "; the config implies " + std::to_string(2 * inter) + " x " + std::to_string(d) +
                            " and " + std::to_string(d) + " x " + std::to_string(inter));
    m.weights[mlp + "fc1.weight"] =
        at::cat({pad_dim(in.narrow(0, inter, inter), 0, hidden_here), pad_dim(in.narrow(0, 0, inter), 0, hidden_here)}, 0);
    m.weights[mlp + "fc2.weight"] = pad_dim(out * residual, 1, hidden_here);
    if (t.dtype(f + "shared_mlp.input_linear.weight") != "float32") {
      m.source_dtype[mlp + "fc1.weight"] = t.dtype(f + "shared_mlp.input_linear.weight");
      m.source_dtype[mlp + "fc2.weight"] = t.dtype(f + "shared_mlp.output_linear.weight");
    }
  }
  handle_tied_head(m, t, tie, "lm_head.weight", where);
  if (!tie) scale(m, "lm_head.weight", 1.0 / logits);
  return m;
}

}  // namespace mechscope::families
