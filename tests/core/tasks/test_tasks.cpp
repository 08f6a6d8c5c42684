// Task generators (spec §3): determinism, each generator's invariants, roles that agree with the tokens,
// corruption that changes exactly one token of the chosen role, and clear errors.
#include <map>
#include <set>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "core/tasks/task.h"

using namespace mechscope;
using nlohmann::json;

namespace {
std::vector<int64_t> row(const at::Tensor& t, int64_t i, int64_t len) {
  at::Tensor r = t[i].narrow(0, 0, len).to(at::kLong).contiguous();
  return {r.data_ptr<int64_t>(), r.data_ptr<int64_t>() + len};
}
Role role_at(const Batch& b, int64_t i, int64_t j) { return static_cast<Role>(b.roles[i][j].item<int8_t>()); }
}  // namespace

TEST(Tasks, SamplingIsDeterministicPerSeed) {
  for (const auto& name : task_names()) {
    nlohmann::json cfg = {{"task", name}};
    if (name == "kv-text")  // a text task: its tokenizer is part of its config
      cfg["tokenizer"] = std::string(MECHSCOPE_SOURCE_DIR) + "/resources/text/kv-tokenizer.json";
    auto task = make_task(cfg);
    Batch a = task->sample(8, 5), b = task->sample(8, 5), c = task->sample(8, 6);
    EXPECT_TRUE(at::equal(a.tokens, b.tokens)) << name;
    EXPECT_TRUE(at::equal(a.targets, b.targets)) << name;
    EXPECT_FALSE(at::equal(a.tokens, c.tokens)) << name;
    // A batch is its examples: the first 3 of 8 equal a batch of 3.
    Batch d = task->sample(3, 5);
    EXPECT_TRUE(at::equal(a.tokens.narrow(0, 0, 3).narrow(1, 0, d.tokens.size(1)), d.tokens)) << name;
    // Every token is in the vocabulary, padding only past the length.
    EXPECT_LT(a.tokens.max().item<int64_t>(), static_cast<int64_t>(task->vocab().size()));
    for (int64_t i = 0; i < a.size(); ++i) {
      const int64_t len = a.lengths[i].item<int64_t>();
      for (int64_t j = len; j < a.tokens.size(1); ++j) EXPECT_EQ(role_at(a, i, j), Role::Pad);
    }
  }
}

TEST(Tasks, MqarKeysValuesQueriesAndLabels) {
  auto task = make_task({{"task", "mqar"}, {"vocab_size", 64}, {"seq_len", 48}, {"num_pairs", 6}});
  EXPECT_EQ(task->vocab()[1], "k0");
  EXPECT_EQ(task->vocab()[32], "v0");
  Batch b = task->sample(50, 1);
  ASSERT_EQ(b.tokens.size(1), 48);
  for (int64_t i = 0; i < 50; ++i) {
    auto t = row(b.tokens, i, 48), y = row(b.targets, i, 48);
    std::map<int64_t, int64_t> kv;
    for (int64_t k = 0; k < 12; k += 2) {
      EXPECT_GE(t[k], 1);
      EXPECT_LT(t[k], 32);           // keys in [1, V/2)
      EXPECT_GE(t[k + 1], 32);       // values in [V/2, V)
      EXPECT_EQ(role_at(b, i, k), Role::Key);
      EXPECT_EQ(role_at(b, i, k + 1), Role::Value);
      EXPECT_TRUE(kv.emplace(t[k], t[k + 1]).second) << "keys repeat";
    }
    std::map<int64_t, int> queried;
    for (int64_t j = 12; j < 48; ++j) {
      Role r = role_at(b, i, j);
      if (y[j] != -100) {
        ASSERT_EQ(r, Role::Query);
        ASSERT_TRUE(kv.count(t[j]));
        EXPECT_EQ(y[j], kv[t[j]]);                   // the label at a query key is its value
        EXPECT_EQ(t[j + 1], kv[t[j]]);               // followed by it
        EXPECT_EQ(role_at(b, i, j + 1), Role::Answer);
        queried[t[j]]++;
      } else if (r == Role::Filler) {
        EXPECT_GE(t[j], 32);                          // filler never repeats a key
      }
    }
    EXPECT_EQ(queried.size(), 6u);
    for (auto& [k, n] : queried) EXPECT_EQ(n, 1) << "every context key has exactly one labelled query";
  }
}

