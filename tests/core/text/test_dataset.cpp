// Prompt datasets (core/text/dataset.h): every line's rows, targets, roles and corrupted prompt against a hand
// tokenization (a hand-made BPE: the characters "abcdefghij " as ids 0..10 and one merge, "ab" = 11), answers as
// the continuation of the prompt's tokens, ids given directly, the refusals that name their line, and the answer
// probabilities of a padded dataset batch against a softmax of each example run alone.
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/interventions/heads.h"
#include "core/interventions/metrics.h"
#include "core/interventions/patching.h"
#include "core/plugin/plugin.h"
#include "core/io/import.h"
#include "core/model/model.h"
#include "core/text/dataset.h"
#include "core/text/kv_retrieval.h"
#include "core/text/phone_book.h"
#include "core/text/scoring.h"
#include "core/model/generate.h"
#include "core/text/tokenizer.h"
#include "tests/support/test_support.h"

using namespace mechscope;
using nlohmann::json;

namespace {

Tokenizer hand_tokenizer() {
  json vocab;
  const std::string chars = "abcdefghij ";
  for (size_t i = 0; i < chars.size(); ++i) vocab[std::string(1, chars[i])] = i;
  vocab["ab"] = 11;
  return Tokenizer::from_json({{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"a b"}}}}}, "hand");
}

std::string write(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

std::vector<int64_t> row(const at::Tensor& t, int64_t b, int64_t n) {
  std::vector<int64_t> out;
  for (int64_t k = 0; k < n; ++k) out.push_back(t[b][k].item<int64_t>());
  return out;
}

std::string error_of(const std::string& text, const Tokenizer* tok) {
  try {
    make_dataset_task(write("bad.jsonl", text), tok, std::vector<std::string>(64, "x"));
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(accepted)";
}

TEST(Dataset, RowsTargetsRolesAndCorruptionsAreTheHandTokenization) {
  const Tokenizer tok = hand_tokenizer();
  const std::string path = write("d.jsonl",
                                 R"({"clean": "abc de", "corrupted": "abc df", "answer": " a"})" "\n"
                                 "\n"
                                 R"({"clean": "ba ji", "corrupted": "ba jj", "answer": "c"})" "\n"
                                 R"({"clean": [1, 2, 3], "answer": [5]})" "\n");
  auto task = make_dataset_task(path, &tok, std::vector<std::string>(64, "x"));
  EXPECT_EQ(task->config().at("lines"), 3);
  const Batch b = task->sample(10, 0);  // all three lines
  ASSERT_EQ(b.size(), 3);
  // "abc de" -> ab c ' ' d e = 11 2 10 3 4; with the answer " a" -> 10 0: the input is the prompt and the answer's
  // first token, the targets the answer's two tokens at positions 4 and 5.
  EXPECT_EQ(row(b.tokens, 0, 6), (std::vector<int64_t>{11, 2, 10, 3, 4, 10}));
  EXPECT_EQ(row(b.targets, 0, 6), (std::vector<int64_t>{-100, -100, -100, -100, 10, 0}));
  EXPECT_EQ(b.lengths[0].item<int64_t>(), 6);
  EXPECT_EQ(b.roles[0][4].item<int8_t>(), static_cast<int8_t>(Role::Query));
  EXPECT_EQ(b.roles[0][5].item<int8_t>(), static_cast<int8_t>(Role::Answer));
  // "ba ji" -> b a ' ' j i = 1 0 10 9 8 (no merge: "ba" is not "ab"), answer "c" -> 2; padded to 6 behind.
  EXPECT_EQ(row(b.tokens, 1, 6), (std::vector<int64_t>{1, 0, 10, 9, 8, 0}));
  EXPECT_EQ(row(b.targets, 1, 6), (std::vector<int64_t>{-100, -100, -100, -100, 2, -100}));
  EXPECT_EQ(b.lengths[1].item<int64_t>(), 5);
  EXPECT_EQ(b.roles[1][5].item<int8_t>(), static_cast<int8_t>(Role::Pad));
  EXPECT_EQ(row(b.targets, 2, 3), (std::vector<int64_t>{-100, -100, 5}));
  // The corrupted prompts of the first two lines, with the same answer input; the third has none.
  const Batch c = task->corrupt(b.narrow(0, 2), 0, "");
  EXPECT_EQ(row(c.tokens, 0, 6), (std::vector<int64_t>{11, 2, 10, 3, 5, 10}));
  EXPECT_EQ(row(c.tokens, 1, 5), (std::vector<int64_t>{1, 0, 10, 9, 9}));
  EXPECT_TRUE(at::equal(c.targets, b.targets.narrow(0, 0, 2)));
  EXPECT_NE(std::string([&] {
              try {
                task->corrupt(b, 0, "");
              } catch (const std::invalid_argument& e) {
                return std::string(e.what());
              }
              return std::string();
            }()).find("line 4"),
            std::string::npos);
  EXPECT_EQ(task->sample(1, 0).size(), 1);  // the first line
}

// Key and value spans (characters of the clean text): the key's first token starts a segment, the tokens after it
// through the value's last are its values; the last prompt token is the query. A tokenizer whose normalizer changes
// the text keeps no token's own characters: spans are refused there.
TEST(Dataset, KeyAndValueSpansMarkTheirTokens) {
  const Tokenizer tok = hand_tokenizer();
  auto task = make_dataset_task(write("s.jsonl", R"({"clean": "abc de", "answer": " a", "key": [0, 3], "value": [4, 5]})"),
                                &tok, std::vector<std::string>(64, "x"));
  const Batch b = task->sample(1, 0);  // ab c ' ' d e: key ab c, value d: segment ab .. d; query e
  const std::vector<Role> want = {Role::Key, Role::Value, Role::Value, Role::Value, Role::Query, Role::Answer};
  for (size_t p = 0; p < want.size(); ++p)
    EXPECT_EQ(b.roles[0][static_cast<int64_t>(p)].item<int8_t>(), static_cast<int8_t>(want[p])) << p;
  // A normalizer that changes the text leaves no token its own characters: the span's tokens are counted by
  // tokenizing the text before each end ("_a" then "_ab": the key "a" is tokens 0-1, "_" and "a"); with the merge
  // "ab" the span ends inside a token, and covers it (as with offsets: the tokens overlapping the span).
  json sp = {{"model", {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}, {"_", 2}}}, {"merges", json::array()}}},
             {"normalizer", {{"type", "Prepend"}, {"prepend", "_"}}}};
  const Tokenizer prepending = Tokenizer::from_json(sp, "prepend");
  auto counted = make_dataset_task(write("p.jsonl", R"({"clean": "ab", "answer": [1], "key": [0, 1]})"), &prepending,
                                   std::vector<std::string>(64, "x"));
  const Batch pb = counted->sample(1, 0);  // _ a b | answer b: key "a" = tokens _ a; b the query
  EXPECT_EQ(pb.roles[0][0].item<int8_t>(), static_cast<int8_t>(Role::Key));
  EXPECT_EQ(pb.roles[0][1].item<int8_t>(), static_cast<int8_t>(Role::Value));
  EXPECT_EQ(pb.roles[0][2].item<int8_t>(), static_cast<int8_t>(Role::Query));
  sp["model"]["vocab"]["ab"] = 3;
  sp["model"]["merges"] = {"a b"};
  const Tokenizer merging = Tokenizer::from_json(sp, "prepend-merge");
  auto crossing = make_dataset_task(write("m.jsonl", R"({"clean": "abb", "answer": [1], "key": [0, 1]})"), &merging,
                                    std::vector<std::string>(64, "x"));
  const Batch mb = crossing->sample(1, 0);  // _ ab b: key "a" = tokens _ ab
  EXPECT_EQ(mb.roles[0][0].item<int8_t>(), static_cast<int8_t>(Role::Key));
  EXPECT_EQ(mb.roles[0][1].item<int8_t>(), static_cast<int8_t>(Role::Value));
  EXPECT_EQ(mb.roles[0][2].item<int8_t>(), static_cast<int8_t>(Role::Query));
  EXPECT_NE(error_of(R"({"clean": "ab", "answer": "a", "key": [5, 6]})", &tok).find("ends past"), std::string::npos);
  EXPECT_NE(error_of(R"({"clean": [1, 2], "answer": [1], "key": [0, 1]})", &tok).find("spans of a text prompt"),
            std::string::npos);
}

