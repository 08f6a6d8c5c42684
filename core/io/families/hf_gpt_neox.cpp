// Hugging Face GPTNeoXForCausalLM (model_type "gpt_neox": Pythia): LayerNorms with biases, a parallel residual
// (use_parallel_residual, the default) or a sequential one, rotary on the first partial_rotary_factor of each head
// (rotate-half), q/k/v fused per head ([H, 3, D] rows, reordered here to [3, H, D]), a plain MLP with biases, the
// untied head embed_out. transformers 4 writes the rotary settings at the top (rotary_pct, rotary_emb_base, and
// 4.57 also partial_rotary_factor and rope_theta): where several say the same thing they must agree.
#include "core/io/families/family.h"

#include <ATen/ATen.h>

namespace mechscope::families {

namespace {

// One setting that transformers 4 wrote under two names: the values present must agree; `def` when none is.
double agreed(const Cfg& c, const std::string& a, const std::string& b, double def) {
  const bool ha = c.has(a), hb = c.has(b);
  const double va = c.number(a, def), vb = c.number(b, def);
  if (ha && hb && va != vb)
    throw CheckpointError(c.where() + ": " + a + " (" + std::to_string(va) + ") and " + b + " (" + std::to_string(vb) +
                          ") disagree");
  return ha ? va : vb;
}

}  // namespace

Mapped map_hf_gpt_neox(const json& j, Tensors& t, const std::string& where) {
  Cfg c(j, where);
  Mapped m;
  const int64_t d = c.count("hidden_size", kMaxDModel), H = c.count("num_attention_heads", kMaxDModel);
  const int64_t L = c.count("num_hidden_layers", kMaxLayers), V = c.count("vocab_size", kMaxVocab);
  const int64_t inner = c.count("intermediate_size", kMaxIntermediate);
  if (d % H != 0)
    throw CheckpointError(where + ": hidden_size " + std::to_string(d) + " is not divisible by num_attention_heads " +
                          std::to_string(H));
  const int64_t D = d / H;
  const std::string act = hf_activation(c, "hidden_act", "gelu");
  Rope rope = read_rope(c, agreed(c, "rope_theta", "rotary_emb_base", 10000.0), true);
  if (!c.has("rope_parameters")) {
    rope.partial = agreed(c, "partial_rotary_factor", "rotary_pct", 0.25);
    if (c.has("rotary_emb_base") && rope.theta != c.number("rotary_emb_base", rope.theta))
      throw CheckpointError(where + ": rotary_emb_base and the rotary base of rope_theta/rope_scaling disagree");
  } else if (c.has("rotary_pct") || c.has("rotary_emb_base") || c.has("partial_rotary_factor")) {
    throw CheckpointError(where + ": rotary settings both at the top (rotary_pct, rotary_emb_base, partial_rotary_factor) "
                          "and in rope_parameters; which one applies is ambiguous");
  }
  if (!(rope.partial > 0 && rope.partial <= 1))
    throw CheckpointError(where + ": partial_rotary_factor " + std::to_string(rope.partial) + " is not in (0, 1]");
  const int64_t rotary = static_cast<int64_t>(static_cast<double>(D) * rope.partial);  // int() in transformers
  if (rotary % 2 != 0)
    throw CheckpointError(where + ": " + std::to_string(rotary) + " rotary dimensions per head (head size " +
                          std::to_string(D) + " times " + std::to_string(rope.partial) + ") is odd");
  const bool bias = c.get<bool>("attention_bias", true), parallel = c.get<bool>("use_parallel_residual", true);
  const bool tie = c.get<bool>("tie_word_embeddings", false);
  json attn = {{"num_heads", H},          {"qkv_proj_bias", bias},   {"out_proj_bias", bias},
               {"causal", true},          {"rotary_emb_dim", rotary}, {"rotary_emb_base", rope.theta},
               {"rotary_emb_interleaved", false}};
  if (!rope.scaling.is_null()) attn["rotary_scaling"] = rope.scaling;
  m.model_config = transformer_config(d, inner, L, V, attn, false, c.number("layer_norm_eps", 1e-5), tie);
  m.model_config.update({{"mlp_type", "plain"}, {"mlp_activation", act}, {"mlp_bias", true}});
  if (parallel) m.model_config["parallel_residual"] = true;
  // Dropout, and the classifier head of GPTNeoXForSequenceClassification, leave the forward pass unchanged;
  // is_decoder is a flag of the generic config (the model is causal either way).
  c.finish("hf-gpt-neox", {"hidden_dropout", "classifier_dropout", "is_decoder"});
  put(m, t, "backbone.embedding.weight", "gpt_neox.embed_in.weight");
  put(m, t, "backbone.norm_f.weight", "gpt_neox.final_layer_norm.weight");
  put(m, t, "backbone.norm_f.bias", "gpt_neox.final_layer_norm.bias");
  for (int64_t i = 0; i < L; ++i) {
    const std::string f = "gpt_neox.layers." + std::to_string(i) + ".", n = "backbone.layers." + std::to_string(i) + ".";
    for (const auto& [native, foreign] :
         std::vector<std::pair<std::string, std::string>>{{"norm", "input_layernorm"}, {"norm2", "post_attention_layernorm"}}) {
      put(m, t, n + native + ".weight", f + foreign + ".weight");
      put(m, t, n + native + ".bias", f + foreign + ".bias");
    }
    // Rows [h*3D, h*3D + D) are head h's query, then its key, then its value: regrouped as all queries, keys, values.
    auto regroup = [&](const std::string& suffix, const std::string& native) {
      const std::string name = f + "attention.query_key_value." + suffix;
      at::Tensor w = t.take(name);
      if (w.size(0) != 3 * d || (suffix == "weight" && (w.dim() != 2 || w.size(1) != d)) || (suffix == "bias" && w.dim() != 1))
        throw CheckpointError(where + ": " + name + " has shape " + dims_text(w) + "; the config implies " +
                              (suffix == "weight" ? "[" + std::to_string(3 * d) + ", " + std::to_string(d) + "]"
                                                  : "[" + std::to_string(3 * d) + "]"));
      std::vector<int64_t> grouped = {H, 3, D}, flat = {3 * d};
      if (w.dim() == 2) grouped.push_back(d), flat.push_back(d);
      at::Tensor r = w.reshape(grouped).transpose(0, 1).contiguous().reshape(flat);
      m.weights[n + native] = r;
      if (t.dtype(name) != "float32") m.source_dtype[n + native] = t.dtype(name);
    };
    regroup("weight", "mixer.in_proj.weight");
    put(m, t, n + "mixer.out_proj.weight", f + "attention.dense.weight");
    if (bias) {
      regroup("bias", "mixer.in_proj.bias");
      put(m, t, n + "mixer.out_proj.bias", f + "attention.dense.bias");
    }
    put(m, t, n + "mlp.fc1.weight", f + "mlp.dense_h_to_4h.weight");
    put(m, t, n + "mlp.fc1.bias", f + "mlp.dense_h_to_4h.bias");
    put(m, t, n + "mlp.fc2.weight", f + "mlp.dense_4h_to_h.weight");
    put(m, t, n + "mlp.fc2.bias", f + "mlp.dense_4h_to_h.bias");
    for (const char* buffer : {"attention.bias", "attention.masked_bias", "attention.rotary_emb.inv_freq"})
      if (t.has(f + buffer)) t.drop(f + buffer);  // masks and frequencies, recomputed
  }
  if (tie) handle_tied_head(m, t, true, "embed_out.weight", where);
  else put(m, t, "lm_head.weight", "embed_out.weight");
  return m;
}

}  // namespace mechscope::families
