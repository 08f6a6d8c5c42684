// The trainer: an interrupted and resumed run equals an uninterrupted one (weights bit-exact, history
// without gaps), checkpoints carry task, vocabulary, history, snapshots and optimiser state, bad settings
// are errors.
#include <atomic>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "core/io/checkpoint.h"
#include "core/model/model.h"
#include "core/train/trainer.h"
#include "tests/support/test_support.h"

using namespace mechscope;
using nlohmann::json;

namespace {
std::shared_ptr<Task> tiny_task() {
  return std::shared_ptr<Task>(make_task({{"task", "ar"}, {"num_pairs", 3}, {"num_keys", 8}, {"num_values", 8}}));
}
std::shared_ptr<LanguageModel> tiny_model(const Task& t, const std::string& preset) {
  return std::make_shared<LanguageModel>(
      mechscope::test::small_config(preset, {{"vocab_size", static_cast<int64_t>(t.vocab().size())}}), 3);
}
TrainConfig tiny_cfg() {
  return TrainConfig::from_json({{"steps", 20}, {"batch", 8}, {"eval_every", 5}, {"eval_examples", 16},
                                 {"checkpoint_every", 5}, {"lr", 3e-3}});
}
}  // namespace

TEST(Trainer, InterruptedAndResumedRunEqualsUninterrupted) {
  const std::string dir = mechscope::test::scratch_dir();
  for (const std::string preset : {"transformer", "mamba2"}) {
    auto task = tiny_task();
    auto straight = tiny_model(*task, preset);
    Trainer a(straight, task, tiny_cfg(), dir + "/a.h5");
    TrainResult ra = a.run(nullptr, nullptr);
    EXPECT_EQ(ra.step, 20);
    EXPECT_FALSE(ra.interrupted);

    auto first = tiny_model(*task, preset);
    std::atomic<bool> stop{false};
    Trainer b(first, task, tiny_cfg(), dir + "/b.h5");
    TrainResult rb = b.run([&](const TrainProgress& p) { if (p.step == 10) stop = true; }, &stop);
    EXPECT_TRUE(rb.interrupted);
    EXPECT_EQ(rb.step, 10);
    Checkpoint ck = load_checkpoint(dir + "/b.h5");
    EXPECT_EQ(ck.training.at("last_step").item<int64_t>(), 10);
    EXPECT_EQ(ck.task_config, task->config());
    EXPECT_EQ(ck.vocab, task->vocab());
    Trainer c(ck.model, make_task(ck.task_config), TrainConfig::from_json(ck.train_config), dir + "/b.h5");
    c.resume(ck);
    TrainResult rc = c.run(nullptr, nullptr);
    EXPECT_EQ(rc.step, 20);
    auto wa = straight->state_dict(), wc = ck.model->state_dict();
    for (size_t i = 0; i < wa.size(); ++i) EXPECT_TRUE(at::equal(wa[i].second, wc[i].second)) << preset << " " << wa[i].first;
    EXPECT_EQ(c.history().step, (std::vector<int64_t>{5, 10, 15, 20}));  // no gap, no repeat
    EXPECT_EQ(c.history().accuracy, a.history().accuracy);
    EXPECT_EQ(c.history().snapshots.size(), 4u);
    // Resumed with snapshot_rows 0 (a task without probe tokens): the embedding snapshots are dropped and none
    // taken, which keeps a long run's file small; the weights go on as before.
    auto d_model = tiny_model(*task, preset);
    Trainer d0(d_model, task, tiny_cfg(), dir + "/d.h5");
    stop = false;
    d0.run([&](const TrainProgress& p) { if (p.step == 10) stop = true; }, &stop);
    Checkpoint dk = load_checkpoint(dir + "/d.h5");
    nlohmann::json no_snapshots = dk.train_config;
    no_snapshots["snapshot_rows"] = 0;
    Trainer d(dk.model, make_task(dk.task_config), TrainConfig::from_json(no_snapshots), dir + "/d.h5");
    d.resume(dk);
    d.run(nullptr, nullptr);
    EXPECT_TRUE(d.history().snapshots.empty()) << preset;
    EXPECT_EQ(load_checkpoint(dir + "/d.h5").training.count("embedding_snapshots"), 0u) << preset;
    auto wd = dk.model->state_dict();
    for (size_t i = 0; i < wa.size(); ++i) EXPECT_TRUE(at::equal(wa[i].second, wd[i].second)) << preset << " " << wa[i].first;
  }
}

