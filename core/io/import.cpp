// Import of mamba_ssm and Hugging Face checkpoints (see import.h). Each format is a function from its config.json
// to a native model_config plus a renaming (with the few fusions the native layout needs) of its tensors.
#include "core/io/import.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "core/io/foreign.h"
#include "core/io/hdf5.h"
#include "core/model/model.h"
#include "core/util/strings.h"

namespace mechscope {
using nlohmann::json;

namespace {

bool is_dir(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool is_file(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}
std::string parent_of(const std::string& p) {
  const size_t s = p.find_last_of('/');
  return s == std::string::npos ? "." : (s == 0 ? "/" : p.substr(0, s));
}
std::string base_of(const std::string& p) {
  const size_t s = p.find_last_of('/');
  return s == std::string::npos ? p : p.substr(s + 1);
}
std::string slurp(const std::string& path, size_t limit) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw CheckpointError("cannot read '" + path + "'");
  std::string s;
  char buf[65536];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    s.append(buf, static_cast<size_t>(in.gcount()));
    if (s.size() > limit) throw CheckpointError("'" + path + "' is larger than a config can be (" + std::to_string(limit) + " bytes)");
  }
  return s;
}

// Python's json module writes Infinity, -Infinity and NaN, which JSON lacks: turn them into strings outside strings.
std::string python_json_fix(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  bool in_str = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_str) {
      out += c;
      if (c == '\\' && i + 1 < text.size()) out += text[++i];
      else if (c == '"') in_str = false;
      continue;
    }
    if (c == '"') { in_str = true; out += c; continue; }
    bool done = false;
    for (const char* word : {"-Infinity", "Infinity", "NaN"}) {
      const size_t n = std::strlen(word);
      if (text.compare(i, n, word) == 0) {
        out += std::string("\"") + word + "\"";
        i += n - 1;
        done = true;
        break;
      }
    }
    if (!done) out += c;
  }
  return out;
}

json read_json_file(const std::string& path) {
  try {
    return json::parse(python_json_fix(slurp(path, 64u << 20)));
  } catch (const json::exception& e) {
    throw CheckpointError("'" + path + "' is not valid JSON (" + e.what() + ")");
  }
}

// Typed access to a foreign config, with defaults and errors naming the file and key.
class Cfg {
 public:
  Cfg(const json& j, std::string where) : j_(j), where_(std::move(where)) {}
  bool has(const std::string& k) const { return j_.contains(k) && !j_.at(k).is_null(); }
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
  double number(const std::string& k, double def) const {  // accepts "Infinity" strings
    if (!has(k)) return def;
    return to_number(j_.at(k), k);
  }
  double to_number(const json& v, const std::string& k) const {
    if (v.is_number()) return v.get<double>();
    if (v.is_string()) {
      const auto s = v.get<std::string>();
      if (s == "Infinity") return HUGE_VAL;
      if (s == "-Infinity") return -HUGE_VAL;
    }
    throw CheckpointError(where_ + ": '" + k + "' should be a number, found " + v.dump());
  }
  const json& raw(const std::string& k) const { return j_.at(k); }
  const std::string& where() const { return where_; }

 private:
  template <typename T>
  T as(const std::string& k) const {
    try {
      return j_.at(k).get<T>();
    } catch (const json::exception&) {
      throw CheckpointError(where_ + ": '" + k + "' has an unexpected type: " + j_.at(k).dump());
    }
  }
  const json& j_;
  std::string where_;
};

// The foreign tensors, consumed by name; what is never consumed is reported.
class Tensors {
 public:
  Tensors(const std::vector<TensorFile>& files, std::string where) : where_(std::move(where)) {
    for (const auto& f : files)
      for (const auto& [name, t] : f.tensors) {
        if (!map_.emplace(name, t).second) throw CheckpointError(where_ + ": tensor '" + name + "' appears in two files");
        order_.push_back(name);
        dtypes_[name] = f.dtypes.at(name);
      }
  }
  bool has(const std::string& n) const { return map_.count(n) > 0; }
  at::Tensor take(const std::string& n) {
    auto it = map_.find(n);
    if (it == map_.end()) {
      std::vector<std::string> some(order_.begin(), order_.begin() + std::min<size_t>(order_.size(), 6));
      throw CheckpointError(where_ + ": the weights lack '" + n + "'" + closest_matches_hint(n, order_) +
                            " (the file holds " + std::to_string(order_.size()) + " tensors, e.g. " + join(some, ", ") + ")");
    }
    used_.insert(n);
    return it->second;
  }
  void drop(const std::string& n) { used_.insert(n); }
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
  std::map<std::string, at::Tensor> map_;
  std::map<std::string, std::string> dtypes_;
  std::vector<std::string> order_;
  std::set<std::string> used_;
  std::string where_;
};

