// Prompt datasets (core/text/dataset.h): every line's rows, targets, roles and corrupted prompt against a hand
// tokenization (a hand-made BPE: the characters "abcdefghij " as ids 0..10 and one merge, "ab" = 11), answers as
// the continuation of the prompt's tokens, ids given directly, the refusals that name their line, and the answer
// probabilities of a padded dataset batch against a softmax of each example run alone.
#include <filesystem>
#include <fstream>

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/interventions/metrics.h"
#include "core/io/import.h"
#include "core/model/model.h"
#include "core/text/dataset.h"
#include "core/text/tokenizer.h"

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
  json sp = {{"model", {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}, {"_", 2}}}, {"merges", json::array()}}},
             {"normalizer", {{"type", "Prepend"}, {"prepend", "_"}}}};
  const Tokenizer prepending = Tokenizer::from_json(sp, "prepend");
  EXPECT_NE(error_of(R"({"clean": "ab", "answer": [1], "key": [0, 1]})", &prepending).find("own characters"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"clean": "ab", "answer": "a", "key": [5, 6]})", &tok).find("ends past"), std::string::npos);
  EXPECT_NE(error_of(R"({"clean": [1, 2], "answer": [1], "key": [0, 1]})", &tok).find("spans of a text prompt"),
            std::string::npos);
}

TEST(Dataset, BadLinesAreRefusedNamingTheirLine) {
  const Tokenizer tok = hand_tokenizer();
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

}  // namespace
