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

#include "core/engine/memory.h"
#include "core/engine/runtime.h"
#include "core/io/families/family.h"
#include "core/io/foreign.h"
#include "core/io/hdf5.h"
#include "core/model/model.h"
#include "core/util/files.h"
#include "core/util/json.h"
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
std::string base_of(const std::string& p) {
  const size_t s = p.find_last_of('/');
  return s == std::string::npos ? p : p.substr(s + 1);
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
    return parse_json(python_json_fix(read_file_capped(path, 64u << 20)));
  } catch (const json::exception& e) {
    throw CheckpointError("'" + path + "' is not valid JSON (" + e.what() + ")");
  } catch (const JsonDepthError& e) {
    throw CheckpointError("'" + path + "': " + e.what());
  } catch (const FileError& e) {
    throw CheckpointError(e.what());
  }
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

// The family a config.json belongs to: Hugging Face's by model_type, mamba_ssm's own by its keys. A quantised
// checkpoint (transformers' quantization_config: GPTQ, AWQ, bitsandbytes, fp8, ...) is refused by name first: its
// weights are packed integers or scaled floats under other names, never the float tensors the families map.
const families::Family& family_of(const json& cfg, const std::string& cwhere) {
  if (cfg.contains("quantization_config")) {
    const json& q = cfg["quantization_config"];
    std::string method = "unknown";
    if (q.is_object() && q.contains("quant_method")) method = q["quant_method"].is_string() ? q["quant_method"].get<std::string>() : q["quant_method"].dump();
    else if (q.is_object() && (q.value("load_in_4bit", false) || q.value("load_in_8bit", false))) method = "bitsandbytes";
    throw CheckpointError(cwhere + " describes a quantised checkpoint (quantization_config, quant_method '" + method +
                          "'); MechScope imports float32, float16 and bfloat16 weights: load the unquantised model");
  }
  std::vector<std::string> hf;
  for (const auto& f : families::all()) {
    if (!f.model_type.empty()) hf.push_back(f.model_type);
    if (cfg.contains("model_type") ? cfg["model_type"] == f.model_type && !f.model_type.empty()
                                   : f.model_type.empty() && cfg.contains("d_model") && cfg.contains("n_layer"))
      return f;
  }
  if (cfg.contains("model_type")) {
    const std::string mt = cfg["model_type"].is_string() ? cfg["model_type"].get<std::string>() : cfg["model_type"].dump();
    std::string arch = cfg.contains("architectures") ? " (architectures " + cfg["architectures"].dump() + ")" : "";
    const std::string listed = join(std::vector<std::string>(hf.begin(), hf.end() - 1), ", ") + " and " + hf.back();
    // What the families researchers ask for next would need (docs/import.md), so that the refusal says it.
    static const std::map<std::string, std::string> missing = {
        {"zamba", "shared attention blocks reused across layers"},
        {"deepseek_v2", "multi-head latent attention and grouped expert routing"},
        {"deepseek_v3", "multi-head latent attention and sigmoid expert routing with a bias"},
        {"gemma3", "its vision tower; the text model alone (Gemma3ForCausalLM, model_type gemma3_text) imports"},
        {"bert", "a causal language model (this is an encoder)"},
        {"roberta", "a causal language model (this is an encoder)"},
        {"t5", "a causal language model (this is an encoder-decoder)"}};
    const auto it = missing.find(mt);
    const std::string need = it == missing.end() ? "" : " (it needs " + it->second + ", which MechScope does not have yet)";
    throw CheckpointError(cwhere + ": model_type '" + mt + "'" + arch + " is not supported" + need +
                          "; MechScope imports Hugging Face " + listed + " models and mamba_ssm's own checkpoints");
  }
  std::vector<std::string> keys;
  for (const auto& [k, v] : cfg.items()) keys.push_back(k);
  if (keys.size() > 12) keys.resize(12), keys.push_back("...");
  throw CheckpointError(cwhere + " is neither a mamba_ssm config (d_model, n_layer, ssm_cfg) nor a Hugging Face config "
                        "(model_type); it holds: " + (keys.empty() ? std::string("nothing") : join(keys, ", ")));
}

}  // namespace