// "labels" spans (characters of the clean text) make their tokens targets too, each predicted at the token before
// it (a prompt with answered queries trains on every answer); the answer stays the last target.
TEST(Dataset, LabelSpansAreTargetsAtTheTokenBefore) {
  const Tokenizer tok = hand_tokenizer();
  auto task = make_dataset_task(write("l.jsonl", R"({"clean": "abc de", "answer": " a", "labels": [[3, 5]]})"), &tok,
                                std::vector<std::string>(64, "x"));
  const Batch b = task->sample(1, 0);  // ab c ' ' d e | ' ' a: " d" is tokens 2 and 3, predicted at 1 and 2
  const std::vector<int64_t> want = {-100, 10, 3, -100, 10, 0};
  EXPECT_EQ(row(b.targets, 0, 6), want);
  EXPECT_NE(error_of(R"({"clean": "abc", "answer": "d", "labels": [0, 1]})", &tok).find("first token"), std::string::npos);
  EXPECT_NE(error_of(R"({"clean": [1, 2], "answer": [1], "labels": [0, 1]})", &tok).find("spans of a text prompt"),
            std::string::npos);
}

// "aligned": a corrupted prompt of another token count, its positions paired with the clean one's. Clean "ab c" is
// ab ' ' c (ids 11 10 2), corrupted "a b c" is a ' ' b ' ' c (0 10 1 10 2), the answer " d" two tokens; pairs
// (0, 0) and (1, 3), the last prompt token and the teacher-forced answer token aligned by themselves.
TEST(Dataset, AlignedLinesPairPositionsOfPromptsOfOtherLengths) {
  const Tokenizer tok = hand_tokenizer();
  const std::string line = R"({"clean": "ab c", "corrupted": "a b c", "answer": " d", "aligned": [[0, 0], [1, 3]]})";
  auto task = make_dataset_task(write("a.jsonl", line), &tok, std::vector<std::string>(64, "x"));
  const Batch b = task->sample(1, 0);
  const Batch c = task->corrupt(b, 0, "");
  EXPECT_EQ(row(b.tokens, 0, 4), (std::vector<int64_t>{11, 10, 2, 10}));
  EXPECT_EQ(row(c.tokens, 0, 6), (std::vector<int64_t>{0, 10, 1, 10, 2, 10}));
  EXPECT_EQ(row(c.targets, 0, 6), (std::vector<int64_t>{-100, -100, -100, -100, 10, 3}));
  ASSERT_TRUE(c.aligned.defined());
  EXPECT_EQ(row(c.aligned, 0, 4), (std::vector<int64_t>{0, 3, 4, 5}));
  EXPECT_FALSE(b.aligned.defined());
  // Patching reads each prompt's last token, where the answer's first token is predicted.
  EXPECT_EQ(b.readout[0].item<int64_t>(), 2);
  EXPECT_EQ(c.readout[0].item<int64_t>(), 4);
  EXPECT_NE(error_of(R"({"clean": "ab c", "corrupted": "a b c", "answer": " d"})", &tok).find("or give \"aligned\""),
            std::string::npos);
  EXPECT_NE(error_of(R"({"clean": "ab c", "answer": " d", "aligned": [[0, 0]]})", &tok).find("no corrupted prompt"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"clean": "ab c", "corrupted": "a b c", "answer": " d", "aligned": [[3, 0]]})", &tok)
                .find("is not [clean token 0..2"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"clean": "ab c", "corrupted": "a b c", "answer": " d", "aligned": [[0, 0], [0, 1]]})", &tok)
                .find("twice"),
            std::string::npos);
}

// Patching over aligned lines, against the hooks by hand: clean position p patched into the corrupted run at its
// aligned position (a position without one leaves the corrupted run alone), read at the corrupted prompt's own last
// token (the answer's first token; the answer " d" has two); attribution patching's estimate is the corrupted run's gradient there times (clean - corrupted). An
// alignment of every position of equal-length prompts gives what the same lines give without it.
namespace {
bool q_none(const std::vector<int64_t>& to, int64_t p) { return to[static_cast<size_t>(p)] < 0; }
}  // namespace

