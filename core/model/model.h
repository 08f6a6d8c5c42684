// The language model of spec §1: MambaLMHeadModel's structure (backbone.embedding, backbone.layers.{i},
// backbone.norm_f, lm_head) plus an optional learned position table, and the three ways to run it:
// plain, run_with_cache, run_with_hooks (spec §2). Must not: do file I/O (see core/io).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>

#include "core/model/config.h"
#include "core/model/hooks.h"
#include "core/model/block.h"

namespace mechscope {

class BackboneImpl : public torch::nn::Module {
 public:
  explicit BackboneImpl(const ModelConfig& cfg);
  torch::nn::Embedding embedding{nullptr};      // [vocab_rows, d_model]
  torch::nn::Embedding pos_embedding{nullptr};  // [max_seq_len, d_model], when pos_emb == "learned"
  std::vector<std::shared_ptr<BlockImpl>> layers;
  std::shared_ptr<NormImpl> norm_f;
};

class LanguageModel : public torch::nn::Module {
 public:
  /// Builds the model with the reference initialisation, seeded by `seed`; without it (`initialise` false: every
  /// parameter is about to be replaced by loaded weights) the parameters keep LibTorch's default initialisation.
  explicit LanguageModel(const ModelConfig& cfg, uint64_t seed = 0, bool initialise = true);

  /// tokens [batch, pos] (int64) -> logits [batch, pos, vocab_rows]. ctx null: no hook cost.
  at::Tensor forward(const at::Tensor& tokens, HookContext* ctx = nullptr);
  // The forward in pieces, for interventions that reuse a cached prefix (spec §4 "prefix reuse").
  // forward(tokens) == unembed(forward_blocks(0, n_layers(), embed(tokens))).
  /// hook_embed (+ hook_pos_embed) -> the residual entering block 0 [batch, pos, d_model]. Tokens are not checked.
  /// `token_embedding`, when given, receives hook_embed's value (what shared blocks read beside the residual).
  /// `first_position`: the position of tokens[:, 0] (a learned position table reads positions from there on:
  /// incremental decoding).
  at::Tensor embed(const at::Tensor& tokens, HookContext* ctx = nullptr, at::Tensor* token_embedding = nullptr,
                   int64_t first_position = 0);
  /// Whether some block reads the token embedding beside the residual (a shared block, Zamba2): then the run
  /// paths below need `embedding`, hook_embed's value [b', pos, d_model] over the same positions, b' dividing the
  /// batch (variants stacked variant-major); other models ignore it (it may be undefined there). A partial run takes
  /// it from the prefixes.
  bool needs_embedding() const { return !cfg_.shared.layers.empty(); }
  /// Blocks [from, to) on a residual [batch, pos, d_model].
  at::Tensor forward_blocks(int64_t from, int64_t to, at::Tensor resid, HookContext* ctx = nullptr,
                            const at::Tensor& embedding = {});
  /// Blocks [from, n_layers()) on a residual [batch, pos, d_model], the last one only at rows [batch, P]
  /// (positions per example): the final residual at those rows [batch, P, d_model], equal to
  /// forward_blocks(from, n_layers(), resid) gathered there, without the last block's work at the other
  /// positions (a readout needs only its own rows). With `ctx`, the last block's hooks after its row gather
  /// (head outputs, hook_mixer_out, the MLP's and hook_resid_post) see [batch, P, ...] tensors at the rows
  /// (BlockImpl::forward_rows); unembed is not called.
  at::Tensor forward_blocks_at(int64_t from, at::Tensor resid, const at::Tensor& rows, HookContext* ctx = nullptr,
                               const at::Tensor& embedding = {});
  /// The same as a partial run (spec §4's causality; BlockImpl::forward_partial): resid [b, L - start, d_model]
  /// holds the positions >= start of the residual entering `from`, prefixes[j - from] (all with that start)
  /// what layer j saw before start in an earlier run of batch b' (b a multiple of b'), and rows [b, P] are
  /// relative to start. Equals forward_blocks_at(from, full residual, rows + start) when the positions before
  /// start are those of the earlier run. Hooks see the positions computed.
  at::Tensor forward_blocks_partial(int64_t from, at::Tensor resid, const std::vector<LayerPrefix>& prefixes,
                                    const at::Tensor& rows, HookContext* ctx = nullptr);
  /// Final norm and unembedding of residuals [..., d_model] -> logits [..., vocab_rows], soft-capped where the config
  /// says (final_logit_softcap; `softcap` false: the logits before it, which are linear in the normed residual).
  at::Tensor unembed(const at::Tensor& resid, HookContext* ctx = nullptr, bool softcap = true);
  /// The unembedding weight [vocab_rows, d_model] (the embedding when tied).
  at::Tensor unembedding_matrix() const;
  int64_t n_layers() const { return static_cast<int64_t>(backbone->layers.size()); }

