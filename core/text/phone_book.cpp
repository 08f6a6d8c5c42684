// P2's phone-book prompts (see phone_book.h).
#include "core/text/phone_book.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>

#include "core/util/splitmix.h"

namespace mechscope {

using nlohmann::json;

PhoneBookConfig PhoneBookConfig::from_json(const json& j, const std::string& where) {
  PhoneBookConfig c;
  const int64_t most = static_cast<int64_t>(phone_book_first_names().size() * phone_book_surnames().size());
  for (const auto& [key, out] : {std::pair<const char*, int64_t*>{"min_entries", &c.min_entries}, {"max_entries", &c.max_entries}}) {
    if (!j.contains(key)) continue;
    if (!j.at(key).is_number_integer() || j.at(key).get<int64_t>() < 3 || j.at(key).get<int64_t>() > 10000)
      throw std::invalid_argument(where + ": " + key + " must be an integer in 3..10000 (three entries are looked up), found " +
                                  j.at(key).dump());
    *out = j.at(key).get<int64_t>();
  }
  if (c.max_entries < c.min_entries)
    throw std::invalid_argument(where + ": max_entries (" + std::to_string(c.max_entries) + ") is below min_entries (" +
                                std::to_string(c.min_entries) + ")");
  if (c.max_entries > most) throw std::invalid_argument(where + ": more entries than distinct names");
  return c;
}

const std::vector<std::string>& phone_book_first_names() {
  static const std::vector<std::string> names = {
      "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David", "Elizabeth", "William",
      "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Charles", "Karen", "Christopher",
      "Lisa", "Daniel", "Nancy", "Matthew", "Betty", "Anthony", "Margaret", "Mark", "Sandra", "Donald", "Ashley",
      "Steven", "Kimberly", "Paul", "Emily", "Andrew", "Donna", "Joshua", "Michelle", "Kenneth", "Carol", "Kevin",
      "Amanda", "Brian", "Dorothy", "George", "Melissa", "Timothy", "Deborah", "Ronald", "Stephanie", "Edward",
      "Rebecca", "Jason", "Sharon", "Jeffrey", "Laura", "Ryan", "Cynthia", "Jacob", "Kathleen", "Gary", "Amy",
      "Nicholas", "Angela", "Eric", "Shirley", "Jonathan", "Anna", "Stephen", "Brenda", "Larry", "Pamela", "Justin",
      "Emma", "Scott", "Nicole", "Brandon", "Helen", "Benjamin", "Samantha", "Samuel", "Katherine", "Gregory",
      "Christine", "Alexander", "Debra", "Frank", "Rachel", "Patrick", "Carolyn", "Raymond", "Janet", "Jack",
      "Catherine", "Dennis", "Maria", "Jerry", "Heather",
  };
  return names;
}

const std::vector<std::string>& phone_book_surnames() {
  static const std::vector<std::string> names = {
      "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
      "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin", "Lee",
      "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young",
      "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores", "Green", "Adams", "Nelson", "Baker",
      "Hall", "Rivera", "Campbell", "Mitchell", "Carter", "Roberts", "Gomez", "Phillips", "Evans", "Turner", "Diaz",
      "Parker", "Cruz", "Edwards", "Collins", "Reyes", "Stewart", "Morris", "Morales", "Murphy", "Cook", "Rogers",
      "Gutierrez", "Ortiz", "Morgan", "Cooper", "Peterson", "Bailey", "Reed", "Kelly", "Howard", "Ramos", "Kim",
      "Cox", "Ward", "Richardson", "Watson", "Brooks", "Chavez", "Wood", "James", "Bennett", "Gray", "Mendoza",
      "Ruiz", "Hughes", "Price", "Alvarez", "Castillo", "Sanders", "Patel", "Myers", "Long", "Ross", "Foster",
      "Jimenez",
  };
  return names;
}

json phone_book_line(const PhoneBookConfig& c, uint64_t seed) {
  SplitMix s{seed};
  const int64_t n = c.min_entries + s.below(c.max_entries - c.min_entries + 1);
  const auto& first = phone_book_first_names();
  const auto& last = phone_book_surnames();
  std::vector<std::string> names, numbers;
  while (static_cast<int64_t>(names.size()) < n) {  // distinct full names (a repeated name would be ambiguous)
    const std::string name = first[static_cast<size_t>(s.below(static_cast<int64_t>(first.size())))] + " " +
                             last[static_cast<size_t>(s.below(static_cast<int64_t>(last.size())))];
    if (std::find(names.begin(), names.end(), name) != names.end()) continue;
    names.push_back(name);
    std::string number = std::to_string(6 + s.below(4));  // P2's rand_phone: 6-9, then nine digits
    for (int k = 0; k < 9; ++k) number += std::to_string(s.below(10));
    numbers.push_back(number);
  }
  // Three distinct entries: two few-shot lookups, then the question.
  std::vector<int64_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), int64_t{0});
  for (size_t i = 0; i < 3; ++i) std::swap(idx[i], idx[i + static_cast<size_t>(s.below(n - static_cast<int64_t>(i)))]);
  std::string p;
  json keys = json::array(), values = json::array();
  for (int64_t i = 0; i < n; ++i) {
    if (i) p += "\n";
    keys.push_back({p.size(), p.size() + names[static_cast<size_t>(i)].size()});
    p += names[static_cast<size_t>(i)] + ": ";
    values.push_back({p.size(), p.size() + numbers[static_cast<size_t>(i)].size()});
    p += numbers[static_cast<size_t>(i)];
  }
  auto entry = [&](int64_t k) { return names[static_cast<size_t>(idx[k])] + ": " + numbers[static_cast<size_t>(idx[k])]; };
  p += "\n\n" + entry(0) + "\n" + entry(1) + "\n\n" + names[static_cast<size_t>(idx[2])] + ":";
  return {{"clean", p}, {"answer", " " + numbers[static_cast<size_t>(idx[2])]}, {"key", keys}, {"value", values}};
}

}  // namespace mechscope
