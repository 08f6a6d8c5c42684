// mamba_ssm's own checkpoints (MambaConfig as config.json): the native model_config already, with
// MambaConfig's defaults where the file leaves a key out; the tensors under their own names.
#include "core/io/families/family.h"

#include <ATen/ATen.h>

namespace mechscope::families {

Mapped map_mamba_ssm(const json& j, Tensors& t, const std::string& where) {
  Mapped m;
  m.model_config = j;
  for (const char* k : {"d_model", "n_layer", "vocab_size"})
    if (!j.contains(k)) throw CheckpointError(where + ": the mamba_ssm config lacks '" + std::string(k) + "'");
  // mamba_ssm's MambaConfig defaults, where the file leaves a key out.
  if (!j.contains("tie_embeddings")) m.model_config["tie_embeddings"] = true;
  if (!j.contains("pad_vocab_size_multiple")) m.model_config["pad_vocab_size_multiple"] = 8;
  const bool tie = m.model_config["tie_embeddings"].get<bool>();
  copy_backbone(m, t, "backbone.embedding.weight");
  handle_tied_head(m, t, tie, "lm_head.weight", where);
  return m;
}

}  // namespace mechscope::families
