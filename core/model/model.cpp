// LanguageModel: embedding -> blocks -> norm_f -> lm_head, reference initialisation, hook plumbing.
#include "core/model/model.h"

#include "core/engine/memory.h"

#include <cmath>
#include <sstream>
#include <stdexcept>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/nn/init.h>
#include <torch/utils.h>

#include "core/util/strings.h"

namespace mechscope {

BackboneImpl::BackboneImpl(const ModelConfig& cfg) {
  embedding = register_module("embedding", make_embedding(cfg.padded_vocab_size(), cfg.d_model));
  if (cfg.pos_emb == "learned")
    pos_embedding = register_module("pos_embedding", make_embedding(cfg.max_seq_len, cfg.d_model));
  auto list = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < cfg.n_layer; ++i) {
    layers.push_back(std::make_shared<BlockImpl>(cfg, i));
    list->push_back(layers.back());
  }
  norm_f = register_module("norm_f", std::make_shared<NormImpl>(cfg.d_model, cfg));
}

LanguageModel::LanguageModel(const ModelConfig& cfg, uint64_t seed, bool initialise) : cfg_(cfg) {
  torch::manual_seed(seed);
  backbone = register_module("backbone", std::make_shared<BackboneImpl>(cfg));
  if (!cfg.tie_embeddings)
    lm_head = register_module("lm_head", make_linear(cfg.d_model, cfg.padded_vocab_size(), false));
  if (initialise) reset_parameters();
  hook_names_.push_back("hook_embed");
  if (cfg.pos_emb == "learned") hook_names_.push_back("hook_pos_embed");
  for (const auto& block : backbone->layers) {
    auto names = block->hook_names();
    hook_names_.insert(hook_names_.end(), names.begin(), names.end());
  }
  hook_names_.push_back("ln_final.hook_normalized");
}

// mamba_ssm's _init_weights, as MambaLMHeadModel applies it last (n_residuals_per_layer = 1):
// Linear biases to zero (except dt_proj.bias), embeddings N(0, 0.02), and out_proj / fc2 weights
// re-drawn with kaiming_uniform(a = sqrt(5)) and divided by sqrt(n_layer).
void LanguageModel::reset_parameters() {
  at::NoGradGuard no_grad;
  auto ends_with = [](const std::string& s, const std::string& t) {
    return s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0;
  };
  for (auto& item : named_parameters(true)) {
    const std::string& name = item.key();
    at::Tensor p = item.value();
    const bool linear_bias = ends_with(name, "proj.bias") || ends_with(name, "fc1.bias") || ends_with(name, "fc2.bias");
    if (linear_bias && !ends_with(name, "dt_proj.bias")) p.zero_();
    if (ends_with(name, "embedding.weight")) p.normal_(0.0, 0.02);
    if (ends_with(name, "out_proj.weight") || ends_with(name, "fc2.weight")) {
      torch::nn::init::kaiming_uniform_(p, std::sqrt(5.0));
      p.div_(std::sqrt(static_cast<double>(cfg_.n_layer)));
    }
  }
}

void LanguageModel::check_tokens(const at::Tensor& tokens) const {
  if (tokens.dim() != 2)
    throw std::invalid_argument("tokens: expected shape [batch, pos], found " + std::to_string(tokens.dim()) + " dims");
  if (tokens.size(1) == 0) throw std::invalid_argument("tokens: the sequence is empty");
  if (tokens.scalar_type() != at::kLong) throw std::invalid_argument("tokens: expected int64 ids");
  const int64_t rows = cfg_.padded_vocab_size();
  if (tokens.numel() > 0) {
    const int64_t lo = tokens.min().item<int64_t>(), hi = tokens.max().item<int64_t>();
    if (lo < 0 || hi >= rows)
      throw std::invalid_argument("tokens: id " + std::to_string(lo < 0 ? lo : hi) + " is outside the vocabulary [0, " +
                                  std::to_string(rows) + ")");
  }
  if (cfg_.pos_emb == "learned" && tokens.size(1) > cfg_.max_seq_len)
    throw std::invalid_argument("tokens: sequence of " + std::to_string(tokens.size(1)) +
                                " positions is longer than the learned position table (max_seq_len = " +
                                std::to_string(cfg_.max_seq_len) + ")");
}

