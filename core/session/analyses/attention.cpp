// `attention`: the (implicit) attention maps of one sequence, every layer and mixer or one chosen (spec §5).
#include <iostream>

#include <ATen/ATen.h>

#include "core/analysis/analysis.h"
#include "core/model/model.h"
#include "core/session/analyses/builtin.h"

namespace mechscope::builtin {

using nlohmann::json;

namespace {

std::vector<AttentionMap> chosen_maps(LanguageModel& model, const at::Tensor& tokens, int64_t layer,
                                      const std::string& mixer, int64_t groups) {
  if (layer < 0) return attention_maps(model, tokens);
  if (layer >= model.n_layers())
    throw std::invalid_argument("--layer " + std::to_string(layer) + ": the model has layers 0.." +
                                std::to_string(model.n_layers() - 1));
  std::vector<AttentionMap> maps;
  for (const auto& [scope, H] : model.heads_of_layer(layer))
    if (mixer.empty() || mixer == scope) maps.push_back(attention_map(model, tokens, layer, scope, groups));
  if (maps.empty()) throw std::invalid_argument("--mixer " + mixer + ": layer " + std::to_string(layer) + " has no such mixer");
  return maps;
}

ResultsFile run(const AnalysisContext& ctx) {
  const json& o = ctx.options;
  const int64_t head = o.at("head").get<int64_t>(), groups = o.at("groups").get<int64_t>();
  const bool normalise = o.at("normalise").get<bool>();
  ResultsFile rf = start_results("attention");
  const at::Tensor tokens = ctx.batch.tokens.narrow(0, 0, 1).narrow(1, 0, ctx.batch.lengths[0].item<int64_t>());
  auto labels = token_labels(tokens[0], ctx.vocab);
  rf.provenance["tokens"] = labels;
  std::vector<AttentionMap> maps = chosen_maps(ctx.model, tokens, o.at("layer").get<int64_t>(),
                                               o.at("mixer").get<std::string>(), groups);
  rf.settings = {{"normalised", normalise}, {"mamba1_groups", groups}};
  std::ostringstream out;
  for (const auto& m : maps) {
    at::Tensor p = m.pattern[0];
    if (normalise) p = normalise_map(p);
    const std::string name = "attention/L" + std::to_string(m.layer) + "." + m.mixer;
    rf.tensors.push_back({name, p, {"head", "q_pos", "k_pos"}, json{{"q_pos", labels}, {"k_pos", labels}}});
    out << "L" << m.layer << " " << m.mixer << ": " << p.size(0) << " head(s) x " << p.size(1) << " x " << p.size(2) << "\n";
  }
  rf.summary = out.str();
  if (maps.size() != 1 || head < 0) {
    rf.csv.unavailable = "--csv with attention: choose one map with --layer, --mixer and --head";
  } else if (head >= rf.tensors[0].value.size(0)) {
    rf.csv.unavailable = "--head " + std::to_string(head) + ": the map has " +
                         std::to_string(rf.tensors[0].value.size(0)) + " heads";
  } else {
    rf.csv.tensor = {rf.tensors[0].name, rf.tensors[0].value[head], {"q_pos", "k_pos"}, rf.tensors[0].labels};
  }
  return rf;
}

}  // namespace

AnalysisInfo attention_analysis() {
  AnalysisInfo a{"attention", "attention and implicit SSM attention maps of one sequence (spec §5)", "grid", false, run};
  a.input = AnalysisInput::Sequence;
  a.options = {{"layer", -1, "the layer (-1: every layer)"},
               {"mixer", "", "attn or ssm (both by default)"},
               {"head", -1, "the head a CSV export writes"},
               {"normalise", false, "min-max normalise each map"},
               {"groups", 1, "Mamba1 channel groups (1: the channel average)"}};
  return a;
}

}  // namespace mechscope::builtin
