// Interventions (spec §4): the batched sweeps against the plain one-forward-per-intervention loop, and the
// properties that pin the definitions down (patching every position restores the clean run; patching the only
// corrupted token restores it exactly; DLA components sum to the answer logit; padding changes nothing).
#include <cmath>
#include <limits>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "core/interventions/interventions.h"
#include "core/model/mixers/attention.h"
#include "core/model/model.h"
#include "kernels/binding/metric_ops.h"
#include "kernels/binding/scan_ops.h"
#include "tests/support/test_support.h"

using namespace mechscope;
using mechscope::test::max_abs_diff;
using mechscope::test::small_config;

namespace {

const nlohmann::json kMqar = {{"task", "mqar"}, {"vocab_size", 32}, {"seq_len", 16}, {"num_pairs", 4}};

struct Fixture {
  std::unique_ptr<LanguageModel> model;
  std::unique_ptr<Task> task;
  Batch clean, corrupted, reference;
};

Fixture make(const std::string& preset, const nlohmann::json& overrides = nlohmann::json::object(),
             const nlohmann::json& task = kMqar, int64_t n = 6) {
  Fixture f;
  f.model = std::make_unique<LanguageModel>(small_config(preset, overrides), 3);
  f.model->eval();
  f.task = make_task(task);
  f.clean = f.task->sample(n, 5);
  f.corrupted = f.task->corrupt(f.clean, 9);
  f.reference = f.task->sample(8, 77);
  return f;
}

// Relative closeness for metric tables.
void expect_close(const at::Tensor& a, const at::Tensor& b, double tol, const std::string& what) {
  ASSERT_TRUE(a.sizes().equals(b.sizes())) << what;
  const double scale = std::max(1.0, b.abs().max().item<double>());
  EXPECT_LT(max_abs_diff(a, b), tol * scale) << what;
}

// The presets, and the test variants of the imported families' blocks (tests/support/test_support.h).
const std::vector<std::string> kPresets = mechscope::test::test_presets();

}  // namespace

TEST(Metrics, HandComputedValues) {
  // Two readout positions of one example: logits chosen so that every metric is known in closed form.
  Readout r;
  r.example = at::tensor({0, 0}, at::kLong);
  r.position = at::tensor({0, 1}, at::kLong);
  r.target = at::tensor({1, 0}, at::kLong);
  r.num_examples = 1;
  at::Tensor logits = at::tensor({0.0f, 2.0f, 0.0f, 1.0f, 3.0f, 0.0f}).view({2, 3});
  for (bool fast : {true, false}) {  // the CPU kernel and the ATen path
    kernels::set_fast_scan_enabled(fast);
    ExampleMetrics m = example_metrics(logits, r, logits);
    const double z0 = 2 + std::exp(2.0), p0 = std::exp(2.0) / z0;         // row 0: answer 1 (logit 2)
    const double z1 = std::exp(1.0) + std::exp(3.0) + 1, p1 = std::exp(1.0) / z1;  // row 1: answer 0 (logit 1), best 3
    EXPECT_NEAR(m.prob[0].item<double>(), (p0 + p1) / 2, 1e-6) << fast;
    EXPECT_NEAR(m.logit_diff[0].item<double>(), ((2.0 - 0.0) + (1.0 - 3.0)) / 2, 1e-6) << fast;
    EXPECT_NEAR(m.correct[0].item<double>(), 0.5, 1e-6) << fast;
    EXPECT_NEAR(m.kl[0].item<double>(), 0.0, 1e-6) << fast;
  }
  kernels::set_fast_scan_enabled(true);
}

