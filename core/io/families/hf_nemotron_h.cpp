// Hugging Face NemotronHForCausalLM (model_type "nemotron_h", NVIDIA's Nemotron-H; transformers 5 only): each layer
// one of a Mamba2 mixer ("M" / linear_attention: Hugging Face's Mamba2 layout, its gated RMSNorm over n_groups
// groups), an attention without positional encoding ("*" / full_attention) or a plain MLP with squared ReLU ("-" /
// mlp), each as resid + mixer(norm(resid)). The MLP layers are MechScope's blocks without a mixer
// (mlp_only_layer_idx, the norm as norm2), the others blocks without an MLP (mlp_layer_idx lists only the MLP
// layers). The mixture-of-experts layers of the later Nemotron models ("E" / moe: sigmoid routing over expert groups
// with a correction bias) and multi-token-prediction layers are refused by name.
#include "core/io/families/family.h"

#include <ATen/ATen.h>

namespace mechscope::families {

namespace {

// Each layer's kind: layers_block_type (as transformers 5 saves it) or the hub's hybrid_override_pattern string.
std::vector<std::string> nemotron_layers(const Cfg& c) {
  const std::string& where = c.where();
  std::vector<std::string> kinds;
  if (c.has("layers_block_type")) {
    try {
      kinds = c.raw("layers_block_type").get<std::vector<std::string>>();
    } catch (const json::exception&) {
      throw CheckpointError(where + ": layers_block_type should be a list of layer kinds");
    }
    if (c.has("hybrid_override_pattern")) throw CheckpointError(where + ": both layers_block_type and hybrid_override_pattern");
  } else {
    const std::string p = c.req<std::string>("hybrid_override_pattern");
    for (char ch : p) {
      if (ch == 'M') kinds.push_back("mamba");
      else if (ch == '*') kinds.push_back("attention");
      else if (ch == '-') kinds.push_back("mlp");
      else if (ch == 'E') kinds.push_back("moe");
      else throw CheckpointError(where + ": hybrid_override_pattern holds '" + std::string(1, ch) + "'; MechScope knows M, *, - and E");
    }
  }
  if (kinds.empty() || static_cast<int64_t>(kinds.size()) > kMaxLayers)
    throw CheckpointError(where + ": " + std::to_string(kinds.size()) + " layers, outside [1, " + std::to_string(kMaxLayers) + "]");
  for (auto& k : kinds) {  // transformers 5's names for the same kinds
    if (k == "linear_attention") k = "mamba";
    if (k == "full_attention") k = "attention";
    if (k == "moe")
      throw CheckpointError(where + ": a mixture-of-experts layer (moe): Nemotron's sigmoid routing over expert groups with "
                            "a correction bias, which MechScope does not have yet");
    if (k != "mamba" && k != "attention" && k != "mlp")
      throw CheckpointError(where + ": layer kind '" + k + "'; MechScope knows mamba, attention and mlp layers");
  }
  if (c.has("num_hidden_layers") && c.req<int64_t>("num_hidden_layers") != static_cast<int64_t>(kinds.size()))
    throw CheckpointError(where + ": num_hidden_layers disagrees with the " + std::to_string(kinds.size()) + " layer kinds");
  return kinds;
}

}  // namespace

Mapped map_hf_nemotron_h(const json& j, Tensors& t, const std::string& where) {
  Cfg c(j, where);
  const std::vector<std::string> kinds = nemotron_layers(c);
  const int64_t L = static_cast<int64_t>(kinds.size());
  const int64_t d = c.count("hidden_size", kMaxDModel), V = c.count("vocab_size", kMaxVocab);
  const int64_t inter = c.count("intermediate_size", kMaxIntermediate);
  const LlamaAttention heads = hf_attention_heads(c, d);
  // transformers' Nemotron-H gives its attention no biases whatever attention_bias says, and its Mamba2 projections
  // biases by use_bias (mamba_proj_bias is an older name): a file that disagrees is refused, not guessed at.
  if (c.get<bool>("attention_bias", false))
    throw CheckpointError(where + ": 'attention_bias' is true, which transformers' Nemotron-H does not apply; refusing to guess");
  if (c.has("mamba_proj_bias") && c.req<bool>("mamba_proj_bias") != c.get<bool>("use_bias", false))
    throw CheckpointError(where + ": 'mamba_proj_bias' and 'use_bias' disagree; transformers' Nemotron-H reads use_bias");
  if (c.get<int64_t>("num_nextn_predict_layers", 0) != 0)
    throw CheckpointError(where + ": num_nextn_predict_layers > 0: multi-token-prediction layers, which MechScope does not have");
  if (c.has("sliding_window")) throw CheckpointError(where + ": sliding_window is set; transformers' Nemotron-H applies none");
  if (c.get<std::string>("mamba_hidden_act", "silu") != "silu")
    throw CheckpointError(where + ": mamba_hidden_act '" + c.get<std::string>("mamba_hidden_act", "") +
                          "': MechScope's Mamba2 convolution is followed by silu");
  const std::string act = hf_activation(c, "mlp_hidden_act", "relu2");
  const bool mlp_bias = c.get<bool>("mlp_bias", false), tie = c.get<bool>("tie_word_embeddings", false);
  const double eps = c.number("layer_norm_epsilon", 1e-5);
  const int64_t mheads = c.get<int64_t>("mamba_num_heads", 128), mhead_dim = c.get<int64_t>("mamba_head_dim", 64);
  if (mheads < 1 || mhead_dim < 1 || mheads * mhead_dim > kMaxIntermediate)
    throw CheckpointError(where + ": mamba_num_heads x mamba_head_dim outside MechScope's limits");
  const int64_t expand = (mheads * mhead_dim + d - 1) / d;  // the SSM's width is heads x head size (d_ssm)
  const json ssm = hf_mamba2_ssm(c,
                                 {c.get<int64_t>("ssm_state_size", 128), c.get<int64_t>("conv_kernel", 4), expand, mheads,
                                  mhead_dim, c.get<int64_t>("n_groups", 8), c.get<int64_t>("chunk_size", 128)},
                                 eps, c.get<bool>("use_conv_bias", true), c.get<bool>("use_bias", false));
  json attn = {{"num_heads", heads.heads},  {"num_heads_kv", heads.kv_heads}, {"qkv_proj_bias", false},
               {"out_proj_bias", false},    {"causal", true},                 {"rotary_emb_dim", 0}};
  if (heads.head_dim * heads.heads != d) attn["head_dim"] = heads.head_dim;
  std::vector<int64_t> attn_idx, mlp_idx;
  for (int64_t i = 0; i < L; ++i) {
    if (kinds[static_cast<size_t>(i)] == "attention") attn_idx.push_back(i);
    if (kinds[static_cast<size_t>(i)] == "mlp") mlp_idx.push_back(i);
  }
  Mapped m;
  m.model_config = transformer_config(d, mlp_idx.empty() ? 0 : inter, L, V, attn, true, eps, tie);
  m.model_config.update({{"attn_layer_idx", attn_idx}, {"ssm_cfg", ssm}, {"mlp_type", "plain"}, {"mlp_activation", act},
                         {"mlp_bias", mlp_bias}, {"mlp_only_layer_idx", mlp_idx}, {"mlp_layer_idx", mlp_idx}});
  // expand: the mixer's width is mamba_num_heads x mamba_head_dim; residual_in_fp32: transformers' Nemotron-H keeps
  // the residual in the model's dtype whatever it says; the rest: the cache, kernels, generation, and the keys of
  // the mixture-of-experts layers this model does not have.
  c.finish("hf-nemotron-h", {"expand", "residual_in_fp32", "hidden_dropout", "mamba_ssm_cache_dtype", "use_mamba_kernels",
                             "num_logits_to_keep", "moe_intermediate_size", "moe_latent_size",
                             "moe_shared_expert_intermediate_size", "moe_shared_expert_overlap", "n_group",
                             "n_routed_experts", "n_shared_experts", "norm_topk_prob", "num_experts_per_tok",
                             "output_router_logits", "routed_scaling_factor", "topk_group", "mtp_layers_block_type",
                             "router_aux_loss_coef"});
  put(m, t, "backbone.embedding.weight", "backbone.embeddings.weight");
  put(m, t, "backbone.norm_f.weight", "backbone.norm_f.weight");
  for (int64_t i = 0; i < L; ++i) {
    const std::string f = "backbone.layers." + std::to_string(i) + ".", n = f;
    const std::string& kind = kinds[static_cast<size_t>(i)];
    if (kind == "mlp") {
      put(m, t, n + "norm2.weight", f + "norm.weight");
      at::Tensor up = t.take(f + "mixer.up_proj.weight"), down = t.take(f + "mixer.down_proj.weight");
      if (up.dim() != 2 || up.size(0) != inter || up.size(1) != d || down.dim() != 2 || down.size(0) != d || down.size(1) != inter)
        throw CheckpointError(where + ": " + f + "mixer.{up,down}_proj are " + dims_text(up) + " and " + dims_text(down) +
                              "; the config implies intermediate_size " + std::to_string(inter));
      if (t.dtype(f + "mixer.up_proj.weight") != "float32") {
        m.source_dtype[n + "mlp.fc1.weight"] = t.dtype(f + "mixer.up_proj.weight");
        m.source_dtype[n + "mlp.fc2.weight"] = t.dtype(f + "mixer.down_proj.weight");
      }
      m.weights[n + "mlp.fc1.weight"] = up;
      m.weights[n + "mlp.fc2.weight"] = down;
      if (mlp_bias) {
        put(m, t, n + "mlp.fc1.bias", f + "mixer.up_proj.bias");
        put(m, t, n + "mlp.fc2.bias", f + "mixer.down_proj.bias");
      }
      continue;
    }
    put(m, t, n + "norm.weight", f + "norm.weight");
    if (kind == "attention") map_llama_attention(m, t, f + "mixer.", n + "mixer.", heads, where);
    else map_hf_mamba2_layer(m, t, f + "mixer.", n + "mixer.", ssm);
  }
  if (!tie) put(m, t, "lm_head.weight", "lm_head.weight");
  else if (t.has("lm_head.weight")) handle_tied_head(m, t, true, "lm_head.weight", where);
  return m;
}

}  // namespace mechscope::families
