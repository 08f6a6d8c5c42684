// Zamba2's shared block (shared_cfg; core/model/shared_block.h): its output at every position against a reference
// written from the definition (docs/spec.md "Shared blocks"), the mixer's input it feeds, the config's keys and
// refusals, and a checkpoint round trip. The run paths (rows, partial runs, sweeps) are covered by the "zamba-like"
// test variant in the preset loops of test_model and test_interventions.
#include <cmath>
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

at::Tensor rms(const at::Tensor& x, const at::Tensor& w, double eps) {
  return x * at::rsqrt(x.pow(2).mean(-1, true) + eps) * w;
}

// The block's output from resid r and embedding e [b, L, d], step by step as the definition says (no rotary).
at::Tensor reference_shared(const SharedBlockImpl& s, const at::Tensor& r, const at::Tensor& e, int64_t H, double eps,
                            double scale) {
  const at::Tensor u = at::cat({r, e}, -1);
  const at::Tensor n1 = rms(u, s.norm->weight(), eps);
  const at::Tensor qkv = at::matmul(n1, s.attn->in_proj->weight.t());
  const int64_t HD = qkv.size(-1) / 3, D = HD / H, b = r.size(0), L = r.size(1);
  auto heads = [&](int64_t i) { return qkv.narrow(-1, i * HD, HD).view({b, L, H, D}).transpose(1, 2); };  // [b, H, L, D]
  at::Tensor scores = at::matmul(heads(0), heads(1).transpose(-1, -2)) * scale;
  scores = scores.masked_fill(at::ones({L, L}, at::kBool).triu(1), -INFINITY);
  const at::Tensor z = at::matmul(at::softmax(scores, -1), heads(2)).transpose(1, 2).reshape({b, L, HD});
  const at::Tensor a = at::matmul(z, s.attn->out_proj->weight.t());
  const at::Tensor h = at::matmul(rms(a, s.norm2->weight(), eps), s.mlp->fc1->weight.t());
  const int64_t I = h.size(-1) / 2;
  const at::Tensor f = at::matmul(h.narrow(-1, 0, I) * at::gelu(h.narrow(-1, I, I)), s.mlp->fc2->weight.t());
  return at::matmul(f, s.proj->weight.t());
}

}  // namespace

TEST(SharedBlock, ItsOutputAndTheMixerInputItFeedsFollowTheDefinition) {
  at::NoGradGuard no_grad;
  ModelConfig c = small_config("zamba-like", {{"n_layer", 4}});
  c.shared.attn.rotary_emb_dim = 0;  // the rotary is tested with the attention mixer
  LanguageModel m(c, 5);
  ASSERT_EQ(c.shared.layers, (std::vector<int64_t>{1, 3}));
  at::Tensor toks = random_tokens(2, 9, 37, 4);
  std::vector<std::string> names = {"hook_embed"};
  for (int64_t l : {1, 3})
    for (const char* h : {"hook_resid_pre", "shared.hook_out", "hook_mixer_in"})
      names.push_back("blocks." + std::to_string(l) + "." + h);
  auto [logits, cache] = m.run_with_cache(toks, HookSelection::of(names));
  for (int64_t l : {1, 3}) {
    const std::string p = "blocks." + std::to_string(l) + ".";
    const BlockImpl& blk = m.block(l);
    ASSERT_TRUE(blk.shared);
    const at::Tensor want = reference_shared(*blk.shared, cache.at(p + "hook_resid_pre"), cache.at("hook_embed"),
                                             c.shared.attn.num_heads, c.norm_epsilon, c.shared.attn.softmax_scale);
    EXPECT_LT(max_abs_diff(cache.at(p + "shared.hook_out"), want), 1e-5) << l;
    EXPECT_GT(want.abs().max().item<double>(), 1e-2) << l;  // not vacuous
    // The mixer reads norm(resid + shared output); the residual itself does not gain it.
    EXPECT_LT(max_abs_diff(cache.at(p + "hook_mixer_in"), rms(cache.at(p + "hook_resid_pre") + want, blk.norm->weight(),
                                                              c.norm_epsilon)),
              1e-5)
        << l;
  }
  EXPECT_FALSE(m.block(0).shared);
  // Its heads are listed after the mixer's, not direct, labelled L1.shared.H*.
  const auto groups = m.head_groups(1);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[1].scope, "shared");
  EXPECT_FALSE(groups[1].direct);
  EXPECT_TRUE(groups[0].direct);
  EXPECT_EQ(groups[1].hook, "blocks.1.shared.attn.hook_z");
}

TEST(SharedBlock, ConfigKeysRoundTripAndNonsenseIsRefusedByName) {
  const ModelConfig c = small_config("zamba-like");
  const ModelConfig back = ModelConfig::from_json(c.to_json());
  EXPECT_EQ(back.to_json(), c.to_json());
  EXPECT_EQ(back.shared.layers, (std::vector<int64_t>{1}));
  EXPECT_EQ(back.shared.hidden, 24);
  EXPECT_EQ(back.shared.attn.head_dim, 16);
  EXPECT_FALSE(small_config("mamba2").to_json().contains("shared_cfg"));  // older readers see what they saw
  auto refused = [&](const nlohmann::json& patch, const std::string& part) {
    nlohmann::json j = c.to_json();
    j["shared_cfg"].merge_patch(patch);
    try {
      ModelConfig::from_json(j);
      ADD_FAILURE() << "accepted " << patch.dump();
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  refused({{"layers", {5}}}, "shared_cfg.layers");
  refused({{"layers", nlohmann::json::array()}}, "shared_cfg.layers");
  refused({{"hidden", 0}}, "shared_cfg.hidden");
  refused({{"attn", {{"head_dim", nullptr}}}}, "shared_cfg.attn");
  refused({{"attn", {{"sliding_window", 4}}}}, "sliding windows");
  refused({{"attn", {{"rotary_emb_dim", 5}}}}, "shared_cfg.attn.rotary_emb_dim");
  refused({{"attn", {{"causal", false}}}}, "shared_cfg.attn.causal");
  refused({{"mlp_activation", "tanh"}}, "shared_cfg.mlp_activation");
  refused({{"adapters", 4}}, "adapters");
}

TEST(SharedBlock, ACheckpointRoundTripsBitForBit) {
  at::NoGradGuard no_grad;
  LanguageModel m(small_config("zamba-like"), 6);
  m.eval();
  const std::string path = mechscope::test::scratch_dir() + "/shared.h5";
  save_checkpoint(path, m, CheckpointExtras{});
  Checkpoint back = load_checkpoint(path);
  std::set<std::string> names;
  for (const auto& p : back.model->named_parameters()) names.insert(p.key());
  for (const char* n : {"backbone.layers.1.shared.norm.weight", "backbone.layers.1.shared.attn.in_proj.weight",
                        "backbone.layers.1.shared.attn.out_proj.weight", "backbone.layers.1.shared.norm2.weight",
                        "backbone.layers.1.shared.mlp.fc1.weight", "backbone.layers.1.shared.mlp.fc2.weight",
                        "backbone.layers.1.shared.proj.weight"})
    EXPECT_TRUE(names.count(n)) << n;
  at::Tensor toks = random_tokens(2, 9, 37, 8);
  EXPECT_EQ(max_abs_diff(m.forward(toks), back.model->forward(toks)), 0.0);
}
