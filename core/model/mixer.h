// The token-mixer interface: what a block needs of its mixer (attention, Mamba1, Mamba2, the parallel hybrid, and
// the families still to come) and what interventions and analyses may ask of it (its hooks, its heads and how
// each head reaches the residual, what a run from a later position needs from an earlier run). One file per
// mixer under core/model/mixers/, registered in mixer.cpp (make_mixer). Must not: know about blocks, tasks or
// interventions.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/nn/module.h>

#include "core/model/config.h"
#include "core/model/hooks.h"

namespace mechscope {

/// What one layer saw before position `start` in an earlier run over the whole input (spec §4, causality: a
/// change at position p leaves every layer's positions < p as they were, so a layer can run positions >= p only).
/// `tensors` holds the earlier run's values of the hooks the layer's mixer lists in prefix_hooks(), batch b'; a
/// partial run may stack variants along the batch, b = repeat * b'.
struct LayerPrefix {
  int64_t start = 0;
  ActivationCache tensors;  ///< hook name -> [b', L, ...]
  /// hook name -> the position of tensors[hook][:, 0] where it holds a window of the positions only (absent: 0):
  /// incremental decoding keeps an SSM's last state and its convolution's last inputs, not every position.
  std::map<std::string, int64_t> first;
  /// The tensor of `hook`; throws naming it when the prefix lacks it.
  const at::Tensor& at(const std::string& hook) const;
  /// Positions [from, from + n) of `hook` along dim 1; throws naming it when the prefix does not hold them.
  at::Tensor positions(const std::string& hook, int64_t from, int64_t n) const;
};

/// A partial run of a layer: its input holds positions >= prefix->start only (prefix null: from 0), and with
/// rows [batch, P] (positions relative to that input) only the outputs there are wanted.
struct Partial {
  const LayerPrefix* prefix = nullptr;
  const at::Tensor* rows = nullptr;
  /// The token embedding (hook_embed) at the input's positions, batch b' with b a multiple of it: what a shared
  /// block reads beside the residual (SharedBlockImpl); null elsewhere, and in a partial run, which takes it from
  /// the prefix (the earlier run's hook_embed).
  const at::Tensor* embedding = nullptr;
  int64_t start() const { return prefix ? prefix->start : 0; }
};

/// A mixer's heads of one kind and how each reaches the residual (spec §1 "Heads", §4): the mixer's output gains
/// scale * slice_h @ weight[:, offset + h * head_dim : offset + (h + 1) * head_dim]^T from head h's slice of
/// `hook` [batch, pos, heads, head_dim], so replacing that slice changes the output by a linear function of it.
struct HeadGroup {
  std::string scope;         ///< the hook scope and a head label's middle part: "attn" (L1.attn.H0) or "ssm"
  std::string hook;          ///< the per-head output, e.g. blocks.1.attn.hook_z or blocks.0.ssm.hook_head_out
  std::string pattern_hook;  ///< its (implicit) attention pattern [batch, heads, q_pos, k_pos]
  std::string scores_hook;   ///< softmax attention's pre-softmax scores (knockout); "" for SSMs
  int64_t heads = 0, head_dim = 1;
  bool channels = false;     ///< heads are single channels (Mamba1): shown and ablated in groups, maps per group
  at::Tensor weight;         ///< out_proj.weight [d_model, in] (detached)
  int64_t offset = 0;        ///< first column of head 0
  at::Tensor scale;          ///< scalar multiplier (tanh(beta) inside a parallel hybrid), or undefined
  /// false: the heads reach the residual through later non-linear steps (a shared block's heads: its MLP, norms and
  /// the mixer it feeds), so project() is no change of the residual; interventions run such heads with hooks and
  /// direct logit attribution leaves them out.
  bool direct = true;
  /// The heads reach the residual through the block's post-mixer RMSNorm of their sum (Gemma 2's post_norms), every
  /// column of out_proj being a head's: with that norm's scale frozen at its value in a run, w * project(h) / rms(o)
  /// is head h's share again (o = the heads' projections + `bias`).
  bool post_norm = false;
  at::Tensor bias;           ///< out_proj's bias [d_model] (detached), or undefined
  /// The columns of head h [d_model, head_dim].
  at::Tensor columns(int64_t h) const { return weight.narrow(1, offset + h * head_dim, head_dim); }
  /// Head h's contribution to the mixer's output: slice [..., head_dim] -> [..., d_model].
  at::Tensor project(int64_t h, const at::Tensor& slice) const;
};

/// A token mixer. Parameters are registered under the block's "mixer" (state-dict names of spec §1).
class MixerImpl : public torch::nn::Module {
 public:
  /// x [batch, pos, d_model] (the normed residual) -> [batch, pos, d_model]; a partial run (Partial): positions
  /// from part.start() on, or only the rows ([batch, P, d_model]).
  virtual at::Tensor forward(const at::Tensor& x, const Partial& part, HookContext* ctx) = 0;
  at::Tensor forward(const at::Tensor& x, HookContext* ctx) { return forward(x, Partial{}, ctx); }
  /// Every hook point, in forward order (spec §2).
  virtual std::vector<std::string> hook_names() const = 0;
  /// Its heads, in the order the model lists them (attention before SSM in a parallel hybrid).
  virtual std::vector<HeadGroup> head_groups() const = 0;
  /// The hooks whose earlier values a partial run from a later position reads (LayerPrefix::tensors).
  virtual std::vector<std::string> prefix_hooks() const = 0;
  /// Bytes of the prefix hooks that grow beyond a token's activations (SSM states) for b x L tokens.
  virtual double prefix_state_bytes(int64_t batch, int64_t len) const { return 0; }
  /// Named sites for activation patching beyond the block's own (e.g. "conv_out", "state"): site -> hook name.
  virtual std::map<std::string, std::string> patch_sites() const { return {}; }
  /// A rough count of the floats a sweep's variant holds per token in this mixer (chunking of stacked variants).
  virtual int64_t sweep_floats_per_token(int64_t len, bool states) const = 0;
  /// Peak transient bytes of a forward over b x L tokens (attention scores, SSD chunk matrices).
  virtual double transient_bytes(int64_t batch, int64_t len) const = 0;
  /// Widest per-token activation, in features.
  virtual double widest_features() const = 0;
  /// One line for `info`: "MHA 4 heads x 32 (kv 4), rotary 32", "Mamba2 8 heads x 32, state 64, ...".
  virtual std::string describe() const = 0;
};

/// Builds a mixer of `kind` for layer `layer` (its hook names): the one place mixer kinds are registered.
std::shared_ptr<MixerImpl> make_mixer(MixerKind kind, const ModelConfig& cfg, int64_t layer);
/// Layer `layer`'s mixer, of the kind the config gives it (ModelConfig::mixer_kind).
inline std::shared_ptr<MixerImpl> make_mixer(const ModelConfig& cfg, int64_t layer) {
  return make_mixer(cfg.mixer_kind(layer), cfg, layer);
}

}  // namespace mechscope
