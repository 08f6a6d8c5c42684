// The built-in tasks of spec §3 (MQAR, single-query AR, position retrieval, n-gram retrieval) and the
// registry. Randomness comes from one splitmix/xorshift generator per example so results are identical
// on every platform (std distributions are not).
#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <set>
#include <stdexcept>

#include <ATen/ATen.h>

#include "core/tasks/task.h"
#include "core/util/sha256.h"
#include "core/util/json.h"
#include "core/util/strings.h"

namespace mechscope {
using nlohmann::json;

const std::vector<std::string>& role_names() {
  static const std::vector<std::string> names = {"pad", "bos", "eos", "sep", "key", "value",
                                                 "symbol", "position", "query", "answer", "filler"};
  return names;
}
const char* role_name(Role r) { return role_names()[static_cast<int>(r)].c_str(); }

namespace {

constexpr int64_t kIgnore = -100;
const std::vector<std::string> kMarkers = {"<pad>", "<bos>", "<eos>", "<sep>", "<query>"};
enum Marker : int64_t { PAD = 0, BOS = 1, EOS = 2, SEP = 3, QUERY = 4 };

// Deterministic generator (xoshiro256** seeded by splitmix64).
class Rng {
 public:
  explicit Rng(uint64_t seed) {
    for (auto& v : s_) v = splitmix(seed);
  }
  uint64_t next() {
    const uint64_t r = rotl(s_[1] * 5, 7) * 9, t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return r;
  }
  /// Uniform in [0, n), unbiased (rejection).
  int64_t below(int64_t n) {
    const uint64_t un = static_cast<uint64_t>(n), limit = UINT64_MAX - UINT64_MAX % un;
    uint64_t v;
    do v = next();
    while (v >= limit);
    return static_cast<int64_t>(v % un);
  }
  double uniform() { return (next() >> 11) * (1.0 / 9007199254740992.0); }
  /// k distinct values of [lo, hi), in random order.
  std::vector<int64_t> distinct(int64_t lo, int64_t hi, int64_t k) {
    std::vector<int64_t> out;
    std::set<int64_t> seen;
    if (k > (hi - lo) / 2) {  // dense: partial Fisher-Yates
      std::vector<int64_t> all(hi - lo);
      std::iota(all.begin(), all.end(), lo);
      for (int64_t i = 0; i < k; ++i) std::swap(all[i], all[i + below(hi - lo - i)]);
      return {all.begin(), all.begin() + k};
    }
    while (static_cast<int64_t>(out.size()) < k) {
      int64_t v = lo + below(hi - lo);
      if (seen.insert(v).second) out.push_back(v);
    }
    return out;
  }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static uint64_t splitmix(uint64_t& x) {
    uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  uint64_t s_[4];
};

// One example under construction.
struct Example {
  std::vector<int64_t> tokens, targets;
  std::vector<Role> roles;
  void push(int64_t tok, Role role, int64_t target = kIgnore) {
    tokens.push_back(tok);
    roles.push_back(role);
    targets.push_back(target);
  }
};

Batch collate(const std::vector<Example>& ex) {
  const int64_t n = static_cast<int64_t>(ex.size());
  int64_t L = 0;
  for (const auto& e : ex) L = std::max<int64_t>(L, e.tokens.size());
  Batch b;
  b.tokens = at::full({n, L}, PAD, at::kLong);
  b.targets = at::full({n, L}, kIgnore, at::kLong);
  b.roles = at::zeros({n, L}, at::kChar);
  b.lengths = at::empty({n}, at::kLong);
  auto tk = b.tokens.accessor<int64_t, 2>();
  auto tg = b.targets.accessor<int64_t, 2>();
  auto rl = b.roles.accessor<int8_t, 2>();
  for (int64_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < ex[i].tokens.size(); ++j) {
      tk[i][j] = ex[i].tokens[j];
      tg[i][j] = ex[i].targets[j];
      rl[i][j] = static_cast<int8_t>(ex[i].roles[j]);
    }
    b.lengths[i] = static_cast<int64_t>(ex[i].tokens.size());
  }
  return b;
}

// Reads task parameters with defaults; unknown keys are errors.
class Params {
 public:
  Params(const json& j, std::string task) : j_(j), task_(std::move(task)) {}
  int64_t integer(const std::string& key, int64_t def, int64_t lo, int64_t hi) {
    used_.push_back(key);
    if (!j_.contains(key)) return def;
    const auto exact = exact_int64(j_[key]);
    if (!exact || !j_[key].is_number_integer())
      throw std::invalid_argument(task_ + "." + key + ": expected an integer, found " + j_[key].dump());
    int64_t v = *exact;
    if (v < lo || v > hi)
      throw std::invalid_argument(task_ + "." + key + ": " + std::to_string(v) + " is outside [" + std::to_string(lo) + ", " +
                                  std::to_string(hi) + "]");
    return v;
  }
  double number(const std::string& key, double def) {
    used_.push_back(key);
    if (!j_.contains(key)) return def;
    if (!j_[key].is_number()) throw std::invalid_argument(task_ + "." + key + ": expected a number");
    return j_[key].get<double>();
  }
  std::string text(const std::string& key, const std::string& def, const std::vector<std::string>& allowed) {
    used_.push_back(key);
    if (!j_.contains(key)) return def;
    std::string v = j_[key].is_string() ? j_[key].get<std::string>() : "";
    if (std::find(allowed.begin(), allowed.end(), v) == allowed.end())
      throw std::invalid_argument(task_ + "." + key + ": expected one of " + join(allowed, ", ") + ", found " + j_[key].dump());
    return v;
  }
  void finish() {
    used_.push_back("task");
    for (const auto& item : j_.items())
      if (std::find(used_.begin(), used_.end(), item.key()) == used_.end())
        throw std::invalid_argument(task_ + ": unknown parameter '" + item.key() + "'; parameters: " + join(used_, ", "));
  }

