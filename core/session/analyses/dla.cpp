// `dla`: direct logit attribution of every component to the answer logit (spec §4).
#include <ATen/ATen.h>

#include "core/session/analyses/builtin.h"

namespace mechscope::builtin {

using nlohmann::json;

namespace {

ResultsFile run(const AnalysisContext& ctx) {
  ResultsFile rf = start_results("dla");
  DlaResult d = direct_logit_attribution(ctx.model, ctx.batch.tokens, Readout::all_labelled(ctx.batch));
  rf.tensors.push_back({"dla/value", d.value, {"component"}, json{{"component", d.components}}});
  rf.settings["answer_logit"] = d.answer_logit;
  at::Tensor order = d.value.abs().argsort(0, true);
  std::ostringstream out;
  out << "mean answer logit " << fmt("%.3f", d.answer_logit) << " = sum of " << d.components.size()
      << " components; largest:\n";
  for (int64_t i = 0; i < std::min<int64_t>(8, order.size(0)); ++i) {
    const int64_t c = order[i].item<int64_t>();
    out << "  " << d.components[c] << "  " << fmt("%+.3f", d.value[c].item<double>()) << "\n";
  }
  rf.summary = out.str();
  rf.csv.tensor = rf.tensors[0];
  return rf;
}

}  // namespace

AnalysisInfo dla_analysis() {
  AnalysisInfo a{"dla", "direct logit attribution: each head's, MLP's and embedding's share of the answer logit (spec §4)",
                 "vector", true, run};
  a.options = {};
  return a;
}

}  // namespace mechscope::builtin
