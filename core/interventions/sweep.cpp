// The sweep engine (see sweep.h).
#include "core/interventions/sweep.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <tuple>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "core/model/model.h"

namespace mechscope {

void check_cancel(const SweepOptions& o) {
  if (o.cancel && o.cancel->load()) throw Cancelled();
}

void report_progress(const SweepOptions& o, double f, const std::string& what) {
  if (o.progress) o.progress(f, what);
}

// Mean over kept examples of per-example values [..., E] -> [...].
at::Tensor mean_over(const at::Tensor& v, const at::Tensor& keep /*[E] bool*/) {
  if (!v.defined()) return v;
  at::Tensor w = keep.to(v.scalar_type());
  return (v * w).sum(-1) / w.sum().clamp_min(1);
}

at::Tensor examples_with_readout(const Readout& r) {
  return at::zeros({r.num_examples}, r.example.options()).index_add_(0, r.example, at::ones_like(r.example)).gt(0);
}

MetricTable table_of(const ExampleMetrics& m, const at::Tensor& keep) {
  return {mean_over(m.prob, keep), mean_over(m.logit_diff, keep), mean_over(m.correct, keep), mean_over(m.kl, keep)};
}

// Rough bytes one example of one variant needs while layers run (activations of the largest layer).
int64_t bytes_per_example(const LanguageModel& model, int64_t L, bool states) {
  const ModelConfig& c = model.config();
  int64_t per_pos = 24 * c.d_model + 4 * c.padded_vocab_size() / std::max<int64_t>(L, 1);
  int64_t worst = 0;
  for (int64_t l = 0; l < model.n_layers(); ++l) worst = std::max(worst, model.block(l).mixer().sweep_floats_per_token(L, states));
  return 4 * L * (per_pos + worst + 4 * c.d_intermediate);
}

// Variants per stacked forward: under the memory budget, and no more than about kStackTokens tokens. Stacking pays
// for per-operation overhead (most of all in patching's partial runs, whose suffixes are short); past a few
// thousand tokens a larger stack only adds memory traffic on a CPU. Measured on the demo models (32 x 64-token
// examples, docs/benchmarks.md): 8192 against 2048 made residual patching 1.2-1.3x faster and left the
// head-ablation sweeps as they were; 16384 gained nothing more. (Before freed tensors stayed in the heap,
// runtime.cpp, page faults made any stack slower.) A chunk holds at least one variant per intra-op thread when the
// budget allows, so that run_example_parts has a part for each: with 128 examples of 64 tokens the token cap alone
// gave one-variant chunks, run one after the other on intra-op threads (docs/benchmarks.md).
int64_t chunk_size(const SweepOptions& o, int64_t per_variant_bytes, int64_t total, int64_t tokens_per_variant) {
  const int64_t budget = std::max<int64_t>(o.memory_budget_mb, 1) << 20;
  const int64_t by_memory = budget / std::max<int64_t>(per_variant_bytes, 1);
  const int64_t by_tokens = std::max<int64_t>(kStackTokens / std::max<int64_t>(tokens_per_variant, 1), at::get_num_threads());
  return std::clamp<int64_t>(std::min(by_memory, by_tokens), 1, std::max<int64_t>(total, 1));
}

std::pair<at::Tensor, at::Tensor> readout_rows(const Readout& readout, int64_t B) {
  const int64_t R = readout.size();
  auto ex = readout.example.to(at::kCPU).contiguous(), pos = readout.position.to(at::kCPU).contiguous();
  const int64_t* e = ex.data_ptr<int64_t>();
  const int64_t* p = pos.data_ptr<int64_t>();
  std::vector<std::vector<int64_t>> per(B);
  std::vector<int64_t> slot(R);
  for (int64_t i = 0; i < R; ++i) {
    slot[i] = static_cast<int64_t>(per[e[i]].size());
    per[e[i]].push_back(p[i]);
  }
  size_t P = 1;
  for (const auto& v : per) P = std::max(P, v.size());
  at::Tensor rows = at::zeros({B, static_cast<int64_t>(P)}, at::kLong);
  auto acc = rows.accessor<int64_t, 2>();
  for (int64_t b = 0; b < B; ++b)
    for (size_t j = 0; j < P; ++j) acc[b][j] = per[b].empty() ? 0 : per[b][std::min(j, per[b].size() - 1)];
  return {rows.to(readout.position.device()), at::tensor(slot, at::kLong).to(readout.position.device())};
}

ReadoutSpans::ReadoutSpans(const Readout& r, int64_t E) : start(E + 1, 0) {
  const at::Tensor ex = r.example.to(at::kCPU, at::kLong).contiguous();
  const int64_t* e = ex.data_ptr<int64_t>();
  for (int64_t i = 0; i < ex.numel(); ++i) {
    if (e[i] < 0 || e[i] >= E || (i > 0 && e[i] < e[i - 1])) {
      sorted = false;
      return;
    }
    ++start[e[i] + 1];
  }
  for (int64_t i = 0; i < E; ++i) start[i + 1] += start[i];
}

std::pair<at::Tensor, at::Tensor> ReadoutSpans::of(const Readout& r, const at::Tensor& slot, int64_t b, int64_t e) const {
  const int64_t r0 = start[b], n = start[e] - r0;
  return {r.example.narrow(0, r0, n) - b, slot.narrow(0, r0, n)};
}

// The readout logits of rows [b, e) of a variant-major stack of B-example variants, `out` [e - b, P, d] being
// their residuals at the readout rows (`slot`: each readout's column there): variant by variant, in readout order,
// so consecutive parts concatenate to [K * R, V]. Needs spans.sorted.
at::Tensor unembed_part_readouts(LanguageModel& model, const at::Tensor& out, int64_t b, int64_t e, int64_t B,
                                 const ReadoutSpans& spans, const Readout& readout, const at::Tensor& slot) {
  std::vector<at::Tensor> picked;
  for (int64_t v = b / B; v * B < e; ++v) {
    const int64_t lo = std::max(b, v * B) - v * B, hi = std::min(e, (v + 1) * B) - v * B;  // variant v's examples
    auto [ex, sl] = spans.of(readout, slot, lo, hi);
    picked.push_back(out.index({ex + (v * B + lo - b), sl}));
  }
  return model.unembed(picked.size() == 1 ? picked[0] : at::cat(picked));
}

// The whole-batch twin, for a readout in another order: residuals at the readout rows [K * B, P, d] -> [K, R, V].
at::Tensor unembed_all_readouts(LanguageModel& model, const at::Tensor& out, int64_t K, int64_t B,
                                const Readout& readout, const at::Tensor& slot) {
  const at::Tensor r = out.view({K, B, out.size(1), out.size(2)});
  return model.unembed(r.index({at::indexing::Slice(), readout.example, slot}));
}

// Runs the stacked residuals [K*B, L, d] (variant-major) from block `from` to the end and returns logits at the
// readout [K, R, V]; the last block runs at the readout rows only (forward_blocks_at). `rows_of(b, e)` gives rows
// [b, e) of the stack, so a caller may build them inside the parts.
at::Tensor finish_and_read(LanguageModel& model, int64_t from, int64_t K, int64_t B, const Readout& readout,
                           const at::Device& device, const at::Tensor& embedding,
                           const std::function<at::Tensor(int64_t, int64_t)>& rows_of) {
  auto [rows, slot] = readout_rows(readout, B);
  const at::Tensor stacked_rows = rows.repeat({K, 1});
  const ReadoutSpans spans(readout, B);
  // Every row of the stack is independent work. A chunk with fewer variants than threads (one first-layer head)
  // gets no parts of variants; its rows then run as parts side by side here (inside a part: the whole stack),
  // each unembedding its own readouts (variant by variant, in readout order: the parts concatenate to [K*R, V]).
  at::Tensor r = run_example_parts(K * B, device, nullptr, [&](int64_t b, int64_t e, HookContext*) {
    // The embedding of rows [b, e) of the variant-major stack: example (row mod B)'s.
    const at::Tensor emb = embedding.defined() ? embedding.index_select(0, at::arange(b, e, at::kLong).remainder(B).to(embedding.device()))
                                               : embedding;
    at::Tensor out = model.forward_blocks_at(from, rows_of(b, e), stacked_rows.narrow(0, b, e - b), nullptr, emb);  // [e - b, P, d]
    return spans.sorted ? unembed_part_readouts(model, out, b, e, B, spans, readout, slot) : out;
  });
  return spans.sorted ? r.view({K, readout.size(), r.size(-1)}) : unembed_all_readouts(model, r, K, B, readout, slot);
}

}  // namespace mechscope
