// Checkpoints (spec §0): bit-exact round trip for every preset, atomic writes, and a clear error for every
// malformed file: missing, not HDF5, truncated, foreign format, newer version, bad JSON, vocabulary
// mismatch, missing/extra/misshapen parameters, non-finite values (a warning), a stored tied head.
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "core/io/checkpoint.h"
#include "core/io/hdf5.h"
#include "core/model/model.h"
#include "tests/support/test_files.h"
#include "tests/support/test_support.h"

using namespace mechscope;
using mechscope::test::max_abs_diff;
using mechscope::test::Edit;
using mechscope::test::scratch_dir;
using mechscope::test::small_config;
namespace fs = std::filesystem;

namespace {

std::string saved(const std::string& preset, const std::string& dir, nlohmann::json overrides = nlohmann::json::object()) {
  LanguageModel m(small_config(preset, overrides), 11);
  std::string path = dir + "/" + preset + ".h5";
  save_checkpoint(path, m, {});
  return path;
}

std::string load_error(const std::string& path) {
  try {
    load_checkpoint(path);
  } catch (const CheckpointError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Checkpoint, RoundTripIsBitExactForEveryPreset) {
  const std::string dir = scratch_dir();
  for (const auto& preset : ModelConfig::preset_names()) {
    LanguageModel m(small_config(preset, {{"tie_embeddings", preset == "mamba1"}}), 5);
    const std::string path = dir + "/" + preset + ".h5";
    CheckpointExtras extras;
    extras.task_config = {{"task", "mqar"}, {"num_pairs", 4}};
    extras.training["loss"] = at::tensor({2.5f, 1.25f, 0.5f});
    extras.training["step"] = at::tensor(std::vector<int64_t>{10, 20, 30});
    save_checkpoint(path, m, extras);
    Checkpoint ck = load_checkpoint(path);
    EXPECT_TRUE(ck.warnings.empty());
    EXPECT_EQ(ck.config.to_json(), m.config().to_json());
    EXPECT_EQ(ck.task_config, extras.task_config);
    EXPECT_EQ(ck.vocab, default_vocab(37));
    EXPECT_EQ(ck.created_by, program_id());
    auto a = m.state_dict(), b = ck.model->state_dict();
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i].first, b[i].first);
      EXPECT_TRUE(at::equal(a[i].second, b[i].second)) << a[i].first;
    }
    EXPECT_TRUE(at::equal(ck.training.at("loss"), extras.training["loss"]));
    EXPECT_TRUE(at::equal(ck.training.at("step"), extras.training["step"]));
    at::Tensor toks = mechscope::test::random_tokens(1, 6, 37, 1);
    EXPECT_TRUE(at::equal(m.forward(toks), ck.model->forward(toks))) << preset;
  }
}

TEST(Checkpoint, TiedHeadIsNotStoredAndUntiedIs) {
  const std::string dir = scratch_dir();
  std::string tied = saved("transformer", dir);
  h5::File f = h5::File::open_read(tied);
  EXPECT_FALSE(h5::exists(f.id(), "weights/lm_head.weight"));
  EXPECT_TRUE(h5::exists(f.id(), "weights/backbone.embedding.weight"));
  f.close();
  std::string untied = saved("mamba2", dir, {{"tie_embeddings", false}});
  h5::File g = h5::File::open_read(untied);
  EXPECT_TRUE(h5::exists(g.id(), "weights/lm_head.weight"));
}

TEST(Checkpoint, SaveIsAtomicAndLeavesNoTemporaryFile) {
  const std::string dir = scratch_dir();
  std::string path = saved("mamba1", dir);
  auto before = fs::file_size(path);
  // A vocabulary of the wrong size is refused before anything is written; the old file stays intact.
  LanguageModel other(small_config("mamba1"), 99);
  CheckpointExtras bad;
  bad.vocab = {"a", "b"};
  EXPECT_THROW(save_checkpoint(path, other, bad), CheckpointError);
  EXPECT_EQ(fs::file_size(path), before);
  // An unwritable destination folder: an error naming it, and no stray files.
  EXPECT_THROW(save_checkpoint(dir + "/no/such/folder/x.h5", other, {}), CheckpointError);
  for (auto& e : fs::directory_iterator(dir)) EXPECT_EQ(e.path().string().find(".tmp-"), std::string::npos) << e.path();
  EXPECT_TRUE(load_error(path).empty());
}

