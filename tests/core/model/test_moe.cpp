// The mixture of experts (core/model/moe.h) against a per-position reference written from its definition, the
// router hook, the config's keys and refusals, and a checkpoint round trip; Jamba's weighted dt/B/C norms.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "core/io/checkpoint.h"
#include "core/model/model.h"
#include "tests/support/test_files.h"
#include "tests/support/test_support.h"

using namespace mechscope;
using mechscope::test::max_abs_diff;
using mechscope::test::random_tokens;
using mechscope::test::small_config;

namespace {

// One position x [d] through the mixture, as the definition says: float32 softmax of the router's logits, the
// top_k largest by a full sort, renormalised when asked, each picked expert's output times its probability, summed
// in expert order, plus the gated shared expert.
at::Tensor moe_by_hand(MoEImpl& moe, const MoEConfig& c, const at::Tensor& x) {
  at::Tensor logits = at::matmul(moe.router->weight, x);  // [E]
  std::vector<double> p(static_cast<size_t>(c.num_experts));
  double z = 0, top = logits.max().item<double>();
  for (int64_t e = 0; e < c.num_experts; ++e) z += std::exp(logits[e].item<double>() - top);
  for (int64_t e = 0; e < c.num_experts; ++e) p[e] = std::exp(logits[e].item<double>() - top) / z;
  std::vector<int64_t> order(p.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return p[a] > p[b]; });
  order.resize(static_cast<size_t>(c.top_k));
  double sum = 0;
  for (int64_t e : order) sum += p[e];
  std::sort(order.begin(), order.end());
  at::Tensor y = at::zeros_like(x);
  for (int64_t e : order) {
    const double w = c.normalize_top_k ? p[e] / sum : p[e];
    y = y + moe.expert(e).forward(x.unsqueeze(0)).squeeze(0) * w;
  }
  if (moe.shared) {
    at::Tensor s = moe.shared->forward(x.unsqueeze(0)).squeeze(0);
    if (moe.shared_gate) s = s / (1.0 + at::exp(-at::matmul(moe.shared_gate->weight, x)));
    y = y + s;
  }
  return y;
}

}  // namespace

TEST(MoE, EveryPositionIsTheRoutedSumOfItsExperts) {
  at::NoGradGuard no_grad;
  for (const char* variant : {"mixtral-like", "jamba-like"}) {
    LanguageModel m(small_config(variant), 4);
    const ModelConfig& c = m.config();
    BlockImpl& block = m.block(1);
    ASSERT_TRUE(block.moe) << variant;
    ASSERT_FALSE(block.mlp) << variant;
    at::Tensor x = at::randn({3, 7, c.d_model}, at::TensorOptions().dtype(at::kFloat)) * 2.0;
    at::Tensor y = block.moe->forward(x);
    ASSERT_EQ(y.sizes(), x.sizes());
    double worst = 0;
    std::set<int64_t> used;
    for (int64_t b = 0; b < 3; ++b)
      for (int64_t t = 0; t < 7; ++t) worst = std::max(worst, max_abs_diff(y[b][t], moe_by_hand(*block.moe, c.moe, x[b][t])));
    EXPECT_LT(worst, 1e-5) << variant;
    // The positions do not all pick the same experts (else the routing would go untested).
    auto [picked, weights] = block.moe->route(block.moe->router->forward(x), at::kFloat);
    EXPECT_GT(std::get<0>(at::_unique(picked.reshape(-1))).numel(), c.moe.top_k) << variant;
    if (c.moe.normalize_top_k) EXPECT_LT((weights.sum(-1) - 1).abs().max().item<double>(), 1e-6);
    else EXPECT_LT(weights.sum(-1).max().item<double>(), 1.0);
  }
}