double LanguageModel::estimate_forward_bytes(int64_t batch, int64_t len, const std::set<std::string>& cached) const {
  const double B = static_cast<double>(batch), L = static_cast<double>(len), f = 4.0;
  const ModelConfig& c = cfg_;
  double widest = static_cast<double>(c.d_model), transient = 0;
  for (const auto& block : backbone->layers) {
    transient = std::max(transient, block->mixer().transient_bytes(batch, len));
    widest = std::max(widest, block->mixer().widest_features());
    if (c.d_intermediate > 0) widest = std::max(widest, 2.0 * c.mlp_hidden());
    if (c.moe.num_experts > 0)  // top_k experts' hidden units per position, the router's logits, the shared expert
      widest = std::max({widest, 2.0 * c.moe.hidden * c.moe.top_k + c.moe.num_experts, 2.0 * c.moe.shared_hidden});
  }
  double total = 8.0 * B * L * widest * f + transient + B * L * c.padded_vocab_size() * f;
  if (!cached.empty()) {
    std::call_once(probe_once_, [this] {
      HookContext ctx;
      ctx.cache(std::set<std::string>(hook_names_.begin(), hook_names_.end()));
      at::NoGradGuard no_grad;
      at::Tensor toks = at::zeros({1, cfg_.pos_emb == "learned" ? std::min<int64_t>(2, cfg_.max_seq_len) : 2}, at::kLong);
      const_cast<LanguageModel*>(this)->forward_unchecked(toks, &ctx);
      for (auto& [n, t] : ctx.cached()) unit_shapes_[n] = t.sizes().vec();
    });
    for (const auto& n : cached) {
      auto it = unit_shapes_.find(n);
      if (it == unit_shapes_.end()) continue;
      const auto axes = hook_axes(n);
      double bytes = f;
      for (size_t d = 0; d < it->second.size(); ++d) {
        const std::string a = d < axes.size() ? axes[d] : "";
        bytes *= a == "batch" ? B : (a == "pos" || a == "q_pos" || a == "k_pos") ? L : static_cast<double>(it->second[d]);
      }
      const bool map = n.find("hook_pattern") != std::string::npos || n.find("hook_attn_scores") != std::string::npos;
      total += map ? 2.0 * bytes : bytes;  // implicit maps are built with a transient of their own size
    }
  }
  return total;
}

at::Tensor LanguageModel::forward(const at::Tensor& tokens, HookContext* ctx) {
  check_tokens(tokens);
  require_memory(estimate_forward_bytes(tokens.size(0), tokens.size(1)),
                 "a forward pass over " + std::to_string(tokens.size(0)) + " x " + std::to_string(tokens.size(1)) + " tokens",
                 "Use fewer examples or a shorter input.");
  return forward_unchecked(tokens, ctx);
}

at::Tensor LanguageModel::forward_unchecked(const at::Tensor& tokens, HookContext* ctx) {
  at::Tensor token_embedding;
  at::Tensor resid = embed(tokens, ctx, &token_embedding);
  return unembed(forward_blocks(0, n_layers(), resid, ctx, token_embedding), ctx);
}

at::Tensor run_example_parts(int64_t batch, const at::Device& device, HookContext* ctx,
                             const std::function<at::Tensor(int64_t, int64_t, HookContext*)>& fn) {
  const int64_t parts = std::min<int64_t>(batch, at::get_num_threads());
  if (parts <= 1 || !device.is_cpu() || at::in_parallel_region() || at::GradMode::is_enabled() ||
      (ctx && !ctx->cache_only()))
    return fn(0, batch, ctx);
  std::vector<at::Tensor> out(parts);
  std::vector<HookContext> ctxs(parts);
  if (ctx)
    for (auto& c : ctxs) c.cache(ctx->cache_names());
  at::parallel_for(0, parts, 1, [&](int64_t begin, int64_t end) {
    at::NoGradGuard no_grad;  // grad mode is per thread; the caller's is off
    for (int64_t p = begin; p < end; ++p) out[p] = fn(batch * p / parts, batch * (p + 1) / parts, ctx ? &ctxs[p] : nullptr);
  });
  if (ctx) {  // the hooks' merges shared out over the threads, each part's pieces freed as they are merged
    std::vector<std::string> names;
    for (const auto& [name, t] : ctxs[0].cached()) {
      names.push_back(name);
      for (auto& c : ctxs)
        if (!c.cached().count(name)) throw std::logic_error("run_example_parts: a part did not cache " + name);
    }
    std::vector<at::Tensor> merged(names.size());
    at::parallel_for(0, static_cast<int64_t>(names.size()), 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        std::vector<at::Tensor> pieces;
        for (auto& c : ctxs) pieces.push_back(std::move(c.cached().at(names[i])));
        merged[i] = at::cat(pieces);
      }
    });
    for (size_t i = 0; i < names.size(); ++i) ctx->cached()[names[i]] = std::move(merged[i]);
  }
  return at::cat(out);
}

