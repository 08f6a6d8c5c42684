// Hugging Face MambaForCausalLM (model_type "mamba") and FalconMambaForCausalLM ("falcon_mamba"): Mamba1 layers
// under backbone.layers.*.mixer, the embedding as backbone.embeddings.
#include "core/io/families/family.h"

#include <ATen/ATen.h>

namespace mechscope::families {

namespace {

Mapped map_mamba1(const json& j, Tensors& t, const std::string& where, bool falcon) {
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
  if (falcon) {
    const double eps = c.number("mixer_rms_eps", 1e-6);
    if (!(eps > 0 && eps < 1))
      throw CheckpointError(where + ": mixer_rms_eps " + std::to_string(eps) + " is not a small positive number");
    ssm["bcdt_rms_eps"] = eps;
  }
  const bool tie = c.get<bool>("tie_word_embeddings", true);
  finish_hf_ssm(m, c, t, d, ssm, tie);
  // use_falcon_mambapy (4.x) picks an implementation of the same scan.
  c.finish(falcon ? "hf-falcon-mamba" : "hf-mamba", {"use_falcon_mambapy"});
  return m;
}

}  // namespace

Mapped map_hf_mamba(const json& j, Tensors& t, const std::string& where) { return map_mamba1(j, t, where, false); }

// Falcon-Mamba (model_type "falcon_mamba"): Mamba's layout, with weightless RMS norms of dt (before dt_proj), B and
// C, epsilon mixer_rms_eps. Their dummy weights are buffers transformers does not save.
Mapped map_hf_falcon_mamba(const json& j, Tensors& t, const std::string& where) { return map_mamba1(j, t, where, true); }

}  // namespace mechscope::families