TEST(Metrics, CpuKernelEqualsTheAtenPath) {
  // Readouts of 5 examples (uneven counts), 3 stacked variants, 37 tokens. Logits rounded to halves so that rows
  // have tied maxima (the first maximal index decides accuracy) and answers that tie with the best wrong token.
  const int64_t K = 3, R = 11, V = 37;
  Readout r;
  r.example = at::tensor({0, 0, 0, 1, 2, 2, 3, 3, 3, 3, 4}, at::kLong);
  r.position = at::arange(R, at::kLong);
  r.target = at::tensor({0, 36, 5, 5, 1, 0, 36, 17, 2, 3, 4}, at::kLong);
  r.num_examples = 5;
  at::manual_seed(4);
  at::Tensor logits = (at::randn({K, R, V}) * 2).round() / 2;
  logits[0][1][36] = logits[0][1].max();  // the answer is a tied maximum: correct only if first
  logits[1][2].fill_(0.5);                // every token tied
  at::Tensor ref_logits = at::randn({1, R, V});
  const MetricReference ref = metric_reference(ref_logits), per_variant = metric_reference(at::randn({K, R, V}));
  at::Tensor bad = logits.clone();
  bad[2][4][7] = -std::numeric_limits<float>::infinity();  // the kernel declines; the ATen path decides
  at::Tensor prob, ld, correct, kl;
  EXPECT_TRUE(kernels::readout_metrics(logits, r.target, ref.p, ref.neg_entropy, prob, ld, correct, kl));
  EXPECT_FALSE(kernels::readout_metrics(bad, r.target, ref.p, ref.neg_entropy, prob, ld, correct, kl));
  EXPECT_FALSE(kernels::readout_metrics(logits.to(at::kDouble), r.target, ref.p, ref.neg_entropy, prob, ld, correct, kl));
  {  // a metric to differentiate takes the ATen path, gradient and all
    at::Tensor lg = logits.clone().requires_grad_(true);
    EXPECT_FALSE(kernels::readout_metrics(lg, r.target, ref.p, ref.neg_entropy, prob, ld, correct, kl));
    ExampleMetrics m = example_metrics(lg, r, ref);
    m.prob.sum().backward();
    ASSERT_TRUE(lg.grad().defined());
    EXPECT_GT(lg.grad().abs().sum().item<double>(), 0.0);
  }
  // The reference side (softmax and its sum p log p) from the kernel and from the ATen path; a -inf logit declines.
  at::Tensor bad_ref = ref_logits.clone();
  bad_ref[0][3][2] = -std::numeric_limits<float>::infinity();
  at::Tensor rp, rne;
  EXPECT_FALSE(kernels::readout_reference(bad_ref, rp, rne));
  for (const at::Tensor& rl : {ref_logits, logits, bad_ref, logits[1]}) {
    const MetricReference fast = metric_reference(rl);
    kernels::set_fast_scan_enabled(false);
    const MetricReference plain = metric_reference(rl);
    kernels::set_fast_scan_enabled(true);
    ASSERT_TRUE(fast.p.sizes().equals(plain.p.sizes()) && fast.neg_entropy.sizes().equals(plain.neg_entropy.sizes()));
    EXPECT_TRUE(at::allclose(fast.p, plain.p, 1e-5, 1e-7, /*equal_nan=*/true)) << max_abs_diff(fast.p, plain.p);
    EXPECT_TRUE(at::allclose(fast.neg_entropy, plain.neg_entropy, 1e-5, 1e-6, /*equal_nan=*/true))
        << max_abs_diff(fast.neg_entropy, plain.neg_entropy);
  }
  EXPECT_TRUE(kernels::readout_reference(ref_logits, rp, rne));
  struct Case {
    std::string what;
    at::Tensor logits;
    MetricReference ref;
  };
  for (const Case& c : {Case{"shared reference", logits, ref}, Case{"per-variant reference", logits, per_variant},
                        Case{"no reference", logits, MetricReference{}}, Case{"a -inf logit", bad, ref},
                        Case{"one variant [R, V]", logits[1], ref}}) {
    kernels::set_fast_scan_enabled(true);
    ExampleMetrics fast = example_metrics(c.logits, r, c.ref);
    kernels::set_fast_scan_enabled(false);
    ExampleMetrics plain = example_metrics(c.logits, r, c.ref);
    kernels::set_fast_scan_enabled(true);
    ASSERT_TRUE(fast.prob.sizes().equals(plain.prob.sizes())) << c.what;
    EXPECT_TRUE(at::allclose(fast.prob, plain.prob, 1e-5, 1e-6)) << c.what;
    EXPECT_TRUE(at::allclose(fast.logit_diff, plain.logit_diff, 1e-5, 1e-6)) << c.what;
    EXPECT_TRUE(at::equal(fast.correct, plain.correct)) << c.what;
    ASSERT_EQ(fast.kl.defined(), plain.kl.defined()) << c.what;
    if (plain.kl.defined()) EXPECT_TRUE(at::allclose(fast.kl, plain.kl, 1e-5, 2e-6)) << c.what;
  }
}

TEST(Metrics, ReadoutPositions) {
  auto task = make_task(kMqar);
  Batch b = task->sample(3, 1);
  Readout all = Readout::all_labelled(b), last = Readout::last_labelled(b);
  EXPECT_EQ(all.size(), b.targets.ne(-100).sum().item<int64_t>());
  EXPECT_EQ(last.size(), 3);
  for (int64_t i = 0; i < 3; ++i) {
    const int64_t p = last.position[i].item<int64_t>();
    EXPECT_NE(b.targets[i][p].item<int64_t>(), -100);
    EXPECT_EQ(b.targets[i].narrow(0, p + 1, b.targets.size(1) - p - 1).ne(-100).sum().item<int64_t>(), 0);
  }
}

TEST(HeadAblation, ZeroEqualsZeroingOutProjColumns) {
  at::NoGradGuard no_grad;
  Fixture f = make("transformer", {{"attn_cfg", {{"num_heads", 4}, {"head_dim", 8}}}});
  Ablator zero(*f.model, AblationKind::Zero);
  HeadRef h{1, "attn", 2};
  at::Tensor hooked = f.model->run_with_hooks(f.clean.tokens, zero.hooks({h}));
  at::Tensor w = dynamic_cast<AttentionImpl&>(f.model->block(1).mixer()).out_proj->weight;
  at::Tensor saved = w.clone();
  w.narrow(1, 2 * 8, 8).zero_();
  at::Tensor edited = f.model->forward(f.clean.tokens);
  w.copy_(saved);
  EXPECT_LT(max_abs_diff(hooked, edited), 1e-5);
}

