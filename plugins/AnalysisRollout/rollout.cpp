// Plugin: attention rollout (Abnar & Zuidema 2020) over mixed architectures. Each layer's mixing is the head
// mean of its attention mass (softmax attention, or |implicit attention| normalised per row for SSM heads;
// both mixers of a parallel layer averaged); with the residual it becomes 0.5 A + 0.5 I, and the product over
// layers says how much each output position draws on each input token.
#include <stdexcept>

#include <ATen/ATen.h>

#include "core/analysis/analysis.h"
#include "core/io/tokens.h"
#include "core/model/model.h"
#include "core/plugin/plugin.h"

namespace {

mechscope::ResultsFile rollout(const mechscope::AnalysisContext& ctx) {
  const int64_t e = ctx.options.value("example", 0);
  if (e < 0 || e >= ctx.batch.size())
    throw std::invalid_argument("attention-rollout: --option example=N with N in 0.." + std::to_string(ctx.batch.size() - 1));
  const int64_t len = ctx.batch.lengths[e].item<int64_t>();
  at::Tensor tokens = ctx.batch.tokens.narrow(0, e, 1).narrow(1, 0, len);
  auto maps = mechscope::attention_maps(ctx.model, tokens);
  const int64_t n = ctx.model.n_layers();
  at::Tensor eye = at::eye(len, at::kDouble), R = eye.clone();
  std::vector<at::Tensor> per_layer;
  for (int64_t l = 0; l < n; ++l) {
    at::Tensor A = at::zeros({len, len}, at::kDouble);
    int count = 0;
    for (const auto& m : maps)
      if (m.layer == l) {
        A += mechscope::attention_mass(m.pattern[0].to(at::kDouble)).mean(0);
        ++count;
      }
    A /= std::max(count, 1);
    per_layer.push_back(A.to(at::kFloat));
    R = at::matmul(0.5 * A + 0.5 * eye, R);
  }
  std::vector<std::string> labels;
  for (int64_t j = 0; j < len; ++j) labels.push_back(mechscope::token_string(tokens[0][j].item<int64_t>(), ctx.vocab));
  mechscope::ResultsFile rf;
  rf.kind = "attention-rollout";
  rf.settings = {{"example", e}};
  rf.tensors.push_back({"attention_rollout/rollout", R.to(at::kFloat), {"q_pos", "k_pos"},
                        {{"q_pos", labels}, {"k_pos", labels}}});
  rf.tensors.push_back({"attention_rollout/layer_mass", at::stack(per_layer), {"layer", "q_pos", "k_pos"},
                        {{"q_pos", labels}, {"k_pos", labels}}});
  return rf;
}

}  // namespace

MECHSCOPE_PLUGIN {
  host.set_description("attention-rollout", "1.0", "attention rollout across attention and SSM layers");
  host.add_analysis({"attention-rollout", "how much each position draws on each input token, through every layer "
                                          "(Abnar & Zuidema 2020; SSM layers by their implicit attention)",
                     "grid", false, rollout});
}
