// Hugging Face LlamaForCausalLM (model_type "llama"): attention with rotary and grouped kv heads, SwiGLU MLPs
// padded to GatedMLP's multiple of 128 (the padded units compute 0), q/k/v fused into in_proj.
#include "core/io/families/family.h"

#include <ATen/ATen.h>

namespace mechscope::families {

namespace {

struct Rope {
  double theta = 10000.0;
  json scaling;  // attn_cfg.rotary_scaling, or null
};

// The rotary embedding. transformers 4 writes "rope_theta" and "rope_scaling" ({"rope_type" or "type": ..., ...})
// at the top; transformers 5 writes "rope_parameters": {"rope_theta": ..., "rope_type": ..., ...}. Imported:
// "default", "linear" (factor) and "llama3" (factor, low/high_freq_factor, original_max_position_embeddings); any
// other rope_type ("dynamic", "yarn", "longrope", ...) or a key this importer does not know is refused by name,
// never replaced by a default.
Rope rope_of(const Cfg& c, const std::string& where) {
  Rope r;
  const bool v5 = c.has("rope_parameters");
  if (v5 && c.has("rope_scaling"))
    throw CheckpointError(where + ": both rope_parameters and rope_scaling are set; which one applies is ambiguous");
  if (!v5) r.theta = c.number("rope_theta", 10000.0);
  if (!v5 && !c.has("rope_scaling")) return r;
  const std::string key = v5 ? "rope_parameters" : "rope_scaling";
  const json& p = c.raw(key);
  if (!p.is_object()) throw CheckpointError(where + ": " + key + " should be an object, found " + p.dump());
  const Cfg pc(p, where + " " + key);
  const std::string type_key = p.contains("rope_type") ? "rope_type" : p.contains("type") ? "type" : "";
  const std::string type = type_key.empty() ? "default"
                           : p[type_key].is_string() ? p[type_key].get<std::string>() : p[type_key].dump();
  if (type != "default" && type != "linear" && type != "llama3")
    throw CheckpointError(where + ": " + key + "." + (type_key.empty() ? "rope_type" : type_key) + " '" + type +
                          "' is not supported (MechScope imports default, linear and llama3 rotary embeddings)");
  std::set<std::string> known = {"rope_theta", "rope_type", "type"};
  if (type == "linear") known.insert("factor");
  if (type == "llama3") known.insert({"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"});
  for (const auto& [k, v] : p.items())
    if (!known.count(k))
      throw CheckpointError(where + ": " + key + "." + k + " = " + v.dump() + " is not understood for rope_type '" + type +
                            "' by this importer");
  if (v5) {
    if (!p.contains("rope_theta")) throw CheckpointError(where + ": rope_parameters lacks rope_theta");
    r.theta = pc.number("rope_theta", 0.0);
    if (c.has("rope_theta") && c.number("rope_theta", r.theta) != r.theta)
      throw CheckpointError(where + ": rope_theta and rope_parameters.rope_theta disagree");
  }
  if (!(r.theta > 0) || !std::isfinite(r.theta))
    throw CheckpointError(where + ": the rotary base " + std::to_string(r.theta) + " is not a positive number");
  if (type == "linear") r.scaling = {{"type", "linear"}, {"factor", pc.number("factor", 0.0)}};
  if (type == "llama3") {
    for (const char* k : {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"})
      if (!p.contains(k)) throw CheckpointError(where + ": " + key + " of rope_type 'llama3' lacks " + k);
    r.scaling = {{"type", "llama3"},
                 {"factor", pc.number("factor", 0.0)},
                 {"low_freq_factor", pc.number("low_freq_factor", 0.0)},
                 {"high_freq_factor", pc.number("high_freq_factor", 0.0)},
                 {"original_max_position_embeddings", pc.req<int64_t>("original_max_position_embeddings")}};
  }
  return r;
}
}  // namespace

Mapped map_hf_llama(const json& j, Tensors& t, const std::string& where) {
  Cfg c(j, where);
  require_silu(c);
  const Rope rope = rope_of(c, where);
  if (c.get<bool>("mlp_bias", false)) throw CheckpointError(where + ": mlp_bias true is not supported (GatedMLP has no biases)");
  Mapped m;
  const int64_t d = c.count("hidden_size", kMaxDModel), H = c.count("num_attention_heads", kMaxDModel);
  const int64_t Hkv = c.get<int64_t>("num_key_value_heads", H);
  if (H <= 0 || Hkv <= 0 || (d % H != 0 && !c.has("head_dim")))
    throw CheckpointError(where + ": hidden_size " + std::to_string(d) + " is not divisible by num_attention_heads " +
                          std::to_string(H));
  const int64_t D = c.get<int64_t>("head_dim", H > 0 ? d / H : 0);
  const int64_t L = c.count("num_hidden_layers", kMaxLayers), inter = c.count("intermediate_size", kMaxIntermediate);
  const bool bias = c.get<bool>("attention_bias", false);
  const bool tie = c.get<bool>("tie_word_embeddings", false);
  json attn = {{"num_heads", H},
               {"num_heads_kv", Hkv},
               {"qkv_proj_bias", bias},
               {"out_proj_bias", bias},
               {"causal", true},
               {"rotary_emb_dim", D},
               {"rotary_emb_base", rope.theta},
               {"rotary_emb_interleaved", false}};
  if (D * H != d) attn["head_dim"] = D;
  if (!rope.scaling.is_null()) attn["rotary_scaling"] = rope.scaling;
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
  c.finish("hf-llama");
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