TEST(Dataset, PatchingReadsAlignedPositions) {
  const Tokenizer tok = hand_tokenizer();
  LanguageModel m(mechscope::test::small_config("transformer", {{"vocab_size", 64}}), 5);
  m.eval();
  const std::string line = R"({"clean": "ab c", "corrupted": "a b c", "answer": " d", "aligned": [[0, 0]]})";
  auto task = make_dataset_task(write("ap.jsonl", line), &tok, std::vector<std::string>(64, "x"));
  const Batch b = task->sample(1, 0);
  const Batch c = task->corrupt(b, 0, "");
  SweepOptions all;
  all.keep_threshold = -1;  // a random model: keep the example whatever the corruption does
  const PatchResult exact = activation_patching(m, b, c, "resid_pre", all);
  const PatchResult attr = attribution_patching(m, b, c, "resid_pre", all);
  at::NoGradGuard no_grad;
  auto prob_at = [](const at::Tensor& logits, int64_t pos, int64_t target) {
    return at::softmax(logits[0][pos], -1)[target].item<double>();
  };
  const at::Tensor clean_logits = m.forward(b.tokens), corr_logits = m.forward(c.tokens);
  // Read where the answer's first token (" ", id 10) is predicted: clean position 2, corrupted 4.
  const double p_clean = prob_at(clean_logits, 2, 10), p_corr = prob_at(corr_logits, 4, 10);
  const std::vector<int64_t> to = {0, -1, 4, 5};  // clean token 1 has no corrupted place
  for (int64_t l = 0; l < m.n_layers(); ++l) {
    const std::string hook = "blocks." + std::to_string(l) + ".hook_resid_pre";
    const at::Tensor clean_act = m.run_with_cache(b.tokens, HookSelection::of({hook})).second.at(hook);
    const at::Tensor corr_act = m.run_with_cache(c.tokens, HookSelection::of({hook})).second.at(hook);
    for (int64_t p = 0; p < 4; ++p) {
      const at::Tensor patched = m.run_with_hooks(c.tokens, {{hook, [&](const at::Tensor& v, const std::string&) {
                                                                at::Tensor o = v.clone();
                                                                if (to[static_cast<size_t>(p)] >= 0)
                                                                  o[0][to[static_cast<size_t>(p)]].copy_(clean_act[0][p]);
                                                                return o;
                                                              }}});
      EXPECT_NEAR(exact.prob[l][p].item<double>(), prob_at(patched, 4, 10), 1e-5) << hook << " " << p;
      if (q_none(to, p)) EXPECT_NEAR(exact.prob[l][p].item<double>(), p_corr, 1e-6);
      // Attribution: d p / d activation of the corrupted run at the aligned position, by autograd here.
      const int64_t q = to[static_cast<size_t>(p)];
      at::Tensor grad;
      {
        at::AutoGradMode on(true);
        at::Tensor probe = at::zeros_like(corr_act).requires_grad_(true);
        const at::Tensor lg = m.run_with_hooks(c.tokens, {{hook, [&](const at::Tensor& v, const std::string&) { return v + probe; }}});
        at::softmax(lg[0][4], -1)[10].backward();
        grad = probe.grad();
      }
      const double est =
          q < 0 ? 0.0 : (grad[0][q] * (clean_act[0][p] - corr_act[0][q])).sum().item<double>() / (p_clean - p_corr);
      EXPECT_NEAR(attr.score[l][p].item<double>(), est, 1e-4 * std::max(1.0, std::abs(est))) << hook << " " << p;
    }
  }
  // Equal lengths, every position aligned to itself: the unaligned results.
  const std::string same = R"({"clean": "ab c", "corrupted": "ab d", "answer": " d"})";
  const std::string same_aligned = R"({"clean": "ab c", "corrupted": "ab d", "answer": " d", "aligned": [[0, 0], [1, 1]]})";
  auto t1 = make_dataset_task(write("s1.jsonl", same), &tok, std::vector<std::string>(64, "x"));
  auto t2 = make_dataset_task(write("s2.jsonl", same_aligned), &tok, std::vector<std::string>(64, "x"));
  const Batch b1 = t1->sample(1, 0), b2 = t2->sample(1, 0);
  const Batch c1 = t1->corrupt(b1, 0, ""), c2 = t2->corrupt(b2, 0, "");
  ASSERT_TRUE(c2.aligned.defined());
  const PatchResult r1 = activation_patching(m, b1, c1, "heads", all), r2 = activation_patching(m, b2, c2, "heads", all);
  EXPECT_LT((r1.prob - r2.prob).abs().max().item<double>(), 1e-5);
  const PatchResult a1 = attribution_patching(m, b1, c1, "heads", all), a2 = attribution_patching(m, b2, c2, "heads", all);
  EXPECT_LT((a1.score - a2.score).abs().max().item<double>(), 1e-4);
}

TEST(Dataset, BadLinesAreRefusedNamingTheirLine) {
  const Tokenizer tok = hand_tokenizer();
  EXPECT_NE(error_of(R"({"clean": "ab", "answer": "c", "wrong": ["d"]})" "\n"
                     R"({"clean": "ab", "answer": "c", "choices": ["c", "d"]})", &tok)
                .find("line 2 is a multiple choice (\"choices\") and line 1 is not"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"clean": "ab", "answer": "c"})" "\n" R"({"clean": "ab", "corrupted": "abc", "answer": "c"})", &tok)
                .find("line 2: the clean prompt has 1 tokens and the corrupted one 2"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"clean": "a", "answer": "b"})", &tok).find("does not continue the prompt"), std::string::npos);
  EXPECT_NE(error_of(R"({"clean": "a", "answer": "c", "gold": ["d"]})", &tok).find("'gold'"), std::string::npos);
  EXPECT_NE(error_of(R"({"clean": "a", "answer": "c", "wrong": ["cd"]})", &tok).find("begins with the answer's first"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"clean": "a", "answer": "c", "wrong": []})", &tok).find("non-empty"), std::string::npos);
  EXPECT_NE(error_of(R"({"clean": "a", "answer": [99]})", &tok).find("99"), std::string::npos);
  EXPECT_NE(error_of(R"({"clean": "a" "answer": "c"})", &tok).find("line 1: not valid JSON"), std::string::npos);
  EXPECT_NE(error_of(R"({"clean": "a", "answer": "c"})", nullptr).find("no tokenizer.json"), std::string::npos);
  EXPECT_NE(error_of("\n\n", &tok).find("no examples"), std::string::npos);
}

