// Readers of foreign tensor files (core/io/foreign.h) and the importer's config handling (core/io/import.h):
//  - the committed fixture tests/import/fixtures/tiny_state_dict.pt (made by tests/import/make_foreign.py fixture
//    with Debian's torch: an OrderedDict with _metadata, a view sharing storage at an offset, a transposed tensor,
//    bf16, f16, int64, a scalar) read value by value;
//  - safetensors written and read back bit-exactly, and each kind of malformed header refused with a message;
//  - a seeded mutation fuzzer over every reader (torch zip, safetensors, native checkpoint, foreign config, token
//    file): flipped bytes, truncations, splices and garbage must give an exception with a message, never a crash or
//    a hang. MECHSCOPE_FUZZ_ITERATIONS raises the count from the CI default (docs/robustness.md).
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "core/grid/grid.h"
#include "core/io/checkpoint.h"
#include "core/io/foreign.h"
#include "core/io/hdf5.h"
#include "core/io/import.h"
#include "core/io/tokens.h"
#include "core/model/model.h"
#include "tests/support/test_files.h"
#include "tests/support/test_support.h"

using namespace mechscope;
using mechscope::test::error_of;
using mechscope::test::read_all;
using mechscope::test::scratch_dir;
using mechscope::test::write_all;
using mechscope::test::small_config;
namespace fs = std::filesystem;

namespace {

const std::string kFixture = std::string(MECHSCOPE_SOURCE_DIR) + "/tests/import/fixtures/tiny_state_dict.pt";

at::Tensor by_name(const TensorFile& f, const std::string& n) {
  for (const auto& [k, t] : f.tensors)
    if (k == n) return t;
  ADD_FAILURE() << "no tensor " << n;
  return {};
}

}  // namespace

TEST(TorchZip, ReadsTheFixtureValueByValue) {
  TensorFile f = read_torch_zip(kFixture);
  EXPECT_EQ(f.format, "torch-zip");
  std::vector<std::string> names;
  for (const auto& [k, t] : f.tensors) names.push_back(k);
  EXPECT_EQ(names, (std::vector<std::string>{"a.weight", "a.view", "b.t", "c.bf16", "c.f16", "d.long", "e.scalar"}));
  at::Tensor base = at::arange(24, at::kFloat);
  EXPECT_TRUE(at::equal(by_name(f, "a.weight"), base.view({4, 6})));
  EXPECT_TRUE(at::equal(by_name(f, "a.view"), base.slice(0, 6, 18).view({3, 4})));  // storage offset 6
  EXPECT_TRUE(at::equal(by_name(f, "b.t"), at::arange(6, at::kFloat).view({2, 3}).t()));
  EXPECT_TRUE(at::equal(by_name(f, "c.bf16"), at::tensor({1.5f, -2.0f, 0.25f})));  // exact in bf16
  EXPECT_EQ(f.dtypes.at("c.bf16"), "bfloat16");
  EXPECT_TRUE(at::equal(by_name(f, "c.f16"), at::tensor({0.5f, 3.0f})));
  EXPECT_EQ(f.dtypes.at("c.f16"), "float16");
  at::Tensor l = by_name(f, "d.long");
  ASSERT_EQ(l.scalar_type(), at::kLong);
  EXPECT_EQ(l[0].item<int64_t>(), 7);
  EXPECT_EQ(l[1].item<int64_t>(), -3);
  EXPECT_EQ(l[2].item<int64_t>(), int64_t{1} << 40);
  EXPECT_EQ(by_name(f, "e.scalar").dim(), 0);
  EXPECT_EQ(by_name(f, "e.scalar").item<float>(), 2.5f);
  EXPECT_EQ(f.dtypes.at("a.weight"), "float32");
  // Views are copies: changing one tensor does not change another that shared its storage.
  by_name(f, "a.weight").zero_();
  EXPECT_EQ(by_name(f, "a.view")[0][0].item<float>(), 6.0f);
}

