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
  if (c.get<bool>("norm_before_gate", false))
    m.notes.push_back("config.json sets norm_before_gate, which Hugging Face's Mamba2 ignores (it gates, then "
                      "normalises); imported with the gate first, as Hugging Face computes it");
  const json ssm = hf_mamba2_ssm(c,
                                 {c.get<int64_t>("state_size", 128), c.get<int64_t>("conv_kernel", 4), expand, heads, headdim,
                                  c.get<int64_t>("n_groups", 1), c.get<int64_t>("chunk_size", 256)},
                                 c.number("layer_norm_epsilon", 1e-5), c.get<bool>("use_conv_bias", true),
                                 c.get<bool>("use_bias", false));
  const bool tie = c.has("tie_word_embeddings") ? c.req<bool>("tie_word_embeddings") : !t.has("lm_head.weight");
  finish_hf_ssm(m, c, t, d, ssm, tie);
  // rms_norm: Hugging Face's Mamba2 applies its gated RMSNorm whatever it says; time_step_rank: one dt per head.
  c.finish("hf-mamba2", {"rms_norm", "time_step_rank"});
  return m;
}

}  // namespace mechscope::families
