// Helpers the mechscope-cli command files share (defined in commands.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "core/util/strings.h"

namespace mechscope::cli {

bool file_exists(const std::string& path);
/// Throws unless `force` or the file does not exist.
/// Claims an output for the rest of the command (core/util/files.h OutputClaim): refuses an existing file without
/// --force, a missing folder, a path that is one of `inputs`, and a path another process is writing.
void refuse_overwrite(const std::string& path, bool force, const std::vector<std::string>& inputs = {});
/// "a.b=3" -> {"a": {"b": 3}}; a value that is not JSON is a string.
nlohmann::json parse_set(const std::string& kv);
/// Recursive merge of objects.
void deep_merge(nlohmann::json& into, const nlohmann::json& from);
/// Several key=value settings merged into one object.
nlohmann::json sets_to_json(const std::vector<std::string>& sets);
std::string with_commas(int64_t n);
std::string shape_str(at::IntArrayRef s);

}  // namespace mechscope::cli
namespace mechscope {
class LanguageModel;
class Task;
struct OpenedModel;
namespace cli {
/// analyze / bench --dataset: the model's task becomes the dataset's, its lines through the model's tokenizer.json
/// where it has one (analyze.cpp).
void use_dataset(OpenedModel& m, const std::string& checkpoint, const std::string& dataset);
/// bench: the head-ablation and residual patching sweeps naive vs batched, and attribution patching (analyze.cpp).
void bench_interventions(LanguageModel& model, const Task& task, int64_t examples, uint64_t seed, int repeat);
}  // namespace cli
}  // namespace mechscope