// layout=zoology (zoology's multiquery_ar): the same pairs, queries and labels as the shown layout for a seed (the
// pairs and slots are drawn first), but nothing after a query tells its answer: that position, like every other
// non-query position of the query region, holds a random token of the whole vocabulary.
TEST(Tasks, MqarZoologyLayoutHidesTheAnswers) {
  const json base = {{"task", "mqar"}, {"vocab_size", 64}, {"seq_len", 48}, {"num_pairs", 6}};
  json zj = base;
  zj["layout"] = "zoology";
  auto shown = make_task(base), zoo = make_task(zj);
  EXPECT_FALSE(shown->config().contains("layout"));  // the default's config is what it always was
  EXPECT_EQ(zoo->config().at("layout"), "zoology");
  Batch a = shown->sample(200, 3), b = zoo->sample(200, 3);
  EXPECT_TRUE(a.targets.equal(b.targets));
  int64_t keys_in_filler = 0, after_query = 0, answer_after_query = 0;
  for (int64_t i = 0; i < 200; ++i) {
    auto ta = row(a.tokens, i, 48), tb = row(b.tokens, i, 48), y = row(b.targets, i, 48);
    for (int64_t j = 0; j < 48; ++j) {
      const Role r = role_at(b, i, j);
      EXPECT_NE(r, Role::Answer);
      if (j < 12 || y[j] != -100) {
        EXPECT_EQ(ta[j], tb[j]);  // the context and the queries
        continue;
      }
      EXPECT_EQ(r, Role::Filler);
      EXPECT_GE(tb[j], 1);
      EXPECT_LT(tb[j], 64);
      keys_in_filler += tb[j] < 32;
      if (y[j - 1] != -100) {
        ++after_query;
        answer_after_query += tb[j] == y[j - 1];
      }
    }
  }
  EXPECT_GT(keys_in_filler, 0);             // random tokens of the whole vocabulary, keys included
  EXPECT_EQ(after_query, 200 * 6);
  EXPECT_LT(answer_after_query, after_query / 20);  // by chance only (1 in 63)
  EXPECT_THROW(make_task({{"task", "mqar"}, {"layout", "hidden"}}), std::invalid_argument);
}

// min_pairs < num_pairs: each example has its own number of pairs, uniform in [min_pairs, num_pairs], with its
// context, its own query region and every pair queried once; min_pairs = num_pairs draws the same examples as before.
TEST(Tasks, MqarPairsPerExampleBetweenMinAndNum) {
  const json base = {{"task", "mqar"}, {"vocab_size", 64}, {"seq_len", 48}, {"num_pairs", 8}};
  json mixed = base, same = base;
  mixed["min_pairs"] = 2;
  same["min_pairs"] = 8;
  EXPECT_TRUE(make_task(base)->sample(30, 2).tokens.equal(make_task(same)->sample(30, 2).tokens));
  EXPECT_FALSE(make_task(same)->config().contains("min_pairs"));
  auto task = make_task(mixed);
  EXPECT_EQ(task->config().at("min_pairs"), 2);
  Batch b = task->sample(400, 5);
  std::set<int64_t> seen;
  for (int64_t i = 0; i < 400; ++i) {
    auto t = row(b.tokens, i, 48), y = row(b.targets, i, 48);
    int64_t n = 0;
    while (2 * n < 48 && role_at(b, i, 2 * n) == Role::Key) ++n;
    ASSERT_GE(n, 2);
    ASSERT_LE(n, 8);
    seen.insert(n);
    std::map<int64_t, int64_t> kv;
    for (int64_t k = 0; k < n; ++k) kv[t[2 * k]] = t[2 * k + 1];
    int64_t labelled = 0;
    for (int64_t j = 2 * n; j < 48; ++j)
      if (y[j] != -100) {
        ASSERT_TRUE(kv.count(t[j]));
        EXPECT_EQ(y[j], kv[t[j]]);
        ++labelled;
      }
    EXPECT_EQ(labelled, n) << "every pair queried once";
  }
  EXPECT_EQ(seen.size(), 7u);  // 2..8 all occur
  EXPECT_THROW(make_task({{"task", "mqar"}, {"num_pairs", 4}, {"min_pairs", 5}}), std::invalid_argument);
}