at::Tensor LanguageModel::embed(const at::Tensor& tokens, HookContext* ctx, at::Tensor* token_embedding,
                                int64_t first_position) {
  at::Tensor e = backbone->embedding->forward(tokens);  // [batch, pos, d_model]
  // Gemma's scale, rounded to the embedding's dtype first (as transformers does: sqrt(3072) is 55.5 in bfloat16).
  if (cfg_.embedding_multiplier != 1.0) e = e * at::scalar_tensor(cfg_.embedding_multiplier, e.options());
  at::Tensor resid = hook_point(ctx, "hook_embed", e);
  if (token_embedding) *token_embedding = resid;
  if (backbone->pos_embedding) {
    const int64_t L = tokens.size(1);
    if (first_position < 0 || first_position + L > cfg_.max_seq_len)
      throw std::invalid_argument("positions " + std::to_string(first_position) + ".." + std::to_string(first_position + L - 1) +
                                  " exceed the learned position table's " + std::to_string(cfg_.max_seq_len));
    at::Tensor pos = backbone->pos_embedding->forward(at::arange(first_position, first_position + L, tokens.options()))
                         .unsqueeze(0).expand({tokens.size(0), L, cfg_.d_model});
    resid = resid + hook_point(ctx, "hook_pos_embed", pos);
  }
  if (cfg_.residual_in_fp32 && resid.scalar_type() != at::kFloat) resid = resid.to(at::kFloat);
  return resid;
}

at::Tensor LanguageModel::forward_blocks_at(int64_t from, at::Tensor resid, const at::Tensor& rows, HookContext* ctx,
                                            const at::Tensor& embedding) {
  const int64_t n = n_layers();
  if (from < 0 || from > n)
    throw std::invalid_argument("forward_blocks_at: layer " + std::to_string(from) + " is outside [0, " + std::to_string(n) + "]");
  if (from == n) return gather_rows(resid, rows);
  resid = forward_blocks(from, n - 1, resid, ctx, embedding);
  return backbone->layers[n - 1]->forward_partial(resid, Partial{nullptr, &rows, embedding.defined() ? &embedding : nullptr}, ctx);
}

at::Tensor LanguageModel::forward_blocks_partial(int64_t from, at::Tensor resid, const std::vector<LayerPrefix>& prefixes,
                                                 const at::Tensor& rows, HookContext* ctx) {
  const int64_t n = n_layers();
  if (from < 0 || from >= n || static_cast<int64_t>(prefixes.size()) != n - from)
    throw std::invalid_argument("forward_blocks_partial: layer " + std::to_string(from) + " of " + std::to_string(n) +
                                " with " + std::to_string(prefixes.size()) + " prefixes");
  for (int64_t j = from; j < n; ++j)
    resid = backbone->layers[j]->forward_partial(resid, Partial{&prefixes[j - from], j == n - 1 ? &rows : nullptr}, ctx);
  return resid;
}

at::Tensor LanguageModel::forward_blocks(int64_t from, int64_t to, at::Tensor resid, HookContext* ctx,
                                         const at::Tensor& embedding) {
  if (from < 0 || to > n_layers() || from > to)
    throw std::invalid_argument("forward_blocks: layer range [" + std::to_string(from) + ", " + std::to_string(to) +
                                ") is outside [0, " + std::to_string(n_layers()) + ")");
  const Partial whole{nullptr, nullptr, embedding.defined() ? &embedding : nullptr};
  for (int64_t i = from; i < to; ++i) resid = backbone->layers[i]->forward_partial(resid, whole, ctx);
  return resid;
}

