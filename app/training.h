// A training run started from the workbench: the same Trainer the CLI's `train` uses, behind plain types
// (no torch, no Qt), run on its own thread by the window so the other panels stay usable.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

namespace mechscope::app {

struct TrainingRequest {
  std::string preset = "transformer";
  std::string model_json = "{}";  ///< overrides of the preset, e.g. {"d_model": 64}
  std::string task_json;          ///< {"task": "mqar", ...}
  std::string out;                ///< checkpoint written periodically and at the end
  int64_t steps = 1000, batch = 32, eval_every = 50;
  double lr = 1e-3;
  uint64_t seed = 0;
};

struct TrainingPoint {
  int64_t step = 0, steps = 0;
  double loss = 0, accuracy = -1;  ///< accuracy of the last evaluation, -1 before one
  double examples_per_s = 0, eta_s = 0;
  bool evaluated = false;
};

/// Trains to the end, or until *stop (then saves and returns). Returns a one-line summary. Throws on bad input
/// (unknown preset or task, bad JSON, an existing output file is overwritten only by the caller's choice).
std::string run_training(const TrainingRequest& request, const std::function<void(const TrainingPoint&)>& on_point,
                         const std::atomic<bool>* stop);

}  // namespace mechscope::app
