// Exact activation patching (spec §4; see patching.h): every cell of the grid, batched (prefix reuse, positions from
// the patched one on, cells stacked along the batch, readout rows only) or one forward per cell (the baseline).
#include <algorithm>
#include <map>

#include <ATen/ATen.h>

#include "core/interventions/patching.h"
#include "core/model/model.h"

namespace mechscope {

using patching::Aligner;
using patching::Cell;
using patching::PairRun;
using patching::PatchPlan;

namespace {

// Readout logits [k, R, V] of the corrupted run with the chunk's cells of one (layer, hook) patched from the clean
// run, from the corrupted run's cached input of layer l. With `from_first_cell`, only positions >= the chunk's
// first cell position are computed (earlier positions cannot change: readouts there keep the corrupted logits;
// the cache must hold the prefixes, see activation_patching); otherwise every position.
at::Tensor patched_from(LanguageModel& model, const PairRun& pr, int64_t l, const std::string& site,
                        const std::string& hook, const at::Tensor& clean_act, std::vector<Cell> cells, int64_t B,
                        bool from_first_cell) {
  const int64_t n = model.n_layers(), k = static_cast<int64_t>(cells.size());
  int64_t start = from_first_cell ? cells[0].pos : 0;
  for (const auto& c : cells) start = std::min(start, c.pos);
  const int64_t L = pr.corrupt_cache.at(layer_prefix(l) + "hook_resid_pre").size(1), Ls = L - start;
  std::vector<LayerPrefix> prefixes(n - l);
  for (int64_t j = l; j < n; ++j) {
    LayerPrefix& p = prefixes[j - l];
    p.start = start;
    for (const auto& name : model.block(j).prefix_hooks()) {
      auto it = pr.corrupt_cache.find(name);
      if (it != pr.corrupt_cache.end()) p.tensors[name] = it->second;
    }
  }
  for (auto& c : cells) c.pos -= start;
  const at::Tensor clean_tail = clean_act.narrow(1, start, Ls);
  at::Tensor resid = pr.corrupt_cache.at(layer_prefix(l) + "hook_resid_pre").narrow(1, start, Ls);
  resid = repeat_batch(resid, k * B);
  auto [rows, slot] = readout_rows(pr.readout, B);
  at::Tensor rel = (rows - start).clamp_min(0).repeat({k, 1});  // [k B, P]; rows before start are replaced below
  at::Tensor fin;
  if (site == "resid_pre") {  // the block input itself, patched without a hook
    fin = model.forward_blocks_partial(l, patching::patch_stacked(resid, clean_tail, cells, B), prefixes, rel);
  } else {
    HookContext ctx;
    ctx.add_hook(hook, [&clean_tail, &cells, B](const at::Tensor& v, const std::string&) {
      return patching::patch_stacked(v, clean_tail, cells, B);
    });
    if (l == n - 1) {  // the hook may come after the last block's row gather: run it at every position
      fin = gather_rows(model.block(l).forward_partial(resid, Partial{&prefixes[0], nullptr}, &ctx), rel);
    } else {
      fin = model.forward_blocks_partial(l, resid, prefixes, rel, &ctx);
    }
  }
  fin = fin.view({k, B, fin.size(1), fin.size(2)});
  at::Tensor logits = model.unembed(fin.index({at::indexing::Slice(), pr.readout.example, slot}));  // [k, R, V]
  at::Tensor before = pr.readout.position.lt(start).view({1, -1, 1});
  return at::where(before, pr.corrupt_read.unsqueeze(0).to(logits.scalar_type()), logits);
}

// What the corrupted run caches for a batched sweep: every layer's block input and, when the sweep runs from the
// chunk's first patched position on (`partial`), the prefixes the layers read there (keys and values, SSM states and
// conv windows). Not for the state site (the state hook needs every position), nor when the SSM states would not
// fit the memory budget.
struct CorruptCache {
  std::vector<std::string> names;
  bool partial = false;
};

CorruptCache corrupt_cache_plan(const LanguageModel& model, const std::string& site, int64_t B, int64_t L,
                                const SweepOptions& options) {
  CorruptCache c;
  if (!options.batched) return c;
  std::vector<std::string> prefix_names;
  double state_bytes = 0;
  for (int64_t l = 0; l < model.n_layers(); ++l) {
    c.names.push_back(layer_prefix(l) + "hook_resid_pre");
    for (const auto& name : model.block(l).prefix_hooks()) prefix_names.push_back(name);
    state_bytes += model.block(l).mixer().prefix_state_bytes(B, L);
  }
  c.partial = site != "state" && state_bytes <= static_cast<double>(options.memory_budget_mb) * (1 << 20);
  if (c.partial) c.names.insert(c.names.end(), prefix_names.begin(), prefix_names.end());
  if (model.needs_embedding()) c.names.push_back("hook_embed");  // shared blocks read it at every position computed
  std::sort(c.names.begin(), c.names.end());
  c.names.erase(std::unique(c.names.begin(), c.names.end()), c.names.end());
  return c;
}

// Writes a chunk's metrics [k, E] into the result as its cells' means over the kept examples, in a few whole-chunk
// ops (per-cell ops were thousands of tiny ones in a sweep), and each example's score into the aligner.
class GridStore {
 public:
  GridStore(PatchResult& res, const PairRun& pr, Aligner& aligner)
      : pr_(pr), aligner_(aligner), denom_((pr.p_clean - pr.p_corrupt).where(pr.keep, at::ones_like(pr.p_clean))),
        outs_{res.score.accessor<float, 2>(), res.prob.accessor<float, 2>(), res.logit_diff.accessor<float, 2>(),
              res.accuracy.accessor<float, 2>(), res.kl.accessor<float, 2>()} {}
  void store(const std::vector<Cell>& cells, const ExampleMetrics& m) {
    const int64_t k = static_cast<int64_t>(cells.size());
    const at::Tensor s = (m.prob - pr_.p_corrupt) / denom_;  // [k, E]
    const at::Tensor means = at::stack({mean_over(s, pr_.keep), mean_over(m.prob, pr_.keep), mean_over(m.logit_diff, pr_.keep),
                                        mean_over(m.correct, pr_.keep), mean_over(m.kl, pr_.keep)})
                                 .to(at::kCPU, at::kFloat)
                                 .contiguous();  // [5, k]
    const at::Tensor per_example = s.to(at::kCPU, at::kFloat).contiguous();
    auto mv = means.accessor<float, 2>();
    for (int64_t j = 0; j < k; ++j) {
      aligner_.add(cells[j].row, cells[j].pos, per_example.data_ptr<float>() + j * per_example.size(1));
      for (int i = 0; i < 5; ++i) outs_[i][cells[j].row][cells[j].pos] = mv[i][j];
    }
  }

