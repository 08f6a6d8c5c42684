// Attribution patching (spec §4; see patching.h): the gradient of the answer probability at the corrupted run times
// (clean - corrupted activation), for every cell of the grid from one forward and one backward.
#include <map>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include "core/interventions/patching.h"
#include "core/model/model.h"

namespace mechscope {

namespace {

// 1 where a clean position has an aligned corrupted position, else 0, shaped to broadcast over `like` [B, L, ...].
at::Tensor aligned_mask(const at::Tensor& aligned, const at::Tensor& like) {
  auto shape = aligned.sizes().vec();
  for (int64_t d = 2; d < like.dim(); ++d) shape.push_back(1);
  return aligned.ge(0).to(like.options()).view(shape);
}

// x [B, L', ...] of the corrupted run read at the clean positions: [B, L, ...], row b position p from aligned[b][p]
// (zeros where -1).
at::Tensor at_aligned(const at::Tensor& x, const at::Tensor& aligned) {
  at::Tensor idx = aligned.clamp_min(0).to(x.device());
  auto shape = idx.sizes().vec();
  for (int64_t d = 2; d < x.dim(); ++d) shape.push_back(1);
  auto full = x.sizes().vec();
  full[1] = idx.size(1);
  at::Tensor got = x.gather(1, idx.view(shape).expand(full));
  return got * aligned_mask(aligned, got);
}

}  // namespace

PatchResult attribution_patching(LanguageModel& model, const Batch& clean, const Batch& corrupted,
                                 const std::string& site, const SweepOptions& options) {
  if (site == "state")
    throw std::invalid_argument("attribution patching: the state site is exact-only (a state replacement changes "
                                "the scan itself); use activation_patching");
  patching::PatchPlan plan = patching::plan_rows(model, site);
  patching::PairRun pr = [&] {
    at::NoGradGuard no_grad;
    return patching::run_pair(model, clean, corrupted, plan.hooks, {}, options.keep_threshold);
  }();
  const int64_t L = clean.tokens.size(1), nrows = static_cast<int64_t>(plan.rows.size());
  PatchResult res = patching::start_result(site, plan, pr, L, options.keep_threshold);

  // Corrupted forward with a zero probe added at every site: d metric / d probe = d metric / d activation.
  std::map<std::string, at::Tensor> probes, acts;
  HookContext ctx;
  for (const auto& h : plan.hooks)
    ctx.add_hook(h, [&probes, &acts](const at::Tensor& v, const std::string& name) {
      at::Tensor probe = at::zeros_like(v).requires_grad_(true);
      probes[name] = probe;
      acts[name] = v.detach();
      return v + probe;
    });
  at::Tensor grads_sum;
  std::vector<at::Tensor> probe_list;
  std::vector<std::string> probe_names;
  {
    at::AutoGradMode grad(true);
    at::Tensor logits = model.forward(corrupted.tokens, &ctx);
    at::Tensor read = gather_readout(logits, pr.corrupt_readout);
    at::Tensor p = at::log_softmax(read, -1).gather(-1, pr.readout.target.unsqueeze(-1)).exp();
    for (auto& [n, t] : probes) {
      probe_names.push_back(n);
      probe_list.push_back(t);
    }
    auto grads = torch::autograd::grad({p.sum()}, probe_list, {}, false, false, /*allow_unused=*/true);
    for (size_t i = 0; i < grads.size(); ++i) probes[probe_names[i]] = grads[i].defined() ? grads[i].detach()
                                                                                         : at::zeros_like(probe_list[i]);
  }
  at::NoGradGuard no_grad;
  at::Tensor denom = (pr.p_clean - pr.p_corrupt).where(pr.keep, at::ones_like(pr.p_clean));  // [E]
  patching::Aligner aligner(clean, corrupted, pr, nrows);
  for (int64_t r = 0; r < nrows; ++r) {
    const auto& row = plan.rows[r];
    if (row.hook.empty()) continue;
    at::Tensor g = probes.at(row.hook), act = acts.at(row.hook);
    if (corrupted.aligned.defined()) {  // the corrupted side at each clean position's aligned place (none: 0)
      g = at_aligned(g, corrupted.aligned);
      act = at_aligned(act, corrupted.aligned);
    }
    at::Tensor diff = pr.clean_cache.at(row.hook) - act;  // g is 0 where a clean position has no aligned place
    at::Tensor prod = (g * diff).to(at::kFloat);  // [B, L, ...]
    if (row.head >= 0) prod = prod.select(2, row.head);
    at::Tensor est = prod.flatten(2).sum(2);                  // [B, L]
    at::Tensor norm = est / denom.unsqueeze(1);
    at::Tensor w = pr.keep.to(at::kFloat).unsqueeze(1);
    res.score[r] = (norm * w).sum(0) / w.sum();
    const at::Tensor by_pos = norm.t().to(at::kCPU, at::kFloat).contiguous();  // [L, E]
    for (int64_t p = 0; p < L; ++p) aligner.add(r, p, by_pos.data_ptr<float>() + p * by_pos.size(1));
  }
  aligner.finish(res);
  return res;
}

}  // namespace mechscope
