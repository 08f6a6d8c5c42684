// Hook points (spec §2): names, shapes, identity hooks, head ablation equivalences (P4), the propagating
// state hook, and the errors a user sees.
#include <cmath>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "core/model/model.h"
#include "tests/support/test_support.h"

using namespace mechscope;
using mechscope::test::max_abs_diff;
using mechscope::test::random_tokens;
using mechscope::test::small_config;

namespace {
at::Tensor param(LanguageModel& m, const std::string& name) {
  for (auto& [n, t] : m.state_dict())
    if (n == name) return t;
  throw std::runtime_error("no parameter " + name);
}
}  // namespace

TEST(Hooks, IdentityHooksChangeNothing) {
  at::NoGradGuard no_grad;
  for (const auto& preset : mechscope::test::test_presets()) {
    LanguageModel m(small_config(preset, {{"d_intermediate", 40}, {"pos_emb", "learned"}, {"max_seq_len", 32}}), 1);
    at::Tensor toks = random_tokens(2, 11, 37, 3);
    at::Tensor plain = m.forward(toks);
    std::vector<Hook> hooks;
    for (const auto& n : m.hook_names()) {
      if (is_expensive_hook(n)) continue;  // these switch to the reference path; compared in test_model
      hooks.push_back({n, [](const at::Tensor& x, const std::string&) { return x; }});
      hooks.push_back({n, [](const at::Tensor&, const std::string&) { return at::Tensor(); }});
    }
    at::Tensor hooked = m.run_with_hooks(toks, hooks);
    EXPECT_EQ(max_abs_diff(plain, hooked), 0.0) << preset;
    auto [cached, cache] = m.run_with_cache(toks, HookSelection::everything());
    EXPECT_EQ(max_abs_diff(plain, cached), 0.0) << preset;
  }
}

TEST(Hooks, CacheHoldsEveryCheapHookWithSpecShapes) {
  at::NoGradGuard no_grad;
  // hybrid: layer 0 Mamba2 (H 8, P 8, G 1, N 8), layer 1 attention (H 4, D 8); batch 2, 9 tokens.
  LanguageModel m(small_config("hybrid", {{"n_layer", 2}, {"d_intermediate", 40}}), 1);
  auto [logits, cache] = m.run_with_cache(random_tokens(2, 9, 37, 1), HookSelection::everything());
  size_t cheap = 0;
  for (const auto& n : m.hook_names()) cheap += !is_expensive_hook(n);
  EXPECT_EQ(cache.size(), cheap);
  EXPECT_FALSE(cache.count("blocks.0.ssm.hook_state"));
  EXPECT_FALSE(cache.count("blocks.0.ssm.hook_pattern"));
  using S = std::vector<int64_t>;
  EXPECT_EQ(cache.at("hook_embed").sizes().vec(), (S{2, 9, 32}));
  EXPECT_EQ(cache.at("blocks.0.hook_resid_mid").sizes().vec(), (S{2, 9, 32}));
  EXPECT_EQ(cache.at("blocks.0.ssm.hook_x").sizes().vec(), (S{2, 9, 8, 8}));
  EXPECT_EQ(cache.at("blocks.0.ssm.hook_dt").sizes().vec(), (S{2, 9, 8}));
  EXPECT_EQ(cache.at("blocks.0.ssm.hook_B").sizes().vec(), (S{2, 9, 1, 8}));
  EXPECT_EQ(cache.at("blocks.0.ssm.hook_conv_out").sizes().vec(), (S{2, 9, 80}));
  EXPECT_EQ(cache.at("blocks.0.ssm.hook_head_out").sizes().vec(), (S{2, 9, 8, 8}));
  EXPECT_EQ(cache.at("blocks.1.attn.hook_q").sizes().vec(), (S{2, 9, 4, 8}));
  EXPECT_EQ(cache.at("blocks.1.attn.hook_pattern").sizes().vec(), (S{2, 4, 9, 9}));
  EXPECT_EQ(cache.at("blocks.1.attn.hook_z").sizes().vec(), (S{2, 9, 4, 8}));
  EXPECT_EQ(cache.at("ln_final.hook_normalized").sizes().vec(), (S{2, 9, 32}));
  // Pattern rows sum to 1 and are causal; scores are -inf above the diagonal.
  at::Tensor pat = cache.at("blocks.1.attn.hook_pattern");
  EXPECT_LT(max_abs_diff(pat.sum(-1), at::ones({2, 4, 9})), 1e-5);
  EXPECT_EQ(pat.triu(1).abs().sum().item<double>(), 0.0);
  EXPECT_TRUE(std::isinf(cache.at("blocks.1.attn.hook_attn_scores")[0][0][0][1].item<double>()));
  // Residual bookkeeping: resid_post = resid_mid + mlp_out = resid_pre + mixer_out + mlp_out.
  EXPECT_LT(max_abs_diff(cache.at("blocks.0.hook_resid_post"),
                         cache.at("blocks.0.hook_resid_pre") + cache.at("blocks.0.hook_mixer_out") + cache.at("blocks.0.hook_mlp_out")),
            1e-5);
  EXPECT_EQ(max_abs_diff(cache.at("blocks.0.hook_resid_post"), cache.at("blocks.1.hook_resid_pre")), 0.0);
  // Mamba1: heads are channels (P = 1), G = 1.
  LanguageModel m1(small_config("mamba1", {{"n_layer", 1}}), 1);
  auto [l1, c1] = m1.run_with_cache(random_tokens(1, 5, 37, 1), HookSelection::of({"blocks.0.ssm.*"}));
  EXPECT_EQ(c1.at("blocks.0.ssm.hook_x").sizes().vec(), (S{1, 5, 64, 1}));
  EXPECT_EQ(c1.at("blocks.0.ssm.hook_C").sizes().vec(), (S{1, 5, 1, 4}));
  EXPECT_EQ(c1.at("blocks.0.ssm.hook_state").sizes().vec(), (S{1, 5, 64, 1, 4}));
  EXPECT_EQ(c1.at("blocks.0.ssm.hook_pattern").sizes().vec(), (S{1, 64, 5, 5}));
}

