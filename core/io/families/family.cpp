// What the importers share, and the table of families (see family.h).
#include "core/io/families/family.h"

#include <ATen/ATen.h>

namespace mechscope::families {

// Adding a family: its file under core/io/families/, its map_ function declared in family.h, and one line here.
const std::vector<Family>& all() {
  static const std::vector<Family> families = {{"mamba_ssm", "", map_mamba_ssm},
                                               {"hf-mamba", "mamba", map_hf_mamba},
                                               {"hf-falcon-mamba", "falcon_mamba", map_hf_falcon_mamba},
                                               {"hf-mamba2", "mamba2", map_hf_mamba2},
                                               {"hf-llama", "llama", map_hf_llama},
                                               {"hf-mistral", "mistral", map_hf_mistral},
                                               {"hf-gemma", "gemma", map_hf_gemma},
                                               {"hf-qwen2", "qwen2", map_hf_qwen2},
                                               {"hf-qwen3", "qwen3", map_hf_qwen3},
                                               {"hf-mixtral", "mixtral", map_hf_mixtral},
                                               {"hf-qwen2-moe", "qwen2_moe", map_hf_qwen2_moe},
                                               {"hf-qwen3-moe", "qwen3_moe", map_hf_qwen3_moe},
                                               {"hf-jamba", "jamba", map_hf_jamba},
                                               {"hf-zamba2", "zamba2", map_hf_zamba2, hf_zamba2_extra_bytes},
                                               {"hf-gemma2", "gemma2", map_hf_gemma2},
                                               {"hf-olmoe", "olmoe", map_hf_olmoe},
                                               {"hf-phi3", "phi3", map_hf_phi3},
                                               {"hf-gemma3-text", "gemma3_text", map_hf_gemma3_text},
                                               {"hf-nemotron-h", "nemotron_h", map_hf_nemotron_h},
                                               {"hf-gpt2", "gpt2", map_hf_gpt2},
                                               {"hf-bamba", "bamba", map_hf_bamba},
                                               {"hf-falcon-h1", "falcon_h1", map_hf_falcon_h1},
                                               {"hf-granite-hybrid", "granitemoehybrid", map_hf_granite_hybrid},
                                               {"hf-gpt-neox", "gpt_neox", map_hf_gpt_neox}};
  return families;
}

void put(Mapped& m, Tensors& t, const std::string& native, const std::string& foreign) {
  t.watch(&m.weights);
  at::Tensor w = t.take(foreign);
  m.weights[native] = std::move(w);
  if (t.dtype(foreign) != "float32") m.source_dtype[native] = t.dtype(foreign);
}

// Ties: drop lm_head.weight when it equals the embedding; a different one means the config is wrong.
void handle_tied_head(Mapped& m, Tensors& t, bool tie, const std::string& head, const std::string& where) {
  if (!t.has(head)) {
    if (!tie) throw CheckpointError(where + ": tie_embeddings/tie_word_embeddings is false but the weights lack " + head);
    return;
  }
  if (tie) {
    at::Tensor h = t.take(head);
    const at::Tensor& e = m.weights.at("backbone.embedding.weight");
    if (!h.sizes().equals(e.sizes()) || !at::equal(h.to(e.scalar_type()), e))  // e may be settled (bfloat16)
      throw CheckpointError(where + ": the config ties the output head to the embedding, but " + head +
                            " differs from the embedding; set tie_embeddings (mamba_ssm) or tie_word_embeddings (Hugging "
                            "Face) to false in config.json");
    return;
  }
  put(m, t, "lm_head.weight", head);
}

// Copies every tensor of the backbone.layers.* / backbone.norm_f tree, renaming the embedding.
void copy_backbone(Mapped& m, Tensors& t, const std::string& embedding_name) {
  for (const auto& n : t.names()) {
    if (n == embedding_name) put(m, t, "backbone.embedding.weight", n);
    else if (n.rfind("backbone.", 0) == 0) put(m, t, n, n);
  }
}

void require_silu(const Cfg& c) {
  const auto act = c.get<std::string>("hidden_act", "silu");
  if (act != "silu" && act != "swish")
    throw CheckpointError(c.where() + ": hidden_act is '" + act + "'; MechScope's models use SiLU");
}

// The part HF Mamba and Mamba2 share: the top-level config around their ssm_cfg, and the tensor names.
void finish_hf_ssm(Mapped& m, const Cfg& c, Tensors& t, int64_t d, const json& ssm, bool tie) {
  m.model_config = {{"d_model", d},
                    {"n_layer", c.count("num_hidden_layers", kMaxLayers)},
                    {"vocab_size", c.count("vocab_size", kMaxVocab)},
                    {"ssm_cfg", ssm},
                    {"rms_norm", true},
                    {"norm_epsilon", c.number("layer_norm_epsilon", 1e-5)},
                    {"residual_in_fp32", c.get<bool>("residual_in_fp32", true)},
                    {"tie_embeddings", tie},
                    {"pad_vocab_size_multiple", 1}};
  copy_backbone(m, t, "backbone.embeddings.weight");
  handle_tied_head(m, t, tie, "lm_head.weight", c.where());
}

namespace {

// YaRN's settings, resolved as transformers resolves them: factor (5.x: max_position_embeddings /
// original_max_position_embeddings when absent), original_max_position_embeddings (4.x: max_position_embeddings when
// absent), attention_factor from mscale and mscale_all_dim when absent, beta_fast 32 and beta_slow 1 when absent or 0.
json yarn_of(const Cfg& c, const json& p, const Cfg& pc, const std::string& key) {
  const std::string& where = c.where();
  int64_t original = 0;
  if (p.contains("original_max_position_embeddings") && !p["original_max_position_embeddings"].is_null())
    original = pc.req<int64_t>("original_max_position_embeddings");
  else if (c.has("max_position_embeddings"))
    original = c.req<int64_t>("max_position_embeddings");
  if (original <= 0) throw CheckpointError(where + ": " + key + " of rope_type 'yarn' lacks original_max_position_embeddings");
  double factor = pc.number("factor", 0.0);
  if (!(factor > 0)) {
    if (!c.has("max_position_embeddings")) throw CheckpointError(where + ": " + key + " of rope_type 'yarn' lacks factor");
    factor = static_cast<double>(c.req<int64_t>("max_position_embeddings")) / static_cast<double>(original);
  }
  auto mscale_of = [](double scale, double m) { return scale <= 1 ? 1.0 : 0.1 * m * std::log(scale) + 1.0; };
  double attention = pc.number("attention_factor", 0.0);
  if (!(attention > 0)) {
    const double m = pc.number("mscale", 0.0), m_all = pc.number("mscale_all_dim", 0.0);
    attention = m != 0 && m_all != 0 ? mscale_of(factor, m) / mscale_of(factor, m_all) : mscale_of(factor, 1.0);
  }
  const double fast = pc.number("beta_fast", 0.0), slow = pc.number("beta_slow", 0.0);
  return {{"type", "yarn"},
          {"factor", factor},
          {"attention_factor", attention},
          {"beta_fast", fast != 0 ? fast : 32.0},
          {"beta_slow", slow != 0 ? slow : 1.0},
          {"original_max_position_embeddings", original},
          {"truncate", p.contains("truncate") ? pc.req<bool>("truncate") : true}};
}

}  // namespace

// The rotary embedding. transformers 4 writes "rope_theta" and "rope_scaling" ({"rope_type" or "type": ..., ...})
// at the top; transformers 5 writes "rope_parameters": {"rope_theta": ..., "rope_type": ..., ...}. Imported:
// "default", "linear" (factor), "llama3" (factor, low/high_freq_factor, original_max_position_embeddings), "yarn"
// (yarn_of) and "dynamic" (the default rotary up to max_position_embeddings); any other rope_type ("longrope", ...)
// or a key this importer does not know is refused by name, never replaced by a default. partial_rotary_factor (the
// rotated fraction of each head) is read where the family has one (GPT-NeoX, Bamba).
Rope read_rope(const Cfg& c, double default_theta, bool partial_ok) {
  const std::string& where = c.where();
  Rope r;
  r.theta = default_theta;
  const bool v5 = c.has("rope_parameters");
  if (v5 && c.has("rope_scaling"))
    throw CheckpointError(where + ": both rope_parameters and rope_scaling are set; which one applies is ambiguous");
  if (!v5) r.theta = c.number("rope_theta", default_theta);
  if (!v5 && !c.has("rope_scaling")) return r;
  const std::string key = v5 ? "rope_parameters" : "rope_scaling";
  const json& p = c.raw(key);
  if (!p.is_object()) throw CheckpointError(where + ": " + key + " should be an object, found " + p.dump());
  const Cfg pc(p, where + " " + key);
  const std::string type_key = p.contains("rope_type") ? "rope_type" : p.contains("type") ? "type" : "";
  const std::string type = type_key.empty() ? "default"
                           : p[type_key].is_string() ? p[type_key].get<std::string>() : p[type_key].dump();
  if (type != "default" && type != "linear" && type != "llama3" && type != "yarn" && type != "dynamic")
    throw CheckpointError(where + ": " + key + "." + (type_key.empty() ? "rope_type" : type_key) + " '" + type +
                          "' is not supported (MechScope imports default, linear, llama3, yarn and dynamic rotary "
                          "embeddings)");
  std::set<std::string> known = {"rope_theta", "rope_type", "type"};
  if (partial_ok) known.insert("partial_rotary_factor");
  if (type == "linear") known.insert("factor");
  if (type == "llama3") known.insert({"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"});
  if (type == "yarn")
    known.insert({"factor", "attention_factor", "beta_fast", "beta_slow", "mscale", "mscale_all_dim",
                  "original_max_position_embeddings", "truncate"});
  if (type == "dynamic") known.insert("factor");
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
  if (partial_ok && v5 && p.contains("partial_rotary_factor")) r.partial = pc.number("partial_rotary_factor", 1.0);
  if (!(r.theta > 0) || !std::isfinite(r.theta))
    throw CheckpointError(where + ": the rotary base " + std::to_string(r.theta) + " is not a positive number");
  if (type == "linear") r.scaling = {{"type", "linear"}, {"factor", pc.number("factor", 0.0)}};
  if (type == "yarn") r.scaling = yarn_of(c, p, pc, key);
  if (type == "dynamic") {
    // transformers recomputes the base for inputs longer than max_position_embeddings; up to there it is the
    // default rotary. The model refuses longer inputs (RotaryScaling).
    if (!c.has("max_position_embeddings"))
      throw CheckpointError(where + ": a dynamic rotary needs max_position_embeddings, where its scaling starts");
    r.scaling = {{"type", "dynamic"},
                 {"factor", pc.number("factor", 0.0)},
                 {"original_max_position_embeddings", c.req<int64_t>("max_position_embeddings")}};
  }
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

std::string hf_activation(const Cfg& c, const std::string& key, const std::string& def) {
  const auto act = c.get<std::string>(key, def);
  if (act == "gelu") return "gelu";
  if (act == "gelu_new" || act == "gelu_pytorch_tanh") return "gelu_tanh";  // the same function, tanh approximation
  if (act == "relu") return "relu";
  if (act == "relu2") return "relu2";  // squared ReLU (Nemotron-H)
  if (act == "silu" || act == "swish") return "silu";
  throw CheckpointError(c.where() + ": " + key + " '" + act +
                        "' is not supported (MechScope imports gelu, gelu_new, gelu_pytorch_tanh, relu, relu2 and silu)");
}

std::string dims_text(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

json transformer_config(int64_t d, int64_t d_intermediate, int64_t n_layer, int64_t vocab, const json& attn, bool rms,
                        double eps, bool tie) {
  std::vector<int64_t> all(static_cast<size_t>(std::max<int64_t>(n_layer, 0)));
  for (int64_t i = 0; i < n_layer; ++i) all[static_cast<size_t>(i)] = i;
  return {{"d_model", d},
          {"d_intermediate", d_intermediate},
          {"n_layer", n_layer},
          {"vocab_size", vocab},
          {"attn_layer_idx", all},
          {"attn_cfg", attn},
          {"rms_norm", rms},
          {"norm_epsilon", eps},
          {"residual_in_fp32", false},  // transformers keeps the residual in the model dtype
          {"tie_embeddings", tie},
          {"pad_vocab_size_multiple", 1}};
}

void map_swiglu_exact(Mapped& m, Tensors& t, const std::string& f, const std::string& n, int64_t hidden,
                      const std::string& where, const std::string& gate, const std::string& up, const std::string& down) {
  const std::string g = f + gate + ".weight", u = f + up + ".weight", dn = f + down + ".weight";
  at::Tensor wg = t.take(g), wu = t.take(u), wd = t.take(dn);
  if (wg.dim() != 2 || wu.sizes() != wg.sizes() || wg.size(0) != hidden || wd.dim() != 2 || wd.size(1) != hidden ||
      wd.size(0) != wg.size(1))
    throw CheckpointError(where + ": " + f + "{" + gate + "," + up + "," + down + "} are " + dims_text(wg) + ", " +
                          dims_text(wu) + ", " + dims_text(wd) + "; the config implies " + std::to_string(hidden) +
                          " hidden units");
  m.weights[n + "fc1.weight"] = at::cat({wu, wg}, 0);  // [value; gate]: value * act(gate)
  m.weights[n + "fc2.weight"] = wd;
  if (t.dtype(u) != "float32") {
    m.source_dtype[n + "fc1.weight"] = t.dtype(u);
    m.source_dtype[n + "fc2.weight"] = t.dtype(dn);
  }
}

void map_experts(Mapped& m, Tensors& t, const std::string& f, const std::string& n, const ExpertLayout& layout,
                 int64_t E, int64_t hidden, const std::string& where) {
  const std::string fused = f + layout.fused_dir + layout.fused_gate_up;
  const bool is_fused = t.has(fused);
  const std::string router = f + (is_fused ? layout.fused_dir + layout.fused_router : layout.dir + layout.router);
  at::Tensor r = t.take(router);
  if (r.dim() != 2 || r.size(0) != E)
    throw CheckpointError(where + ": " + router + " is " + dims_text(r) + "; the config implies " + std::to_string(E) +
                          " experts");
  const int64_t d = r.size(1);
  if (t.dtype(router) != "float32") m.source_dtype[n + "router.weight"] = t.dtype(router);
  m.weights[n + "router.weight"] = r;
  if (!is_fused) {
    for (int64_t e = 0; e < E; ++e)
      map_swiglu_exact(m, t, f + layout.dir + "experts." + std::to_string(e) + ".", n + "experts." + std::to_string(e) + ".",
                       hidden, where, layout.gate, layout.up, layout.down);
    return;
  }
  const std::string down_name = f + layout.fused_dir + layout.fused_down;
  at::Tensor gate_up = t.take(fused), down = t.take(down_name);
  if (gate_up.dim() != 3 || gate_up.size(0) != E || gate_up.size(1) != 2 * hidden || gate_up.size(2) != d ||
      down.dim() != 3 || down.size(0) != E || down.size(1) != d || down.size(2) != hidden)
    throw CheckpointError(where + ": " + fused + " " + dims_text(gate_up) + " and " + down_name + " " + dims_text(down) +
                          " do not match " + std::to_string(E) + " experts of " + std::to_string(hidden) +
                          " hidden units on width " + std::to_string(d));
  for (int64_t e = 0; e < E; ++e) {
    const std::string x = n + "experts." + std::to_string(e) + ".";
    at::Tensor gu = gate_up.select(0, e);
    m.weights[x + "fc1.weight"] = at::cat({gu.narrow(0, hidden, hidden), gu.narrow(0, 0, hidden)}, 0);
    m.weights[x + "fc2.weight"] = down.select(0, e).clone();
    if (t.dtype(fused) != "float32") {
      m.source_dtype[x + "fc1.weight"] = t.dtype(fused);
      m.source_dtype[x + "fc2.weight"] = t.dtype(down_name);
    }
  }
}

int64_t hf_partial_rotary(const Cfg& c, Rope& rope, int64_t head_dim, double def) {
  if (!c.has("rope_parameters")) rope.partial = c.number("partial_rotary_factor", def);
  const int64_t rotary = static_cast<int64_t>(static_cast<double>(head_dim) * rope.partial);
  if (rotary < 0 || rotary > head_dim || rotary % 2 != 0)
    throw CheckpointError(c.where() + ": partial_rotary_factor " + std::to_string(rope.partial) + " of head size " +
                          std::to_string(head_dim) + " is not an even number of dimensions");
  return rotary;
}

json rotary_attn_cfg(const RotaryAttention& a, const Rope& rope) {
  json attn = {{"num_heads", a.heads},       {"num_heads_kv", a.kv_heads},        {"qkv_proj_bias", a.qkv_bias},
               {"out_proj_bias", a.out_bias}, {"causal", true},                     {"rotary_emb_dim", a.rotary},
               {"rotary_emb_base", rope.theta}, {"rotary_emb_interleaved", false}};
  if (a.head_dim * a.heads != a.d) attn["head_dim"] = a.head_dim;
  if (!rope.scaling.is_null()) attn["rotary_scaling"] = rope.scaling;
  return attn;
}

json hf_mamba2_ssm(const Cfg& c, const Mamba2Sizes& s, double eps, bool conv_bias, bool bias) {
  json limit = json::array({0.0, nullptr});
  if (c.has("time_step_limit")) {
    const json& v = c.raw("time_step_limit");
    if (!v.is_array() || v.size() != 2) throw CheckpointError(c.where() + ": time_step_limit should be [min, max]");
    const double lo = c.to_number(v[0], "time_step_limit"), hi = c.to_number(v[1], "time_step_limit");
    limit = json::array({lo, std::isinf(hi) ? json(nullptr) : json(hi)});
  }
  return {{"layer", "Mamba2"},     {"d_state", s.d_state},      {"d_conv", s.d_conv},     {"expand", s.expand},
          {"headdim", s.headdim},  {"d_ssm", s.heads * s.headdim}, {"ngroups", s.groups}, {"chunk_size", s.chunk},
          {"dt_limit", limit},     {"norm_eps", eps},           {"rmsnorm", true},        {"norm_before_gate", false},
          {"conv_bias", conv_bias}, {"bias", bias}};
}

json hf_mamba2_layer_ssm(const Cfg& c, int64_t d, double eps) {
  const std::string& where = c.where();
  // mamba_d_head "auto" is expand * hidden_size / mamba_n_heads.
  const int64_t expand = c.get<int64_t>("mamba_expand", 2), heads = c.get<int64_t>("mamba_n_heads", 128);
  if (heads <= 0 || expand <= 0) throw CheckpointError(where + ": mamba_n_heads and mamba_expand should be positive");
  const int64_t headdim = hf_mamba_head_dim(c, heads, expand * d, "mamba_expand * hidden_size");
  return hf_mamba2_ssm(c,
                       {c.get<int64_t>("mamba_d_state", 256), c.get<int64_t>("mamba_d_conv", 4), expand, heads, headdim,
                        c.get<int64_t>("mamba_n_groups", 1), c.get<int64_t>("mamba_chunk_size", 256)},
                       eps, c.get<bool>("mamba_conv_bias", true), c.get<bool>("mamba_proj_bias", false));
}

int64_t hf_mamba_head_dim(const Cfg& c, int64_t heads, int64_t width, const std::string& width_text) {
  int64_t headdim = width / heads;
  if (c.has("mamba_d_head") && !c.raw("mamba_d_head").is_string()) headdim = c.req<int64_t>("mamba_d_head");
  else if (c.has("mamba_d_head") && c.raw("mamba_d_head").get<std::string>() != "auto")
    throw CheckpointError(c.where() + ": mamba_d_head should be a number or \"auto\"");
  if (headdim < 1 || heads * headdim != width)
    throw CheckpointError(c.where() + ": mamba_n_heads * mamba_d_head (" + std::to_string(heads) + " * " +
                          std::to_string(headdim) + ") must equal " + width_text + " (" + std::to_string(width) + ")");
  return headdim;
}

LlamaAttention hf_attention_heads(const Cfg& c, int64_t d) {
  LlamaAttention a;
  a.heads = c.count("num_attention_heads", kMaxDModel);
  a.kv_heads = c.get<int64_t>("num_key_value_heads", a.heads);
  a.head_dim = c.get<int64_t>("head_dim", d / a.heads);
  if (a.head_dim < 1 || a.kv_heads <= 0 || a.heads % a.kv_heads != 0 || (!c.has("head_dim") && d % a.heads != 0))
    throw CheckpointError(c.where() + ": hidden_size " + std::to_string(d) + ", num_attention_heads " +
                          std::to_string(a.heads) + ", num_key_value_heads " + std::to_string(a.kv_heads) +
                          " and head_dim do not divide");
  return a;
}

std::vector<int64_t> hf_layer_list(const Cfg& c, const std::string& key) {
  if (!c.has(key)) return {};
  try {
    return c.raw(key).get<std::vector<int64_t>>();
  } catch (const json::exception&) {
    throw CheckpointError(c.where() + ": " + key + " should be a list of layer numbers");
  }
}

std::vector<std::string> hf_layer_kinds(const Cfg& c, const std::string& key, int64_t n_layer) {
  if (!c.has(key)) return {};
  std::vector<std::string> kinds;
  try {
    kinds = c.raw(key).get<std::vector<std::string>>();
  } catch (const json::exception&) {
    throw CheckpointError(c.where() + ": " + key + " should be a list of strings");
  }
  if (static_cast<int64_t>(kinds.size()) != n_layer)
    throw CheckpointError(c.where() + ": " + key + " lists " + std::to_string(kinds.size()) + " layers; num_hidden_layers is " +
                          std::to_string(n_layer));
  return kinds;
}

double hf_multiplier(const Cfg& c, const std::string& key, bool nonzero) {
  const double v = c.number(key, 1.0);
  if (!std::isfinite(v) || (nonzero && v == 0.0))
    throw CheckpointError(c.where() + ": " + key + " should be a finite" + (nonzero ? ", non-zero" : "") + " number");
  return v;
}

void scale_rows(at::Tensor& w, int64_t from, int64_t n, double s) {
  if (s == 1.0) return;
  at::Tensor scaled = w.clone();
  scaled.narrow(0, from, n).mul_(s);
  w = scaled;
}

void map_hf_mamba2_layer(Mapped& m, Tensors& t, const std::string& f, const std::string& n, const json& ssm) {
  for (const char* p : {"in_proj.weight", "conv1d.weight", "dt_bias", "A_log", "D", "out_proj.weight"}) put(m, t, n + p, f + p);
  if (ssm.value("rmsnorm", true)) put(m, t, n + "norm.weight", f + "norm.weight");
  if (ssm.value("conv_bias", true)) put(m, t, n + "conv1d.bias", f + "conv1d.bias");
  if (ssm.value("bias", false)) {
    put(m, t, n + "in_proj.bias", f + "in_proj.bias");
    put(m, t, n + "out_proj.bias", f + "out_proj.bias");
  }
}

void note_mlp_padding(Mapped& m, int64_t inter) {
  const int64_t hidden = gated_mlp_hidden(inter);
  if (hidden != inter)
    m.notes.push_back("intermediate_size " + std::to_string(inter) + " padded with zero units to " + std::to_string(hidden) +
                      " (GatedMLP's multiple of 128; the output is unchanged)");
}

// Zero rows (fc1) or columns (fc2) up to GatedMLP's multiple of 128: the padded units compute 0 * silu(0) = 0.
at::Tensor pad_dim(const at::Tensor& w, int64_t dim, int64_t to) {
  if (w.size(dim) == to) return w;
  std::vector<int64_t> shape = w.sizes().vec();
  shape[dim] = to - w.size(dim);
  return at::cat({w, at::zeros(shape, w.options())}, dim);
}

}  // namespace mechscope::families