 private:
  const json& j_;
  std::string task_;
  std::vector<std::string> used_;
};

// A token of [lo, hi) absent from the example, or -1 if every one occurs.
int64_t fresh_token(Rng& rng, const std::vector<int64_t>& present, int64_t lo, int64_t hi) {
  std::set<int64_t> used;
  for (int64_t t : present)
    if (t >= lo && t < hi) used.insert(t);  // only tokens of the range count towards "every one occurs"
  if (static_cast<int64_t>(used.size()) >= hi - lo) return -1;
  for (;;) {
    int64_t v = lo + rng.below(hi - lo);
    if (!used.count(v)) return v;
  }
}

// An independent copy to corrupt.
Batch clone(const Batch& b) { return {b.tokens.clone(), b.targets.clone(), b.roles.clone(), b.lengths.clone()}; }

std::vector<int64_t> row_tokens(const Batch& b, int64_t i) {
  const int64_t len = b.lengths[i].item<int64_t>();
  auto t = b.tokens[i].narrow(0, 0, len).contiguous();
  return {t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + len};
}

// ------------------------------------------------------------------ MQAR (zoology multiquery_ar)

class MqarTask : public Task {
 public:
  explicit MqarTask(const json& j) {
    Params p(j, "mqar");
    V_ = p.integer("vocab_size", 8192, 8, 1 << 20);
    L_ = p.integer("seq_len", 64, 4, 1 << 16);
    N_ = p.integer("num_pairs", 4, 1, 1 << 14);
    min_ = p.integer("min_pairs", N_, 1, N_);
    a_ = p.number("power_a", 0.01);
    zoology_ = p.text("layout", "shown", {"shown", "zoology"}) == "zoology";
    p.finish();
    if (L_ % 2) throw std::invalid_argument("mqar.seq_len must be even, found " + std::to_string(L_));
    if (4 * N_ > L_) throw std::invalid_argument("mqar: 4 * num_pairs must be <= seq_len (context and queries)");
    if (N_ > V_ / 2 - 1) throw std::invalid_argument("mqar: num_pairs exceeds the number of keys (vocab_size / 2 - 1)");
    vocab_.push_back("<pad>");
    for (int64_t i = 1; i < V_ / 2; ++i) vocab_.push_back("k" + std::to_string(i - 1));
    for (int64_t i = V_ / 2; i < V_; ++i) vocab_.push_back("v" + std::to_string(i - V_ / 2));
    for (int64_t n = min_; n <= N_; ++n) {  // each number of pairs has its own query region
      std::vector<double> w;
      for (int64_t i = 1; i <= (L_ - 2 * n) / 2; ++i) w.push_back(a_ * std::pow(static_cast<double>(i), a_ - 1));
      weights_.push_back(std::move(w));
    }
  }
  json config() const override {
    json c = {{"task", "mqar"}, {"vocab_size", V_}, {"seq_len", L_}, {"num_pairs", N_}, {"power_a", a_}};
    if (min_ < N_) c["min_pairs"] = min_;   // defaults stay unnamed: earlier checkpoints' configs unchanged
    if (zoology_) c["layout"] = "zoology";
    return c;
  }
  const std::vector<std::string>& vocab() const override { return vocab_; }
  std::string accuracy_unit() const override { return "position"; }
  std::vector<std::string> corruptible_roles() const override { return {"key", "value", "query"}; }

  Batch sample(int64_t n, uint64_t seed) const override {
    std::vector<Example> out;
    for (int64_t i = 0; i < n; ++i) {
      Rng rng(example_seed(seed, i));
      // min_pairs < num_pairs: this example's number of pairs, uniform (no draw otherwise: the same examples as before)
      const int64_t N = min_ < N_ ? min_ + static_cast<int64_t>(rng.below(N_ - min_ + 1)) : N_;
      auto keys = rng.distinct(1, V_ / 2, N);
      auto vals = rng.distinct(V_ / 2, V_, N);
      // N query slots without replacement, p(slot i) proportional to a i^(a-1).
      std::vector<double> w = weights_[N - min_];
      std::vector<int64_t> slots;
      for (int64_t k = 0; k < N; ++k) {
        double total = std::accumulate(w.begin(), w.end(), 0.0), r = rng.uniform() * total;
        int64_t s = 0;
        while (s + 1 < static_cast<int64_t>(w.size()) && (r -= w[s]) >= 0) ++s;
        while (w[s] == 0) --s;  // rounding at the end of the range
        slots.push_back(s);
        w[s] = 0;
      }
      Example e;
      for (int64_t k = 0; k < N; ++k) {
        e.push(keys[k], Role::Key);
        e.push(vals[k], Role::Value);
      }
      std::vector<int64_t> slot_key(w.size(), -1);
      for (int64_t k = 0; k < N; ++k) slot_key[slots[k]] = k;
      for (size_t s = 0; s < w.size(); ++s) {
        if (slot_key[s] >= 0) {
          e.push(keys[slot_key[s]], Role::Query, vals[slot_key[s]]);
          if (zoology_)
            e.push(1 + rng.below(V_ - 1), Role::Filler);  // the answer is not shown
          else
            e.push(vals[slot_key[s]], Role::Answer);
        } else if (zoology_) {
          e.push(1 + rng.below(V_ - 1), Role::Filler);
          e.push(1 + rng.below(V_ - 1), Role::Filler);
        } else {
          e.push(V_ / 2 + rng.below(V_ - V_ / 2), Role::Filler);
          e.push(V_ / 2 + rng.below(V_ - V_ / 2), Role::Filler);
        }
      }
      out.push_back(std::move(e));
    }
    return collate(out);
  }

