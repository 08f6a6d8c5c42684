// P4's key-value retrieval prompts (see kv_retrieval.h).
#include "core/text/kv_retrieval.h"

#include <algorithm>
#include <numeric>
#include <set>
#include <stdexcept>

#include "core/text/dataset.h"
#include "core/text/tokenizer.h"
#include "core/util/files.h"
#include "core/util/json.h"
#include "core/util/splitmix.h"

namespace mechscope {

using nlohmann::json;

namespace {

const char kHeader[] = "Memorize the following dictionary:\n";

const char kQuery[] = "The value of the key '";

// The prompt asking keys[query]; `asked` are the queries answered before it (indices into keys), whose answers'
// spans go to `answer_spans`.
std::string prompt_of(const std::vector<std::string>& keys, const std::vector<int64_t>& vals, size_t query,
                      const std::vector<size_t>& asked, json* key_spans, json* value_spans, json* answer_spans) {
  std::string p = kHeader;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (key_spans) key_spans->push_back({p.size(), p.size() + keys[i].size()});
    p += keys[i] + ":";
    const std::string v = std::to_string(vals[i]);
    if (value_spans) value_spans->push_back({p.size(), p.size() + v.size()});
    p += v + "\n";
  }
  for (size_t a : asked) {
    p += kQuery + keys[a] + "' is";
    const std::string v = std::to_string(vals[a]);
    if (answer_spans) answer_spans->push_back({p.size(), p.size() + v.size()});
    p += v + "\n";
  }
  return p + kQuery + keys[query] + "' is";  // ASCII: characters are bytes
}

}  // namespace

KvRetrievalConfig KvRetrievalConfig::from_json(const json& j, const std::string& where) {
  KvRetrievalConfig c;
  auto get = [&](const char* key, int64_t& out, int64_t lo, int64_t hi) {
    if (!j.contains(key)) return;
    if (!j.at(key).is_number_integer() || j.at(key).get<int64_t>() < lo || j.at(key).get<int64_t>() > hi)
      throw std::invalid_argument(where + ": " + key + " must be an integer in " + std::to_string(lo) + ".." +
                                  std::to_string(hi) + ", found " + j.at(key).dump());
    out = j.at(key).get<int64_t>();
  };
  const auto words = static_cast<int64_t>(kv_retrieval_words().size());
  get("min_pairs", c.min_pairs, 2, words);  // one pair leaves nothing to choose between
  get("max_pairs", c.max_pairs, 2, words);
  get("values", c.values, 2, 1000000);
  get("queries", c.queries, 1, 64);
  if (c.max_pairs < c.min_pairs)
    throw std::invalid_argument(where + ": max_pairs (" + std::to_string(c.max_pairs) + ") is below min_pairs (" +
                                std::to_string(c.min_pairs) + ")");
  if (c.max_pairs > c.values)
    throw std::invalid_argument(where + ": max_pairs (" + std::to_string(c.max_pairs) + ") exceeds the " +
                                std::to_string(c.values) + " values (a dictionary's values are distinct)");
  return c;
}

