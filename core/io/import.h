// Checkpoints trained elsewhere, mapped onto spec §1's names (docs/import.md):
//  - mamba_ssm's own: config.json (MambaConfig: d_model, n_layer, ssm_cfg, attn_layer_idx, attn_cfg, ...) with
//    pytorch_model.bin (torch.save of the state dict) or model.safetensors, pure or hybrid;
//  - Hugging Face MambaForCausalLM ("model_type": "mamba"), Mamba2ForCausalLM ("mamba2") and LlamaForCausalLM
//    ("llama": default rotary, no rope scaling), from safetensors or pytorch_model.bin, sharded or not.
// The result is an ordinary Checkpoint (no task attached); tokenizer.json, when present, gives the vocabulary.
#pragma once

#include <string>
#include <vector>

#include "core/io/checkpoint.h"

namespace mechscope {

struct ImportInfo {
  std::string source_format;            ///< "mamba_ssm" | "hf-mamba" | "hf-mamba2" | "hf-llama"
  std::string config_path;
  std::vector<std::string> weight_files;
  std::vector<std::string> notes;       ///< what the mapping did beyond renaming (padding, fused projections)
};

/// True when `path` is a file named .h5/.hdf5 or holding an HDF5 signature or MechScope's seal (a native checkpoint,
/// or some other HDF5 file, which load_checkpoint then names).
bool is_native_checkpoint(const std::string& path);

/// The weights' dtype by name: "float32", "bfloat16" or "float16" (std::invalid_argument otherwise; "stored" is
/// resolved by import_checkpoint, not here).
at::ScalarType parse_load_dtype(const std::string& name);
/// "float32", "bfloat16", "float16", "float64".
std::string dtype_name(at::ScalarType t);

/// The largest model import_checkpoint builds (approximate parameters from the config); the memory guard refuses
/// what will not fit well before this on most machines.
constexpr double kMaxImportedParameters = 16.0e9;

/// Imports a foreign checkpoint. `path` is its folder, its config.json, or a weights file with config.json beside
/// it. `dtype` is what the model holds its weights (and computes) in: "float32" (the default: exact analyses, and
/// the fast matrix products of a CPU build), "bfloat16" or "float16", or "stored": the floating dtype that holds
/// most of the files' weights (bfloat16 for most released models; float64 is held as float32). The mapping reads
/// and computes in float32 and rounds each weight once; a half-precision import holds the model about once in
/// half precision. Throws CheckpointError: an unsupported architecture lists what the config holds; a missing or
/// mis-shaped tensor names the tensor, the shape found and the shape the config implies.
Checkpoint import_checkpoint(const std::string& path, ImportInfo* info = nullptr, const std::string& dtype = "float32");

/// A native checkpoint (HDF5) through load_checkpoint, anything else through import_checkpoint; `dtype` as there (a
/// native checkpoint is float32: "stored" keeps it so, another dtype converts it after loading).
Checkpoint open_checkpoint(const std::string& path, const std::string& dtype = "float32");

}  // namespace mechscope