  // Corrupts with respect to the last query of each example.
  Batch corrupt(const Batch& clean, uint64_t seed, const std::string& role_in) const override {
    const std::string role = role_in.empty() ? "key" : role_in;
    Batch c = clone(clean);
    for (int64_t i = 0; i < clean.size(); ++i) {
      Rng rng(example_seed(seed, i) ^ 0x5bd1e995);
      auto toks = row_tokens(clean, i);
      int64_t q = -1;
      for (int64_t j = 0; j < static_cast<int64_t>(toks.size()); ++j)
        if (clean.roles[i][j].item<int8_t>() == static_cast<int8_t>(Role::Query)) q = j;
      if (q < 0) continue;
      int64_t ctx_key = -1;  // the context: the leading key-value pairs (their number varies with min_pairs)
      for (int64_t j = 0; j + 1 < q && clean.roles[i][j].item<int8_t>() == static_cast<int8_t>(Role::Key); j += 2)
        if (toks[j] == toks[q]) ctx_key = j;
      int64_t pos = role == "key" ? ctx_key : role == "value" ? ctx_key + 1 : q;
      if (role != "key" && role != "value" && role != "query")
        throw std::invalid_argument("mqar: cannot corrupt role '" + role + "'; roles: key, value, query");
      bool is_key = role != "value";
      int64_t v = fresh_token(rng, toks, is_key ? 1 : V_ / 2, is_key ? V_ / 2 : V_);
      if (v >= 0 && pos >= 0) c.tokens[i][pos] = v;
    }
    return c;
  }

 private:
  int64_t V_, L_, N_, min_;
  double a_;
  bool zoology_ = false;  // layout=zoology: zoology's query region (answers not shown, random tokens elsewhere)
  std::vector<std::vector<double>> weights_;  // per number of pairs, min_ first: the query slots' weights
  std::vector<std::string> vocab_;
};

// ------------------------------------------------------------------ AR, single query (tinylang ar.py)

class ArTask : public Task {
 public:
  explicit ArTask(const json& j) {
    Params p(j, "ar");
    N_ = p.integer("num_pairs", 16, 1, 4096);
    K_ = p.integer("num_keys", 4096, 2, 1 << 20);
    V_ = p.integer("num_values", 4096, 2, 1 << 20);
    // tinylang's ar.py draws each example's number of pairs uniformly from [min_length / 2, max_length / 2];
    // min_pairs (default num_pairs: every example has num_pairs) is that lower end.
    M_ = p.integer("min_pairs", N_, 1, 4096);
    p.finish();
    if (N_ > K_ || N_ > V_) throw std::invalid_argument("ar: num_pairs exceeds num_keys or num_values");
    if (M_ > N_) throw std::invalid_argument("ar: min_pairs (" + std::to_string(M_) + ") exceeds num_pairs (" + std::to_string(N_) + ")");
    vocab_ = kMarkers;
    for (int64_t i = 0; i < K_; ++i) vocab_.push_back("k" + std::to_string(i));
    for (int64_t i = 0; i < V_; ++i) vocab_.push_back("v" + std::to_string(i));
  }
  json config() const override {
    json c = {{"task", "ar"}, {"num_pairs", N_}, {"num_keys", K_}, {"num_values", V_}};
    if (M_ != N_) c["min_pairs"] = M_;  // written only when set, so older configs read back unchanged
    return c;
  }
  const std::vector<std::string>& vocab() const override { return vocab_; }
  std::vector<std::string> corruptible_roles() const override { return {"key", "value", "query"}; }
  int64_t key0() const { return static_cast<int64_t>(kMarkers.size()); }
  int64_t val0() const { return key0() + K_; }

  Batch sample(int64_t n, uint64_t seed) const override {
    std::vector<Example> out;
    for (int64_t i = 0; i < n; ++i) {
      Rng rng(example_seed(seed, i));
      const int64_t np = M_ == N_ ? N_ : M_ + rng.below(N_ - M_ + 1);
      auto keys = rng.distinct(key0(), key0() + K_, np);
      auto vals = rng.distinct(val0(), val0() + V_, np);
      const int64_t q = rng.below(np);
      Example e;
      e.push(BOS, Role::Bos);
      for (int64_t k = 0; k < np; ++k) {
        e.push(keys[k], Role::Key);
        e.push(vals[k], Role::Value);
      }
      e.push(EOS, Role::Eos);
      e.push(keys[q], Role::Query, vals[q]);
      e.push(vals[q], Role::Answer);
      e.push(EOS, Role::Eos);
      out.push_back(std::move(e));
    }
    return collate(out);
  }