TEST(Hooks, UnknownNamesListCloseMatches) {
  LanguageModel m(small_config("transformer"), 1);
  at::Tensor toks = random_tokens(1, 4, 37, 1);
  try {
    m.run_with_cache(toks, HookSelection::of({"blocks.0.attn.hook_zz"}));
    FAIL() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("blocks.0.attn.hook_z"), std::string::npos) << e.what();
  }
  try {
    m.run_with_hooks(toks, {{"blocks.7.hook_resid_pre", [](const at::Tensor& x, const std::string&) { return x; }}});
    FAIL() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("unknown hook name"), std::string::npos) << e.what();
  }
  EXPECT_THROW(m.run_with_cache(toks, HookSelection::of({"blocks.*.ssm.hook_x"})), std::invalid_argument);
}

TEST(Hooks, ReplacementOfWrongShapeIsAnError) {
  LanguageModel m(small_config("mamba2"), 1);
  try {
    m.run_with_hooks(random_tokens(1, 4, 37, 1),
                     {{"blocks.0.ssm.hook_y", [](const at::Tensor& x, const std::string&) { return x.sum(-1); }}});
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("blocks.0.ssm.hook_y"), std::string::npos);
  }
}

// Zeroing head h on the hook equals zeroing its columns of out_proj (how P4 ablates).
static void expect_head_ablation_equivalence(const std::string& preset, const std::string& hook, const std::string& out_proj,
                                             int64_t head, int64_t col0, int64_t ncols) {
  at::NoGradGuard no_grad;
  LanguageModel m(small_config(preset), 1);
  at::Tensor toks = random_tokens(2, 10, 37, 4);
  at::Tensor hooked = m.run_with_hooks(toks, {{hook, [head](const at::Tensor& x, const std::string&) {
                                                 at::Tensor y = x.clone();
                                                 y.select(2, head).zero_();
                                                 return y;
                                               }}});
  at::Tensor base = m.forward(toks);
  param(m, out_proj).narrow(1, col0, ncols).zero_();
  at::Tensor weights_zeroed = m.forward(toks);
  EXPECT_GT(max_abs_diff(hooked, base), 1e-4) << hook << ": the ablation should matter";
  EXPECT_TRUE(at::allclose(hooked, weights_zeroed, 1e-5, 1e-5)) << hook << " diff " << max_abs_diff(hooked, weights_zeroed);
}

TEST(Hooks, ZeroingAnAttentionHeadEqualsZeroingItsOutProjColumns) {
  expect_head_ablation_equivalence("transformer", "blocks.1.attn.hook_z", "backbone.layers.1.mixer.out_proj.weight", 2, 16, 8);
}

TEST(Hooks, ZeroingAMamba1ChannelEqualsZeroingItsOutProjColumn) {
  expect_head_ablation_equivalence("mamba1", "blocks.0.ssm.hook_head_out", "backbone.layers.0.mixer.out_proj.weight", 5, 5, 1);
}

TEST(Hooks, ZeroingAMamba2HeadEqualsZeroingItsOutProjColumnsDespiteTheGatedNorm) {
  expect_head_ablation_equivalence("mamba2", "blocks.1.ssm.hook_head_out", "backbone.layers.1.mixer.out_proj.weight", 3, 24, 8);
}

TEST(Hooks, ZeroingAMamba2HeadWithAnMlpBranchSkipsTheMlpColumns) {
  // d_ssm 32 < d_inner 64: out_proj's input is [silu(z0) x0 (32), y' (32)], so head 1 is columns 32 + 8.
  at::NoGradGuard no_grad;
  LanguageModel m(small_config("mamba2", {{"ssm_cfg", {{"d_ssm", 32}}}}), 1);
  at::Tensor toks = random_tokens(1, 6, 37, 4);
  at::Tensor hooked = m.run_with_hooks(toks, {{"blocks.0.ssm.hook_head_out", [](const at::Tensor& x, const std::string&) {
                                                 at::Tensor y = x.clone();
                                                 y.select(2, 1).zero_();
                                                 return y;
                                               }}});
  param(m, "backbone.layers.0.mixer.out_proj.weight").narrow(1, 40, 8).zero_();
  EXPECT_TRUE(at::allclose(hooked, m.forward(toks), 1e-5, 1e-5));
}

