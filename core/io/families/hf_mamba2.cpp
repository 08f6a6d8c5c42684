// Hugging Face Mamba2ForCausalLM (model_type "mamba2"): Mamba2 layers (SSD heads, the gated RMSNorm with the gate
// first, as Hugging Face computes it).
#include "core/io/families/family.h"

#include <ATen/ATen.h>

namespace mechscope::families {

Mapped map_hf_mamba2(const json& j, Tensors& t, const std::string& where) {
  Cfg c(j, where);
  require_silu(c);
  Mapped m;
  const int64_t d = c.count("hidden_size", kMaxDModel);
  const int64_t expand = c.get<int64_t>("expand", 2);
  const int64_t heads = c.get<int64_t>("num_heads", 128), headdim = c.get<int64_t>("head_dim", 64);
  if (heads * headdim != expand * d)
    throw CheckpointError(where + ": num_heads * head_dim (" + std::to_string(heads) + " * " + std::to_string(headdim) +
                          ") must equal expand * hidden_size (" + std::to_string(expand * d) + ")");
  json limit = json::array({0.0, nullptr});
  if (c.has("time_step_limit")) {
    const json& v = c.raw("time_step_limit");
    if (!v.is_array() || v.size() != 2) throw CheckpointError(where + ": time_step_limit should be [min, max]");
    const double lo = c.to_number(v[0], "time_step_limit"), hi = c.to_number(v[1], "time_step_limit");
    limit = json::array({lo, std::isinf(hi) ? json(nullptr) : json(hi)});
  }
  if (c.get<bool>("norm_before_gate", false))
    m.notes.push_back("config.json sets norm_before_gate, which Hugging Face's Mamba2 ignores (it gates, then "
                      "normalises); imported with the gate first, as Hugging Face computes it");
  json ssm = {{"layer", "Mamba2"},
              {"d_state", c.get<int64_t>("state_size", 128)},
              {"d_conv", c.get<int64_t>("conv_kernel", 4)},
              {"expand", expand},
              {"headdim", headdim},
              {"d_ssm", heads * headdim},
              {"ngroups", c.get<int64_t>("n_groups", 1)},
              {"chunk_size", c.get<int64_t>("chunk_size", 256)},
              {"dt_limit", limit},
              {"norm_eps", c.number("layer_norm_epsilon", 1e-5)},
              {"rmsnorm", true},
              {"norm_before_gate", false},
              {"conv_bias", c.get<bool>("use_conv_bias", true)},
              {"bias", c.get<bool>("use_bias", false)}};
  const bool tie = c.has("tie_word_embeddings") ? c.req<bool>("tie_word_embeddings") : !t.has("lm_head.weight");
  finish_hf_ssm(m, c, t, d, ssm, tie);
  // rms_norm: Hugging Face's Mamba2 applies its gated RMSNorm whatever it says; time_step_rank: one dt per head.
  c.finish("hf-mamba2", {"rms_norm", "time_step_rank"});
  return m;
}

}  // namespace mechscope::families
