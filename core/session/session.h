// The session: what the command line and the workbench both work on. A model opened from a file or a folder (with
// its task, and one provenance record whose digest covers a folder's files), the input (task examples or a typed
// sequence), the active interventions (ablated heads) with the clean run they reuse, and registered analyses run
// on all of that with progress and cancel. Above io, tasks, model, interventions and analysis; below the CLI and the
// app. Must not: know about Qt or print.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "core/interventions/ablation.h"
#include "core/io/checkpoint.h"
#include "core/io/results.h"
#include "core/plugin/plugin.h"
#include "core/session/progress.h"
#include "core/tasks/task.h"

namespace mechscope {

class Tokenizer;

/// SHA-256 of a checkpoint file; for a folder (an imported checkpoint), of its files' names and digests.
std::string checkpoint_digest(const std::string& path);

/// A task config with overrides merged in (JSON merge patch), built through the task registry and checked
/// against a model's vocabulary: the one place "make the task, check its vocabulary" lives.
std::unique_ptr<Task> make_task_for(const nlohmann::json& task_config, const nlohmann::json& overrides,
                                    int64_t vocab_size, nlohmann::json* merged = nullptr);

/// One typed sequence as a batch of one example: no targets (-100), no roles, its own length.
Batch typed_batch(const std::vector<int64_t>& ids);

/// One opened checkpoint: the model (in eval mode), its task (null for a bare model) and where it came from.
struct OpenedModel {
  Checkpoint ck;
  std::unique_ptr<Task> task;
  nlohmann::json task_config;  ///< with overrides merged; null for a bare model
  std::string name;            ///< the file or folder name without .h5
  /// model_tokenizer's, read on first use (null: none, or it could not be read: tokenizer_error() says why).
  const Tokenizer* tokenizer() const;
  std::string tokenizer_error() const;
  /// What a person reads for each token id: its text through the tokenizer (token_label), else the vocabulary's
  /// name; one per embedding row; made on first use.
  const std::vector<std::string>& labels() const;
  /// Opens a native checkpoint or a foreign folder (open_checkpoint, weights held in `dtype`); builds the task with
  /// `task_overrides` merged. Throws when `need_task` and the checkpoint has none, or when overrides are given for a
  /// bare model.
  static std::unique_ptr<OpenedModel> open(const std::string& path, const nlohmann::json& task_overrides = {},
                                           bool need_task = false, const std::string& dtype = "float32");
  LanguageModel& model() const { return *ck.model; }
  /// checkpoint_digest of the path, computed once: here, or on a thread of its own from start_digest() on.
  const std::string& digest() const;
  /// {"checkpoint", "checkpoint_sha256", "program"} and "task" when there is one.
  nlohmann::json provenance() const;
  /// Starts digest() on a thread of its own (later calls do nothing): a command or the workbench that will record
  /// provenance calls it after opening, so that a multi-gigabyte model's hash runs beside the work instead of before
  /// or after it (digest() then waits for it if it is not done; an error, such as the file vanishing, surfaces
  /// there). Not for a benchmark: the hash would share its cores.
  void start_digest() const;

  OpenedModel();
  struct Text;  ///< the tokenizer and labels, made once (session.cpp)

 private:
  std::shared_ptr<Text> text_;
  std::string path_;

 public:
  ~OpenedModel();

 private:
  struct Digest;
  std::unique_ptr<Digest> digest_;
};

/// Loaded models (one current), the input, the active ablation. Not thread-safe: the workbench serialises calls.
class Session {
 public:
  // ---- models
  /// Opens a checkpoint and makes it current; returns its index.
  int open(const std::string& path);
  /// Adds a model opened elsewhere (OpenedModel::open, e.g. off a lock) and makes it current (or, with
  /// `make_current` false and a model already current, loads it behind that one); returns its index. A name already
  /// loaded gets " (n)".
  int add(std::unique_ptr<OpenedModel> model, bool make_current = true);
  int model_count() const { return static_cast<int>(models_.size()); }
  int current() const { return cur_; }
  /// Makes a model current. Keeps the examples when it reads the same vocabulary (compare on the same inputs),
  /// else draws 64 from its task (or clears the input); clears the ablation.
  void set_current(int index);
  /// A loaded model (-1: the current one); throws when none is open.
  OpenedModel& model(int index = -1);
  const OpenedModel& model(int index = -1) const;