TEST(HeadAblation, BatchedSweepEqualsOneForwardPerHead) {
  for (const auto& preset : kPresets) {
    for (auto kind : {AblationKind::Zero, AblationKind::Mean, AblationKind::Resample}) {
      const bool attention_only = preset == "transformer" || preset == "llama-like";
      Fixture f = make(preset, {{"d_intermediate", attention_only ? 48 : 0}});
      Ablator ab(*f.model, kind, f.reference);
      Readout r = Readout::all_labelled(f.clean);
      SweepOptions plain;
      plain.batched = false;
      SweepOptions batched;
      batched.memory_budget_mb = 1;  // forces several chunks
      auto a = head_ablation_sweep(*f.model, f.clean.tokens, r, ab, {}, plain);
      auto b = head_ablation_sweep(*f.model, f.clean.tokens, r, ab, {}, batched);
      const std::string what = preset + " " + ablation_name(kind);
      ASSERT_EQ(a.heads.size(), all_heads(*f.model).size());
      expect_close(b.ablated.prob, a.ablated.prob, 2e-5, what + " prob");
      expect_close(b.ablated.logit_diff, a.ablated.logit_diff, 2e-4, what + " logit diff");
      expect_close(b.ablated.kl, a.ablated.kl, 2e-5, what + " kl");
      EXPECT_EQ(max_abs_diff(b.ablated.accuracy, a.ablated.accuracy), 0.0) << what;
      // Ablation changes something: not every head leaves the output as it was.
      EXPECT_GT(a.ablated.kl.max().item<double>(), 0.0) << what;
    }
  }
}

// With the default budget a chunk holds several variants, and on two threads its variants run as parts side by
// side (run_example_parts); the sweeps above force chunks of one. Both sweeps against the plain loop, and the
// same sweep on one thread.
TEST(HeadAblation, ChunkPartsOnTwoThreadsEqualOneForwardPerHead) {
  const int before = at::get_num_threads();
  // The last case has one head per layer: its first-layer chunk holds one variant, whose rows run as parts.
  const std::vector<std::pair<std::string, nlohmann::json>> cases = {
      {"transformer", {{"d_intermediate", 0}}},
      {"mamba2", {{"d_intermediate", 0}}},
      {"hybrid", {{"d_intermediate", 0}}},
      {"transformer", {{"d_intermediate", 0}, {"attn_cfg", {{"num_heads", 1}, {"head_dim", 32}}}}}};
  // Zero ablation too: a chunk of one zero-ablated variant builds its residual inside the row parts.
  for (const auto& [preset, overrides] : cases)
    for (const auto kind : {AblationKind::Mean, AblationKind::Zero}) {
      Fixture f = make(preset, overrides);
      Ablator ab(*f.model, kind, f.reference);
      Readout r = Readout::all_labelled(f.clean);
      SweepOptions plain;
      plain.batched = false;
      at::set_num_threads(2);
      auto a = head_ablation_sweep(*f.model, f.clean.tokens, r, ab, {}, plain);
      auto b = head_ablation_sweep(*f.model, f.clean.tokens, r, ab, {}, SweepOptions{});
      at::set_num_threads(1);
      auto c = head_ablation_sweep(*f.model, f.clean.tokens, r, ab, {}, SweepOptions{});
      at::set_num_threads(before);
      for (const auto& [got, how] : {std::pair{b, "two threads"}, std::pair{c, "one thread"}}) {
        const std::string what = preset + (overrides.contains("attn_cfg") ? " (one head per layer) " : " ") +
                                 ablation_name(kind) + " " + how;
        expect_close(got.ablated.prob, a.ablated.prob, 2e-5, what + " prob");
        expect_close(got.ablated.kl, a.ablated.kl, 2e-5, what + " kl");
        EXPECT_EQ(max_abs_diff(got.ablated.accuracy, a.ablated.accuracy), 0.0) << what;
      }
    }
  for (const auto& site : {"resid_pre", "heads"}) {
    Fixture f = make("mamba2", {{"d_intermediate", 0}}, kMqar, 4);
    SweepOptions plain;
    plain.batched = false;
    plain.keep_threshold = -1;
    SweepOptions batched = plain;
    batched.batched = true;
    at::set_num_threads(2);
    auto a = activation_patching(*f.model, f.clean, f.corrupted, site, plain);
    auto b = activation_patching(*f.model, f.clean, f.corrupted, site, batched);
    at::set_num_threads(before);
    at::Tensor ok = at::isfinite(a.prob);
    EXPECT_TRUE(ok.equal(at::isfinite(b.prob))) << site;
    expect_close(b.prob.masked_select(ok), a.prob.masked_select(ok), 2e-5, std::string(site) + " prob");
    expect_close(b.kl.masked_select(ok), a.kl.masked_select(ok), 2e-5, std::string(site) + " kl");
  }
}

// The batched sweep unembeds each part's readouts inside the part when the readout lists its examples in
// ascending order (as Readout's constructors do); a readout in another order takes the whole-batch path. Per-example
// means do not depend on the order, so both sweeps (and the plain loop) agree.
TEST(HeadAblation, ReadoutInAnyOrderGivesTheSameSweep) {
  const int before = at::get_num_threads();
  at::set_num_threads(2);
  for (const auto& preset : {std::string("transformer"), std::string("hybrid")}) {
    Fixture f = make(preset, {{"d_intermediate", 0}});
    Ablator ab(*f.model, AblationKind::Zero, f.reference);
    Readout r = Readout::all_labelled(f.clean);
    Readout shuffled = r;
    const at::Tensor order = at::arange(r.size() - 1, -1, -1, at::kLong);  // reversed: examples descending
    shuffled.example = r.example.index_select(0, order);
    shuffled.position = r.position.index_select(0, order);
    shuffled.target = r.target.index_select(0, order);
    SweepOptions plain;
    plain.batched = false;
    auto a = head_ablation_sweep(*f.model, f.clean.tokens, r, ab, {}, SweepOptions{});
    auto b = head_ablation_sweep(*f.model, f.clean.tokens, shuffled, ab, {}, SweepOptions{});
    auto c = head_ablation_sweep(*f.model, f.clean.tokens, shuffled, ab, {}, plain);
    for (const auto& [got, how] : {std::pair{b, "reversed, batched"}, std::pair{c, "reversed, plain"}}) {
      expect_close(got.ablated.prob, a.ablated.prob, 2e-5, preset + " " + how + " prob");
      expect_close(got.ablated.kl, a.ablated.kl, 2e-5, preset + " " + how + " kl");
      expect_close(got.base.prob, a.base.prob, 2e-5, preset + " " + how + " base prob");
      EXPECT_EQ(max_abs_diff(got.ablated.accuracy, a.ablated.accuracy), 0.0) << preset << " " << how;
    }
  }
  at::set_num_threads(before);
}