TEST(Tasks, ArSingleQuery) {
  auto task = make_task({{"task", "ar"}, {"num_pairs", 5}, {"num_keys", 20}, {"num_values", 30}});
  Batch b = task->sample(40, 2);
  ASSERT_EQ(b.tokens.size(1), 1 + 10 + 1 + 2 + 1);
  for (int64_t i = 0; i < 40; ++i) {
    auto t = row(b.tokens, i, 15), y = row(b.targets, i, 15);
    EXPECT_EQ(t[0], 1);   // <bos>
    EXPECT_EQ(t[11], 2);  // <eos>
    EXPECT_EQ(t[14], 2);
    int64_t labelled = 0;
    for (int64_t j = 0; j < 15; ++j) labelled += y[j] != -100;
    EXPECT_EQ(labelled, 1);
    int64_t found = -1;
    for (int64_t k = 1; k < 11; k += 2)
      if (t[k] == t[12]) found = t[k + 1];
    EXPECT_EQ(y[12], found);
    EXPECT_EQ(t[13], found);
    EXPECT_EQ(task->vocab()[t[12]].substr(0, 1), "k");
    EXPECT_EQ(task->vocab()[t[13]].substr(0, 1), "v");
  }
}

TEST(Tasks, ArMinPairsVariesTheNumberOfPairsAndCorruptsTheMatchedKey) {
  auto task = make_task({{"task", "ar"}, {"num_pairs", 6}, {"min_pairs", 2}, {"num_keys", 20}, {"num_values", 30}});
  EXPECT_EQ(task->config().at("min_pairs"), 2);
  EXPECT_FALSE(make_task({{"task", "ar"}})->config().contains("min_pairs"));  // old configs read back unchanged
  Batch b = task->sample(200, 3);
  Batch c = task->corrupt(b, 4, "key");
  std::set<int64_t> pairs;
  for (int64_t i = 0; i < 200; ++i) {
    const int64_t len = b.lengths[i].item<int64_t>();
    const int64_t np = (len - 5) / 2;
    ASSERT_EQ(len, 2 * np + 5);
    ASSERT_GE(np, 2);
    ASSERT_LE(np, 6);
    pairs.insert(np);
    auto t = row(b.tokens, i, len), y = row(b.targets, i, len);
    EXPECT_EQ(t[2 * np + 1], 2);  // <eos> after the pairs
    EXPECT_EQ(t[len - 1], 2);
    int64_t ctx = -1;
    for (int64_t k = 1; k < 2 * np + 1; k += 2)
      if (t[k] == t[2 * np + 2]) ctx = k;
    ASSERT_GE(ctx, 0);
    EXPECT_EQ(y[2 * np + 2], t[ctx + 1]);
    at::Tensor d = c.tokens[i].ne(b.tokens[i]);
    ASSERT_EQ(d.sum().item<int64_t>(), 1);
    EXPECT_EQ(d.nonzero().item<int64_t>(), ctx) << "the key that the query matches";
  }
  EXPECT_EQ(pairs.size(), 5u);  // 2..6 all drawn in 200 examples
  EXPECT_THROW(make_task({{"task", "ar"}, {"num_pairs", 3}, {"min_pairs", 4}}), std::invalid_argument);
}

