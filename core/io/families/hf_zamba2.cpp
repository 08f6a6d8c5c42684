// Hugging Face Zamba2ForCausalLM (model_type "zamba2"): Mamba2 layers (model.layers.{i}.mamba, or .mamba_decoder.mamba
// at a hybrid layer; Hugging Face's Mamba2 layout with a grouped gated RMSNorm of epsilon 1e-5 and dt clamped below
// at time_step_min) and, at the "hybrid" layers, a shared transformer block before the Mamba2: num_mem_blocks blocks
// used in turn, each reading [residual ; embedding] (2 hidden_size) with per-use LoRA adapters on q, k, v and the
// MLP's gate_up, and a per-layer linear map whose output joins the Mamba2's input. MechScope's shared block
// (shared_cfg) holds each use's weights with its adapters folded in: W + B A.
#include "core/io/families/family.h"

#include <algorithm>
#include <map>

#include <ATen/ATen.h>

namespace mechscope::families {

namespace {

// The shared blocks' tensors. transformers ties every use of a block to its first use, which holds the block's
// weights and all its adapters (list index k: the k-th hybrid layer's). transformers 5 writes them there only;
// 4.57's torch.save files repeat them under every use, and each repeat must then equal the first use's copy.
class SharedWeights {
 public:
  SharedWeights(Tensors& t, std::string where) : t_(t), where_(std::move(where)) {}
  at::Tensor get(int64_t first, const std::string& name) { return take(prefix(first) + name); }
  /// The copies under a later use of the block whose first use is `first`: each must equal the first's.
  void check_repeats(int64_t layer, int64_t first) {
    const std::string p = prefix(layer);
    for (const auto& n : t_.names()) {
      if (n.rfind(p, 0) != 0) continue;
      const std::string theirs = prefix(first) + n.substr(p.size());
      if (!t_.has(theirs))
        throw CheckpointError(where_ + ": '" + n + "' has no counterpart '" + theirs + "' in the first use of its "
                              "shared block (num_mem_blocks and layers_block_type decide which layers share one)");
      if (!at::equal(take(n), take(theirs)))
        throw CheckpointError(where_ + ": '" + n + "' differs from '" + theirs + "', which transformers ties it to "
                              "(num_mem_blocks and layers_block_type decide which layers share a block)");
    }
  }