TEST(HeadAblation, SetsFromTheCachedPrefixEqualTheHookedForward) {
  at::NoGradGuard no_grad;
  for (const auto& preset : kPresets) {
    Fixture f = make(preset, {{"d_intermediate", 40}, {"n_layer", 3}});
    Ablator ab(*f.model, AblationKind::Mean, f.reference);
    auto heads = all_heads(*f.model);
    const std::vector<std::vector<HeadRef>> sets = {{}, {heads.back()}, {heads[1]}, {heads[0], heads[heads.size() / 2], heads.back()}};
    auto cache = f.model->run_with_cache(f.clean.tokens, HookSelection::of(ablation_cache_names(*f.model))).second;
    for (const auto& set : sets) {
      at::Tensor fast = f.model->unembed(ablated_final_resid(*f.model, f.clean.tokens, cache, ab, set));
      at::Tensor plain = f.model->run_with_hooks(f.clean.tokens, ab.hooks(set));
      EXPECT_LT(max_abs_diff(fast, plain), 1e-4) << preset << " " << set.size() << " heads";
      // What the outcome view reads: the labelled rows of every example and every row of one example.
      Readout r = Readout::all_labelled(f.clean);
      auto [rows, slot] = readout_rows(r, f.clean.size());
      const int64_t e = f.clean.size() - 1;
      ReadoutResid rr = ablated_readout_resid(*f.model, f.clean.tokens, cache, ab, set, rows, e);
      at::Tensor full = ablated_final_resid(*f.model, f.clean.tokens, cache, ab, set);
      EXPECT_LT(max_abs_diff(rr.at_rows.index({r.example, slot}), gather_readout(full, r)), 1e-5) << preset << " rows";
      EXPECT_LT(max_abs_diff(rr.example_full, full[e]), 1e-5) << preset << " example";
    }
  }
}

TEST(HeadAblation, OneExampleRunAloneIsAblatedAsInTheBatch) {
  // The workbench draws one example's attention under the ablations: a resampled head must take that example's
  // reference row (first_row), not row 0's, to equal the example's row of the whole batch's ablated run.
  at::NoGradGuard no_grad;
  Fixture f = make("hybrid");
  Ablator ab(*f.model, AblationKind::Resample, f.reference);
  const std::vector<HeadRef> set = {all_heads(*f.model).front()};
  at::Tensor whole = f.model->run_with_hooks(f.clean.tokens, ab.hooks(set));
  const int64_t e = 4;
  at::Tensor alone = f.model->run_with_hooks(f.clean.tokens.narrow(0, e, 1), ab.hooks(set, e));
  EXPECT_LT(max_abs_diff(alone[0], whole[e]), 1e-5);
  at::Tensor as_row0 = f.model->run_with_hooks(f.clean.tokens.narrow(0, e, 1), ab.hooks(set));
  EXPECT_GT(max_abs_diff(as_row0[0], whole[e]), 1e-3);  // the reference rows differ: the offset matters
}

TEST(HeadAblation, MeanAblationWithTheRunItselfAsReferenceIsIdentityOnAverage) {
  // Mean over the run's own batch: the head's mean activation, per position (hand property of the definition).
  at::NoGradGuard no_grad;
  Fixture f = make("mamba2");
  Ablator ab(*f.model, AblationKind::Mean, f.clean);
  HeadRef h{0, "ssm", 1};
  auto [logits, cache] = f.model->run_with_cache(f.clean.tokens, HookSelection::of({head_hook_name(*f.model, h)}));
  at::Tensor z = cache.begin()->second.select(2, 1);  // [B, L, D]
  at::Tensor valid = at::arange(z.size(1)).unsqueeze(0).lt(f.clean.lengths.unsqueeze(1)).to(at::kFloat).unsqueeze(-1);
  at::Tensor expected = (z * valid).sum(0) / valid.sum(0).clamp_min(1);
  EXPECT_LT(max_abs_diff(ab.replacement(h, z)[0], expected), 1e-6);
}

