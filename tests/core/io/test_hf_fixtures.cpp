// Models written by the real `transformers` package (tests/import/make_hf_fixtures.py, transformers 5): imported,
// their logits must be the ones transformers computed; configs the importer cannot honour must be refused by name.
// Each fixture failed before its fix: transformers 5's rope_parameters (a Llama with rotary base 500000 was imported
// with 10000), llama3 and linear rotary scaling (not applied), its {"__float__": "Infinity"} time-step limit (the
// Mamba2 was refused), and the Mamba2 gated norm's epsilon (1e-5 fixed, where transformers uses layer_norm_epsilon).
#include <filesystem>
#include <fstream>

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/io/checkpoint.h"
#include "core/io/import.h"
#include "core/model/model.h"
#include "core/session/session.h"
#include "tests/support/test_support.h"

using namespace mechscope;
namespace fs = std::filesystem;

namespace {

const std::string kDir = std::string(MECHSCOPE_SOURCE_DIR) + "/tests/import/fixtures/hf5";

nlohmann::json expected_of(const std::string& name) {
  std::ifstream in(kDir + "/" + name + "/expected.json");
  return nlohmann::json::parse(in);
}

// max |ours - transformers'| over the fixture's sequence, relative to the largest logit.
double relative_error(const std::string& name) {
  const nlohmann::json e = expected_of(name);
  Checkpoint ck = import_checkpoint(kDir + "/" + name);
  const auto tokens = e.at("tokens").get<std::vector<int64_t>>();
  at::Tensor ids = at::tensor(tokens, at::kLong).unsqueeze(0);
  at::NoGradGuard no_grad;
  ck.model->eval();
  at::Tensor ours = ck.model->forward(ids)[0].to(at::kDouble);
  std::vector<double> flat;
  for (const auto& row : e.at("logits"))
    for (const auto& v : row) flat.push_back(v.get<double>());
  at::Tensor theirs = at::tensor(flat, at::kDouble).reshape(ours.sizes());
  return (ours - theirs).abs().max().item<double>() / theirs.abs().max().item<double>();
}

}  // namespace

TEST(HfFixtures, LlamaWithRopeParametersOfTransformers5) {
  EXPECT_LT(relative_error("llama_theta500k"), 1e-5);
}

TEST(HfFixtures, Mamba2WithAFloatInfinityLimitAndItsOwnNormEpsilon) {
  EXPECT_LT(relative_error("mamba2_eps1e-6"), 1e-5);
  Checkpoint ck = import_checkpoint(kDir + "/mamba2_eps1e-6");
  EXPECT_EQ(ck.config.mamba2.norm_eps, 1e-6);
  EXPECT_EQ(ck.config.mamba2.dt_limit_max, 0.0);  // no upper clamp
}

TEST(HfFixtures, LlamaWithLlama3AndLinearRotaryScaling) {
  EXPECT_LT(relative_error("llama_rope_llama3"), 1e-5);
  EXPECT_LT(relative_error("llama_rope_linear"), 1e-5);
  Checkpoint ck = import_checkpoint(kDir + "/llama_rope_llama3");
  EXPECT_EQ(ck.config.attn.rotary_scaling.type, "llama3");
  EXPECT_EQ(ck.config.attn.rotary_scaling.original_max_position, 16);
}

TEST(HfFixtures, RopeScalingNotImplementedIsRefusedByName) {
  const std::string want = expected_of("llama_rope_dynamic").at("refused").get<std::string>();
  try {
    import_checkpoint(kDir + "/llama_rope_dynamic");
    ADD_FAILURE() << "imported a dynamically scaled rotary as default rotary";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("rope_parameters.rope_type '" + want + "'"), std::string::npos) << e.what();
  }
}

// A key no mapper reads is refused by name (a Mistral-style sliding window would otherwise be dropped silently and
// the logits would differ past the window); keys that do not change the forward pass are ignored, as documented.
TEST(HfFixtures, AKeyTheImporterDoesNotKnowIsRefusedNotIgnored) {
  const std::string dir = mechscope::test::scratch_dir() + "/llama";
  fs::copy(kDir + "/llama_theta500k", dir);
  nlohmann::json cfg;
  {
    std::ifstream in(dir + "/config.json");
    cfg = nlohmann::json::parse(in);
  }
  auto write = [&](const nlohmann::json& j) { std::ofstream(dir + "/config.json") << j.dump(); };
  nlohmann::json with = cfg;
  with["use_cache"] = false;  // generation only
  write(with);
  EXPECT_NO_THROW(import_checkpoint(dir));
  with["sliding_window"] = 4;
  write(with);
  try {
    import_checkpoint(dir);
    ADD_FAILURE() << "a sliding window was ignored";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("'sliding_window' = 4 is not understood"), std::string::npos) << e.what();
  }
}

// A folder of the Hugging Face hub cache (snapshots/<rev>/ whose files are links into blobs/) opens like the
// folder itself, and its provenance digest is the same: links are followed for reading.
TEST(HfFixtures, HubCacheSnapshotOfLinksOpensLikeItsFolder) {
  const std::string root = mechscope::test::scratch_dir() + "/hub", snap = root + "/snapshots/0123abc";
  fs::create_directories(root + "/blobs");
  fs::create_directories(snap);
  for (const char* f : {"config.json", "model.safetensors"}) {
    fs::copy_file(kDir + "/llama_theta500k/" + f, root + "/blobs/" + f + ".blob");
    fs::create_symlink(std::string("../../blobs/") + f + ".blob", snap + "/" + f);
  }
  Checkpoint linked = import_checkpoint(snap), plain = import_checkpoint(kDir + "/llama_theta500k");
  at::Tensor ids = at::arange(12, at::kLong).unsqueeze(0);
  at::NoGradGuard no_grad;
  EXPECT_TRUE(at::equal(linked.model->forward(ids), plain.model->forward(ids)));
  const std::string only = mechscope::test::scratch_dir() + "/plain";
  fs::create_directories(only);
  for (const char* f : {"config.json", "model.safetensors"}) fs::copy_file(kDir + "/llama_theta500k/" + f, only + "/" + f);
  EXPECT_EQ(checkpoint_digest(snap), checkpoint_digest(only));
}
