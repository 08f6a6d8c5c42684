// What the importers of foreign checkpoints share (internal to core/io): typed access to a config.json, the foreign
// tensors consumed by name (what is never consumed is reported), the mapped result (a native model_config and
// tensors under native names), and the table of families, one file each under core/io/families/, that
// import_checkpoint dispatches through. Must not: build models (model_from_weights does).
#pragma once

#include <cmath>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "core/io/checkpoint.h"
#include "core/io/foreign.h"
#include "core/util/json.h"
#include "core/util/strings.h"

namespace mechscope::families {

using nlohmann::json;

/// Keys of a Hugging Face config.json that do not change a model's forward pass: metadata, token ids, generation
/// and initialisation settings, and implementation choices with the same math (docs/import.md lists them).
/// Every other key a family's mapper does not read is refused by name (Cfg::finish), never silently dropped.
inline const std::set<std::string>& hf_ignored_keys() {
  static const std::set<std::string> keys = {
      "model_type", "architectures", "transformers_version", "dtype", "torch_dtype", "_name_or_path",
      "bos_token_id", "eos_token_id", "pad_token_id", "use_cache", "initializer_range", "output_attentions",
      "output_hidden_states", "return_dict", "tokenizer_class", "id2label", "label2id", "max_position_embeddings",
      "attention_dropout", "pretraining_tp", "rescale_prenorm_residual", "time_step_min", "time_step_max",
      "time_step_floor", "time_step_init_scheme", "time_step_scale", "use_mambapy", "use_associative_scan"};
  return keys;
}

// Typed access to a foreign config, with defaults and errors naming the file and key. Remembers which keys were
// read, so that finish() can refuse the ones nobody read.
class Cfg {
 public:
  Cfg(const json& j, std::string where) : j_(j), where_(std::move(where)) {}
  bool has(const std::string& k) const {
    used_.insert(k);
    return j_.contains(k) && !j_.at(k).is_null();
  }
  /// Refuses every key that was not read and is not in `ignored` (or hf_ignored_keys()), naming it and its value.
  void finish(const std::string& family, const std::set<std::string>& ignored = {}) const {
    for (const auto& [k, v] : j_.items())
      if (!used_.count(k) && !ignored.count(k) && !hf_ignored_keys().count(k))
        throw CheckpointError(where_ + ": '" + k + "' = " + v.dump().substr(0, 200) + " is not understood by the " +
                              family + " importer; MechScope refuses what it would otherwise ignore silently");
  }
  template <typename T>
  T get(const std::string& k, const T& def) const {
    if (!has(k)) return def;
    return as<T>(k);
  }
  template <typename T>
  T req(const std::string& k) const {
    if (!has(k)) throw CheckpointError(where_ + ": the key '" + k + "' is missing");
    return as<T>(k);
  }
  /// A required size in [1, hi] (layers, width, vocabulary), checked before anything loops over it or allocates it.
  int64_t count(const std::string& k, int64_t hi) const {
    const int64_t v = req<int64_t>(k);
    if (v < 1 || v > hi)
      throw CheckpointError(where_ + ": '" + k + "' is " + std::to_string(v) + ", outside MechScope's limits [1, " +
                            std::to_string(hi) + "]");
    return v;
  }
  double number(const std::string& k, double def) const {  // accepts "Infinity" strings
    if (!has(k)) return def;
    return to_number(j_.at(k), k);
  }
  double to_number(const json& v, const std::string& k) const {
    if (v.is_number()) return v.get<double>();
    // Python's json writes Infinity (read here as a string); transformers 5 writes {"__float__": "Infinity"}.
    const json* text = &v;
    if (v.is_object() && v.size() == 1 && v.contains("__float__")) text = &v.at("__float__");
    if (text->is_string()) {
      const auto s = text->get<std::string>();
      if (s == "Infinity") return HUGE_VAL;
      if (s == "-Infinity") return -HUGE_VAL;
    }
    throw CheckpointError(where_ + ": '" + k + "' should be a number, found " + v.dump());
  }
  const json& raw(const std::string& k) const {
    used_.insert(k);
    return j_.at(k);
  }
  const std::string& where() const { return where_; }

