// What the importers share, and the table of families (see family.h).
#include "core/io/families/family.h"

#include <ATen/ATen.h>

namespace mechscope::families {

// Adding a family: its file under core/io/families/, its map_ function declared in family.h, and one line here.
const std::vector<Family>& all() {
  static const std::vector<Family> families = {{"mamba_ssm", "", map_mamba_ssm},
                                               {"hf-mamba", "mamba", map_hf_mamba},
                                               {"hf-mamba2", "mamba2", map_hf_mamba2},
                                               {"hf-llama", "llama", map_hf_llama}};
  return families;
}

void put(Mapped& m, Tensors& t, const std::string& native, const std::string& foreign) {
  m.weights[native] = t.take(foreign);
  if (t.dtype(foreign) != "float32") m.source_dtype[native] = t.dtype(foreign);
}

// Ties: drop lm_head.weight when it equals the embedding; a different one means the config is wrong.
void handle_tied_head(Mapped& m, Tensors& t, bool tie, const std::string& head, const std::string& where) {
  if (!t.has(head)) {
    if (!tie) throw CheckpointError(where + ": tie_embeddings/tie_word_embeddings is false but the weights lack " + head);
    return;
  }
  if (tie) {
    at::Tensor h = t.take(head);
    const at::Tensor& e = m.weights.at("backbone.embedding.weight");
    if (!h.sizes().equals(e.sizes()) || !at::equal(h, e))
      throw CheckpointError(where + ": the config ties the output head to the embedding, but " + head +
                            " differs from the embedding; set tie_embeddings (mamba_ssm) or tie_word_embeddings (Hugging "
                            "Face) to false in config.json");
    return;
  }
  put(m, t, "lm_head.weight", head);
}

// Copies every tensor of the backbone.layers.* / backbone.norm_f tree, renaming the embedding.
void copy_backbone(Mapped& m, Tensors& t, const std::string& embedding_name) {
  for (const auto& n : t.names()) {
    if (n == embedding_name) put(m, t, "backbone.embedding.weight", n);
    else if (n.rfind("backbone.", 0) == 0) put(m, t, n, n);
  }
}

void require_silu(const Cfg& c) {
  const auto act = c.get<std::string>("hidden_act", "silu");
  if (act != "silu" && act != "swish")
    throw CheckpointError(c.where() + ": hidden_act is '" + act + "'; MechScope's models use SiLU");
}

// The part HF Mamba and Mamba2 share: the top-level config around their ssm_cfg, and the tensor names.
void finish_hf_ssm(Mapped& m, const Cfg& c, Tensors& t, int64_t d, const json& ssm, bool tie) {
  m.model_config = {{"d_model", d},
                    {"n_layer", c.count("num_hidden_layers", kMaxLayers)},
                    {"vocab_size", c.count("vocab_size", kMaxVocab)},
                    {"ssm_cfg", ssm},
                    {"rms_norm", true},
                    {"norm_epsilon", c.number("layer_norm_epsilon", 1e-5)},
                    {"residual_in_fp32", c.get<bool>("residual_in_fp32", true)},
                    {"tie_embeddings", tie},
                    {"pad_vocab_size_multiple", 1}};
  copy_backbone(m, t, "backbone.embeddings.weight");
  handle_tied_head(m, t, tie, "lm_head.weight", c.where());
}

// Zero rows (fc1) or columns (fc2) up to GatedMLP's multiple of 128: the padded units compute 0 * silu(0) = 0.
at::Tensor pad_dim(const at::Tensor& w, int64_t dim, int64_t to) {
  if (w.size(dim) == to) return w;
  std::vector<int64_t> shape = w.sizes().vec();
  shape[dim] = to - w.size(dim);
  return at::cat({w, at::zeros(shape, w.options())}, dim);
}

}  // namespace mechscope::families
