// Parsing, validation and presets of ModelConfig (spec §1). Every error names the key and what was
// expected; unknown keys are errors (a typo must not silently fall back to a default).
#include "core/model/config.h"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <limits>
#include <set>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "core/util/json.h"
#include "core/util/strings.h"

namespace mechscope {
using nlohmann::json;

const char* mixer_kind_name(MixerKind kind) {
  switch (kind) {
    case MixerKind::Attention: return "attention";
    case MixerKind::Mamba1: return "mamba1";
    case MixerKind::Mamba2: return "mamba2";
    case MixerKind::Parallel: return "parallel";
    case MixerKind::None: return "none";
  }
  return "?";
}

namespace {

// Reads keys of one JSON object, remembering which were used so that leftovers can be reported.
class ObjectReader {
 public:
  ObjectReader(const json& j, std::string where) : j_(j), where_(std::move(where)) {
    if (!j_.is_object()) throw std::invalid_argument(where_ + ": expected a JSON object, found " + j_.dump());
  }
  bool has(const std::string& key) const { return j_.contains(key) && !j_.at(key).is_null(); }
  /// Throws std::invalid_argument naming the first of `keys` that is absent.
  void require_keys(std::initializer_list<const char*> keys) const {
    for (const char* key : keys)
      if (!has(key)) throw std::invalid_argument(where_ + ": missing required key '" + key + "'");
  }
  template <typename T>
  void get(const std::string& key, T& out) {
    used_.insert(key);
    if (!has(key)) return;
    try {
      out = get_exact<T>(j_.at(key));
    } catch (const std::invalid_argument&) {
      throw std::invalid_argument(where_ + "." + key + ": expected " + type_name(out) + ", found " + j_.at(key).dump());
    } catch (const json::exception&) {
      throw std::invalid_argument(where_ + "." + key + ": expected " + type_name(out) + ", found " + j_.at(key).dump());
    }
  }
  void ignore(const std::string& key) { used_.insert(key); }
  const json& raw(const std::string& key) { used_.insert(key); return j_.at(key); }
  void finish(const std::vector<std::string>& known_hint) const {
    for (const auto& item : j_.items()) {
      if (!used_.count(item.key())) {
        std::ostringstream msg;
        msg << where_ << ": unknown key '" << item.key() << "'";
        auto close = closest_matches(item.key(), known_hint, 3);
        if (!close.empty()) msg << " (did you mean " << join(close, ", ") << "?)";
        else msg << "; known keys: " << join(known_hint, ", ");
        throw std::invalid_argument(msg.str());
      }
    }
  }
  std::vector<std::string> used() const { return {used_.begin(), used_.end()}; }