  Batch corrupt(const Batch& clean, uint64_t seed, const std::string& role_in) const override {
    const std::string role = role_in.empty() ? "key" : role_in;
    if (role != "key" && role != "value" && role != "query")
      throw std::invalid_argument("ar: cannot corrupt role '" + role + "'; roles: key, value, query");
    Batch c = clone(clean);
    for (int64_t i = 0; i < clean.size(); ++i) {
      Rng rng(example_seed(seed, i) ^ 0x5bd1e995);
      auto toks = row_tokens(clean, i);
      const int64_t np = (clean.lengths[i].item<int64_t>() - 5) / 2;  // <bos> pairs <eos> kq vq <eos>
      const int64_t q = 2 * np + 2;                                   // kq
      int64_t ctx = -1;
      for (int64_t j = 1; j < 2 * np + 1; j += 2)
        if (toks[j] == toks[q]) ctx = j;
      const int64_t pos = role == "key" ? ctx : role == "value" ? ctx + 1 : q;
      const bool is_key = role != "value";
      int64_t v = fresh_token(rng, toks, is_key ? key0() : val0(), is_key ? key0() + K_ : val0() + V_);
      if (v >= 0) c.tokens[i][pos] = v;
    }
    return c;
  }

 private:
  int64_t N_, K_, V_, M_;
  std::vector<std::string> vocab_;
};

// ------------------------------------------------------------------ position retrieval (retrievit)

class PositionTask : public Task {
 public:
  explicit PositionTask(const json& j) {
    Params p(j, "position");
    variant_ = p.text("variant", "permutation", {"permutation", "variable"});
    S_ = p.integer("num_symbols", variant_ == "permutation" ? 200 : 30, 2, 1 << 16);
    L_ = p.integer("seq_len", variant_ == "permutation" ? S_ : 100, 1, 1 << 16);
    p.finish();
    if (variant_ == "permutation" && L_ != S_)
      throw std::invalid_argument("position: a permutation has seq_len = num_symbols (" + std::to_string(S_) + ")");
    vocab_ = kMarkers;
    for (int64_t i = 0; i < S_; ++i) vocab_.push_back("s" + std::to_string(i));
    for (int64_t i = 0; i < L_; ++i) vocab_.push_back("p" + std::to_string(i));
  }
  json config() const override { return {{"task", "position"}, {"variant", variant_}, {"num_symbols", S_}, {"seq_len", L_}}; }
  const std::vector<std::string>& vocab() const override { return vocab_; }
  std::vector<std::string> corruptible_roles() const override { return {"query"}; }
  std::vector<int64_t> embedding_probe_ids() const override {
    std::vector<int64_t> ids(L_);
    std::iota(ids.begin(), ids.end(), pos0());
    return ids;
  }
  int64_t sym0() const { return static_cast<int64_t>(kMarkers.size()); }
  int64_t pos0() const { return sym0() + S_; }

  Batch sample(int64_t n, uint64_t seed) const override {
    std::vector<Example> out;
    for (int64_t i = 0; i < n; ++i) {
      Rng rng(example_seed(seed, i));
      std::vector<int64_t> seq;
      const int64_t t = rng.below(L_);
      int64_t s;
      if (variant_ == "permutation") {
        seq = rng.distinct(sym0(), sym0() + S_, S_);
        s = seq[t];
      } else {
        // The query symbol occurs once, at t; every other position is uniform over the other symbols.
        s = sym0() + rng.below(S_);
        for (int64_t k = 0; k < L_; ++k) {
          int64_t v = sym0() + rng.below(S_ - 1);
          seq.push_back(k == t ? s : (v >= s ? v + 1 : v));
        }
      }
      Example e;
      e.push(BOS, Role::Bos);
      for (auto v : seq) e.push(v, Role::Symbol);
      e.push(QUERY, Role::Sep);
      e.push(s, Role::Query, pos0() + t);
      e.push(pos0() + t, Role::Answer);
      out.push_back(std::move(e));
    }
    return collate(out);
  }

  // A permutation holds every symbol, so the query is replaced by another symbol of the context (its answer changes).
  Batch corrupt(const Batch& clean, uint64_t seed, const std::string& role_in) const override {
    if (!role_in.empty() && role_in != "query") throw std::invalid_argument("position: only the query can be corrupted");
    Batch c = clone(clean);
    for (int64_t i = 0; i < clean.size(); ++i) {
      Rng rng(example_seed(seed, i) ^ 0x5bd1e995);
      const int64_t q = L_ + 2;
      const int64_t old = clean.tokens[i][q].item<int64_t>();
      int64_t v;
      do v = clean.tokens[i][1 + rng.below(L_)].item<int64_t>();
      while (v == old && L_ > 1);
      c.tokens[i][q] = v;
    }
    return c;
  }

 private:
  std::string variant_;
  int64_t S_, L_;
  std::vector<std::string> vocab_;
};

// ------------------------------------------------------------------ n-gram retrieval (retrievit)

class NgramTask : public Task {
 public:
  explicit NgramTask(const json& j) {
    Params p(j, "ngram");
    V_ = p.integer("num_symbols", 30, 2, 1 << 16);
    min_len_ = p.integer("min_len", 50, 6, 1 << 16);
    max_len_ = p.integer("max_len", 100, 6, 1 << 16);
    format_ = p.text("format", "suffix", {"suffix", "prefix"});
    p.finish();
    if (min_len_ > max_len_) throw std::invalid_argument("ngram: min_len must be <= max_len");
    vocab_ = kMarkers;
    for (int64_t i = 0; i < V_; ++i) vocab_.push_back("s" + std::to_string(i));
  }
  json config() const override {
    return {{"task", "ngram"}, {"num_symbols", V_}, {"min_len", min_len_}, {"max_len", max_len_}, {"format", format_}};
  }
  const std::vector<std::string>& vocab() const override { return vocab_; }
  std::vector<std::string> corruptible_roles() const override { return {"query"}; }
  int64_t sym0() const { return static_cast<int64_t>(kMarkers.size()); }

