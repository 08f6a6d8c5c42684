// Model configuration: the JSON of spec §1 (mirrors mamba_ssm's MambaConfig plus pos_emb and
// parallel_layer_idx), parsed, validated and resolved into plain structs. No torch here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mechscope {

enum class MixerKind { Attention, Mamba1, Mamba2, Parallel, None };
const char* mixer_kind_name(MixerKind kind);

/// Rotary frequency scaling of long-context models (transformers' rope_type), applied to the inverse frequencies
/// base^(-2i/d): "linear" divides every one by `factor`; "llama3" (Llama 3.1) divides those whose wavelength exceeds
/// original_max / low_freq_factor, keeps those below original_max / high_freq_factor, and interpolates between;
/// "yarn" blends f_i and f_i / factor by a linear ramp over the dimensions between the correction range of
/// beta_fast and beta_slow rotations in original_max positions, and scales cos and sin by attention_factor;
/// "dynamic" (NTK) changes nothing up to original_max positions, and longer inputs are refused (transformers
/// recomputes the base from the input's length there, which no causal prefix can reproduce).
struct RotaryScaling {
  std::string type;                 ///< "" (none) | "linear" | "llama3" | "yarn" | "dynamic"
  double factor = 1.0;
  double low_freq_factor = 1.0, high_freq_factor = 4.0;   ///< llama3
  int64_t original_max_position = 0;                       ///< llama3, yarn, dynamic: original_max_position_embeddings
  double attention_factor = 1.0;                           ///< yarn (resolved from mscale, mscale_all_dim, factor)
  double beta_fast = 32.0, beta_slow = 1.0;                ///< yarn
  bool truncate = true;                                    ///< yarn: floor/ceil the correction range
};

/// Options of MHA (mamba_ssm/modules/mha.py). Field names are the attn_cfg keys.
struct AttnConfig {
  int64_t num_heads = 0;            ///< H, e.g. 4 (required)
  int64_t num_heads_kv = 0;         ///< Hkv for GQA; 0 = num_heads
  int64_t head_dim = 0;             ///< D; 0 = d_model / num_heads
  bool qkv_proj_bias = true;
  bool out_proj_bias = true;
  double softmax_scale = 0.0;       ///< 0 = 1/sqrt(D)
  bool causal = true;               ///< must be true for a language model
  int64_t rotary_emb_dim = 0;       ///< dims of each q/k head rotated, e.g. 32; 0 = no rotary
  double rotary_emb_base = 10000.0;
  bool rotary_emb_interleaved = false;
  RotaryScaling rotary_scaling;     ///< long-context frequency scaling; none by default
  int64_t sliding_window = 0;       ///< a query sees the keys at most sliding_window - 1 positions back; 0 = all
  /// The layers whose attention slides (Qwen2's max_window_layers, Gemma 2's alternation); empty: every attention
  /// layer, when sliding_window > 0. ModelConfig::attention_window gives a layer's window.
  std::vector<int64_t> sliding_window_layers;
  bool qk_norm = false;             ///< RMSNorm (weights q_norm, k_norm [D], the model's norm_epsilon) of each q and k head
  /// OLMoE: one RMSNorm over each whole projection (weights q_norm [H D], k_norm [Hkv D]) instead of per head
  bool qk_norm_whole = false;
  double clip_qkv = 0.0;            ///< > 0: q, k and v clamped to [-clip_qkv, clip_qkv] after the norms (OLMoE)
  double softcap = 0.0;             ///< > 0: scores become softcap * tanh(scores / softcap) before the mask (Gemma 2)
  /// > 0: the layers with a sliding window rotate by the default rotary of this base, without rotary_scaling (Gemma 3's
  /// rope_local_base_freq); the others by rotary_emb_base and rotary_scaling.
  double sliding_rotary_base = 0.0;
  /// > 0: Hard-ALiBi (the Repeat-After-Me paper's copying transformers): head h < hard_alibi_heads sees only the keys
  /// at most h positions back (itself and the h before it); the other heads see every earlier key.
  int64_t hard_alibi_heads = 0;
};

