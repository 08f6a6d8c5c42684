// A template plugin: copy this folder, rename the target in plugins/CMakeLists.txt, and fill in.
// It adds one analysis, "embedding-norms": the norm of each input token's embedding row in one example.
//   mechscope-cli analyze embedding-norms -c model.h5 --option example=3 --csv norms.csv
#include <ATen/ATen.h>

#include "core/io/tokens.h"
#include "core/model/model.h"
#include "core/plugin/plugin.h"

namespace {

mechscope::ResultsFile embedding_norms(const mechscope::AnalysisContext& ctx) {
  const int64_t e = ctx.options.value("example", 0);
  if (e < 0 || e >= ctx.batch.size()) throw std::invalid_argument("embedding-norms: example out of range");
  const int64_t len = ctx.batch.lengths[e].item<int64_t>();
  at::Tensor ids = ctx.batch.tokens[e].narrow(0, 0, len);
  at::Tensor rows = ctx.model.embedding_matrix().detach().index_select(0, ids);
  std::vector<std::string> labels;
  for (int64_t j = 0; j < len; ++j) labels.push_back(mechscope::token_string(ids[j].item<int64_t>(), ctx.vocab));
  mechscope::ResultsFile rf;
  rf.kind = "embedding-norms";
  rf.tensors.push_back({"embedding_norms/norm", rows.norm(2, 1), {"pos"}, {{"pos", labels}}});
  return rf;
}

}  // namespace

MECHSCOPE_PLUGIN {
  host.set_description("template", "0.1", "an example plugin: embedding norms of the input tokens");
  host.add_analysis({"embedding-norms", "the norm of each input token's embedding row", "vector", false, embedding_norms});
}