 private:
  template <typename T>
  T as(const std::string& k) const {
    try {
      return get_exact<T>(j_.at(k));
    } catch (const std::invalid_argument&) {
      throw CheckpointError(where_ + ": '" + k + "' should be " +
                            (std::is_integral_v<T> ? "an integer" : "of another type") + ", found " + j_.at(k).dump());
    } catch (const json::exception&) {
      throw CheckpointError(where_ + ": '" + k + "' has an unexpected type: " + j_.at(k).dump());
    }
  }
  const json& j_;
  std::string where_;
  mutable std::set<std::string> used_;
};

// The foreign tensors, consumed by name; what is never consumed is reported.
class Tensors {
 public:
  Tensors(const std::vector<TensorSource>& files, std::string where) : where_(std::move(where)) {
    for (const auto& f : files)
      for (const auto& [name, load] : f.tensors) {
        if (!map_.emplace(name, load).second) throw CheckpointError(where_ + ": tensor '" + name + "' appears in two files");
        order_.push_back(name);
        dtypes_[name] = f.dtypes.at(name);
      }
  }
  /// Whether the files hold `n` (taken or not).
  bool has(const std::string& n) const { return map_.count(n) > 0 || used_.count(n) > 0; }
  /// The tensor `n`, read now and handed over: this table keeps nothing of it, so that a tensor fused or converted
  /// by a mapper is freed as soon as the mapper is done with it (a model's weights are then in memory about once).
  /// Floating tensors come as float32, or, for a model held in half precision (hold_as), matrices in that dtype;
  /// `as_float32` asks for float32 whatever the model's dtype (for a mapper that computes with the matrix: Zamba2's
  /// adapters).
  at::Tensor take(const std::string& n, bool as_float32 = false) {
    settle();
    auto it = map_.find(n);
    if (it == map_.end() && used_.count(n))
      throw CheckpointError(where_ + ": the mapping reads '" + n + "' twice (an importer bug)");
    if (it == map_.end()) {
      std::vector<std::string> some(order_.begin(), order_.begin() + std::min<size_t>(order_.size(), 6));
      throw CheckpointError(where_ + ": the weights lack '" + n + "'" + closest_matches_hint(n, order_) +
                            " (the file holds " + std::to_string(order_.size()) + " tensors, e.g. " + join(some, ", ") + ")");
    }
    used_.insert(n);
    const std::function<at::Tensor()> load = std::move(it->second);
    map_.erase(it);
    try {
      at::Tensor x = load();
      if (!at::isFloatingType(x.scalar_type())) return x;
      // Matrices in the model's dtype at once; vectors (norms, biases) in float32, for the mapper's arithmetic.
      return x.to(settle_dtype_ != at::kFloat && x.dim() >= 2 && !as_float32 ? settle_dtype_ : at::kFloat);
    } catch (const ForeignFormatError& e) {
      throw CheckpointError(where_ + ": reading '" + n + "': " + e.what());
    }
  }
  /// The dtype the model will hold its weights in. Not float32: the matrices the mapper has put in its Mapped (`put`
  /// shows it to this table: watch) are rounded to `dtype` at each take, so the mapper reads and computes in float32
  /// (fusing, folding adapters) while the weights it has mapped are held in bfloat16, each rounded once, instead of
  /// the whole model in float32 until the end. Vectors (norm weights, biases: little memory) stay float32 until the
  /// model is built, so that a mapper's later `1 + w` is exact; a multiplier folded into a matrix already mapped
  /// (Falcon-H1, Granite) rounds it a second time. float32: nothing changes.
  void hold_as(at::ScalarType dtype) { settle_dtype_ = dtype; }
  void watch(std::map<std::string, at::Tensor>* weights) { settle_ = weights; }
  void unwatch() { settle_ = nullptr; }
  void settle() const {
    if (!settle_ || settle_dtype_ == at::kFloat) return;
    for (auto& [name, w] : *settle_)
      if (w.defined() && w.dim() >= 2 && at::isFloatingType(w.scalar_type()) && w.scalar_type() != settle_dtype_)
        w = w.to(settle_dtype_);
  }
  void drop(const std::string& n) {
    used_.insert(n);
    map_.erase(n);
  }
  const std::string& dtype(const std::string& n) const { return dtypes_.at(n); }
  const std::vector<std::string>& names() const { return order_; }
  void check_all_used() const {
    std::vector<std::string> left;
    for (const auto& n : order_)
      if (!used_.count(n)) left.push_back(n);
    if (left.empty()) return;
    std::vector<std::string> head(left.begin(), left.begin() + std::min<size_t>(left.size(), 8));
    throw CheckpointError(where_ + ": " + std::to_string(left.size()) + " tensor(s) the configuration has no place for: " +
                          join(head, ", ") + (left.size() > 8 ? ", ..." : "") +
                          " (does config.json match these weights?)");
  }