const std::vector<std::string>& kv_retrieval_words() {
  static const std::vector<std::string> words = {
      "apple", "river", "stone", "garden", "window", "candle", "mirror", "forest", "bottle", "pencil", "jacket",
      "ladder", "carpet", "button", "castle", "cloud", "desert", "engine", "feather", "guitar", "hammer", "island",
      "jungle", "kettle", "lemon", "magnet", "needle", "orange", "pillow", "rabbit", "saddle", "ticket", "tunnel",
      "valley", "wallet", "yogurt", "anchor", "basket", "cabin", "dragon", "eagle", "falcon", "glove", "harbor",
      "igloo", "jewel", "kitten", "lantern", "meadow", "napkin", "ocean", "parrot", "quilt", "rocket", "spider",
      "tiger", "umbrella", "violin", "walnut", "zebra", "acorn", "bamboo", "cactus", "dolphin", "elbow", "fossil",
      "galaxy", "helmet", "insect", "jigsaw", "koala", "lizard", "marble", "nickel", "oyster", "pepper", "quartz",
      "ribbon", "salmon", "teapot", "unicorn", "velvet", "waffle", "yacht", "almond", "beetle", "cherry", "donkey",
      "emerald", "fabric", "goblet", "hazel", "ivory", "jasmine", "kiwi", "lobster", "mango", "nectar", "olive",
      "peanut", "radish", "sponge", "tomato", "turnip", "vapor", "whistle", "willow", "canyon", "comet", "crystal",
      "dagger", "flute", "forge", "giant", "glacier", "granite", "harp", "hornet", "iron", "kernel", "lagoon",
      "llama", "maple", "melon", "moose", "nugget", "orbit", "otter", "panda", "pebble", "pirate", "planet",
      "pumpkin", "puzzle", "raven", "saucer", "scarf", "shovel", "sketch", "slipper", "statue", "summit", "sword",
      "temple", "thimble", "thunder", "tulip", "vessel", "wagon", "wizard", "badger", "banner", "barrel", "beacon",
      "bishop", "blanket", "bucket", "bullet", "cannon", "carrot", "cement", "chalk", "cobalt", "copper", "cotton",
      "crayon", "dinner", "domino", "drawer", "feast", "fiddle", "frost", "garlic", "ginger", "gravel", "hollow",
      "honey", "jelly", "jockey", "kayak", "lemur", "linen", "locket", "lumber", "mantle", "mitten", "monkey",
      "muffin", "mustard", "noodle", "nutmeg", "onion", "paddle", "parcel", "pigeon", "pistol", "plank", "pocket",
      "poppy", "powder", "prism", "quiver", "raisin", "rattle", "rubber", "sapphire", "scroll", "shadow", "silver",
      "sleeve", "socket", "spinach", "spoon", "squash", "strudel", "sunset", "syrup", "tablet", "tavern", "timber",
      "toast", "trumpet", "tuxedo", "vault", "violet", "walrus", "weasel", "whisker", "wreath", "yarn", "zipper",
      "bagel", "biscuit", "bridge", "cherub", "chimney", "compass", "cookie", "cradle", "curtain", "dune", "fern",
      "fountain", "gazelle", "goose", "hammock", "hedge", "jaguar", "kennel", "lily", "marsh", "nest", "oasis",
      "orchid", "pasta", "pearl", "pine", "pond", "quail", "reef", "robin", "sand", "seal", "shell", "snail", "storm",
      "swan", "thistle", "torch", "trout", "vine", "wheat",
  };
  return words;
}

std::vector<int64_t> kv_retrieval_values(const KvRetrievalConfig& c, const Tokenizer& tok) {
  const std::string probe = "The value of the key 'apple' is";
  const std::vector<int64_t> base = tok.encode(probe, false);
  std::vector<int64_t> out;
  std::set<int64_t> firsts;
  for (int64_t v = 0; v < c.values; ++v) {
    const std::vector<int64_t> both = tok.encode(probe + std::to_string(v), false);
    if (both.size() != base.size() + 1 || !std::equal(base.begin(), base.end(), both.begin())) continue;
    if (firsts.insert(both.back()).second) out.push_back(v);
  }
  if (static_cast<int64_t>(out.size()) < c.max_pairs)
    throw std::invalid_argument("kv-retrieval: of the numbers 0.." + std::to_string(c.values - 1) + ", " +
                                std::to_string(out.size()) + " continue the prompt as one token of their own in this "
                                "tokenizer; a dictionary of up to " + std::to_string(c.max_pairs) +
                                " pairs needs as many (the multiple choice compares the values' first tokens): "
                                "lower max_pairs");
  return out;
}

