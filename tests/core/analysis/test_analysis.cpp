// Analyses (spec §5): maps, head scores by a literal loop over roles, embedding geometry on constructed rows,
// and the logit lens against the model's own output.
#include <cmath>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include "core/analysis/analysis.h"
#include "core/model/model.h"
#include "tests/support/test_support.h"

using namespace mechscope;
using mechscope::test::max_abs_diff;
using mechscope::test::small_config;

namespace {
const nlohmann::json kMqar = {{"task", "mqar"}, {"vocab_size", 32}, {"seq_len", 16}, {"num_pairs", 4}};
}

TEST(AttentionMaps, EveryLayerAndMixerWithRowsThatMix) {
  for (const auto& preset : {"transformer", "mamba1", "mamba2", "parallel-hybrid"}) {
    LanguageModel m(small_config(preset), 2);
    auto task = make_task(kMqar);
    Batch b = task->sample(3, 1);
    auto maps = attention_maps(m, b.tokens);
    size_t expected = 0;
    for (int64_t l = 0; l < m.n_layers(); ++l) expected += m.heads_of_layer(l).size();
    ASSERT_EQ(maps.size(), expected) << preset;
    for (const auto& map : maps) {
      const int64_t L = b.tokens.size(1);
      EXPECT_EQ(map.pattern.size(2), L);
      // Causal: nothing above the diagonal.
      at::Tensor upper = map.pattern.triu(1);
      EXPECT_EQ(upper.abs().max().item<double>(), 0.0) << preset << " L" << map.layer << " " << map.mixer;
      at::Tensor mass = attention_mass(map.pattern);
      EXPECT_LT(max_abs_diff(mass.sum(-1), at::ones_like(mass.sum(-1))), 1e-5);
      at::Tensor norm = normalise_map(map.pattern);
      EXPECT_NEAR(norm.amax({-2, -1}).min().item<double>(), 1.0, 1e-5);
      EXPECT_GE(norm.min().item<double>(), 0.0);
    }
  }
  LanguageModel m1(small_config("mamba1"), 2);
  at::Tensor toks = make_task(kMqar)->sample(2, 3).tokens;
  const int64_t D = m1.config().ssm_heads();
  AttentionMap all = attention_map(m1, toks, 0, "ssm", D), avg = attention_map(m1, toks, 0, "ssm", 1);
  EXPECT_EQ(all.pattern.size(1), D);
  EXPECT_LT(max_abs_diff(all.pattern.mean(1, true), avg.pattern), 1e-6);
  EXPECT_THROW(attention_map(m1, toks, 0, "ssm", 7), std::invalid_argument);
  EXPECT_THROW(attention_map(m1, toks, 0, "attn"), std::invalid_argument);
  EXPECT_THROW(attention_map(m1, toks, 5, "ssm"), std::invalid_argument);
}

TEST(HeadScores, GatherAndAggregateByALiteralLoopOverRoles) {
  LanguageModel m(small_config("transformer", {{"attn_cfg", {{"num_heads", 2}, {"head_dim", 16}}}}), 4);
  auto task = make_task(kMqar);
  Batch b = task->sample(4, 2);
  HeadScores s = head_scores(m, b, 5, 6, 1);
  ASSERT_EQ(s.heads.size(), 4u);
  for (size_t i = 0; i < s.heads.size(); ++i) {
    const HeadRef& h = s.heads[i];
    at::Tensor pat = attention_map(m, b.tokens, h.layer, "attn").pattern.select(1, h.head);  // [B, L, L]
    double g = 0, a = 0;
    int64_t ng = 0, na = 0;
    for (int64_t e = 0; e < b.size(); ++e)
      for (int64_t j = 0; j + 1 < b.tokens.size(1); ++j) {
        if (b.roles[e][j].item<int8_t>() == static_cast<int8_t>(Role::Key) &&
            b.roles[e][j + 1].item<int8_t>() == static_cast<int8_t>(Role::Value)) {
          g += pat[e][j + 1][j].item<double>();  // the value (segment end) looks at its key
          ++ng;
        }
      }
    for (int64_t e = 0; e < b.size(); ++e)
      for (int64_t q = 0; q < b.tokens.size(1); ++q) {
        const int64_t y = b.targets[e][q].item<int64_t>();
        if (y == -100) continue;
        for (int64_t j = 1; j < q; ++j)
          if (b.roles[e][j].item<int8_t>() == static_cast<int8_t>(Role::Value) && b.tokens[e][j].item<int64_t>() == y) {
            a += pat[e][q][j].item<double>() + pat[e][q][j - 1].item<double>();
            ++na;
            break;
          }
      }
    EXPECT_NEAR(s.gather[i].item<double>(), g / ng, 1e-5) << h.label();
    EXPECT_NEAR(s.aggregate[i].item<double>(), a / na, 1e-5) << h.label();
    EXPECT_GE(s.induction[i].item<double>(), 0.0);
    EXPECT_LE(s.prev_token[i].item<double>(), 1.0);
  }
  // Causal score = the accuracy drop of the zero-ablation sweep.
  Ablator zero(m, AblationKind::Zero);
  auto sweep = head_ablation_sweep(m, b.tokens, Readout::all_labelled(b), zero, s.heads);
  EXPECT_LT(max_abs_diff(s.causal, sweep.base.accuracy - sweep.ablated.accuracy), 1e-6);
  EXPECT_THROW(head_score(s, "gatherr"), std::invalid_argument);
}

