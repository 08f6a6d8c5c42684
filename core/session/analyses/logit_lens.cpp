// `logit-lens`: the residual after each layer decoded through the final norm and the unembedding (spec §5).
#include <ATen/ATen.h>

#include "core/analysis/analysis.h"
#include "core/session/analyses/builtin.h"

namespace mechscope::builtin {

using nlohmann::json;

namespace {

ResultsFile run(const AnalysisContext& ctx) {
  ResultsFile rf = start_results("logit-lens");
  LogitLens lens = logit_lens(ctx.model, ctx.batch);
  rf.tensors.push_back({"logit_lens/prob", lens.prob, {"stage"}, json{{"stage", lens.stages}}});
  rf.tensors.push_back({"logit_lens/accuracy", lens.accuracy, {"stage"}, json{{"stage", lens.stages}}});
  auto pos = position_labels(ctx.batch.tokens[0], ctx.vocab);
  rf.tensors.push_back({"logit_lens/example_prob", lens.example_prob, {"stage", "pos"}, json{{"stage", lens.stages}, {"pos", pos}}});
  rf.tensors.push_back({"logit_lens/example_top", lens.example_top, {"stage", "pos"}, json{{"stage", lens.stages}, {"pos", pos}}});
  std::ostringstream out;
  for (size_t i = 0; i < lens.stages.size(); ++i)
    out << lens.stages[i] << ": answer probability " << fmt("%.3f", lens.prob[i].item<double>()) << ", accuracy "
        << fmt("%.3f", lens.accuracy[i].item<double>()) << "\n";
  rf.summary = out.str();
  rf.csv.row_axis = "stage";
  rf.csv.rows = lens.stages;
  rf.csv.columns = {{"prob", lens.prob}, {"accuracy", lens.accuracy}};
  return rf;
}

}  // namespace

AnalysisInfo logit_lens_analysis() {
  AnalysisInfo a{"logit-lens", "the residual after each layer decoded to the answer: probability and accuracy per stage (spec §5)",
                 "table", true, run};
  return a;
}

}  // namespace mechscope::builtin