TEST(Tasks, PositionRetrievalAnswersThePosition) {
  auto task = make_task({{"task", "position"}, {"num_symbols", 12}});
  Batch b = task->sample(30, 3);
  const auto& v = task->vocab();
  for (int64_t i = 0; i < 30; ++i) {
    auto t = row(b.tokens, i, 16), y = row(b.targets, i, 16);
    std::set<int64_t> perm(t.begin() + 1, t.begin() + 13);
    EXPECT_EQ(perm.size(), 12u);  // a permutation
    const int64_t s = t[14];
    int64_t pos = -1;
    for (int64_t k = 0; k < 12; ++k)
      if (t[1 + k] == s) pos = k;
    EXPECT_EQ(v[y[14]], "p" + std::to_string(pos));
    EXPECT_EQ(role_at(b, i, 14), Role::Query);
  }
  EXPECT_EQ(task->embedding_probe_ids().size(), 12u);
  auto var = make_task({{"task", "position"}, {"variant", "variable"}, {"num_symbols", 5}, {"seq_len", 40}});
  Batch c = var->sample(30, 4);
  for (int64_t i = 0; i < 30; ++i) {
    auto t = row(c.tokens, i, 44);
    EXPECT_EQ(std::count(t.begin() + 1, t.begin() + 41, t[42]), 1);  // the query symbol occurs once
  }
}

TEST(Tasks, NgramQueryOccursExactlyOnceAndTargetsFollowIt) {
  for (const std::string fmt : {"suffix", "prefix"}) {
    auto task = make_task({{"task", "ngram"}, {"format", fmt}, {"num_symbols", 8}, {"min_len", 20}, {"max_len", 30}});
    Batch b = task->sample(40, 5);
    for (int64_t i = 0; i < 40; ++i) {
      const int64_t len = b.lengths[i].item<int64_t>();
      auto t = row(b.tokens, i, len), y = row(b.targets, i, len);
      std::vector<int64_t> seq, q, ans;
      for (int64_t j = 0; j < len; ++j) {
        Role r = role_at(b, i, j);
        if (r == Role::Symbol) seq.push_back(t[j]);
        if (r == Role::Query) q.push_back(t[j]);
        if (r == Role::Answer) ans.push_back(t[j]);
      }
      ASSERT_EQ(q.size(), 2u);
      ASSERT_EQ(ans.size(), 3u);
      EXPECT_GE(seq.size(), 20u);
      EXPECT_LE(seq.size(), 30u);
      int64_t hits = 0, at_ = -1;
      for (size_t k = 0; k + 1 < seq.size(); ++k)
        if (seq[k] == q[0] && seq[k + 1] == q[1]) {
          ++hits;
          at_ = k;
        }
      ASSERT_EQ(hits, 1) << "the query occurs exactly once";
      EXPECT_EQ(ans, (std::vector<int64_t>{seq[at_ + 2], seq[at_ + 3], seq[at_ + 4]}));
      // Targets: t1 at the last <query>, then t2, t3.
      EXPECT_EQ(y[len - 4], ans[0]);
      EXPECT_EQ(y[len - 3], ans[1]);
      EXPECT_EQ(y[len - 2], ans[2]);
      EXPECT_EQ(t[len - 4], 4);  // <query>
    }
  }
}

TEST(Tasks, CorruptionChangesOneTokenOfTheRoleToAnAbsentOne) {
  for (const json& config : {json{{"task", "mqar"}}, json{{"task", "ar"}},
                             json{{"task", "mqar"}, {"vocab_size", 64}, {"seq_len", 48}, {"num_pairs", 8}, {"min_pairs", 2}}}) {
    const std::string name = config.dump();
    auto task = make_task(config);
    Batch clean = task->sample(20, 6);
    for (const auto& role : task->corruptible_roles()) {
      Batch c = task->corrupt(clean, 7, role);
      at::Tensor diff = c.tokens.ne(clean.tokens);
      for (int64_t i = 0; i < 20; ++i) {
        ASSERT_EQ(diff[i].sum().item<int64_t>(), 1) << name << " " << role;
        const int64_t j = diff[i].nonzero().item<int64_t>();
        const Role r = role_at(clean, i, j);
        if (role == "key") EXPECT_EQ(r, Role::Key);
        if (role == "value") EXPECT_EQ(r, Role::Value);
        if (role == "query") EXPECT_EQ(r, Role::Query);
        auto t = row(clean.tokens, i, clean.lengths[i].item<int64_t>());
        EXPECT_EQ(std::count(t.begin(), t.end(), c.tokens[i][j].item<int64_t>()), 0) << "the new token is absent";
      }
      EXPECT_TRUE(at::equal(c.roles, clean.roles));
    }
  }
  for (const std::string name : {"position", "ngram"}) {
    auto task = make_task({{"task", name}});
    Batch clean = task->sample(10, 8);
    Batch c = task->corrupt(clean, 9);
    for (int64_t i = 0; i < 10; ++i) {
      at::Tensor d = c.tokens[i].ne(clean.tokens[i]);
      ASSERT_EQ(d.sum().item<int64_t>(), 1) << name;
      EXPECT_EQ(role_at(clean, i, d.nonzero().item<int64_t>()), Role::Query);
    }
  }
}

