// Hugging Face FalconH1ForCausalLM (model_type "falcon_h1"): every layer runs a Mamba2 mixer (model.layers.*.mamba:
// Hugging Face's Mamba2 layout, its gated RMSNorm optional, d_ssm its own size) and Llama attention (self_attn) side
// by side on the same normed input and adds their outputs, then a SwiGLU MLP (feed_forward, after
// pre_ff_layernorm): MechScope's parallel hybrid in every layer with parallel_mix "sum". Falcon-H1's muP multipliers
// scale fixed places of the computation; each is folded into the weight it multiplies (so every hook sees what the
// residual receives, and a head's contribution stays a linear map of its output):
//   ssm_in_multiplier (the mixer's input) and ssm_multipliers (in_proj's z, x, B, C and dt outputs) -> in_proj rows;
//   ssm_out_multiplier -> out_proj; attention_in_multiplier -> q, k, v weights; key_multiplier -> k (and its bias);
//   attention_out_multiplier -> o; mlp_multipliers [gate, down] -> gate_proj, down_proj; lm_head_multiplier ->
//   lm_head (refused on a tied head, which is the embedding too); embedding_multiplier -> embedding_multiplier.
// Where d_ssm is not a multiple of hidden_size, Mamba2's in_proj and out_proj gain zero units (mamba_ssm's d_mlp
// part: silu(0) * 0 = 0, the output unchanged).
#include "core/io/families/family.h"

#include <ATen/ATen.h>