/// Options of Mamba1 (mamba_ssm/modules/mamba_simple.py).
struct Mamba1Config {
  int64_t d_state = 16;             ///< N
  int64_t d_conv = 4;
  double expand = 2;
  int64_t dt_rank = 0;              ///< resolved: ceil(d_model/16) when "auto"
  double dt_min = 0.001, dt_max = 0.1, dt_scale = 1.0, dt_init_floor = 1e-4;
  std::string dt_init = "random";   ///< "random" | "constant"
  bool conv_bias = true;
  bool bias = false;
  double bcdt_rms_eps = 0.0;        ///< > 0: Falcon-Mamba's weightless RMS norms of x_proj's dt, B and C, this epsilon
  /// With bcdt_rms_eps: those norms carry weights (Jamba's dt_layernorm, b_layernorm, c_layernorm), the mixer's
  /// parameters dt_norm_weight [dt_rank], B_norm_weight and C_norm_weight [d_state].
  bool bcdt_norm_weights = false;
};

/// Options of Mamba2 (mamba_ssm/modules/mamba2.py).
struct Mamba2Config {
  int64_t d_state = 128;            ///< N
  int64_t d_conv = 4;
  double conv_init = 0.0;           ///< 0 = PyTorch's default conv init
  int64_t expand = 2;
  int64_t headdim = 64;             ///< P
  int64_t d_ssm = 0;                ///< resolved: d_inner when null
  int64_t ngroups = 1;              ///< G
  double A_init_min = 1, A_init_max = 16;
  bool D_has_hdim = false;
  bool rmsnorm = true;
  bool norm_before_gate = false;
  double dt_min = 0.001, dt_max = 0.1, dt_init_floor = 1e-4;
  double dt_limit_min = 0.0, dt_limit_max = 0.0;  ///< max 0 = +inf (no clamp)
  bool bias = false;
  bool conv_bias = true;
  int64_t chunk_size = 256;
  double norm_eps = 1e-5;           ///< the gated RMSNorm's epsilon (mamba_ssm: 1e-5; HF: layer_norm_epsilon)
};

/// A mixture of experts in place of a layer's MLP (Mixtral, Qwen2/Qwen3-MoE, Jamba), the JSON object moe_cfg: a router
/// (Linear d_model -> num_experts, no bias) whose softmax, taken in float32, picks the top_k experts of each position
/// (gated MLPs of `hidden` units, the model's mlp_activation and mlp_bias); their outputs are summed with the picked
/// probabilities (divided by their sum first when normalize_top_k), plus a shared expert (a gated MLP of
/// shared_hidden units, 0 = none) that every position runs, scaled by sigmoid(shared_gate(x)) when shared_gate.
struct MoEConfig {
  int64_t num_experts = 0;          ///< E; 0 = no mixture (every MLP dense)
  int64_t top_k = 0;                ///< experts per position, 1..E
  int64_t hidden = 0;               ///< each expert's hidden units (exact: not rounded as GatedMLP's)
  bool normalize_top_k = false;     ///< Mixtral, Qwen3-MoE: the top_k probabilities renormalised to sum 1
  std::vector<int64_t> layers;      ///< the layers whose MLP is the mixture; empty = every layer
  int64_t shared_hidden = 0;        ///< Qwen2-MoE's shared expert; 0 = none
  bool shared_gate = false;         ///< the shared expert scaled by sigmoid(x . shared_gate) (Linear d_model -> 1)
};