// The batch pads the shorter example behind its length: each example's answer probabilities in the padded batch are
// those of running it alone, by the softmax of its own logits.
TEST(Dataset, PaddedBatchScoresAsEachExampleAlone) {
  Checkpoint ck = import_checkpoint(std::string(MECHSCOPE_SOURCE_DIR) + "/tests/import/fixtures/hf5/llama_theta500k");
  const Tokenizer tok = hand_tokenizer();
  auto task = make_dataset_task(write("p.jsonl", R"({"clean": "abc de", "answer": " a"})" "\n"
                                                 R"({"clean": "ba ji", "answer": "c"})" "\n"),
                                &tok, ck.vocab);
  const Batch b = task->sample(2, 0);
  at::NoGradGuard no_grad;
  ck.model->eval();
  const Readout r = Readout::all_labelled(b);
  const ExampleMetrics m = example_metrics(gather_readout(ck.model->forward(b.tokens), r), r);
  const std::vector<std::pair<std::vector<int64_t>, std::vector<std::pair<int64_t, int64_t>>>> alone = {
      {{11, 2, 10, 3, 4, 10}, {{4, 10}, {5, 0}}}, {{1, 0, 10, 9, 8}, {{4, 2}}}};
  for (size_t e = 0; e < alone.size(); ++e) {
    const at::Tensor p = at::softmax(ck.model->forward(at::tensor(alone[e].first, at::kLong).unsqueeze(0))[0].to(at::kDouble), -1);
    double want = 0;
    for (const auto& [pos, id] : alone[e].second) want += p[pos][id].item<double>();
    want /= static_cast<double>(alone[e].second.size());
    EXPECT_NEAR(m.prob[static_cast<int64_t>(e)].item<double>(), want, 1e-6) << e;
  }
}

// Given wrong answers: their first tokens sit at the answer's first position, and the logit difference there is
// the answer's logit minus the best of theirs (hand-made logits); a position without them keeps the best other token.
TEST(Dataset, WrongAnswersSetTheLogitDifference) {
  const Tokenizer tok = hand_tokenizer();
  auto task = make_dataset_task(write("w.jsonl", R"({"clean": "abc ", "answer": "d", "wrong": ["e", [7]]})" "\n"
                                                 R"({"clean": "ba", "answer": "c"})" "\n"),
                                &tok, std::vector<std::string>(12, "x"));
  const Batch b = task->sample(2, 0);  // "abc " -> 11 2 10, answer d = 3 at position 2; "ba" -> 1 0, c = 2 at 1
  ASSERT_TRUE(b.wrong.defined());
  EXPECT_EQ(b.wrong.sizes(), (at::IntArrayRef{2, 3, 2}));
  EXPECT_EQ(row(b.wrong[0], 2, 2), (std::vector<int64_t>{4, 7}));
  EXPECT_EQ(row(b.wrong[1], 1, 2), (std::vector<int64_t>{-1, -1}));
  const Readout r = Readout::all_labelled(b);
  at::Tensor logits = at::zeros({2, 12});
  logits[0][3] = 2.0, logits[0][4] = 0.5, logits[0][7] = 1.5, logits[0][9] = 5.0;  // 9: the best other, not given
  logits[1][2] = 1.0, logits[1][9] = 3.0;
  const ExampleMetrics m = example_metrics(logits, r);
  EXPECT_FLOAT_EQ(m.logit_diff[0].item<float>(), 0.5f);   // 2.0 - max(0.5, 1.5)
  EXPECT_FLOAT_EQ(m.logit_diff[1].item<float>(), -2.0f);  // 1.0 - 3.0: no wrong answers given
  // A batch of several variants (leading dimension) gives each the same.
  const ExampleMetrics m3 = example_metrics(logits.unsqueeze(0).expand({3, 2, 12}).contiguous(), r);
  EXPECT_FLOAT_EQ(m3.logit_diff[2][0].item<float>(), 0.5f);
  // The corrupted batch carries the same wrong answers.
  auto tc = make_dataset_task(write("wc.jsonl", R"({"clean": "abc ", "corrupted": "abd ", "answer": "d", "wrong": ["e"]})"),
                              &tok, std::vector<std::string>(12, "x"));
  const Batch cb = tc->sample(1, 0);
  EXPECT_TRUE(at::equal(tc->corrupt(cb, 0, "").wrong, cb.wrong));
}

// "choices": the other candidates' first tokens are the wrong answers, and an example is correct when its answer's
// logit is above all of theirs, though another token of the vocabulary is higher (hand-made logits); without
// choices, correct is the vocabulary's argmax. The answer must be one of the choices.
TEST(Dataset, ChoicesScoreAMultipleChoice) {
  const Tokenizer tok = hand_tokenizer();
  auto task = make_dataset_task(write("c.jsonl", R"({"clean": "abc ", "answer": "d", "choices": ["e", "d", [7]]})" "\n"
                                                 R"({"clean": "ba", "answer": "c", "choices": ["c", "f"]})" "\n"),
                                &tok, std::vector<std::string>(12, "x"));
  const Batch b = task->sample(2, 0);
  EXPECT_TRUE(b.multiple_choice);
  EXPECT_EQ(row(b.wrong[0], 2, 2), (std::vector<int64_t>{4, 7}));
  EXPECT_EQ(row(b.wrong[1], 1, 2), (std::vector<int64_t>{5, -1}));
  EXPECT_TRUE(b.narrow(1, 1).multiple_choice);
  const Readout r = Readout::all_labelled(b);
  at::Tensor logits = at::zeros({2, 12});
  logits[0][3] = 2.0, logits[0][4] = 0.5, logits[0][7] = 1.5, logits[0][9] = 5.0;  // d above e and 7; 9 is the argmax
  logits[1][2] = 1.0, logits[1][5] = 1.5;                                          // c below f
  const ExampleMetrics m = example_metrics(logits, r);
  EXPECT_FLOAT_EQ(m.correct[0].item<float>(), 1.f);
  EXPECT_FLOAT_EQ(m.correct[1].item<float>(), 0.f);
  EXPECT_FLOAT_EQ(m.logit_diff[1].item<float>(), -0.5f);
  Readout plain = r;
  plain.multiple_choice = false;  // the argmax of the vocabulary: 9, not d
  EXPECT_FLOAT_EQ(example_metrics(logits, plain).correct[0].item<float>(), 0.f);
  EXPECT_NE(error_of(R"({"clean": "a", "answer": "c", "choices": ["d", "e"]})", &tok).find("not one of the \"choices\""),
            std::string::npos);
  EXPECT_NE(error_of(R"({"clean": "a", "answer": "c", "choices": ["c"]})", &tok).find("two or more"), std::string::npos);
  EXPECT_NE(error_of(R"({"clean": "a", "answer": "c", "choices": ["c", "d"], "wrong": ["e"]})", &tok).find("not both"),
            std::string::npos);
}