 private:
  static std::string prefix(int64_t layer) { return "model.layers." + std::to_string(layer) + ".shared_transformer."; }
  at::Tensor take(const std::string& n) {
    auto it = taken_.find(n);
    if (it != taken_.end()) return it->second;
    return taken_[n] = t_.take(n, /*as_float32=*/true);
  }
  Tensors& t_;
  std::string where_;
  std::map<std::string, at::Tensor> taken_;
};

// W + B A of a LoRA adapter (Linear A [r, in], then Linear B [out, r]), computed in double and rounded once.
at::Tensor fold(const at::Tensor& w, const at::Tensor& a, const at::Tensor& b, const std::string& what,
                const std::string& where) {
  if (a.dim() != 2 || b.dim() != 2 || a.size(1) != w.size(1) || b.size(0) != w.size(0) || b.size(1) != a.size(0))
    throw CheckpointError(where + ": the adapter of " + what + " (" + dims_text(a) + " then " + dims_text(b) +
                          ") does not fit its weight " + dims_text(w));
  return (w.to(at::kDouble) + at::matmul(b.to(at::kDouble), a.to(at::kDouble))).to(at::kFloat);
}

}  // namespace

Mapped map_hf_zamba2(const json& j, Tensors& t, const std::string& where) {
  Cfg c(j, where);
  Mapped m;
  const int64_t d = c.count("hidden_size", kMaxDModel), L = c.count("num_hidden_layers", kMaxLayers);
  const int64_t V = c.count("vocab_size", kMaxVocab), inter = c.count("intermediate_size", kMaxIntermediate);
  const int64_t H = c.count("num_attention_heads", kMaxDModel), Hkv = c.get<int64_t>("num_key_value_heads", H);
  if (c.get<bool>("add_bias_linear", false))
    throw CheckpointError(where + ": add_bias_linear true (biases on the projections) is not supported");
  if (c.get<bool>("use_long_context", false))
    throw CheckpointError(where + ": use_long_context true (a rescaled rotary for long inputs) is not supported");
  if ((2 * d) % H != 0 || Hkv <= 0 || H % Hkv != 0)
    throw CheckpointError(where + ": 2 x hidden_size " + std::to_string(2 * d) + ", num_attention_heads " +
                          std::to_string(H) + " and num_key_value_heads " + std::to_string(Hkv) + " do not divide");
  const int64_t D = 2 * d / H;  // the attention reads [residual ; embedding]
  // Values transformers derives from the others: checked, so that a file that says otherwise is refused.
  if (c.has("attention_head_dim") && c.req<int64_t>("attention_head_dim") != D)
    throw CheckpointError(where + ": attention_head_dim " + std::to_string(c.req<int64_t>("attention_head_dim")) +
                          " is not 2 x hidden_size / num_attention_heads = " + std::to_string(D));
  if (c.has("attention_hidden_size") && c.req<int64_t>("attention_hidden_size") != 2 * d)
    throw CheckpointError(where + ": attention_hidden_size should be 2 x hidden_size = " + std::to_string(2 * d));
  // The layers: "mamba" (4.x) or "linear_attention" (5.x), and "hybrid".
  const std::vector<std::string> kinds = hf_layer_kinds(c, "layers_block_type", L);
  if (kinds.empty()) throw CheckpointError(where + ": the key 'layers_block_type' is missing");
  std::vector<int64_t> hybrid;
  for (int64_t i = 0; i < L; ++i) {
    if (kinds[i] == "hybrid") hybrid.push_back(i);
    else if (kinds[i] != "mamba" && kinds[i] != "linear_attention")
      throw CheckpointError(where + ": layers_block_type[" + std::to_string(i) + "] '" + kinds[i] +
                            "' is not a Zamba2 layer (\"mamba\", \"linear_attention\" or \"hybrid\")");
  }
  if (c.has("hybrid_layer_ids") && hf_layer_list(c, "hybrid_layer_ids") != hybrid)
    throw CheckpointError(where + ": hybrid_layer_ids disagrees with the hybrid layers of layers_block_type");
  const int64_t blocks = c.get<int64_t>("num_mem_blocks", 1);
  if (!hybrid.empty() && (blocks < 1 || blocks > static_cast<int64_t>(hybrid.size())))
    throw CheckpointError(where + ": num_mem_blocks " + std::to_string(blocks) + " should be 1.." +
                          std::to_string(hybrid.size()) + " (the hybrid layers)");
  const bool attn_adapters = c.get<bool>("use_shared_attention_adapter", false);
  c.get<int64_t>("adapter_rank", 128);  // the adapters' tensors give their rank (checked as they are folded)
  const std::string act = hf_activation(c, "hidden_act", "gelu");
  // The Mamba2 layers. transformers' Zamba2 gives the convolution a bias whatever use_conv_bias says, and its norm
  // epsilon is 1e-5 (not rms_norm_eps); dt is clamped below at time_step_min only.
  c.get<bool>("use_conv_bias", true);
  const int64_t expand = c.get<int64_t>("mamba_expand", 2), heads = c.get<int64_t>("n_mamba_heads", 8);
  if (expand <= 0 || heads <= 0 || (expand * d) % heads != 0)
    throw CheckpointError(where + ": n_mamba_heads " + std::to_string(heads) + " does not divide mamba_expand x hidden_size");
  const int64_t headdim = c.get<int64_t>("mamba_headdim", expand * d / heads);
  if (headdim * heads != expand * d)
    throw CheckpointError(where + ": mamba_headdim x n_mamba_heads should be mamba_expand x hidden_size");
  json ssm = hf_mamba2_ssm(c, {c.get<int64_t>("mamba_d_state", 64), c.get<int64_t>("mamba_d_conv", 4), expand, heads,
                               headdim, c.get<int64_t>("mamba_ngroups", 1), c.get<int64_t>("chunk_size", 256)},
                           1e-5, true, false);
  ssm["dt_limit"] = json::array({c.number("time_step_min", 0.001), nullptr});
  const double eps = c.number("rms_norm_eps", 1e-5);
  const bool rope_on = c.get<bool>("use_mem_rope", false);
  Rope rope;
  if (rope_on) rope = read_rope(c, 10000.0);
  else {  // no rotary: its settings are read (so as not to be refused) but have no effect
    c.has("rope_theta");
    c.has("rope_parameters");
    c.has("rope_scaling");
  }
  json attn = rotary_attn_cfg({2 * d, H, Hkv, D, rope_on ? D : 0}, rope);
  attn["head_dim"] = D;
  attn["softmax_scale"] = 1.0 / std::sqrt(static_cast<double>(D) / 2.0);  // transformers' (head_dim / 2) ** -0.5
  const bool tie = c.get<bool>("tie_word_embeddings", true);
  m.model_config = {{"d_model", d},        {"n_layer", L},           {"vocab_size", V},
                    {"d_intermediate", 0}, {"ssm_cfg", ssm},          {"rms_norm", true},
                    {"norm_epsilon", eps}, {"residual_in_fp32", true}, {"tie_embeddings", tie},
                    {"pad_vocab_size_multiple", 1}};
  if (!hybrid.empty())
    m.model_config["shared_cfg"] = {{"layers", hybrid}, {"attn", attn}, {"hidden", inter}, {"mlp_activation", act}};
  // kv_channels and num_query_groups are written by transformers' config and read by nothing; num_logits_to_keep is
  // generation's; use_mamba_kernels and use_mem_eff_path choose kernels of the same math.
  c.finish("hf-zamba2", {"num_logits_to_keep", "kv_channels", "num_query_groups", "use_mamba_kernels", "use_mem_eff_path"});

  put(m, t, "backbone.embedding.weight", "model.embed_tokens.weight");
  put(m, t, "backbone.norm_f.weight", "model.final_layernorm.weight");
  SharedWeights sw(t, where);
  for (int64_t i = 0; i < L; ++i) {
    const std::string f = "model.layers." + std::to_string(i) + ".", n = "backbone.layers." + std::to_string(i) + ".";
    const auto at = std::find(hybrid.begin(), hybrid.end(), i);
    const std::string mamba = at == hybrid.end() ? f : f + "mamba_decoder.";
    put(m, t, n + "norm.weight", mamba + "input_layernorm.weight");
    map_hf_mamba2_layer(m, t, mamba + "mamba.", n + "mixer.", ssm);
    if (at == hybrid.end()) continue;
    const int64_t k = at - hybrid.begin(), first = hybrid[k % blocks];  // its block's first use holds the weights
    const std::string s = n + "shared.", ks = std::to_string(k);
    auto adapted = [&](const std::string& w, const std::string& list, bool on) {
      at::Tensor base = sw.get(first, w);
      if (!on) return base.clone();
      return fold(base, sw.get(first, list + "." + ks + ".0.weight"), sw.get(first, list + "." + ks + ".1.weight"),
                  "layer " + std::to_string(i) + "'s " + w, where);
    };
    m.weights[s + "norm.weight"] = sw.get(first, "input_layernorm.weight").clone();
    m.weights[s + "attn.in_proj.weight"] =
        at::cat({adapted("self_attn.q_proj.weight", "self_attn.linear_q_adapter_list", attn_adapters),
                 adapted("self_attn.k_proj.weight", "self_attn.linear_k_adapter_list", attn_adapters),
                 adapted("self_attn.v_proj.weight", "self_attn.linear_v_adapter_list", attn_adapters)});
    m.weights[s + "attn.out_proj.weight"] = sw.get(first, "self_attn.o_proj.weight").clone();
    m.weights[s + "norm2.weight"] = sw.get(first, "pre_ff_layernorm.weight").clone();
    // gate_up [gate | up] with act(gate) * up; MechScope's gated MLP is fc1 = [value | gate], value * act(gate).
    const at::Tensor gate_up = adapted("feed_forward.gate_up_proj.weight", "feed_forward.gate_up_proj_adapter_list", true);
    if (gate_up.size(0) != 2 * inter)
      throw CheckpointError(where + ": gate_up_proj of layer " + std::to_string(i) + " is " + dims_text(gate_up) +
                            ", not [2 x intermediate_size, hidden_size]");
    m.weights[s + "mlp.fc1.weight"] = at::cat({gate_up.narrow(0, inter, inter), gate_up.narrow(0, 0, inter)});
    m.weights[s + "mlp.fc2.weight"] = sw.get(first, "feed_forward.down_proj.weight").clone();
    put(m, t, s + "proj.weight", f + "linear.weight");
  }
  for (size_t k = 0; k < hybrid.size(); ++k)
    if (hybrid[k] != hybrid[k % blocks]) sw.check_repeats(hybrid[k], hybrid[k % blocks]);
  handle_tied_head(m, t, tie, "lm_head.weight", where);
  return m;
}

double hf_zamba2_extra_bytes(const json& j) {
  // Each use beyond a block's first holds a copy of it (the adapters folded in): its norms, q/k/v and o, the MLP.
  // A config the mapper will refuse counts nothing here.
  auto num = [&](const char* k, double def) {
    return j.contains(k) && j[k].is_number() ? j[k].get<double>() : def;
  };
  const double d = num("hidden_size", 0), H = num("num_attention_heads", 0), I = num("intermediate_size", 0);
  const double Hkv = num("num_key_value_heads", H), blocks = num("num_mem_blocks", 1);
  if (!(d > 0 && H > 0 && I > 0) || !j.contains("layers_block_type") || !j["layers_block_type"].is_array()) return 0;
  double uses = 0;
  for (const auto& k : j["layers_block_type"]) uses += k == "hybrid" ? 1 : 0;
  AttnConfig a;
  a.num_heads = static_cast<int64_t>(H);
  a.num_heads_kv = static_cast<int64_t>(Hkv);
  a.head_dim = static_cast<int64_t>(2 * d / H);
  // Less proj: that is each layer's own `linear`, in the file for every use.
  const double block = shared_block_parameters(static_cast<int64_t>(d), a, static_cast<int64_t>(I)) - d * d;
  return std::max(0.0, uses - blocks) * block * 4.0;
}

}  // namespace mechscope::families