 private:
  static std::string type_name(bool) { return "a boolean"; }
  static std::string type_name(int64_t) { return "an integer"; }
  static std::string type_name(double) { return "a number"; }
  static std::string type_name(const std::string&) { return "a string"; }
  static std::string type_name(const std::vector<int64_t>&) { return "a list of integers"; }
  static std::string type_name(const std::vector<double>&) { return "a list of numbers"; }
  const json& j_;
  std::string where_;
  std::set<std::string> used_;
};

void require(bool ok, const std::string& msg) {
  if (!ok) throw std::invalid_argument(msg);
}

const std::vector<std::string> kTopKeys = {
    "d_model", "d_intermediate", "n_layer", "vocab_size", "ssm_cfg", "attn_layer_idx", "attn_cfg",
    "rms_norm", "norm_epsilon", "residual_in_fp32", "fused_add_norm", "pad_vocab_size_multiple",
    "tie_embeddings", "pos_emb", "max_seq_len", "parallel_layer_idx", "mlp_type", "mlp_activation", "mlp_bias",
    "parallel_residual", "embedding_multiplier", "parallel_mix", "moe_cfg", "mlp_only_layer_idx", "mlp_layer_idx",
    "shared_cfg", "post_norms", "final_logit_softcap"};
const std::vector<std::string> kSharedKeys = {"layers", "attn", "hidden", "mlp_activation"};
const std::vector<std::string> kMoEKeys = {"num_experts", "top_k", "hidden", "normalize_top_k", "layers",
                                           "shared_hidden", "shared_gate"};

const std::vector<std::string> kAttnKeys = {
    "num_heads", "num_heads_kv", "head_dim", "qkv_proj_bias", "out_proj_bias", "softmax_scale", "causal",
    "rotary_emb_dim", "rotary_emb_base", "rotary_emb_interleaved", "rotary_scaling", "sliding_window", "sliding_window_layers", "qk_norm", "mlp_dim", "d_conv",
    "softcap", "sliding_rotary_base", "qk_norm_whole", "clip_qkv", "hard_alibi_heads"};
const std::vector<std::string> kMamba1Keys = {
    "layer", "d_state", "d_conv", "expand", "dt_rank", "dt_min", "dt_max", "dt_init", "dt_scale",
    "dt_init_floor", "conv_bias", "bias", "bcdt_rms_eps", "bcdt_norm_weights", "use_fast_path"};
const std::vector<std::string> kMamba2Keys = {
    "layer", "d_state", "d_conv", "conv_init", "expand", "headdim", "d_ssm", "ngroups", "A_init_range",
    "D_has_hdim", "rmsnorm", "norm_before_gate", "dt_min", "dt_max", "dt_init_floor", "dt_limit", "bias",
    "conv_bias", "chunk_size", "norm_eps", "use_mem_eff_path"};

void check_layers(const std::vector<int64_t>& idx, int64_t n_layer, const std::string& key);

void parse_attn(const json& j, ModelConfig& c, AttnConfig& a, const std::string& name) {
  ObjectReader r(j, name);
  r.get("num_heads", a.num_heads);
  r.get("num_heads_kv", a.num_heads_kv);
  r.get("head_dim", a.head_dim);
  r.get("qkv_proj_bias", a.qkv_proj_bias);
  r.get("out_proj_bias", a.out_proj_bias);
  r.get("softmax_scale", a.softmax_scale);
  require(r.has("causal"),
          name + ": missing \"causal\". mamba_ssm's MHA defaults to causal=false, which is wrong for a language model; "
          "add \"causal\": true");
  r.get("causal", a.causal);
  require(a.causal, name + ".causal: MechScope models are causal language models; set \"causal\": true");
  r.get("rotary_emb_dim", a.rotary_emb_dim);
  r.get("rotary_emb_base", a.rotary_emb_base);
  r.get("rotary_emb_interleaved", a.rotary_emb_interleaved);
  if (r.has("rotary_scaling")) {
    ObjectReader s(r.raw("rotary_scaling"), name + ".rotary_scaling");
    RotaryScaling& rs = a.rotary_scaling;
    s.get("type", rs.type);
    s.get("factor", rs.factor);
    require(rs.type == "linear" || rs.type == "llama3" || rs.type == "yarn" || rs.type == "dynamic",
            name + ".rotary_scaling.type: expected \"linear\", \"llama3\", \"yarn\" or \"dynamic\", found \"" +
                rs.type + "\"");
    require(rs.factor >= 1.0 && std::isfinite(rs.factor), name + ".rotary_scaling.factor: expected a number >= 1");
    if (rs.type == "yarn" || rs.type == "dynamic") {
      s.get("original_max_position_embeddings", rs.original_max_position);
      require(rs.original_max_position > 0, name + ".rotary_scaling.original_max_position_embeddings: expected > 0");
    }
    if (rs.type == "yarn") {
      s.get("attention_factor", rs.attention_factor);
      s.get("beta_fast", rs.beta_fast);
      s.get("beta_slow", rs.beta_slow);
      s.get("truncate", rs.truncate);
      require(rs.attention_factor > 0 && std::isfinite(rs.attention_factor) && rs.beta_fast > 0 && rs.beta_slow > 0,
              name + ".rotary_scaling: yarn needs a positive attention_factor, beta_fast and beta_slow");
    }
    if (rs.type == "llama3") {
      s.get("low_freq_factor", rs.low_freq_factor);
      s.get("high_freq_factor", rs.high_freq_factor);
      s.get("original_max_position_embeddings", rs.original_max_position);
      require(rs.low_freq_factor > 0 && rs.high_freq_factor > rs.low_freq_factor && rs.original_max_position > 0,
              name + ".rotary_scaling: llama3 needs 0 < low_freq_factor < high_freq_factor and "
              "original_max_position_embeddings > 0");
    }
    s.finish({"type", "factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings",
              "attention_factor", "beta_fast", "beta_slow", "truncate"});
  } else {
    r.ignore("rotary_scaling");
  }
  r.get("sliding_window", a.sliding_window);
  r.get("sliding_window_layers", a.sliding_window_layers);
  r.get("qk_norm", a.qk_norm);
  r.get("softcap", a.softcap);
  r.get("qk_norm_whole", a.qk_norm_whole);
  r.get("clip_qkv", a.clip_qkv);
  r.get("hard_alibi_heads", a.hard_alibi_heads);
  require(!(a.qk_norm && a.qk_norm_whole), name + ".qk_norm_whole: q and k are normalised per head (qk_norm) or whole, not both");
  require(a.clip_qkv >= 0 && std::isfinite(a.clip_qkv), name + ".clip_qkv: expected a positive number, or 0 for none");
  r.get("sliding_rotary_base", a.sliding_rotary_base);
  require(a.sliding_rotary_base >= 0 && std::isfinite(a.sliding_rotary_base),
          name + ".sliding_rotary_base: expected a positive number, or 0 for none");
  require(a.softcap >= 0 && std::isfinite(a.softcap), name + ".softcap: expected a positive number, or 0 for none");
  require(a.sliding_window >= 0, name + ".sliding_window: expected a window of at least 1 position, or 0 for none");
  require(a.sliding_window_layers.empty() || a.sliding_window > 0,
          name + ".sliding_window_layers: lists layers but sliding_window gives no window");
  check_layers(a.sliding_window_layers, c.n_layer, name + ".sliding_window_layers");
  for (int64_t i : a.sliding_window_layers)
    require(c.mixer_kind(i) == MixerKind::Attention || c.mixer_kind(i) == MixerKind::Parallel,
            name + ".sliding_window_layers: layer " + std::to_string(i) + " has no attention");
  int64_t mlp_dim = 0, d_conv = 0;
  r.get("mlp_dim", mlp_dim);
  r.get("d_conv", d_conv);
  require(mlp_dim == 0, name + ".mlp_dim: MHA's fused MLP branch is not supported (found " + std::to_string(mlp_dim) +
                            "); use d_intermediate for a GatedMLP");
  require(d_conv == 0, name + ".d_conv: MHA's short convolution is not supported (found " + std::to_string(d_conv) + ")");
  r.finish(kAttnKeys);
}

void parse_mamba1(ObjectReader& r, ModelConfig& c) {
  Mamba1Config& m = c.mamba1;
  r.get("d_state", m.d_state);
  r.get("d_conv", m.d_conv);
  r.get("expand", m.expand);
  if (r.has("dt_rank")) {
    const json& v = r.raw("dt_rank");
    if (v.is_string()) {
      require(v.get<std::string>() == "auto", "ssm_cfg.dt_rank: expected an integer or \"auto\", found " + v.dump());
      m.dt_rank = 0;
    } else if (v.is_number_integer()) {
      m.dt_rank = v.get<int64_t>();
      require(m.dt_rank > 0, "ssm_cfg.dt_rank: must be positive, found " + v.dump());
    } else {
      throw std::invalid_argument("ssm_cfg.dt_rank: expected an integer or \"auto\", found " + v.dump());
    }
  }
  r.get("dt_min", m.dt_min);
  r.get("dt_max", m.dt_max);
  r.get("dt_init", m.dt_init);
  require(m.dt_init == "random" || m.dt_init == "constant",
          "ssm_cfg.dt_init: expected \"random\" or \"constant\", found \"" + m.dt_init + "\"");
  r.get("dt_scale", m.dt_scale);
  r.get("dt_init_floor", m.dt_init_floor);
  r.get("conv_bias", m.conv_bias);
  r.get("bias", m.bias);
  r.get("bcdt_rms_eps", m.bcdt_rms_eps);
  require(m.bcdt_rms_eps >= 0 && m.bcdt_rms_eps < 1, "ssm_cfg.bcdt_rms_eps: expected a small positive number, or 0 for none");
  r.get("bcdt_norm_weights", m.bcdt_norm_weights);
  require(!m.bcdt_norm_weights || m.bcdt_rms_eps > 0, "ssm_cfg.bcdt_norm_weights: needs the norms' bcdt_rms_eps > 0");
  r.ignore("use_fast_path");
  r.finish(kMamba1Keys);
  if (m.dt_rank == 0) m.dt_rank = (c.d_model + 15) / 16;
  require(m.d_state > 0 && m.d_conv > 0 && m.expand > 0, "ssm_cfg: d_state, d_conv and expand must be positive");
  double d_inner = m.expand * c.d_model;
  require(std::floor(d_inner) == d_inner, "ssm_cfg.expand: expand * d_model must be an integer");
}

void parse_mamba2(ObjectReader& r, ModelConfig& c) {
  Mamba2Config& m = c.mamba2;
  r.get("d_state", m.d_state);
  r.get("d_conv", m.d_conv);
  r.get("conv_init", m.conv_init);
  r.get("expand", m.expand);
  r.get("headdim", m.headdim);
  r.get("d_ssm", m.d_ssm);
  r.get("ngroups", m.ngroups);
  if (r.has("A_init_range")) {
    std::vector<double> range;
    r.get("A_init_range", range);
    require(range.size() == 2 && range[0] > 0 && range[1] >= range[0],
            "ssm_cfg.A_init_range: expected [low, high] with 0 < low <= high");
    m.A_init_min = range[0];
    m.A_init_max = range[1];
  } else {
    r.ignore("A_init_range");
  }
  r.get("D_has_hdim", m.D_has_hdim);
  r.get("rmsnorm", m.rmsnorm);
  r.get("norm_before_gate", m.norm_before_gate);
  r.get("dt_min", m.dt_min);
  r.get("dt_max", m.dt_max);
  r.get("dt_init_floor", m.dt_init_floor);
  if (r.has("dt_limit")) {
    const json& v = r.raw("dt_limit");
    require(v.is_array() && v.size() == 2, "ssm_cfg.dt_limit: expected [min, max] (max null = infinity)");
    m.dt_limit_min = v[0].get<double>();
    m.dt_limit_max = v[1].is_null() ? 0.0 : v[1].get<double>();
  } else {
    r.ignore("dt_limit");
  }
  r.get("bias", m.bias);
  r.get("conv_bias", m.conv_bias);
  r.get("chunk_size", m.chunk_size);
  r.get("norm_eps", m.norm_eps);
  require(m.norm_eps > 0 && m.norm_eps < 1, "ssm_cfg.norm_eps: expected a small positive number, found " +
                                                std::to_string(m.norm_eps));
  r.ignore("use_mem_eff_path");
  r.finish(kMamba2Keys);
  const int64_t d_inner = m.expand * c.d_model;
  if (m.d_ssm == 0) m.d_ssm = d_inner;
  require(m.d_state > 0 && m.d_conv > 0 && m.headdim > 0 && m.ngroups > 0 && m.chunk_size > 0,
          "ssm_cfg: d_state, d_conv, headdim, ngroups and chunk_size must be positive");
  require(m.d_ssm <= d_inner, "ssm_cfg.d_ssm: must be at most expand * d_model = " + std::to_string(d_inner));
  require(m.d_ssm % m.headdim == 0, "ssm_cfg.headdim: d_ssm (" + std::to_string(m.d_ssm) +
                                        ") must be a multiple of headdim (" + std::to_string(m.headdim) + ")");
  const int64_t nheads = m.d_ssm / m.headdim;
  require(nheads % m.ngroups == 0, "ssm_cfg.ngroups: the number of heads (" + std::to_string(nheads) +
                                       ") must be a multiple of ngroups (" + std::to_string(m.ngroups) + ")");
}

void parse_attn(const json& j, ModelConfig& c) { parse_attn(j, c, c.attn, "attn_cfg"); }

// An attention's kv heads and rotary against its heads of `head_dim` features (attn_cfg, shared_cfg.attn).
void check_attn_heads(const AttnConfig& a, int64_t head_dim, const std::string& name) {
  const int64_t hkv = a.num_heads_kv > 0 ? a.num_heads_kv : a.num_heads;
  require(a.num_heads % hkv == 0, name + ".num_heads_kv: num_heads (" + std::to_string(a.num_heads) +
                                      ") must be a multiple of num_heads_kv (" + std::to_string(hkv) + ")");
  require(a.rotary_emb_dim >= 0 && a.rotary_emb_dim <= head_dim && a.rotary_emb_dim % 2 == 0,
          name + ".rotary_emb_dim: must be even and at most head_dim (" + std::to_string(head_dim) + ")");
  require(a.hard_alibi_heads >= 0 && a.hard_alibi_heads <= a.num_heads,
          name + ".hard_alibi_heads: expected 0 (none) to num_heads (" + std::to_string(a.num_heads) + "), found " +
              std::to_string(a.hard_alibi_heads));
}

void parse_shared(const json& j, ModelConfig& c) {
  require(j.is_object(), "model_config.shared_cfg: expected a JSON object");
  ObjectReader r(j, "shared_cfg");
  SharedBlockConfig& s = c.shared;
  r.require_keys({"layers", "attn", "hidden"});
  r.get("layers", s.layers);
  r.get("hidden", s.hidden);
  r.get("mlp_activation", s.mlp_activation);
  parse_attn(r.raw("attn"), c, s.attn, "shared_cfg.attn");
  r.ignore("attn");
  r.finish(kSharedKeys);
  require(!s.layers.empty(), "shared_cfg.layers: lists no layer");
  check_layers(s.layers, c.n_layer, "shared_cfg.layers");
  for (int64_t i : s.layers)
    require(c.mixer_kind(i) != MixerKind::None, "shared_cfg.layers: layer " + std::to_string(i) +
                                                    " has no mixer, whose input a shared block feeds");
  const AttnConfig& a = s.attn;
  require(a.num_heads > 0 && a.head_dim > 0, "shared_cfg.attn: num_heads and head_dim are required and positive");
  check_attn_heads(a, a.head_dim, "shared_cfg.attn");
  require(a.num_heads * a.head_dim <= 4 * kMaxDModel, "shared_cfg.attn: num_heads x head_dim beyond MechScope's limits");
  require(a.sliding_window == 0 && a.sliding_window_layers.empty() && !a.qk_norm,
          "shared_cfg.attn: sliding windows and qk_norm are not supported in a shared block");
  require(s.hidden >= 1 && s.hidden <= kMaxIntermediate, "shared_cfg.hidden: expected 1.." + std::to_string(kMaxIntermediate));
  require(s.mlp_activation == "silu" || s.mlp_activation == "gelu" || s.mlp_activation == "gelu_tanh",
          "shared_cfg.mlp_activation: expected \"silu\", \"gelu\" or \"gelu_tanh\", found \"" + s.mlp_activation + "\"");
}

void parse_moe(const json& j, ModelConfig& c) {
  require(j.is_object(), "model_config.moe_cfg: expected a JSON object");
  ObjectReader r(j, "moe_cfg");
  MoEConfig& m = c.moe;
  r.require_keys({"num_experts", "top_k", "hidden"});
  r.get("num_experts", m.num_experts);
  r.get("top_k", m.top_k);
  r.get("hidden", m.hidden);
  r.get("normalize_top_k", m.normalize_top_k);
  r.get("layers", m.layers);
  r.get("shared_hidden", m.shared_hidden);
  r.get("shared_gate", m.shared_gate);
  r.finish(kMoEKeys);
  require(m.num_experts >= 1 && m.num_experts <= kMaxExperts,
          "moe_cfg.num_experts: expected 1.." + std::to_string(kMaxExperts) + ", found " + std::to_string(m.num_experts));
  require(m.top_k >= 1 && m.top_k <= m.num_experts, "moe_cfg.top_k: expected 1..num_experts (" +
                                                        std::to_string(m.num_experts) + "), found " + std::to_string(m.top_k));
  require(m.hidden >= 1 && m.hidden <= kMaxIntermediate, "moe_cfg.hidden: expected 1.." + std::to_string(kMaxIntermediate));
  require(m.shared_hidden >= 0 && m.shared_hidden <= kMaxIntermediate,
          "moe_cfg.shared_hidden: expected 0 (none) .. " + std::to_string(kMaxIntermediate));
  require(!m.shared_gate || m.shared_hidden > 0, "moe_cfg.shared_gate: there is no shared expert (shared_hidden 0)");
  check_layers(m.layers, c.n_layer, "moe_cfg.layers");
  require(c.mlp_type == "gated", "moe_cfg: the experts are gated MLPs; mlp_type \"" + c.mlp_type + "\" has none");
  const bool all = m.layers.empty() || static_cast<int64_t>(m.layers.size()) == c.n_layer;
  require(all || c.d_intermediate > 0, "moe_cfg.layers: the layers not listed need a dense MLP, but d_intermediate is 0");
  require(m.num_experts * m.hidden <= int64_t{1} << 26, "moe_cfg: num_experts x hidden beyond MechScope's limits");
}

void check_layers(const std::vector<int64_t>& idx, int64_t n_layer, const std::string& key) {
  std::set<int64_t> seen;
  for (int64_t i : idx) {
    require(i >= 0 && i < n_layer, key + ": layer index " + std::to_string(i) + " out of range [0, " +
                                       std::to_string(n_layer) + ")");
    require(seen.insert(i).second, key + ": layer index " + std::to_string(i) + " listed twice");
  }
}

}  // namespace

int64_t ModelConfig::padded_vocab_size() const {
  const int64_t m = pad_vocab_size_multiple;
  return m > 1 ? (vocab_size + m - 1) / m * m : vocab_size;
}

int64_t ModelConfig::attention_window(int64_t layer) const {
  const auto& only = attn.sliding_window_layers;
  return only.empty() || std::find(only.begin(), only.end(), layer) != only.end() ? attn.sliding_window : 0;
}

bool ModelConfig::layer_has_mlp(int64_t layer) const {
  return has_mlp() && (mlp_layer_idx.empty() ||
                       std::find(mlp_layer_idx.begin(), mlp_layer_idx.end(), layer) != mlp_layer_idx.end());
}

double shared_block_parameters(int64_t d_model, const AttnConfig& a, int64_t hidden) {
  const double d = static_cast<double>(d_model);
  const double qkv = static_cast<double>(a.num_heads + 2 * (a.num_heads_kv > 0 ? a.num_heads_kv : a.num_heads)) * a.head_dim;
  // norm (2d), q/k/v (2d in), out_proj, norm2, the gated MLP, proj
  return 2 * d + 2 * d * qkv + static_cast<double>(a.num_heads * a.head_dim) * d + d + 3.0 * d * hidden + d * d;
}

bool ModelConfig::shared_layer(int64_t layer) const {
  return std::find(shared.layers.begin(), shared.layers.end(), layer) != shared.layers.end();
}

bool ModelConfig::moe_layer(int64_t layer) const {
  const auto& only = moe.layers;
  return moe.num_experts > 0 && layer_has_mlp(layer) &&
         (only.empty() || std::find(only.begin(), only.end(), layer) != only.end());
}

MixerKind ModelConfig::mixer_kind(int64_t layer) const {
  if (std::find(mlp_only_layer_idx.begin(), mlp_only_layer_idx.end(), layer) != mlp_only_layer_idx.end())
    return MixerKind::None;
  if (std::find(parallel_layer_idx.begin(), parallel_layer_idx.end(), layer) != parallel_layer_idx.end())
    return MixerKind::Parallel;
  if (std::find(attn_layer_idx.begin(), attn_layer_idx.end(), layer) != attn_layer_idx.end())
    return MixerKind::Attention;
  return ssm_kind();
}

std::string ModelConfig::architecture_name() const {
  bool any_attn = false, any_ssm = false, any_par = false;
  for (int64_t i = 0; i < n_layer; ++i) {
    auto k = mixer_kind(i);
    any_attn |= k == MixerKind::Attention;
    any_ssm |= k == MixerKind::Mamba1 || k == MixerKind::Mamba2;
    any_par |= k == MixerKind::Parallel;
  }
  if (any_par) return "parallel hybrid (" + ssm_layer + " + attention)";
  if (!shared.layers.empty() && any_ssm && !any_attn) return "hybrid (" + ssm_layer + " + shared attention blocks)";
  if (any_attn && any_ssm) return "hybrid (" + ssm_layer + " + attention)";
  if (any_attn) return "transformer";
  return mixer_kind_name(ssm_kind());
}

int64_t ModelConfig::attn_head_dim(int64_t d_model_) const {
  return attn.head_dim > 0 ? attn.head_dim : d_model_ / attn.num_heads;
}

double ModelConfig::approx_parameter_count() const {
  const double d = static_cast<double>(d_model);
  double total = static_cast<double>(padded_vocab_size()) * d * (tie_embeddings ? 1 : 2) + max_seq_len * d;
  for (int64_t i = 0; i < n_layer; ++i) {
    const MixerKind k = mixer_kind(i);
    double layer = 0;
    if (k == MixerKind::Attention || k == MixerKind::Parallel) {
      const double D = static_cast<double>(attn.head_dim > 0 ? attn.head_dim : d_model / std::max<int64_t>(1, attn.num_heads));
      layer += d * (attn.num_heads + 2 * attn_heads_kv()) * D + attn.num_heads * D * d;
    }
    if (k != MixerKind::Attention && k != MixerKind::None) {
      if (ssm_layer == "Mamba1") {
        const double di = mamba1_d_inner();
        layer += d * 2 * di + di * (mamba1.dt_rank + 2 * mamba1.d_state + mamba1.d_conv + mamba1.d_state) + di * d;
      } else {
        const double di = static_cast<double>(mamba2_d_inner());
        layer += d * (2 * di + 2 * mamba2.ngroups * mamba2.d_state) + di * d;
      }
    }
    if (moe_layer(i)) {
      layer += d * static_cast<double>(moe.num_experts) * (1.0 + 3.0 * static_cast<double>(moe.hidden)) +
               3.0 * d * static_cast<double>(moe.shared_hidden) + (moe.shared_gate ? d : 0.0);
    } else if (d_intermediate > 0 && layer_has_mlp(i)) {
      layer += (mlp_type == "gated" ? 3.0 : 2.0) * d * mlp_hidden();
    }
    if (shared_layer(i)) layer += shared_block_parameters(d_model, shared.attn, shared.hidden);
    total += layer;
  }
  return total;
}

std::string ModelConfig::mlp_description() const {
  if (moe.num_experts > 0) {
    std::string s = "mixture of " + std::to_string(moe.num_experts) + " experts (top " + std::to_string(moe.top_k) +
                    (moe.normalize_top_k ? ", renormalised" : "") + ", hidden " + std::to_string(moe.hidden);
    if (moe.shared_hidden > 0) s += ", shared expert " + std::to_string(moe.shared_hidden) + (moe.shared_gate ? " gated" : "");
    s += ")";
    if (!moe.layers.empty() && static_cast<int64_t>(moe.layers.size()) < n_layer)
      s += " at " + std::to_string(moe.layers.size()) + " of " + std::to_string(n_layer) + " layers";
    if (d_intermediate == 0) return s;
    ModelConfig dense = *this;
    dense.moe = MoEConfig{};
    return s + ", elsewhere " + dense.mlp_description();
  }
  if (mlp_type == "gated" && mlp_activation == "silu" && !mlp_bias) return "GatedMLP hidden " + std::to_string(mlp_hidden());
  return std::string(mlp_type == "gated" ? "gated MLP (" : "MLP (") + mlp_activation + (mlp_bias ? ", biases" : "") +
         ") hidden " + std::to_string(mlp_hidden());
}

int64_t ModelConfig::ssm_heads() const {
  return ssm_layer == "Mamba2" ? mamba2_nheads() : mamba1_d_inner();
}

ModelConfig ModelConfig::from_json(const json& j) {
  ModelConfig c;
  ObjectReader r(j, "model_config");
  r.require_keys({"d_model", "n_layer", "vocab_size"});
  r.get("d_model", c.d_model);
  r.get("d_intermediate", c.d_intermediate);
  r.get("n_layer", c.n_layer);
  r.get("vocab_size", c.vocab_size);
  r.get("attn_layer_idx", c.attn_layer_idx);
  r.get("parallel_layer_idx", c.parallel_layer_idx);
  r.get("mlp_only_layer_idx", c.mlp_only_layer_idx);
  r.get("mlp_layer_idx", c.mlp_layer_idx);
  r.get("rms_norm", c.rms_norm);
  r.get("norm_epsilon", c.norm_epsilon);
  r.get("residual_in_fp32", c.residual_in_fp32);
  r.get("fused_add_norm", c.fused_add_norm);
  r.get("pad_vocab_size_multiple", c.pad_vocab_size_multiple);
  r.get("tie_embeddings", c.tie_embeddings);
  r.get("pos_emb", c.pos_emb);
  r.get("max_seq_len", c.max_seq_len);
  r.get("mlp_type", c.mlp_type);
  r.get("mlp_activation", c.mlp_activation);
  r.get("mlp_bias", c.mlp_bias);
  r.get("parallel_residual", c.parallel_residual);
  r.get("embedding_multiplier", c.embedding_multiplier);
  r.get("parallel_mix", c.parallel_mix);
  r.get("post_norms", c.post_norms);
  r.get("final_logit_softcap", c.final_logit_softcap);
  require(c.final_logit_softcap >= 0 && std::isfinite(c.final_logit_softcap),
          "model_config.final_logit_softcap: expected a positive number, or 0 for none");
  require(c.parallel_mix == "tanh_beta" || c.parallel_mix == "sum",
          "model_config.parallel_mix: expected \"tanh_beta\" or \"sum\", found \"" + c.parallel_mix + "\"");
  require(c.embedding_multiplier > 0 && std::isfinite(c.embedding_multiplier),
          "model_config.embedding_multiplier: expected a positive number");

  require(c.d_model > 0, "model_config.d_model: must be positive, found " + std::to_string(c.d_model));
  require(c.n_layer > 0, "model_config.n_layer: must be positive, found " + std::to_string(c.n_layer));
  require(c.vocab_size > 0, "model_config.vocab_size: must be positive, found " + std::to_string(c.vocab_size));
  require(c.d_intermediate >= 0, "model_config.d_intermediate: must be >= 0");
  require(c.pad_vocab_size_multiple >= 1, "model_config.pad_vocab_size_multiple: must be >= 1");
  require(c.norm_epsilon > 0, "model_config.norm_epsilon: must be positive");
  require(c.pos_emb == "none" || c.pos_emb == "learned",
          "model_config.pos_emb: expected \"none\" or \"learned\", found \"" + c.pos_emb + "\"");
  require(c.mlp_type == "gated" || c.mlp_type == "plain",
          "model_config.mlp_type: expected \"gated\" or \"plain\", found \"" + c.mlp_type + "\"");
  require(c.mlp_activation == "silu" || c.mlp_activation == "gelu" || c.mlp_activation == "gelu_tanh" ||
              c.mlp_activation == "relu" || c.mlp_activation == "relu2",
          "model_config.mlp_activation: expected \"silu\", \"gelu\", \"gelu_tanh\", \"relu\" or \"relu2\", found \"" +
              c.mlp_activation + "\"");
  if (c.pos_emb == "learned")
    require(c.max_seq_len > 0, "model_config.max_seq_len: a learned position table needs max_seq_len > 0");
  // Sanity bounds so that a corrupt or hostile config cannot ask for terabytes.
  require(c.d_model <= kMaxDModel && c.n_layer <= kMaxLayers && c.vocab_size <= kMaxVocab && c.d_intermediate <= kMaxIntermediate &&
              c.max_seq_len <= 1 << 22,
          "model_config: sizes beyond MechScope's limits (d_model <= 65536, n_layer <= 1024, vocab_size <= 4e6)");
  if (r.has("moe_cfg")) parse_moe(r.raw("moe_cfg"), c);
  else r.ignore("moe_cfg");
  if (r.has("shared_cfg")) parse_shared(r.raw("shared_cfg"), c);
  else r.ignore("shared_cfg");
  check_layers(c.attn_layer_idx, c.n_layer, "attn_layer_idx");
  check_layers(c.parallel_layer_idx, c.n_layer, "parallel_layer_idx");
  check_layers(c.mlp_only_layer_idx, c.n_layer, "mlp_only_layer_idx");
  check_layers(c.mlp_layer_idx, c.n_layer, "mlp_layer_idx");
  for (int64_t i : c.mlp_only_layer_idx) {
    const bool other = std::count(c.attn_layer_idx.begin(), c.attn_layer_idx.end(), i) ||
                       std::count(c.parallel_layer_idx.begin(), c.parallel_layer_idx.end(), i);
    require(!other, "mlp_only_layer_idx: layer " + std::to_string(i) + " also has a mixer (attn_layer_idx or parallel_layer_idx)");
    require(c.has_mlp(), "mlp_only_layer_idx: layer " + std::to_string(i) + " is only an MLP, but the model has none "
                         "(d_intermediate 0, no moe_cfg)");
    require(c.layer_has_mlp(i), "mlp_layer_idx: layer " + std::to_string(i) + " is only an MLP (mlp_only_layer_idx) and "
                                "must be listed");
  }
  require(c.mlp_layer_idx.empty() || c.has_mlp(), "mlp_layer_idx: lists layers, but the model has no MLP");
  for (int64_t i : c.parallel_layer_idx)
    require(std::find(c.attn_layer_idx.begin(), c.attn_layer_idx.end(), i) == c.attn_layer_idx.end(),
            "parallel_layer_idx: layer " + std::to_string(i) + " is also in attn_layer_idx; a layer is one or the other");

  bool any_ssm = static_cast<int64_t>(c.attn_layer_idx.size()) < c.n_layer;
  bool any_attn = !c.attn_layer_idx.empty() || !c.parallel_layer_idx.empty();

  json ssm = r.has("ssm_cfg") ? r.raw("ssm_cfg") : json::object();
  r.ignore("ssm_cfg");
  {
    if (!ssm.is_object()) throw std::invalid_argument("model_config.ssm_cfg: expected a JSON object");
    ObjectReader sr(ssm, "ssm_cfg");
    sr.get("layer", c.ssm_layer);
    require(c.ssm_layer == "Mamba1" || c.ssm_layer == "Mamba2",
            "ssm_cfg.layer: expected \"Mamba1\" or \"Mamba2\", found \"" + c.ssm_layer + "\"");
    if (c.ssm_layer == "Mamba1") parse_mamba1(sr, c);
    else parse_mamba2(sr, c);
  }
  (void)any_ssm;

  json attn = r.has("attn_cfg") ? r.raw("attn_cfg") : json::object();
  r.ignore("attn_cfg");
  if (any_attn) {
    parse_attn(attn, c);
    require(c.attn.num_heads > 0, "attn_cfg.num_heads: required and positive when the model has attention layers");
    if (c.attn.head_dim == 0)
      require(c.d_model % c.attn.num_heads == 0, "attn_cfg.num_heads: d_model (" + std::to_string(c.d_model) +
                                                     ") must be divisible by num_heads, or set head_dim");
    check_attn_heads(c.attn, c.attn_head_dim(c.d_model), "attn_cfg");
  } else if (!attn.empty()) {
    parse_attn(attn, c);  // still validated, so that a typo is reported
  }
  r.finish(kTopKeys);
  return c;
}

// attn_cfg (and shared_cfg.attn) as written.
static json attn_json(const AttnConfig& attn) {
  json a = json::object();
  a["num_heads"] = attn.num_heads;
  if (attn.num_heads_kv > 0) a["num_heads_kv"] = attn.num_heads_kv;
  if (attn.head_dim > 0) a["head_dim"] = attn.head_dim;
  a["qkv_proj_bias"] = attn.qkv_proj_bias;
  a["out_proj_bias"] = attn.out_proj_bias;
  if (attn.softmax_scale > 0) a["softmax_scale"] = attn.softmax_scale;
  a["causal"] = attn.causal;
  a["rotary_emb_dim"] = attn.rotary_emb_dim;
  a["rotary_emb_base"] = attn.rotary_emb_base;
  a["rotary_emb_interleaved"] = attn.rotary_emb_interleaved;
  const RotaryScaling& rs = attn.rotary_scaling;
  if (!rs.type.empty()) {  // written only when set: older files stay as they were
    json s = {{"type", rs.type}, {"factor", rs.factor}};
    if (rs.type == "llama3") {
      s["low_freq_factor"] = rs.low_freq_factor;
      s["high_freq_factor"] = rs.high_freq_factor;
      s["original_max_position_embeddings"] = rs.original_max_position;
    }
    if (rs.type == "yarn" || rs.type == "dynamic") s["original_max_position_embeddings"] = rs.original_max_position;
    if (rs.type == "yarn") {
      s["attention_factor"] = rs.attention_factor;
      s["beta_fast"] = rs.beta_fast;
      s["beta_slow"] = rs.beta_slow;
      s["truncate"] = rs.truncate;
    }
    a["rotary_scaling"] = s;
  }
  if (attn.sliding_window > 0) a["sliding_window"] = attn.sliding_window;
  if (!attn.sliding_window_layers.empty()) a["sliding_window_layers"] = attn.sliding_window_layers;
  if (attn.qk_norm) a["qk_norm"] = true;
  if (attn.softcap > 0) a["softcap"] = attn.softcap;
  if (attn.qk_norm_whole) a["qk_norm_whole"] = true;
  if (attn.clip_qkv > 0) a["clip_qkv"] = attn.clip_qkv;
  if (attn.sliding_rotary_base > 0) a["sliding_rotary_base"] = attn.sliding_rotary_base;
  if (attn.hard_alibi_heads > 0) a["hard_alibi_heads"] = attn.hard_alibi_heads;
  return a;
}

json ModelConfig::to_json() const {
  json j;
  j["d_model"] = d_model;
  j["d_intermediate"] = d_intermediate;
  j["n_layer"] = n_layer;
  j["vocab_size"] = vocab_size;
  json ssm;
  ssm["layer"] = ssm_layer;
  if (ssm_layer == "Mamba1") {
    const auto& m = mamba1;
    ssm["d_state"] = m.d_state;
    ssm["d_conv"] = m.d_conv;
    ssm["expand"] = m.expand;
    ssm["dt_rank"] = m.dt_rank;
    ssm["dt_min"] = m.dt_min;
    ssm["dt_max"] = m.dt_max;
    ssm["dt_init"] = m.dt_init;
    ssm["dt_scale"] = m.dt_scale;
    ssm["dt_init_floor"] = m.dt_init_floor;
    ssm["conv_bias"] = m.conv_bias;
    ssm["bias"] = m.bias;
    if (m.bcdt_rms_eps > 0) ssm["bcdt_rms_eps"] = m.bcdt_rms_eps;  // written only when set, as before
    if (m.bcdt_norm_weights) ssm["bcdt_norm_weights"] = true;
  } else {
    const auto& m = mamba2;
    ssm["d_state"] = m.d_state;
    ssm["d_conv"] = m.d_conv;
    if (m.conv_init > 0) ssm["conv_init"] = m.conv_init;
    ssm["expand"] = m.expand;
    ssm["headdim"] = m.headdim;
    ssm["d_ssm"] = m.d_ssm;
    ssm["ngroups"] = m.ngroups;
    ssm["A_init_range"] = {m.A_init_min, m.A_init_max};
    ssm["D_has_hdim"] = m.D_has_hdim;
    ssm["rmsnorm"] = m.rmsnorm;
    ssm["norm_before_gate"] = m.norm_before_gate;
    ssm["dt_min"] = m.dt_min;
    ssm["dt_max"] = m.dt_max;
    ssm["dt_init_floor"] = m.dt_init_floor;
    if (m.dt_limit_min != 0.0 || m.dt_limit_max != 0.0)
      ssm["dt_limit"] = {m.dt_limit_min, m.dt_limit_max > 0 ? json(m.dt_limit_max) : json(nullptr)};
    ssm["bias"] = m.bias;
    ssm["conv_bias"] = m.conv_bias;
    ssm["chunk_size"] = m.chunk_size;
    if (m.norm_eps != 1e-5) ssm["norm_eps"] = m.norm_eps;  // written only when not mamba_ssm's, as before
  }
  j["ssm_cfg"] = ssm;
  j["attn_layer_idx"] = attn_layer_idx;
  json a = json::object();
  if (!attn_layer_idx.empty() || !parallel_layer_idx.empty()) a = attn_json(attn);
  j["attn_cfg"] = a;
  j["rms_norm"] = rms_norm;
  j["norm_epsilon"] = norm_epsilon;
  j["residual_in_fp32"] = residual_in_fp32;
  j["fused_add_norm"] = fused_add_norm;
  j["pad_vocab_size_multiple"] = pad_vocab_size_multiple;
  j["tie_embeddings"] = tie_embeddings;
  j["pos_emb"] = pos_emb;
  if (pos_emb == "learned" || max_seq_len > 0) j["max_seq_len"] = max_seq_len;
  j["parallel_layer_idx"] = parallel_layer_idx;
  if (!mlp_only_layer_idx.empty()) j["mlp_only_layer_idx"] = mlp_only_layer_idx;  // written only when set
  if (!mlp_layer_idx.empty()) j["mlp_layer_idx"] = mlp_layer_idx;
  // Written only when not the defaults, so that the files of earlier versions stay as they were.
  if (mlp_type != "gated") j["mlp_type"] = mlp_type;
  if (mlp_activation != "silu") j["mlp_activation"] = mlp_activation;
  if (mlp_bias) j["mlp_bias"] = true;
  if (parallel_residual) j["parallel_residual"] = true;
  if (embedding_multiplier != 1.0) j["embedding_multiplier"] = embedding_multiplier;
  if (parallel_mix != "tanh_beta") j["parallel_mix"] = parallel_mix;
  if (post_norms) j["post_norms"] = true;
  if (final_logit_softcap > 0) j["final_logit_softcap"] = final_logit_softcap;
  if (moe.num_experts > 0) {  // written only when set (an older reader refuses the key by name)
    json m = {{"num_experts", moe.num_experts}, {"top_k", moe.top_k}, {"hidden", moe.hidden}};
    if (moe.normalize_top_k) m["normalize_top_k"] = true;
    if (!moe.layers.empty()) m["layers"] = moe.layers;
    if (moe.shared_hidden > 0) m["shared_hidden"] = moe.shared_hidden;
    if (moe.shared_gate) m["shared_gate"] = true;
    j["moe_cfg"] = m;
  }
  if (!shared.layers.empty()) {  // written only when set (an older reader refuses the key by name)
    json sh = {{"layers", shared.layers}, {"attn", attn_json(shared.attn)}, {"hidden", shared.hidden}};
    if (shared.mlp_activation != "gelu") sh["mlp_activation"] = shared.mlp_activation;
    j["shared_cfg"] = sh;
  }
  return j;
}

std::vector<std::string> ModelConfig::preset_names() {
  return {"transformer", "mamba1", "mamba2", "hybrid", "parallel-hybrid", "gpt-neox"};
}

json ModelConfig::preset_json(const std::string& name, const json& overrides) {
  const json attn = {{"num_heads", 4}, {"causal", true}, {"rotary_emb_dim", 32}};
  const json mamba1 = {{"layer", "Mamba1"}, {"d_state", 16}, {"d_conv", 4}, {"expand", 2}};
  const json mamba2 = {{"layer", "Mamba2"}, {"d_state", 32}, {"d_conv", 4}, {"expand", 2},
                       {"headdim", 32}, {"ngroups", 1}, {"chunk_size", 64}};
  json j = {{"d_model", 128}, {"n_layer", 2}, {"vocab_size", 64}, {"d_intermediate", 0},
            {"rms_norm", true}, {"tie_embeddings", true}, {"pad_vocab_size_multiple", 8}, {"pos_emb", "none"}};
  if (name == "transformer") {
    j["d_intermediate"] = 256;
    j["attn_layer_idx"] = {0, 1};
    j["attn_cfg"] = attn;
    j["ssm_cfg"] = json::object();
  } else if (name == "mamba1") {
    j["ssm_cfg"] = mamba1;
  } else if (name == "mamba2") {
    j["ssm_cfg"] = mamba2;
  } else if (name == "hybrid") {
    j["n_layer"] = 4;
    j["attn_layer_idx"] = {1, 3};  // alternating: Mamba2, MHA, Mamba2, MHA
    j["ssm_cfg"] = mamba2;
    j["attn_cfg"] = attn;
  } else if (name == "gpt-neox") {  // Pythia's block: LayerNorms, parallel residual, GELU MLP, a quarter rotated
    j["d_intermediate"] = 512;
    j["attn_layer_idx"] = {0, 1};
    j["attn_cfg"] = {{"num_heads", 4}, {"causal", true}, {"rotary_emb_dim", 8}};
    j["ssm_cfg"] = json::object();
    j["rms_norm"] = false;
    j["mlp_type"] = "plain";
    j["mlp_activation"] = "gelu";
    j["mlp_bias"] = true;
    j["parallel_residual"] = true;
  } else if (name == "parallel-hybrid") {
    j["parallel_layer_idx"] = {0, 1};
    j["ssm_cfg"] = mamba2;
    j["attn_cfg"] = attn;
  } else {
    throw std::invalid_argument("unknown preset '" + name + "'; presets: " + join(preset_names(), ", "));
  }
  if (overrides.is_null() || overrides.empty()) return j;
  if (!overrides.is_object()) throw std::invalid_argument("preset overrides: expected a JSON object");
  j.merge_patch(overrides);
  // A changed depth keeps the preset's layer pattern unless the overrides set the layer lists themselves.
  if (overrides.contains("n_layer") && j["n_layer"].is_number_integer()) {
    const int64_t n = j["n_layer"].get<int64_t>();
    std::vector<int64_t> idx;
    if (!overrides.contains("attn_layer_idx") && j.contains("attn_layer_idx")) {
      for (int64_t i = 0; i < n; ++i)
        if (name == "transformer" || name == "gpt-neox" || (name == "hybrid" && i % 2 == 1)) idx.push_back(i);
      j["attn_layer_idx"] = idx;
    }
    idx.clear();
    if (!overrides.contains("parallel_layer_idx") && name == "parallel-hybrid") {
      for (int64_t i = 0; i < n; ++i) idx.push_back(i);
      j["parallel_layer_idx"] = idx;
    }
  }
  return j;
}

}  // namespace mechscope
