// Plugins through the loader (dlopen), never by linking: the two in-tree plugins work like built-ins, and every
// failure is a clear message with nothing half-registered.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "core/analysis/analysis.h"
#include "core/io/checkpoint.h"
#include "core/model/model.h"
#include "core/plugin/plugin.h"
#include "tests/support/test_support.h"

using namespace mechscope;

namespace {
bool has_task(const std::string& name) {
  for (const auto& t : task_names())
    if (t == name) return true;
  return false;
}
}  // namespace

TEST(Plugins, PhonebookTaskLoadsAndKeepsItsInvariants) {
  PluginStatus st = load_plugin(PLUGIN_PHONEBOOK);
  ASSERT_TRUE(st.loaded) << st.error;
  EXPECT_EQ(st.provides, std::vector<std::string>{"task phonebook"});
  auto task = make_task({{"task", "phonebook"}, {"num_entries", 5}});
  Batch b = task->sample(16, 3);
  Batch again = task->sample(16, 3);
  EXPECT_TRUE(b.tokens.equal(again.tokens));  // seeded and deterministic
  const auto& vocab = task->vocab();
  for (int64_t e = 0; e < b.size(); ++e) {
    // The answer digits are the digits of the entry whose name equals the query.
    std::string text;
    for (int64_t j = 0; j < b.tokens.size(1); ++j) text += vocab[b.tokens[e][j].item<int64_t>()] + " ";
    std::vector<int64_t> answer, query;
    for (int64_t j = 0; j < b.tokens.size(1); ++j) {
      const auto r = static_cast<Role>(b.roles[e][j].item<int8_t>());
      if (r == Role::Answer) answer.push_back(b.tokens[e][j].item<int64_t>());
      if (r == Role::Query) query.push_back(b.tokens[e][j].item<int64_t>());
      if (b.targets[e][j].item<int64_t>() != -100) EXPECT_EQ(b.targets[e][j].item<int64_t>(), b.tokens[e][j + 1].item<int64_t>());
    }
    ASSERT_EQ(query.size(), 3u) << text;
    ASSERT_EQ(answer.size(), 4u) << text;
    int matches = 0;
    for (int64_t i = 0; i < 5; ++i) {
      const int64_t start = 1 + i * 8;
      bool same = true;
      for (int k = 0; k < 3; ++k) same = same && b.tokens[e][start + k].item<int64_t>() == query[k];
      if (!same) continue;
      ++matches;
      for (int k = 0; k < 4; ++k) EXPECT_EQ(b.tokens[e][start + 3 + k].item<int64_t>(), answer[k]) << text;
    }
    EXPECT_EQ(matches, 1) << text;
  }
  // Corrupting the queried key leaves no entry with the query's name.
  Batch c = task->corrupt(b, 9, "key");
  EXPECT_EQ(c.tokens.ne(b.tokens).sum(1).max().item<int64_t>(), 1);
  EXPECT_THROW(make_task({{"task", "phonebook"}, {"entries", 5}}), std::invalid_argument);
  // A model trains on it through the same path as a built-in task.
  LanguageModel m(test::small_config("transformer", {{"vocab_size", 41}}), 1);
  EXPECT_EQ(task->vocab().size(), 41u);
  EXPECT_EQ(m.forward(b.tokens).size(2), m.config().padded_vocab_size());
}

TEST(Plugins, RolloutAnalysisRowsAreDistributions) {
  PluginStatus st = load_plugin(PLUGIN_ROLLOUT);
  ASSERT_TRUE(st.loaded) << st.error;
  const RegisteredAnalysis* a = find_analysis("attention-rollout");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->info.result_kind, "grid");
  for (const auto& preset : {"transformer", "hybrid", "mamba1"}) {
    LanguageModel m(test::small_config(preset), 2);
    auto task = make_task({{"task", "mqar"}, {"vocab_size", 32}, {"seq_len", 16}, {"num_pairs", 4}});
    Batch b = task->sample(2, 1);
    std::vector<std::string> vocab = task->vocab();
    ResultsFile rf = a->info.run(AnalysisContext{m, task.get(), b, vocab, {{"example", 1}}});
    at::Tensor R = rf.get("attention_rollout/rollout").value;
    ASSERT_EQ(R.size(0), 16);
    EXPECT_LT(test::max_abs_diff(R.sum(-1), at::ones({16})), 1e-5) << preset;  // products of row-stochastic matrices
    EXPECT_EQ(R.triu(1).abs().max().item<double>(), 0.0) << preset;            // causal
    // One layer: rollout = 0.5 A + 0.5 I by hand.
    if (std::string(preset) == "transformer") {
      LanguageModel one(test::small_config("transformer", {{"n_layer", 1}}), 2);
      ResultsFile r1 = a->info.run(AnalysisContext{one, task.get(), b, vocab, {{"example", 0}}});
      at::Tensor A = attention_mass(attention_map(one, b.tokens.narrow(0, 0, 1), 0, "attn").pattern[0]).mean(0);
      EXPECT_LT(test::max_abs_diff(r1.get("attention_rollout/rollout").value, 0.5 * A + 0.5 * at::eye(16)), 1e-5);
    }
    EXPECT_THROW(a->info.run(AnalysisContext{m, task.get(), b, vocab, {{"example", 7}}}), std::invalid_argument);
  }
}

TEST(Plugins, BrokenPluginsAreSkippedWithTheirReason) {
  PluginStatus v = load_plugin(PLUGIN_BAD_VERSION);
  EXPECT_FALSE(v.loaded);
  EXPECT_NE(v.error.find("built against plugin API version 4; this MechScope provides version 3"), std::string::npos) << v.error;
  PluginStatus s = load_plugin(PLUGIN_BAD_SYMBOL);
  EXPECT_FALSE(s.loaded);
  EXPECT_NE(s.error.find("not a MechScope plugin"), std::string::npos) << s.error;
  PluginStatus t = load_plugin(PLUGIN_BAD_THROWS);
  EXPECT_FALSE(t.loaded);
  EXPECT_NE(t.error.find("cannot find my data files"), std::string::npos) << t.error;
  EXPECT_FALSE(has_task("half-registered"));
  PluginStatus missing = load_plugin("/nonexistent/plugin.so");
  EXPECT_FALSE(missing.loaded);
  EXPECT_NE(missing.error.find("cannot load"), std::string::npos);
  // Loading the same plugin twice: its names are taken, so the second is refused.
  load_plugin(PLUGIN_PHONEBOOK);
  PluginStatus twice = load_plugin(PLUGIN_PHONEBOOK);
  if (!twice.loaded) EXPECT_NE(twice.error.find("already registered"), std::string::npos) << twice.error;
  EXPECT_TRUE(has_task("mqar"));  // built-ins untouched
}