// Replacing hook_state at position t: outputs before t unchanged; from t on they follow the recurrence
// restarted from the replaced state (computed here by hand from the cached x, dt, B, C).
TEST(Hooks, Mamba2StateReplacementCarriesForward) {
  at::NoGradGuard no_grad;
  LanguageModel m(small_config("mamba2", {{"n_layer", 1}}), 1);
  at::Tensor toks = random_tokens(1, 12, 37, 6);
  const int64_t t0 = 5, head = 2;
  HookSelection sel = HookSelection::of({"blocks.0.ssm.*"});
  auto [l0, c0] = m.run_with_cache(toks, sel);
  at::Tensor h_new = at::randn({8, 8});  // [P, N]
  auto [l1, c1] = m.run(toks, {{"blocks.0.ssm.hook_state", [&](const at::Tensor& s, const std::string&) {
                                  at::Tensor r = s.clone();
                                  r[0][t0][head].copy_(h_new);
                                  return r;
                                }}},
                        sel);
  at::Tensor y0 = c0.at("blocks.0.ssm.hook_y"), y1 = c1.at("blocks.0.ssm.hook_y");
  EXPECT_EQ(max_abs_diff(y0.narrow(1, 0, t0), y1.narrow(1, 0, t0)), 0.0);
  at::Tensor x = c0.at("blocks.0.ssm.hook_x")[0], dt = c0.at("blocks.0.ssm.hook_dt")[0];
  at::Tensor B = c0.at("blocks.0.ssm.hook_B")[0], C = c0.at("blocks.0.ssm.hook_C")[0];
  const double A = -std::exp(param(m, "backbone.layers.0.mixer.A_log")[head].item<double>());
  const double D = param(m, "backbone.layers.0.mixer.D")[head].item<double>();
  at::Tensor h = h_new.clone();
  for (int64_t t = t0; t < 12; ++t) {
    if (t > t0) {
      const double d = dt[t][head].item<double>();
      h = std::exp(d * A) * h + d * at::outer(x[t][head], B[t][0]);
    }
    at::Tensor want = at::matmul(h, C[t][0]) + D * x[t][head];
    EXPECT_LT(max_abs_diff(y1[0][t][head], want), 1e-4) << "t=" << t;
  }
  // Other heads are untouched; the cached states show the carried-forward values.
  EXPECT_LT(max_abs_diff(y1.select(2, 0), y0.select(2, 0)), 1e-6);
  EXPECT_LT(max_abs_diff(c1.at("blocks.0.ssm.hook_state")[0][t0 + 1][head],
                         std::exp(dt[t0 + 1][head].item<double>() * A) * h_new +
                             dt[t0 + 1][head].item<double>() * at::outer(x[t0 + 1][head], B[t0 + 1][0])),
            1e-4);
  EXPECT_GT(max_abs_diff(l0, l1), 1e-4);
}

TEST(Hooks, Mamba1StateZeroingRestartsTheScan) {
  at::NoGradGuard no_grad;
  LanguageModel m(small_config("mamba1", {{"n_layer", 1}}), 1);
  at::Tensor toks = random_tokens(1, 9, 37, 2);
  const int64_t t0 = 4;
  HookSelection sel = HookSelection::of({"blocks.0.ssm.*"});
  auto [l1, c1] = m.run(toks, {{"blocks.0.ssm.hook_state", [&](const at::Tensor& s, const std::string&) {
                                  at::Tensor r = s.clone();
                                  r.select(1, t0).zero_();
                                  return r;
                                }}},
                        sel);
  // Zero state at t0 equals running the layer on the suffix from t0+1 with a fresh state; check per channel:
  at::Tensor x = c1.at("blocks.0.ssm.hook_x")[0].squeeze(-1), dt = c1.at("blocks.0.ssm.hook_dt")[0];
  at::Tensor B = c1.at("blocks.0.ssm.hook_B")[0].squeeze(1), C = c1.at("blocks.0.ssm.hook_C")[0].squeeze(1);
  at::Tensor A = -at::exp(param(m, "backbone.layers.0.mixer.A_log")), D = param(m, "backbone.layers.0.mixer.D");
  at::Tensor h = at::zeros({64, 4});
  at::Tensor y = c1.at("blocks.0.ssm.hook_y")[0].squeeze(-1);
  EXPECT_LT(max_abs_diff(y[t0], D * x[t0]), 1e-5);
  for (int64_t t = t0 + 1; t < 9; ++t) {
    h = at::exp(dt[t].unsqueeze(-1) * A) * h + (dt[t] * x[t]).unsqueeze(-1) * B[t];
    EXPECT_LT(max_abs_diff(y[t], at::matmul(h, C[t]) + D * x[t]), 1e-4) << t;
  }
}
