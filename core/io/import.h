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

/// Imports a foreign checkpoint. `path` is its folder, its config.json, or a weights file with config.json beside
/// it. Throws CheckpointError: an unsupported architecture lists what the config holds; a missing or mis-shaped
/// tensor names the tensor, the shape found and the shape the config implies.
Checkpoint import_checkpoint(const std::string& path, ImportInfo* info = nullptr);

/// A native checkpoint (HDF5) through load_checkpoint, anything else through import_checkpoint.
Checkpoint open_checkpoint(const std::string& path);

}  // namespace mechscope
