// `ablation`: every head (or Mamba1 channel group) ablated alone, or one set of heads ablated together (spec §4).
#include <chrono>

#include <ATen/ATen.h>

#include "core/model/model.h"
#include "core/session/analyses/builtin.h"

namespace mechscope::builtin {

using nlohmann::json;

namespace {

// Part I of N of a sweep's groups: contiguous, the first (size mod N) parts one longer, so that the parts in order
// are the whole sweep.
std::vector<std::vector<HeadRef>> shard_of(const std::vector<std::vector<HeadRef>>& groups, const std::string& spec) {
  const size_t slash = spec.find('/');
  int64_t i = -1, n = 0;
  try {
    size_t used = 0;
    i = std::stoll(spec.substr(0, slash), &used);
    if (used != slash) i = -1;
    n = std::stoll(spec.substr(slash + 1), &used);
    if (used != spec.size() - slash - 1) n = 0;
  } catch (const std::exception&) {
    i = -1;
  }
  if (slash == std::string::npos || n < 1 || i < 0 || i >= n)
    throw std::invalid_argument("--shard '" + spec + "': give I/N with 0 <= I < N, e.g. 2/4");
  const int64_t total = static_cast<int64_t>(groups.size());
  if (n > total)
    throw std::invalid_argument("--shard " + spec + ": the sweep has only " + std::to_string(total) + " heads");
  const int64_t base = total / n, extra = total % n;
  const int64_t begin = i * base + std::min(i, extra), end = begin + base + (i < extra ? 1 : 0);
  return {groups.begin() + begin, groups.begin() + end};
}

void sweep(const AnalysisContext& ctx, const Ablator& ab, AblationKind kind, ResultsFile& rf, std::ostream& out) {
  const int64_t channel_group = ctx.options.at("channel_group").get<int64_t>();
  auto t0 = std::chrono::steady_clock::now();
  if (channel_group < 1) throw std::invalid_argument("--channel-group must be at least 1");
  if (channel_group > 1) rf.settings["channel_group"] = channel_group;
  std::vector<std::vector<HeadRef>> groups = channel_groups(ctx.model, channel_group);
  const std::string shard = ctx.options.value("shard", "");
  if (!shard.empty()) {
    groups = shard_of(groups, shard);
    rf.settings["shard"] = shard;
  }
  HeadSweepResult res = head_group_sweep(ctx.model, ctx.batch.tokens, Readout::all_labelled(ctx.batch), ab, groups,
                                         sweep_options(ctx));
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::vector<std::string>& labels = res.labels;
  std::vector<std::pair<std::string, at::Tensor>> cols = {{"prob", res.ablated.prob},
                                                          {"logit_diff", res.ablated.logit_diff},
                                                          {"accuracy", res.ablated.accuracy},
                                                          {"kl", res.ablated.kl}};
  for (const auto& [n, t] : cols) rf.tensors.push_back({"ablation/" + n, t, {"head"}, json{{"head", labels}}});
  rf.settings["base"] = {{"prob", res.base.prob.item<double>()}, {"logit_diff", res.base.logit_diff.item<double>()},
                         {"accuracy", res.base.accuracy.item<double>()}};
  print_outcome(out, "unablated: ", res.base);
  at::Tensor drop = res.base.accuracy - res.ablated.accuracy;
  at::Tensor order = drop.argsort(0, true);
  out << res.heads.size() << (channel_group > 1 ? " heads and channel groups " : " heads ") << ablation_name(kind)
      << "-ablated one at a time in " << fmt("%.2f", secs) << " s; largest accuracy drops:\n";
  for (int64_t i = 0; i < std::min<int64_t>(8, order.size(0)); ++i) {
    const int64_t h = order[i].item<int64_t>();
    out << "  " << labels[h] << "  accuracy " << fmt("%.3f", res.ablated.accuracy[h].item<double>()) << " ("
        << fmt("%+.3f", -drop[h].item<double>()) << "), probability " << fmt("%.3f", res.ablated.prob[h].item<double>())
        << "\n";
  }
  rf.csv.row_axis = "head";
  rf.csv.rows = labels;
  rf.csv.columns = cols;
}

ResultsFile run(const AnalysisContext& ctx) {
  const std::string kind_name = ctx.options.at("ablation").get<std::string>();
  const AblationKind kind = parse_ablation(kind_name);
  ResultsFile rf = start_results("ablation");
  const uint64_t reference_seed = ctx.seed + 1000003;
  Batch reference = task_of(ctx, "ablation").sample(std::max<int64_t>(ctx.batch.size(), 32), reference_seed);
  Ablator ab(ctx.model, kind, reference);
  rf.settings = {{"ablation", kind_name}, {"reference_seed", reference_seed}};
  std::ostringstream out;
  const auto set = ctx.options.at("heads").get<std::vector<std::string>>();
  if (set.empty()) {
    sweep(ctx, ab, kind, rf, out);
  } else {
    std::vector<HeadRef> heads;
    for (const auto& h : set)
      for (const auto& one : parse_heads(h, ctx.model)) heads.push_back(one);
    rf.settings["heads"] = head_labels(heads);
    before_after(ctx.model, ctx.batch, ab.hooks(heads), "after " + std::string(ablation_name(kind)) + "-ablating " + group_label(heads),
                 "ablation", rf, out);
  }
  rf.summary = out.str();
  return rf;
}

}  // namespace

AnalysisInfo ablation_analysis() {
  AnalysisInfo a{"ablation", "head ablation: every head alone (a sweep), or one set of heads together (spec §4)", "table",
                 true, run};
  a.options = {{"ablation", "zero", "zero | mean | resample"},
               {"heads", json::array(), "ablate these heads together (L1.attn.H0, or a range L0.ssm.H0-15); empty: sweep"},
               {"channel_group", 1, "sweep Mamba1 channels in groups of this many"},
               {"shard", "", "I/N: only part I of N of the sweep's heads (a grid's array task)"},
               {"plain", false, "one forward per head (the baseline) instead of batched"},
               {"memory_mb", 1024, "memory (MiB) for the stacked variants, on top of the clean run's cache"}};
  return a;
}

}  // namespace mechscope::builtin
