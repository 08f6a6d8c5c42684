// Plugin: the phone-book task of P2 ("Repeat After Me", arXiv 2402.01032): a list of (name, number) entries,
// then a query name; the answer is that entry's number, digit by digit.
//   <bos> n a m e 5 5 5 1 <sep> ... <query> n a m e <sep> 5 5 5 1 <eos>
// Roles: name letters key, digits value, query name query, answer digits answer. Corruptions: "key" changes
// one letter of the queried entry's name in the book, "query" one letter of the query (never into another
// entry's name), so the answer is no longer recoverable.
#include <set>
#include <stdexcept>

#include <ATen/ATen.h>

#include "core/plugin/plugin.h"

namespace {

using nlohmann::json;
using mechscope::Batch;
using mechscope::Role;

// splitmix64: a deterministic stream per (seed, example).
struct Rng {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  int64_t below(int64_t n) { return static_cast<int64_t>(next() % static_cast<uint64_t>(n)); }
};

class Phonebook : public mechscope::Task {
 public:
  explicit Phonebook(const json& c) {
    for (const auto& item : c.items())
      if (item.key() != "task" && item.key() != "num_entries" && item.key() != "name_len" && item.key() != "number_len")
        throw std::invalid_argument("phonebook: unknown parameter '" + item.key() + "' (num_entries, name_len, number_len)");
    N_ = c.value("num_entries", 8);
    name_len_ = c.value("name_len", 3);
    num_len_ = c.value("number_len", 4);
    if (N_ < 1 || N_ > 1000 || name_len_ < 1 || name_len_ > 16 || num_len_ < 1 || num_len_ > 16)
      throw std::invalid_argument("phonebook: num_entries 1..1000, name_len and number_len 1..16");
    vocab_ = {"<pad>", "<bos>", "<eos>", "<sep>", "<query>"};
    for (char ch = 'a'; ch <= 'z'; ++ch) vocab_.push_back(std::string(1, ch));
    for (char ch = '0'; ch <= '9'; ++ch) vocab_.push_back(std::string(1, ch));
  }
  json config() const override {
    return {{"task", "phonebook"}, {"num_entries", N_}, {"name_len", name_len_}, {"number_len", num_len_}};
  }
  const std::vector<std::string>& vocab() const override { return vocab_; }
  std::string accuracy_unit() const override { return "example"; }
  std::vector<std::string> corruptible_roles() const override { return {"key", "query"}; }

  int64_t length() const { return 1 + N_ * (name_len_ + num_len_ + 1) + 1 + name_len_ + 1 + num_len_ + 1; }

  Batch sample(int64_t n, uint64_t seed) const override {
    const int64_t L = length();
    at::Tensor tokens = at::zeros({n, L}, at::kLong), targets = at::full({n, L}, -100, at::kLong);
    at::Tensor roles = at::zeros({n, L}, at::kChar);
    auto T = tokens.accessor<int64_t, 2>();
    auto Y = targets.accessor<int64_t, 2>();
    auto R = roles.accessor<int8_t, 2>();
    for (int64_t e = 0; e < n; ++e) {
      Rng rng{seed * 0x100000001b3ULL + static_cast<uint64_t>(e) * 0x9e3779b97f4a7c15ULL + 17};
      std::set<std::vector<int64_t>> names;
      std::vector<std::vector<int64_t>> book_names, book_numbers;
      while (static_cast<int64_t>(book_names.size()) < N_) {
        std::vector<int64_t> name(name_len_);
        for (auto& c : name) c = 5 + rng.below(26);
        if (!names.insert(name).second) continue;
        std::vector<int64_t> number(num_len_);
        for (auto& d : number) d = 31 + rng.below(10);
        book_names.push_back(name);
        book_numbers.push_back(number);
      }
      const int64_t q = rng.below(N_);
      int64_t j = 0;
      auto put = [&](int64_t tok, Role role) {
        T[e][j] = tok;
        R[e][j] = static_cast<int8_t>(role);
        ++j;
      };
      put(1, Role::Bos);
      for (int64_t i = 0; i < N_; ++i) {
        for (auto c : book_names[i]) put(c, Role::Key);
        for (auto d : book_numbers[i]) put(d, Role::Value);
        put(3, Role::Sep);
      }
      put(4, Role::Sep);
      for (auto c : book_names[q]) put(c, Role::Query);
      put(3, Role::Sep);
      for (auto d : book_numbers[q]) {
        Y[e][j - 1] = d;  // predicted at the previous position
        put(d, Role::Answer);
      }
      put(2, Role::Eos);
    }
    return {tokens, targets, roles, at::full({n}, L, at::kLong)};
  }

  Batch corrupt(const Batch& clean, uint64_t seed, const std::string& role_in) const override {
    const std::string role = role_in.empty() ? "key" : role_in;
    if (role != "key" && role != "query") throw std::invalid_argument("phonebook: roles to corrupt are key and query");
    Batch c{clean.tokens.clone(), clean.targets.clone(), clean.roles.clone(), clean.lengths.clone()};
    const int64_t entry = name_len_ + num_len_ + 1;
    for (int64_t e = 0; e < clean.size(); ++e) {
      Rng rng{seed * 0x9e3779b97f4a7c15ULL + static_cast<uint64_t>(e) + 99};
      auto toks = clean.tokens[e];
      const int64_t qpos = 1 + N_ * entry + 1;  // first query letter
      std::vector<int64_t> query(name_len_);
      for (int64_t k = 0; k < name_len_; ++k) query[k] = toks[qpos + k].item<int64_t>();
      int64_t target_entry = -1;
      std::set<std::vector<int64_t>> names;
      for (int64_t i = 0; i < N_; ++i) {
        std::vector<int64_t> name(name_len_);
        for (int64_t k = 0; k < name_len_; ++k) name[k] = toks[1 + i * entry + k].item<int64_t>();
        if (name == query) target_entry = i;
        names.insert(name);
      }
      const int64_t start = role == "key" ? 1 + target_entry * entry : qpos;
      for (int attempt = 0; attempt < 100; ++attempt) {
        std::vector<int64_t> changed = query;
        const int64_t k = rng.below(name_len_);
        changed[k] = 5 + rng.below(26);
        if (changed == query || names.count(changed)) continue;
        c.tokens[e][start + k] = changed[k];
        break;
      }
    }
    return c;
  }

 private:
  int64_t N_, name_len_, num_len_;
  std::vector<std::string> vocab_;
};

}  // namespace

MECHSCOPE_PLUGIN {
  host.set_description("phonebook", "1.0", "the phone-book lookup task of P2 (Jelassi et al. 2024)");
  host.add_task({"phonebook", "look a name up in a phone book and answer its number (P2)",
                 [](const json& c) { return std::make_unique<Phonebook>(c); }});
}