/// Zamba2's shared transformer blocks (shared_cfg; docs/spec.md "Shared blocks"): at each listed layer, before its
/// mixer, a transformer block reads the concatenation [resid_pre ; the token embedding] (2 d_model features):
/// RMSNorm (2 d_model) -> attention (2 d_model in, d_model out) -> RMSNorm (d_model) -> gated MLP (hidden exact)
/// -> proj (d_model x d_model). Its output joins the mixer's input only: mixer_in = norm(resid_pre + out); the
/// residual gains the mixer's output alone. Each listed layer holds its own copy of the block's weights (an
/// import folds each use's LoRA adapters into its copy).
struct SharedBlockConfig {
  std::vector<int64_t> layers;      ///< the layers with a shared block; empty = none
  AttnConfig attn;                  ///< its attention (attn_cfg's keys; head_dim and softmax_scale explicit)
  int64_t hidden = 0;               ///< the gated MLP's hidden units (exact)
  std::string mlp_activation = "gelu";
};

/// The parameters of one shared block (its norms, attention, MLP and proj) in a model of width d_model.
double shared_block_parameters(int64_t d_model, const AttnConfig& attn, int64_t hidden);

/// GatedMLP's hidden size for an intermediate size: rounded up to a multiple of 128 (mamba_ssm's rule).
inline int64_t gated_mlp_hidden(int64_t d_intermediate) { return (d_intermediate + 127) / 128 * 128; }

/// Sanity bounds of a model's sizes, so that a corrupt or hostile config cannot ask for terabytes (checked by
/// ModelConfig::from_json, and by the importers before they loop over layers or allocate a vocabulary).
inline constexpr int64_t kMaxDModel = 65536, kMaxLayers = 1024, kMaxVocab = 4000000, kMaxIntermediate = 1 << 20;
/// The most experts a mixture may hold (the largest released models have 256 or 384).
inline constexpr int64_t kMaxExperts = 4096;

struct ModelConfig {
  int64_t d_model = 0;              ///< e.g. 128
  int64_t d_intermediate = 0;       ///< GatedMLP hidden (rounded up to 128); 0 = no MLP
  int64_t n_layer = 0;
  int64_t vocab_size = 0;           ///< logical vocabulary (before padding)
  std::string ssm_layer = "Mamba1"; ///< ssm_cfg.layer: "Mamba1" | "Mamba2"
  Mamba1Config mamba1;
  Mamba2Config mamba2;
  std::vector<int64_t> attn_layer_idx;
  std::vector<int64_t> parallel_layer_idx;
  /// Layers without a mixer: the block is resid + MLP(norm2(resid)) only (Nemotron-H's "-" layers).
  std::vector<int64_t> mlp_only_layer_idx;
  /// The layers whose block has an MLP (must include mlp_only_layer_idx); empty: every layer, when the model has one.
  std::vector<int64_t> mlp_layer_idx;
  AttnConfig attn;
  bool rms_norm = true;
  double norm_epsilon = 1e-5;
  bool residual_in_fp32 = true;
  bool fused_add_norm = true;       ///< kernel choice in mamba_ssm; no effect on the math here
  bool tie_embeddings = true;
  int64_t pad_vocab_size_multiple = 8;
  std::string pos_emb = "none";     ///< "none" | "learned"
  int64_t max_seq_len = 0;          ///< rows of the learned position table
  /// The MLP: "gated" (mamba_ssm's GatedMLP and Llama's SwiGLU: fc1 -> [value | gate] -> value * act(gate) -> fc2,
  /// hidden rounded up to 128) or "plain" (GPT-2, GPT-NeoX: fc1 -> act -> fc2, hidden = d_intermediate).
  std::string mlp_type = "gated";
  std::string mlp_activation = "silu";  ///< "silu" | "gelu" (erf) | "gelu_tanh" (tanh approximation) | "relu" | "relu2" (relu(x)^2)
  bool mlp_bias = false;                ///< fc1 and fc2 carry biases
  /// Gemma: the token embedding is multiplied by this (sqrt(d_model)) before it enters the residual; the tied
  /// unembedding uses the embedding as stored.
  double embedding_multiplier = 1.0;
  /// GPT-NeoX's parallel residual: resid_post = resid_pre + mixer(norm(resid_pre)) + mlp(norm2(resid_pre)).
  bool parallel_residual = false;
  /// How a parallel hybrid layer (parallel_layer_idx) adds its two mixers: "tanh_beta", ssm + tanh(beta) * attn with a
  /// learned scalar beta (the demos'); "sum", ssm + attn (Falcon-H1, its multipliers folded into the weights).
  std::string parallel_mix = "tanh_beta";
  MoEConfig moe;                    ///< moe_cfg; num_experts 0 (the default) = no mixture of experts
  SharedBlockConfig shared;         ///< shared_cfg; no layers (the default) = no shared blocks
  /// Gemma 2's norms of the mixer's and the MLP's outputs before they join the residual (parameters
  /// post_mixer_norm, post_mlp_norm of each block): resid + post_mixer_norm(mixer(norm(resid))), and so for the MLP.
  bool post_norms = false;
  double final_logit_softcap = 0.0; ///< > 0: logits become c * tanh(logits / c) (Gemma 2)
  /// Whether layer `layer` has a shared block (shared_cfg.layers lists it).
  bool shared_layer(int64_t layer) const;

