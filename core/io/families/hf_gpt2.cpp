// Hugging Face GPT2LMHeadModel (model_type "gpt2"): learned positions, LayerNorms with biases, Conv1D weights
// stored [in, out] (transposed here to Linear's [out, in]), q/k/v fused in c_attn in that order, a plain MLP with
// biases, the head tied to the embedding. Older checkpoints (openai-community/gpt2's pytorch_model.bin) name the
// tensors without the "transformer." prefix and carry the causal-mask buffers attn.bias and attn.masked_bias,
// which are recomputed here and dropped.
#include "core/io/families/family.h"

#include <ATen/ATen.h>

namespace mechscope::families {

Mapped map_hf_gpt2(const json& j, Tensors& t, const std::string& where) {
  Cfg c(j, where);
  Mapped m;
  const int64_t d = c.count("n_embd", kMaxDModel), H = c.count("n_head", kMaxDModel);
  const int64_t L = c.count("n_layer", kMaxLayers), V = c.count("vocab_size", kMaxVocab);
  const int64_t P = c.count("n_positions", 1 << 22);
  if (d % H != 0)
    throw CheckpointError(where + ": n_embd " + std::to_string(d) + " is not divisible by n_head " + std::to_string(H));
  const int64_t inner = c.has("n_inner") ? c.count("n_inner", kMaxIntermediate) : 4 * d;
  const std::string act = hf_activation(c, "activation_function", "gelu_new");
  if (c.get<bool>("scale_attn_by_inverse_layer_idx", false))
    throw CheckpointError(where + ": scale_attn_by_inverse_layer_idx true (scores divided by the layer number) is not "
                          "supported");
  if (c.get<bool>("add_cross_attention", false))
    throw CheckpointError(where + ": add_cross_attention true (an encoder-decoder GPT-2) is not a language model");
  // reorder_and_upcast_attn computes the same scores in float32 first: the same math in a float32 forward.
  (void)c.get<bool>("reorder_and_upcast_attn", false);
  const bool scaled = c.get<bool>("scale_attn_weights", true);
  const bool tie = c.get<bool>("tie_word_embeddings", true);
  json attn = {{"num_heads", H}, {"qkv_proj_bias", true}, {"out_proj_bias", true}, {"causal", true}, {"rotary_emb_dim", 0}};
  if (!scaled) attn["softmax_scale"] = 1.0;
  m.model_config = transformer_config(d, inner, L, V, attn, false, c.number("layer_norm_epsilon", 1e-5), tie);
  m.model_config.update({{"pos_emb", "learned"}, {"max_seq_len", P}, {"mlp_type", "plain"}, {"mlp_activation", act},
                         {"mlp_bias", true}});
  // Dropout, the sequence-summary head of GPT2DoubleHeadsModel, and n_ctx (n_positions' old name) leave the
  // language model's forward pass unchanged.
  c.finish("hf-gpt2", {"attn_pdrop", "embd_pdrop", "resid_pdrop", "summary_activation", "summary_first_dropout",
                       "summary_proj_to_labels", "summary_type", "summary_use_proj", "n_ctx"});
  const std::string pre = t.has("transformer.wte.weight") ? "transformer." : "";
  put(m, t, "backbone.embedding.weight", pre + "wte.weight");
  put(m, t, "backbone.pos_embedding.weight", pre + "wpe.weight");
  put(m, t, "backbone.norm_f.weight", pre + "ln_f.weight");
  put(m, t, "backbone.norm_f.bias", pre + "ln_f.bias");
  // Conv1D [in, out] -> Linear [out, in], checked against the config's sizes.
  auto conv = [&](const std::string& native, const std::string& foreign, int64_t in, int64_t out) {
    at::Tensor w = t.take(foreign);
    if (w.dim() != 2 || w.size(0) != in || w.size(1) != out)
      throw CheckpointError(where + ": " + foreign + " has shape " + dims_text(w) + "; the config implies [" +
                            std::to_string(in) + ", " + std::to_string(out) + "]");
    m.weights[native] = w.t().contiguous();
    if (t.dtype(foreign) != "float32") m.source_dtype[native] = t.dtype(foreign);
  };
  for (int64_t i = 0; i < L; ++i) {
    const std::string f = pre + "h." + std::to_string(i) + ".", n = "backbone.layers." + std::to_string(i) + ".";
    for (const auto& [native, foreign] : std::vector<std::pair<std::string, std::string>>{{"norm", "ln_1"}, {"norm2", "ln_2"}}) {
      put(m, t, n + native + ".weight", f + foreign + ".weight");
      put(m, t, n + native + ".bias", f + foreign + ".bias");
    }
    conv(n + "mixer.in_proj.weight", f + "attn.c_attn.weight", d, 3 * d);
    put(m, t, n + "mixer.in_proj.bias", f + "attn.c_attn.bias");
    conv(n + "mixer.out_proj.weight", f + "attn.c_proj.weight", d, d);
    put(m, t, n + "mixer.out_proj.bias", f + "attn.c_proj.bias");
    conv(n + "mlp.fc1.weight", f + "mlp.c_fc.weight", d, inner);
    put(m, t, n + "mlp.fc1.bias", f + "mlp.c_fc.bias");
    conv(n + "mlp.fc2.weight", f + "mlp.c_proj.weight", inner, d);
    put(m, t, n + "mlp.fc2.bias", f + "mlp.c_proj.bias");
    for (const char* buffer : {"attn.bias", "attn.masked_bias"})  // the causal mask, recomputed
      if (t.has(f + buffer)) t.drop(f + buffer);
  }
  handle_tied_head(m, t, tie, "lm_head.weight", where);
  return m;
}

}  // namespace mechscope::families