TEST(Checkpoint, MissingFileAndFolder) {
  const std::string dir = scratch_dir();
  EXPECT_NE(load_error(dir + "/absent.h5").find("no such file"), std::string::npos);
  EXPECT_NE(load_error(dir).find("folder"), std::string::npos);
}

TEST(Checkpoint, NotHdf5) {
  const std::string dir = scratch_dir();
  std::ofstream(dir + "/x.h5") << "{\"this is\": \"json\"}";
  std::string msg = load_error(dir + "/x.h5");
  EXPECT_NE(msg.find("not an HDF5 file"), std::string::npos) << msg;
  std::ofstream(dir + "/empty.h5");
  EXPECT_NE(load_error(dir + "/empty.h5").find("not an HDF5 file"), std::string::npos);
}

TEST(Checkpoint, TruncatedFilesAreErrorsNotCrashes) {
  const std::string dir = scratch_dir();
  std::string path = saved("hybrid", dir);
  const auto size = fs::file_size(path);
  for (double frac : {0.9, 0.5, 0.1, 0.01}) {
    std::string cut = dir + "/cut.h5";
    fs::copy_file(path, cut, fs::copy_options::overwrite_existing);
    fs::resize_file(cut, static_cast<uintmax_t>(size * frac));
    std::string msg = load_error(cut);
    EXPECT_FALSE(msg.empty()) << "a file cut to " << frac << " loaded";
    EXPECT_NE(msg.find("cut.h5"), std::string::npos) << msg;
  }
}

TEST(Checkpoint, SealRefusesCorruptionBeforeHdf5SeesIt) {
  const std::string dir = scratch_dir();
  const std::string path = saved("mamba2", dir);
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  ASSERT_EQ(bytes.compare(0, 15, "MECHSCOPE-SEAL-"), 0);
  auto with = [&](const std::string& b) {
    std::ofstream(dir + "/x.h5", std::ios::binary | std::ios::trunc) << b;
    return load_error(dir + "/x.h5");
  };
  std::string flipped = bytes;
  flipped[bytes.size() / 2] ^= 1;
  EXPECT_NE(with(flipped).find("does not match the SHA-256"), std::string::npos);
  EXPECT_NE(with(bytes + "tail").find("were written"), std::string::npos);
  EXPECT_NE(with(bytes.substr(0, bytes.size() - 100)).find("truncated"), std::string::npos);
  std::string bad_header = bytes;
  bad_header[20] = 'X';
  EXPECT_NE(with(bad_header).find("integrity header"), std::string::npos);
  EXPECT_EQ(with(bytes), "");
}

TEST(Checkpoint, ForeignFormatAndNewerVersion) {
  const std::string dir = scratch_dir();
  std::string path = saved("mamba1", dir);
  {
    Edit e(path);
    h5::write_attr_string(e.id, "format", "someone-elses-model", "test");
  }
  EXPECT_NE(load_error(path).find("someone-elses-model"), std::string::npos);
  path = saved("mamba1", dir);
  {
    Edit e(path);
    h5::write_attr_int(e.id, "format_version", 2, "test");
  }
  EXPECT_NE(load_error(path).find("newer MechScope"), std::string::npos);
  path = saved("mamba1", dir);
  {
    Edit e(path);
    H5Adelete(e.id, "format");
  }
  EXPECT_NE(load_error(path).find("'format' is missing"), std::string::npos);
}