// Several key and value spans pair by their order, each a segment; a count mismatch is refused.
TEST(Dataset, SpanListsMarkEverySegment) {
  const Tokenizer tok = hand_tokenizer();
  // "ab c d e f": ab ' ' c ' ' d ' ' e ' ' f; keys ab and d, values c and e
  auto task = make_dataset_task(write("m.jsonl", R"({"clean": "ab c d e f", "answer": "g", "key": [[0, 2], [5, 6]], )"
                                                 R"("value": [[3, 4], [7, 8]]})"),
                                &tok, std::vector<std::string>(12, "x"));
  const Batch b = task->sample(1, 0);
  const std::vector<Role> want = {Role::Key, Role::Value, Role::Value, Role::Filler, Role::Key,
                                  Role::Value, Role::Value, Role::Filler, Role::Query};
  for (size_t p = 0; p < want.size(); ++p)
    EXPECT_EQ(b.roles[0][static_cast<int64_t>(p)].item<int8_t>(), static_cast<int8_t>(want[p])) << p;
  EXPECT_NE(error_of(R"({"clean": "ab c d e f", "answer": "g", "key": [[0, 2], [5, 6]], "value": [3, 4]})", &tok)
                .find("2 \"key\" spans and 1 \"value\""),
            std::string::npos);
}

std::string kv_tokenizer_path() { return std::string(MECHSCOPE_SOURCE_DIR) + "/resources/text/kv-tokenizer.json"; }

// P4's prompt, read back: the dictionary lines, the query, the answer (the queried key's value), the choices (the
// values in the dictionary's order), the spans (each key and value's characters) and the corrupted prompt (another
// key of the dictionary queried, as many tokens); the same seed gives the same line.
TEST(KvRetrieval, LinesAreP4sPromptWithTheirAnswerChoicesAndSpans) {
  const Tokenizer tok = Tokenizer::from_file(kv_tokenizer_path());
  KvRetrievalConfig c;
  c.min_pairs = 3, c.max_pairs = 12;
  const std::vector<int64_t> values = kv_retrieval_values(c, tok);
  EXPECT_EQ(values.size(), 100u);  // the demo tokenizer has every number below 100 as one token
  std::map<int64_t, int> sizes;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    const json line = kv_retrieval_line(c, values, seed, tok);
    EXPECT_EQ(line, kv_retrieval_line(c, values, seed, tok));
    const std::string clean = line.at("clean");
    std::smatch m;
    ASSERT_TRUE(std::regex_match(clean, m, std::regex("Memorize the following dictionary:\n((?:[a-z]+:[0-9]+\n)+)"
                                                      "The value of the key '([a-z]+)' is")))
        << clean;
    const std::string body = m[1], query = m[2];
    std::vector<std::pair<std::string, std::string>> pairs;
    const std::regex pair_re("([a-z]+):([0-9]+)\n");
    for (std::sregex_iterator it(body.begin(), body.end(), pair_re), end; it != end; ++it)
      pairs.push_back({(*it)[1], (*it)[2]});
    ++sizes[static_cast<int64_t>(pairs.size())];
    ASSERT_GE(pairs.size(), 3u);
    ASSERT_LE(pairs.size(), 12u);
    std::string answer;
    json choices = json::array();
    for (const auto& [k, v] : pairs) {
      choices.push_back(v);
      if (k == query) answer = v;
    }
    EXPECT_EQ(line.at("answer"), answer);
    EXPECT_EQ(line.at("choices"), choices);
    ASSERT_EQ(line.at("key").size(), pairs.size());
    for (size_t i = 0; i < pairs.size(); ++i) {
      const auto kb = line["key"][i][0].get<size_t>(), ke = line["key"][i][1].get<size_t>();
      const auto vb = line["value"][i][0].get<size_t>(), ve = line["value"][i][1].get<size_t>();
      EXPECT_EQ(clean.substr(kb, ke - kb), pairs[i].first);
      EXPECT_EQ(clean.substr(vb, ve - vb), pairs[i].second);
    }
    ASSERT_TRUE(line.contains("corrupted"));  // single-token keys: every other key has as many tokens
    const std::string corrupted = line.at("corrupted");
    EXPECT_EQ(corrupted.substr(0, body.size()), clean.substr(0, body.size()));
    EXPECT_NE(corrupted, clean);
    EXPECT_EQ(tok.encode(corrupted).size(), tok.encode(clean).size());
  }
  EXPECT_GE(sizes.size(), 5u);  // pair counts spread over 3..12
  // A tokenizer that spells numbers digit by digit cannot tell "4" from "42" by first tokens: refused, saying so.
  json digits = {{"model", {{"type", "BPE"}, {"vocab", json::object()}, {"merges", json::array()}}}};
  const std::string chars = "0123456789abcdefghijklmnopqrstuvwxyzMT ':\n";
  for (size_t i = 0; i < chars.size(); ++i) digits["model"]["vocab"][std::string(1, chars[i])] = i;
  const Tokenizer by_digit = Tokenizer::from_json(digits, "digits");
  c.max_pairs = 20;
  try {
    kv_retrieval_values(c, by_digit);
    ADD_FAILURE() << "accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("10 continue the prompt as one token"), std::string::npos) << e.what();
  }
}

