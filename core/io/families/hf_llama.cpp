// Hugging Face Llama and the families that share its layout (model.layers.*.self_attn.{q,k,v,o}_proj,
// mlp.{gate,up,down}_proj, RMSNorms): attention with rotary and grouped kv heads, SwiGLU MLPs padded to GatedMLP's
// multiple of 128 (the padded units compute 0), q/k/v fused into in_proj. Llama ("llama"): biases on all four
// projections when attention_bias, on the MLP when mlp_bias. Mistral ("mistral"): no biases, a sliding window.
// Qwen2 ("qwen2"): biases on q, k and v but not o; a sliding window only on the layers listed as such. Qwen3
// ("qwen3"): Qwen2's windows, attention_bias, and an RMSNorm of each q and k head. Their mixtures of experts:
// Mixtral ("mixtral": Mistral's attention, every MLP a mixture whose picked probabilities are renormalised),
// Qwen2-MoE ("qwen2_moe": a gated shared expert beside the routed ones, some layers dense) and Qwen3-MoE
// ("qwen3_moe": Qwen3's attention, no shared expert).
#include "core/io/families/family.h"

#include <ATen/ATen.h>

namespace mechscope::families {

void map_llama_attention(Mapped& m, Tensors& t, const std::string& f, const std::string& n, const LlamaAttention& a,
                         const std::string& where) {
  const int64_t H = a.heads, Hkv = a.kv_heads, D = a.head_dim;
  auto fuse = [&](const std::string& suffix, const std::string& native) {
    at::Tensor q = t.take(f + "q_proj." + suffix), k = t.take(f + "k_proj." + suffix), v = t.take(f + "v_proj." + suffix);
    if (q.size(0) != H * D || k.size(0) != Hkv * D || v.size(0) != Hkv * D)
      throw CheckpointError(where + ": " + f + "{q,k,v}_proj have " + std::to_string(q.size(0)) + "/" +
                            std::to_string(k.size(0)) + "/" + std::to_string(v.size(0)) + " outputs; the config implies " +
                            std::to_string(H * D) + "/" + std::to_string(Hkv * D) + "/" + std::to_string(Hkv * D));
    m.weights[n + native] = at::cat({q, k, v}, 0);
    if (t.dtype(f + "q_proj." + suffix) != "float32") m.source_dtype[n + native] = t.dtype(f + "q_proj." + suffix);
  };
  fuse("weight", "in_proj.weight");
  put(m, t, n + "out_proj.weight", f + "o_proj.weight");
  if (a.qk_norm) {
    put(m, t, n + "q_norm.weight", f + "q_norm.weight");
    put(m, t, n + "k_norm.weight", f + "k_norm.weight");
  }
  if (a.qkv_bias) fuse("bias", "in_proj.bias");
  if (a.out_bias) put(m, t, n + "out_proj.bias", f + "o_proj.bias");
  if (t.has(f + "rotary_emb.inv_freq")) t.drop(f + "rotary_emb.inv_freq");  // a buffer, recomputed
}

void map_swiglu(Mapped& m, Tensors& t, const std::string& f, const std::string& n, int64_t inter, bool bias,
                const std::string& where) {
  const int64_t hidden = gated_mlp_hidden(inter);
  at::Tensor up = t.take(f + "up_proj.weight"), gate = t.take(f + "gate_proj.weight");
  at::Tensor down = t.take(f + "down_proj.weight");
  if (up.dim() != 2 || gate.sizes() != up.sizes() || up.size(0) != inter || down.dim() != 2 || down.size(1) != inter)
    throw CheckpointError(where + ": " + f + "{gate,up,down}_proj do not match intermediate_size " + std::to_string(inter));
  // GatedMLP: fc1 = [value; gate], y = value * silu(gate); Llama: down(up(x) * silu(gate(x))).
  m.weights[n + "fc1.weight"] = at::cat({pad_dim(up, 0, hidden), pad_dim(gate, 0, hidden)}, 0);
  m.weights[n + "fc2.weight"] = pad_dim(down, 1, hidden);
  if (bias) {  // the padded units' value bias is 0 too: 0 * act(gate) = 0
    m.weights[n + "fc1.bias"] =
        at::cat({pad_dim(t.take(f + "up_proj.bias"), 0, hidden), pad_dim(t.take(f + "gate_proj.bias"), 0, hidden)});
    put(m, t, n + "fc2.bias", f + "down_proj.bias");
  }
  if (t.dtype(f + "up_proj.weight") != "float32") {
    m.source_dtype[n + "fc1.weight"] = t.dtype(f + "up_proj.weight");
    m.source_dtype[n + "fc2.weight"] = t.dtype(f + "down_proj.weight");
  }
}

namespace {

// A sliding window and the layers it applies to (all when `layers` is empty).
struct Window {
  int64_t size = 0;
  std::vector<int64_t> layers;
};

// A mixture of experts at some layers: the native moe_cfg's sizes, where the tensors lie, the shared expert (Qwen2-MoE).
struct LlamaMoE {
  int64_t experts = 0, top_k = 0, hidden = 0, shared_hidden = 0;
  bool normalize = false;
  std::vector<int64_t> layers;  // empty: every layer
  ExpertLayout layout;
  json moe_cfg() const {
    json j = {{"num_experts", experts}, {"top_k", top_k}, {"hidden", hidden}, {"normalize_top_k", normalize}};
    if (!layers.empty()) j["layers"] = layers;
    if (shared_hidden > 0) j.update({{"shared_hidden", shared_hidden}, {"shared_gate", true}});
    return j;
  }
  bool at(int64_t layer) const {
    return experts > 0 && (layers.empty() || std::find(layers.begin(), layers.end(), layer) != layers.end());
  }
};

// Keys that only training reads (the routers' auxiliary loss and jitter): no effect on the forward pass.
const std::set<std::string> kRouterTrainingKeys = {"output_router_logits", "router_aux_loss_coef", "router_jitter_noise"};

// What distinguishes the members of the family, read by their own mappers from their own keys.
struct LlamaLike {
  std::string family;
  bool qkv_bias = false, out_bias = false, mlp_bias = false;
  Window window;               // size 0: none
  bool qk_norm = false;        // Qwen3: self_attn.q_norm, k_norm
  bool gemma = false;          // Gemma: RMSNorm by (1 + weight), GeGLU, the embedding scaled by sqrt(hidden_size),
                               // and tied by default
  bool gemma2 = false;         // Gemma 2 and 3: norms after the attention and the MLP, soft-capped scores and logits,
                               // the scores scaled by query_pre_attn_scalar ** -0.5, hidden_activation
  const Rope* rope = nullptr;  // the rotary when the mapper read it (Gemma 3's per layer kind); null: read_rope
  bool qk_norm_whole = false;  // OLMoE: q_norm and k_norm over the whole projections
  double clip_qkv = 0;         // OLMoE: q, k, v clamped
  double sliding_rotary_base = 0;  // Gemma 3: the sliding layers' own rotary base
  const LlamaMoE* moe = nullptr;  // the mixture of experts, or null (dense MLPs)
};

Mapped map_llama_like(const Cfg& c, Tensors& t, const LlamaLike& v) {
  const std::string& where = c.where();
  std::string act = "silu";
  if (v.gemma2) {
    act = hf_activation(c, "hidden_activation", "gelu_pytorch_tanh");  // what Gemma2MLP reads
    if (c.has("hidden_act") && hf_activation(c, "hidden_act", "") != act)
      throw CheckpointError(where + ": hidden_act and hidden_activation disagree; transformers' Gemma 2 applies "
                            "hidden_activation");
    if (c.get<bool>("use_bidirectional_attention", false))
      throw CheckpointError(where + ": use_bidirectional_attention true is not a causal language model");
  } else if (!v.gemma) {
    require_silu(c);
  } else {
    act = hf_activation(c, "hidden_act", "gelu_pytorch_tanh");
    // transformers 4.38-4.40 read hidden_activation; 4.41 on read hidden_act: the two must not disagree.
    if (c.has("hidden_activation") && hf_activation(c, "hidden_activation", "") != act)
      throw CheckpointError(where + ": hidden_act and hidden_activation disagree; which one applies depends on the "
                            "transformers version");
    if (c.get<bool>("use_bidirectional_attention", false))
      throw CheckpointError(where + ": use_bidirectional_attention true is not a causal language model");
  }
  const Rope rope = v.rope ? *v.rope : read_rope(c, 10000.0);
  Mapped m;
  const int64_t d = c.count("hidden_size", kMaxDModel), H = c.count("num_attention_heads", kMaxDModel);
  const int64_t Hkv = c.get<int64_t>("num_key_value_heads", H);
  if (H <= 0 || Hkv <= 0 || (d % H != 0 && !c.has("head_dim")))
    throw CheckpointError(where + ": hidden_size " + std::to_string(d) + " is not divisible by num_attention_heads " +
                          std::to_string(H));
  const int64_t D = c.get<int64_t>("head_dim", H > 0 ? d / H : 0);
  const int64_t L = c.count("num_hidden_layers", kMaxLayers);
  // Every layer a mixture: no dense MLP (Mixtral's intermediate_size is its experts' size, read by its mapper).
  const bool all_experts = v.moe && v.moe->experts > 0 && v.moe->layers.empty();
  const int64_t inter = all_experts ? 0 : c.count("intermediate_size", kMaxIntermediate);
  if (all_experts) (void)c.has("intermediate_size");  // no dense layer reads it
  const bool tie = c.get<bool>("tie_word_embeddings", v.gemma);
  json attn = rotary_attn_cfg({d, H, Hkv, D, D, v.qkv_bias, v.out_bias}, rope);
  if (v.window.size > 0) attn["sliding_window"] = v.window.size;
  if (!v.window.layers.empty()) attn["sliding_window_layers"] = v.window.layers;
  if (v.qk_norm) attn["qk_norm"] = true;
  if (v.sliding_rotary_base > 0) attn["sliding_rotary_base"] = v.sliding_rotary_base;
  if (v.qk_norm_whole) attn["qk_norm_whole"] = true;
  if (v.clip_qkv > 0) attn["clip_qkv"] = v.clip_qkv;
  if (v.gemma2) {
    const double scalar = c.number("query_pre_attn_scalar", 256);
    if (!(scalar > 0)) throw CheckpointError(where + ": query_pre_attn_scalar should be positive");
    attn["softmax_scale"] = 1.0 / std::sqrt(scalar);
    const double cap = c.number("attn_logit_softcapping", 0.0);
    if (cap < 0 || !std::isfinite(cap)) throw CheckpointError(where + ": attn_logit_softcapping should be positive or null");
    if (cap > 0) attn["softcap"] = cap;
  }
  m.model_config = transformer_config(d, inter, L, c.count("vocab_size", kMaxVocab), attn, true,
                                      c.number("rms_norm_eps", 1e-6), tie);
  if (v.mlp_bias) m.model_config["mlp_bias"] = true;
  if (act != "silu") m.model_config["mlp_activation"] = act;
  if (v.gemma2) {
    m.model_config["post_norms"] = true;
    const double cap = c.number("final_logit_softcapping", 0.0);
    if (cap < 0 || !std::isfinite(cap)) throw CheckpointError(where + ": final_logit_softcapping should be positive or null");
    if (cap > 0) m.model_config["final_logit_softcap"] = cap;
  }
  if (v.gemma) m.model_config["embedding_multiplier"] = static_cast<double>(static_cast<float>(std::sqrt(static_cast<double>(d))));
  if (v.moe && v.moe->experts > 0) m.model_config["moe_cfg"] = v.moe->moe_cfg();
  // Gemma 2's cache_implementation chooses generation's cache, not the forward pass.
  c.finish(v.family, v.moe ? kRouterTrainingKeys : v.gemma2 ? std::set<std::string>{"cache_implementation"} : std::set<std::string>{});
  if (inter > 0) note_mlp_padding(m, inter);
  put(m, t, "backbone.embedding.weight", "model.embed_tokens.weight");
  put(m, t, "backbone.norm_f.weight", "model.norm.weight");
  // Gemma's RMSNorm multiplies by (1 + weight), computed in float32: stored here as that sum.
  auto plus_one = [&](const std::string& native) {
    if (v.gemma) m.weights[native] = m.weights[native] + 1.0;
  };
  plus_one("backbone.norm_f.weight");
  for (int64_t i = 0; i < L; ++i) {
    const std::string f = "model.layers." + std::to_string(i) + ".", n = "backbone.layers." + std::to_string(i) + ".";
    put(m, t, n + "norm.weight", f + "input_layernorm.weight");
    plus_one(n + "norm.weight");
    if (v.gemma2) {  // post_attention_layernorm is the attention's output norm there; pre_feedforward_layernorm the MLP's
      for (const auto& [native, foreign] : std::vector<std::pair<std::string, std::string>>{
               {"post_mixer_norm", "post_attention_layernorm"}, {"norm2", "pre_feedforward_layernorm"},
               {"post_mlp_norm", "post_feedforward_layernorm"}}) {
        put(m, t, n + native + ".weight", f + foreign + ".weight");
        plus_one(n + native + ".weight");
      }
    } else {
      put(m, t, n + "norm2.weight", f + "post_attention_layernorm.weight");
      plus_one(n + "norm2.weight");
    }
    map_llama_attention(m, t, f + "self_attn.", n + "mixer.", {H, Hkv, D, v.qkv_bias, v.out_bias, v.qk_norm || v.qk_norm_whole},
                        where);
    if (v.qk_norm) {  // Gemma 3's q/k norms multiply by (1 + weight) too
      plus_one(n + "mixer.q_norm.weight");
      plus_one(n + "mixer.k_norm.weight");
    }
    if (v.moe && v.moe->at(i)) {
      map_experts(m, t, f, n + "mlp.", v.moe->layout, v.moe->experts, v.moe->hidden, where);
      if (v.moe->shared_hidden > 0) {
        map_swiglu_exact(m, t, f + "mlp.shared_expert.", n + "mlp.shared.", v.moe->shared_hidden, where);
        put(m, t, n + "mlp.shared_gate.weight", f + "mlp.shared_expert_gate.weight");
      }
    } else {
      map_swiglu(m, t, f + "mlp.", n + "mlp.", inter, v.mlp_bias, where);
    }
  }
  if (!tie) put(m, t, "lm_head.weight", "lm_head.weight");
  else if (t.has("lm_head.weight")) handle_tied_head(m, t, true, "lm_head.weight", where);
  return m;
}

// A window of at least one position, or null (none).
int64_t window_of(const Cfg& c, const std::string& key) {
  if (!c.has(key)) return 0;
  const int64_t w = c.req<int64_t>(key);
  if (w < 1) throw CheckpointError(c.where() + ": " + key + " is " + std::to_string(w) + "; a window holds at least 1 position");
  return w;
}

// The layers layer_types (or its default) calls sliding_attention; any kind but it and full_attention is refused.
std::vector<int64_t> sliding_layers(const std::vector<std::string>& kinds, const std::string& where) {
  std::vector<int64_t> out;
  for (size_t i = 0; i < kinds.size(); ++i) {
    if (kinds[i] != "full_attention" && kinds[i] != "sliding_attention")
      throw CheckpointError(where + ": layer_types holds '" + kinds[i] + "'; MechScope knows full_attention and sliding_attention");
    if (kinds[i] == "sliding_attention") out.push_back(static_cast<int64_t>(i));
  }
  return out;
}

// Qwen2's and Qwen3's windows: transformers 5 (and 4.57) list each layer's kind in layer_types; older files say
// use_sliding_window with max_window_layers (the layers from that index on slide). Where only some layers slide,
// the window names them (attn_cfg.sliding_window_layers).
Window qwen_window(const Cfg& c) {
  const std::string& where = c.where();
  const int64_t L = c.count("num_hidden_layers", kMaxLayers);
  const bool use = c.get<bool>("use_sliding_window", false);
  const int64_t max_window_layers = c.get<int64_t>("max_window_layers", L);
  std::vector<std::string> kinds = hf_layer_kinds(c, "layer_types", L);
  if (kinds.empty())
    for (int64_t i = 0; i < L; ++i) kinds.push_back(use && i >= max_window_layers ? "sliding_attention" : "full_attention");
  Window w;
  w.layers = sliding_layers(kinds, where);
  const int64_t window = use ? window_of(c, "sliding_window") : 0;
  if (!use) (void)c.has("sliding_window");  // not applied without use_sliding_window, as in transformers
  if (!w.layers.empty() && (!use || window == 0))
    throw CheckpointError(where + ": layer_types lists sliding_attention layers but use_sliding_window/sliding_window "
                          "give no window");
  if (w.layers.empty()) return {};
  w.size = window;
  if (static_cast<int64_t>(w.layers.size()) == L) w.layers.clear();  // every layer
  return w;
}

}  // namespace

Mapped map_hf_llama(const json& j, Tensors& t, const std::string& where) {
  Cfg c(j, where);
  const bool bias = c.get<bool>("attention_bias", false);
  return map_llama_like(c, t, {"hf-llama", bias, bias, c.get<bool>("mlp_bias", false), {}});
}

// Gemma (model_type "gemma", version 1): Llama's layout with a GeGLU MLP (gelu_pytorch_tanh), RMSNorms by
// (1 + weight), the embedding multiplied by sqrt(hidden_size) (in float32: the float nearest to it), tied.
Mapped map_hf_gemma(const json& j, Tensors& t, const std::string& where) {
  Cfg c(j, where);
  const bool bias = c.get<bool>("attention_bias", false);
  LlamaLike v{"hf-gemma", bias, bias, false, {}};
  v.gemma = true;
  return map_llama_like(c, t, v);
}

namespace {

// Gemma 2's and 3's windows: the layers layer_types calls sliding_attention (absent: all but every `pattern`-th,
// as transformers defaults: Gemma 2 alternates, Gemma 3 has five sliding layers to one global), of sliding_window.
Window gemma_window(const Cfg& c, int64_t pattern) {
  const std::string& where = c.where();
  const int64_t L = c.count("num_hidden_layers", kMaxLayers);
  for (const char* k : {"sliding_window_pattern", "_sliding_window_pattern"})  // Gemma 3's, read when layer_types is absent
    if (c.has(k)) pattern = c.req<int64_t>(k);
  if (pattern < 1) throw CheckpointError(where + ": sliding_window_pattern should be at least 1");
  std::vector<std::string> kinds = hf_layer_kinds(c, "layer_types", L);
  if (kinds.empty())
    for (int64_t i = 0; i < L; ++i) kinds.push_back((i + 1) % pattern ? "sliding_attention" : "full_attention");
  Window w;
  w.layers = sliding_layers(kinds, where);
  w.size = window_of(c, "sliding_window");
  if (!w.layers.empty() && w.size == 0)
    throw CheckpointError(where + ": layer_types lists sliding_attention layers but sliding_window gives no window");
  if (w.layers.empty()) w.size = 0;
  else if (static_cast<int64_t>(w.layers.size()) == L) w.layers.clear();  // every layer
  return w;
}

}  // namespace

// Gemma 2 (model_type "gemma2"): Gemma's layer with RMSNorms (by 1 + weight) after the attention and the MLP too,
// sliding windows at the layers layer_types calls sliding_attention (absent: the even ones, as transformers
// defaults), the scores scaled by query_pre_attn_scalar ** -0.5 and soft-capped, the logits soft-capped.
Mapped map_hf_gemma2(const json& j, Tensors& t, const std::string& where) {
  Cfg c(j, where);
  const bool bias = c.get<bool>("attention_bias", false);
  LlamaLike v{"hf-gemma2", bias, bias, false, gemma_window(c, 2)};
  v.gemma = v.gemma2 = true;
  return map_llama_like(c, t, v);
}

// Gemma 3's text model (model_type "gemma3_text"): Gemma 2's layer with q/k norms (Qwen3's, by 1 + weight), five
// sliding layers to one global by default, and a rotary per layer kind: the global layers' rope_theta and
// rope_scaling, the sliding layers' default rotary of base rope_local_base_freq (transformers 4); transformers 5
// writes both in rope_parameters, keyed by layer kind.
Mapped map_hf_gemma3_text(const json& j, Tensors& t, const std::string& where) {
  Cfg c(j, where);
  Rope global;
  double local = 10000.0;
  const bool per_kind = c.has("rope_parameters") && c.raw("rope_parameters").is_object() &&
                        c.raw("rope_parameters").contains("full_attention");
  if (per_kind) {
    const json& rp = c.raw("rope_parameters");
    for (const auto& [k, v] : rp.items())
      if (k != "full_attention" && k != "sliding_attention")
        throw CheckpointError(where + ": rope_parameters." + k + " is not a layer kind of Gemma 3");
    if (c.has("rope_theta") || c.has("rope_scaling") || c.has("rope_local_base_freq"))
      throw CheckpointError(where + ": rope_theta, rope_scaling or rope_local_base_freq beside rope_parameters by layer "
                            "kind; which one applies is ambiguous");
    json g = {{"rope_parameters", rp.at("full_attention")}};
    if (c.has("max_position_embeddings")) g["max_position_embeddings"] = c.raw("max_position_embeddings");
    global = read_rope(Cfg(g, where + " (full_attention)"), 1000000.0);
    if (rp.contains("sliding_attention")) {
      const json& sl = rp.at("sliding_attention");
      const Cfg sc(sl, where + " rope_parameters.sliding_attention");
      if (sc.get<std::string>("rope_type", "default") != "default")
        throw CheckpointError(where + ": rope_parameters.sliding_attention.rope_type '" + sl.value("rope_type", "") +
                              "' is not supported (Gemma 3's sliding layers rotate by the default rotary)");
      local = sc.number("rope_theta", 10000.0);
      sc.finish("hf-gemma3-text", {"rope_type", "rope_theta"});
    }
  } else {
    global = read_rope(c, 1000000.0);
    local = c.number("rope_local_base_freq", 10000.0);
  }
  if (!(local > 0) || !std::isfinite(local)) throw CheckpointError(where + ": the sliding layers' rotary base is not positive");
  const bool bias = c.get<bool>("attention_bias", false);
  LlamaLike v{"hf-gemma3-text", bias, bias, false, gemma_window(c, 6), true};
  v.gemma = v.gemma2 = true;
  v.rope = &global;
  v.sliding_rotary_base = local;
  return map_llama_like(c, t, v);
}

Mapped map_hf_mistral(const json& j, Tensors& t, const std::string& where) {
  Cfg c(j, where);
  return map_llama_like(c, t, {"hf-mistral", false, false, false, {window_of(c, "sliding_window"), {}}});
}

Mapped map_hf_qwen2(const json& j, Tensors& t, const std::string& where) {
  Cfg c(j, where);
  return map_llama_like(c, t, {"hf-qwen2", true, false, false, qwen_window(c)});
}

// Qwen3: Qwen2's layout with attention_bias on all four projections (off by default) and an RMSNorm of each q and
// k head before the rotary.
Mapped map_hf_qwen3(const json& j, Tensors& t, const std::string& where) {
  Cfg c(j, where);
  const bool bias = c.get<bool>("attention_bias", false);
  return map_llama_like(c, t, {"hf-qwen3", bias, bias, false, qwen_window(c), true});
}

namespace {

// The experts of the Qwen MoE families: num_experts (5.x's Qwen3-MoE writes num_local_experts; 0 = every layer
// dense), num_experts_per_tok, moe_intermediate_size, norm_topk_prob; a layer is a mixture unless mlp_only_layers
// lists it or (layer + 1) is not a multiple of decoder_sparse_step, as transformers decides.
LlamaMoE qwen_moe(const Cfg& c, bool shared) {
  const std::string& where = c.where();
  const int64_t L = c.count("num_hidden_layers", kMaxLayers);
  if (c.has("num_experts") && c.has("num_local_experts") &&
      c.req<int64_t>("num_experts") != c.req<int64_t>("num_local_experts"))
    throw CheckpointError(where + ": num_experts and num_local_experts disagree");
  LlamaMoE moe;
  moe.experts = c.has("num_experts") ? c.req<int64_t>("num_experts") : c.get<int64_t>("num_local_experts", 0);
  if (moe.experts < 0 || moe.experts > kMaxExperts)
    throw CheckpointError(where + ": num_experts " + std::to_string(moe.experts) + " is outside [0, " +
                          std::to_string(kMaxExperts) + "]");
  moe.layout = {"mlp.", "mlp.", "gate.weight", "gate_proj", "up_proj", "down_proj"};
  const int64_t step = c.get<int64_t>("decoder_sparse_step", 1);
  if (step < 1) throw CheckpointError(where + ": decoder_sparse_step " + std::to_string(step) + " is not a positive period");
  const std::vector<int64_t> dense = hf_layer_list(c, "mlp_only_layers");
  if (moe.experts == 0) {
    for (const char* k : {"num_experts_per_tok", "moe_intermediate_size", "norm_topk_prob", "shared_expert_intermediate_size"})
      (void)c.has(k);  // no mixture reads them
    return moe;
  }
  moe.top_k = c.count("num_experts_per_tok", moe.experts);
  moe.hidden = c.count("moe_intermediate_size", kMaxIntermediate);
  moe.normalize = c.get<bool>("norm_topk_prob", false);
  if (shared) moe.shared_hidden = c.count("shared_expert_intermediate_size", kMaxIntermediate);
  for (int64_t i = 0; i < L; ++i)
    if (std::find(dense.begin(), dense.end(), i) == dense.end() && (i + 1) % step == 0) moe.layers.push_back(i);
  if (moe.layers.empty()) moe.experts = 0;  // every layer dense
  if (static_cast<int64_t>(moe.layers.size()) == L) moe.layers.clear();
  return moe;
}

}  // namespace

// Mixtral: Mistral with a mixture of num_local_experts experts (w1 gate, w3 up, w2 down) at every layer, the top
// num_experts_per_tok renormalised.
Mapped map_hf_mixtral(const json& j, Tensors& t, const std::string& where) {
  Cfg c(j, where);
  LlamaMoE moe;
  moe.experts = c.count("num_local_experts", kMaxExperts);
  moe.top_k = c.count("num_experts_per_tok", moe.experts);
  moe.hidden = c.count("intermediate_size", kMaxIntermediate);
  moe.normalize = true;
  moe.layout = {"block_sparse_moe.", "mlp.", "gate.weight", "w1", "w3", "w2"};
  LlamaLike v{"hf-mixtral", false, false, false, {window_of(c, "sliding_window"), {}}};
  v.moe = &moe;
  return map_llama_like(c, t, v);
}

// Qwen2-MoE: Qwen2's attention (q/k/v biases by qkv_bias), routed experts plus a shared expert scaled by
// sigmoid(shared_expert_gate(x)).
Mapped map_hf_qwen2_moe(const json& j, Tensors& t, const std::string& where) {
  Cfg c(j, where);
  const LlamaMoE moe = qwen_moe(c, true);
  LlamaLike v{"hf-qwen2-moe", c.get<bool>("qkv_bias", true), false, false, qwen_window(c)};
  v.moe = &moe;
  return map_llama_like(c, t, v);
}

// Qwen3-MoE: Qwen3's attention (q/k norms, attention_bias), routed experts only; a window on every layer where
// use_sliding_window sets one.
Mapped map_hf_qwen3_moe(const json& j, Tensors& t, const std::string& where) {
  Cfg c(j, where);
  const LlamaMoE moe = qwen_moe(c, false);
  const bool bias = c.get<bool>("attention_bias", false);
  Window w;
  if (c.get<bool>("use_sliding_window", false)) w.size = window_of(c, "sliding_window");
  else (void)c.has("sliding_window");  // transformers applies none without use_sliding_window
  for (const char* k : {"max_window_layers", "layer_types"})
    if (c.has(k)) throw CheckpointError(where + ": '" + k + "' is not read by transformers' Qwen3-MoE; refusing to guess");
  LlamaLike v{"hf-qwen3-moe", bias, bias, false, w, true};
  v.moe = &moe;
  return map_llama_like(c, t, v);
}

// OLMoE (model_type "olmoe"): Llama's layout with one RMSNorm over each whole q and k projection, an optional clamp
// of q, k and v (clip_qkv), and a mixture of experts in every layer (softmax routing, top num_experts_per_tok,
// renormalised when norm_topk_prob; experts of intermediate_size).
Mapped map_hf_olmoe(const json& j, Tensors& t, const std::string& where) {
  Cfg c(j, where);
  LlamaMoE moe;
  moe.experts = c.count("num_experts", kMaxExperts);
  moe.top_k = c.count("num_experts_per_tok", moe.experts);
  moe.hidden = c.count("intermediate_size", kMaxIntermediate);
  moe.normalize = c.get<bool>("norm_topk_prob", false);
  moe.layout = {"mlp.", "mlp.", "gate.weight", "gate_proj", "up_proj", "down_proj"};
  const bool bias = c.get<bool>("attention_bias", false);
  LlamaLike v{"hf-olmoe", bias, bias, false, {}};
  v.moe = &moe;
  v.qk_norm_whole = true;
  v.clip_qkv = c.number("clip_qkv", 0.0);
  if (v.clip_qkv < 0 || !std::isfinite(v.clip_qkv)) throw CheckpointError(where + ": clip_qkv should be positive or null");
  return map_llama_like(c, t, v);
}

}  // namespace mechscope::families
