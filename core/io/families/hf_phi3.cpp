// Hugging Face Phi3ForCausalLM (model_type "phi3": Phi-3, Phi-3.5 and Phi-4-mini): Llama's block with q, k and v in
// one projection (qkv_proj [q | k | v], which is MechScope's in_proj as it is) and gate and up in one (gate_up_proj
// [gate | up]), rotary on the first partial_rotary_factor of each head, a sliding window on every layer when
// sliding_window is set. longrope (the 128k models) is refused by name, as for Llama.
#include "core/io/families/family.h"

#include <ATen/ATen.h>

namespace mechscope::families {

Mapped map_hf_phi3(const json& j, Tensors& t, const std::string& where) {
  Cfg c(j, where);
  require_silu(c);
  Mapped m;
  const int64_t d = c.count("hidden_size", kMaxDModel), L = c.count("num_hidden_layers", kMaxLayers);
  const int64_t V = c.count("vocab_size", kMaxVocab), inter = c.count("intermediate_size", kMaxIntermediate);
  const LlamaAttention a = hf_attention_heads(c, d);
  Rope rope = read_rope(c, 10000.0, true);
  const int64_t rotary = hf_partial_rotary(c, rope, a.head_dim, 1.0);
  json attn = rotary_attn_cfg({d, a.heads, a.kv_heads, a.head_dim, rotary}, rope);
  if (c.has("sliding_window")) {
    const int64_t w = c.req<int64_t>("sliding_window");
    if (w < 1) throw CheckpointError(where + ": sliding_window " + std::to_string(w) + " holds no position");
    attn["sliding_window"] = w;
  }
  const bool tie = c.get<bool>("tie_word_embeddings", false);
  m.model_config = transformer_config(d, inter, L, V, attn, true, c.number("rms_norm_eps", 1e-5), tie);
  // resid_pdrop and embd_pdrop are dropout (off in evaluation); original_max_position_embeddings is read only by
  // longrope, which read_rope refuses.
  c.finish("hf-phi3", {"resid_pdrop", "embd_pdrop", "original_max_position_embeddings"});
  note_mlp_padding(m, inter);
  const int64_t hidden = gated_mlp_hidden(inter), qkv = (a.heads + 2 * a.kv_heads) * a.head_dim;
  put(m, t, "backbone.embedding.weight", "model.embed_tokens.weight");
  put(m, t, "backbone.norm_f.weight", "model.norm.weight");
  for (int64_t i = 0; i < L; ++i) {
    const std::string f = "model.layers." + std::to_string(i) + ".", n = "backbone.layers." + std::to_string(i) + ".";
    put(m, t, n + "norm.weight", f + "input_layernorm.weight");
    put(m, t, n + "norm2.weight", f + "post_attention_layernorm.weight");
    const at::Tensor w = t.take(f + "self_attn.qkv_proj.weight");
    if (w.dim() != 2 || w.size(0) != qkv || w.size(1) != d)
      throw CheckpointError(where + ": " + f + "self_attn.qkv_proj.weight is " + dims_text(w) + ", not [" +
                            std::to_string(qkv) + ", " + std::to_string(d) + "]");
    m.weights[n + "mixer.in_proj.weight"] = w;
    put(m, t, n + "mixer.out_proj.weight", f + "self_attn.o_proj.weight");
    const at::Tensor gu = t.take(f + "mlp.gate_up_proj.weight");
    if (gu.dim() != 2 || gu.size(0) != 2 * inter || gu.size(1) != d)
      throw CheckpointError(where + ": " + f + "mlp.gate_up_proj.weight is " + dims_text(gu) + ", not [2 x " +
                            std::to_string(inter) + ", " + std::to_string(d) + "]");
    // gate_up [gate | up] with down(up * silu(gate)); MechScope's gated MLP is fc1 = [value | gate].
    m.weights[n + "mlp.fc1.weight"] = at::cat({pad_dim(gu.narrow(0, inter, inter), 0, hidden),
                                               pad_dim(gu.narrow(0, 0, inter), 0, hidden)});
    m.weights[n + "mlp.fc2.weight"] = pad_dim(t.take(f + "mlp.down_proj.weight"), 1, hidden);
  }
  if (!tie) put(m, t, "lm_head.weight", "lm_head.weight");
  else if (t.has("lm_head.weight")) handle_tied_head(m, t, true, "lm_head.weight", where);
  return m;
}

}  // namespace mechscope::families