TEST(HeadAblation, ParsesHeadNamesAndRejectsBadOnes) {
  Fixture f = make("parallel-hybrid");
  EXPECT_EQ(parse_head("L1.attn.H0", *f.model), (HeadRef{1, "attn", 0}));
  EXPECT_EQ(parse_head("0.ssm.3", *f.model), (HeadRef{0, "ssm", 3}));
  EXPECT_THROW(parse_head("1.0", *f.model), std::invalid_argument);  // ambiguous: attn and ssm
  EXPECT_THROW(parse_head("L9.attn.H0", *f.model), std::invalid_argument);
  EXPECT_THROW(parse_head("L0.attn.H99", *f.model), std::invalid_argument);
  EXPECT_THROW(parse_head("head zero", *f.model), std::invalid_argument);
  EXPECT_THROW(parse_ablation("median"), std::invalid_argument);
  // Ranges (channel groups) and their labels.
  auto range = parse_heads("L0.ssm.H2-4", *f.model);
  ASSERT_EQ(range.size(), 3u);
  EXPECT_EQ(range[0], (HeadRef{0, "ssm", 2}));
  EXPECT_EQ(range[2], (HeadRef{0, "ssm", 4}));
  EXPECT_EQ(group_label(range), "L0.ssm.H2-4");
  EXPECT_EQ(group_label({HeadRef{0, "ssm", 2}, HeadRef{1, "attn", 0}}), "L0.ssm.H2+L1.attn.H0");
  EXPECT_EQ(group_label({HeadRef{0, "ssm", 2}, HeadRef{0, "ssm", 3}, HeadRef{0, "ssm", 5}}), "L0.ssm.H2-3+L0.ssm.H5");
  EXPECT_EQ(parse_heads("L1.attn.H0", *f.model).size(), 1u);
  EXPECT_THROW(parse_heads("L0.ssm.H4-2", *f.model), std::invalid_argument);
  EXPECT_THROW(parse_heads("L0.ssm.H0-9999", *f.model), std::invalid_argument);
}

// Mamba1 channels in groups: each group ablated together, batched (the group's linear terms add up) against one
// hooked forward per group; a group is not the same as any of its channels alone.
TEST(HeadAblation, ChannelGroupSweepEqualsAblatingEachGroupTogether) {
  for (const auto& preset : {"mamba1", "parallel-hybrid"}) {
    for (auto kind : {AblationKind::Zero, AblationKind::Resample}) {
      // parallel-hybrid with Mamba1 (a merge patch's nulls drop the Mamba2 fields the helper set).
      Fixture f = make(preset, {{"ssm_cfg", {{"layer", "Mamba1"}, {"headdim", nullptr}, {"chunk_size", nullptr},
                                             {"ngroups", nullptr}, {"d_state", 4}}}});
      Ablator ab(*f.model, kind, f.reference);
      Readout r = Readout::all_labelled(f.clean);
      auto groups = channel_groups(*f.model, 5);
      int64_t channels = 0, grouped = 0;
      for (const auto& g : groups) {
        if (g[0].mixer == "ssm") channels += static_cast<int64_t>(g.size()), grouped += g.size() > 1;
        for (const auto& h : g) EXPECT_EQ(h.layer, g[0].layer);
      }
      EXPECT_EQ(channels, f.model->n_layers() * f.model->head_group(0, "ssm").heads) << preset;
      EXPECT_GT(grouped, 0) << preset;
      SweepOptions plain;
      plain.batched = false;
      SweepOptions batched;
      batched.memory_budget_mb = 1;
      auto a = head_group_sweep(*f.model, f.clean.tokens, r, ab, groups, plain);
      auto b = head_group_sweep(*f.model, f.clean.tokens, r, ab, groups, batched);
      const std::string what = std::string(preset) + " " + ablation_name(kind);
      ASSERT_EQ(a.labels.size(), groups.size());
      EXPECT_EQ(a.labels, b.labels);
      expect_close(b.ablated.prob, a.ablated.prob, 2e-5, what + " prob");
      expect_close(b.ablated.kl, a.ablated.kl, 2e-5, what + " kl");
      // The first group of channels against its first channel alone.
      size_t first_ssm = 0;
      while (groups[first_ssm][0].mixer != "ssm") ++first_ssm;
      auto single = head_ablation_sweep(*f.model, f.clean.tokens, r, ab, {groups[first_ssm][0]}, batched);
      EXPECT_GT(std::abs(single.ablated.kl[0].item<double>() - a.ablated.kl[first_ssm].item<double>()), 1e-7) << what;
    }
  }
  Fixture f = make("mamba1");
  EXPECT_THROW(channel_groups(*f.model, 0), std::invalid_argument);
  Ablator zero(*f.model, AblationKind::Zero);
  EXPECT_THROW(head_group_sweep(*f.model, f.clean.tokens, Readout::all_labelled(f.clean), zero,
                                {{HeadRef{0, "ssm", 0}, HeadRef{1, "ssm", 0}}}),
               std::invalid_argument);
}

TEST(Knockout, BlockedEdgesGetNoAttention) {
  at::NoGradGuard no_grad;
  Fixture f = make("transformer", {{"attn_cfg", {{"num_heads", 2}, {"head_dim", 16}}}});
  Readout r = Readout::last_labelled(f.clean);
  Knockout ko;
  ko.layer = 1;
  ko.heads = {1};
  ko.edges = {{5, 2}, {7, 0}};
  ko.last_row = true;
  auto [logits, cache] = f.model->run(f.clean.tokens, knockout_hooks(*f.model, {ko}, r),
                                      HookSelection::of({"blocks.1.attn.hook_pattern"}));
  at::Tensor pat = cache.at("blocks.1.attn.hook_pattern");  // [B, H, q, k]
  EXPECT_EQ(pat.select(1, 1).select(1, 5).select(1, 2).abs().max().item<double>(), 0.0);
  EXPECT_EQ(pat.select(1, 1).select(1, 7).select(1, 0).abs().max().item<double>(), 0.0);
  EXPECT_GT(pat.select(1, 0).select(1, 5).select(1, 2).min().item<double>(), 0.0);  // head 0 untouched
  for (int64_t i = 0; i < r.size(); ++i) {
    const int64_t q = r.position[i].item<int64_t>();
    EXPECT_EQ(pat[i][1][q].narrow(0, 0, q).abs().max().item<double>(), 0.0);
    EXPECT_NEAR(pat[i][1][q][q].item<double>(), 1.0, 1e-6);  // only itself is left
  }
  EXPECT_LT(max_abs_diff(pat.sum(-1), at::ones_like(pat.sum(-1))), 1e-5);
  Knockout bad;
  bad.layer = 0;
  bad.heads = {5};
  EXPECT_THROW(knockout_hooks(*f.model, {bad}, r), std::invalid_argument);
}