TEST(Trainer, CheckpointHoldsHistorySnapshotsAndOptimiser) {
  const std::string dir = mechscope::test::scratch_dir();
  auto task = std::shared_ptr<Task>(make_task({{"task", "position"}, {"num_symbols", 6}}));
  auto model = tiny_model(*task, "transformer");
  Trainer t(model, task, tiny_cfg(), dir + "/p.h5");
  t.run(nullptr, nullptr);
  Checkpoint ck = load_checkpoint(dir + "/p.h5");
  EXPECT_EQ(ck.training.at("step").numel(), 4);
  EXPECT_EQ(ck.training.at("embedding_snapshots").sizes(), (std::vector<int64_t>{4, 6, 32}));  // 6 position tokens
  EXPECT_EQ(ck.vocab[ck.training.at("embedding_snapshot_ids")[0].item<int64_t>()], "p0");
  // The last snapshot is the final embedding of the position tokens.
  at::Tensor last = ck.training.at("embedding_snapshots")[3];
  at::Tensor ids = ck.training.at("embedding_snapshot_ids");
  EXPECT_TRUE(at::equal(last, ck.model->embedding_matrix().index_select(0, ids)));
  EXPECT_EQ(ck.optimizer.size(), 3 * model->state_dict().size());
  EXPECT_EQ(ck.optimizer.at("backbone.embedding.weight.step").item<int64_t>(), 20);
}

TEST(Trainer, BadSettingsAreErrors) {
  EXPECT_THROW(TrainConfig::from_json({{"step", 10}}), std::invalid_argument);
  EXPECT_THROW(TrainConfig::from_json({{"lr", -1}}), std::invalid_argument);
  EXPECT_THROW(TrainConfig::from_json({{"steps", 0}}), std::invalid_argument);
  EXPECT_THROW(TrainConfig::from_json({{"loss", "all"}}), std::invalid_argument);
  auto task = tiny_task();
  auto wrong = std::make_shared<LanguageModel>(mechscope::test::small_config("mamba1"), 1);  // vocab 37
  EXPECT_THROW(Trainer(wrong, task, tiny_cfg(), "/tmp/x.h5"), std::invalid_argument);
}

TEST(Trainer, NextTokenTargetsAreTheFollowingTokenInsideEachExample) {
  auto task = std::shared_ptr<Task>(
      make_task({{"task", "ar"}, {"num_pairs", 4}, {"min_pairs", 1}, {"num_keys", 8}, {"num_values", 8}}));
  Batch b = task->sample(12, 5);
  at::Tensor t = next_token_targets(b);
  for (int64_t i = 0; i < 12; ++i) {
    const int64_t len = b.lengths[i].item<int64_t>();
    for (int64_t j = 0; j < b.tokens.size(1); ++j) {
      const int64_t want = j + 1 < len ? b.tokens[i][j + 1].item<int64_t>() : -100;
      ASSERT_EQ(t[i][j].item<int64_t>(), want) << "example " << i << " position " << j;
    }
  }
  EXPECT_EQ(TrainConfig::from_json({{"loss", "next_token"}}).loss, "next_token");
  EXPECT_EQ(TrainConfig::from_json(TrainConfig::from_json({{"loss", "next_token"}}).to_json()).loss, "next_token");
  EXPECT_EQ(TrainConfig{}.loss, "answers");
}