TEST(MoE, DenseLayersStayDenseWhereTheConfigSaysSo) {
  LanguageModel m(small_config("jamba-like"), 1);  // experts at layers 1 and 3, dense MLPs at 0 and 2
  for (int64_t l = 0; l < 4; ++l) {
    EXPECT_EQ(static_cast<bool>(m.block(l).moe), l % 2 == 1) << l;
    EXPECT_EQ(static_cast<bool>(m.block(l).mlp), l % 2 == 0) << l;
  }
  const auto names = m.hook_names();
  EXPECT_TRUE(std::count(names.begin(), names.end(), "blocks.1.hook_mlp_router"));
  EXPECT_FALSE(std::count(names.begin(), names.end(), "blocks.0.hook_mlp_router"));
  EXPECT_EQ(hook_axes("blocks.1.hook_mlp_router"), (std::vector<std::string>{"batch", "pos", "expert"}));
}

TEST(MoE, TheRouterHookPicksTheExperts) {
  at::NoGradGuard no_grad;
  LanguageModel m(small_config("mixtral-like"), 2);
  m.eval();
  at::Tensor toks = random_tokens(2, 6, 37, 5);
  auto [plain, cache] = m.run_with_cache(toks, HookSelection::of({"blocks.1.hook_mlp_in", "blocks.1.hook_mlp_out",
                                                                  "blocks.1.hook_mlp_router"}));
  EXPECT_EQ(cache.at("blocks.1.hook_mlp_router").sizes(), (at::IntArrayRef{2, 6, 4}));
  // Logits that make experts 1 and 3 equally likely and the rest impossible: mlp_out = (e1 + e3) / 2 everywhere.
  std::vector<Hook> hooks = {{"blocks.1.hook_mlp_router", [](const at::Tensor& l, const std::string&) {
                                at::Tensor forced = at::full_like(l, -1e4);
                                forced.select(-1, 1).fill_(3.0);
                                forced.select(-1, 3).fill_(3.0);
                                return forced;
                              }}};
  ActivationCache seen;
  hooks.push_back({"blocks.1.hook_mlp_in", [&](const at::Tensor& v, const std::string&) {
                     seen["in"] = v.clone();
                     return at::Tensor();
                   }});
  hooks.push_back({"blocks.1.hook_mlp_out", [&](const at::Tensor& v, const std::string&) {
                     seen["out"] = v.clone();
                     return at::Tensor();
                   }});
  at::Tensor forced = m.run_with_hooks(toks, hooks);
  MoEImpl& moe = *m.block(1).moe;
  at::Tensor want = (moe.expert(1).forward(seen["in"]) + moe.expert(3).forward(seen["in"])) * 0.5;
  EXPECT_LT(max_abs_diff(seen["out"], want), 1e-6);
  EXPECT_GT(max_abs_diff(forced, plain), 1e-3);  // the routing reaches the logits
}