  static int64_t count_bigram(const std::vector<int64_t>& s, int64_t a, int64_t b) {
    int64_t c = 0;
    for (size_t k = 0; k + 1 < s.size(); ++k) c += s[k] == a && s[k + 1] == b;
    return c;
  }

  Batch sample(int64_t n, uint64_t seed) const override {
    std::vector<Example> out;
    for (int64_t i = 0; i < n; ++i) {
      Rng rng(example_seed(seed, i));
      std::vector<int64_t> seq;
      int64_t t = -1;
      while (t < 0) {  // resample until the query bigram occurs exactly once
        const int64_t L = min_len_ + rng.below(max_len_ - min_len_ + 1);
        seq.assign(L, 0);
        for (auto& v : seq) v = sym0() + rng.below(V_);
        for (int tries = 0; tries < 16 && t < 0; ++tries) {
          int64_t c = rng.below(L - 4);
          if (count_bigram(seq, seq[c], seq[c + 1]) == 1) t = c;
        }
      }
      Example e;
      auto query = [&] {
        e.push(QUERY, Role::Sep);
        e.push(seq[t], Role::Query);
        e.push(seq[t + 1], Role::Query);
      };
      if (format_ == "prefix") query();
      e.push(BOS, Role::Bos);
      for (auto v : seq) e.push(v, Role::Symbol);
      e.push(BOS, Role::Bos);
      if (format_ == "suffix") {
        query();
        e.push(QUERY, Role::Sep, seq[t + 2]);
      } else {
        e.push(QUERY, Role::Sep, seq[t + 2]);
      }
      e.push(seq[t + 2], Role::Answer, seq[t + 3]);
      e.push(seq[t + 3], Role::Answer, seq[t + 4]);
      e.push(seq[t + 4], Role::Answer);
      out.push_back(std::move(e));
    }
    return collate(out);
  }

  // Replaces the second query symbol so that the corrupted bigram occurs nowhere in the sequence, if possible.
  Batch corrupt(const Batch& clean, uint64_t seed, const std::string& role_in) const override {
    if (!role_in.empty() && role_in != "query") throw std::invalid_argument("ngram: only the query can be corrupted");
    Batch c = clone(clean);
    for (int64_t i = 0; i < clean.size(); ++i) {
      Rng rng(example_seed(seed, i) ^ 0x5bd1e995);
      auto toks = row_tokens(clean, i);
      std::vector<int64_t> qpos, seq;
      for (size_t j = 0; j < toks.size(); ++j) {
        auto r = static_cast<Role>(clean.roles[i][j].item<int8_t>());
        if (r == Role::Query) qpos.push_back(j);
        if (r == Role::Symbol) seq.push_back(toks[j]);
      }
      if (qpos.size() != 2) continue;
      const int64_t a = toks[qpos[0]], old = toks[qpos[1]];
      int64_t pick = -1;
      for (int tries = 0; tries < 64 && pick < 0; ++tries) {
        int64_t v = sym0() + rng.below(V_);
        if (v != old && count_bigram(seq, a, v) == 0) pick = v;
      }
      if (pick < 0) pick = sym0() + (old - sym0() + 1) % V_;
      c.tokens[i][qpos[1]] = pick;
    }
    return c;
  }

 private:
  int64_t V_, min_len_, max_len_;
  std::string format_;
  std::vector<std::string> vocab_;
};

// ------------------------------------------------------------------ copy and n-gram lookup (P2 data_utils.py)

class CopyTask : public Task {
 public:
  CopyTask(const json& j, bool lookup) : lookup_(lookup) {
    Params p(j, lookup ? "lookup" : "copy");
    A_ = p.integer("alphabet", 26, 2, 26);
    min_len_ = p.integer("min_len", 20, 1, 1 << 14);
    max_len_ = p.integer("max_len", 50, 1, 1 << 14);
    if (lookup) {
      format_ = p.text("format", "suffix", {"suffix", "prefix"});
      n_ = p.integer("ngram", 3, 1, 64);
      answer_len_ = p.integer("answer_len", -1, -1, 1 << 14);
    } else {
      answer_len_ = p.integer("answer_len", -1, -1, 1 << 14);
    }
    p.finish();
    if (min_len_ > max_len_) throw std::invalid_argument(std::string(lookup ? "lookup" : "copy") + ": min_len must be <= max_len");
    if (lookup && min_len_ <= n_ + std::max<int64_t>(answer_len_, 0) + 1)
      throw std::invalid_argument("lookup: min_len must exceed ngram + answer_len + 1");
    vocab_ = kMarkers;
    for (int64_t i = 0; i < 26; ++i) vocab_.push_back(std::string(1, static_cast<char>('a' + i)));
    vocab_.push_back("$");
    vocab_.push_back("|");
    vocab_.push_back(".");
  }
  json config() const override {
    json j = {{"task", lookup_ ? "lookup" : "copy"}, {"alphabet", A_}, {"min_len", min_len_}, {"max_len", max_len_},
              {"answer_len", answer_len_}};
    if (lookup_) {
      j["format"] = format_;
      j["ngram"] = n_;
    }
    return j;
  }
  const std::vector<std::string>& vocab() const override { return vocab_; }
  std::vector<std::string> corruptible_roles() const override { return {lookup_ ? "query" : "symbol"}; }
  int64_t letter0() const { return static_cast<int64_t>(kMarkers.size()); }
  int64_t dollar() const { return letter0() + 26; }
  int64_t bar() const { return letter0() + 27; }
  int64_t dot() const { return letter0() + 28; }

