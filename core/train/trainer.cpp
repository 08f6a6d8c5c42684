// The training loop (see trainer.h).
#include "core/train/trainer.h"

#include <chrono>
#include <cmath>
#include <stdexcept>

#include <ATen/ATen.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>
#include <torch/version.h>

#include "core/io/checkpoint.h"
#include "core/model/model.h"
#include "core/util/strings.h"

namespace mechscope {
using nlohmann::json;

json TrainConfig::to_json() const {
  return {{"steps", steps}, {"batch", batch}, {"lr", lr}, {"warmup", warmup}, {"weight_decay", weight_decay},
          {"beta1", beta1}, {"beta2", beta2}, {"clip", clip}, {"eval_every", eval_every},
          {"eval_examples", eval_examples}, {"target_accuracy", target_accuracy},
          {"efficiency_threshold", efficiency_threshold}, {"checkpoint_every", checkpoint_every}, {"seed", seed},
          {"init_seed", init_seed}, {"eval_seed", eval_seed}, {"snapshot_rows", snapshot_rows},
          {"loss", loss}};
}

TrainConfig TrainConfig::from_json(const json& j) {
  TrainConfig c;
  const json known = c.to_json();
  for (const auto& item : j.items()) {
    if (!known.contains(item.key())) {
      std::vector<std::string> keys;
      for (const auto& k : known.items()) keys.push_back(k.key());
      throw std::invalid_argument("train config: unknown key '" + item.key() + "'; keys: " + join(keys, ", "));
    }
  }
  auto num = [&](const char* k, auto& v) {
    if (!j.contains(k)) return;
    if (!j[k].is_number()) throw std::invalid_argument(std::string("train config: ") + k + " must be a number");
    v = j[k].get<std::decay_t<decltype(v)>>();
  };
  num("steps", c.steps);
  num("batch", c.batch);
  num("lr", c.lr);
  num("warmup", c.warmup);
  num("weight_decay", c.weight_decay);
  num("beta1", c.beta1);
  num("beta2", c.beta2);
  num("clip", c.clip);
  num("eval_every", c.eval_every);
  num("eval_examples", c.eval_examples);
  num("target_accuracy", c.target_accuracy);
  num("efficiency_threshold", c.efficiency_threshold);
  num("checkpoint_every", c.checkpoint_every);
  num("seed", c.seed);
  num("init_seed", c.init_seed);
  num("eval_seed", c.eval_seed);
  num("snapshot_rows", c.snapshot_rows);
  if (j.contains("loss")) {
    if (!j["loss"].is_string() || (j["loss"] != "answers" && j["loss"] != "next_token"))
      throw std::invalid_argument("train config: loss must be \"answers\" or \"next_token\", found " + j["loss"].dump());
    c.loss = j["loss"].get<std::string>();
  }
  if (c.steps <= 0 || c.batch <= 0 || c.eval_every <= 0 || c.eval_examples <= 0 || c.checkpoint_every <= 0)
    throw std::invalid_argument("train config: steps, batch, eval_every, eval_examples and checkpoint_every must be positive");
  if (!(c.lr > 0) || c.warmup < 0 || c.warmup > 1)
    throw std::invalid_argument("train config: lr must be positive and warmup within [0, 1]");
  return c;
}

at::Tensor next_token_targets(const Batch& b) {
  const int64_t B = b.tokens.size(0), L = b.tokens.size(1);
  at::Tensor t = at::full({B, L}, -100, at::kLong);
  if (L > 1) t.narrow(1, 0, L - 1).copy_(b.tokens.narrow(1, 1, L - 1));
  const at::Tensor lengths = b.lengths.defined() ? b.lengths : at::full({B}, L, at::kLong);
  // position t predicts token t + 1, which must lie inside the example
  t.masked_fill_(at::arange(L, at::kLong).unsqueeze(0).ge(lengths.unsqueeze(1) - 1), -100);
  return t;
}

// ------------------------------------------------------------------ history <-> datasets

static at::Tensor i64(const std::vector<int64_t>& v) { return at::tensor(v, at::kLong); }
static at::Tensor f64(const std::vector<double>& v) { return at::tensor(v, at::kDouble).to(at::kFloat); }

std::map<std::string, at::Tensor> TrainHistory::to_datasets() const {
  std::map<std::string, at::Tensor> d;
  if (step.empty()) return d;
  d["step"] = i64(step);
  d["examples"] = i64(examples);
  d["loss"] = f64(loss);
  d["accuracy"] = f64(accuracy);
  d["lr"] = f64(lr);
  d["seconds"] = f64(seconds);
  d["data_efficiency_examples"] = i64({data_efficiency});
  if (!snapshots.empty()) {
    d["embedding_snapshots"] = at::stack(snapshots);  // [snapshots, rows, d_model]
    d["embedding_snapshot_steps"] = i64(snapshot_steps);
    d["embedding_snapshot_ids"] = i64(snapshot_ids);
  }
  return d;
}

TrainHistory TrainHistory::from_datasets(const std::map<std::string, at::Tensor>& d) {
  TrainHistory h;
  auto ints = [&](const char* k) {
    std::vector<int64_t> v;
    if (d.count(k)) {
      at::Tensor t = d.at(k).to(at::kLong).contiguous();
      v.assign(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
    }
    return v;
  };
  auto reals = [&](const char* k) {
    std::vector<double> v;
    if (d.count(k)) {
      at::Tensor t = d.at(k).to(at::kDouble).contiguous();
      v.assign(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
    }
    return v;
  };
  h.step = ints("step");
  h.examples = ints("examples");
  h.loss = reals("loss");
  h.accuracy = reals("accuracy");
  h.lr = reals("lr");
  h.seconds = reals("seconds");
  auto eff = ints("data_efficiency_examples");
  h.data_efficiency = eff.empty() ? -1 : eff[0];
  h.snapshot_steps = ints("embedding_snapshot_steps");
  h.snapshot_ids = ints("embedding_snapshot_ids");
  if (d.count("embedding_snapshots"))
    for (const auto& t : d.at("embedding_snapshots").unbind(0)) h.snapshots.push_back(t.clone());
  return h;
}

// ------------------------------------------------------------------ optimiser state <-> datasets

struct Trainer::Impl {
  std::unique_ptr<torch::optim::AdamW> opt;
  std::vector<std::pair<std::string, at::Tensor>> params;
};

namespace {

torch::optim::AdamWParamState* adam_state(torch::optim::AdamW& opt, const at::Tensor& p, bool create) {
#if TORCH_VERSION_MAJOR >= 2
  auto key = p.unsafeGetTensorImpl();
#else
  auto key = c10::guts::to_string(p.unsafeGetTensorImpl());
#endif
  auto& state = opt.state();
  auto it = state.find(key);
  if (it == state.end()) {
    if (!create) return nullptr;
    auto st = std::make_unique<torch::optim::AdamWParamState>();
    st->step(0);
    st->exp_avg(at::zeros_like(p));
    st->exp_avg_sq(at::zeros_like(p));
    auto* raw = st.get();
    state[key] = std::move(st);
    return raw;
  }
  return static_cast<torch::optim::AdamWParamState*>(it->second.get());
}

}  // namespace

Trainer::Trainer(std::shared_ptr<LanguageModel> model, std::shared_ptr<Task> task, TrainConfig cfg, std::string out)
    : impl_(std::make_shared<Impl>()), model_(std::move(model)), task_(std::move(task)), cfg_(cfg), out_(std::move(out)) {
  if (static_cast<int64_t>(task_->vocab().size()) != model_->config().vocab_size)
    throw std::invalid_argument("the task's vocabulary has " + std::to_string(task_->vocab().size()) +
                                " tokens but the model's vocab_size is " + std::to_string(model_->config().vocab_size));
  impl_->params = model_->state_dict();
  std::vector<at::Tensor> ps;
  for (auto& [n, p] : impl_->params) ps.push_back(p);
  impl_->opt = std::make_unique<torch::optim::AdamW>(
      ps, torch::optim::AdamWOptions(cfg_.lr).betas({cfg_.beta1, cfg_.beta2}).weight_decay(cfg_.weight_decay));
  history_.snapshot_ids = task_->embedding_probe_ids();
  if (history_.snapshot_ids.empty())
    for (int64_t i = 0; i < std::min<int64_t>(cfg_.snapshot_rows, model_->config().vocab_size); ++i)
      history_.snapshot_ids.push_back(i);
}

void Trainer::resume(const Checkpoint& ck) {
  const std::vector<int64_t> ids = history_.snapshot_ids;  // chosen by the constructor
  history_ = TrainHistory::from_datasets(ck.training);
  if (history_.snapshot_ids.empty()) history_.snapshot_ids = ids;  // a run saved before its first evaluation
  if (cfg_.snapshot_rows == 0 && task_->embedding_probe_ids().empty()) {  // snapshot_rows=0 given on resume: none
    history_.snapshots.clear();                                          // kept, none taken (a file's size)
    history_.snapshot_steps.clear();
    history_.snapshot_ids.clear();
  }
  auto it = ck.training.find("last_step");
  start_step_ = it != ck.training.end() ? it->second.item<int64_t>() : (history_.step.empty() ? 0 : history_.step.back());
  seconds_before_ = history_.seconds.empty() ? 0 : history_.seconds.back();
  at::NoGradGuard ng;
  for (auto& [name, p] : impl_->params) {
    auto a = ck.optimizer.find(name + ".exp_avg"), b = ck.optimizer.find(name + ".exp_avg_sq"),
         s = ck.optimizer.find(name + ".step");
    if (a == ck.optimizer.end() || b == ck.optimizer.end() || s == ck.optimizer.end()) continue;
    auto* st = adam_state(*impl_->opt, p, true);
    st->exp_avg(a->second.to(p.options()).clone());
    st->exp_avg_sq(b->second.to(p.options()).clone());
    st->step(s->second.item<int64_t>());
  }
}

double Trainer::lr_at(int64_t step) const {
  const double warm = std::max<double>(1.0, std::round(cfg_.warmup * cfg_.steps));
  if (step < warm) return cfg_.lr * (step + 1) / warm;
  const double progress = (step - warm) / std::max(1.0, cfg_.steps - warm);
  return cfg_.lr * 0.5 * (1.0 + std::cos(M_PI * std::min(1.0, progress)));
}

// Adds each answered position of `b` to (correct, total) at its order within its example (Trainer::evaluate).
static void count_by_answer(const at::Tensor& logits, const Batch& b, std::vector<std::pair<int64_t, int64_t>>& counts) {
  at::Tensor pred = logits.argmax(-1).to(at::kCPU).to(at::kLong).contiguous();
  at::Tensor targets = b.targets.to(at::kLong).contiguous();
  const int64_t rows = targets.size(0), cols = targets.size(1);
  const int64_t* t = targets.data_ptr<int64_t>();
  const int64_t* p = pred.data_ptr<int64_t>();
  for (int64_t r = 0; r < rows; ++r) {
    size_t k = 0;
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t i = r * cols + c;
      if (t[i] == -100) continue;  // not an answer (the tasks' ignore index)
      if (counts.size() <= k) counts.resize(k + 1, {0, 0});
      counts[k].first += p[i] == t[i];
      counts[k].second += 1;
      ++k;
    }
  }
}

double Trainer::evaluate(LanguageModel& model, const Task& task, int64_t n, uint64_t seed,
                         std::vector<std::pair<int64_t, int64_t>>* by_answer) {
  at::NoGradGuard ng;
  const bool was_training = model.is_training();
  model.eval();
  double correct = 0;
  int64_t total = 0;
  const bool per_position = task.accuracy_unit() == "position";
  if (by_answer) by_answer->clear();
  for (int64_t done = 0; done < n; done += 128) {
    const int64_t m = std::min<int64_t>(128, n - done);
    Batch b = task.sample(m, seed + static_cast<uint64_t>(done) * 7919);
    at::Tensor logits = model.forward(b.tokens);
    const double acc = task_accuracy(task, logits, b);
    const int64_t weight = per_position ? b.targets.ne(-100).sum().item<int64_t>() : m;
    correct += acc * weight;
    total += weight;
    if (by_answer) count_by_answer(logits, b, *by_answer);
  }
  if (was_training) model.train();
  return total > 0 ? correct / total : 0.0;
}

void Trainer::save(int64_t step) {
  CheckpointExtras ex;
  ex.task_config = task_->config();
  ex.vocab = task_->vocab();
  ex.training = history_.to_datasets();
  ex.training["last_step"] = at::tensor(std::vector<int64_t>{step}, at::kLong);
  ex.train_config = cfg_.to_json();
  for (auto& [name, p] : impl_->params) {
    auto* st = adam_state(*impl_->opt, p, false);
    if (!st) continue;
    ex.optimizer[name + ".exp_avg"] = st->exp_avg();
    ex.optimizer[name + ".exp_avg_sq"] = st->exp_avg_sq();
    ex.optimizer[name + ".step"] = at::tensor(std::vector<int64_t>{st->step()}, at::kLong);
  }
  save_checkpoint(out_, *model_, ex);
}

TrainResult Trainer::run(const std::function<void(const TrainProgress&)>& on_progress, const std::atomic<bool>* stop) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  auto elapsed = [&] { return seconds_before_ + std::chrono::duration<double>(clock::now() - t0).count(); };
  TrainResult result;
  if (start_step_ >= cfg_.steps)
    throw std::invalid_argument("the run already has " + std::to_string(start_step_) + " steps of " +
                                std::to_string(cfg_.steps) + "; raise steps to continue it");
  model_->train();
  std::vector<at::Tensor> ps;
  for (auto& [n, p] : impl_->params) ps.push_back(p);
  double loss_sum = 0;
  int64_t loss_n = 0, since_start = 0;
  TrainProgress prog;
  prog.steps = cfg_.steps;
  prog.accuracy = history_.accuracy.empty() ? -1 : history_.accuracy.back();
  int64_t step = start_step_;
  for (; step < cfg_.steps; ++step) {
    if (stop && stop->load()) {
      result.interrupted = true;
      break;
    }
    const double lr = lr_at(step);
    for (auto& g : impl_->opt->param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
    Batch b = task_->sample(cfg_.batch, cfg_.seed + static_cast<uint64_t>(step) * 104729);
    impl_->opt->zero_grad();
    at::Tensor logits = model_->forward(b.tokens);
    const at::Tensor targets = cfg_.loss == "next_token" ? next_token_targets(b) : b.targets;
    at::Tensor loss = at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), targets.reshape({-1}), {},
                                             at::Reduction::Mean, -100);
    loss.backward();
    if (cfg_.clip > 0) torch::nn::utils::clip_grad_norm_(ps, cfg_.clip);
    impl_->opt->step();
    const double l = loss.item<double>();
    if (!std::isfinite(l)) throw std::runtime_error("training diverged at step " + std::to_string(step) + " (loss " +
                                                    std::to_string(l) + "); try a smaller --lr");
    loss_sum += l;
    ++loss_n;
    ++since_start;
    const int64_t done = step + 1;
    prog.step = done;
    prog.examples = done * cfg_.batch;
    prog.loss = l;
    prog.evaluated = false;
    const double secs = std::chrono::duration<double>(clock::now() - t0).count();
    prog.examples_per_s = since_start * cfg_.batch / std::max(1e-9, secs);
    prog.eta_s = (cfg_.steps - done) * cfg_.batch / std::max(1e-9, prog.examples_per_s);
    if (done % cfg_.eval_every == 0 || done == cfg_.steps) {
      const double acc = evaluate(*model_, *task_, cfg_.eval_examples, cfg_.eval_seed);
      history_.step.push_back(done);
      history_.examples.push_back(done * cfg_.batch);
      history_.loss.push_back(loss_sum / loss_n);
      history_.accuracy.push_back(acc);
      history_.lr.push_back(lr);
      history_.seconds.push_back(elapsed());
      if (history_.data_efficiency < 0 && acc >= cfg_.efficiency_threshold) history_.data_efficiency = done * cfg_.batch;
      if (!history_.snapshot_ids.empty()) {
        at::NoGradGuard ng;
        at::Tensor ids = at::tensor(history_.snapshot_ids, at::kLong);
        history_.snapshots.push_back(model_->embedding_matrix().index_select(0, ids).detach().to(at::kCPU).clone());
        history_.snapshot_steps.push_back(done);
      }
      loss_sum = 0;
      loss_n = 0;
      prog.accuracy = acc;
      prog.loss = history_.loss.back();
      prog.evaluated = true;
      result.accuracy = acc;
      if (acc >= cfg_.target_accuracy) {
        result.early_stopped = true;
        if (on_progress) on_progress(prog);
        step = done;
        break;
      }
    }
    if (done % cfg_.checkpoint_every == 0) save(done);
    if (on_progress) on_progress(prog);
  }
  result.step = step;
  save(step);
  return result;
}

}  // namespace mechscope