  /// Logits and the cached activations of the selected hook points.
  std::pair<at::Tensor, ActivationCache> run_with_cache(const at::Tensor& tokens, const HookSelection& selection);
  /// Logits with hook functions applied (names validated first).
  at::Tensor run_with_hooks(const at::Tensor& tokens, const std::vector<Hook>& hooks);
  /// Both at once: cache `selection` while `hooks` are applied.
  std::pair<at::Tensor, ActivationCache> run(const at::Tensor& tokens, const std::vector<Hook>& hooks,
                                             const HookSelection& selection);

  /// Every hook point of this model, in forward order (spec §2).
  const std::vector<std::string>& hook_names() const { return hook_names_; }
  /// Names for a selection (validated; throws std::invalid_argument listing close matches).
  std::set<std::string> resolve(const HookSelection& selection) const;

  /// Parameters by state-dict name (a tied lm_head is not listed: it is the embedding).
  std::vector<std::pair<std::string, at::Tensor>> state_dict() const;
  int64_t parameter_count() const;
  /// The dtype the parameters are held (and the forward computes) in: float32 unless converted or imported so.
  at::ScalarType dtype() const;
  /// Checks token ids against the embedding rows and the position table; throws with the offending value.
  void check_tokens(const at::Tensor& tokens) const;
  /// Estimated peak bytes of a forward over [batch, len] tokens: activations, the largest transient of a layer
  /// (attention scores, SSD chunk matrices), the logits, and the cache of `cached` hook points (their shapes,
  /// scaled from a two-token probe). forward() and run() refuse inputs whose estimate exceeds free memory.
  double estimate_forward_bytes(int64_t batch, int64_t len, const std::set<std::string>& cached = {}) const;
  /// Heads per layer (attention heads, Mamba2 heads, Mamba1 channels); for a parallel layer, attention + SSM:
  /// (scope, count) of each of the layer's head groups.
  std::vector<std::pair<std::string, int64_t>> heads_of_layer(int64_t layer) const;
  /// The layer's head groups (its mixer's, HeadGroup in core/model/mixer.h): hooks, counts and projections.
  std::vector<HeadGroup> head_groups(int64_t layer) const;
  /// The head group of `scope` ("attn", "ssm") in a layer; throws naming the layer's groups when it has none.
  HeadGroup head_group(int64_t layer, const std::string& scope) const;
  /// Block `layer` (throws for a layer out of range).
  BlockImpl& block(int64_t layer) const;
  /// The final norm (norm_f) and the token embedding [vocab_rows, d_model]; the learned position table
  /// [max_seq_len, d_model], undefined without one.
  NormImpl& final_norm() const { return *backbone->norm_f; }
  at::Tensor embedding_matrix() const { return backbone->embedding->weight; }
  at::Tensor position_table() const { return backbone->pos_embedding ? backbone->pos_embedding->weight : at::Tensor(); }

  const ModelConfig& config() const { return cfg_; }
  std::shared_ptr<BackboneImpl> backbone;
  torch::nn::Linear lm_head{nullptr};  // untied only

 private:
  void reset_parameters();
  at::Tensor forward_unchecked(const at::Tensor& tokens, HookContext* ctx);
  ModelConfig cfg_;
  std::vector<std::string> hook_names_;
  mutable std::once_flag probe_once_;
  mutable std::map<std::string, std::vector<int64_t>> unit_shapes_;  // hook shapes at batch 1 x 2 tokens
};

/// Runs fn(begin, end, ctx) over the rows [begin, end) of a batch (examples, or a sweep's stacked variants) as
/// contiguous parts side by side, one per intra-op thread, each single-threaded inside (ATen runs nested parallel
/// work inline), and concatenates the results (and, for a cache-only context, the parts' caches) along dim 0.
/// Rows of a forward are independent, so each part computes what the whole batch would (up to the batch shape
/// of a matrix product). At the demos' sizes LibTorch's intra-op threading leaves the second core mostly idle
/// (OpenBLAS is held to one thread): two parts ran a cached forward 1.45x and a sweep's second-layer pass
/// 1.6-1.8x faster (docs/benchmarks.md). The whole batch in one call: with a gradient, hook functions, a GPU
/// tensor, one thread or row, or inside a parallel region.
at::Tensor run_example_parts(int64_t batch, const at::Device& device, HookContext* ctx,
                             const std::function<at::Tensor(int64_t begin, int64_t end, HookContext* ctx)>& fn);

}  // namespace mechscope