TEST(Embeddings, LocalityOfConstructedRows) {
  const int64_t n = 40;
  // Points along a half circle in order: every nearest neighbour is close in index -> 1.0.
  at::Tensor ang = at::arange(n, at::kDouble) * (M_PI / n);
  at::Tensor ordered = at::stack({at::cos(ang), at::sin(ang)}, 1);
  EXPECT_NEAR(locality_score(ordered, 5), 1.0, 1e-12);
  // The same points with the index order reversed are still local; shuffled they are not.
  EXPECT_NEAR(locality_score(ordered.flip(0), 5), 1.0, 1e-12);
  at::Tensor perm = at::randperm(n, at::make_generator<at::CPUGeneratorImpl>(3), at::kLong);
  EXPECT_LT(locality_score(ordered.index_select(0, perm), 5), 0.6);
  // Random high-dimensional rows: about 2k / n (each row's neighbours anywhere).
  at::Tensor rnd = at::randn({200, 64}, at::make_generator<at::CPUGeneratorImpl>(5), at::kDouble);
  EXPECT_NEAR(locality_score(rnd, 5), 2.0 * 5 / 200, 0.04);
  EXPECT_THROW(locality_score(ordered.narrow(0, 0, 1), 5), std::invalid_argument);
}

TEST(Embeddings, PcaRecoversAPlane) {
  // Rows in a 2-D plane of a 16-D space: two components explain everything and keep the distances.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  at::Tensor coords = at::randn({30, 2}, gen, at::kDouble);
  at::Tensor basis = std::get<0>(at::linalg_qr(at::randn({16, 2}, gen, at::kDouble)));  // [16, 2] orthonormal
  at::Tensor rows = at::matmul(coords, basis.t()) + 3.0;
  EmbeddingGeometry g = embedding_geometry(rows, 3, 5);
  EXPECT_NEAR(g.explained.narrow(0, 0, 2).sum().item<double>(), 1.0, 1e-5);
  EXPECT_LT(g.explained[2].item<double>(), 1e-6);
  at::Tensor d_proj = at::cdist(g.projection.narrow(1, 0, 2).to(at::kDouble), g.projection.narrow(1, 0, 2).to(at::kDouble));
  EXPECT_LT(max_abs_diff(d_proj, at::cdist(coords, coords)), 1e-4);
  EXPECT_NEAR(g.cosine[3][3].item<double>(), 1.0, 1e-6);
  EXPECT_LT(max_abs_diff(g.cosine, g.cosine.t()), 1e-6);
}

TEST(LogitLens, LastStageIsTheModelOutput) {
  LanguageModel m(small_config("hybrid", {{"d_intermediate", 40}}), 4);
  auto task = make_task(kMqar);
  Batch b = task->sample(4, 2);
  LogitLens lens = logit_lens(m, b);
  ASSERT_EQ(lens.stages.size(), static_cast<size_t>(m.n_layers() + 1));
  at::NoGradGuard no_grad;
  Readout r = Readout::all_labelled(b);
  ExampleMetrics out = example_metrics(gather_readout(m.forward(b.tokens), r), r);
  EXPECT_NEAR(lens.prob[m.n_layers()].item<double>(), out.prob.mean().item<double>(), 1e-6);
  EXPECT_NEAR(lens.accuracy[m.n_layers()].item<double>(), out.correct.mean().item<double>(), 1e-6);
  EXPECT_EQ(lens.example_prob.size(1), b.tokens.size(1));
  EXPECT_TRUE(std::isnan(lens.example_prob[0][0].item<double>()));  // no target at the first key
}
