// Incremental decoding (core/model/generate.h) against the full forward, for every preset and family variant:
// the logits after each chunk (the prompt in uneven chunks, then one token at a time) are the full forward's at
// that position, and greedy generation with the caches gives the ids of re-running the full forward each step.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "core/model/generate.h"
#include "core/model/model.h"
#include "tests/support/test_support.h"

using namespace mechscope;
using mechscope::test::max_abs_diff;
using mechscope::test::random_tokens;
using mechscope::test::small_config;

namespace {

// Windows and chunk sizes that cross SSD chunks (8 in the test configs) and the Mamba convolution's window.
TEST(Generate, ChunkedDecodingGivesTheFullForwardsLogits) {
  at::NoGradGuard no_grad;
  for (const auto& preset : mechscope::test::test_presets()) {
    LanguageModel m(small_config(preset, {{"pos_emb", "learned"}, {"max_seq_len", 40}}), 11);
    m.eval();
    const at::Tensor toks = random_tokens(2, 23, 37, 5);
    const at::Tensor full = m.forward(toks);  // [2, 23, V]
    IncrementalDecoder dec(m);
    double worst = 0;
    int64_t at = 0;
    for (int64_t n : {5, 1, 9, 1, 1, 3, 1, 2}) {
      const at::Tensor logits = dec.feed(toks.narrow(1, at, n));
      at += n;
      worst = std::max(worst, max_abs_diff(logits, full.select(1, at - 1)));
    }
    ASSERT_EQ(at, 23);
    EXPECT_EQ(dec.length(), 23);
    EXPECT_LT(worst, 2e-5) << preset;
  }
}

TEST(Generate, GreedyGenerationWithCachesIsTheReferences) {
  at::NoGradGuard no_grad;
  for (const auto& preset : mechscope::test::test_presets()) {
    LanguageModel m(small_config(preset), 3);
    m.eval();
    const at::Tensor prompts = random_tokens(3, 7, 37, 9);
    GenerationOptions o;
    o.max_new_tokens = 12;
    o.prompt_chunk = 4;
    const at::Tensor fast = greedy_generate(m, prompts, o), plain = greedy_generate_reference(m, prompts, o);
    EXPECT_TRUE(at::equal(fast, plain)) << preset << "\n" << fast << "\n" << plain;
    EXPECT_EQ(fast.size(1), 12);
  }
}

// A stop id ends its row (kept; -1 after it) and generation ends when every row has stopped.
TEST(Generate, StopIdsEndRows) {
  at::NoGradGuard no_grad;
  LanguageModel m(small_config("hybrid"), 3);
  m.eval();
  const at::Tensor prompts = random_tokens(2, 6, 37, 4);
  GenerationOptions o;
  o.max_new_tokens = 10;
  const at::Tensor free_run = greedy_generate(m, prompts, o);
  o.stop = {free_run[0][2].item<int64_t>()};  // row 0's third id
  const at::Tensor stopped = greedy_generate(m, prompts, o);
  for (int64_t b = 0; b < 2; ++b) {
    bool ended = false;
    for (int64_t k = 0; k < stopped.size(1); ++k) {
      if (ended) {
        EXPECT_EQ(stopped[b][k].item<int64_t>(), -1);
      } else {
        EXPECT_EQ(stopped[b][k].item<int64_t>(), free_run[b][k].item<int64_t>());
        ended = stopped[b][k].item<int64_t>() == o.stop[0];
      }
    }
  }
  EXPECT_LE(stopped.size(1), 10);
  EXPECT_THROW(greedy_generate(m, prompts.narrow(1, 0, 0), o), std::invalid_argument);
}

}  // namespace