  // ---- input
  /// Draws `n` examples of the current model's task, its parameters overridden by `overrides` (JSON object).
  void draw(int64_t n, uint64_t seed, const nlohmann::json& overrides = {});
  /// One typed sequence (ids or vocabulary strings): no targets.
  void set_tokens(const std::string& text);
  /// The input as one example: `text` through the model's tokenizer, with its special tokens (BOS); throws
  /// saying why when the model has none.
  void set_text(const std::string& text);
  /// The first `n` lines of a prompt dataset (docs/text.md) as the examples, text through the model's tokenizer
  /// (ids read as they are); the dataset stays the input's task (corruptions, mean ablation) until examples are drawn
  /// or typed, and another model made current reads it through its own tokenizer. Throws naming the line.
  void load_dataset(const std::string& path, int64_t n);
  /// The task of the examples: the dataset's when they are a dataset's, else the current model's (null: none).
  Task* input_task();
  /// The dataset the examples come from ("" when they do not).
  std::string dataset() const;
  const Batch& batch() const { return batch_; }
  bool has_input() const { return batch_.size() > 0; }
  bool has_targets() const { return has_targets_; }
  int64_t example() const { return example_; }
  void set_example(int64_t e);
  uint64_t seed() const { return seed_; }
  const nlohmann::json& task_config() const { return task_cfg_; }
  /// Replaces one token of example e (ids or a vocabulary string, as typed tokens are read); its roles and targets
  /// stay as they were (the answer may now be wrong: what a researcher editing a prompt studies). Throws for a position
  /// outside the example or a token the vocabulary lacks.
  void edit_token(int64_t e, int64_t position, const std::string& token);
  /// Example e's tokens at its own length [1, len].
  at::Tensor example_tokens(int64_t e) const;
  /// Example e's last labelled position (its last position without targets).
  int64_t last_labelled(int64_t e) const;

  // ---- interventions
  void set_ablation(const std::vector<HeadRef>& heads, AblationKind kind);
  const std::vector<HeadRef>& ablated() const { return ablated_; }
  AblationKind ablation_kind() const { return kind_; }
  /// The current kind's ablator (mean and resample draw their reference from the task with seed + 1000003).
  Ablator& ablator();
  /// The unablated run of the input, cached once per input (ablation_cache_names).
  const ActivationCache& clean_cache();

  // ---- analyses
  /// Runs a registered analysis on the current model with `options` (JSON object), on the input it declares: the
  /// examples, the current example alone, or none.
  ResultsFile run_analysis(const std::string& name, const nlohmann::json& options, const Progress& progress = {});
  /// The current state as provenance: the model's, the input (seed, example, examples) and the interventions.
  /// Without `digest`, the checkpoint's SHA-256 is left out (it may still be running: OpenedModel::digest waits).
  nlohmann::json provenance(bool digest = true) const;

 private:
  void invalidate();
  void set_input(const std::vector<int64_t>& ids);  // one typed example: no targets
  std::vector<std::unique_ptr<OpenedModel>> models_;
  int cur_ = -1;
  Batch batch_;
  bool has_targets_ = false;
  int64_t example_ = 0;
  uint64_t seed_ = 0;
  nlohmann::json task_cfg_;
  std::unique_ptr<Task> dataset_task_;  // the examples' task when they are a dataset's
  std::vector<HeadRef> ablated_;
  AblationKind kind_ = AblationKind::Zero;
  std::unique_ptr<Ablator> ablator_;
  ActivationCache clean_cache_;
};

}  // namespace mechscope
