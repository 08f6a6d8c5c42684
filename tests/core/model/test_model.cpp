// The language model: reference state-dict names and shapes, initialisation, causality for every mixer,
// the fast SSM paths against the literal recurrence inside the model, batch independence, bad tokens.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <functional>
#include <map>
#include <mutex>

#include "core/engine/memory.h"
#include "core/model/model.h"
#include "kernels/binding/scan_ops.h"
#include "tests/support/test_files.h"
#include "tests/support/test_support.h"

using namespace mechscope;
using mechscope::test::max_abs_diff;
using mechscope::test::random_tokens;
using mechscope::test::small_config;
using nlohmann::json;

static std::map<std::string, std::vector<int64_t>> shapes_of(const LanguageModel& m) {
  std::map<std::string, std::vector<int64_t>> out;
  for (auto& [n, t] : m.state_dict()) out[n] = t.sizes().vec();
  return out;
}

TEST(Model, Mamba2StateDictIsTheReferences) {
  // d_model 32, expand 2 -> d_inner 64 = d_ssm, headdim 8 -> 8 heads, G 1, N 8, d_conv 4, vocab 37 -> 40 rows.
  // in_proj rows = 2*64 + 2*1*8 + 8 = 152; conv channels = 64 + 16 = 80.
  LanguageModel m(small_config("mamba2", {{"n_layer", 1}}));
  std::map<std::string, std::vector<int64_t>> want = {
      {"backbone.embedding.weight", {40, 32}},
      {"backbone.layers.0.norm.weight", {32}},
      {"backbone.layers.0.mixer.in_proj.weight", {152, 32}},
      {"backbone.layers.0.mixer.conv1d.weight", {80, 1, 4}},
      {"backbone.layers.0.mixer.conv1d.bias", {80}},
      {"backbone.layers.0.mixer.dt_bias", {8}},
      {"backbone.layers.0.mixer.A_log", {8}},
      {"backbone.layers.0.mixer.D", {8}},
      {"backbone.layers.0.mixer.norm.weight", {64}},
      {"backbone.layers.0.mixer.out_proj.weight", {32, 64}},
      {"backbone.norm_f.weight", {32}},
  };
  EXPECT_EQ(shapes_of(m), want);
}

TEST(Model, Mamba1StateDictIsTheReferences) {
  // d_inner 64, N 4, dt_rank ceil(32/16) = 2.
  LanguageModel m(small_config("mamba1", {{"n_layer", 1}, {"tie_embeddings", false}}));
  std::map<std::string, std::vector<int64_t>> want = {
      {"backbone.embedding.weight", {40, 32}},
      {"backbone.layers.0.norm.weight", {32}},
      {"backbone.layers.0.mixer.in_proj.weight", {128, 32}},
      {"backbone.layers.0.mixer.conv1d.weight", {64, 1, 4}},
      {"backbone.layers.0.mixer.conv1d.bias", {64}},
      {"backbone.layers.0.mixer.x_proj.weight", {10, 64}},
      {"backbone.layers.0.mixer.dt_proj.weight", {64, 2}},
      {"backbone.layers.0.mixer.dt_proj.bias", {64}},
      {"backbone.layers.0.mixer.A_log", {64, 4}},
      {"backbone.layers.0.mixer.D", {64}},
      {"backbone.layers.0.mixer.out_proj.weight", {32, 64}},
      {"backbone.norm_f.weight", {32}},
      {"lm_head.weight", {40, 32}},
  };
  EXPECT_EQ(shapes_of(m), want);
}

TEST(Model, TransformerAndParallelStateDictsAreTheReferences) {
  // 4 heads of 8, GQA with 2 kv heads: in_proj rows (4 + 2*2) * 8 = 64; MLP hidden 128 (rounded up).
  LanguageModel t(small_config("transformer", {{"n_layer", 1}, {"attn_cfg", {{"num_heads_kv", 2}}}, {"d_intermediate", 50},
                                              {"rms_norm", false}}));
  std::map<std::string, std::vector<int64_t>> want = {
      {"backbone.embedding.weight", {40, 32}},
      {"backbone.layers.0.norm.weight", {32}},
      {"backbone.layers.0.norm.bias", {32}},
      {"backbone.layers.0.mixer.in_proj.weight", {64, 32}},
      {"backbone.layers.0.mixer.in_proj.bias", {64}},
      {"backbone.layers.0.mixer.out_proj.weight", {32, 32}},
      {"backbone.layers.0.mixer.out_proj.bias", {32}},
      {"backbone.layers.0.norm2.weight", {32}},
      {"backbone.layers.0.norm2.bias", {32}},
      {"backbone.layers.0.mlp.fc1.weight", {256, 32}},
      {"backbone.layers.0.mlp.fc2.weight", {32, 128}},
      {"backbone.norm_f.weight", {32}},
      {"backbone.norm_f.bias", {32}},
  };
  EXPECT_EQ(shapes_of(t), want);
  LanguageModel p(small_config("parallel-hybrid", {{"n_layer", 1}, {"pos_emb", "learned"}, {"max_seq_len", 16}}));
  auto s = shapes_of(p);
  EXPECT_EQ(s.at("backbone.layers.0.mixer.beta"), (std::vector<int64_t>{1}));
  EXPECT_EQ(s.at("backbone.layers.0.mixer.ssm.in_proj.weight"), (std::vector<int64_t>{152, 32}));
  EXPECT_EQ(s.at("backbone.layers.0.mixer.attn.in_proj.weight"), (std::vector<int64_t>{96, 32}));
  EXPECT_EQ(s.at("backbone.pos_embedding.weight"), (std::vector<int64_t>{16, 32}));
  EXPECT_EQ(p.state_dict().size(), 17u);  // emb, pos, norm, 8 ssm, 4 attn, beta, norm_f
}

