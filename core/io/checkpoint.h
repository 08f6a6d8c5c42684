// MechScope checkpoints (spec §0): one HDF5 file with the format attributes, the model and task configs and
// vocabulary as JSON, one float32 dataset per parameter under /weights, and optional /training history.
// Reading validates everything and names what is wrong; writing is atomic (temporary file, then rename).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "core/model/config.h"

namespace mechscope {

class LanguageModel;

inline constexpr const char* kCheckpointFormat = "mechscope-checkpoint";
inline constexpr int64_t kCheckpointVersion = 1;

/// Error in a checkpoint file: the message names the file and the offending attribute or parameter.
class CheckpointError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Checkpoint {
  std::string path;
  std::shared_ptr<LanguageModel> model;     ///< built from config, weights loaded
  ModelConfig config;
  nlohmann::json task_config;               ///< null for a bare model
  std::vector<std::string> vocab;           ///< index = token id (vocab_size entries)
  std::string created_by;
  std::map<std::string, std::string> weight_dtypes; ///< parameters originally kept in another dtype
  std::map<std::string, at::Tensor> training;       ///< /training datasets (history), if any
  std::map<std::string, at::Tensor> optimizer;      ///< /optimizer datasets (AdamW state), if any
  nlohmann::json train_config;                      ///< root attribute train_config, if any
  std::vector<std::string> warnings;                ///< e.g. non-finite values
};

/// Everything that goes into a checkpoint besides the model.
struct CheckpointExtras {
  nlohmann::json task_config;               ///< null: bare model
  std::vector<std::string> vocab;           ///< empty: default_vocab(vocab_size)
  std::map<std::string, at::Tensor> training;
  std::map<std::string, at::Tensor> optimizer;
  nlohmann::json train_config;              ///< null: not written
};

/// Reads and validates a checkpoint file (format, version, configs, vocabulary, every parameter's
/// presence and shape against the config) and builds its model. Throws CheckpointError.
Checkpoint load_checkpoint(const std::string& path);

/// Builds the model of `config` and fills it with `weights` (name -> floating tensor, spec §1 names). Every
/// parameter must be present with the config's shape and no other name may appear; errors (CheckpointError) start
/// with `where` and name the parameter. Non-finite values become warnings. The model holds its parameters and
/// buffers in `dtype`: a weight already in it that owns its storage becomes its parameter without a copy.
std::shared_ptr<LanguageModel> model_from_weights(const ModelConfig& config, const std::map<std::string, at::Tensor>& weights,
                                                  const std::string& where, std::vector<std::string>* warnings,
                                                  at::ScalarType dtype = at::kFloat);

/// Writes `model` to `path` atomically (path + ".tmp-<pid>", fsync, rename). Throws CheckpointError.
void save_checkpoint(const std::string& path, const LanguageModel& model, const CheckpointExtras& extras);

/// Vocabulary of a bare model: the markers of spec §3, then x5, x6, ...
std::vector<std::string> default_vocab(int64_t vocab_size);

/// "mechscope <version>": the created_by attribute.
std::string program_id();

}  // namespace mechscope
