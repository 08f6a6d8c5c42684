// Hugging Face MambaForCausalLM (model_type "mamba"): Mamba1 layers under backbone.layers.*.mixer, the embedding
// as backbone.embeddings.
#include "core/io/families/family.h"

#include <ATen/ATen.h>

namespace mechscope::families {

Mapped map_hf_mamba(const json& j, Tensors& t, const std::string& where) {
  Cfg c(j, where);
  require_silu(c);
  Mapped m;
  const int64_t d = c.count("hidden_size", kMaxDModel);
  const double expand = c.number("expand", 2);
  if (c.has("intermediate_size") && c.req<int64_t>("intermediate_size") != static_cast<int64_t>(expand * d))
    throw CheckpointError(where + ": intermediate_size (" + std::to_string(c.req<int64_t>("intermediate_size")) +
                          ") is not expand * hidden_size (" + std::to_string(static_cast<int64_t>(expand * d)) + ")");
  json ssm = {{"layer", "Mamba1"},
              {"d_state", c.get<int64_t>("state_size", 16)},
              {"d_conv", c.get<int64_t>("conv_kernel", 4)},
              {"expand", expand},
              {"conv_bias", c.get<bool>("use_conv_bias", true)},
              {"bias", c.get<bool>("use_bias", false)}};
  if (c.has("time_step_rank")) ssm["dt_rank"] = c.raw("time_step_rank");
  const bool tie = c.get<bool>("tie_word_embeddings", true);
  finish_hf_ssm(m, c, t, d, ssm, tie);
  c.finish("hf-mamba");
  return m;
}

}  // namespace mechscope::families