at::Tensor LanguageModel::unembed(const at::Tensor& resid, HookContext* ctx, bool softcap) {
  at::Tensor normed = hook_point(ctx, "ln_final.hook_normalized", backbone->norm_f->forward(resid));
  at::Tensor logits = lm_head ? lm_head->forward(normed) : at::linear(normed, backbone->embedding->weight);
  const double c = cfg_.final_logit_softcap;
  return c > 0 && softcap ? at::tanh(logits / c) * c : logits;
}

at::Tensor LanguageModel::unembedding_matrix() const {
  return lm_head ? lm_head->weight : backbone->embedding->weight;
}

std::set<std::string> LanguageModel::resolve(const HookSelection& sel) const {
  std::set<std::string> names;
  if (sel.all) {
    for (const auto& n : hook_names_)
      if (sel.include_expensive || !is_expensive_hook(n)) names.insert(n);
  }
  auto more = resolve_hook_names(sel.names, hook_names_);
  names.insert(more.begin(), more.end());
  return names;
}

std::pair<at::Tensor, ActivationCache> LanguageModel::run(const at::Tensor& tokens, const std::vector<Hook>& hooks,
                                                          const HookSelection& selection) {
  HookContext ctx;
  const std::set<std::string> names = resolve(selection);
  if (!names.empty() && tokens.dim() == 2)
    require_memory(estimate_forward_bytes(tokens.size(0), tokens.size(1), names),
                   "caching " + std::to_string(names.size()) + " hook point(s) over " + std::to_string(tokens.size(0)) +
                       " x " + std::to_string(tokens.size(1)) + " tokens",
                   "Cache fewer hook points (attention maps and SSM states grow fastest), or use fewer examples or a "
                   "shorter input.");
  ctx.cache(names);
  for (const auto& h : hooks) {
    resolve_hook_names({h.name}, hook_names_);  // validates; exact names only
    if (h.name.find_first_of("*?") != std::string::npos)
      throw std::invalid_argument("hook function name '" + h.name + "': give an exact hook name, not a pattern");
    ctx.add_hook(h.name, h.fn);
  }
  at::Tensor logits = forward(tokens, &ctx);
  return {logits, std::move(ctx.cached())};
}

std::pair<at::Tensor, ActivationCache> LanguageModel::run_with_cache(const at::Tensor& tokens,
                                                                     const HookSelection& selection) {
  return run(tokens, {}, selection);
}

at::Tensor LanguageModel::run_with_hooks(const at::Tensor& tokens, const std::vector<Hook>& hooks) {
  return run(tokens, hooks, HookSelection{}).first;
}

std::vector<std::pair<std::string, at::Tensor>> LanguageModel::state_dict() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& item : named_parameters(true)) out.emplace_back(item.key(), item.value());
  return out;
}

at::ScalarType LanguageModel::dtype() const {
  const auto ps = parameters(true);
  return ps.empty() ? at::kFloat : ps.front().scalar_type();
}

int64_t LanguageModel::parameter_count() const {
  int64_t n = 0;
  for (const auto& p : parameters(true)) n += p.numel();
  return n;
}

BlockImpl& LanguageModel::block(int64_t layer) const {
  if (layer < 0 || layer >= n_layers())
    throw std::out_of_range("layer " + std::to_string(layer) + " is outside 0.." + std::to_string(n_layers() - 1));
  return *backbone->layers[layer];
}

std::vector<HeadGroup> LanguageModel::head_groups(int64_t layer) const { return block(layer).head_groups(); }

HeadGroup LanguageModel::head_group(int64_t layer, const std::string& scope) const {
  std::vector<std::string> scopes;
  for (auto& g : head_groups(layer)) {
    if (g.scope == scope) return g;
    scopes.push_back(g.scope);
  }
  throw std::invalid_argument("layer " + std::to_string(layer) + " has no '" + scope + "' heads (it has " +
                              join(scopes, ", ") + ")");
}

std::vector<std::pair<std::string, int64_t>> LanguageModel::heads_of_layer(int64_t layer) const {
  std::vector<std::pair<std::string, int64_t>> out;
  for (const auto& g : head_groups(layer)) out.emplace_back(g.scope, g.heads);
  return out;
}

}  // namespace mechscope
