// The residual block (mamba_ssm modules/block.py; spec §1): resid -> norm -> mixer -> add, then norm2 -> MLP -> add
// when the config has an MLP (d_intermediate > 0, or a mixture of experts at this layer). With a shared block
// (Zamba2), the mixer reads norm(resid + shared(resid, embedding)). The mixer is any MixerImpl (core/model/mixer.h); the block owns
// the residual wiring and the block-level hook points (spec §2), and runs whole, at chosen rows, or from a position
// on (Partial). Must not: know about particular mixers.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/nn/module.h>

#include "core/model/config.h"
#include "core/model/hooks.h"
#include "core/model/layers.h"
#include "core/model/mixer.h"
#include "core/model/moe.h"
#include "core/model/shared_block.h"

namespace mechscope {

class BlockImpl : public torch::nn::Module {
 public:
  BlockImpl(const ModelConfig& cfg, int64_t layer);
  at::Tensor forward(const at::Tensor& resid /*[batch, pos, d_model]*/, HookContext* ctx);
  /// The rest of the block after the sum resid_mid_hook() holds: resid_mid -> (MLP) -> resid_post; nothing but the
  /// resid_post hook in a parallel-residual block, whose MLP does not read the mixer's output.
  at::Tensor forward_after_mixer(const at::Tensor& resid_mid, HookContext* ctx);
  /// The block's output at rows [batch, P] (positions per example) only: [batch, P, d_model].
  /// Equals forward(resid) gathered at those rows; attention computes only those queries, SSMs still scan
  /// every position but gate, project and run the MLP at the rows. Hooks before the row gather see every
  /// position; those after it (the head outputs, hook_mixer_out and the rest of the block) see [batch, P, ...].
  at::Tensor forward_rows(const at::Tensor& resid, const at::Tensor& rows, HookContext* ctx = nullptr);
  /// A partial run (Partial): resid holds positions >= start; the output those positions, or the rows.
  at::Tensor forward_partial(const at::Tensor& resid, const Partial& part, HookContext* ctx = nullptr);

  MixerKind kind;
  MixerImpl& mixer() const { return *mixer_; }
  bool has_mlp() const { return mlp || moe; }
  /// Every hook point of the block, in forward order.
  std::vector<std::string> hook_names() const;
  /// The hook holding the first sum after the mixer that a change of the mixer's output adds to, unchanged
  /// otherwise (so that forward_after_mixer of sum + change is the block's output with that change):
  /// hook_resid_mid (resid_pre + mixer_out) where the block has a sequential MLP, else the block's output
  /// hook_resid_post (no MLP, or a parallel residual whose MLP reads resid_pre only).
  /// Without a mixer (MixerKind::None) the block's input hook_resid_pre, which the MLP reads directly.
  const std::string& resid_mid_hook() const {
    if (kind == MixerKind::None) return h_resid_pre_;
    return has_mlp() && !parallel_ ? h_resid_mid_ : h_resid_post_;
  }
  bool parallel_residual() const { return parallel_; }
  const std::string& resid_post_hook() const { return h_resid_post_; }
  /// The hooks a partial run from a later position reads from an earlier run (the mixer's prefix_hooks(), and with
  /// a shared block its attention's and hook_embed, which it reads at the positions computed too).
  std::vector<std::string> prefix_hooks() const;
  /// The mixer's head groups (not direct behind a post-mixer norm), then the shared block's (not direct).
  std::vector<HeadGroup> head_groups() const;
  /// The hook of a patching site of spec §4 in this block ("resid_pre", ..., "mlp_out", and the mixer's own sites
  /// such as "conv_out" and "state"); "" when the block has no such site (mlp_* without an MLP). Not "heads":
  /// those are the head groups' hooks.
  std::string site_hook(const std::string& site) const;

  std::shared_ptr<NormImpl> norm, norm2;  // norm null without a mixer
  std::shared_ptr<NormImpl> post_mixer_norm, post_mlp_norm;  // Gemma 2's norms of the outputs (post_norms); null without
  std::shared_ptr<MLPImpl> mlp;  // the dense MLP; null without one
  std::shared_ptr<MoEImpl> moe;  // the mixture of experts in its place (registered as "mlp" too); null without
  std::shared_ptr<SharedBlockImpl> shared;  // Zamba2's shared block feeding the mixer's input; null without

 private:
  std::shared_ptr<MixerImpl> mixer_;  // registered as "mixer" (its parameters are mixer.*)
  at::Tensor feed_forward(const at::Tensor& h2, HookContext* ctx);  // the MLP or the mixture
  at::Tensor shared_embedding(const Partial& part, int64_t len) const;  // what the shared block reads beside resid
  bool parallel_ = false;             // GPT-NeoX's parallel residual (ModelConfig::parallel_residual)
  std::string h_resid_pre_, h_mixer_in_, h_mixer_out_, h_resid_mid_, h_mlp_in_, h_mlp_out_, h_resid_post_, h_router_;
};

}  // namespace mechscope