TEST(Safetensors, RoundTripIsBitExact) {
  const std::string dir = scratch_dir();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  std::vector<std::pair<std::string, at::Tensor>> in = {
      {"w", at::randn({5, 7}, gen)},
      {"h", at::randn({4}, gen).to(at::kBFloat16)},
      {"i", at::arange(-3, 3, at::kLong)},
      {"empty", at::zeros({0, 3})},
      {"scalar", at::tensor(1.25f).reshape({})}};
  write_safetensors(dir + "/x.safetensors", in, {{"format", "pt"}});
  TensorFile f = read_safetensors(dir + "/x.safetensors");
  ASSERT_EQ(f.tensors.size(), in.size());
  for (const auto& [n, t] : in) {
    at::Tensor got = by_name(f, n);
    EXPECT_EQ(got.sizes(), t.sizes()) << n;
    EXPECT_TRUE(at::equal(got, at::isFloatingType(t.scalar_type()) ? t.to(at::kFloat) : t)) << n;
  }
  EXPECT_EQ(f.dtypes.at("h"), "bfloat16");
  const std::string raw = read_all(dir + "/x.safetensors");
  uint64_t hlen = 0;
  std::memcpy(&hlen, raw.data(), 8);
  EXPECT_EQ((8 + hlen) % 8, 0u) << "data is 8-byte aligned";
  EXPECT_FALSE(fs::exists(dir + "/x.safetensors.tmp-" + std::to_string(::getpid())));
}

TEST(Safetensors, OpenedLazilyEachLoaderReadsItsTensorWhenCalled) {
  const std::string dir = scratch_dir();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(4);
  std::vector<std::pair<std::string, at::Tensor>> in = {{"a", at::randn({6, 3}, gen)},
                                                        {"b", at::randn({5}, gen).to(at::kBFloat16)}};
  write_safetensors(dir + "/x.safetensors", in);
  TensorSource src = open_tensor_file(dir + "/x.safetensors");
  TensorFile whole = read_safetensors(dir + "/x.safetensors");
  EXPECT_EQ(src.format, "safetensors");
  EXPECT_EQ(src.dtypes, whole.dtypes);
  ASSERT_EQ(src.tensors.size(), 2u);
  for (size_t k = 0; k < 2; ++k) {
    EXPECT_EQ(src.tensors[k].first, whole.tensors[k].first);
    const at::Tensor lazy = src.tensors[k].second();  // in its stored dtype; read whole: as float32
    EXPECT_EQ(lazy.scalar_type(), src.tensors[k].first == "b" ? at::kBFloat16 : at::kFloat);
    EXPECT_TRUE(at::equal(lazy.to(at::kFloat), whole.tensors[k].second)) << whole.tensors[k].first;
  }
  // Read when called: the file cut short after it was opened fails the late loader, naming the file, not the process.
  const std::string raw = read_all(dir + "/x.safetensors");
  fs::resize_file(dir + "/x.safetensors", raw.size() - 4);
  const std::string late = src.tensors[0].first == "b" ? src.tensors[0].first : src.tensors[1].first;
  const auto& loader = src.tensors[0].first == late ? src.tensors[0].second : src.tensors[1].second;
  EXPECT_NE(error_of([&] { loader(); }).find("x.safetensors"), std::string::npos);
  // A torch.save archive is read whole when opened, its loaders hand the tensors out.
  TensorSource zip = open_tensor_file(kFixture);
  EXPECT_EQ(zip.format, "torch-zip");
  EXPECT_EQ(zip.tensors.size(), read_torch_zip(kFixture).tensors.size());
}

