// Hugging Face LlamaForCausalLM (model_type "llama"): attention with rotary and grouped kv heads, SwiGLU MLPs
// padded to GatedMLP's multiple of 128 (the padded units compute 0), q/k/v fused into in_proj.
#include "core/io/families/family.h"

#include <ATen/ATen.h>

namespace mechscope::families {

namespace {
// The rotary base. transformers 4 writes "rope_theta" (and "rope_scaling") at the top; transformers 5 writes
// "rope_parameters": {"rope_theta": ..., "rope_type": ...}. Only default rotary is imported; any other rope_type, or a
// key of rope_parameters this importer does not know, is refused by name, never replaced by a default.
double rope_theta(const Cfg& c, const std::string& where) {
  if (c.has("rope_scaling"))
    throw CheckpointError(where + ": rope_scaling " + c.raw("rope_scaling").dump() +
                          " is not supported (MechScope imports Llama models with default rotary embeddings only)");
  const bool top = c.has("rope_theta");
  if (!c.has("rope_parameters")) return c.number("rope_theta", 10000.0);
  const json& p = c.raw("rope_parameters");
  if (!p.is_object()) throw CheckpointError(where + ": rope_parameters should be an object, found " + p.dump());
  const std::string type = p.contains("rope_type") && p["rope_type"].is_string() ? p["rope_type"].get<std::string>()
                           : p.contains("rope_type")                              ? p["rope_type"].dump()
                                                                                  : "default";
  if (type != "default")
    throw CheckpointError(where + ": rope_parameters.rope_type '" + type +
                          "' is not supported (MechScope imports Llama models with default rotary embeddings only)");
  for (const auto& [key, value] : p.items())
    if (key != "rope_theta" && key != "rope_type")
      throw CheckpointError(where + ": rope_parameters." + key + " = " + value.dump() +
                            " is not understood by this importer (it reads rope_theta and rope_type)");
  if (!p.contains("rope_theta")) throw CheckpointError(where + ": rope_parameters lacks rope_theta");
  const double theta = Cfg(p, where + " rope_parameters").number("rope_theta", 0.0);
  if (top && c.number("rope_theta", theta) != theta)
    throw CheckpointError(where + ": rope_theta and rope_parameters.rope_theta disagree");
  if (!(theta > 0) || !std::isfinite(theta))
    throw CheckpointError(where + ": rope_parameters.rope_theta " + p["rope_theta"].dump() + " is not a positive number");
  return theta;
}
}  // namespace

Mapped map_hf_llama(const json& j, Tensors& t, const std::string& where) {
  Cfg c(j, where);
  require_silu(c);
  const double theta = rope_theta(c, where);
  if (c.get<bool>("mlp_bias", false)) throw CheckpointError(where + ": mlp_bias true is not supported (GatedMLP has no biases)");
  Mapped m;
  const int64_t d = c.count("hidden_size", kMaxDModel), H = c.count("num_attention_heads", kMaxDModel);
  const int64_t Hkv = c.get<int64_t>("num_key_value_heads", H);
  if (H <= 0 || Hkv <= 0 || (d % H != 0 && !c.has("head_dim")))
    throw CheckpointError(where + ": hidden_size " + std::to_string(d) + " is not divisible by num_attention_heads " +
                          std::to_string(H));
  const int64_t D = c.get<int64_t>("head_dim", H > 0 ? d / H : 0);
  const int64_t L = c.count("num_hidden_layers", kMaxLayers), inter = c.count("intermediate_size", 1 << 20);
  const bool bias = c.get<bool>("attention_bias", false);
  const bool tie = c.get<bool>("tie_word_embeddings", false);
  json attn = {{"num_heads", H},
               {"num_heads_kv", Hkv},
               {"qkv_proj_bias", bias},
               {"out_proj_bias", bias},
               {"causal", true},
               {"rotary_emb_dim", D},
               {"rotary_emb_base", theta},
               {"rotary_emb_interleaved", false}};
  if (D * H != d) attn["head_dim"] = D;
  std::vector<int64_t> all(static_cast<size_t>(std::max<int64_t>(L, 0)));
  for (int64_t i = 0; i < L; ++i) all[static_cast<size_t>(i)] = i;
  m.model_config = {{"d_model", d},
                    {"d_intermediate", inter},
                    {"n_layer", L},
                    {"vocab_size", c.count("vocab_size", kMaxVocab)},
                    {"attn_layer_idx", all},
                    {"attn_cfg", attn},
                    {"rms_norm", true},
                    {"norm_epsilon", c.number("rms_norm_eps", 1e-6)},
                    {"residual_in_fp32", true},
                    {"tie_embeddings", tie},
                    {"pad_vocab_size_multiple", 1}};
  const int64_t hidden = (inter + 127) / 128 * 128;
  if (hidden != inter)
    m.notes.push_back("intermediate_size " + std::to_string(inter) + " padded with zero units to " + std::to_string(hidden) +
                      " (GatedMLP's multiple of 128; the output is unchanged)");
  put(m, t, "backbone.embedding.weight", "model.embed_tokens.weight");
  put(m, t, "backbone.norm_f.weight", "model.norm.weight");
  for (int64_t i = 0; i < L; ++i) {
    const std::string f = "model.layers." + std::to_string(i) + ".", n = "backbone.layers." + std::to_string(i) + ".";
    put(m, t, n + "norm.weight", f + "input_layernorm.weight");
    put(m, t, n + "norm2.weight", f + "post_attention_layernorm.weight");
    auto fuse = [&](const std::string& suffix, const std::string& native) {
      at::Tensor q = t.take(f + "self_attn.q_proj." + suffix), k = t.take(f + "self_attn.k_proj." + suffix),
                 v = t.take(f + "self_attn.v_proj." + suffix);
      if (q.size(0) != H * D || k.size(0) != Hkv * D || v.size(0) != Hkv * D)
        throw CheckpointError(where + ": layer " + std::to_string(i) + "'s q/k/v projections have " +
                              std::to_string(q.size(0)) + "/" + std::to_string(k.size(0)) + "/" + std::to_string(v.size(0)) +
                              " outputs; the config implies " + std::to_string(H * D) + "/" + std::to_string(Hkv * D) +
                              "/" + std::to_string(Hkv * D));
      m.weights[n + native] = at::cat({q, k, v}, 0);
      if (t.dtype(f + "self_attn.q_proj." + suffix) != "float32")
        m.source_dtype[n + native] = t.dtype(f + "self_attn.q_proj." + suffix);
    };
    fuse("weight", "mixer.in_proj.weight");
    put(m, t, n + "mixer.out_proj.weight", f + "self_attn.o_proj.weight");
    if (bias) {
      fuse("bias", "mixer.in_proj.bias");
      put(m, t, n + "mixer.out_proj.bias", f + "self_attn.o_proj.bias");
    }
    if (t.has(f + "self_attn.rotary_emb.inv_freq")) t.drop(f + "self_attn.rotary_emb.inv_freq");  // a buffer, recomputed
    at::Tensor up = t.take(f + "mlp.up_proj.weight"), gate = t.take(f + "mlp.gate_proj.weight");
    at::Tensor down = t.take(f + "mlp.down_proj.weight");
    if (up.dim() != 2 || gate.sizes() != up.sizes() || up.size(0) != inter || down.dim() != 2 || down.size(1) != inter)
      throw CheckpointError(where + ": layer " + std::to_string(i) + "'s MLP projections do not match intermediate_size " +
                            std::to_string(inter));
    // GatedMLP: fc1 = [value; gate], y = value * silu(gate); Llama: down(up(x) * silu(gate(x))).
    m.weights[n + "mlp.fc1.weight"] = at::cat({pad_dim(up, 0, hidden), pad_dim(gate, 0, hidden)}, 0);
    m.weights[n + "mlp.fc2.weight"] = pad_dim(down, 1, hidden);
    if (t.dtype(f + "mlp.up_proj.weight") != "float32") {
      m.source_dtype[n + "mlp.fc1.weight"] = t.dtype(f + "mlp.up_proj.weight");
      m.source_dtype[n + "mlp.fc2.weight"] = t.dtype(f + "mlp.down_proj.weight");
    }
  }
  if (!tie) put(m, t, "lm_head.weight", "lm_head.weight");
  else if (t.has("lm_head.weight")) handle_tied_head(m, t, true, "lm_head.weight", where);
  return m;
}

}  // namespace mechscope::families