// P4's prompts through SentencePiece-style tokenizers (Llama 2's normalizer: Prepend and Replace; Mistral's
// Metaspace), whose tokens keep no characters of their own: each key span is the tokens that spell its word.
TEST(KvRetrieval, SpansFindTheirTokensThroughSentencePieceTokenizers) {
  for (const std::string name : {"llama2", "mistral_metaspace"}) {
    const Tokenizer tok = Tokenizer::from_file(std::string(MECHSCOPE_SOURCE_DIR) + "/tests/text/fixtures/" + name +
                                               ".tokenizer.json");
    KvRetrievalConfig c;
    c.min_pairs = 2, c.max_pairs = 8;
    const std::vector<int64_t> values = kv_retrieval_values(c, tok);
    std::string text;
    std::vector<size_t> pairs;
    for (uint64_t seed = 0; seed < 6; ++seed) {
      const json line = kv_retrieval_line(c, values, seed, tok);
      pairs.push_back(line.at("key").size());
      text += line.dump() + "\n";
    }
    auto task = make_dataset_task(write(name + ".jsonl", text), &tok, std::vector<std::string>(tok.vocab_size(), "x"));
    const Batch b = task->sample(6, 0);
    for (int64_t e = 0; e < 6; ++e) {
      const int64_t L = b.lengths[e].item<int64_t>();
      const std::vector<int64_t> ids = row(b.tokens, e, L);
      int64_t keys = 0;
      for (int64_t p = 0; p < L; ++p) {
        if (b.roles[e][p].item<int8_t>() != static_cast<int8_t>(Role::Key)) continue;
        ++keys;
        // The key's tokens: from here through the token before ':'.
        std::vector<int64_t> word;
        for (int64_t k = p; k < L && tok.decode({ids[static_cast<size_t>(k)]}).find(':') == std::string::npos; ++k)
          word.push_back(ids[static_cast<size_t>(k)]);
        std::string w = tok.decode(word);
        while (!w.empty() && (w[0] == ' ' || w[0] == '\n')) w.erase(0, 1);
        EXPECT_TRUE(std::find(kv_retrieval_words().begin(), kv_retrieval_words().end(), w) != kv_retrieval_words().end())
            << name << " example " << e << ": '" << w << "'";
      }
      EXPECT_EQ(keys, static_cast<int64_t>(pairs[static_cast<size_t>(e)])) << name << " example " << e;
    }
  }
}

// More than one query (for training): the queries before the last are answered in the prompt, each answer the value
// of its key in the dictionary and labelled; the task's batch has them as targets beside the answer.
TEST(KvRetrieval, AnsweredQueriesAreLabelled) {
  const Tokenizer tok = Tokenizer::from_file(kv_tokenizer_path());
  KvRetrievalConfig c;
  c.min_pairs = 2, c.max_pairs = 8, c.queries = 3;
  const std::vector<int64_t> values = kv_retrieval_values(c, tok);
  KvRetrievalConfig one = c;
  one.queries = 1;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    const json line = kv_retrieval_line(c, values, seed, tok);
    const std::string clean = line.at("clean");
    std::smatch m;
    ASSERT_TRUE(std::regex_match(clean, m, std::regex("Memorize the following dictionary:\n((?:[a-z]+:[0-9]+\n)+)"
                                                      "((?:The value of the key '[a-z]+' is[0-9]+\n){2})"
                                                      "The value of the key '([a-z]+)' is")))
        << clean;
    std::map<std::string, std::string> dict;
    const std::string body = m[1], asked = m[2];
    const std::regex pair_re("([a-z]+):([0-9]+)\n"), asked_re("key '([a-z]+)' is([0-9]+)\n");
    for (std::sregex_iterator it(body.begin(), body.end(), pair_re), end; it != end; ++it) dict[(*it)[1]] = (*it)[2];
    EXPECT_EQ(line.at("answer"), dict.at(m[3]));
    ASSERT_EQ(line.at("labels").size(), 2u);
    size_t i = 0;
    for (std::sregex_iterator it(asked.begin(), asked.end(), asked_re), end; it != end; ++it, ++i) {
      EXPECT_EQ((*it)[2], dict.at((*it)[1]));
      const auto b = line["labels"][i][0].get<size_t>(), e = line["labels"][i][1].get<size_t>();
      EXPECT_EQ(clean.substr(b, e - b), (*it)[2]);
    }
    EXPECT_FALSE(kv_retrieval_line(one, values, seed, tok).contains("labels"));
  }
  auto task = make_kv_text_task({{"task", "kv-text"}, {"tokenizer", kv_tokenizer_path()}, {"min_pairs", 2},
                                 {"max_pairs", 8}, {"queries", 3}});
  EXPECT_EQ(task->config().at("queries"), 3);
  const Batch b = task->sample(4, 1);
  for (int64_t e = 0; e < 4; ++e) {
    const int64_t L = b.lengths[e].item<int64_t>();
    const std::vector<int64_t> ids = row(b.tokens, e, L);
    int64_t labelled = 0;
    for (int64_t p = 0; p + 1 < L; ++p) {
      if (b.targets[e][p].item<int64_t>() == -100) continue;
      ++labelled;
      EXPECT_EQ(b.targets[e][p].item<int64_t>(), ids[static_cast<size_t>(p) + 1]);  // the answer given in the prompt
      EXPECT_EQ(tok.decode({ids[static_cast<size_t>(p)]}), " is");
    }
    EXPECT_EQ(labelled, 2);
    EXPECT_NE(b.targets[e][L - 1].item<int64_t>(), -100);
  }
  EXPECT_THROW(make_kv_text_task({{"task", "kv-text"}, {"tokenizer", kv_tokenizer_path()}, {"queries", 0}}),
               std::invalid_argument);
}

