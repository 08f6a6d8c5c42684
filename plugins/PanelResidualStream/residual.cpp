// Plugin (core part): the "residual-stream" analysis. For one example, per layer and position: the norm of the
// residual stream entering each block and leaving the last ("norm"), or how much each block changes it,
// |resid_post - resid_pre| / |resid_pre| ("update"). Registered through core's entry points, so
// `mechscope-cli analyze residual-stream` runs it too; the panel in panel.cpp draws it in the workbench.
#include <stdexcept>

#include <ATen/ATen.h>

#include "core/io/tokens.h"
#include "core/model/model.h"
#include "core/plugin/plugin.h"

namespace {

mechscope::ResultsFile residual_stream(const mechscope::AnalysisContext& ctx) {
  const int64_t e = ctx.options.value("example", 0);
  const std::string measure = ctx.options.value("measure", std::string("norm"));
  if (measure != "norm" && measure != "update")
    throw std::invalid_argument("residual-stream: measure must be \"norm\" or \"update\", not \"" + measure + "\"");
  if (e < 0 || e >= ctx.batch.size())
    throw std::invalid_argument("residual-stream: example " + std::to_string(e) + " is not in 0.." +
                                std::to_string(ctx.batch.size() - 1));
  const int64_t len = ctx.batch.lengths[e].item<int64_t>(), n = ctx.model.n_layers();
  at::Tensor tokens = ctx.batch.tokens.narrow(0, e, 1).narrow(1, 0, len);
  at::NoGradGuard no_grad;
  auto [logits, cache] = ctx.model.run_with_cache(
      tokens, mechscope::HookSelection::of({"blocks.*.hook_resid_pre", "blocks.*.hook_resid_post"}));
  std::vector<at::Tensor> rows;
  std::vector<std::string> row_labels;
  for (int64_t l = 0; l < n; ++l) {
    const std::string b = "blocks." + std::to_string(l) + ".";
    at::Tensor pre = cache.at(b + "hook_resid_pre")[0], post = cache.at(b + "hook_resid_post")[0];
    rows.push_back(measure == "norm" ? pre.norm(2, -1) : (post - pre).norm(2, -1) / pre.norm(2, -1).clamp_min(1e-12));
    row_labels.push_back(measure == "norm" ? "into L" + std::to_string(l) : "L" + std::to_string(l));
  }
  if (measure == "norm") {
    rows.push_back(cache.at("blocks." + std::to_string(n - 1) + ".hook_resid_post")[0].norm(2, -1));
    row_labels.push_back("out");
  }
  std::vector<std::string> pos;
  for (int64_t j = 0; j < len; ++j)
    pos.push_back(std::to_string(j) + " " + mechscope::token_string(tokens[0][j].item<int64_t>(), ctx.vocab));
  mechscope::ResultsFile rf;
  rf.kind = "residual-stream";
  rf.settings = {{"example", e}, {"measure", measure}};
  rf.tensors.push_back({"residual_stream/" + measure, at::stack(rows).to(at::kFloat), {"layer", "pos"},
                        {{"layer", row_labels}, {"pos", pos}}});
  return rf;
}

}  // namespace

MECHSCOPE_PLUGIN {
  host.set_description("residual-stream", "1.0", "residual-stream norms and block updates, with a workbench panel");
  host.add_analysis({"residual-stream", "per layer and position: the residual norm (measure=norm) or each block's "
                                        "relative update (measure=update), for one example",
                     "grid", false, residual_stream});
}
