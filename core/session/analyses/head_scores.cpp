// `head-scores`: gather, aggregate, causal, induction and previous-token scores of every head (spec §5).
#include <algorithm>

#include <ATen/ATen.h>

#include "core/analysis/analysis.h"
#include "core/session/analyses/builtin.h"

namespace mechscope::builtin {

using nlohmann::json;

namespace {

ResultsFile run(const AnalysisContext& ctx) {
  const int64_t repeat_len = ctx.options.at("repeat_len").get<int64_t>();
  ResultsFile rf = start_results("head-scores");
  HeadScores s = head_scores(ctx.model, ctx.batch, 5, repeat_len, ctx.seed, sweep_options(ctx));
  auto labels = head_labels(s.heads);
  std::vector<std::pair<std::string, at::Tensor>> cols;
  for (const auto& n : head_score_names()) {
    rf.tensors.push_back({"head_scores/" + n, head_score(s, n), {"head"}, json{{"head", labels}}});
    cols.push_back({n, head_score(s, n)});
  }
  rf.settings = {{"repeat_len", repeat_len}};
  std::ostringstream out;
  out << "head            gather  aggregate  causal  induction  prev_token\n";
  for (size_t i = 0; i < labels.size() && i < 64; ++i)
    out << labels[i] << std::string(std::max<int64_t>(1, 16 - (int64_t)labels[i].size()), ' ')
        << fmt("%6.3f", s.gather[i].item<double>()) << "  " << fmt("%9.3f", s.aggregate[i].item<double>()) << "  "
        << fmt("%6.3f", s.causal[i].item<double>()) << "  " << fmt("%9.3f", s.induction[i].item<double>()) << "  "
        << fmt("%10.3f", s.prev_token[i].item<double>()) << "\n";
  if (labels.size() > 64) out << "... " << labels.size() - 64 << " more heads in the results file\n";
  // The reading in one line: is the top aggregate head also the most causal one?
  const std::string reading = top_aggregate_reading(s);
  if (!reading.empty()) out << reading << "\n";
  rf.summary = out.str();
  rf.csv.row_axis = "head";
  rf.csv.rows = labels;
  rf.csv.columns = cols;
  return rf;
}

}  // namespace

AnalysisInfo head_scores_analysis() {
  AnalysisInfo a{"head-scores", "gather, aggregate, causal, induction and previous-token score of every head (spec §5)",
                 "table", true, run};
  a.options = {{"repeat_len", 16, "length of each half of the repeated random sequences"},
               {"plain", false, "the causal score's sweep one forward per head (the baseline)"},
               {"memory_mb", 1024, "memory budget of the causal score's stacked variants (MiB)"}};
  return a;
}

}  // namespace mechscope::builtin