// The kv-text task: its batch is the dataset reading of its lines: the answer's token the target at the last prompt
// token, every key a Key and its ':' and value Values, the other values the multiple choice; corrupt() gives the
// corrupted prompts; its config keeps the tokenizer itself.
TEST(KvRetrieval, TextTaskBatchesAreItsLinesRead) {
  auto task = make_kv_text_task({{"task", "kv-text"}, {"tokenizer", kv_tokenizer_path()}, {"min_pairs", 2}, {"max_pairs", 6}});
  const json cfg = task->config();
  EXPECT_TRUE(cfg.at("tokenizer").is_object());
  EXPECT_EQ(cfg.at("values"), 100);
  const Tokenizer tok = Tokenizer::from_json(cfg.at("tokenizer"), "config");
  EXPECT_EQ(static_cast<int64_t>(task->vocab().size()), tok.vocab_size());
  const Batch b = task->sample(8, 5);
  const Batch again = make_kv_text_task(cfg)->sample(8, 5);
  EXPECT_TRUE(at::equal(b.tokens, again.tokens));  // from the config alone, the same examples
  EXPECT_TRUE(b.multiple_choice);
  for (int64_t e = 0; e < 8; ++e) {
    const int64_t L = b.lengths[e].item<int64_t>();
    std::vector<int64_t> ids = row(b.tokens, e, L);
    const std::string text = tok.decode(ids);
    EXPECT_EQ(b.roles[e][L - 1].item<int8_t>(), static_cast<int8_t>(Role::Query));
    const int64_t answer = b.targets[e][L - 1].item<int64_t>();
    EXPECT_EQ(b.targets.ne(-100)[e].sum().item<int64_t>(), 1);
    // The answer is the value after the queried key in the dictionary.
    int64_t keys = 0, found = -1;
    const std::string q = text.substr(text.rfind(" '") + 2, text.rfind("' is") - text.rfind(" '") - 2);
    for (int64_t p = 0; p < L; ++p) {
      if (b.roles[e][p].item<int8_t>() != static_cast<int8_t>(Role::Key)) continue;
      ++keys;
      EXPECT_EQ(tok.decode({ids[static_cast<size_t>(p) + 1]}), ":");
      EXPECT_EQ(b.roles[e][p + 1].item<int8_t>(), static_cast<int8_t>(Role::Value));
      EXPECT_EQ(b.roles[e][p + 2].item<int8_t>(), static_cast<int8_t>(Role::Value));
      if (tok.decode({ids[static_cast<size_t>(p)]}) == q) found = ids[static_cast<size_t>(p) + 2];
    }
    EXPECT_GE(keys, 2);
    EXPECT_EQ(found, answer) << text;
    // The wrong answers: the other keys' values.
    const int64_t W = b.wrong.size(2);
    int64_t given = 0;
    for (int64_t w = 0; w < W; ++w) given += b.wrong[e][L - 1][w].item<int64_t>() >= 0 ? 1 : 0;
    EXPECT_EQ(given, keys - 1);
  }
  const Batch c = task->corrupt(b, 0, "prompt");
  EXPECT_TRUE(at::equal(c.targets, b.targets));
  EXPECT_TRUE(at::equal(c.lengths, b.lengths));
  EXPECT_FALSE(at::equal(c.tokens, b.tokens));
  EXPECT_THROW(make_kv_text_task({{"task", "kv-text"}, {"tokenizer", kv_tokenizer_path()}, {"pairs", 3}}),
               std::invalid_argument);
}

// ga-discovery on the kv-text task: each head's causal score is the multiple-choice accuracy the model loses when
// that head alone is zeroed (here by a hook on a plain forward and the choice read from the logits by hand: the
// answer's logit above every other value's), and the pruning curve's last stage is the model's own accuracy.
TEST(KvRetrieval, GaDiscoveryCausalIsEachHeadsMultipleChoiceAccuracyDrop) {
  auto task = make_kv_text_task({{"task", "kv-text"}, {"tokenizer", kv_tokenizer_path()}, {"min_pairs", 2}, {"max_pairs", 5}});
  LanguageModel m(mechscope::test::small_config("hybrid", {{"vocab_size", static_cast<int64_t>(task->vocab().size())}}), 3);
  m.eval();
  const Batch b = task->sample(48, 2);
  const RegisteredAnalysis* a = find_analysis("ga-discovery");
  ASSERT_NE(a, nullptr);
  const ResultsFile rf = run_analysis(*a, AnalysisContext{m, task.get(), b, task->vocab(), json::object(), 0});
  std::map<std::string, at::Tensor> got;
  for (const auto& t : rf.tensors) got[t.name] = t.value;
  at::NoGradGuard no_grad;
  // The multiple choice by hand, from full logits [B, L, V].
  auto accuracy = [&](const at::Tensor& logits) {
    double right = 0;
    for (int64_t e = 0; e < b.size(); ++e) {
      const int64_t q = b.lengths[e].item<int64_t>() - 1;
      const at::Tensor row = logits[e][q];
      const float answer = row[b.targets[e][q].item<int64_t>()].item<float>();
      bool above = true;
      for (int64_t w = 0; w < b.wrong.size(2); ++w) {
        const int64_t id = b.wrong[e][q][w].item<int64_t>();
        if (id >= 0 && row[id].item<float>() >= answer) above = false;
      }
      right += above ? 1 : 0;
    }
    return right / static_cast<double>(b.size());
  };
  const double base = accuracy(m.forward(b.tokens));
  const at::Tensor pruned = got.at("ga_discovery/pruned_accuracy");
  EXPECT_NEAR(pruned[pruned.size(0) - 1].item<double>(), base, 1e-6);
  const std::vector<HeadRef> heads = all_heads(m);
  ASSERT_EQ(got.at("ga_discovery/causal").size(0), static_cast<int64_t>(heads.size()));
  bool some_change = false;
  for (size_t i = 0; i < heads.size(); ++i) {
    const HeadRef& h = heads[i];
    const std::string hook = "blocks." + std::to_string(h.layer) + (h.mixer == "attn" ? ".attn.hook_z" : ".ssm.hook_head_out");
    const at::Tensor logits = m.run_with_hooks(b.tokens, {{hook, [&](const at::Tensor& x, const std::string&) {
                                                             at::Tensor y = x.clone();
                                                             y.select(2, h.head).zero_();
                                                             return y;
                                                           }}});
    const double drop = base - accuracy(logits);
    some_change = some_change || drop != 0;
    EXPECT_NEAR(got.at("ga_discovery/causal")[static_cast<int64_t>(i)].item<double>(), drop, 1e-6) << h.label();
  }
  EXPECT_TRUE(some_change);  // the comparison saw an ablation that matters
  EXPECT_NE(rf.summary.find("multiple choice"), std::string::npos);
}