TEST(Tasks, ErrorsNameTheProblem) {
  auto msg = [](const json& j) {
    try {
      make_task(j);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(msg({{"task", "mqr"}}).find("mqar"), std::string::npos);
  EXPECT_NE(msg({{"task", "mqar"}, {"num_pair", 3}}).find("num_pair"), std::string::npos);
  EXPECT_NE(msg({{"task", "mqar"}, {"seq_len", 63}}).find("even"), std::string::npos);
  EXPECT_NE(msg({{"task", "mqar"}, {"seq_len", 16}, {"num_pairs", 5}}).find("num_pairs"), std::string::npos);
  EXPECT_NE(msg({{"task", "ngram"}, {"format", "middle"}}).find("suffix"), std::string::npos);
  EXPECT_NE(msg(json::object()).find("task"), std::string::npos);
  auto ar = make_task({{"task", "ar"}});
  EXPECT_THROW(ar->corrupt(ar->sample(2, 1), 1, "filler"), std::invalid_argument);
}

TEST(Tasks, AccuracyUnits) {
  auto ar = make_task({{"task", "ar"}, {"num_pairs", 2}, {"num_keys", 4}, {"num_values", 4}});
  Batch b = ar->sample(4, 1);
  // Logits that put all mass on the target where there is one: accuracy 1; then break example 0.
  at::Tensor logits = at::zeros({4, b.tokens.size(1), 16});
  at::Tensor tgt = b.targets.clamp_min(0);
  logits.scatter_(2, tgt.unsqueeze(-1), 1.0);
  EXPECT_DOUBLE_EQ(task_accuracy(*ar, logits, b), 1.0);
  logits[0].zero_();
  logits[0].select(1, 0).fill_(1.0);  // predicts token 0 everywhere
  EXPECT_DOUBLE_EQ(task_accuracy(*ar, logits, b), 0.75);
}

TEST(Tasks, CopyAndLookupFollowP2) {
  auto copy = make_task({{"task", "copy"}, {"min_len", 5}, {"max_len", 9}});
  const auto& v = copy->vocab();
  Batch b = copy->sample(20, 3);
  for (int64_t i = 0; i < 20; ++i) {
    const int64_t len = b.lengths[i].item<int64_t>();
    auto t = row(b.tokens, i, len), y = row(b.targets, i, len);
    std::string text;
    for (auto id : t) text += v[id];
    const int64_t n = (len - 3) / 2;  // $ s | s .
    EXPECT_EQ(text.substr(1 + n + 1, n), text.substr(1, n)) << text;
    EXPECT_EQ(text.front(), '$');
    EXPECT_EQ(text.back(), '.');
    // Loss on the answer span: '|' predicts s[0], each answer token the next, the last one '.'.
    for (int64_t j = 0; j < len; ++j) {
      if (j >= n + 1 && j < len - 1) EXPECT_EQ(y[j], t[j + 1]);
      else EXPECT_EQ(y[j], -100);
    }
  }
  for (const std::string fmt : {"suffix", "prefix"}) {
    auto look = make_task({{"task", "lookup"}, {"format", fmt}, {"min_len", 12}, {"max_len", 16}, {"alphabet", 4}});
    Batch c = look->sample(20, 4);
    for (int64_t i = 0; i < 20; ++i) {
      const int64_t len = c.lengths[i].item<int64_t>();
      auto t = row(c.tokens, i, len);
      std::vector<int64_t> s, q, a;
      for (int64_t j = 0; j < len; ++j) {
        Role r = role_at(c, i, j);
        if (r == Role::Symbol) s.push_back(t[j]);
        if (r == Role::Query) q.push_back(t[j]);
        if (r == Role::Answer) a.push_back(t[j]);
      }
      ASSERT_EQ(q.size(), 3u);
      int64_t hits = 0, at_ = -1;
      for (size_t k = 0; k + 3 <= s.size(); ++k)
        if (std::equal(q.begin(), q.end(), s.begin() + k)) {
          ++hits;
          at_ = k;
        }
      ASSERT_EQ(hits, 1);
      EXPECT_EQ(a, std::vector<int64_t>(s.begin() + at_ + 3, s.end()));  // the rest of the string
    }
  }
}

TEST(Tasks, AtrAnswerIsAHeadToTheRightAndSplitsAreDisjoint) {
  // Heads are emitted after their children, so the answer (the query's parent head) occurs in the sentence to the
  // right of the query's rightmost occurrence; the train and test splits share no (query, answer) pair.
  std::set<std::pair<int64_t, int64_t>> pairs[2];
  const char* splits[] = {"train", "test"};
  for (int s = 0; s < 2; ++s) {
    auto task = make_task({{"task", "atr"}, {"split", splits[s]}, {"grammar_seed", 3}});
    Batch b = task->sample(200, 11);
    EXPECT_TRUE(b.tokens.equal(task->sample(200, 11).tokens));
    for (int64_t i = 0; i < b.size(); ++i) {
      const int64_t len = b.lengths[i].item<int64_t>();
      std::vector<int64_t> t(len);
      for (int64_t j = 0; j < len; ++j) t[j] = b.tokens[i][j].item<int64_t>();
      ASSERT_EQ(t[0], 1);
      ASSERT_EQ(t[len - 1], 2);
      ASSERT_EQ(t[len - 4], 2);  // <eos> query answer <eos>
      const int64_t query = t[len - 3], answer = t[len - 2];
      EXPECT_EQ(b.targets[i][len - 3].item<int64_t>(), answer);
      EXPECT_EQ(b.targets[i].ne(-100).sum().item<int64_t>(), 1);
      EXPECT_EQ(static_cast<Role>(b.roles[i][len - 3].item<int8_t>()), Role::Query);
      int64_t last_query = -1;
      for (int64_t j = 1; j < len - 4; ++j) {
        EXPECT_EQ(static_cast<Role>(b.roles[i][j].item<int8_t>()), Role::Symbol);
        if (t[j] == query) last_query = j;
      }
      ASSERT_GE(last_query, 1) << "the query occurs in the sentence";
      bool answer_right = false;
      for (int64_t j = last_query + 1; j < len - 4; ++j) answer_right = answer_right || t[j] == answer;
      EXPECT_TRUE(answer_right) << "example " << i;
      pairs[s].insert({query, answer});
    }
    Batch c = task->corrupt(b, 5);
    for (int64_t i = 0; i < b.size(); ++i) {
      const int64_t len = b.lengths[i].item<int64_t>(), q = c.tokens[i][len - 3].item<int64_t>();
      EXPECT_NE(q, b.tokens[i][len - 3].item<int64_t>());
      std::set<int64_t> present;
      for (int64_t j = 1; j < len - 4; ++j) present.insert(b.tokens[i][j].item<int64_t>());
      if (static_cast<int64_t>(present.size()) < 20) EXPECT_FALSE(present.count(q)) << "absent from the sentence when possible";
    }
  }
  for (const auto& p : pairs[1]) EXPECT_FALSE(pairs[0].count(p)) << p.first << " -> " << p.second;
  EXPECT_GT(pairs[1].size(), 3u);
  EXPECT_THROW(make_task({{"task", "atr"}, {"split", "dev"}}), std::invalid_argument);
  EXPECT_THROW(make_task({{"task", "atr"}, {"num_terminal", 20}}), std::invalid_argument);
}