json kv_retrieval_line(const KvRetrievalConfig& c, const std::vector<int64_t>& values, uint64_t seed,
                       const Tokenizer& tok) {
  SplitMix s{seed};
  const int64_t n = c.min_pairs + s.below(c.max_pairs - c.min_pairs + 1);
  std::vector<std::string> keys = kv_retrieval_words();
  s.shuffle(keys);
  keys.resize(static_cast<size_t>(n));
  std::vector<int64_t> vals = values;
  s.shuffle(vals);
  vals.resize(static_cast<size_t>(n));
  const size_t q = static_cast<size_t>(s.below(n));
  std::vector<size_t> asked;  // the answered queries before the last (drawn after P4's draws: one query, same prompts)
  for (int64_t i = 1; i < c.queries; ++i) asked.push_back(static_cast<size_t>(s.below(n)));
  json key_spans = json::array(), value_spans = json::array(), answer_spans = json::array();
  const std::string clean = prompt_of(keys, vals, q, asked, &key_spans, &value_spans, &answer_spans);
  json line = {{"clean", clean}, {"answer", std::to_string(vals[q])}};
  // The corrupted prompt asks for another key of the dictionary (another answer), with as many tokens.
  const size_t length = tok.encode(clean, false).size();
  std::vector<size_t> others(static_cast<size_t>(n));
  std::iota(others.begin(), others.end(), size_t{0});
  s.shuffle(others);
  for (size_t o : others) {
    if (o == q) continue;
    const std::string corrupted = prompt_of(keys, vals, o, asked, nullptr, nullptr, nullptr);
    if (tok.encode(corrupted, false).size() == length) {
      line["corrupted"] = corrupted;
      break;
    }
  }
  json choices = json::array();
  for (int64_t v : vals) choices.push_back(std::to_string(v));
  line["choices"] = choices;
  line["key"] = key_spans;
  line["value"] = value_spans;
  if (!answer_spans.empty()) line["labels"] = answer_spans;
  return line;
}

std::unique_ptr<Task> make_kv_text_task(const json& config_in) {
  const std::string where = "task kv-text";
  json config = config_in;
  for (const auto& [k, v] : config.items())
    if (k != "task" && k != "tokenizer" && k != "min_pairs" && k != "max_pairs" && k != "values" && k != "queries")
      throw std::invalid_argument(where + ": unknown key '" + k +
                                  "'; its keys: tokenizer, min_pairs, max_pairs, values, queries");
  if (!config.contains("tokenizer"))
    throw std::invalid_argument(where + ": needs \"tokenizer\": a tokenizer.json file (or its JSON object)");
  if (config.at("tokenizer").is_string()) {  // kept as the object: a checkpoint trained on the task carries it
    const std::string path = config.at("tokenizer").get<std::string>();
    config["tokenizer"] = parse_json(read_file_capped(path, uint64_t{256} << 20, "tokenizer.json"));
  }
  if (!config.at("tokenizer").is_object())
    throw std::invalid_argument(where + ": \"tokenizer\" is neither a path nor a tokenizer.json object");
  auto tok = std::make_shared<const Tokenizer>(Tokenizer::from_json(config.at("tokenizer"), where + " tokenizer"));
  const KvRetrievalConfig c = KvRetrievalConfig::from_json(config, where);
  config["min_pairs"] = c.min_pairs;
  config["max_pairs"] = c.max_pairs;
  config["values"] = c.values;
  if (c.queries != 1) config["queries"] = c.queries;  // absent at P4's one: older checkpoints' configs unchanged
  std::vector<std::string> vocab;
  for (int64_t id = 0; id < tok->vocab_size(); ++id) {
    try {
      vocab.push_back(tok->id_to_token(id));
    } catch (const std::exception&) {
      vocab.push_back("<unused " + std::to_string(id) + ">");  // an id the file leaves out: never produced
    }
  }
  const std::vector<int64_t> values = kv_retrieval_values(c, *tok);
  auto line = [c, values, tok](uint64_t seed) { return kv_retrieval_line(c, values, seed, *tok); };
  return make_generated_text_task(line, tok, std::move(vocab), std::move(config));
}

}  // namespace mechscope