// P2's phone book, read back: entries "First Last: number" (ten digits, the first 6-9, distinct names), a blank
// line, two of them again, a blank line, a third name and its colon; the answer is its number after a space.
TEST(PhoneBook, LinesAreP2sPromptWithTheQueriedNumber) {
  PhoneBookConfig c;
  c.min_entries = 4, c.max_entries = 12;
  for (uint64_t seed = 0; seed < 30; ++seed) {
    const json line = phone_book_line(c, seed);
    EXPECT_EQ(line, phone_book_line(c, seed));
    const std::string p = line.at("clean");
    std::smatch m;
    ASSERT_TRUE(std::regex_match(p, m, std::regex("((?:[A-Za-z]+ [A-Za-z]+: [6-9][0-9]{9}\n)*[A-Za-z]+ [A-Za-z]+: [6-9][0-9]{9})"
                                                  "\n\n([A-Za-z]+ [A-Za-z]+: [0-9]{10})\n([A-Za-z]+ [A-Za-z]+: [0-9]{10})"
                                                  "\n\n([A-Za-z]+ [A-Za-z]+):")))
        << p;
    const std::string book = m[1].str() + "\n";
    std::map<std::string, std::string> number;
    const std::regex entry_re("([A-Za-z]+ [A-Za-z]+): ([0-9]{10})\n");
    for (std::sregex_iterator it(book.begin(), book.end(), entry_re), end; it != end; ++it) {
      EXPECT_EQ(number.count((*it)[1]), 0u) << "a repeated name";
      number[(*it)[1]] = (*it)[2];
    }
    ASSERT_GE(number.size(), 4u);
    ASSERT_LE(number.size(), 12u);
    for (int k : {2, 3}) EXPECT_NE(book.find(m[k].str() + "\n"), std::string::npos);  // the few-shot lines are entries
    EXPECT_NE(m[2].str(), m[3].str());
    const std::string query = m[4];
    ASSERT_EQ(number.count(query), 1u);
    EXPECT_EQ(line.at("answer"), " " + number[query]);
    EXPECT_EQ(book.find(query + ": " + number[query] + "\n") != std::string::npos, true);
    EXPECT_EQ(m[2].str().rfind(query + ":", 0), std::string::npos);  // the question is a third entry
    EXPECT_EQ(m[3].str().rfind(query + ":", 0), std::string::npos);
    EXPECT_EQ(line.at("key").size(), number.size());
  }
}

// score_lines against plain computations on a random model: the answer's summed log-probability is the sum of the
// log-softmax of each line run alone; a multiple choice picks the candidate with the highest such sum; generation is
// the reference greedy generation (full forward each step), decoded and cut at its first newline.
TEST(Scoring, LinesScoreAsComputedByHand) {
  const Tokenizer tok = Tokenizer::from_file(kv_tokenizer_path());
  KvRetrievalConfig kc;
  kc.min_pairs = 2, kc.max_pairs = 6;
  const std::vector<int64_t> values = kv_retrieval_values(kc, tok);
  std::string text;
  for (uint64_t seed = 0; seed < 3; ++seed) text += kv_retrieval_line(kc, values, seed, tok).dump() + "\n";
  PhoneBookConfig pc;
  pc.min_entries = pc.max_entries = 3;
  text += phone_book_line(pc, 7).dump() + "\n";
  // A multiple choice whose candidates share first tokens and differ in length (the sums tell them apart).
  text += R"({"clean": "apple:", "answer": "4", "choices": ["4", "4:", "4 2"]})" "\n";
  const std::string path = write("score.jsonl", text);
  LanguageModel m(mechscope::test::small_config("hybrid", {{"vocab_size", tok.vocab_size()}}), 5);
  m.eval();
  const std::vector<PromptLine> lines = read_prompt_lines(path, &tok, m.config().padded_vocab_size());
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(lines[4].choices.size(), 3u);
  EXPECT_EQ(lines[4].answer_choice, 0);
  EXPECT_EQ(lines[4].choices[1].size(), 2u);  // "4" ":" and "4" " 2": the answer's first token, and more
  EXPECT_EQ(lines[4].choices[1][0], lines[4].choices[0][0]);
  EXPECT_EQ(lines[4].choices[2][0], lines[4].choices[0][0]);
  at::NoGradGuard no_grad;
  auto sum_logp = [&](const std::vector<int64_t>& prompt, const std::vector<int64_t>& cont, size_t upto) {
    std::vector<int64_t> all = prompt;
    all.insert(all.end(), cont.begin(), cont.end());
    const at::Tensor lp = at::log_softmax(m.forward(at::tensor(all, at::kLong).unsqueeze(0))[0].to(at::kDouble), -1);
    double s = 0;
    for (size_t k = 0; k < std::min(upto, cont.size()); ++k) s += lp[static_cast<int64_t>(prompt.size() + k) - 1][cont[k]].item<double>();
    return s;
  };
  ScoreOptions o;
  const auto lp = score_lines(m, lines, &tok, o);
  o.by = ScoreBy::FirstToken;
  const auto first = score_lines(m, lines, &tok, o);
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_NEAR(lp[i].logprob, sum_logp(lines[i].prompt, lines[i].answer, 1000), 1e-4) << i;
    EXPECT_NEAR(first[i].logprob, sum_logp(lines[i].prompt, lines[i].answer, 1), 1e-4) << i;
  }
  EXPECT_GT(lines[3].answer.size(), 1u);  // the phone number: several tokens
  o.by = ScoreBy::Choice;
  const std::vector<PromptLine> with_choices(lines.begin(), lines.begin() + 3);
  std::vector<PromptLine> mc = with_choices;
  mc.push_back(lines[4]);
  const auto chosen = score_lines(m, mc, &tok, o);
  for (size_t i = 0; i < mc.size(); ++i) {
    int64_t best = 0;
    std::vector<double> sums;
    for (const auto& c : mc[i].choices) sums.push_back(sum_logp(mc[i].prompt, c, 1000));
    for (size_t c = 1; c < sums.size(); ++c)
      if (sums[c] > sums[static_cast<size_t>(best)]) best = static_cast<int64_t>(c);
    EXPECT_EQ(chosen[i].chosen, best) << i;
    EXPECT_EQ(chosen[i].correct, best == mc[i].answer_choice) << i;
  }
  o.by = ScoreBy::Generation;
  o.max_new_tokens = 6;
  const auto gen = score_lines(m, lines, &tok, o);
  for (size_t i = 0; i < lines.size(); ++i) {
    GenerationOptions g;
    g.max_new_tokens = 6;
    const at::Tensor ref = greedy_generate_reference(m, at::tensor(lines[i].prompt, at::kLong).unsqueeze(0), g);
    std::vector<int64_t> ids;
    for (int64_t k = 0; k < ref.size(1); ++k) ids.push_back(ref[0][k].item<int64_t>());
    const std::string t = tok.decode(ids);
    EXPECT_EQ(gen[i].generated, t.substr(0, t.find('\n'))) << i;
    EXPECT_FALSE(gen[i].correct);  // a random model does not know the numbers
  }
  EXPECT_THROW(score_by("bleu"), std::invalid_argument);
}

}  // namespace