bool is_native_checkpoint(const std::string& path) {
  if (!is_file(path)) return false;
  auto ends = [&](const std::string& suffix) {
    return path.size() >= suffix.size() && path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  return ends(".h5") || ends(".hdf5") || h5::looks_like_hdf5(path);
}

at::ScalarType parse_load_dtype(const std::string& name) {
  if (name == "float32") return at::kFloat;
  if (name == "bfloat16") return at::kBFloat16;
  if (name == "float16") return at::kHalf;
  throw std::invalid_argument("--dtype: expected float32, bfloat16, float16 or stored, found '" + name + "'");
}

std::string dtype_name(at::ScalarType t) {
  return t == at::kBFloat16 ? "bfloat16" : t == at::kHalf ? "float16" : t == at::kDouble ? "float64" : "float32";
}

Checkpoint import_checkpoint(const std::string& path, ImportInfo* info_out, const std::string& dtype_choice) {
  FreshLargeBlocks fresh;  // tensors read, fused and freed once: no kept heap to leave holes in
  ImportInfo info;
  std::string dir, weights_file;
  if (is_dir(path)) {
    dir = path;
  } else if (is_file(path)) {
    dir = parent_folder(path);
    if (base_of(path) != "config.json") weights_file = path;
  } else {
    const std::string kind = file_kind(path);
    throw CheckpointError("'" + path + "' " + (kind == "missing" ? "does not exist" : "is " + kind + ", not a file or folder"));
  }
  const std::string where = "'" + path + "'";
  info.config_path = dir + "/config.json";
  if (const std::string kind = file_kind(info.config_path); kind != "" && kind != "missing")
    throw CheckpointError("'" + info.config_path + "' is " + kind + ", not a regular file");
  if (!is_file(info.config_path))
    throw CheckpointError(where + " is not a MechScope checkpoint, and no config.json lies beside it to import it as a "
                          "mamba_ssm or Hugging Face model");
  const json cfg = read_json_file(info.config_path);
  const std::string cwhere = "'" + info.config_path + "'";
  if (!cfg.is_object()) throw CheckpointError(cwhere + " is not a JSON object");

  const families::Family& family = family_of(cfg, cwhere);
  info.source_format = family.format;

  info.weight_files = weights_file.empty() ? find_weight_files(dir, where) : std::vector<std::string>{weights_file};
  std::vector<TensorSource> files;
  at::ScalarType dtype = at::kFloat;
  try {
    // The dtype the weights will be held in: asked for, or the one holding most of the file's floating weights.
    std::vector<WeightFileSize> sizes;
    std::map<at::ScalarType, uint64_t> stored;
    for (const auto& f : info.weight_files) {
      sizes.push_back(weight_file_size(f));
      for (const auto& [dt, n] : sizes.back().floating) stored[dt] += n;
    }
    if (dtype_choice == "stored") {
      for (const auto& [dt, n] : stored)
        if (n > stored[dtype]) dtype = dt;
      if (dtype != at::kBFloat16 && dtype != at::kHalf) dtype = at::kFloat;  // float64 too: the engine's float32
    } else {
      dtype = parse_load_dtype(dtype_choice);
    }
    // Refused before reading, from the files' headers: the weights in that dtype, plus what a mapper holds while it
    // fuses a layer's tensors (safetensors are read one tensor at a time as the mapper takes them, in float32).
    double bytes = 0;
    for (const auto& s : sizes) bytes += s.engine_bytes(dtype);
    if (family.extra_bytes) bytes += family.extra_bytes(cfg) * static_cast<double>(c10::elementSize(dtype)) / 4.0;
    require_memory(1.3 * bytes, "importing " + where + " (" + std::to_string(static_cast<int64_t>(bytes / 1e6)) +
                                    " MB of " + dtype_name(dtype) + " weights)",
                   dtype == at::kFloat ? "MechScope holds the weights in float32 unless asked otherwise: a bfloat16 "
                                         "model needs about twice its file size in memory (--dtype stored keeps it in "
                                         "bfloat16)"
                                       : "");
    for (const auto& f : info.weight_files) files.push_back(open_tensor_file(f));
  } catch (const ForeignFormatError& e) {
    throw CheckpointError(e.what());
  }
  const std::string mwhere = "importing " + where + " as " + info.source_format;
  families::Tensors tensors(files, mwhere);
  files.clear();  // the table holds the only loaders now: each tensor is read when taken and freed once mapped
  families::Mapped m;
  tensors.hold_as(dtype);
  try {
    m = family.map(cfg, tensors, mwhere);
  } catch (const json::exception& e) {
    throw CheckpointError(mwhere + ": " + e.what());
  }
  tensors.unwatch();  // the mapper's own Mapped is gone (moved into m); model_from_weights rounds what is left
  tensors.check_all_used();

  Checkpoint ck;
  ck.path = path;
  try {
    ck.config = ModelConfig::from_json(m.model_config);
  } catch (const std::invalid_argument& e) {
    throw CheckpointError(mwhere + ": the configuration maps to an unsupported model: " + e.what());
  }
  if (ck.config.approx_parameter_count() > kMaxImportedParameters)
    throw CheckpointError(mwhere + ": about " + std::to_string(static_cast<int64_t>(ck.config.approx_parameter_count() / 1e6)) +
                          "M parameters, beyond what MechScope loads (" +
                          std::to_string(static_cast<int64_t>(kMaxImportedParameters / 1e6)) + "M)");
  ck.model = model_from_weights(ck.config, m.weights, mwhere, &ck.warnings, dtype);
  ck.weight_dtypes = m.source_dtype;
  info.notes.insert(info.notes.end(), m.notes.begin(), m.notes.end());
  ck.vocab = tokenizer_vocab(dir, ck.config.vocab_size, info.notes);
  ck.created_by = "import of " + info.source_format + " (" + join(info.weight_files, ", ") + ")";
  if (info_out) *info_out = info;
  return ck;
}

Checkpoint open_checkpoint(const std::string& path, const std::string& dtype) {
  const bool exists = is_file(path) || is_dir(path);
  if (exists && !is_native_checkpoint(path)) return import_checkpoint(path, nullptr, dtype);
  const at::ScalarType t = dtype == "stored" ? at::kFloat : parse_load_dtype(dtype);  // native weights are float32
  FreshLargeBlocks fresh;
  Checkpoint ck = load_checkpoint(path);
  if (t != at::kFloat) ck.model->to(t);
  return ck;
}

}  // namespace mechscope