 private:
  const PairRun& pr_;
  Aligner& aligner_;
  at::Tensor denom_;
  at::TensorAccessor<float, 2> outs_[5];
};

}  // namespace

PatchResult activation_patching(LanguageModel& model, const Batch& clean, const Batch& corrupted,
                                const std::string& site, const SweepOptions& options) {
  at::NoGradGuard no_grad;
  if (corrupted.aligned.defined() && options.batched) {  // prompts of different lengths: one forward per cell
    SweepOptions plain = options;
    plain.batched = false;
    return activation_patching(model, clean, corrupted, site, plain);
  }
  PatchPlan plan = patching::plan_rows(model, site);
  const int64_t B = clean.size(), L = clean.tokens.size(1), nrows = static_cast<int64_t>(plan.rows.size());
  // Batched: every layer starts from the corrupted run's cached block input, and (spec §4's causality) runs only
  // the positions from the chunk's first patched one on, with the corrupted run's keys, values, SSM states and conv
  // windows before it.
  const CorruptCache cc = corrupt_cache_plan(model, site, B, L, options);
  PairRun pr = patching::run_pair(model, clean, corrupted, plan.hooks, cc.names, options.keep_threshold);
  PatchResult res = patching::start_result(site, plan, pr, L, options.keep_threshold);
  res.prob = res.score.clone();
  res.logit_diff = res.score.clone();
  res.accuracy = res.score.clone();
  res.kl = res.score.clone();
  const MetricReference clean_ref = metric_reference(pr.clean_read.unsqueeze(0));
  Aligner aligner(clean, corrupted, pr, nrows);
  GridStore grid(res, pr, aligner);

  // Cells grouped by (layer, hook): one group shares a block input and a hook function.
  std::map<std::pair<int64_t, std::string>, std::vector<Cell>> groups;
  int64_t total = 0;
  for (int64_t r = 0; r < nrows; ++r) {
    if (plan.rows[r].hook.empty()) continue;
    for (int64_t p = 0; p < L; ++p) groups[{plan.rows[r].layer, plan.rows[r].hook}].push_back({r, p, plan.rows[r].head});
    total += L;
  }
  int64_t done = 0;
  const int64_t K = options.batched ? chunk_size(options, B * bytes_per_example(model, L, site == "state"), total, B * L) : 1;
  for (const auto& [key, cells] : groups) {
    const int64_t l = key.first;
    const std::string& hook = key.second;
    const at::Tensor& clean_act = pr.clean_cache.at(hook);
    for (size_t s = 0; s < cells.size(); s += K) {
      check_cancel(options);
      std::vector<Cell> chunk(cells.begin() + s, cells.begin() + std::min(cells.size(), s + K));
      const int64_t k = static_cast<int64_t>(chunk.size());
      at::Tensor logits;
      if (options.batched) {
        logits = run_example_parts(k, clean_act.device(), nullptr, [&](int64_t b, int64_t e, HookContext*) {
          return patched_from(model, pr, l, site, hook, clean_act,
                              std::vector<Cell>(chunk.begin() + b, chunk.begin() + e), B, cc.partial);
        });
      } else {
        Hook patch{hook, [&clean_act, &corrupted, cell = chunk[0]](const at::Tensor& v, const std::string&) {
                     at::Tensor out = v.clone();  // one cell (plain: chunks of one), at each row's aligned position
                     patching::copy_cell(out, clean_act, cell.pos, cell.head, corrupted.aligned);
                     return out;
                   }};
        logits = gather_readout(model.run_with_hooks(corrupted.tokens, {patch}), pr.corrupt_readout).unsqueeze(0);
      }
      grid.store(chunk, example_metrics(logits, pr.readout, clean_ref));
      done += k;
      report_progress(options, double(done) / total, "patching " + hook);
    }
  }
  aligner.finish(res);
  return res;
}

}  // namespace mechscope