  Batch sample(int64_t n, uint64_t seed) const override {
    std::vector<Example> out;
    for (int64_t i = 0; i < n; ++i) {
      Rng rng(example_seed(seed, i));
      const int64_t len = min_len_ + rng.below(max_len_ - min_len_ + 1);
      std::vector<int64_t> s(len);
      std::vector<int64_t> gram, answer;
      for (;;) {
        for (auto& v : s) v = letter0() + rng.below(A_);
        if (!lookup_) {
          answer.assign(s.begin(), s.begin() + (answer_len_ > 0 ? std::min(answer_len_, len) : len));
          break;
        }
        // A unique n-gram with room for the answer after it (P2 generate_str_unique_ngram).
        const int64_t limit = len - n_ - (answer_len_ > 0 ? answer_len_ : 0) - 1;
        std::vector<int64_t> unique;
        for (int64_t k = 0; k < limit; ++k) {
          int64_t count = 0;
          for (int64_t m = 0; m + n_ <= len; ++m) count += std::equal(s.begin() + k, s.begin() + k + n_, s.begin() + m);
          if (count == 1) unique.push_back(k);
        }
        if (unique.empty()) continue;
        const int64_t at_ = unique[rng.below(static_cast<int64_t>(unique.size()))];
        gram.assign(s.begin() + at_, s.begin() + at_ + n_);
        const int64_t rest = len - at_ - n_;
        answer.assign(s.begin() + at_ + n_, s.begin() + at_ + n_ + (answer_len_ > 0 ? std::min(answer_len_, rest) : rest));
        break;
      }
      Example e;
      e.push(dollar(), Role::Bos);
      auto push_answer = [&](Example& ex) {
        // The position before the answer predicts its first token; each answer token predicts the next; then '.'.
        ex.targets.back() = answer[0];
        for (size_t k = 0; k < answer.size(); ++k) ex.push(answer[k], Role::Answer, k + 1 < answer.size() ? answer[k + 1] : dot());
        ex.push(dot(), Role::Eos);
      };
      if (!lookup_) {
        for (auto v : s) e.push(v, Role::Symbol);
        e.push(bar(), Role::Sep);
        push_answer(e);
      } else if (format_ == "prefix") {
        for (auto v : gram) e.push(v, Role::Query);
        e.push(bar(), Role::Sep);
        for (auto v : s) e.push(v, Role::Symbol);
        e.push(bar(), Role::Sep);
        push_answer(e);
      } else {
        for (auto v : s) e.push(v, Role::Symbol);
        e.push(bar(), Role::Sep);
        for (auto v : gram) e.push(v, Role::Query);
        push_answer(e);
      }
      out.push_back(std::move(e));
    }
    return collate(out);
  }

  // copy: one character of the string becomes another letter; lookup: one n-gram character changes so that
  // the n-gram occurs nowhere in the string when possible.
  Batch corrupt(const Batch& clean, uint64_t seed, const std::string& role_in) const override {
    const std::string want = lookup_ ? "query" : "symbol";
    if (!role_in.empty() && role_in != want)
      throw std::invalid_argument(std::string(lookup_ ? "lookup" : "copy") + ": only the " + want + " can be corrupted");
    Batch c = clone(clean);
    const Role target_role = lookup_ ? Role::Query : Role::Symbol;
    for (int64_t i = 0; i < clean.size(); ++i) {
      Rng rng(example_seed(seed, i) ^ 0x5bd1e995);
      auto toks = row_tokens(clean, i);
      std::vector<int64_t> pos;
      for (size_t j = 0; j < toks.size(); ++j)
        if (static_cast<Role>(clean.roles[i][j].item<int8_t>()) == target_role) pos.push_back(j);
      if (pos.empty()) continue;
      const int64_t j = pos[rng.below(static_cast<int64_t>(pos.size()))];
      int64_t v;
      do v = letter0() + rng.below(A_);
      while (v == toks[j]);
      c.tokens[i][j] = v;
    }
    return c;
  }

 private:
  bool lookup_;
  int64_t A_, min_len_, max_len_, n_ = 0, answer_len_ = -1;
  std::string format_;
  std::vector<std::string> vocab_;
};


// ------------------------------------------------------------------ ATR (tinylang pcfg.py, spec §3.6)

// A random PCFG with depth levels (a nonterminal's children have a strictly higher level, so no recursion).
// Expanding a nonterminal emits its children, then a head terminal drawn from its own distribution; a child's
// parent is that head. Query: a terminal (the rightmost occurrence of its symbol); answer: its parent's head.
class AtrTask : public Task {
 public:
  explicit AtrTask(const json& j) {
    Params p(j, "atr");
    S_ = p.integer("num_terminals", 20, 2, 8192);
    NT_ = p.integer("num_nonterminals", 40, 1, 1000);
    max_rhs_ = p.integer("max_rhs_len", 10, 1, 64);
    max_rules_ = p.integer("max_rules_per_nt", 5, 1, 64);
    max_depth_ = p.integer("max_depth", 5, 1, 32);
    max_len_ = p.integer("max_len", 256, 8, 1 << 16);
    grammar_seed_ = static_cast<uint64_t>(p.integer("grammar_seed", 0, 0, int64_t(1) << 40));
    split_ = p.text("split", "train", {"train", "test", "all"});
    p.finish();
    vocab_ = kMarkers;
    for (int64_t i = 0; i < S_; ++i) vocab_.push_back("t" + std::to_string(i));
    build_grammar();
  }
  json config() const override {
    return {{"task", "atr"},          {"num_terminals", S_},  {"num_nonterminals", NT_}, {"max_rhs_len", max_rhs_},
            {"max_rules_per_nt", max_rules_}, {"max_depth", max_depth_}, {"max_len", max_len_},
            {"grammar_seed", grammar_seed_}, {"split", split_}};
  }
  const std::vector<std::string>& vocab() const override { return vocab_; }
  std::vector<std::string> corruptible_roles() const override { return {"query"}; }