TEST(Safetensors, MalformedHeadersAreNamed) {
  const std::string dir = scratch_dir();
  auto file = [&](const std::string& header, const std::string& data) {
    std::string s(8, '\0');
    const uint64_t n = header.size();
    std::memcpy(s.data(), &n, 8);
    write_all(dir + "/m.safetensors", s + header + data);
    return error_of([&] { read_safetensors(dir + "/m.safetensors"); });
  };
  EXPECT_EQ(file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", std::string(8, 'x')), "");
  EXPECT_NE(file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", std::string(4, 'x')).find("outside"),
            std::string::npos);
  EXPECT_NE(file("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", std::string(8, 'x')).find("3 elements"),
            std::string::npos);
  EXPECT_NE(file("{\"a\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", std::string(8, 'x')).find("Q4"),
            std::string::npos);
  EXPECT_NE(file("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", std::string(8, 'x')).find("negative"),
            std::string::npos);
  EXPECT_NE(file("{not json", "").find("not valid JSON"), std::string::npos);
  EXPECT_NE(file("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", "").find("elements"),
            std::string::npos);
  // A header length beyond the file.
  std::string s(8, '\xff');
  write_all(dir + "/big.safetensors", s + "{}");
  EXPECT_NE(error_of([&] { read_safetensors(dir + "/big.safetensors"); }).find("header length"), std::string::npos);
}

TEST(Import, ConfigErrorsNameTheKey) {
  const std::string dir = scratch_dir();
  LanguageModel m(small_config("mamba1"), 1);
  write_safetensors(dir + "/model.safetensors", m.state_dict());
  auto with_config = [&](const std::string& cfg) {
    write_all(dir + "/config.json", cfg);
    return error_of([&] { import_checkpoint(dir); });
  };
  EXPECT_NE(with_config("{\"model_type\": \"mamba\"}").find("'hidden_size' is missing"), std::string::npos);
  EXPECT_NE(with_config("{\"model_type\": \"bert\"}").find("model_type 'bert'"), std::string::npos);
  EXPECT_NE(with_config("{\"model_type\": \"zamba\", \"architectures\": [\"ZambaForCausalLM\"]}")
                .find("model_type 'zamba' (architectures [\"ZambaForCausalLM\"]) is not supported (it needs shared attention"),
            std::string::npos);
  EXPECT_NE(with_config("{\"foo\": 1, \"bar\": 2}").find("it holds: bar, foo"), std::string::npos);
  EXPECT_NE(with_config("[1, 2").find("not valid JSON"), std::string::npos);
  EXPECT_NE(with_config("{\"model_type\": \"llama\", \"hidden_size\": 8, \"num_attention_heads\": 2, "
                        "\"rope_scaling\": {\"type\": \"longrope\", \"factor\": 2.0}}").find("rope_scaling.type 'longrope'"),
            std::string::npos);
  EXPECT_NE(with_config("{\"model_type\": \"llama\", \"hidden_size\": 8, \"num_attention_heads\": 2, "
                        "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0, \"beta\": 1}}").find("rope_scaling.beta"),
            std::string::npos);
  // Python's Infinity parses (HF Mamba2's time_step_limit); the error is then about the missing weights.
  std::string e = with_config("{\"model_type\": \"mamba2\", \"hidden_size\": 32, \"num_hidden_layers\": 1, "
                              "\"vocab_size\": 8, \"num_heads\": 2, \"head_dim\": 32, \"time_step_limit\": [0.0, Infinity]}");
  EXPECT_EQ(e.find("JSON"), std::string::npos) << e;
  EXPECT_NE(e.find("missing from the weights"), std::string::npos) << e;
  // A native model's config.json names (mamba_ssm layout) with the native weights imports and matches.
  nlohmann::json cfg = m.config().to_json();
  cfg.erase("pos_emb");
  cfg.erase("parallel_layer_idx");
  write_all(dir + "/config.json", cfg.dump());
  ImportInfo info;
  Checkpoint ck = import_checkpoint(dir, &info);
  EXPECT_EQ(info.source_format, "mamba_ssm");
  at::Tensor toks = mechscope::test::random_tokens(2, 9, m.config().vocab_size, 4);
  EXPECT_TRUE(at::equal(ck.model->forward(toks), m.forward(toks)));
  EXPECT_FALSE(is_native_checkpoint(dir + "/model.safetensors"));
}

// ------------------------------------------------------------------ fuzzing

namespace {

int fuzz_iterations() {
  const char* v = std::getenv("MECHSCOPE_FUZZ_ITERATIONS");
  return v ? std::max(1, std::atoi(v)) : 1500;
}

// One mutation of `s`: flip bytes, overwrite a run with garbage or boundary values, truncate, splice, duplicate.
std::string mutate(const std::string& s, std::mt19937_64& rng) {
  std::string m = s;
  auto pick = [&](size_t n) { return n == 0 ? size_t{0} : static_cast<size_t>(rng() % n); };
  const int rounds = 1 + static_cast<int>(rng() % 4);
  for (int r = 0; r < rounds && !m.empty(); ++r) {
    switch (rng() % 7) {
      case 0: m[pick(m.size())] ^= static_cast<char>(1u << (rng() % 8)); break;
      case 1: for (int k = 0; k < 8; ++k) m[pick(m.size())] = static_cast<char>(rng()); break;
      case 2: m.resize(pick(m.size())); break;
      case 3: {  // boundary integers at a random place
        const uint64_t vals[] = {0, 1, 0x7F, 0xFF, 0xFFFF, 0xFFFFFFFFu, 0x7FFFFFFFFFFFFFFFull, ~uint64_t{0}};
        const uint64_t v = vals[rng() % 8];
        const size_t at = pick(m.size());
        for (size_t k = 0; k < 8 && at + k < m.size(); ++k) m[at + k] = static_cast<char>(v >> (8 * k));
        break;
      }
      case 4: {  // splice a chunk elsewhere
        const size_t a = pick(m.size()), len = std::min<size_t>(m.size() - a, 1 + pick(64)), b = pick(m.size());
        m.insert(b, m.substr(a, len));
        break;
      }
      case 5: m.erase(pick(m.size()), 1 + pick(32)); break;
      default: m.insert(pick(m.size()), std::string(1 + pick(16), static_cast<char>(rng()))); break;
    }
  }
  return m;
}

// Runs `read` on `iterations` mutants of `seed`; any exception with a message passes, a crash fails the process.
template <typename Read>
void fuzz(const std::string& name, const std::string& seed, const std::string& path, Read read, uint64_t salt,
          int iterations = 0) {
  std::mt19937_64 rng(0x5eed + salt);
  int errors = 0, loaded = 0;
  const int n = iterations > 0 ? std::min(iterations, fuzz_iterations()) : fuzz_iterations();
  for (int i = 0; i < n; ++i) {
    write_all(path, mutate(seed, rng));
    try {
      read(path);
      ++loaded;
    } catch (const std::exception& e) {
      ++errors;
      EXPECT_GT(std::strlen(e.what()), 10u) << name << " mutant " << i << " gave an empty message";
    }
  }
  std::cout << "[ fuzz ] " << name << ": " << n << " mutants, " << errors << " refused with a message, " << loaded
            << " still readable\n";
  EXPECT_GT(errors, 0) << name;
}

}  // namespace

TEST(Fuzz, TorchZipReader) {
  const std::string dir = scratch_dir();
  fuzz("torch zip", read_all(kFixture), dir + "/m.pt", [](const std::string& p) { read_torch_zip(p); }, 1);
}

TEST(Fuzz, SafetensorsReader) {
  const std::string dir = scratch_dir();
  LanguageModel m(small_config("mamba2"), 1);
  write_safetensors(dir + "/seed.safetensors", m.state_dict());
  std::string seed = read_all(dir + "/seed.safetensors");
  fuzz("safetensors", seed, dir + "/m.safetensors", [](const std::string& p) { read_safetensors(p); }, 2);
  // Mutations focused on the JSON header, where most decisions are made.
  uint64_t hlen = 0;
  std::memcpy(&hlen, seed.data(), 8);
  std::mt19937_64 rng(7);
  const std::string header = seed.substr(8, hlen), data = seed.substr(8 + hlen);
  for (int i = 0; i < fuzz_iterations(); ++i) {
    std::string h = mutate(header, rng);
    std::string s(8, '\0');
    const uint64_t n = h.size();
    std::memcpy(s.data(), &n, 8);
    write_all(dir + "/h.safetensors", s + h + data);
    try { read_safetensors(dir + "/h.safetensors"); } catch (const std::exception& e) { EXPECT_GT(std::strlen(e.what()), 10u); }
  }
}

TEST(Fuzz, NativeCheckpointReader) {
  const std::string dir = scratch_dir();
  LanguageModel m(small_config("hybrid"), 1);
  save_checkpoint(dir + "/seed.h5", m, {});
  fuzz("checkpoint (HDF5)", read_all(dir + "/seed.h5"), dir + "/m.h5", [](const std::string& p) { load_checkpoint(p); }, 3);
}

TEST(Fuzz, GridManifestsAndTables) {
  // A grid's manifest (JSON and TOML, with a bundle), and a collected table as `collect` writes it.
  const std::string dir = scratch_dir();
  const std::string json_seed = R"({"name": "g", "command": ["train", "--task", "mqar", "--train-set", "steps=10"],
    "then": ["eval", "--examples", "64"], "axes": {"model": [{"label": "attention", "preset": "transformer"},
    {"label": "mamba2", "preset": "mamba2"}], "set.d_model": [32, 64], "seed": [1, 2]},
    "resources": {"cpus": 1, "time": "00:10:00"}, "figure": {"x": "set.d_model", "y": "accuracy_mean"}})";
  const std::string toml_seed = "name = \"g\"\ncommand = [\"eval\", \"-c\", \"m.h5\"]\n[axes]\nseed = [1, 2]\n"
                                "model = [{ label = \"a\", \"task_set.num_pairs\" = 4 }]\n[resources]\ncpus = 2\n";
  auto expand = [](const std::string& p) { mechscope::grid::expand(mechscope::grid::read_manifest(p)); };
  fuzz("grid manifest (JSON)", json_seed, dir + "/m.json", expand, 20);
  fuzz("grid manifest (TOML)", toml_seed, dir + "/m.toml", expand, 21);
  mechscope::grid::Table t;
  t.columns = {"task", "model", "set.d_model", "accuracy_mean"};
  t.rows = {{"a", "attention", "32", "0.5"}, {"b", "mamba2", "64", ""}};
  mechscope::grid::write_table_h5(dir + "/seed.h5", t, {{"grid", "g"}, {"axes", {"model", "set.d_model"}}});
  const auto read_table = [](const std::string& p) { mechscope::grid::read_table_h5(p); };
  fuzz("grid table (HDF5)", read_all(dir + "/seed.h5"), dir + "/t.h5", read_table, 22);
  // Without its seal (the 512-byte user block dropped: HDF5's addresses count from the superblock), so that the
  // mutants reach libhdf5 and the table reader instead of the seal's check.
  const std::string unsealed = read_all(dir + "/seed.h5").substr(mechscope::h5::kUserBlock);
  write_all(dir + "/unsealed.h5", unsealed);
  ASSERT_EQ(mechscope::grid::read_table_h5(dir + "/unsealed.h5").table.rows, t.rows);
  // Fewer of them: each is read by libhdf5 in a checking process first, and a hostile one can take it to its deadline.
  fuzz("grid table (HDF5, unsealed)", unsealed, dir + "/u.h5", read_table, 23, 60);
}

TEST(Fuzz, ForeignConfigJson) {
  const std::string dir = scratch_dir();
  LanguageModel m(small_config("mamba1"), 1);
  write_safetensors(dir + "/model.safetensors", m.state_dict());
  const std::string seeds[] = {
      m.config().to_json().dump(2),
      R"({"model_type": "mamba2", "hidden_size": 128, "num_hidden_layers": 2, "vocab_size": 64, "num_heads": 4,
          "head_dim": 64, "state_size": 16, "n_groups": 1, "time_step_limit": [0.0, Infinity], "chunk_size": 16})",
      R"({"model_type": "llama", "hidden_size": 128, "intermediate_size": 200, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 64, "rope_theta": 10000.0})"};
  uint64_t salt = 10;
  for (const auto& seed : seeds)
    fuzz("config.json", seed, dir + "/config.json", [&](const std::string&) { import_checkpoint(dir); }, salt++);
}

TEST(Fuzz, TokenFileReader) {
  const std::string dir = scratch_dir();
  const std::vector<std::string> vocab = default_vocab(64);
  fuzz("token file", "# a comment\n<bos>, x7 x9,12\n<query> 5\n", dir + "/t.txt",
       [&](const std::string& p) { read_token_file(p, vocab, 64); }, 20);
}