namespace mechscope::families {

namespace {

// `key` as a list of `n` numbers, each finite.
std::vector<double> numbers(const Cfg& c, const std::string& key, size_t n) {
  std::vector<double> out(n, 1.0);
  if (!c.has(key)) return out;
  const json& v = c.raw(key);
  if (!v.is_array() || v.size() != n)
    throw CheckpointError(c.where() + ": " + key + " should be a list of " + std::to_string(n) + " numbers, found " +
                          v.dump().substr(0, 200));
  for (size_t i = 0; i < n; ++i) out[i] = c.to_number(v[i], key);
  return out;
}

// What a Falcon-H1 config says, read (and checked) before any tensor is.
struct FalconH1 {
  int64_t d = 0, L = 0, V = 0, inter = 0, H = 0, Hkv = 0, D = 0;
  int64_t heads = 0, headdim = 0, d_ssm = 0, groups = 0, N = 0, expand = 0, d_mlp = 0;
  bool attn_bias = false, mlp_bias = false, proj_bias = false, tie = false;
  double ssm_in = 1, ssm_out = 1, attn_in = 1, attn_out = 1, key = 1, head = 1, emb = 1;
  std::vector<double> mup, mlp;  // ssm_multipliers [z, x, B, C, dt]; mlp_multipliers [gate, down]
  Rope rope;
};

FalconH1 read_falcon_h1(const Cfg& c) {
  const std::string& where = c.where();
  FalconH1 f;
  f.d = c.count("hidden_size", kMaxDModel);
  f.L = c.count("num_hidden_layers", kMaxLayers);
  f.V = c.count("vocab_size", kMaxVocab);
  f.inter = c.count("intermediate_size", kMaxIntermediate);
  const LlamaAttention heads = hf_attention_heads(c, f.d);
  f.H = heads.heads;
  f.Hkv = heads.kv_heads;
  f.D = heads.head_dim;
  f.attn_bias = c.get<bool>("attention_bias", false);
  f.mlp_bias = c.get<bool>("mlp_bias", false);
  f.tie = c.get<bool>("tie_word_embeddings", false);
  f.rope = read_rope(c, 10000.0);
  // Mamba2: d_ssm is mamba_d_ssm (or mamba_expand * hidden_size), mamba_d_head "auto" is d_ssm / mamba_n_heads.
  f.heads = c.get<int64_t>("mamba_n_heads", 128);
  const int64_t expand_hf = c.get<int64_t>("mamba_expand", 2);
  if (f.heads <= 0 || expand_hf <= 0) throw CheckpointError(where + ": mamba_n_heads and mamba_expand should be positive");
  f.d_ssm = c.has("mamba_d_ssm") ? c.count("mamba_d_ssm", kMaxIntermediate) : expand_hf * f.d;
  f.headdim = hf_mamba_head_dim(c, f.heads, f.d_ssm, "the SSM width");
  f.groups = c.get<int64_t>("mamba_n_groups", 1);
  f.N = c.get<int64_t>("mamba_d_state", 256);
  if (f.groups < 1 || f.heads % f.groups != 0 || f.N < 1)
    throw CheckpointError(where + ": mamba_n_groups must divide mamba_n_heads, and mamba_d_state be positive");
  f.expand = (f.d_ssm + f.d - 1) / f.d;  // MechScope's d_inner = expand * d_model >= d_ssm
  f.d_mlp = f.expand * f.d - f.d_ssm;    // zero units that make up the difference
  f.proj_bias = c.get<bool>("mamba_proj_bias", false);
  if (f.proj_bias != c.get<bool>("projectors_bias", false))
    throw CheckpointError(where + ": mamba_proj_bias and projectors_bias differ; MechScope's Mamba2 has biases on both "
                          "in_proj and out_proj or on neither");
  f.ssm_in = hf_multiplier(c, "ssm_in_multiplier");
  f.ssm_out = hf_multiplier(c, "ssm_out_multiplier");
  f.attn_in = hf_multiplier(c, "attention_in_multiplier");
  f.attn_out = hf_multiplier(c, "attention_out_multiplier");
  f.key = hf_multiplier(c, "key_multiplier");
  f.head = hf_multiplier(c, "lm_head_multiplier");
  f.emb = hf_multiplier(c, "embedding_multiplier");
  f.mup = numbers(c, "ssm_multipliers", 5);
  f.mlp = numbers(c, "mlp_multipliers", 2);
  if (f.tie && f.head != 1.0)
    throw CheckpointError(where + ": lm_head_multiplier " + std::to_string(f.head) +
                          " on a head tied to the embedding; MechScope folds the multiplier into an untied head only");
  return f;
}

// Layer `hf`'s Mamba2 ("model.layers.3.mamba.") as MechScope's under `s`, its multipliers folded in: in_proj rows
// [z (d_ssm); x (d_ssm); B (GN); C (GN); dt (heads)], after d_mlp zero rows of z0 and x0; out_proj after d_mlp zero
// columns.
void map_mamba(Mapped& m, Tensors& t, const std::string& hf, const std::string& s, const FalconH1& f, bool rmsnorm,
               bool conv_bias, const std::string& where) {
  const int64_t GN = f.groups * f.N, d_ssm = f.d_ssm;
  const std::vector<std::pair<int64_t, int64_t>> parts = {
      {0, d_ssm}, {d_ssm, d_ssm}, {2 * d_ssm, GN}, {2 * d_ssm + GN, GN}, {2 * d_ssm + 2 * GN, f.heads}};
  auto in_proj = [&](const std::string& name, bool weight) {
    at::Tensor w = t.take(hf + "in_proj." + name);
    const int64_t rows = 2 * d_ssm + 2 * GN + f.heads;
    if (w.dim() != (weight ? 2 : 1) || w.size(0) != rows || (weight && w.size(1) != f.d))
      throw CheckpointError(where + ": " + hf + "in_proj." + name + " has shape " + dims_text(w) + "; the config implies " +
                            std::to_string(rows) + (weight ? " x " + std::to_string(f.d) : std::string()));
    for (size_t k = 0; k < parts.size(); ++k)
      scale_rows(w, parts[k].first, parts[k].second, f.mup[k] * (weight ? f.ssm_in : 1.0));
    if (f.d_mlp > 0) {
      std::vector<int64_t> zeros = w.sizes().vec();
      zeros[0] = 2 * f.d_mlp;
      w = at::cat({at::zeros(zeros, w.options()), w}, 0);
    }
    m.weights[s + "in_proj." + name] = w;
    if (t.dtype(hf + "in_proj." + name) != "float32") m.source_dtype[s + "in_proj." + name] = t.dtype(hf + "in_proj." + name);
  };
  in_proj("weight", true);
  if (f.proj_bias) in_proj("bias", false);
  for (const char* p : {"conv1d.weight", "dt_bias", "A_log", "D"}) put(m, t, s + p, hf + p);
  if (conv_bias) put(m, t, s + "conv1d.bias", hf + "conv1d.bias");
  if (rmsnorm) put(m, t, s + "norm.weight", hf + "norm.weight");
  put(m, t, s + "out_proj.weight", hf + "out_proj.weight");
  at::Tensor& out = m.weights.at(s + "out_proj.weight");
  if (out.dim() != 2 || out.size(0) != f.d || out.size(1) != d_ssm)
    throw CheckpointError(where + ": " + hf + "out_proj.weight has shape " + dims_text(out) + "; the config implies " +
                          std::to_string(f.d) + " x " + std::to_string(d_ssm));
  scale_rows(out, 0, f.d, f.ssm_out);
  if (f.d_mlp > 0) out = at::cat({at::zeros({f.d, f.d_mlp}, out.options()), out}, 1);
  if (f.proj_bias) {
    put(m, t, s + "out_proj.bias", hf + "out_proj.bias");
    scale_rows(m.weights.at(s + "out_proj.bias"), 0, f.d, f.ssm_out);
  }
}

}  // namespace

Mapped map_hf_falcon_h1(const json& j, Tensors& t, const std::string& where) {
  Cfg c(j, where);
  require_silu(c);  // the MLP's activation and the Mamba2 convolution's
  const FalconH1 f = read_falcon_h1(c);
  Mapped m;
  json ssm = hf_mamba2_ssm(c, {f.N, c.get<int64_t>("mamba_d_conv", 4), f.expand, f.heads, f.headdim, f.groups,
                               c.get<int64_t>("mamba_chunk_size", 256)},
                           c.number("rms_norm_eps", 1e-5), c.get<bool>("mamba_conv_bias", true), f.proj_bias);
  ssm["d_ssm"] = f.d_ssm;
  ssm["rmsnorm"] = c.get<bool>("mamba_rms_norm", false);
  ssm["norm_before_gate"] = c.get<bool>("mamba_norm_before_gate", true);
  m.model_config = transformer_config(f.d, f.inter, f.L, f.V,
                                      rotary_attn_cfg({f.d, f.H, f.Hkv, f.D, f.D, f.attn_bias, f.attn_bias}, f.rope), true,
                                      c.number("rms_norm_eps", 1e-5), f.tie);
  // Every layer (transformer_config's attention layers) is a parallel hybrid instead.
  m.model_config["parallel_layer_idx"] = m.model_config.at("attn_layer_idx");
  m.model_config["attn_layer_idx"] = json::array();
  m.model_config["parallel_mix"] = "sum";
  m.model_config["ssm_cfg"] = ssm;
  if (f.mlp_bias) m.model_config["mlp_bias"] = true;
  if (f.emb != 1.0) m.model_config["embedding_multiplier"] = f.emb;
  c.finish("hf-falcon-h1", {"num_logits_to_keep"});  // generation only
  note_mlp_padding(m, f.inter);
  if (f.d_mlp > 0)
    m.notes.push_back("the SSM width " + std::to_string(f.d_ssm) + " is padded with " + std::to_string(f.d_mlp) +
                      " zero units to " + std::to_string(f.expand * f.d) + " (the output is unchanged)");

  put(m, t, "backbone.embedding.weight", "model.embed_tokens.weight");
  put(m, t, "backbone.norm_f.weight", "model.final_layernorm.weight");
  const int64_t hidden = gated_mlp_hidden(f.inter);
  for (int64_t i = 0; i < f.L; ++i) {
    const std::string hf = "model.layers." + std::to_string(i) + ".", n = "backbone.layers." + std::to_string(i) + ".";
    put(m, t, n + "norm.weight", hf + "input_layernorm.weight");
    put(m, t, n + "norm2.weight", hf + "pre_ff_layernorm.weight");
    // Attention: in_proj rows [q (H D); k (Hkv D); v (Hkv D)].
    const std::string a = n + "mixer.attn.";
    map_llama_attention(m, t, hf + "self_attn.", a, {f.H, f.Hkv, f.D, f.attn_bias, f.attn_bias}, where);
    at::Tensor& qkv = m.weights.at(a + "in_proj.weight");
    scale_rows(qkv, 0, (f.H + 2 * f.Hkv) * f.D, f.attn_in);
    scale_rows(qkv, f.H * f.D, f.Hkv * f.D, f.key);
    if (f.attn_bias) scale_rows(m.weights.at(a + "in_proj.bias"), f.H * f.D, f.Hkv * f.D, f.key);
    scale_rows(m.weights.at(a + "out_proj.weight"), 0, f.d, f.attn_out);
    if (f.attn_bias) scale_rows(m.weights.at(a + "out_proj.bias"), 0, f.d, f.attn_out);
    map_mamba(m, t, hf + "mamba.", n + "mixer.ssm.", f, ssm["rmsnorm"].get<bool>(), ssm["conv_bias"].get<bool>(), where);
    // SwiGLU: fc1 rows [value (up); gate], each padded to GatedMLP's hidden size.
    map_swiglu(m, t, hf + "feed_forward.", n + "mlp.", f.inter, f.mlp_bias, where);
    scale_rows(m.weights.at(n + "mlp.fc1.weight"), hidden, hidden, f.mlp[0]);
    if (f.mlp_bias) scale_rows(m.weights.at(n + "mlp.fc1.bias"), hidden, hidden, f.mlp[0]);
    scale_rows(m.weights.at(n + "mlp.fc2.weight"), 0, f.d, f.mlp[1]);
    if (f.mlp_bias) scale_rows(m.weights.at(n + "mlp.fc2.bias"), 0, f.d, f.mlp[1]);
  }
  handle_tied_head(m, t, f.tie, "lm_head.weight", where);
  if (!f.tie) scale_rows(m.weights.at("lm_head.weight"), 0, m.weights.at("lm_head.weight").size(0), f.head);
  return m;
}

}  // namespace mechscope::families