  /// The generalisation split: 20% of (query, answer) terminal pairs appear only in the test split.
  bool held_out(int64_t query, int64_t answer) const {
    uint64_t h = grammar_seed_ * 0x9e3779b97f4a7c15ULL ^ (static_cast<uint64_t>(query) * 0xbf58476d1ce4e5b9ULL) ^
                 (static_cast<uint64_t>(answer) * 0x94d049bb133111ebULL);
    h ^= h >> 31;
    h *= 0xd6e8feb86659fd93ULL;
    h ^= h >> 32;
    return h % 5 == 0;
  }

  Batch sample(int64_t n, uint64_t seed) const override {
    std::vector<Example> out;
    for (int64_t i = 0; i < n; ++i) {
      Rng rng(example_seed(seed, i));
      for (int attempt = 0;; ++attempt) {
        if (attempt > 10000)
          throw std::runtime_error("atr: no sentence fits max_len " + std::to_string(max_len_) +
                                   " with an eligible query after 10000 draws; raise max_len or change the grammar");
        std::vector<Node> sent;
        int64_t next_id = 0;
        if (!expand(rng, static_cast<int64_t>(rng.below(NT_)), -1, sent, 0, next_id)) continue;
        if (static_cast<int64_t>(sent.size()) + 5 > max_len_) continue;
        // Sample the target (a head with children) first, then the query among its children that are the
        // rightmost occurrence of their symbol and whose pair belongs to this split.
        std::vector<int64_t> heads;
        for (size_t k = 0; k < sent.size(); ++k)
          if (has_child(sent, sent[k].id)) heads.push_back(static_cast<int64_t>(k));
        if (heads.empty()) continue;
        const Node& head = sent[heads[rng.below(static_cast<int64_t>(heads.size()))]];
        std::vector<int64_t> queries;
        for (size_t k = 0; k < sent.size(); ++k) {
          if (sent[k].parent != head.id || !rightmost(sent, k)) continue;
          const bool out_pair = held_out(sent[k].label, head.label);
          if (split_ == "all" || (split_ == "test") == out_pair) queries.push_back(static_cast<int64_t>(k));
        }
        if (queries.empty()) continue;
        const Node& q = sent[queries[rng.below(static_cast<int64_t>(queries.size()))]];
        Example e;
        e.push(BOS, Role::Bos);
        for (const auto& node : sent) e.push(5 + node.label, Role::Symbol);
        e.push(EOS, Role::Eos);
        e.push(5 + q.label, Role::Query, 5 + head.label);
        e.push(5 + head.label, Role::Answer);
        e.push(EOS, Role::Eos);
        out.push_back(std::move(e));
        break;
      }
    }
    return collate(out);
  }

  Batch corrupt(const Batch& clean, uint64_t seed, const std::string& role_in) const override {
    if (!role_in.empty() && role_in != "query") throw std::invalid_argument("atr: only the query can be corrupted");
    Batch c = clone(clean);
    for (int64_t i = 0; i < clean.size(); ++i) {
      Rng rng(example_seed(seed, i) ^ 0x5bd1e995);
      auto toks = row_tokens(clean, i);
      for (int64_t j = 0; j < static_cast<int64_t>(toks.size()); ++j)
        if (clean.roles[i][j].item<int8_t>() == static_cast<int8_t>(Role::Query)) {
          // A terminal absent from the sentence; when every terminal occurs, another terminal (its parent differs).
          int64_t v = fresh_token(rng, toks, 5, 5 + S_);
          while (v < 0 || v == toks[j]) v = 5 + rng.below(S_);
          c.tokens[i][j] = v;
        }
    }
    return c;
  }

 private:
  struct Node {
    int64_t label, id, parent;  // parent: the id of the head node this one hangs under (-1: none)
  };
  struct Rule {
    std::vector<int64_t> rhs;  // >= 0: terminal index; < 0: nonterminal -(k+1)
  };

  static std::vector<double> dirichlet(Rng& rng, int64_t k) {
    std::vector<double> w(k);
    double sum = 0;
    for (auto& x : w) sum += (x = -std::log(1.0 - rng.uniform()));
    for (auto& x : w) x /= sum;
    return w;
  }
  static int64_t draw(Rng& rng, const std::vector<double>& p) {
    double u = rng.uniform(), acc = 0;
    for (size_t i = 0; i < p.size(); ++i)
      if ((acc += p[i]) >= u) return static_cast<int64_t>(i);
    return static_cast<int64_t>(p.size()) - 1;
  }

