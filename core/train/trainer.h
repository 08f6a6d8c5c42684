// Training (spec §3 defaults, after P3): AdamW, linear warmup then cosine to 0, masked cross-entropy on the
// task's targets, gradient clipping, evaluation on a held-out set, early stop at a target accuracy,
// periodic atomic checkpoints carrying the history (and embedding snapshots), resume, and cancellation.
// Must not: print; progress goes through a callback.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "core/tasks/task.h"

namespace mechscope {

class LanguageModel;
struct Checkpoint;

struct TrainConfig {
  int64_t steps = 2000;               ///< optimiser steps (the schedule's length)
  int64_t batch = 32;
  double lr = 1e-3;
  double warmup = 0.1;                ///< fraction of steps with linear warmup
  double weight_decay = 0.0;
  double beta1 = 0.9, beta2 = 0.999;
  double clip = 1.0;                  ///< gradient-norm clip; 0 = off
  int64_t eval_every = 100;
  int64_t eval_examples = 512;
  double target_accuracy = 2.0;       ///< early stop when eval accuracy >= this (> 1: never)
  double efficiency_threshold = 0.99; ///< data efficiency: examples seen until eval accuracy first reaches this
  int64_t checkpoint_every = 500;     ///< steps between checkpoints (a killed run loses at most this many)
  uint64_t seed = 0;                  ///< training data seed (batch k uses seed + k)
  int64_t init_seed = -1;             ///< the model's initialisation seed, recorded for provenance (-1: unknown)
  uint64_t eval_seed = 1000003;       ///< held-out examples
  int64_t snapshot_rows = 64;         ///< embedding rows kept per snapshot when the task names none
  /// "answers": cross-entropy on the task's answer positions (spec §3's default); "next_token": on every next
  /// token of each example, as tinylang trains its AR models (ar.py without mask_nonquery). Evaluation and
  /// accuracy always read the answers.
  std::string loss = "answers";

  nlohmann::json to_json() const;
  static TrainConfig from_json(const nlohmann::json& j);  ///< unknown keys are errors
};

/// Next-token targets of a batch: position t predicts token t + 1 inside each example, -100 elsewhere.
at::Tensor next_token_targets(const Batch& b);

struct TrainProgress {
  int64_t step = 0, steps = 0, examples = 0;
  double loss = 0, accuracy = -1;     ///< accuracy: last evaluation (-1 before the first)
  double examples_per_s = 0, eta_s = 0;
  bool evaluated = false;             ///< this step ran an evaluation
};

/// The history kept in /training (one row per evaluation) and the embedding snapshots.
struct TrainHistory {
  std::vector<int64_t> step, examples;
  std::vector<double> loss, accuracy, lr, seconds;
  std::vector<int64_t> snapshot_steps;
  std::vector<at::Tensor> snapshots;  ///< [rows, d_model] each
  std::vector<int64_t> snapshot_ids;
  int64_t data_efficiency = -1;       ///< examples at the first eval reaching the threshold, -1 if never
  std::map<std::string, at::Tensor> to_datasets() const;
  static TrainHistory from_datasets(const std::map<std::string, at::Tensor>& d);
};

struct TrainResult {
  int64_t step = 0;
  double accuracy = -1;
  bool early_stopped = false, interrupted = false;
};

class Trainer {
 public:
  /// `out` is the checkpoint path written periodically and at the end.
  Trainer(std::shared_ptr<LanguageModel> model, std::shared_ptr<Task> task, TrainConfig cfg, std::string out);
  /// Continue a run from its checkpoint (history, step, optimiser state); the config comes from the checkpoint.
  void resume(const Checkpoint& ck);
  /// Runs to the end, early stop, or until *stop becomes true (then saves and returns interrupted).
  TrainResult run(const std::function<void(const TrainProgress&)>& on_progress, const std::atomic<bool>* stop);
  /// Accuracy on `n` held-out examples of `task` (chunks of 128, no grad). With `by_answer`, the same forwards also
  /// count each answered position by its order within its example: element i holds (correct, total) over the
  /// examples' (i+1)-th answers (an MQAR example's first query, second, ...); summed over i they give the accuracy
  /// of a per-position task.
  static double evaluate(LanguageModel& model, const Task& task, int64_t n, uint64_t seed,
                         std::vector<std::pair<int64_t, int64_t>>* by_answer = nullptr);
  const TrainHistory& history() const { return history_; }

 private:
  void save(int64_t step);
  double lr_at(int64_t step) const;
  struct Impl;
  std::shared_ptr<Impl> impl_;
  std::shared_ptr<LanguageModel> model_;
  std::shared_ptr<Task> task_;
  TrainConfig cfg_;
  std::string out_;
  TrainHistory history_;
  int64_t start_step_ = 0;
  double seconds_before_ = 0;
};

}  // namespace mechscope
