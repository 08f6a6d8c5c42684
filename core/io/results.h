// Results files (SPEC §0): HDF5 with format attributes, provenance, and one dataset per tensor carrying
// its axis names. Written atomically. `forward` output is one such file (dataset `logits` [pos, vocab_rows]).
#pragma once

#include <map>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

namespace mechscope {

inline constexpr const char* kResultsFormat = "mechscope-results";
inline constexpr int64_t kResultsVersion = 1;

struct ResultTensor {
  std::string name;               ///< dataset path, e.g. "logits" or "blocks.0.attn.hook_pattern"
  at::Tensor value;               ///< written as float32 (floating) or int64 (integer)
  std::vector<std::string> axes;  ///< one name per dimension, e.g. {"pos", "vocab"}
  nlohmann::json labels;          ///< optional: {"pos": ["<bos>", "k3", ...]} per axis
};

struct ResultsFile {
  std::string kind;               ///< e.g. "forward"
  nlohmann::json provenance;      ///< checkpoint path and sha256, seeds, settings, program version
  std::vector<ResultTensor> tensors;
};

/// Atomic write (temporary file, fsync, rename). Throws std::runtime_error naming the file.
void write_results(const std::string& path, const ResultsFile& results);

}  // namespace mechscope