TEST(Model, InitialisationFollowsTheReference) {
  LanguageModel m1(small_config("mamba1"), 3);
  auto sd = m1.state_dict();
  std::map<std::string, at::Tensor> p(sd.begin(), sd.end());
  // S4D-real A: A_log[d, n] = log(n + 1); D = 1; softplus(dt bias) in [dt_min, dt_max] = [0.001, 0.1].
  at::Tensor a_log = p.at("backbone.layers.0.mixer.A_log");
  EXPECT_LT(max_abs_diff(a_log[5], at::log(at::arange(1, 5, at::kFloat))), 1e-7);
  EXPECT_EQ(max_abs_diff(p.at("backbone.layers.1.mixer.D"), at::ones({64})), 0.0);
  at::Tensor dt = at::softplus(p.at("backbone.layers.0.mixer.dt_proj.bias"));
  EXPECT_GE(dt.min().item<double>(), 0.001 - 1e-6);
  EXPECT_LE(dt.max().item<double>(), 0.1 + 1e-6);
  LanguageModel m2(small_config("mamba2"), 3);
  auto sd2 = m2.state_dict();
  std::map<std::string, at::Tensor> q(sd2.begin(), sd2.end());
  at::Tensor A = at::exp(q.at("backbone.layers.0.mixer.A_log"));  // uniform in A_init_range [1, 16]
  EXPECT_GE(A.min().item<double>(), 1.0 - 1e-5);
  EXPECT_LE(A.max().item<double>(), 16.0 + 1e-5);
  // Same seed, same weights; different seed, different weights.
  LanguageModel again(small_config("mamba2"), 3), other(small_config("mamba2"), 4);
  EXPECT_EQ(max_abs_diff(again.state_dict()[0].second, sd2[0].second), 0.0);  // the embedding
  EXPECT_GT(max_abs_diff(other.state_dict()[0].second, sd2[0].second), 0.0);
}

TEST(Model, AModelBuiltUninitialisedTakesWeightsAndRunsAsTheOriginal) {
  // SkipParameterInit (the loaders' model, every parameter replaced next): the same parameter names and shapes, the
  // modules' options at their real sizes, the weights replaced in place, and then the same logits as the original.
  at::NoGradGuard no_grad;
  for (const char* preset : {"transformer", "mamba1", "mamba2", "parallel-hybrid"}) {
    SCOPED_TRACE(preset);
    ModelConfig cfg = small_config(preset, {{"tie_embeddings", false}});
    LanguageModel original(cfg, 5);
    std::shared_ptr<LanguageModel> built;
    {
      SkipParameterInit uninitialised;
      EXPECT_TRUE(SkipParameterInit::active());
      built = std::make_shared<LanguageModel>(cfg, 0, false);
    }
    EXPECT_FALSE(SkipParameterInit::active());
    ASSERT_EQ(shapes_of(*built), shapes_of(original));
    EXPECT_EQ(built->lm_head->options.in_features(), cfg.d_model);
    EXPECT_EQ(built->lm_head->options.out_features(), cfg.padded_vocab_size());
    EXPECT_EQ(built->backbone->embedding->options.num_embeddings(), cfg.padded_vocab_size());
    EXPECT_EQ(built->backbone->embedding->options.embedding_dim(), cfg.d_model);
    auto from = original.state_dict();
    std::map<std::string, at::Tensor> src(from.begin(), from.end());
    for (auto& [name, p] : built->state_dict()) p.copy_(src.at(name));
    at::Tensor tokens = random_tokens(2, 9, cfg.vocab_size, 1);
    EXPECT_EQ(max_abs_diff(built->forward(tokens), original.forward(tokens)), 0.0);
  }
  // Outside the scope, construction draws as before: the same seed gives the same weights.
  LanguageModel a(small_config("transformer"), 7), b(small_config("transformer"), 7);
  EXPECT_EQ(max_abs_diff(a.state_dict()[1].second, b.state_dict()[1].second), 0.0);
}

TEST(Model, EveryMixerIsCausal) {
  at::NoGradGuard no_grad;
  for (const auto& preset : mechscope::test::test_presets()) {
    LanguageModel m(small_config(preset, {{"d_intermediate", 40}}), 1);
    at::Tensor a = random_tokens(2, 21, 37, 5);
    for (int64_t k : {0, 7, 8, 20}) {
      at::Tensor b = a.clone();
      b.select(1, k).fill_((a[0][k].item<int64_t>() + 1) % 37);
      at::Tensor la = m.forward(a), lb = m.forward(b);
      if (k > 0) EXPECT_LT(max_abs_diff(la.narrow(1, 0, k), lb.narrow(1, 0, k)), 1e-6) << preset << " k=" << k;
      EXPECT_GT(max_abs_diff(la.narrow(1, k, 1), lb.narrow(1, k, 1)), 1e-6) << preset << " k=" << k;
    }
  }
}