 private:
  std::map<std::string, std::function<at::Tensor()>> map_;  // the loaders of the tensors not taken yet
  std::map<std::string, std::string> dtypes_;
  std::vector<std::string> order_;
  std::set<std::string> used_;
  std::string where_;
  std::map<std::string, at::Tensor>* settle_ = nullptr;
  at::ScalarType settle_dtype_ = at::kFloat;
};

struct Mapped {
  json model_config;
  std::map<std::string, at::Tensor> weights;          // native names
  std::map<std::string, std::string> source_dtype;    // native name -> original dtype when not float32
  std::vector<std::string> notes;
};

void put(Mapped& m, Tensors& t, const std::string& native, const std::string& foreign);
// Ties: drop lm_head.weight when it equals the embedding; a different one means the config is wrong.
void handle_tied_head(Mapped& m, Tensors& t, bool tie, const std::string& head, const std::string& where);
// Copies every tensor of the backbone.layers.* / backbone.norm_f tree, renaming the embedding.
void copy_backbone(Mapped& m, Tensors& t, const std::string& embedding_name);

void require_silu(const Cfg& c);
/// transformers' activation name under `key` as an mlp_activation ("gelu", "gelu_tanh" for gelu_new and
/// gelu_pytorch_tanh, "relu", "silu"); any other is refused by name.
std::string hf_activation(const Cfg& c, const std::string& key, const std::string& def);
/// The native model_config of a Hugging Face decoder whose every layer is attention: RMSNorm or LayerNorm of
/// epsilon `eps`, the residual in the model's dtype (as transformers keeps it), no vocabulary padding.
json transformer_config(int64_t d, int64_t d_intermediate, int64_t n_layer, int64_t vocab, const json& attn, bool rms,
                        double eps, bool tie);
/// Llama's attention projections under `f` ("model.layers.3.self_attn.": q/k/v fused into `n` + "in_proj", o ->
/// out_proj, Qwen3's q_norm/k_norm), checked against the head counts.
struct LlamaAttention {
  int64_t heads, kv_heads, head_dim;
  bool qkv_bias = false, out_bias = false, qk_norm = false;
};
void map_llama_attention(Mapped& m, Tensors& t, const std::string& f, const std::string& n, const LlamaAttention& a,
                         const std::string& where);
/// A SwiGLU MLP under `f` (gate_proj, up_proj, down_proj) as a GatedMLP under `n` ("backbone.layers.3.mlp."),
/// padded with zero units to its multiple of 128.
void map_swiglu(Mapped& m, Tensors& t, const std::string& f, const std::string& n, int64_t inter, bool bias,
                const std::string& where);
/// Where one mixture-of-experts layer's tensors lie, as a family names them, under the layer's folder: the original
/// layout (what transformers 4 and 5 save) has the router at `dir` + `router` and one gated MLP per expert at
/// `dir` + "experts.{e}." + gate / up / down + ".weight"; the fused layout (transformers 5 in memory, saved with
/// save_original_format=False; Granite's own) has the router at `fused_dir` + `fused_router`, `fused_dir` +
/// `fused_gate_up` [E, 2 hidden, d] (the gate's rows, then up's) and `fused_dir` + `fused_down` [E, d, hidden].
struct ExpertLayout {
  std::string dir, fused_dir, router, gate, up, down;
  std::string fused_router = router, fused_gate_up = "experts.gate_up_proj", fused_down = "experts.down_proj";
};
/// The experts and router of layer folder `f` ("model.layers.3.") under `n` ("backbone.layers.3.mlp."): E gated
/// MLPs of exactly `hidden` units (MoEImpl's experts.{e}.fc1 = [up; gate], fc2 = down) and router.weight [E, d],
/// in either layout, every shape checked.
void map_experts(Mapped& m, Tensors& t, const std::string& f, const std::string& n, const ExpertLayout& layout,
                 int64_t E, int64_t hidden, const std::string& where);
/// A SwiGLU MLP under `f` (gate_proj, up_proj, down_proj) of exactly `hidden` units, unpadded, as an MLPImpl under `n`
/// (a shared expert, an expert).
void map_swiglu_exact(Mapped& m, Tensors& t, const std::string& f, const std::string& n, int64_t hidden,
                      const std::string& where, const std::string& gate = "gate_proj", const std::string& up = "up_proj",
                      const std::string& down = "down_proj");

/// The ssm_cfg of Hugging Face's Mamba2 layers (Mamba2, Bamba): their gated RMSNorm gates first; time_step_limit
/// read from the config ([min, max], max infinite = no clamp).
struct Mamba2Sizes {
  int64_t d_state, d_conv, expand, heads, headdim, groups, chunk;
};
json hf_mamba2_ssm(const Cfg& c, const Mamba2Sizes& s, double eps, bool conv_bias, bool bias);
/// The ssm_cfg of the Mamba2 layers of Bamba and Granite 4.0 H (mamba_expand, mamba_n_heads, mamba_d_head or "auto",
/// mamba_n_groups, mamba_d_state, mamba_d_conv, mamba_chunk_size, mamba_conv_bias, mamba_proj_bias; heads x head
/// size must be mamba_expand x hidden_size `d`), with the gated norm's epsilon `eps`.
json hf_mamba2_layer_ssm(const Cfg& c, int64_t d, double eps);
/// A Hugging Face Mamba2 layer's tensors under `f` ("model.layers.3.mamba.": in_proj, conv1d, dt_bias, A_log, D, the
/// gated norm, out_proj, and the biases `ssm` has) as MechScope's Mamba2 under `n` ("backbone.layers.3.mixer.").
void map_hf_mamba2_layer(Mapped& m, Tensors& t, const std::string& f, const std::string& n, const json& ssm);
/// mamba_d_head, or "auto": `width` / `heads`; heads x head size must equal `width` (`width_text` names it in the
/// refusal, e.g. "mamba_expand * hidden_size").
int64_t hf_mamba_head_dim(const Cfg& c, int64_t heads, int64_t width, const std::string& width_text);
/// num_attention_heads, num_key_value_heads (default: as many) and head_dim (default hidden_size `d` / heads), checked
/// to divide (the hybrids' attention: Falcon-H1, Granite 4.0 H).
LlamaAttention hf_attention_heads(const Cfg& c, int64_t d);
/// The layer numbers a config lists under `key` (attn_layer_indices, mlp_only_layers): empty when absent.
std::vector<int64_t> hf_layer_list(const Cfg& c, const std::string& key);
/// The per-layer kinds a config lists under `key` (layer_types, ...): empty when absent, else exactly `n_layer` strings.
std::vector<std::string> hf_layer_kinds(const Cfg& c, const std::string& key, int64_t n_layer);
/// A muP-style multiplier under `key` (1 when absent): finite, and non-zero where `nonzero` (a divisor).
double hf_multiplier(const Cfg& c, const std::string& key, bool nonzero = false);
/// Rows [from, from + n) of w times s (s != 1), in a copy: a tensor of a torch.save archive may share its storage.
void scale_rows(at::Tensor& w, int64_t from, int64_t n, double s);
/// A note when a SwiGLU's intermediate_size is padded to GatedMLP's multiple of 128.
void note_mlp_padding(Mapped& m, int64_t inter);
/// "[3, 4]".
std::string dims_text(const at::Tensor& t);

// The part HF Mamba and Mamba2 share: the top-level config around their ssm_cfg, and the tensor names.
void finish_hf_ssm(Mapped& m, const Cfg& c, Tensors& t, int64_t d, const json& ssm, bool tie);

/// A rotary embedding as a config.json describes it (family.cpp, read_rope).
struct Rope {
  double theta = 10000.0;
  json scaling;         ///< attn_cfg.rotary_scaling, or null
  double partial = 1.0; ///< rope_parameters.partial_rotary_factor (5.x), when the family allows one
};
/// The attn_cfg of transformers' rotary attention (rotate-half) with grouped kv heads: head_dim written where it is
/// not d / heads, the first `rotary` features of each head rotated as `rope` says.
struct RotaryAttention {
  int64_t d, heads, kv_heads, head_dim, rotary;
  bool qkv_bias = false, out_bias = false;
};
json rotary_attn_cfg(const RotaryAttention& a, const Rope& rope);
/// transformers 4's top-level rope_theta and rope_scaling, or 5's rope_parameters, with every key checked.
Rope read_rope(const Cfg& c, double default_theta, bool partial_ok = false);
/// The rotated dimensions of a head of `head_dim`: partial_rotary_factor from rope_parameters (transformers 5, already
/// in `rope`) or the top level (4.x; `def` when absent), refused unless it gives an even number of them.
int64_t hf_partial_rotary(const Cfg& c, Rope& rope, int64_t head_dim, double def);

// Zero rows (fc1) or columns (fc2) up to GatedMLP's multiple of 128: the padded units compute 0 * silu(0) = 0.
at::Tensor pad_dim(const at::Tensor& w, int64_t dim, int64_t to);

/// A foreign checkpoint family: its name (ImportInfo::source_format), how its config.json is recognised, and the
/// mapping of its config and tensors onto native ones.
struct Family {
  std::string format;       ///< "mamba_ssm", "hf-mamba", ...
  std::string model_type;   ///< Hugging Face's config.model_type ("" for mamba_ssm's own configs)
  std::function<Mapped(const json& config, Tensors& tensors, const std::string& where)> map;
  /// Bytes the mapped model holds beyond its files' tensors as float32 (Zamba2's per-use copies of its shared
  /// blocks), estimated from the config for the memory guard before a tensor is read; null: none.
  std::function<double(const json& config)> extra_bytes = nullptr;
};
/// Every family, in the order import_checkpoint tries them (family.cpp: one line each).
const std::vector<Family>& all();

// The families (one file each).
Mapped map_mamba_ssm(const json& j, Tensors& t, const std::string& where);
Mapped map_hf_mamba(const json& j, Tensors& t, const std::string& where);
Mapped map_hf_falcon_mamba(const json& j, Tensors& t, const std::string& where);
Mapped map_hf_mamba2(const json& j, Tensors& t, const std::string& where);
Mapped map_hf_llama(const json& j, Tensors& t, const std::string& where);
Mapped map_hf_mistral(const json& j, Tensors& t, const std::string& where);
Mapped map_hf_gemma(const json& j, Tensors& t, const std::string& where);
Mapped map_hf_qwen2(const json& j, Tensors& t, const std::string& where);
Mapped map_hf_qwen3(const json& j, Tensors& t, const std::string& where);
Mapped map_hf_mixtral(const json& j, Tensors& t, const std::string& where);
Mapped map_hf_qwen2_moe(const json& j, Tensors& t, const std::string& where);
Mapped map_hf_qwen3_moe(const json& j, Tensors& t, const std::string& where);
Mapped map_hf_jamba(const json& j, Tensors& t, const std::string& where);
Mapped map_hf_zamba2(const json& j, Tensors& t, const std::string& where);
double hf_zamba2_extra_bytes(const json& j);
Mapped map_hf_gemma2(const json& j, Tensors& t, const std::string& where);
Mapped map_hf_olmoe(const json& j, Tensors& t, const std::string& where);
Mapped map_hf_phi3(const json& j, Tensors& t, const std::string& where);
Mapped map_hf_gemma3_text(const json& j, Tensors& t, const std::string& where);
Mapped map_hf_nemotron_h(const json& j, Tensors& t, const std::string& where);
Mapped map_hf_gpt2(const json& j, Tensors& t, const std::string& where);
Mapped map_hf_bamba(const json& j, Tensors& t, const std::string& where);
Mapped map_hf_falcon_h1(const json& j, Tensors& t, const std::string& where);
Mapped map_hf_granite_hybrid(const json& j, Tensors& t, const std::string& where);
Mapped map_hf_gpt_neox(const json& j, Tensors& t, const std::string& where);

}  // namespace mechscope::families
