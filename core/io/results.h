// Results files (spec §0): HDF5 with format attributes, provenance, and one dataset per tensor carrying
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

/// What a CSV export writes of a result: a table of one-dimensional columns over named rows (when `columns` is not
/// empty), else one 1-D or 2-D tensor (none when its value is undefined).
struct CsvExport {
  std::string row_axis;
  std::vector<std::string> rows;
  std::vector<std::pair<std::string, at::Tensor>> columns;
  ResultTensor tensor;
  std::string unavailable;  ///< when empty: why (e.g. "choose one map with --layer, --mixer and --head")
  bool empty() const { return columns.empty() && !tensor.value.defined(); }
};

struct ResultsFile {
  std::string kind;               ///< e.g. "forward", "head_ablation"
  nlohmann::json provenance;      ///< checkpoint path and sha256, seeds, program version
  nlohmann::json settings;        ///< the settings that made it (also written on each group)
  std::vector<ResultTensor> tensors;  ///< names may hold groups: "head_ablation/prob"
  // For the front-ends, not written to the file:
  std::string summary;            ///< the report a user reads (the CLI prints it), lines ending in '\n'
  CsvExport csv;                  ///< what --csv writes (empty: the first one- or two-dimensional tensor)
  /// The tensor named `name`; throws naming the file's tensors when absent.
  const ResultTensor& get(const std::string& name) const;
};

/// Atomic write (temporary file, fsync, rename); groups in tensor names are created. Throws std::runtime_error.
void write_results(const std::string& path, const ResultsFile& results);
/// Reads a results file (any tensor in any group). Throws std::runtime_error naming the file and what is wrong.
ResultsFile read_results(const std::string& path);

/// CSV of a 1-D or 2-D tensor: 1-D -> "label,value" rows; 2-D -> a header of column labels and one row per
/// row label. Labels come from `labels` (per axis) or are indices. Atomic. Throws for other ranks.
void write_csv(const std::string& path, const ResultTensor& t);
/// CSV table: one row per label, one column per (name, 1-D tensor) of that length. Atomic.
void write_csv_table(const std::string& path, const std::string& row_axis, const std::vector<std::string>& rows,
                     const std::vector<std::pair<std::string, at::Tensor>>& columns);
/// A CsvExport: its table, or its tensor (write_csv). Throws std::invalid_argument when it is empty.
void write_csv(const std::string& path, const CsvExport& csv);

}  // namespace mechscope