TEST(Patching, EveryPositionFromCleanGivesTheCleanLogits) {
  at::NoGradGuard no_grad;
  for (const auto& preset : kPresets) {
    Fixture f = make(preset, {{"d_intermediate", 40}});
    at::Tensor clean_logits = f.model->forward(f.clean.tokens);
    for (const std::string site : {"resid_pre", "resid_mid", "resid_post"}) {
      for (int64_t l = 0; l < f.model->n_layers(); ++l) {
        std::string hook = site_hook_name(*f.model, site, l);
        if (hook.empty()) continue;
        auto cache = f.model->run_with_cache(f.clean.tokens, HookSelection::of({hook, "hook_embed"})).second;
        at::Tensor clean_act = cache.at(hook), clean_embed = cache.at("hook_embed");
        std::vector<Hook> hooks = {{hook, [&](const at::Tensor&, const std::string&) { return clean_act; }}};
        // A shared block (Zamba2) reads the token embedding beside the residual: with it, the cut is complete.
        if (f.model->needs_embedding())
          hooks.push_back({"hook_embed", [&](const at::Tensor&, const std::string&) { return clean_embed; }});
        at::Tensor patched = f.model->run_with_hooks(f.corrupted.tokens, hooks);
        // The residual sites cut the whole computation: every later value comes from them.
        EXPECT_LT(max_abs_diff(patched, clean_logits), 1e-4) << preset << " " << hook;
      }
    }
  }
}

TEST(Patching, BatchedEqualsOneForwardPerCell) {
  for (const auto& preset : {"transformer", "mamba1", "mamba2", "hybrid", "parallel-hybrid", "llama-like", "falcon-h1"}) {
    Fixture f = make(preset, {{"d_intermediate", 40}}, kMqar, 4);
    for (const auto& site : {"resid_pre", "mixer_out", "mlp_in", "heads", "conv_out", "state"}) {
      const bool attention_only = std::string(preset) == "transformer" || std::string(preset) == "llama-like";
      if (std::string(site) != "resid_pre" && attention_only &&
          (std::string(site) == "conv_out" || std::string(site) == "state"))
        continue;
      SweepOptions plain;
      plain.batched = false;
      plain.keep_threshold = -1;  // a random model: keep every example
      SweepOptions batched = plain;
      batched.batched = true;
      batched.memory_budget_mb = 1;
      auto a = activation_patching(*f.model, f.clean, f.corrupted, site, plain);
      // Batched from each cell's position on (partial runs), and for SSMs also over every position: a budget
      // the cached SSM states do not fit turns the partial runs off.
      SweepOptions no_partial = batched;
      no_partial.memory_budget_mb = 0;
      for (const SweepOptions& o : {batched, no_partial}) {
        auto b = activation_patching(*f.model, f.clean, f.corrupted, site, o);
        const std::string what = std::string(preset) + " " + site + " budget " + std::to_string(o.memory_budget_mb);
        ASSERT_EQ(a.rows, b.rows) << what;
        at::Tensor ok = at::isfinite(a.prob);
        EXPECT_TRUE(ok.equal(at::isfinite(b.prob))) << what;
        expect_close(b.prob.masked_select(ok), a.prob.masked_select(ok), 2e-5, what + " prob");
        expect_close(b.kl.masked_select(ok), a.kl.masked_select(ok), 2e-5, what + " kl");
        expect_close(b.logit_diff.masked_select(ok), a.logit_diff.masked_select(ok), 2e-4, what + " logit diff");
      }
    }
  }
}