TEST(Model, FastSsmPathEqualsLiteralRecurrenceInsideTheModel) {
  // Asking for hook_state switches a layer to the step-by-step recurrence; the logits must not change.
  at::NoGradGuard no_grad;
  for (const auto& preset : {"mamba1", "mamba2", "hybrid"}) {
    LanguageModel m(small_config(preset), 2);
    for (int64_t L : {1, 7, 8, 9, 17, 33}) {
      at::Tensor toks = random_tokens(3, L, 37, L);
      at::Tensor fast = m.forward(toks);
      auto [slow, cache] = m.run_with_cache(toks, HookSelection::of({"blocks.*.ssm.hook_state"}));
      EXPECT_FALSE(cache.empty());
      EXPECT_TRUE(at::allclose(fast, slow, 1e-5, 1e-5)) << preset << " L=" << L << " diff " << max_abs_diff(fast, slow);
    }
  }
}

TEST(Model, BatchRowsAreIndependent) {
  at::NoGradGuard no_grad;
  for (const auto& preset : mechscope::test::test_presets()) {
    LanguageModel m(small_config(preset), 1);
    at::Tensor toks = random_tokens(3, 12, 37, 8);
    at::Tensor all = m.forward(toks);
    for (int64_t i = 0; i < 3; ++i)
      EXPECT_TRUE(at::allclose(all[i], m.forward(toks.narrow(0, i, 1))[0], 1e-5, 1e-5)) << preset;
  }
}

TEST(Model, ExamplePartsCacheAndComputeWhatTheWholeBatchDoes) {
  // run_example_parts on two threads: the outputs and a cache-only context's cache equal the whole batch's (each
  // part is the same rows; only the batch shape of a product differs), merged in example order. A context with a
  // hook function, or a gradient, gets the whole batch in one call.
  const int before = at::get_num_threads();
  at::set_num_threads(2);
  for (const auto& preset : mechscope::test::test_presets()) {
    LanguageModel m(small_config(preset), 1);
    at::Tensor toks = random_tokens(5, 12, 37, 8);
    std::set<std::string> names(m.hook_names().begin(), m.hook_names().end());
    for (auto it = names.begin(); it != names.end();) it = is_expensive_hook(*it) ? names.erase(it) : std::next(it);
    std::vector<int64_t> sizes;
    std::mutex sizes_lock;  // the parts run on two threads: pushing to one vector unguarded lost a size now and then
    auto run = [&](int64_t b, int64_t e, HookContext* c) {
      {
        std::lock_guard<std::mutex> guard(sizes_lock);
        sizes.push_back(e - b);
      }
      at::Tensor emb;  // what a shared block reads beside the residual
      at::Tensor resid = m.embed(toks.narrow(0, b, e - b), c, &emb);
      return m.unembed(m.forward_blocks(0, m.n_layers(), resid, c, emb), c);
    };
    at::NoGradGuard no_grad;
    HookContext whole, parts;
    whole.cache(names);
    parts.cache(names);
    at::Tensor a = run(0, 5, &whole);
    sizes.clear();
    at::Tensor b = run_example_parts(5, toks.device(), &parts, run);
    EXPECT_EQ(sizes.size(), 2u) << preset;
    EXPECT_LT(max_abs_diff(a, b), 1e-5) << preset;
    ASSERT_EQ(parts.cached().size(), whole.cached().size()) << preset;
    for (const auto& [name, t] : whole.cached()) {
      ASSERT_TRUE(parts.cached().count(name)) << preset << " " << name;
      ASSERT_TRUE(parts.cached().at(name).sizes().equals(t.sizes())) << preset << " " << name;
      const at::Tensor& got = parts.cached().at(name);  // attention scores hold -inf at masked places
      EXPECT_TRUE(at::isinf(got).equal(at::isinf(t))) << preset << " " << name;
      EXPECT_LT(max_abs_diff(at::nan_to_num(got, 0.0, 0.0, 0.0), at::nan_to_num(t, 0.0, 0.0, 0.0)), 1e-5) << preset << " " << name;
    }
    HookContext hooked;
    hooked.add_hook(m.hook_names().front(), [](const at::Tensor& v, const std::string&) { return v; });
    sizes.clear();
    run_example_parts(5, toks.device(), &hooked, run);
    EXPECT_EQ(sizes, std::vector<int64_t>{5}) << preset << ": a hook function must see the whole batch";
    {
      at::AutoGradMode grad(true);
      sizes.clear();
      run_example_parts(5, toks.device(), nullptr, run);
      EXPECT_EQ(sizes, std::vector<int64_t>{5}) << preset << ": with a gradient";
    }
  }
  at::set_num_threads(before);
}

TEST(Model, Bfloat16RunsCloseToFloat32) {
  at::NoGradGuard no_grad;
  LanguageModel m(small_config("hybrid"), 1);
  at::Tensor toks = random_tokens(1, 10, 37, 1);
  at::Tensor ref = m.forward(toks);
  m.to(at::kBFloat16);
  at::Tensor low = m.forward(toks).to(at::kFloat);
  EXPECT_LT(max_abs_diff(ref, low), 0.1 * ref.abs().max().item<double>() + 0.05);
}

