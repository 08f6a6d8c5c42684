// Readers of tensor files written by Python tools, with no Python and no torch::jit involved:
//  - torch.save zip archives (what `torch.save(model.state_dict())` writes, an OrderedDict of tensors): our own
//    zip directory reader and a small pickle machine that understands only what a state dict contains
//    (dicts, tuples, strings, numbers, tensor rebuild calls and storage references), so a hostile pickle can
//    neither run code nor crash the reader;
//  - safetensors files (8-byte header length, JSON header, raw little-endian data).
// Both return tensors in file order, converted to float32 where they are floating point, and remember each
// tensor's original dtype. Every error is a ForeignFormatError naming the file and what was wrong.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

namespace mechscope {

class ForeignFormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Tensors by name, in the order the file lists them, with their original dtypes ("float32", "bfloat16", ...).
struct TensorFile {
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  std::map<std::string, std::string> dtypes;
  std::string format;  ///< "torch-zip" | "safetensors"
};

/// Reads a torch.save zip archive holding a state dict (a dict or OrderedDict of tensors, possibly nested under
/// "state_dict", "model" or "module"). Legacy (pre-1.6, non-zip) files are refused with a message.
TensorFile read_torch_zip(const std::string& path);

/// Reads a safetensors file.
TensorFile read_safetensors(const std::string& path);

/// Writes tensors as a safetensors file (float32, or the tensor's own dtype among F64/F32/F16/BF16/I64/I32/U8/BOOL).
/// Atomic: a temporary file, then rename. Used by `convert --to safetensors` and by tests to build fixtures.
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

/// What a weight file holds, from a safetensors header alone: its floating elements by dtype and the bytes of its
/// other tensors. A torch.save archive is not parsed for this: `exact` is false and `other_bytes` is its size (a lower
/// bound for half-precision storages read as float32). For refusing a model that will not fit before reading it, and
/// for knowing the dtype a checkpoint stores its weights in.
struct WeightFileSize {
  std::map<at::ScalarType, uint64_t> floating;  ///< element counts
  uint64_t other_bytes = 0;
  bool exact = true;
  /// The bytes the engine holds for these tensors with floating ones as `floating_dtype`.
  double engine_bytes(at::ScalarType floating_dtype) const;
};
WeightFileSize weight_file_size(const std::string& path);

/// A weight file's tensors as loaders, in file order; each reads its tensor when called: a safetensors file's in its
/// stored dtype (the caller converts: a bfloat16 matrix bound for a bfloat16 model is never float32), a torch.save
/// archive's floating ones as float32.
/// A safetensors file is checked whole now (header, offsets, sizes) and read tensor by tensor later from the file,
/// kept open by the loaders, so that an importer consuming one tensor at a time never holds a model's weights
/// twice; a torch.save archive is read whole now (its tensors may share storages). A loader's errors are
/// ForeignFormatErrors (a file truncated since it was opened, a failing disk).
struct TensorSource {
  std::vector<std::pair<std::string, std::function<at::Tensor()>>> tensors;
  std::map<std::string, std::string> dtypes;
  std::string format;
};
TensorSource open_tensor_file(const std::string& path);

/// Chooses the reader by the file's first bytes (zip "PK\x03\x04" or a safetensors header).
TensorFile read_tensor_file(const std::string& path);

}  // namespace mechscope
