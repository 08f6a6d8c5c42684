// Core's analyses in the registry plugins use (one line each), and what they share (see builtin.h).
#include "core/session/analyses/builtin.h"

#include <algorithm>

#include <ATen/ATen.h>

#include "core/io/tokens.h"
#include "core/model/model.h"
#include "core/util/strings.h"

namespace mechscope {

void register_builtin_analyses(PluginHost& host) {
  host.add_analysis(builtin::attention_analysis());
  host.add_analysis(builtin::head_scores_analysis());
  host.add_analysis(builtin::ablation_analysis());
  host.add_analysis(builtin::knockout_analysis());
  host.add_analysis(builtin::patching_analysis());
  host.add_analysis(builtin::attribution_analysis());
  host.add_analysis(builtin::dla_analysis());
  host.add_analysis(builtin::embeddings_analysis());
  host.add_analysis(builtin::logit_lens_analysis());
  host.add_analysis(builtin::ga_discovery_analysis());
}

namespace builtin {

using nlohmann::json;

ResultsFile start_results(const std::string& name) {
  ResultsFile rf;
  rf.kind = name;
  rf.settings = json::object();
  return rf;
}

std::string group_of(const std::string& name) {
  std::string g = name;
  std::replace(g.begin(), g.end(), '-', '_');
  return g;
}

const Task& task_of(const AnalysisContext& ctx, const std::string& name) {
  if (!ctx.task) throw std::runtime_error(name + ": the model has no task (a bare model); this analysis needs one");
  return *ctx.task;
}

SweepOptions sweep_options(const AnalysisContext& ctx) {
  SweepOptions s;  // an analysis without one of these options keeps the sweep's default
  s.batched = !ctx.options.value("plain", !s.batched);
  s.memory_budget_mb = ctx.options.value("memory_mb", s.memory_budget_mb);
  if (s.memory_budget_mb < 1)
    throw std::invalid_argument("memory_mb: " + std::to_string(s.memory_budget_mb) +
                                " MiB is not a memory budget; give at least 1 (the default is 1024)");
  s.keep_threshold = ctx.options.value("keep_threshold", s.keep_threshold);
  s.progress = ctx.progress;
  s.cancel = ctx.cancel;
  return s;
}

std::vector<std::string> head_labels(const std::vector<HeadRef>& heads) {
  std::vector<std::string> out;
  for (const auto& h : heads) out.push_back(h.label());
  return out;
}

std::vector<std::string> token_labels(const at::Tensor& ids, const std::vector<std::string>& vocab) {
  std::vector<std::string> out;
  for (int64_t j = 0; j < ids.size(0); ++j) out.push_back(token_string(ids[j].item<int64_t>(), vocab));
  return out;
}

std::vector<std::string> position_labels(const at::Tensor& ids, const std::vector<std::string>& vocab) {
  auto toks = token_labels(ids, vocab);
  for (size_t j = 0; j < toks.size(); ++j) toks[j] = std::to_string(j) + ":" + toks[j];
  return toks;
}

void print_outcome(std::ostream& out, const std::string& label, const MetricTable& m, int64_t i) {
  out << label << "accuracy " << fmt("%.3f", m.accuracy[i].item<double>()) << ", answer probability "
      << fmt("%.3f", m.prob[i].item<double>()) << ", logit difference " << fmt("%.3f", m.logit_diff[i].item<double>());
  if (m.kl.defined()) out << ", KL to unablated " << fmt("%.4f", m.kl[i].item<double>());
  out << "\n";
}

void before_after(LanguageModel& model, const Batch& batch, const std::vector<Hook>& hooks, const std::string& after_label,
                  const std::string& group, ResultsFile& rf, std::ostream& out) {
  at::NoGradGuard no_grad;
  Readout r = Readout::all_labelled(batch);
  at::Tensor base = gather_readout(model.forward(batch.tokens), r).unsqueeze(0);
  at::Tensor hooked = gather_readout(model.run_with_hooks(batch.tokens, hooks), r).unsqueeze(0);
  auto table = [&](const at::Tensor& logits) {
    ExampleMetrics m = example_metrics(logits, r, base);
    return MetricTable{m.prob.mean(-1), m.logit_diff.mean(-1), m.correct.mean(-1), m.kl.mean(-1)};
  };
  const MetricTable before = table(base), after = table(hooked);
  print_outcome(out, "before: ", before);
  print_outcome(out, after_label + ": ", after);
  const std::vector<std::string> names = {"prob", "logit_diff", "accuracy", "kl"};
  // One value per metric: each is a [1]-shaped mean over the examples.
  auto vec = [](const MetricTable& m) { return at::cat({m.prob, m.logit_diff, m.accuracy, m.kl}).reshape({-1}).to(at::kFloat); };
  rf.tensors.push_back({group + "/before", vec(before), {"metric"}, json{{"metric", names}}});
  rf.tensors.push_back({group + "/after", vec(after), {"metric"}, json{{"metric", names}}});
  rf.csv.row_axis = "metric";
  rf.csv.rows = names;
  rf.csv.columns = {{"before", vec(before)}, {"after", vec(after)}};
}

}  // namespace builtin

}  // namespace mechscope