  void build_grammar() {
    Rng rng(grammar_seed_ * 0x2545f4914f6cdd1dULL + 7);
    level_.resize(NT_);
    for (auto& l : level_) l = max_depth_ > 1 ? 1 + rng.below(max_depth_ - 1) : 1;
    rules_.resize(NT_);
    rule_p_.resize(NT_);
    head_p_.resize(NT_);
    for (int64_t nt = 0; nt < NT_; ++nt) {
      std::vector<int64_t> pool;  // terminals, then the nonterminals of a deeper level
      for (int64_t t = 0; t < S_; ++t) pool.push_back(t);
      for (int64_t o = 0; o < NT_; ++o)
        if (level_[o] > level_[nt]) pool.push_back(-(o + 1));
      const int64_t nrules = 1 + rng.below(max_rules_);
      for (int64_t r = 0; r < nrules; ++r) {
        const int64_t len = std::min<int64_t>(1 + rng.below(max_rhs_), static_cast<int64_t>(pool.size()));
        std::vector<int64_t> shuffled = pool;  // distinct children, as choice(..., replace=False)
        for (int64_t k = 0; k < len; ++k) std::swap(shuffled[k], shuffled[k + rng.below(shuffled.size() - k)]);
        rules_[nt].push_back({std::vector<int64_t>(shuffled.begin(), shuffled.begin() + len)});
      }
      rule_p_[nt] = dirichlet(rng, nrules);
      head_p_[nt] = dirichlet(rng, S_);
    }
  }

  // Appends the expansion of `nt` (children, then its head) under parent head `parent`; false if too long.
  bool expand(Rng& rng, int64_t nt, int64_t parent, std::vector<Node>& out, int depth, int64_t& next_id) const {
    if (depth > 64 || static_cast<int64_t>(out.size()) > max_len_) return false;
    const int64_t head_id = next_id++;
    const Rule& rule = rules_[nt][draw(rng, rule_p_[nt])];
    for (int64_t child : rule.rhs) {
      if (child >= 0) out.push_back({child, next_id++, head_id});
      else if (!expand(rng, -child - 1, head_id, out, depth + 1, next_id)) return false;
    }
    out.push_back({draw(rng, head_p_[nt]), head_id, parent});
    return true;
  }
  static bool has_child(const std::vector<Node>& s, int64_t id) {
    for (const auto& n : s)
      if (n.parent == id) return true;
    return false;
  }
  static bool rightmost(const std::vector<Node>& s, size_t k) {
    for (size_t j = k + 1; j < s.size(); ++j)
      if (s[j].label == s[k].label) return false;
    return true;
  }

  int64_t S_, NT_, max_rhs_, max_rules_, max_depth_, max_len_;
  uint64_t grammar_seed_;
  std::string split_;
  std::vector<std::string> vocab_;
  std::vector<int64_t> level_;
  std::vector<std::vector<Rule>> rules_;
  std::vector<std::vector<double>> rule_p_, head_p_;
};
}  // namespace

std::vector<std::string> builtin_task_names() { return {"mqar", "ar", "position", "ngram", "copy", "lookup", "atr"}; }

std::unique_ptr<Task> make_builtin_task(const json& config) {
  const std::string name = config["task"].get<std::string>();
  if (name == "mqar") return std::make_unique<MqarTask>(config);
  if (name == "ar") return std::make_unique<ArTask>(config);
  if (name == "position") return std::make_unique<PositionTask>(config);
  if (name == "ngram") return std::make_unique<NgramTask>(config);
  if (name == "copy") return std::make_unique<CopyTask>(config, false);
  if (name == "lookup") return std::make_unique<CopyTask>(config, true);
  if (name == "atr") return std::make_unique<AtrTask>(config);
  throw std::invalid_argument("unknown built-in task '" + name + "'");
}

uint64_t example_seed(uint64_t seed, int64_t i) {
  return seed * 0x9e3779b97f4a7c15ULL + static_cast<uint64_t>(i) * 0xd1b54a32d192ed03ULL + 1;
}

std::string task_config_summary(const json& config) {
  if (config.is_object() && config.value("task", std::string()) == "dataset" && config.contains("file") &&
      config.at("file").is_string() && config.contains("sha256") && config.at("sha256").is_string())
    return "dataset " + config.at("file").get<std::string>() + " (" + config.value("lines", json(0)).dump() +
           " lines, sha256 " + config.at("sha256").get<std::string>().substr(0, 12) + ")";
  if (!config.is_object() || !config.contains("tokenizer") || !config.at("tokenizer").is_object()) return config.dump();
  json shown = config;
  const json& t = config.at("tokenizer");
  const size_t n = t.contains("model") && t.at("model").contains("vocab") ? t.at("model").at("vocab").size() : 0;
  shown["tokenizer"] = "tokenizer.json (" + std::to_string(n) + " entries, sha256 " + sha256_hex(t.dump()).substr(0, 12) + ")";
  return shown.dump();
}

double task_accuracy(const Task& task, const at::Tensor& logits, const Batch& batch) {
  at::Tensor pred = logits.argmax(-1).to(at::kCPU);
  at::Tensor mask = batch.targets.ne(kIgnore);
  at::Tensor correct = pred.eq(batch.targets) | mask.logical_not();
  if (task.accuracy_unit() == "position") {
    const double n = mask.sum().item<double>();
    return n > 0 ? (pred.eq(batch.targets) & mask).sum().item<double>() / n : 0.0;
  }
  return correct.all(1).to(at::kDouble).mean().item<double>();
}

}  // namespace mechscope
