// Head ablation and its sweep (see ablation.h).
#include "core/interventions/ablation.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <tuple>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "core/engine/memory.h"
#include "core/model/model.h"

namespace mechscope {

namespace {

// The residuals [k, ...] after one mixer with each of k units of its heads ablated: resid_mid [..., d] plus
// each unit's linear change. z [..., H, D] is the mixer's head output; change(h, z_h) the slice's ablation change
// (zero_kind: it is -z_h). Single heads go as one batched product, resid_mid + C_j W_j^T for all j at once (no
// per-head product, stack and sum); units of several heads add their heads' terms one by one.
at::Tensor ablated_residuals(const HeadGroup& p, const at::Tensor& resid_mid, const at::Tensor& z,
                             const std::vector<const std::vector<HeadRef>*>& units, bool zero_kind,
                             const std::function<at::Tensor(const HeadRef&, const at::Tensor&)>& change) {
  const int64_t k = static_cast<int64_t>(units.size()), d = resid_mid.size(-1);
  bool singles = true;
  for (const auto* u : units) singles = singles && u->size() == 1;
  if (!singles) {
    std::vector<at::Tensor> deltas;
    for (const auto* u : units) {
      at::Tensor delta;  // a group's heads add up: each changes the residual by its own linear term
      for (const HeadRef& h : *u) {
        at::Tensor term = p.project(h.head, change(h, z.select(-2, h.head)));
        delta = delta.defined() ? delta + term : term;
      }
      deltas.push_back(delta);
    }
    return resid_mid.unsqueeze(0) + at::stack(deltas);
  }
  const auto dtype = resid_mid.scalar_type();  // the residual's (float32 under residual_in_fp32)
  const at::Tensor zf = z.reshape({-1, z.size(-2), z.size(-1)});  // [N, H, D]
  const int64_t N = zf.size(0);
  auto shape = resid_mid.sizes().vec();
  shape.insert(shape.begin(), k);
  if (k == 1 && zero_kind) {  // one head: one addmm on the head's (strided) slice, no gathers or batch copies
    const int64_t h = units[0]->front().head;
    const double alpha = p.scale.defined() ? -p.scale.item<double>() : -1.0;
    const at::Tensor W = p.columns(h).t().to(dtype);  // [D, d]
    return at::addmm(resid_mid.reshape({N, d}), zf.select(1, h).to(dtype), W, 1.0, alpha).view(shape);
  }
  std::vector<int64_t> heads;
  for (const auto* u : units) heads.push_back(u->front().head);
  const at::Tensor idx = at::tensor(heads, at::kLong).to(z.device());
  at::Tensor C;  // [k, N, D]
  double alpha = 1.0;
  if (zero_kind) {
    C = zf.index_select(1, idx).transpose(0, 1).to(dtype);
    alpha = -1.0;
  } else {
    std::vector<at::Tensor> cs;
    for (const auto* u : units) cs.push_back(change(u->front(), z.select(-2, u->front().head)).reshape({N, p.head_dim}));
    C = at::stack(cs).to(dtype);
  }
  if (p.scale.defined()) alpha *= p.scale.item<double>();
  at::Tensor W = p.weight.narrow(1, p.offset, p.heads * p.head_dim)
                     .view({d, p.heads, p.head_dim})
                     .index_select(1, idx)
                     .permute({1, 2, 0})
                     .to(dtype);
  at::Tensor out = at::baddbmm(resid_mid.reshape({1, N, d}).expand({k, N, d}), C, W, 1.0, alpha);  // [k, N, d]
  return out.view(shape);
}

}  // namespace

AblationKind parse_ablation(const std::string& t) {
  if (t == "zero") return AblationKind::Zero;
  if (t == "mean") return AblationKind::Mean;
  if (t == "resample") return AblationKind::Resample;
  throw std::invalid_argument("ablation '" + t + "': expected zero, mean or resample");
}

const std::vector<std::string>& ablation_names() {
  static const std::vector<std::string> names = {"zero", "mean", "resample"};
  return names;
}
const char* ablation_name(AblationKind k) {
  return k == AblationKind::Zero ? "zero" : k == AblationKind::Mean ? "mean" : "resample";
}

Ablator::Ablator(LanguageModel& model, AblationKind kind, const Batch& reference) : model_(model), kind_(kind) {
  if (kind == AblationKind::Zero) return;
  if (reference.size() == 0)
    throw std::invalid_argument(std::string(ablation_name(kind)) + " ablation needs a reference batch");
  at::NoGradGuard no_grad;
  std::vector<std::string> names;
  for (int64_t l = 0; l < model.n_layers(); ++l)
    for (const auto& g : model.head_groups(l)) names.push_back(g.hook);
  reference_ = model.run_with_cache(reference.tokens, HookSelection::of(names)).second;
  ref_lengths_ = reference.lengths.defined() ? reference.lengths
                                             : at::full({reference.size()}, reference.tokens.size(1), at::kLong);
  const int64_t L = reference.tokens.size(1);
  at::Tensor valid = at::arange(L, at::kLong).unsqueeze(0).lt(ref_lengths_.unsqueeze(1)).to(at::kFloat);  // [B, L]
  for (const auto& [name, act] : reference_) {
    at::Tensor w = valid.view({valid.size(0), L, 1, 1});
    mean_[name] = (act * w).sum(0) / w.sum(0).clamp_min(1);  // [L, H, D]
  }
}

at::Tensor Ablator::replacement(const HeadRef& h, const at::Tensor& current) const {
  if (kind_ == AblationKind::Zero) return at::zeros_like(current);
  return replacement(h, current.size(0), current.size(1), current.scalar_type());
}

at::Tensor Ablator::replacement(const HeadRef& h, int64_t B, int64_t L, at::ScalarType dtype, int64_t first_row) const {
  const std::string name = head_hook_name(model_, h);
  at::Tensor src;
  if (kind_ == AblationKind::Mean) {
    src = mean_.at(name).select(1, h.head).unsqueeze(0);  // [1, Lref, D]
  } else {
    const at::Tensor& ref = reference_.at(name);  // [Bref, Lref, H, D]
    at::Tensor idx = at::arange(first_row, first_row + B, at::kLong).remainder(ref.size(0));
    src = ref.index_select(0, idx).select(2, h.head);  // [B, Lref, D]
  }
  const int64_t Lref = src.size(1);
  if (L <= Lref) {
    src = src.narrow(1, 0, L);
  } else {  // positions beyond the reference: its mean over positions
    at::Tensor tail = src.mean(1, true).expand({src.size(0), L - Lref, src.size(2)});
    src = at::cat({src, tail}, 1);
  }
  return src.expand({B, L, src.size(2)}).to(dtype);
}

at::Tensor Ablator::change(const HeadRef& h, const at::Tensor& current) const {
  return kind_ == AblationKind::Zero ? -current : replacement(h, current) - current;
}

at::Tensor Ablator::change_at(const HeadRef& h, const at::Tensor& current_at, const Readout& readout, int64_t B,
                              int64_t L) const {
  if (kind_ == AblationKind::Zero) return -current_at;
  return gather_readout(replacement(h, B, L, current_at.scalar_type()), readout) - current_at;
}

std::vector<Hook> Ablator::hooks(const std::vector<HeadRef>& heads, int64_t first_row) const {
  std::map<std::string, std::vector<HeadRef>> by_hook;
  for (const auto& h : heads) by_hook[head_hook_name(model_, h)].push_back(h);
  std::vector<Hook> out;
  for (auto& [name, hs] : by_hook) {
    out.push_back({name, [this, hs, first_row](const at::Tensor& v, const std::string&) {
                     at::Tensor r = v.clone();
                     for (const auto& h : hs)
                       r.select(2, h.head).copy_(kind_ == AblationKind::Zero
                                                     ? at::zeros_like(v.select(2, h.head))
                                                     : replacement(h, v.size(0), v.size(1), v.scalar_type(), first_row));
                     return r;
                   }});
  }
  return out;
}

std::vector<std::string> ablation_cache_names(const LanguageModel& model) {
  std::vector<std::string> names;
  const int64_t n = model.n_layers();
  if (model.needs_embedding()) names.push_back("hook_embed");  // what shared blocks read beside the residual
  for (int64_t l = 0; l < n; ++l) {
    names.push_back(model.block(l).resid_mid_hook());
    for (const auto& g : model.head_groups(l)) {
      names.push_back(g.hook);
      if (!g.direct) names.push_back(model.block(l).site_hook("resid_pre"));  // its heads run hooked from there
    }
  }
  const BlockImpl& last = model.block(n - 1);
  if (last.resid_mid_hook() != last.resid_post_hook()) names.push_back(last.resid_post_hook());  // else already in
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}

at::Tensor cached_embedding(const LanguageModel& model, const ActivationCache& cache) {
  if (!model.needs_embedding()) return {};
  auto it = cache.find("hook_embed");
  if (it == cache.end())
    throw std::invalid_argument("this model's shared blocks read the token embedding; the cache lacks hook_embed "
                                "(cache ablation_cache_names)");
  return it->second;
}

namespace {

// The residual leaving block `first` (the earliest ablated layer) with that layer's heads ablated, and the heads
// of later layers (which need hooks); the later layers run from `next`. Heads whose path to the residual is not
// linear (HeadGroup::direct false: a shared block's) are not projected: then the block `first` itself runs hooked
// from its cached input, with every head (next = first).
struct AfterFirst {
  int64_t next = 0;
  at::Tensor resid;
  std::vector<HeadRef> later;
};

AfterFirst ablate_first_layer(LanguageModel& model, const ActivationCache& clean, const Ablator& ablator,
                              const std::vector<HeadRef>& heads) {
  const int64_t n = model.n_layers();
  int64_t first = n;
  for (const auto& h : heads) first = std::min(first, h.layer);
  for (const auto& h : heads)
    if (h.layer == first && !model.head_group(first, h.mixer).direct)
      return {first, clean.at(model.block(first).site_hook("resid_pre")), heads};
  at::Tensor resid = clean.at(model.block(first).resid_mid_hook());
  std::vector<HeadRef> later;
  std::map<std::string, HeadGroup> projections;
  for (const auto& h : heads) {
    if (h.layer != first) {
      later.push_back(h);
      continue;
    }
    if (!projections.count(h.mixer)) projections[h.mixer] = model.head_group(h.layer, h.mixer);
    const HeadGroup& g = projections[h.mixer];
    resid = resid + g.project(h.head, ablator.change(h, clean.at(g.hook).select(2, h.head)));
  }
  resid = model.block(first).forward_after_mixer(resid, nullptr);
  return {first + 1, resid, later};
}

// The final residual [B, L, d] from there: the later layers in full, with hooks for their ablated heads.
at::Tensor finish_ablated(LanguageModel& model, const AfterFirst& a, const Ablator& ablator, const ActivationCache& clean) {
  HookContext ctx;
  for (auto& hook : ablator.hooks(a.later)) ctx.add_hook(hook.name, hook.fn);
  return model.forward_blocks(a.next, model.n_layers(), a.resid, a.later.empty() ? nullptr : &ctx,
                              cached_embedding(model, clean));
}

}  // namespace

at::Tensor ablated_final_resid(LanguageModel& model, const at::Tensor& tokens, const ActivationCache& clean,
                               const Ablator& ablator, const std::vector<HeadRef>& heads) {
  at::NoGradGuard no_grad;
  if (heads.empty()) return clean.at(model.block(model.n_layers() - 1).resid_post_hook());
  return finish_ablated(model, ablate_first_layer(model, clean, ablator, heads), ablator, clean);
}

ReadoutResid ablated_readout_resid(LanguageModel& model, const at::Tensor& tokens, const ActivationCache& clean,
                                   const Ablator& ablator, const std::vector<HeadRef>& heads, const at::Tensor& rows,
                                   int64_t example) {
  at::NoGradGuard no_grad;
  const int64_t n = model.n_layers();
  ReadoutResid out;
  auto from_full = [&](const at::Tensor& full) {
    out.at_rows = gather_rows(full, rows);
    if (example >= 0) out.example_full = full[example];
  };
  if (heads.empty()) {
    from_full(clean.at(model.block(n - 1).resid_post_hook()));
    return out;
  }
  AfterFirst a = ablate_first_layer(model, clean, ablator, heads);
  if (!a.later.empty()) {  // later layers need hooks, which the rows-only last block does not take
    from_full(finish_ablated(model, a, ablator, clean));
    return out;
  }
  const at::Tensor emb = cached_embedding(model, clean);
  out.at_rows = model.forward_blocks_at(a.next, a.resid, rows, nullptr, emb);
  if (example >= 0)
    out.example_full = model.forward_blocks(a.next, n, a.resid.narrow(0, example, 1), nullptr,
                                            emb.defined() ? emb.narrow(0, example, 1) : emb)[0];
  return out;
}

HeadSweepResult head_ablation_sweep(LanguageModel& model, const at::Tensor& tokens, const Readout& readout,
                                    const Ablator& ablator, const std::vector<HeadRef>& heads_in,
                                    const SweepOptions& options) {
  std::vector<std::vector<HeadRef>> groups;
  for (const auto& h : heads_in.empty() ? all_heads(model) : heads_in) groups.push_back({h});
  return head_group_sweep(model, tokens, readout, ablator, groups, options);
}

namespace {

// The sweep's clean run: the readout logits [R, V] and (batched) the cache of ablation_cache_names. Batched, the last
// block runs at the readout rows only and only they are unembedded (the naive loop's forwards run every position):
// the last layer's cached hooks are [B, P, ...] at those rows, `slot` each readout's column there.
struct CleanRun {
  at::Tensor read;
  ActivationCache cache;
  at::Tensor slot;
};

CleanRun clean_run(LanguageModel& model, const at::Tensor& tokens, const Readout& readout, bool batched) {
  CleanRun c;
  const int64_t B = tokens.size(0), L = tokens.size(1);
  if (!batched) {
    c.read = gather_readout(model.forward(tokens), readout);
    return c;
  }
  const std::vector<std::string> names = ablation_cache_names(model);
  const std::set<std::string> cached(names.begin(), names.end());
  require_memory(model.estimate_forward_bytes(B, L, cached),
                 "the head-ablation sweep's cached run over " + std::to_string(B) + " x " + std::to_string(L) + " tokens",
                 "Use fewer examples or a shorter input.");
  HookContext ctx;
  ctx.cache(cached);
  at::Tensor rows;
  std::tie(rows, c.slot) = readout_rows(readout, B);
  const ReadoutSpans spans(readout, B);
  // Each part unembeds its own examples' readouts (in readout order, so the parts concatenate to [R, V]).
  at::Tensor out = run_example_parts(B, tokens.device(), &ctx, [&](int64_t b, int64_t e, HookContext* hc) {
    at::Tensor emb;
    at::Tensor resid = model.embed(tokens.narrow(0, b, e - b), hc, &emb);
    at::Tensor final_rows = model.forward_blocks_at(0, resid, rows.narrow(0, b, e - b), hc, emb);
    return spans.sorted ? unembed_part_readouts(model, final_rows, b, e, B, spans, readout, c.slot) : final_rows;
  });
  c.read = spans.sorted ? out : unembed_all_readouts(model, out, 1, B, readout, c.slot)[0];
  c.cache = std::move(ctx.cached());
  return c;
}

// Per-example metrics of each unit [E], averaged over the kept examples once, for all units, at the end.
struct UnitMetrics {
  explicit UnitMetrics(int64_t n) : prob(n), ld(n), acc(n), kl(n) {}
  void store(int64_t i, const ExampleMetrics& m, int64_t k) {
    prob[i] = m.prob[k];
    ld[i] = m.logit_diff[k];
    acc[i] = m.correct[k];
    kl[i] = m.kl[k];
  }
  MetricTable table(const at::Tensor& keep) const {
    return {mean_over(at::stack(prob), keep), mean_over(at::stack(ld), keep), mean_over(at::stack(acc), keep),
            mean_over(at::stack(kl), keep)};
  }
  std::vector<at::Tensor> prob, ld, acc, kl;
};

// The readout logits [k, R, V] of one chunk of units of one layer's head group, each ablated alone. An ablation
// changes only that mixer's output, by a linear function of the head slice: resid_mid' = resid_mid + scale *
// (r_h - z_h) W_h^T; the layers before it are not recomputed. `z` [B, L, H, D] and `resid_mid` [B, L, d] come from
// the cached run, or [R, ...] at the readout when `last` (the last block is cached at the readout rows from its
// mixer on, and the rest of it is per position: there the change is needed at the readout only).
at::Tensor chunk_logits(LanguageModel& model, int64_t l, bool last, const HeadGroup& proj, const at::Tensor& z,
                        const at::Tensor& resid_mid, const std::vector<const std::vector<HeadRef>*>& chunk,
                        const Ablator& ablator, const Readout& readout, int64_t B, int64_t L,
                        const at::Tensor& embedding) {
  BlockImpl* block = &model.block(l);
  auto change = [&](const HeadRef& h, const at::Tensor& zh) {
    return last ? ablator.change_at(h, zh, readout, B, L) : ablator.change(h, zh);
  };
  const bool zero = ablator.kind() == AblationKind::Zero;
  const int64_t k = static_cast<int64_t>(chunk.size());
  if (last) {  // the rest of the block and the unembedding are per row: parts of the chunk's [k * R] rows
    const at::Tensor mid = ablated_residuals(proj, resid_mid, z, chunk, zero, change);  // [k, R, d]
    const at::Tensor flat = mid.reshape({-1, mid.size(-1)});
    return run_example_parts(flat.size(0), flat.device(), nullptr, [&](int64_t b, int64_t e, HookContext*) {
             return model.unembed(block->forward_after_mixer(flat.narrow(0, b, e - b), nullptr));
           }).view({mid.size(0), mid.size(1), -1});
  }
  if (k == 1 && zero) {  // one variant: its residual too is built in the row parts, example by example
    return finish_and_read(model, l + 1, 1, B, readout, resid_mid.device(), embedding, [&](int64_t b, int64_t e) {
      const at::Tensor mid = ablated_residuals(proj, resid_mid.narrow(0, b, e - b), z.narrow(0, b, e - b), chunk, true, change);
      return block->forward_after_mixer(mid[0], nullptr);
    });
  }
  // The later layers over every position: the chunk's variants in parts side by side.
  return run_example_parts(k, resid_mid.device(), nullptr, [&](int64_t b, int64_t e, HookContext*) {
    const std::vector<const std::vector<HeadRef>*> part(chunk.begin() + b, chunk.begin() + e);
    const at::Tensor stacked = ablated_residuals(proj, resid_mid, z, part, zero, change);
    const at::Tensor resid = block->forward_after_mixer(stacked.view({(e - b) * B, L, -1}), nullptr);
    return finish_and_read(model, l + 1, e - b, B, readout, resid.device(), embedding,
                           [&](int64_t rb, int64_t re) { return resid.narrow(0, rb, re - rb); });
  });
}

}  // namespace

HeadSweepResult head_group_sweep(LanguageModel& model, const at::Tensor& tokens, const Readout& readout,
                                 const Ablator& ablator, const std::vector<std::vector<HeadRef>>& units,
                                 const SweepOptions& options) {
  at::NoGradGuard no_grad;
  model.check_tokens(tokens);
  HeadSweepResult res;
  for (const auto& u : units) {
    if (u.empty()) throw std::invalid_argument("head-ablation sweep: an empty group of heads");
    for (const auto& h : u)
      if (h.layer != u[0].layer || h.mixer != u[0].mixer)
        throw std::invalid_argument("head-ablation sweep: the group " + group_label(u) +
                                    " spans layers or mixers; a group's heads share one layer and mixer");
    res.heads.push_back(u[0]);
    res.labels.push_back(group_label(u));
  }
  const int64_t B = tokens.size(0), L = tokens.size(1), n = static_cast<int64_t>(units.size());
  at::Tensor keep = examples_with_readout(readout);
  const CleanRun clean = clean_run(model, tokens, readout, options.batched);
  const MetricReference base_ref = metric_reference(clean.read.unsqueeze(0));
  res.base = table_of(example_metrics(clean.read.unsqueeze(0), readout, base_ref), keep);
  UnitMetrics metrics(n);

  if (!options.batched) {
    for (int64_t i = 0; i < n; ++i) {
      check_cancel(options);
      at::Tensor logits = model.run_with_hooks(tokens, ablator.hooks(units[i]));
      metrics.store(i, example_metrics(gather_readout(logits, readout).unsqueeze(0), readout, base_ref), 0);
      report_progress(options, double(i + 1) / n, "ablating " + res.labels[i]);
    }
    res.ablated = metrics.table(keep);
    return res;
  }
  const int64_t K = chunk_size(options, B * bytes_per_example(model, L, false), n, B * L);
  int64_t done = 0;
  std::map<std::pair<int64_t, std::string>, std::vector<int64_t>> groups;  // units by (layer, head group)
  for (int64_t i = 0; i < n; ++i) groups[{res.heads[i].layer, res.heads[i].mixer}].push_back(i);
  const at::Tensor embedding = cached_embedding(model, clean.cache);
  for (const auto& [key, idxs] : groups) {
    const int64_t l = key.first;
    const HeadGroup proj = model.head_group(l, key.second);
    if (!proj.direct) {  // heads with a non-linear path to the residual: one hooked forward each
      for (int64_t i : idxs) {
        check_cancel(options);
        at::Tensor logits = model.run_with_hooks(tokens, ablator.hooks(units[i]));
        metrics.store(i, example_metrics(gather_readout(logits, readout).unsqueeze(0), readout, base_ref), 0);
        report_progress(options, double(++done) / n, "ablating " + res.labels[i]);
      }
      continue;
    }
    const bool last = l == model.n_layers() - 1;
    auto at_readout = [&](const at::Tensor& rows_form) { return rows_form.index({readout.example, clean.slot}); };
    at::Tensor z = clean.cache.at(proj.hook);                                 // [B, L, H, D], or [R, H, D] when last
    at::Tensor resid_mid = clean.cache.at(model.block(l).resid_mid_hook());   // [B, L, d], or [R, d] when last
    if (last) {
      z = at_readout(z);
      resid_mid = at_readout(resid_mid);
    }
    for (size_t s = 0; s < idxs.size(); s += K) {
      check_cancel(options);
      const int64_t k = std::min<int64_t>(K, idxs.size() - s);
      std::vector<const std::vector<HeadRef>*> chunk;
      for (int64_t j = 0; j < k; ++j) chunk.push_back(&units[idxs[s + j]]);
      const at::Tensor logits = chunk_logits(model, l, last, proj, z, resid_mid, chunk, ablator, readout, B, L, embedding);
      ExampleMetrics m = example_metrics(logits, readout, base_ref);
      for (int64_t j = 0; j < k; ++j) metrics.store(idxs[s + j], m, j);
      done += k;
      report_progress(options, double(done) / n, "ablating layer " + std::to_string(l) + " " + key.second + " heads");
    }
  }
  res.ablated = metrics.table(keep);
  return res;
}

}  // namespace mechscope
