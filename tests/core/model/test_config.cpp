// ModelConfig: presets, JSON round trip, and errors that name the offending key.
#include <gtest/gtest.h>

#include "core/model/config.h"

using mechscope::ModelConfig;
using nlohmann::json;

static std::string error_of(const json& j) {
  try {
    ModelConfig::from_json(j);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(Config, EveryPresetParsesAndRoundTrips) {
  for (const auto& name : ModelConfig::preset_names()) {
    ModelConfig c = ModelConfig::from_json(ModelConfig::preset_json(name, json::object()));
    json j = c.to_json();
    EXPECT_EQ(ModelConfig::from_json(j).to_json(), j) << name;
  }
}

TEST(Config, HybridAlternatesAndKeepsPatternWhenDepthChanges) {
  ModelConfig c = ModelConfig::from_json(ModelConfig::preset_json("hybrid", {{"n_layer", 6}}));
  ASSERT_EQ(c.n_layer, 6);
  for (int64_t i = 0; i < 6; ++i)
    EXPECT_EQ(c.mixer_kind(i), i % 2 ? mechscope::MixerKind::Attention : mechscope::MixerKind::Mamba2) << i;
  ModelConfig p = ModelConfig::from_json(ModelConfig::preset_json("parallel-hybrid", {{"n_layer", 3}}));
  EXPECT_EQ(p.parallel_layer_idx, (std::vector<int64_t>{0, 1, 2}));
}

TEST(Config, DerivedSizesMatchTheReference) {
  // mamba_ssm: dt_rank = ceil(d_model / 16); GatedMLP hidden rounded up to 128; vocab padded to 8.
  ModelConfig c = ModelConfig::from_json({{"d_model", 100}, {"n_layer", 1}, {"vocab_size", 61}, {"d_intermediate", 130}});
  EXPECT_EQ(c.mamba1.dt_rank, 7);
  EXPECT_EQ(c.mlp_hidden(), 256);
  EXPECT_EQ(c.padded_vocab_size(), 64);
  EXPECT_EQ(c.mamba1_d_inner(), 200);
}

TEST(Config, MissingCausalIsAnError) {
  json j = ModelConfig::preset_json("transformer", json::object());
  j["attn_cfg"].erase("causal");
  EXPECT_NE(error_of(j).find("causal"), std::string::npos);
  j["attn_cfg"]["causal"] = false;
  EXPECT_NE(error_of(j).find("causal"), std::string::npos);
}

TEST(Config, UnknownKeysAreReportedWithSuggestions) {
  json j = ModelConfig::preset_json("mamba2", json::object());
  j["ssm_cfg"]["head_dim"] = 16;  // Mamba2 calls it headdim
  std::string msg = error_of(j);
  EXPECT_NE(msg.find("head_dim"), std::string::npos) << msg;
  EXPECT_NE(msg.find("headdim"), std::string::npos) << msg;
  json k = ModelConfig::preset_json("mamba1", json::object());
  k["d_modle"] = 3;
  EXPECT_NE(error_of(k).find("d_model"), std::string::npos);
}

TEST(Config, InvalidSizesNameTheKey) {
  json j = ModelConfig::preset_json("mamba2", json::object());
  j["ssm_cfg"]["headdim"] = 48;  // 256 is not a multiple of 48
  EXPECT_NE(error_of(j).find("headdim"), std::string::npos);
  json k = ModelConfig::preset_json("transformer", json::object());
  k["attn_layer_idx"] = {0, 5};
  EXPECT_NE(error_of(k).find("attn_layer_idx"), std::string::npos);
  json l = ModelConfig::preset_json("transformer", json::object());
  l["d_model"] = "wide";
  EXPECT_NE(error_of(l).find("d_model"), std::string::npos);
  EXPECT_NE(error_of({{"n_layer", 2}}).find("d_model"), std::string::npos);
  json m = ModelConfig::preset_json("transformer", json::object());
  m["pos_emb"] = "learned";  // without max_seq_len
  EXPECT_NE(error_of(m).find("max_seq_len"), std::string::npos);
}

TEST(Config, UnknownPresetListsThePresets) {
  try {
    ModelConfig::preset_json("mamba3", json::object());
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("parallel-hybrid"), std::string::npos);
  }
}