TEST(Model, BadTokensAreClearErrors) {
  LanguageModel m(small_config("transformer", {{"pos_emb", "learned"}, {"max_seq_len", 8}}));
  auto msg = [&](const at::Tensor& t) {
    try {
      m.forward(t);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(msg(at::full({1, 3}, 40, at::kLong)).find("outside the vocabulary"), std::string::npos);
  EXPECT_NE(msg(at::full({1, 3}, -1, at::kLong)).find("outside the vocabulary"), std::string::npos);
  EXPECT_NE(msg(at::zeros({1, 9}, at::kLong)).find("max_seq_len"), std::string::npos);
  EXPECT_NE(msg(at::zeros({3}, at::kLong)).find("[batch, pos]"), std::string::npos);
}

// The memory guard (core/engine/memory.h): a cached attention map's bytes are B x H x L^2 x 4 (twice, for the
// transient that builds it); a request beyond the limit is refused before anything is allocated, with the
// request and the estimate in the message; one within it runs.
TEST(MemoryGuard, EstimatesScaleAndRefuseBeforeAllocating) {
  LanguageModel m(small_config("transformer"), 1);
  const int64_t H = m.config().attn.num_heads;
  const double base = m.estimate_forward_bytes(2, 100);
  const double with_map = m.estimate_forward_bytes(2, 100, {"blocks.0.attn.hook_pattern"});
  EXPECT_DOUBLE_EQ(with_map - base, 2.0 * 2 * H * 100 * 100 * 4);
  EXPECT_NEAR(m.estimate_forward_bytes(2, 400) / base, 16.0, 10.0);  // the L^2 scores dominate
  ::setenv("MECHSCOPE_MEMORY_LIMIT_MB", "300", 1);
  EXPECT_LE(available_memory_bytes(), uint64_t{300} << 20);
  at::Tensor long_input = at::zeros({1, 8192}, at::kLong);  // 3 x 4 heads x 8192^2 x 4 bytes of scores
  try {
    m.forward(long_input);
    ADD_FAILURE() << "an 8192-token forward passed a 300 MB limit";
  } catch (const MemoryLimitError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("1 x 8192 tokens"), std::string::npos) << msg;
    EXPECT_NE(msg.find("GiB"), std::string::npos) << msg;
  }
  EXPECT_THROW(m.run_with_cache(at::zeros({1, 4096}, at::kLong), HookSelection::of({"blocks.*.attn.hook_pattern"})),
               MemoryLimitError);
  EXPECT_NO_THROW(m.forward(at::zeros({2, 64}, at::kLong)));
  ::unsetenv("MECHSCOPE_MEMORY_LIMIT_MB");
}

// A partial run (spec §4's causality) from every start equals the full run there: each layer takes the keys,
// values, conv window and SSM state before the start from an earlier run, with variants stacked along the batch.
TEST(Model, PartialRunFromACachedPrefixEqualsTheFullRun) {
  const std::vector<std::pair<std::string, nlohmann::json>> cases = {
      {"transformer", {{"attn_cfg", {{"num_heads", 4}, {"num_heads_kv", 2}}}, {"d_intermediate", 48}}},
      {"transformer",
       {{"attn_cfg", {{"num_heads", 2}, {"qkv_proj_bias", true}, {"rotary_emb_interleaved", true}, {"rotary_emb_dim", 6}}}}},
      {"mamba1", nlohmann::json::object()},
      {"mamba2", nlohmann::json::object()},
      {"mamba2", {{"d_intermediate", 0}, {"ssm_cfg", {{"d_ssm", 32}, {"ngroups", 2}}}}},
      {"hybrid", nlohmann::json::object()},
      {"parallel-hybrid", nlohmann::json::object()},
      {"gpt-neox", nlohmann::json::object()},
      {"transformer", {{"attn_cfg", {{"num_heads", 4}, {"sliding_window", 3}}}}},
      {"transformer", {{"attn_cfg", {{"num_heads", 4}, {"hard_alibi_heads", 2}}}}},
      {"zamba-like", {{"n_layer", 3}}}};  // the shared block takes its keys, values and embedding from the prefix
  for (bool fast : {true, false}) {
    mechscope::kernels::set_fast_scan_enabled(fast);
    for (const auto& [preset, overrides] : cases) {
      LanguageModel m(mechscope::test::small_config(preset, overrides), 3);
      at::NoGradGuard ng;
      const int64_t b = 3, L = 11, n = m.n_layers();
      at::Tensor toks = mechscope::test::random_tokens(b, L, 37, 5);
      std::vector<std::string> names;
      for (int64_t j = 0; j < n; ++j) {
        const std::string p = "blocks." + std::to_string(j) + ".";
        names.push_back(p + "hook_resid_pre");
        names.push_back(p + "hook_mixer_in");
        for (const auto& [mixer, H] : m.heads_of_layer(j)) {
          if (mixer == "attn") names.insert(names.end(), {p + "attn.hook_k", p + "attn.hook_v"});
          else if (mixer == "ssm") names.push_back(p + "ssm.hook_state");
        }
        for (const auto& name : m.block(j).prefix_hooks()) names.push_back(name);
      }
      auto [logits, cache] = m.run_with_cache(toks, HookSelection::of(names));
      auto take = [&](const std::string& name) { return cache.count(name) ? cache.at(name) : at::Tensor(); };
      for (int64_t from = 0; from < n; ++from) {
        at::Tensor resid = cache.at("blocks." + std::to_string(from) + ".hook_resid_pre");
        at::Tensor full = m.forward_blocks(from, n, resid, nullptr, take("hook_embed"));  // [b, L, d]
        for (int64_t start : {int64_t(0), int64_t(1), int64_t(2), int64_t(5), L - 1}) {
          std::vector<LayerPrefix> prefixes(n - from);
          for (int64_t j = from; j < n; ++j) {
            const std::string p = "blocks." + std::to_string(j) + ".";
            prefixes[j - from].start = start;
            for (const auto& name : m.block(j).prefix_hooks()) prefixes[j - from].tensors[name] = take(name);
          }
          at::Tensor rows = at::tensor({L - 1, start, L - 1, start + 1 < L ? start + 1 : start}, at::kLong)
                                .view({1, 4}).repeat({2 * b, 1});  // absolute positions >= start
          at::Tensor tail = resid.narrow(1, start, L - start).repeat({2, 1, 1});  // two stacked copies
          at::Tensor got = m.forward_blocks_partial(from, tail, prefixes, rows - start);
          at::Tensor want = gather_rows(full.repeat({2, 1, 1}), rows);
          EXPECT_LT(mechscope::test::max_abs_diff(got, want), 2e-5)
              << preset << " " << overrides.dump() << " from " << from << " start " << start << " fast " << fast;
        }
      }
    }
  }
  mechscope::kernels::set_fast_scan_enabled(true);
}

// The last block at chosen rows only (what sweeps and the workbench use for a readout) equals the full
// forward gathered at those rows, for every mixer kind, with repeated and unordered rows, from every layer.
TEST(Model, LastBlockAtRowsEqualsTheFullForwardThere) {
  const std::vector<std::pair<std::string, nlohmann::json>> cases = {
      {"transformer", nlohmann::json::object()},
      {"transformer", {{"attn_cfg", {{"num_heads", 4}, {"num_heads_kv", 2}}}, {"d_intermediate", 48}}},
      {"transformer",  // the query rows are projected alone: biases and rotary at their own positions
       {{"attn_cfg", {{"num_heads", 2}, {"qkv_proj_bias", true}, {"rotary_emb_interleaved", true}, {"rotary_emb_dim", 6}}}}},
      {"mamba1", nlohmann::json::object()},
      {"mamba2", nlohmann::json::object()},
      {"mamba2", {{"d_intermediate", 0}, {"ssm_cfg", {{"d_ssm", 32}}}}},  // d_mlp > 0: gated MLP inside the mixer
      {"hybrid", nlohmann::json::object()},
      {"parallel-hybrid", nlohmann::json::object()},
      {"gpt-neox", nlohmann::json::object()},
      {"transformer", {{"attn_cfg", {{"num_heads", 4}, {"sliding_window", 3}}}}},
      {"transformer", {{"attn_cfg", {{"num_heads", 4}, {"hard_alibi_heads", 3}}}}},
      {"zamba-like", nlohmann::json::object()}};  // a shared block in the last layer: every position, then the rows
  for (const auto& [preset, overrides] : cases) {
    LanguageModel m(mechscope::test::small_config(preset, overrides), 3);
    at::NoGradGuard ng;
    at::Tensor toks = mechscope::test::random_tokens(3, 11, 37, 5);
    at::Tensor rows = at::tensor({10, 3, 3, 0, 7, 1, 5, 5, 10}, at::kLong).view({3, 3});
    at::Tensor emb;
    at::Tensor resid0 = m.embed(toks, nullptr, &emb);
    for (int64_t from = 0; from <= m.n_layers(); ++from) {
      at::Tensor resid = m.forward_blocks(0, from, resid0, nullptr, emb);
      at::Tensor full = gather_rows(m.forward_blocks(from, m.n_layers(), resid, nullptr, emb), rows);
      at::Tensor at_rows = m.forward_blocks_at(from, resid, rows, nullptr, emb);
      EXPECT_EQ(at_rows.sizes(), full.sizes());
      EXPECT_LT(mechscope::test::max_abs_diff(at_rows, full), 1e-5) << preset << " " << overrides.dump() << " from " << from;
    }
    // With hooks: the last block's hooks after the row gather hold the full run's values at the rows, the
    // ones before it every position (the head-ablation sweep's cached run reads both).
    const std::string last = "blocks." + std::to_string(m.n_layers() - 1) + ".";
    std::vector<std::string> at_rows_names = {last + "hook_mixer_out", last + "hook_resid_post"};
    for (const auto& [mixer, H] : m.heads_of_layer(m.n_layers() - 1))
      if (mixer != "shared")  // a shared block runs every position (its mixer reads them all)
        at_rows_names.push_back(last + (mixer == "attn" ? "attn.hook_z" : "ssm.hook_head_out"));
    std::vector<std::string> names = at_rows_names;
    names.push_back(last + "hook_resid_pre");
    auto [logits, full_cache] = m.run_with_cache(toks, HookSelection::of(names));
    HookContext ctx;
    ctx.cache(std::set<std::string>(names.begin(), names.end()));
    at::Tensor emb2;
    at::Tensor resid_in = m.embed(toks, &ctx, &emb2);
    m.forward_blocks_at(0, resid_in, rows, &ctx, emb2);
    for (const auto& name : at_rows_names)
      EXPECT_LT(mechscope::test::max_abs_diff(ctx.cached().at(name), gather_rows(full_cache.at(name), rows)), 1e-5)
          << preset << " " << name;
    EXPECT_EQ(mechscope::test::max_abs_diff(ctx.cached().at(last + "hook_resid_pre"), full_cache.at(last + "hook_resid_pre")), 0.0)
        << preset;
  }
}

TEST(Model, RotaryWithoutGradientEqualsTheExpression) {
  // apply_rotary's one-pass inference loop (float32 CPU, no gradient) against its tensor expression (taken when
  // the input requires a gradient): strided inputs, partial rotary dims, both layouts, shared and per-example
  // positions. The same products and sums per element, so equal to the last bit.
  at::manual_seed(11);
  at::Tensor qkv = at::randn({3, 7, 3 * 4 * 10});
  at::Tensor x = qkv.narrow(-1, 40, 40).unflatten(-1, {4, 10});  // [3, 7, 4, 10], a view with a wide row stride
  at::Tensor shared = at::arange(5, 12, at::kLong).unsqueeze(0), per = at::randint(0, 50, {3, 7}, at::kLong);
  for (int64_t rd : {10, 6})
    for (bool interleaved : {false, true})
      for (const at::Tensor* pos : std::vector<const at::Tensor*>{nullptr, &shared, &per}) {
        at::Tensor fast;
        {
          at::NoGradGuard no_grad;
          fast = apply_rotary(x, rd, 10000.0, interleaved, pos);
        }
        at::Tensor xg = x.detach().clone().requires_grad_(true);
        at::Tensor plain = apply_rotary(xg, rd, 10000.0, interleaved, pos).detach();
        EXPECT_TRUE(at::equal(fast, plain)) << "rd " << rd << " interleaved " << interleaved << " positions "
                                            << (pos ? pos->size(0) : 0) << ": " << (fast - plain).abs().max().item<float>();
      }
}

// A sliding window of w positions (Mistral): in one attention layer without an MLP, the token at j reaches the
// outputs at j .. j + w - 1 and no others; with a window at least the sequence's length it is plain causal
// attention.
TEST(Model, ASlidingWindowReachesExactlyItsPositions) {
  at::NoGradGuard no_grad;
  const int64_t w = 3, L = 12;
  LanguageModel m(mechscope::test::small_config("transformer", {{"n_layer", 1}, {"d_intermediate", 0},
                                                                {"attn_cfg", {{"num_heads", 4}, {"sliding_window", w}}}}), 4);
  at::Tensor a = mechscope::test::random_tokens(1, L, 37, 9);
  for (int64_t j : {0, 4, 9}) {
    at::Tensor b = a.clone();
    b[0][j] = (a[0][j].item<int64_t>() + 1) % 37;
    at::Tensor diff = (m.forward(a) - m.forward(b)).abs().amax(-1)[0];  // [L]
    for (int64_t t = 0; t < L; ++t) {
      if (t >= j && t < j + w) EXPECT_GT(diff[t].item<double>(), 1e-6) << "j=" << j << " t=" << t;
      else EXPECT_EQ(diff[t].item<double>(), 0.0) << "j=" << j << " t=" << t;
    }
  }
  LanguageModel wide(mechscope::test::small_config("transformer", {{"n_layer", 1}, {"d_intermediate", 0},
                                                                   {"attn_cfg", {{"num_heads", 4}, {"sliding_window", L}}}}), 4);
  LanguageModel none(mechscope::test::small_config("transformer", {{"n_layer", 1}, {"d_intermediate", 0},
                                                                   {"attn_cfg", {{"num_heads", 4}}}}), 4);
  EXPECT_TRUE(at::equal(wide.forward(a), none.forward(a)));
  // A window on some layers only (attn_cfg.sliding_window_layers): two layers, only the second slides. The same
  // weights in a model where neither slides differ only through the second layer's window: equal when the window
  // covers the sequence, different when it does not.
  auto two = [&](int64_t window, const json& layers) {
    json attn = {{"num_heads", 4}};
    if (window > 0) attn["sliding_window"] = window;
    if (!layers.is_null()) attn["sliding_window_layers"] = layers;
    return mechscope::test::small_config("transformer", {{"n_layer", 2}, {"d_intermediate", 0}, {"attn_cfg", attn}});
  };
  LanguageModel second(two(w, json::array({1})), 4), neither(two(0, json()), 4), both(two(w, json()), 4),
      second_wide(two(L, json::array({1})), 4);
  EXPECT_EQ(second.config().attention_window(0), 0);
  EXPECT_EQ(second.config().attention_window(1), w);
  EXPECT_TRUE(at::equal(second_wide.forward(a), neither.forward(a)));
  EXPECT_GT(max_abs_diff(second.forward(a), neither.forward(a)), 1e-6);
  EXPECT_GT(max_abs_diff(second.forward(a), both.forward(a)), 1e-6);
  // The layer listed must exist and have attention, and a list needs a window.
  EXPECT_THROW(two(w, json::array({2})), std::invalid_argument);
  json bad = two(w, json::array({1})).to_json();
  bad["attn_cfg"].erase("sliding_window");
  EXPECT_THROW(ModelConfig::from_json(bad), std::invalid_argument);
  json hybrid = mechscope::test::small_config("hybrid").to_json();  // Mamba2 at 0, attention at 1
  hybrid["attn_cfg"]["sliding_window"] = 2;
  hybrid["attn_cfg"]["sliding_window_layers"] = {0};
  EXPECT_THROW(ModelConfig::from_json(hybrid), std::invalid_argument);
  hybrid["attn_cfg"]["sliding_window_layers"] = {1};
  EXPECT_EQ(ModelConfig::from_json(hybrid).attention_window(1), 2);
  EXPECT_EQ(ModelConfig::from_json(hybrid).to_json()["attn_cfg"]["sliding_window_layers"], json::array({1}));
}

// Hard-ALiBi (the Repeat-After-Me paper's copying transformers): head h < hard_alibi_heads attends to the keys at
// most h positions back, the other heads to every earlier one. Head 0 sees only its own position, so its output is
// its value (a softmax over one key is exactly 1); head h's pattern is positive on its reach and 0 beyond; the heads
// from hard_alibi_heads on are those of the same weights without it.
TEST(Model, HardAlibiHeadsAttendWithinTheirReach) {
  at::NoGradGuard no_grad;
  const int64_t L = 10, H = 4, M = 3;
  auto config = [&](int64_t heads) {
    json attn = {{"num_heads", H}};
    if (heads >= 0) attn["hard_alibi_heads"] = heads;
    return small_config("transformer", {{"n_layer", 1}, {"d_intermediate", 0}, {"attn_cfg", attn}});
  };
  LanguageModel hard(config(M), 4), plain(config(-1), 4);
  const at::Tensor toks = random_tokens(2, L, 37, 3);
  const std::string p = "blocks.0.attn.";
  const auto names = HookSelection::of({p + "hook_pattern", p + "hook_v", p + "hook_z"});
  auto [hard_logits, hc] = hard.run_with_cache(toks, names);
  auto [plain_logits, pc] = plain.run_with_cache(toks, names);
  const at::Tensor pat = hc.at(p + "hook_pattern"), plain_pat = pc.at(p + "hook_pattern");  // [b, H, L, L]
  const at::Tensor causal = at::ones({L, L}, at::kBool).tril();
  for (int64_t h = 0; h < M; ++h) {
    const at::Tensor reach = causal.logical_and(at::ones({L, L}, at::kBool).triu(-h));  // keys q-h .. q
    EXPECT_TRUE(at::equal(pat.select(1, h) > 0, reach.expand({2, L, L}))) << "head " << h;
    EXPECT_GT(max_abs_diff(pat.select(1, h), plain_pat.select(1, h)), 1e-3) << "head " << h;
  }
  EXPECT_TRUE(at::equal(hc.at(p + "hook_z").select(2, 0), hc.at(p + "hook_v").select(2, 0)));
  for (int64_t h = M; h < H; ++h) EXPECT_LT(max_abs_diff(pat.select(1, h), plain_pat.select(1, h)), 1e-6) << "head " << h;
  EXPECT_GT(max_abs_diff(hard_logits, plain_logits), 1e-4);
  // In the config only when set; a count outside 0..num_heads is refused by name.
  EXPECT_EQ(hard.config().to_json()["attn_cfg"]["hard_alibi_heads"], M);
  EXPECT_FALSE(plain.config().to_json()["attn_cfg"].contains("hard_alibi_heads"));
  EXPECT_FALSE(config(0).to_json()["attn_cfg"].contains("hard_alibi_heads"));
  for (int64_t bad : {int64_t(-1), H + 1}) {
    json j = config(M).to_json();
    j["attn_cfg"]["hard_alibi_heads"] = bad;
    try {
      ModelConfig::from_json(j);
      ADD_FAILURE() << bad << " accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("hard_alibi_heads"), std::string::npos) << e.what();
    }
  }
}

// Every MLP kind against its formula written out: gated (value * act(gate)) and plain (act(fc1 x)), each
// activation, with and without biases.
TEST(Model, MlpKindsAndActivationsFollowTheirFormulas) {
  at::NoGradGuard no_grad;
  at::Tensor x = at::randn({2, 5, 32}, at::TensorOptions().dtype(at::kFloat)) * 2;
  const double pi = 3.14159265358979323846;
  const std::map<std::string, std::function<at::Tensor(const at::Tensor&)>> acts = {
      {"silu", [](const at::Tensor& v) { return v / (1 + at::exp(-v)); }},
      {"gelu", [](const at::Tensor& v) { return 0.5 * v * (1 + at::erf(v / std::sqrt(2.0))); }},
      {"gelu_tanh",
       [pi](const at::Tensor& v) { return 0.5 * v * (1 + at::tanh(std::sqrt(2 / pi) * (v + 0.044715 * v * v * v))); }},
      {"relu", [](const at::Tensor& v) { return at::clamp_min(v, 0); }}};
  for (const auto& [name, f] : acts)
    for (const std::string type : {"gated", "plain"})
      for (bool bias : {false, true}) {
        ModelConfig c = mechscope::test::small_config(
            "transformer", {{"d_intermediate", 40}, {"mlp_type", type}, {"mlp_activation", name}, {"mlp_bias", bias}});
        LanguageModel m(c, 5);
        MLPImpl& mlp = *m.block(0).mlp;
        for (auto& p : mlp.parameters()) p.normal_();  // biases too (initialised to zero)
        at::Tensor h = at::linear(x, mlp.fc1->weight, bias ? mlp.fc1->bias : at::Tensor());
        EXPECT_EQ(h.size(-1), (type == "gated" ? 2 : 1) * (type == "gated" ? 128 : 40)) << name << type;
        at::Tensor inner = type == "gated" ? h.chunk(2, -1)[0] * f(h.chunk(2, -1)[1]) : f(h);
        at::Tensor want = at::linear(inner, mlp.fc2->weight, bias ? mlp.fc2->bias : at::Tensor());
        EXPECT_LT(mechscope::test::max_abs_diff(mlp.forward(x), want), 1e-4 * std::max(1.0, want.abs().max().item<double>()))
            << name << " " << type << " bias " << bias;
      }
}

// A block without a mixer (mlp_only_layer_idx, Nemotron-H's MLP layers) is resid + MLP(norm2(resid)) and nothing
// else; blocks that mlp_layer_idx leaves out have no MLP; the keys are checked by name.
TEST(Model, ABlockWithoutAMixerIsItsMlpOnly) {
  at::NoGradGuard no_grad;
  LanguageModel m(small_config("nemotron-like"), 5);  // M - * M
  BlockImpl& only = m.block(1);
  EXPECT_EQ(only.kind, MixerKind::None);
  EXPECT_FALSE(only.norm);
  EXPECT_TRUE(only.has_mlp());
  EXPECT_FALSE(m.block(0).has_mlp());
  EXPECT_FALSE(m.block(2).has_mlp());
  EXPECT_TRUE(m.head_groups(1).empty());
  const at::Tensor x = at::randn({2, 7, 32});
  const at::Tensor want = x + only.mlp->forward(only.norm2->forward(x));
  EXPECT_EQ(mechscope::test::max_abs_diff(only.forward(x, nullptr), want), 0.0);
  const at::Tensor rows = at::tensor({3, 6, 0, 2}, at::kLong).view({2, 2});
  EXPECT_LT(mechscope::test::max_abs_diff(only.forward_rows(x, rows), gather_rows(want, rows)), 1e-5);  // fewer rows: another blocking
  EXPECT_EQ(only.resid_mid_hook(), "blocks.1.hook_resid_pre");
  EXPECT_EQ(only.site_hook("mixer_out"), "");
  EXPECT_EQ(only.site_hook("mlp_out"), "blocks.1.hook_mlp_out");
  nlohmann::json j = m.config().to_json();
  EXPECT_EQ(ModelConfig::from_json(j).to_json(), j);
  auto refused = [&](const nlohmann::json& patch, const std::string& part) {
    nlohmann::json k = j;
    k.merge_patch(patch);
    const std::string e = mechscope::test::error_of([&] { ModelConfig::from_json(k); });
    EXPECT_NE(e.find(part), std::string::npos) << patch.dump() << ": " << e;
  };
  refused({{"mlp_only_layer_idx", {2}}}, "also has a mixer");
  refused({{"mlp_layer_idx", {0}}}, "must be listed");
  refused({{"d_intermediate", 0}}, "the model has none");
  refused({{"mlp_activation", "relu3"}}, "relu2");
}

// Gemma 2's soft-caps (the "gemma2-like" variant: scores at 1.5, logits at 2): every score the softmax sees and
// every logit lies within its cap, and the logits are the cap of the uncapped unembedding, c tanh(x / c).
TEST(Model, SoftCapsBoundTheScoresAndTheLogits) {
  at::NoGradGuard ng;
  LanguageModel m(mechscope::test::small_config("gemma2-like"), 4);
  {  // sharper scores and larger logits than the initialisation gives, so that the caps bite
    for (auto& p : m.named_parameters())
      if (p.key().find("in_proj") != std::string::npos || p.key().find("embedding") != std::string::npos) p.value().mul_(6.0);
  }
  at::Tensor toks = mechscope::test::random_tokens(2, 10, 37, 3);
  auto [logits, cache] = m.run_with_cache(toks, HookSelection::of({"blocks.1.attn.hook_attn_scores", "blocks.1.hook_resid_post"}));
  at::Tensor s = cache.at("blocks.1.attn.hook_attn_scores");
  at::Tensor finite = s.masked_select(at::isfinite(s));
  EXPECT_LE(finite.abs().max().item<double>(), 1.5);
  EXPECT_GT(finite.abs().max().item<double>(), 1.0);  // the cap is reached for, not idle
  EXPECT_LE(logits.abs().max().item<double>(), 2.0);
  at::Tensor raw = m.unembed(cache.at("blocks.1.hook_resid_post"), nullptr, false);
  EXPECT_GT(raw.abs().max().item<double>(), 2.0);
  EXPECT_LT(mechscope::test::max_abs_diff(logits, at::tanh(raw / 2.0) * 2.0), 1e-6);
}