struct Mapped {
  json model_config;
  std::map<std::string, at::Tensor> weights;          // native names
  std::map<std::string, std::string> source_dtype;    // native name -> original dtype when not float32
  std::vector<std::string> notes;
};

void put(Mapped& m, Tensors& t, const std::string& native, const std::string& foreign) {
  m.weights[native] = t.take(foreign);
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
    if (!h.sizes().equals(e.sizes()) || !at::equal(h, e))
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

Mapped map_mamba_ssm(const json& j, Tensors& t, const std::string& where) {
  Mapped m;
  m.model_config = j;
  for (const char* k : {"d_model", "n_layer", "vocab_size"})
    if (!j.contains(k)) throw CheckpointError(where + ": the mamba_ssm config lacks '" + std::string(k) + "'");
  // mamba_ssm's MambaConfig defaults, where the file leaves a key out.
  if (!j.contains("tie_embeddings")) m.model_config["tie_embeddings"] = true;
  if (!j.contains("pad_vocab_size_multiple")) m.model_config["pad_vocab_size_multiple"] = 8;
  const bool tie = m.model_config["tie_embeddings"].get<bool>();
  copy_backbone(m, t, "backbone.embedding.weight");
  handle_tied_head(m, t, tie, "lm_head.weight", where);
  return m;
}

void require_silu(const Cfg& c) {
  const auto act = c.get<std::string>("hidden_act", "silu");
  if (act != "silu" && act != "swish")
    throw CheckpointError(c.where() + ": hidden_act is '" + act + "'; MechScope's models use SiLU");
}

// The part HF Mamba and Mamba2 share: the top-level config around their ssm_cfg, and the tensor names.
void finish_hf_ssm(Mapped& m, const Cfg& c, Tensors& t, int64_t d, const json& ssm, bool tie) {
  m.model_config = {{"d_model", d},
                    {"n_layer", c.req<int64_t>("num_hidden_layers")},
                    {"vocab_size", c.req<int64_t>("vocab_size")},
                    {"ssm_cfg", ssm},
                    {"rms_norm", true},
                    {"norm_epsilon", c.number("layer_norm_epsilon", 1e-5)},
                    {"residual_in_fp32", c.get<bool>("residual_in_fp32", true)},
                    {"tie_embeddings", tie},
                    {"pad_vocab_size_multiple", 1}};
  copy_backbone(m, t, "backbone.embeddings.weight");
  handle_tied_head(m, t, tie, "lm_head.weight", c.where());
}

Mapped map_hf_mamba(const json& j, Tensors& t, const std::string& where) {
  Cfg c(j, where);
  require_silu(c);
  Mapped m;
  const int64_t d = c.req<int64_t>("hidden_size");
  const double expand = c.number("expand", 2);
  if (c.has("intermediate_size") && c.req<int64_t>("intermediate_size") != static_cast<int64_t>(expand * d))
    throw CheckpointError(where + ": intermediate_size (" + std::to_string(c.req<int64_t>("intermediate_size")) +
                          ") is not expand * hidden_size (" + std::to_string(static_cast<int64_t>(expand * d)) + ")");
  json ssm = {{"layer", "Mamba1"},
              {"d_state", c.get<int64_t>("state_size", 16)},
              {"d_conv", c.get<int64_t>("conv_kernel", 4)},
              {"expand", expand},
              {"conv_bias", c.get<bool>("use_conv_bias", true)},
              {"bias", c.get<bool>("use_bias", false)}};
  if (c.has("time_step_rank")) ssm["dt_rank"] = c.raw("time_step_rank");
  const bool tie = c.get<bool>("tie_word_embeddings", true);
  finish_hf_ssm(m, c, t, d, ssm, tie);
  return m;
}

Mapped map_hf_mamba2(const json& j, Tensors& t, const std::string& where) {
  Cfg c(j, where);
  require_silu(c);
  Mapped m;
  const int64_t d = c.req<int64_t>("hidden_size");
  const int64_t expand = c.get<int64_t>("expand", 2);
  const int64_t heads = c.get<int64_t>("num_heads", 128), headdim = c.get<int64_t>("head_dim", 64);
  if (heads * headdim != expand * d)
    throw CheckpointError(where + ": num_heads * head_dim (" + std::to_string(heads) + " * " + std::to_string(headdim) +
                          ") must equal expand * hidden_size (" + std::to_string(expand * d) + ")");
  json limit = json::array({0.0, nullptr});
  if (c.has("time_step_limit")) {
    const json& v = c.raw("time_step_limit");
    if (!v.is_array() || v.size() != 2) throw CheckpointError(where + ": time_step_limit should be [min, max]");
    const double lo = c.to_number(v[0], "time_step_limit"), hi = c.to_number(v[1], "time_step_limit");
    limit = json::array({lo, std::isinf(hi) ? json(nullptr) : json(hi)});
  }
  if (c.get<bool>("norm_before_gate", false))
    m.notes.push_back("config.json sets norm_before_gate, which Hugging Face's Mamba2 ignores (it gates, then "
                      "normalises); imported with the gate first, as Hugging Face computes it");
  json ssm = {{"layer", "Mamba2"},
              {"d_state", c.get<int64_t>("state_size", 128)},
              {"d_conv", c.get<int64_t>("conv_kernel", 4)},
              {"expand", expand},
              {"headdim", headdim},
              {"d_ssm", heads * headdim},
              {"ngroups", c.get<int64_t>("n_groups", 1)},
              {"chunk_size", c.get<int64_t>("chunk_size", 256)},
              {"dt_limit", limit},
              {"rmsnorm", true},
              {"norm_before_gate", false},
              {"conv_bias", c.get<bool>("use_conv_bias", true)},
              {"bias", c.get<bool>("use_bias", false)}};
  const bool tie = c.has("tie_word_embeddings") ? c.req<bool>("tie_word_embeddings") : !t.has("lm_head.weight");
  finish_hf_ssm(m, c, t, d, ssm, tie);
  return m;
}

// Zero rows (fc1) or columns (fc2) up to GatedMLP's multiple of 128: the padded units compute 0 * silu(0) = 0.
at::Tensor pad_dim(const at::Tensor& w, int64_t dim, int64_t to) {
  if (w.size(dim) == to) return w;
  std::vector<int64_t> shape = w.sizes().vec();
  shape[dim] = to - w.size(dim);
  return at::cat({w, at::zeros(shape, w.options())}, dim);
}

Mapped map_hf_llama(const json& j, Tensors& t, const std::string& where) {
  Cfg c(j, where);
  require_silu(c);
  if (c.has("rope_scaling"))
    throw CheckpointError(where + ": rope_scaling " + c.raw("rope_scaling").dump() +
                          " is not supported (MechScope imports Llama models with default rotary embeddings only)");
  if (c.get<bool>("mlp_bias", false)) throw CheckpointError(where + ": mlp_bias true is not supported (GatedMLP has no biases)");
  Mapped m;
  const int64_t d = c.req<int64_t>("hidden_size"), H = c.req<int64_t>("num_attention_heads");
  const int64_t Hkv = c.get<int64_t>("num_key_value_heads", H);
  if (H <= 0 || Hkv <= 0 || (d % H != 0 && !c.has("head_dim")))
    throw CheckpointError(where + ": hidden_size " + std::to_string(d) + " is not divisible by num_attention_heads " +
                          std::to_string(H));
  const int64_t D = c.get<int64_t>("head_dim", H > 0 ? d / H : 0);
  const int64_t L = c.req<int64_t>("num_hidden_layers"), inter = c.req<int64_t>("intermediate_size");
  const bool bias = c.get<bool>("attention_bias", false);
  const bool tie = c.get<bool>("tie_word_embeddings", false);
  json attn = {{"num_heads", H},
               {"num_heads_kv", Hkv},
               {"qkv_proj_bias", bias},
               {"out_proj_bias", bias},
               {"causal", true},
               {"rotary_emb_dim", D},
               {"rotary_emb_base", c.number("rope_theta", 10000.0)},
               {"rotary_emb_interleaved", false}};
  if (D * H != d) attn["head_dim"] = D;
  std::vector<int64_t> all(static_cast<size_t>(std::max<int64_t>(L, 0)));
  for (int64_t i = 0; i < L; ++i) all[static_cast<size_t>(i)] = i;
  m.model_config = {{"d_model", d},
                    {"d_intermediate", inter},
                    {"n_layer", L},
                    {"vocab_size", c.req<int64_t>("vocab_size")},
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

// Weight files of a folder: one file or a sharded index.
std::vector<std::string> find_weight_files(const std::string& dir, const std::string& where) {
  for (const char* name : {"model.safetensors", "pytorch_model.bin"})
    if (is_file(dir + "/" + name)) return {dir + "/" + name};
  for (const char* name : {"model.safetensors.index.json", "pytorch_model.bin.index.json"}) {
    const std::string idx = dir + "/" + name;
    if (!is_file(idx)) continue;
    json j = read_json_file(idx);
    if (!j.contains("weight_map") || !j["weight_map"].is_object())
      throw CheckpointError("'" + idx + "' has no weight_map object");
    std::set<std::string> files;
    for (const auto& [k, v] : j["weight_map"].items()) {
      if (!v.is_string() || v.get<std::string>().find('/') != std::string::npos)
        throw CheckpointError("'" + idx + "': weight_map entry '" + k + "' is not a file name in the same folder");
      files.insert(v.get<std::string>());
    }
    std::vector<std::string> out;
    for (const auto& f : files) {
      if (!is_file(dir + "/" + f)) throw CheckpointError("'" + idx + "' names shard '" + f + "', which is missing");
      out.push_back(dir + "/" + f);
    }
    return out;
  }
  throw CheckpointError(where + ": no weights found (looked for model.safetensors, pytorch_model.bin and their "
                        ".index.json shard lists)");
}

// tokenizer.json's vocabulary (BPE/WordPiece: {token: id}; Unigram: [[token, score], ...]) and added tokens.
std::vector<std::string> tokenizer_vocab(const std::string& dir, int64_t vocab_size, std::vector<std::string>& notes) {
  const std::string path = dir + "/tokenizer.json";
  if (!is_file(path)) return default_vocab(vocab_size);
  std::vector<std::string> v(static_cast<size_t>(vocab_size));
  try {
    json j = read_json_file(path);
    auto set = [&](int64_t id, const std::string& s) {
      if (id >= 0 && id < vocab_size) v[static_cast<size_t>(id)] = s;
    };
    if (j.contains("model") && j["model"].contains("vocab")) {
      const json& voc = j["model"]["vocab"];
      if (voc.is_object())
        for (const auto& [tok, id] : voc.items()) { if (id.is_number_integer()) set(id.get<int64_t>(), tok); }
      else if (voc.is_array())
        for (size_t i = 0; i < voc.size(); ++i)
          if (voc[i].is_array() && !voc[i].empty() && voc[i][0].is_string()) set(static_cast<int64_t>(i), voc[i][0].get<std::string>());
    }
    if (j.contains("added_tokens") && j["added_tokens"].is_array())
      for (const auto& a : j["added_tokens"])
        if (a.is_object() && a.contains("id") && a.contains("content") && a["id"].is_number_integer() && a["content"].is_string())
          set(a["id"].get<int64_t>(), a["content"].get<std::string>());
  } catch (const std::exception& e) {
    notes.push_back(std::string("tokenizer.json was not usable (") + e.what() + "); token ids are shown as numbers");
    return default_vocab(vocab_size);
  }
  int64_t filled = 0;
  for (int64_t i = 0; i < vocab_size; ++i) {
    if (v[static_cast<size_t>(i)].empty()) v[static_cast<size_t>(i)] = "<id " + std::to_string(i) + ">";
    else ++filled;
  }
  notes.push_back("vocabulary from tokenizer.json (" + std::to_string(filled) + " of " + std::to_string(vocab_size) +
                  " ids named)");
  return v;
}

}  // namespace

bool is_native_checkpoint(const std::string& path) {
  if (!is_file(path)) return false;
  auto ends = [&](const std::string& suffix) {
    return path.size() >= suffix.size() && path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  return ends(".h5") || ends(".hdf5") || h5::looks_like_hdf5(path);
}

Checkpoint import_checkpoint(const std::string& path, ImportInfo* info_out) {
  ImportInfo info;
  std::string dir, weights_file;
  if (is_dir(path)) {
    dir = path;
  } else if (is_file(path)) {
    dir = parent_of(path);
    if (base_of(path) != "config.json") weights_file = path;
  } else {
    throw CheckpointError("'" + path + "' does not exist");
  }
  const std::string where = "'" + path + "'";
  info.config_path = dir + "/config.json";
  if (!is_file(info.config_path))
    throw CheckpointError(where + " is not a MechScope checkpoint, and no config.json lies beside it to import it as a "
                          "mamba_ssm or Hugging Face model");
  const json cfg = read_json_file(info.config_path);
  const std::string cwhere = "'" + info.config_path + "'";
  if (!cfg.is_object()) throw CheckpointError(cwhere + " is not a JSON object");

  enum class Fmt { MambaSsm, HfMamba, HfMamba2, HfLlama } fmt;
  if (cfg.contains("model_type")) {
    const std::string mt = cfg["model_type"].is_string() ? cfg["model_type"].get<std::string>() : cfg["model_type"].dump();
    if (mt == "mamba") fmt = Fmt::HfMamba;
    else if (mt == "mamba2") fmt = Fmt::HfMamba2;
    else if (mt == "llama") fmt = Fmt::HfLlama;
    else {
      std::string arch = cfg.contains("architectures") ? " (architectures " + cfg["architectures"].dump() + ")" : "";
      throw CheckpointError(cwhere + ": model_type '" + mt + "'" + arch + " is not supported; MechScope imports "
                            "Hugging Face mamba, mamba2 and llama models and mamba_ssm's own checkpoints");
    }
  } else if (cfg.contains("d_model") && cfg.contains("n_layer")) {
    fmt = Fmt::MambaSsm;
  } else {
    std::vector<std::string> keys;
    for (const auto& [k, v] : cfg.items()) keys.push_back(k);
    if (keys.size() > 12) keys.resize(12), keys.push_back("...");
    throw CheckpointError(cwhere + " is neither a mamba_ssm config (d_model, n_layer, ssm_cfg) nor a Hugging Face config "
                          "(model_type); it holds: " + (keys.empty() ? std::string("nothing") : join(keys, ", ")));
  }
  info.source_format = fmt == Fmt::MambaSsm ? "mamba_ssm" : fmt == Fmt::HfMamba ? "hf-mamba"
                     : fmt == Fmt::HfMamba2 ? "hf-mamba2" : "hf-llama";

  info.weight_files = weights_file.empty() ? find_weight_files(dir, where) : std::vector<std::string>{weights_file};
  std::vector<TensorFile> files;
  try {
    for (const auto& f : info.weight_files) files.push_back(read_tensor_file(f));
  } catch (const ForeignFormatError& e) {
    throw CheckpointError(e.what());
  }
  const std::string mwhere = "importing " + where + " as " + info.source_format;
  Tensors tensors(files, mwhere);
  Mapped m;
  try {
    switch (fmt) {
      case Fmt::MambaSsm: m = map_mamba_ssm(cfg, tensors, mwhere); break;
      case Fmt::HfMamba: m = map_hf_mamba(cfg, tensors, mwhere); break;
      case Fmt::HfMamba2: m = map_hf_mamba2(cfg, tensors, mwhere); break;
      case Fmt::HfLlama: m = map_hf_llama(cfg, tensors, mwhere); break;
    }
  } catch (const json::exception& e) {
    throw CheckpointError(mwhere + ": " + e.what());
  }
  tensors.check_all_used();

  Checkpoint ck;
  ck.path = path;
  try {
    ck.config = ModelConfig::from_json(m.model_config);
  } catch (const std::invalid_argument& e) {
    throw CheckpointError(mwhere + ": the configuration maps to an unsupported model: " + e.what());
  }
  if (ck.config.approx_parameter_count() > 4.0e9)
    throw CheckpointError(mwhere + ": about " + std::to_string(static_cast<int64_t>(ck.config.approx_parameter_count() / 1e6)) +
                          "M parameters, beyond what MechScope loads (4000M)");
  ck.model = model_from_weights(ck.config, m.weights, mwhere, &ck.warnings);
  ck.weight_dtypes = m.source_dtype;
  info.notes.insert(info.notes.end(), m.notes.begin(), m.notes.end());
  ck.vocab = tokenizer_vocab(dir, ck.config.vocab_size, info.notes);
  ck.created_by = "import of " + info.source_format + " (" + join(info.weight_files, ", ") + ")";
  if (info_out) *info_out = info;
  return ck;
}

Checkpoint open_checkpoint(const std::string& path) {
  const bool exists = is_file(path) || is_dir(path);
  return (!exists || is_native_checkpoint(path)) ? load_checkpoint(path) : import_checkpoint(path);
}

}  // namespace mechscope
