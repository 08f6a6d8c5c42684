// Every demo's logits and analysis tables against the outputs recorded from main before the redesign of issue 21
// (tests/golden/<demo>.h5, packed by tests/golden/record.sh from da076a3's mechscope-cli). The same inputs as the
// recording (32 task examples, seed 0; example 3 for logits and maps) go through the registry, as `analyze` runs them.
// Tolerances were measured: one and two threads (other batch shapes, so other BLAS kernels) moved these outputs by at
// most 2.6e-5 in logit differences (7.5e-6 of their size), 1.2e-5 in patching scores, 6.2e-6 in probabilities, and
// nothing elsewhere; each tolerance below leaves room for other CPUs' kernels (about 10x) without hiding a real change.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "core/io/results.h"
#include "core/model/model.h"
#include "core/plugin/plugin.h"
#include "core/session/session.h"

namespace mechscope {
namespace {

using nlohmann::json;

std::string golden_path(const std::string& demo) { return std::string(MECHSCOPE_GOLDEN_DIR) + "/" + demo + ".h5"; }
std::string model_path(const std::string& demo) { return std::string(MECHSCOPE_MODELS_DIR) + "/" + demo + ".h5"; }

const std::vector<std::string> kDemos = {"ar-attn",     "mqar-attn",    "mqar-attn4",    "mqar-hybrid",    "mqar-mamba1",
                                         "mqar-mamba2", "ngram-hybrid", "position-attn", "position-mamba2"};

// How a recorded tensor may differ from the recomputed one.
struct Tolerance {
  double abs = 0, rel = 0;  ///< |a - b| <= abs + rel * max|b|
  bool sign_free = false;   ///< compare |values| (PCA components: a component's sign is arbitrary)
};

Tolerance tolerance_of(const std::string& name) {
  auto ends = [&](const std::string& s) { return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0; };
  if (ends("/logits")) return {0, 1e-5};                                         // logits: within 1e-5 of the largest
  if (ends("/accuracy")) return {0.05, 0};                                       // an argmax near a tie may flip
  if (ends("/score") || ends("/aligned_score") || ends("/exact_score")) return {1e-3, 0};
  if (ends("/prob") || ends("/example_prob") || ends("/kl")) return {5e-5, 0};
  if (ends("/logit_diff") || ends("/value") || ends("/before") || ends("/after")) return {1e-5, 1e-4};
  if (ends("/projection")) return {1e-4, 1e-4, true};
  return {1e-5, 1e-5};  // attention maps, head scores, cosine, explained variance, ...
}

void expect_close(const std::string& what, const at::Tensor& got_in, const at::Tensor& want_in) {
  ASSERT_EQ(got_in.sizes(), want_in.sizes()) << what;
  if (!at::isFloatingType(want_in.scalar_type())) {
    EXPECT_TRUE(at::equal(got_in.to(at::kLong), want_in.to(at::kLong))) << what;
    return;
  }
  const Tolerance tol = tolerance_of(what);
  at::Tensor got = got_in.to(at::kDouble), want = want_in.to(at::kDouble);
  if (tol.sign_free) got = got.abs(), want = want.abs();
  const at::Tensor nan_got = at::isnan(got), nan_want = at::isnan(want);
  ASSERT_TRUE(at::equal(nan_got, nan_want)) << what << ": NaN where the recording has a number, or the other way";
  const at::Tensor finite = nan_want.logical_not();
  if (!finite.any().item<bool>()) return;
  const double scale = want.masked_select(finite).abs().max().item<double>();
  const double diff = (got - want).masked_select(finite).abs().max().item<double>();
  EXPECT_LE(diff, tol.abs + tol.rel * scale) << what << ": differs by " << diff << " (largest value " << scale << ")";
}

// Heads ranked by a score: the order must be the recording's wherever the recorded values are apart by more than the
// tolerance.
void expect_same_ranking(const std::string& what, const at::Tensor& got, const at::Tensor& want) {
  const int64_t n = want.size(0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      const double wi = want[i].item<double>(), wj = want[j].item<double>();
      if (std::isnan(wi) || std::isnan(wj) || wi <= wj + 1e-4) continue;
      EXPECT_GT(got[i].item<double>(), got[j].item<double>()) << what << ": heads " << i << " and " << j << " swap ranks";
    }
}

// One recorded analysis: its tag in the golden file, the registered analysis, and the CLI's options for it.
struct Case {
  std::string tag, analysis;
  json options;
};

const std::vector<Case> kCases = {
    {"ablation", "ablation", json::object()},
    {"patching-resid_pre", "patching", {{"site", "resid_pre"}}},
    {"attribution", "attribution", {{"site", "resid_pre"}, {"compare", true}}},
    {"head-scores", "head-scores", json::object()},
    {"attention", "attention", json::object()},
    {"dla", "dla", json::object()},
    {"logit-lens", "logit-lens", json::object()},
    {"knockout-L1", "knockout", {{"layer", 1}, {"last_row", true}}},
    {"embeddings", "embeddings", json::object()}};

// The input the CLI gave each analysis: 32 examples drawn with seed 0, or task example 3 alone.
Batch input_for(const RegisteredAnalysis& a, const OpenedModel& m) {
  if (a.info.input == AnalysisInput::None) return {};
  if (a.info.input == AnalysisInput::Sequence) return m.task->sample(1, 3);
  return m.task->sample(32, 0);
}

class Golden : public ::testing::TestWithParam<std::string> {};

TEST_P(Golden, LogitsAndAnalysisTablesMatchTheRecording) {
  const std::string demo = GetParam();
  const ResultsFile golden = read_results(golden_path(demo));
  auto m = OpenedModel::open(model_path(demo));
  at::NoGradGuard no_grad;
  {  // the logits of task example 3
    Batch b = m->task->sample(1, 3);
    const at::Tensor tokens = b.tokens.narrow(1, 0, b.lengths[0].item<int64_t>());
    expect_close(demo + " forward/logits", m->model().forward(tokens)[0], golden.get("forward/logits").value);
  }
  int compared = 0;
  for (const auto& c : kCases) {
    std::vector<const ResultTensor*> recorded;
    for (const auto& t : golden.tensors)
      if (t.name.rfind(c.tag + "/", 0) == 0) recorded.push_back(&t);
    if (recorded.empty()) continue;  // the recording command failed for this demo (no position rows, ...)
    const RegisteredAnalysis& a = require_analysis(c.analysis);
    const json options = c.options;
    const Batch batch = input_for(a, *m);
    const ResultsFile rf = run_analysis(a, AnalysisContext{m->model(), m->task.get(), batch, m->ck.vocab, options, 0, {},
                                                           nullptr, &m->ck.training});
    for (const ResultTensor* want : recorded) {
      const std::string name = want->name.substr(c.tag.size() + 1);
      const std::string what = demo + " " + want->name;
      const auto got = std::find_if(rf.tensors.begin(), rf.tensors.end(), [&](const ResultTensor& t) { return t.name == name; });
      ASSERT_NE(got, rf.tensors.end()) << what << ": the analysis no longer writes it";
      expect_close(what, got->value.to(at::kCPU), want->value);
      if (name == "head_scores/causal" || name == "head_scores/aggregate") expect_same_ranking(what, got->value, want->value);
      ++compared;
    }
  }
  EXPECT_GE(compared, 12) << demo << ": the recording holds too few tables";
}

INSTANTIATE_TEST_SUITE_P(Demos, Golden, ::testing::ValuesIn(kDemos), [](const auto& info) {
  std::string n = info.param;
  std::replace(n.begin(), n.end(), '-', '_');
  return n;
});

}  // namespace
}  // namespace mechscope
