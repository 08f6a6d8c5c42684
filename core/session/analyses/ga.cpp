// `ga-discovery`: P4's discovery of Gather-and-Aggregate heads on a retrieval task (the kv-text task, a
// `make-dataset kv-retrieval` file, or any task with key-value segments): every head ranked by the accuracy its
// zero-ablation costs (one batched sweep), beside its gather and aggregate scores, and P4 §3's layer-pruning curve:
// the accuracy of the model cut after each layer (its residual there through the final norm and the unembedding).
// With a multiple choice (kv-text's values), accuracy is the multiple choice's.
#include <algorithm>
#include <numeric>

#include <ATen/ATen.h>

#include "core/analysis/analysis.h"
#include "core/session/analyses/builtin.h"

namespace mechscope::builtin {

using nlohmann::json;

namespace {

ResultsFile run(const AnalysisContext& ctx) {
  const int64_t top = ctx.options.at("top").get<int64_t>();
  if (top < 1) throw std::invalid_argument("ga-discovery: top must be at least 1");
  ResultsFile rf = start_results("ga-discovery");
  SweepOptions sweep = sweep_options(ctx);
  auto outer = sweep.progress;
  if (outer) sweep.progress = [outer](double f, const std::string& w) { outer(0.1 + 0.9 * f, w); };
  const LogitLens lens = logit_lens(ctx.model, ctx.batch);  // the pruning curve; its last stage is the whole model
  if (outer) outer(0.1, "ga-discovery: head scores");
  const HeadScores s = head_scores(ctx.model, ctx.batch, 5, ctx.options.at("repeat_len").get<int64_t>(), ctx.seed, sweep);
  const auto labels = head_labels(s.heads);
  const int64_t H = static_cast<int64_t>(labels.size());
  // Rank 1: the head whose ablation costs the most accuracy (ties: the earlier head).
  std::vector<int64_t> order(static_cast<size_t>(H));
  std::iota(order.begin(), order.end(), int64_t{0});
  at::Tensor causal = s.causal.to(at::kDouble).contiguous();
  const double* c = causal.data_ptr<double>();
  std::stable_sort(order.begin(), order.end(), [c](int64_t a, int64_t b) { return c[a] > c[b]; });
  at::Tensor rank = at::zeros({H}, at::kLong);
  for (int64_t r = 0; r < H; ++r) rank[order[static_cast<size_t>(r)]] = r + 1;

  const json head_axis{{"head", labels}}, stage_axis{{"stage", lens.stages}};
  rf.tensors.push_back({"ga_discovery/gather", s.gather, {"head"}, head_axis});
  rf.tensors.push_back({"ga_discovery/aggregate", s.aggregate, {"head"}, head_axis});
  rf.tensors.push_back({"ga_discovery/causal", s.causal, {"head"}, head_axis});
  rf.tensors.push_back({"ga_discovery/causal_rank", rank, {"head"}, head_axis});
  rf.tensors.push_back({"ga_discovery/pruned_accuracy", lens.accuracy, {"stage"}, stage_axis});
  rf.tensors.push_back({"ga_discovery/pruned_prob", lens.prob, {"stage"}, stage_axis});
  rf.settings = {{"repeat_len", ctx.options.at("repeat_len")}, {"top", top},
                 {"multiple_choice", ctx.batch.multiple_choice && ctx.batch.wrong.defined()}};

  std::ostringstream out;
  const double base = lens.accuracy[lens.accuracy.size(0) - 1].item<double>();
  out << "accuracy " << fmt("%.3f", base) << " on " << ctx.batch.size() << " examples"
      << (ctx.batch.multiple_choice ? " (multiple choice over the given candidates)" : "") << "\n";
  out << "heads by the accuracy their zero-ablation costs:\n";
  out << "rank  head            causal  gather  aggregate\n";
  for (int64_t r = 0; r < std::min(top, H); ++r) {
    const int64_t i = order[static_cast<size_t>(r)];
    const std::string rk = std::to_string(r + 1);
    out << std::string(rk.size() < 4 ? 4 - rk.size() : 0, ' ') << rk << "  " << labels[static_cast<size_t>(i)]
        << std::string(static_cast<size_t>(std::max<int64_t>(1, 16 - static_cast<int64_t>(labels[static_cast<size_t>(i)].size()))), ' ')
        << fmt("%6.3f", c[i]) << "  " << fmt("%6.3f", s.gather[i].item<double>()) << "  "
        << fmt("%9.3f", s.aggregate[i].item<double>()) << "\n";
  }
  const std::string reading = top_aggregate_reading(s);
  if (!reading.empty()) out << reading << "\n";
  out << "layer pruning (the model cut after each layer): accuracy";
  for (size_t k = 0; k < lens.stages.size(); ++k)
    out << (k ? ", " : " ") << lens.stages[k] << " " << fmt("%.3f", lens.accuracy[static_cast<int64_t>(k)].item<double>());
  out << "\n";
  rf.summary = out.str();
  rf.csv.row_axis = "head";
  rf.csv.rows = labels;
  rf.csv.columns = {{"causal", s.causal}, {"causal_rank", rank.to(at::kFloat)}, {"gather", s.gather}, {"aggregate", s.aggregate}};
  return rf;
}

}  // namespace

AnalysisInfo ga_discovery_analysis() {
  AnalysisInfo a{"ga-discovery",
                 "P4's Gather-and-Aggregate discovery: heads ranked by the accuracy their zero-ablation costs, their "
                 "gather and aggregate scores, and the layer-pruning curve",
                 "table", true, run};
  a.options = {{"top", 10, "heads listed in the summary (all are in the results and the CSV)"},
               {"repeat_len", 16, "length of each half of the repeated random sequences (induction scores)"},
               {"plain", false, "the ablation sweep one forward per head (the baseline)"},
               {"memory_mb", 1024, "memory budget of the ablation sweep's stacked variants (MiB)"}};
  return a;
}

}  // namespace mechscope::builtin