TEST(Patching, AlignedScoresAreTheGridAtEachExamplesAnchors) {
  // Single-query AR reads every example at the same position q; corrupting the same position c in every
  // example makes each anchor one column of the grid: aligned[:, corrupted+o] = score[:, c+o] and
  // aligned[:, readout] = score[:, q] (the same per-example scores, averaged). Exact and attribution patching.
  // (Demo checkpoints, where the corrupted key moves from example to example, check the alignment against
  // examples patched one at a time: tests/demo/test_science.cpp.)
  const auto& anchors = aligned_anchors();
  ASSERT_EQ(anchors.size(), 6u);
  ASSERT_EQ(anchors[1], "corrupted");
  ASSERT_EQ(anchors[5], "readout");
  const nlohmann::json ar = {{"task", "ar"}, {"num_pairs", 4}, {"num_keys", 8}, {"num_values", 8}};
  for (const auto& preset : {"transformer", "mamba2"}) {
    Fixture f = make(preset, nlohmann::json::object(), ar, 5);
    const int64_t c = 3;  // <bos> k1 v1 [k2] v2 ...
    Batch corrupted = f.clean;
    corrupted.tokens = f.clean.tokens.clone();
    corrupted.tokens.select(1, c).copy_(f.clean.tokens.select(1, 1));  // k1 in k2's place: a different key
    Readout r = Readout::last_labelled(f.clean);
    const int64_t q = r.position[0].item<int64_t>();
    ASSERT_TRUE(r.position.eq(q).all().item<bool>());
    SweepOptions o;
    o.keep_threshold = -1;  // a random model: keep every example
    for (bool exact : {true, false}) {
      PatchResult res = exact ? activation_patching(*f.model, f.clean, corrupted, "resid_pre", o)
                              : attribution_patching(*f.model, f.clean, corrupted, "resid_pre", o);
      const std::string what = std::string(preset) + (exact ? " exact" : " attribution");
      ASSERT_EQ(res.aligned.size(0), static_cast<int64_t>(res.rows.size())) << what;
      ASSERT_EQ(res.aligned.size(1), 6) << what;
      EXPECT_EQ(res.aligned_examples, f.clean.size()) << what;
      at::Tensor want = at::stack({res.score.select(1, c - 1), res.score.select(1, c), res.score.select(1, c + 1),
                                   res.score.select(1, c + 2), res.score.select(1, c + 3), res.score.select(1, q)}, 1);
      expect_close(res.aligned, want, 1e-5, what);
      if (exact) {  // hand property: layer 0's input patched at the corrupted token is the clean run, elsewhere
        // nothing (up to float rounding of the partial run, divided by this random model's small p(y|o) - p(y|c):
        // 2.5e-4 in the sanitizer build)
        EXPECT_NEAR(res.aligned[0][1].item<double>(), 1.0, 1e-3) << what;
        EXPECT_NEAR(res.aligned[0][2].item<double>(), 0.0, 1e-3) << what;
      }
    }
  }
  // An anchor before the first position has no example: NaN.
  Fixture f = make("transformer", nlohmann::json::object(), ar, 3);
  Batch corrupted = f.clean;
  corrupted.tokens = f.clean.tokens.clone();
  corrupted.tokens.select(1, 0).copy_(f.clean.tokens.select(1, 1));  // the <bos> replaced
  SweepOptions o;
  o.keep_threshold = -1;
  PatchResult res = activation_patching(*f.model, f.clean, corrupted, "resid_pre", o);
  EXPECT_TRUE(std::isnan(res.aligned[0][0].item<double>()));
  EXPECT_NEAR(res.aligned[0][1].item<double>(), 1.0, 1e-4);
}

TEST(Patching, TheOnlyCorruptedTokenRestoresTheCleanRunExactly) {
  // Layer-0 block input = the embedding: patching it at the corrupted position makes the corrupted run the clean
  // run (answer probability p(y|o)), and at any other position changes nothing (p(y|c)). Hand property, every
  // architecture, one example at a time (each has its corrupted token elsewhere).
  for (const auto& preset : kPresets) {
    Fixture f = make(preset, nlohmann::json::object(), kMqar, 4);
    // Not where a shared block (Zamba2) reads the token embedding beside the residual: the corrupted token still
    // reaches it there (EveryPositionFromCleanGivesTheCleanLogits patches both).
    if (f.model->needs_embedding()) continue;
    for (int64_t e = 0; e < 4; ++e) {
      Batch clean = f.clean.narrow(e, 1);
      Batch corrupted = clean;
      corrupted.tokens = f.corrupted.tokens.narrow(0, e, 1);
      SweepOptions o;
      o.keep_threshold = -1;
      PatchResult res = activation_patching(*f.model, clean, corrupted, "resid_pre", o);
      for (int64_t p = 0; p < res.positions; ++p) {
        const bool differs = clean.tokens[0][p].item<int64_t>() != corrupted.tokens[0][p].item<int64_t>();
        EXPECT_NEAR(res.prob[0][p].item<double>(), differs ? res.clean_prob : res.corrupted_prob, 1e-6)
            << preset << " example " << e << " pos " << p;
        EXPECT_NEAR(res.kl[0][p].item<double>(), differs ? 0.0 : res.kl[0][res.positions - 1].item<double>(), 1e-5);
      }
    }
  }
}

TEST(Patching, StatePatchCarriesForward) {
  // Patching the state of a pure SSM's layer 0 at position p from the clean run changes the readout, and
  // differs from patching only the hook's value at p without carrying it (which the readout never sees).
  Fixture f = make("mamba2", {{"n_layer", 1}}, kMqar, 4);
  SweepOptions o;
  o.keep_threshold = -1;
  auto res = activation_patching(*f.model, f.clean, f.corrupted, "state", o);
  at::Tensor differs = f.clean.tokens.ne(f.corrupted.tokens).any(0);
  int64_t first = -1;
  for (int64_t p = 0; p < res.positions; ++p)
    if (differs[p].item<bool>()) { first = p; break; }
  ASSERT_GE(first, 0);
  // Before the corrupted token, clean and corrupted states are equal: patching there changes nothing.
  for (int64_t p = 0; p < first; ++p)
    EXPECT_NEAR(res.prob[0][p].item<double>(), res.corrupted_prob, 1e-6);
  // In a one-layer SSM the readout position's state determines its output: patching the readout position's
  // own state from the clean run restores the clean answer probability exactly.
  Readout r = Readout::last_labelled(f.clean);
  bool same_pos = (r.position == r.position[0]).all().item<bool>();
  if (same_pos) {
    const int64_t q = r.position[0].item<int64_t>();
    EXPECT_NEAR(res.prob[0][q].item<double>(), res.clean_prob, 1e-4);
  }
}

