// run_training: see training.h.
#include "app/training.h"

#include <cstdio>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "core/model/config.h"
#include "core/model/model.h"
#include "core/tasks/task.h"
#include "core/train/trainer.h"
#include "core/util/json.h"

namespace mechscope::app {

std::string run_training(const TrainingRequest& r, const std::function<void(const TrainingPoint&)>& on_point,
                         const std::atomic<bool>* stop) {
  using nlohmann::json;
  auto parse = [](const std::string& text, const char* what) {
    try {
      return text.empty() ? json::object() : mechscope::parse_json(text);
    } catch (const json::exception& e) {
      throw std::invalid_argument(std::string(what) + " is not valid JSON: " + e.what());
    }
  };
  if (r.out.empty()) throw std::invalid_argument("choose the checkpoint file the run writes");
  json task_cfg = parse(r.task_json, "the task");
  if (!task_cfg.is_object() || !task_cfg.contains("task"))
    throw std::invalid_argument("the task needs a \"task\" key: one of mqar, ar, position, ngram, copy, lookup");
  std::shared_ptr<Task> task = make_task(task_cfg);
  json overrides = parse(r.model_json, "the model overrides");
  overrides["vocab_size"] = static_cast<int64_t>(task->vocab().size());
  ModelConfig mc = ModelConfig::from_json(ModelConfig::preset_json(r.preset, overrides));
  auto model = std::make_shared<LanguageModel>(mc, r.seed);
  TrainConfig tc;
  tc.steps = r.steps;
  tc.batch = r.batch;
  tc.lr = r.lr;
  tc.eval_every = r.eval_every;
  tc.eval_examples = 256;
  tc.checkpoint_every = std::max<int64_t>(r.eval_every, 100);
  tc.seed = r.seed;
  tc.init_seed = static_cast<int64_t>(r.seed);
  Trainer trainer(model, task, tc, r.out);
  TrainResult res = trainer.run(
      [&](const TrainProgress& p) {
        on_point({p.step, p.steps, p.loss, p.accuracy, p.examples_per_s, p.eta_s, p.evaluated});
      },
      stop);
  char buf[200];
  std::snprintf(buf, sizeof buf, "%s at step %lld, accuracy %.3f; wrote %s",
                res.interrupted ? "stopped" : res.early_stopped ? "reached the target" : "finished",
                static_cast<long long>(res.step), res.accuracy, r.out.c_str());
  return buf;
}

}  // namespace mechscope::app
