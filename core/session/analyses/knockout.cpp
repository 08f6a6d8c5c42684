// `knockout`: a layer's attention edges blocked (chosen query:key edges, or every edge from the readout), outcome
// before and after (spec §4).
#include <ATen/ATen.h>

#include "core/session/analyses/builtin.h"
#include "core/util/strings.h"

namespace mechscope::builtin {

using nlohmann::json;

namespace {

ResultsFile run(const AnalysisContext& ctx) {
  const json& o = ctx.options;
  const int64_t layer = o.at("layer").get<int64_t>();
  const auto heads = o.at("heads").get<std::vector<std::string>>();
  const auto edges = o.at("edges").get<std::vector<std::string>>();
  const bool last_row = o.at("last_row").get<bool>();
  if (layer < 0) throw std::invalid_argument("knockout: give --layer");
  Knockout ko;
  ko.layer = layer;
  for (const auto& h : heads) ko.heads.push_back(std::stoll(h));
  for (const auto& e : edges) {
    auto parts = split(e, ':');
    if (parts.size() != 2) throw std::invalid_argument("--edge '" + e + "': expected query:key, e.g. 12:3");
    ko.edges.push_back({std::stoll(parts[0]), std::stoll(parts[1])});
  }
  ko.last_row = last_row;
  if (ko.edges.empty() && !ko.last_row) throw std::invalid_argument("knockout: give --edge q:k (repeatable) or --last-row");
  ResultsFile rf = start_results("knockout");
  rf.settings = {{"layer", layer}, {"heads", heads}, {"edges", edges}, {"last_row", last_row}};
  std::ostringstream out;
  before_after(ctx.model, ctx.batch, knockout_hooks(ctx.model, {ko}, Readout::all_labelled(ctx.batch)), "after knockout",
               "knockout", rf, out);
  rf.summary = out.str();
  return rf;
}

}  // namespace

AnalysisInfo knockout_analysis() {
  AnalysisInfo a{"knockout", "attention knockout: block query->key edges of a layer's heads; outcome before and after (spec §4)",
                 "table", true, run};
  a.options = {{"layer", -1, "the layer (required)"},
               {"heads", json::array(), "the heads whose edges are blocked (numbers; empty: every head)"},
               {"edges", json::array(), "query:key edges to block, e.g. 12:3"},
               {"last_row", false, "block every edge from the answer position to earlier keys"}};
  return a;
}

}  // namespace mechscope::builtin