  /// Embedding rows after padding to pad_vocab_size_multiple.
  int64_t padded_vocab_size() const;
  MixerKind mixer_kind(int64_t layer) const;
  /// The sliding window of layer `layer`'s attention (attn_cfg.sliding_window where sliding_window_layers lists the
  /// layer or is empty), 0 for none.
  int64_t attention_window(int64_t layer) const;
  /// The SSM that ssm_cfg.layer names (the SSM layers' kind, also inside a parallel hybrid).
  MixerKind ssm_kind() const { return ssm_layer == "Mamba2" ? MixerKind::Mamba2 : MixerKind::Mamba1; }
  /// "transformer", "mamba2", "hybrid (Mamba2 + attention)", "parallel hybrid (Mamba1 + attention)".
  std::string architecture_name() const;
  /// Whether the blocks have an MLP (dense, or a mixture of experts at moe.layers).
  bool has_mlp() const { return d_intermediate > 0 || moe.num_experts > 0; }
  /// Whether layer `layer`'s block has an MLP (has_mlp() and mlp_layer_idx lists it or is empty).
  bool layer_has_mlp(int64_t layer) const;
  /// Whether layer `layer`'s MLP is the mixture of experts.
  bool moe_layer(int64_t layer) const;
  int64_t mlp_hidden() const { return mlp_type == "plain" ? d_intermediate : gated_mlp_hidden(d_intermediate); }
  /// "GatedMLP hidden 256", "MLP (gelu) hidden 64", "mixture of 8 experts (top 2, GatedMLP hidden 48)".
  std::string mlp_description() const;
  // Derived sizes.
  int64_t attn_head_dim(int64_t d_model_) const;
  int64_t attn_heads_kv() const { return attn.num_heads_kv > 0 ? attn.num_heads_kv : attn.num_heads; }
  int64_t mamba1_d_inner() const { return static_cast<int64_t>(mamba1.expand * d_model); }
  int64_t mamba2_d_inner() const { return mamba2.expand * d_model; }
  int64_t mamba2_nheads() const { return mamba2.d_ssm / mamba2.headdim; }
  /// Heads shown and ablated per layer: attention heads, Mamba2 heads or Mamba1 channels.
  int64_t ssm_heads() const;

  /// Parameter count estimated from the sizes alone (used to refuse absurd configs before allocating).
  double approx_parameter_count() const;

  /// Parses and validates; throws std::invalid_argument naming the offending key.
  static ModelConfig from_json(const nlohmann::json& j);
  nlohmann::json to_json() const;
  /// Named preset ("transformer", "mamba1", "mamba2", "hybrid", "parallel-hybrid") with JSON overrides merged in.
  static nlohmann::json preset_json(const std::string& name, const nlohmann::json& overrides);
  static std::vector<std::string> preset_names();
};

}  // namespace mechscope
