// `patching` and `attribution`: exact activation patching and attribution patching over a site's grid of layers
// (or heads) x positions, with the score aligned to each example's corruption (spec §4).
#include <algorithm>
#include <chrono>
#include <cmath>

#include <ATen/ATen.h>

#include "core/session/analyses/builtin.h"

namespace mechscope::builtin {

using nlohmann::json;

namespace {

// The aligned score as a table: every row up to 16, else the 16 with the highest aligned score (all of them go to the
// results file).
void print_aligned(std::ostream& out, const PatchResult& res) {
  const auto& anchors = aligned_anchors();
  const int64_t rows = res.aligned.size(0);
  std::vector<int64_t> shown(rows);
  for (int64_t r = 0; r < rows; ++r) shown[r] = r;
  if (rows > 16) {
    at::Tensor best = std::get<0>(res.aligned.nan_to_num(-1e30).max(1));
    std::sort(shown.begin(), shown.end(), [&](int64_t a, int64_t b) { return best[a].item<double>() > best[b].item<double>(); });
    shown.resize(16);
    std::sort(shown.begin(), shown.end());
  }
  size_t width = 4;
  for (int64_t r : shown) width = std::max(width, res.rows[r].size());
  out << "score aligned to each example's corrupted token and readout (" << res.aligned_examples << " examples"
      << (rows > 16 ? "; the 16 rows with the highest scores" : "") << "):\n"
      << std::string(width + 2, ' ');
  for (const auto& a : anchors) out << std::string(12 - std::min<size_t>(12, a.size()), ' ') << a;
  out << "\n";
  for (int64_t r : shown) {
    out << "  " << res.rows[r] << std::string(width - res.rows[r].size(), ' ');
    for (size_t a = 0; a < anchors.size(); ++a) {
      double v = res.aligned[r][a].item<double>();
      if (std::abs(v) < 5e-4) v = 0;  // no "-0.000"
      out << (std::isfinite(v) ? fmt("%12.3f", v) : std::string(11, ' ') + "-");
    }
    out << "\n";
  }
}

// The strongest cells of the grid.
void print_top_cells(std::ostream& out, const PatchResult& res, const std::vector<std::string>& pos) {
  at::Tensor flat = res.score.flatten().nan_to_num(-1e30);
  at::Tensor order = flat.argsort(0, true);
  out << "highest normalised scores (absolute positions; tokens of example 0):\n";
  for (int64_t i = 0; i < std::min<int64_t>(5, order.size(0)); ++i) {
    const int64_t c = order[i].item<int64_t>(), row = c / res.positions, p = c % res.positions;
    if (!std::isfinite(res.score[row][p].item<double>())) break;
    out << "  " << res.rows[row] << " @ " << pos[p] << "  " << fmt("%.3f", res.score[row][p].item<double>()) << "\n";
  }
}

ResultsFile run(const AnalysisContext& ctx, const std::string& what) {
  const json& o = ctx.options;
  const std::string site = o.at("site").get<std::string>(), corrupt = o.at("corrupt").get<std::string>();
  const Task& task = task_of(ctx, what);
  const SweepOptions sw = sweep_options(ctx);
  ResultsFile rf = start_results(what);
  const std::string g = group_of(what);
  Batch corrupted = task.corrupt(ctx.batch, ctx.seed + 1, corrupt);
  rf.settings = {{"site", site}, {"corrupt", corrupt.empty() ? task.corruptible_roles()[0] : corrupt},
                 {"batched", sw.batched}};
  auto t0 = std::chrono::steady_clock::now();
  PatchResult res = what == "patching" ? activation_patching(ctx.model, ctx.batch, corrupted, site, sw)
                                       : attribution_patching(ctx.model, ctx.batch, corrupted, site, sw);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto pos = position_labels(ctx.batch.tokens[0], ctx.vocab);
  json labels = {{"row", res.rows}, {"pos", pos}};
  rf.tensors.push_back({g + "/score", res.score, {"row", "pos"}, labels});
  if (what == "patching")
    for (const auto& [n, t] : std::vector<std::pair<std::string, at::Tensor>>{
             {"prob", res.prob}, {"logit_diff", res.logit_diff}, {"accuracy", res.accuracy}, {"kl", res.kl}})
      rf.tensors.push_back({g + "/" + n, t, {"row", "pos"}, labels});
  rf.settings["kept_examples"] = res.kept_examples;
  rf.settings["clean_prob"] = res.clean_prob;
  rf.settings["corrupted_prob"] = res.corrupted_prob;
  std::ostringstream out;
  out << what << " at " << site << ": " << res.kept_examples << " of " << res.total_examples << " examples kept (p(y|clean) "
      << fmt("%.3f", res.clean_prob) << ", p(y|corrupted) " << fmt("%.3f", res.corrupted_prob) << "), " << res.rows.size()
      << " x " << res.positions << " cells in " << fmt("%.2f", secs) << " s\n";
  rf.tensors.push_back({g + "/aligned_score", res.aligned, {"row", "anchor"},
                        json{{"row", res.rows}, {"anchor", aligned_anchors()}}});
  rf.settings["aligned_examples"] = res.aligned_examples;
  print_aligned(out, res);
  if (what == "attribution" && o.at("compare").get<bool>()) {
    PatchResult exact = activation_patching(ctx.model, ctx.batch, corrupted, site, sw);
    const double corr = score_correlation(res.score, exact.score);
    rf.tensors.push_back({g + "/exact_score", exact.score, {"row", "pos"}, labels});
    rf.settings["correlation_with_exact"] = corr;
    out << "correlation with exact patching: " << fmt("%.3f", corr) << "\n";
  }
  print_top_cells(out, res, pos);
  rf.summary = out.str();
  rf.csv.tensor = rf.tensors[0];
  rf.tensors.push_back({"inputs/corrupted_tokens", corrupted.tokens, {"example", "pos"}, json()});
  return rf;
}

std::vector<AnalysisOption> grid_options() {
  return {{"site", "resid_pre", "resid_pre | resid_mid | resid_post | mixer_in | mixer_out | mlp_in | mlp_out | heads | "
                                "conv_out | state"},
          {"corrupt", "", "the role corrupted (key, value, query; empty: the task's default)"},
          {"plain", false, "one forward per cell (the baseline) instead of batched"},
          {"memory_mb", 1024, "memory (MiB) for the stacked variants, on top of the clean run's cache"},
          {"keep_threshold", 0.01, "keep examples with p(y|clean) - p(y|corrupted) above this"}};
}

}  // namespace

AnalysisInfo patching_analysis() {
  AnalysisInfo a{"patching", "exact activation patching: every layer (or head) x position of a site (spec §4)", "grid", true,
                 [](const AnalysisContext& ctx) { return run(ctx, "patching"); }};
  a.options = grid_options();
  return a;
}

AnalysisInfo attribution_analysis() {
  AnalysisInfo a{"attribution", "attribution patching: the same grid from one forward and one backward (spec §4)", "grid",
                 true, [](const AnalysisContext& ctx) { return run(ctx, "attribution"); }};
  a.options = grid_options();
  a.options.push_back({"compare", false, "also run exact patching and report the correlation"});
  return a;
}

}  // namespace mechscope::builtin