TEST(Checkpoint, BadConfigJsonAndVocabulary) {
  const std::string dir = scratch_dir();
  std::string path = saved("mamba2", dir);
  {
    Edit e(path);
    h5::write_attr_string(e.id, "model_config", "{\"d_model\": 32, ", "test");
  }
  EXPECT_NE(load_error(path).find("not valid JSON"), std::string::npos);
  path = saved("mamba2", dir);
  {
    Edit e(path);
    h5::write_attr_string(e.id, "model_config", "{\"d_model\": 32, \"n_layer\": 2, \"vocab_size\": 37, \"ssm_cfg\": {\"layer\": \"Mamba3\"}}", "test");
  }
  EXPECT_NE(load_error(path).find("Mamba3"), std::string::npos);
  path = saved("mamba2", dir);
  {
    Edit e(path);
    h5::write_attr_string(e.id, "vocab", "[\"a\", \"b\"]", "test");
  }
  EXPECT_NE(load_error(path).find("vocab lists 2 tokens"), std::string::npos);
}

TEST(Checkpoint, MissingExtraAndMisshapenParameters) {
  const std::string dir = scratch_dir();
  std::string path = saved("transformer", dir);
  {
    Edit e(path);
    H5Ldelete(e.id, "weights/backbone.layers.1.mixer.in_proj.bias", H5P_DEFAULT);
  }
  EXPECT_NE(load_error(path).find("backbone.layers.1.mixer.in_proj.bias"), std::string::npos);
  path = saved("transformer", dir);
  {
    Edit e(path);
    hid_t g = H5Gopen2(e.id, "weights", H5P_DEFAULT);
    float v[3] = {1, 2, 3};
    h5::write_float(g, "backbone.layers.0.mixer.surprise", v, {3}, "test");
    H5Gclose(g);
  }
  EXPECT_NE(load_error(path).find("backbone.layers.0.mixer.surprise"), std::string::npos);
  path = saved("transformer", dir);
  {
    Edit e(path);
    hid_t g = H5Gopen2(e.id, "weights", H5P_DEFAULT);
    H5Ldelete(g, "backbone.norm_f.weight", H5P_DEFAULT);
    std::vector<float> v(31, 1.f);
    h5::write_float(g, "backbone.norm_f.weight", v.data(), {31}, "test");
    H5Gclose(g);
  }
  std::string msg = load_error(path);
  EXPECT_NE(msg.find("backbone.norm_f.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[31]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[32]"), std::string::npos) << msg;
  // A tied model that nevertheless stores lm_head.weight.
  path = saved("transformer", dir);
  {
    Edit e(path);
    hid_t g = H5Gopen2(e.id, "weights", H5P_DEFAULT);
    std::vector<float> v(40 * 32, 0.f);
    h5::write_float(g, "lm_head.weight", v.data(), {40, 32}, "test");
    H5Gclose(g);
  }
  EXPECT_NE(load_error(path).find("tie_embeddings"), std::string::npos);
  // No /weights at all.
  path = saved("transformer", dir);
  {
    Edit e(path);
    H5Ldelete(e.id, "weights", H5P_DEFAULT);
  }
  EXPECT_NE(load_error(path).find("weights"), std::string::npos);
}

TEST(Checkpoint, NonFiniteValuesAreAWarning) {
  const std::string dir = scratch_dir();
  LanguageModel m(small_config("mamba1"), 1);
  {
    at::NoGradGuard g;
    m.state_dict()[2].second.view(-1)[0] = NAN;
    m.state_dict()[2].second.view(-1)[1] = INFINITY;
  }
  save_checkpoint(dir + "/nan.h5", m, {});
  Checkpoint ck = load_checkpoint(dir + "/nan.h5");
  ASSERT_EQ(ck.warnings.size(), 1u);
  EXPECT_NE(ck.warnings[0].find(m.state_dict()[2].first), std::string::npos);
  EXPECT_NE(ck.warnings[0].find("2 non-finite"), std::string::npos);
}

TEST(Checkpoint, Bfloat16ParametersCarryTheirDtype) {
  const std::string dir = scratch_dir();
  LanguageModel m(small_config("mamba2"), 1);
  m.to(at::kBFloat16);
  save_checkpoint(dir + "/bf16.h5", m, {});
  Checkpoint ck = load_checkpoint(dir + "/bf16.h5");
  EXPECT_EQ(ck.weight_dtypes.at("backbone.embedding.weight"), "bfloat16");
  auto a = m.state_dict(), b = ck.model->state_dict();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(at::equal(a[i].second.to(at::kFloat), b[i].second));
}