TEST(MoE, ConfigKeysRoundTripAndNonsenseIsRefusedByName) {
  const ModelConfig c = small_config("jamba-like");
  const ModelConfig back = ModelConfig::from_json(c.to_json());
  EXPECT_EQ(back.to_json(), c.to_json());
  EXPECT_EQ(back.moe.num_experts, 3);
  EXPECT_EQ(back.moe.layers, (std::vector<int64_t>{1, 3}));
  EXPECT_TRUE(back.moe.shared_gate);
  EXPECT_TRUE(back.mamba1.bcdt_norm_weights);
  EXPECT_NE(c.mlp_description().find("mixture of 3 experts"), std::string::npos) << c.mlp_description();
  // Without a mixture nothing is written: older files and readers see what they saw.
  EXPECT_FALSE(small_config("transformer").to_json().contains("moe_cfg"));
  auto refused = [&](nlohmann::json moe, const std::string& part, nlohmann::json top = nlohmann::json::object()) {
    nlohmann::json j = c.to_json();
    j["moe_cfg"] = moe;
    j.merge_patch(top);
    try {
      ModelConfig::from_json(j);
      ADD_FAILURE() << "accepted " << moe.dump();
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  const nlohmann::json ok = {{"num_experts", 4}, {"top_k", 2}, {"hidden", 8}};
  auto with = [&](nlohmann::json extra) {
    nlohmann::json j = ok;
    j.update(extra);
    return j;
  };
  refused({{"num_experts", 4}, {"top_k", 5}, {"hidden", 8}}, "moe_cfg.top_k");
  refused({{"num_experts", 0}, {"top_k", 1}, {"hidden", 8}}, "moe_cfg.num_experts");
  refused({{"num_experts", 4}, {"top_k", 2}}, "'hidden'");
  refused(with({{"routing", "sigmoid"}}), "routing");
  refused(with({{"layers", {7}}}), "moe_cfg.layers");
  refused(with({{"shared_gate", true}}), "moe_cfg.shared_gate");
  refused(with({{"layers", {1}}}), "d_intermediate is 0", {{"d_intermediate", 0}});
  refused(ok, "mlp_type", {{"mlp_type", "plain"}});
}

TEST(MoE, ACheckpointRoundTripsBitForBit) {
  at::NoGradGuard no_grad;
  LanguageModel m(small_config("jamba-like"), 6);
  m.eval();
  {  // the weighted dt/B/C norms away from their initial ones, so that a lost weight would show
    auto& mixer = m.block(0).mixer();
    for (auto& p : mixer.named_parameters())
      if (p.key().find("_norm_weight") != std::string::npos) p.value().uniform_(0.5, 1.5);
  }
  const std::string path = mechscope::test::scratch_dir() + "/moe.h5";
  save_checkpoint(path, m, CheckpointExtras{});
  Checkpoint back = load_checkpoint(path);
  std::set<std::string> names;
  for (const auto& p : back.model->named_parameters()) names.insert(p.key());
  for (const char* n : {"backbone.layers.1.mlp.router.weight", "backbone.layers.1.mlp.experts.2.fc2.weight",
                        "backbone.layers.1.mlp.shared.fc1.weight", "backbone.layers.1.mlp.shared_gate.weight",
                        "backbone.layers.0.mlp.fc1.weight", "backbone.layers.0.mixer.B_norm_weight"})
    EXPECT_TRUE(names.count(n)) << n;
  at::Tensor toks = random_tokens(2, 9, 37, 8);
  EXPECT_EQ(max_abs_diff(m.forward(toks), back.model->forward(toks)), 0.0);
}

TEST(MoE, JambasNormWeightsScaleTheNormalisedBAndC) {
  at::NoGradGuard no_grad;
  LanguageModel m(small_config("jamba-like"), 3);
  at::Tensor toks = random_tokens(1, 8, 37, 2);
  auto [l1, before] = m.run_with_cache(toks, HookSelection::of({"blocks.0.ssm.hook_B", "blocks.0.ssm.hook_C"}));
  for (auto& p : m.block(0).mixer().named_parameters()) {
    if (p.key() == "B_norm_weight") p.value().fill_(2.0);
    if (p.key() == "C_norm_weight") p.value().fill_(-0.5);
  }
  auto [l2, after] = m.run_with_cache(toks, HookSelection::of({"blocks.0.ssm.hook_B", "blocks.0.ssm.hook_C"}));
  EXPECT_EQ(max_abs_diff(after.at("blocks.0.ssm.hook_B"), before.at("blocks.0.ssm.hook_B") * 2.0), 0.0);
  EXPECT_EQ(max_abs_diff(after.at("blocks.0.ssm.hook_C"), before.at("blocks.0.ssm.hook_C") * -0.5), 0.0);
  // Weights without the norms they scale are refused by name.
  nlohmann::json j = m.config().to_json();
  j["ssm_cfg"].erase("bcdt_rms_eps");
  EXPECT_NE(mechscope::test::error_of([&] { ModelConfig::from_json(j); }).find("ssm_cfg.bcdt_norm_weights"),
            std::string::npos);
}