TEST(Patching, AttributionMatchesAFiniteDifference) {
  // Attribution patching is the first-order term: (p(c + e (o - c)) - p(c - e (o - c))) / 2e -> grad . (o - c).
  Fixture f = make("hybrid", {{"d_intermediate", 40}}, kMqar, 4);
  SweepOptions o;
  o.keep_threshold = -1;
  auto attr = attribution_patching(*f.model, f.clean, f.corrupted, "mixer_out", o);
  at::NoGradGuard no_grad;
  Readout r = Readout::last_labelled(f.clean);
  const std::string hook = "blocks.0.hook_mixer_out";
  at::Tensor co = f.model->run_with_cache(f.clean.tokens, HookSelection::of({hook})).second.at(hook);
  auto [xl, xc] = f.model->run_with_cache(f.corrupted.tokens, HookSelection::of({hook}));
  at::Tensor cc = xc.at(hook);
  at::Tensor pc = example_metrics(gather_readout(xl, r), r).prob;
  at::Tensor po = example_metrics(gather_readout(f.model->forward(f.clean.tokens), r), r).prob;
  // A central difference: its error is O(eps^2), so eps can be large enough that float32 rounding of the
  // probabilities (a few ulps, divided by eps) stays far below the tolerance.
  const double eps = 1e-2;
  for (int64_t p = 0; p < 16; ++p) {
    auto nudged = [&](double e) {
      at::Tensor logits = f.model->run_with_hooks(f.corrupted.tokens, {{hook, [&](const at::Tensor& v, const std::string&) {
        at::Tensor out = v.clone();
        out.select(1, p).add_(e * (co.select(1, p) - cc.select(1, p)));
        return out;
      }}});
      return example_metrics(gather_readout(logits, r), r).prob;
    };
    const double fd = ((nudged(eps) - nudged(-eps)) / (2 * eps) / (po - pc)).mean().item<double>();
    const double a = attr.score[0][p].item<double>();
    EXPECT_NEAR(a, fd, 2e-2 * std::max(1.0, std::abs(fd))) << "pos " << p;
  }
  EXPECT_THROW(attribution_patching(*f.model, f.clean, f.corrupted, "state", o), std::invalid_argument);
  EXPECT_THROW(activation_patching(*f.model, f.clean, f.corrupted, "residpre", o), std::invalid_argument);
}

TEST(Patching, ScoreCorrelation) {
  at::Tensor a = at::tensor({1.0, 2.0, 3.0, NAN}), b = at::tensor({2.0, 4.0, 6.0, 1.0});
  EXPECT_NEAR(score_correlation(a, b), 1.0, 1e-12);
  EXPECT_NEAR(score_correlation(a, -b), -1.0, 1e-12);
}

TEST(Dla, ComponentsSumToTheAnswerLogit) {
  for (const auto& preset : kPresets) {
    for (bool rms : {true, false}) {
      Fixture f = make(preset, {{"d_intermediate", 40}, {"rms_norm", rms}});
      Readout r = Readout::all_labelled(f.clean);
      DlaResult d = direct_logit_attribution(*f.model, f.clean.tokens, r);
      EXPECT_NEAR(d.value.sum().item<double>(), d.answer_logit, 1e-4 * std::max(1.0, std::abs(d.answer_logit)))
          << preset << (rms ? " rms" : " layernorm");
      EXPECT_EQ(static_cast<int64_t>(d.components.size()), d.value.size(0));
      // Heads behind Gemma 2's post-mixer RMSNorm get shares (its scale frozen); a shared block's heads none.
      const bool has_head = std::find(d.components.begin(), d.components.end(), "L0.attn.H0") != d.components.end();
      if (preset == "gemma2-like") EXPECT_EQ(has_head, rms) << (rms ? " rms" : " layernorm");
      if (preset == "zamba-like")
        for (const auto& c : d.components) EXPECT_EQ(c.find(".shared."), std::string::npos) << c;
    }
  }
}

TEST(Padding, PaddedBatchGivesTheSameAnswersAsOneByOne) {
  at::NoGradGuard no_grad;
  const nlohmann::json ngram = {{"task", "ngram"}, {"min_len", 8}, {"max_len", 20}};
  for (const auto& preset : kPresets) {
    Fixture f = make(preset, nlohmann::json::object(), ngram, 5);
    ASSERT_GT(f.clean.lengths.max().item<int64_t>(), f.clean.lengths.min().item<int64_t>());
    Readout r = Readout::all_labelled(f.clean);
    at::Tensor batched = gather_readout(f.model->forward(f.clean.tokens), r);
    for (int64_t i = 0; i < r.size(); ++i) {
      const int64_t e = r.example[i].item<int64_t>(), p = r.position[i].item<int64_t>();
      const int64_t len = f.clean.lengths[e].item<int64_t>();
      at::Tensor one = f.model->forward(f.clean.tokens.narrow(0, e, 1).narrow(1, 0, len));
      EXPECT_LT(max_abs_diff(one[0][p], batched[i]), 1e-4) << preset << " example " << e;
    }
  }
}

TEST(Sweeps, CancelAndProgress) {
  Fixture f = make("mamba1");
  Ablator ab(*f.model, AblationKind::Zero);
  std::atomic<bool> cancel{false};
  SweepOptions o;
  o.memory_budget_mb = 1;
  std::vector<double> seen;
  o.progress = [&](double frac, const std::string&) {
    seen.push_back(frac);
    if (seen.size() == 2) cancel = true;
  };
  o.cancel = &cancel;
  EXPECT_THROW(head_ablation_sweep(*f.model, f.clean.tokens, Readout::all_labelled(f.clean), ab, {}, o), Cancelled);
  EXPECT_EQ(seen.size(), 2u);
  EXPECT_LT(seen.back(), 1.0);
}
