// Readout positions and the metrics of spec §4 (answer probability, logit difference, accuracy, KL).
#include <algorithm>
#include <limits>
#include <vector>
#include <stdexcept>

#include <ATen/ATen.h>

#include "core/interventions/metrics.h"
#include "kernels/binding/metric_ops.h"
#include "kernels/binding/scan_ops.h"

namespace mechscope {

namespace {

Readout make_readout(const Batch& batch, bool last_only) {
  if (!batch.targets.defined()) throw std::invalid_argument("readout: the batch has no targets");
  at::Tensor labelled = batch.targets.ne(-100);  // [B, L]
  Readout r;
  r.num_examples = batch.size();
  if (last_only && batch.readout.defined()) {  // the batch names each example's readout (a dataset's answer start)
    at::Tensor pos = batch.readout.to(batch.targets.device());
    at::Tensor has = pos.ge(0);
    r.example = at::arange(batch.size(), batch.targets.options()).masked_select(has);
    r.position = pos.masked_select(has);
  } else if (last_only) {
    const int64_t L = labelled.size(1);
    // Index of the last labelled position: argmax of position * labelled (-1 where none).
    at::Tensor pos = at::arange(L, batch.targets.options()).unsqueeze(0).expand_as(batch.targets);
    at::Tensor last = at::where(labelled, pos, at::full_like(pos, -1)).amax(1);  // [B]
    at::Tensor has = last.ge(0);
    r.example = at::arange(batch.size(), batch.targets.options()).masked_select(has);
    r.position = last.masked_select(has);
  } else {
    at::Tensor idx = labelled.nonzero();  // [R, 2], row-major: example by example
    r.example = idx.select(1, 0).contiguous();
    r.position = idx.select(1, 1).contiguous();
  }
  r.target = batch.targets.index({r.example, r.position});
  if (batch.wrong.defined()) r.wrong = batch.wrong.index({r.example, r.position});  // [R, W]
  r.multiple_choice = batch.multiple_choice && batch.wrong.defined();
  if (r.size() == 0) throw std::invalid_argument("readout: no example has a labelled answer position");
  return r;
}

}  // namespace

Readout Readout::all_labelled(const Batch& batch) { return make_readout(batch, false); }
Readout Readout::last_labelled(const Batch& batch) { return make_readout(batch, true); }

at::Tensor gather_readout(const at::Tensor& per_position, const Readout& readout) {
  return per_position.index({readout.example, readout.position});
}

MetricReference metric_reference(const at::Tensor& reference_logits) {
  MetricReference r;
  if (!reference_logits.defined()) return r;
  if (kernels::readout_reference(reference_logits, r.p, r.neg_entropy)) return r;
  at::Tensor logp = at::log_softmax(reference_logits.to(at::kFloat), -1);
  r.p = logp.exp();
  r.neg_entropy = (r.p * logp).sum(-1);
  return r;
}

ExampleMetrics example_metrics(const at::Tensor& logits, const Readout& readout, const at::Tensor& reference) {
  return example_metrics(logits, readout, metric_reference(reference));
}

namespace {

struct ReadoutValues {
  at::Tensor prob, logit_diff, correct, kl;  // [..., R]
};

ReadoutValues finish_kl(ReadoutValues v, const at::Tensor& logp, const MetricReference& reference);

// The reference path (and the fallback of the CPU kernel, kernels/binding/metric_ops.h).
ReadoutValues readout_values_aten(const at::Tensor& logits, const Readout& readout, const MetricReference& reference) {
  const int64_t R = readout.size();
  at::Tensor logp = at::log_softmax(logits, -1);
  std::vector<int64_t> tshape(logits.dim() - 2, 1);
  tshape.push_back(R);
  tshape.push_back(1);
  at::Tensor target = readout.target.view(tshape).expand(
      [&] { auto s = logits.sizes().vec(); s.back() = 1; return s; }());
  ReadoutValues v;
  at::Tensor answer_logit = logits.gather(-1, target).squeeze(-1);
  v.prob = logp.gather(-1, target).squeeze(-1).exp();
  at::Tensor others = logits.scatter(-1, target, -std::numeric_limits<float>::infinity());
  v.logit_diff = answer_logit - std::get<0>(others.max(-1));
  if (readout.wrong.defined() && readout.wrong.size(-1) > 0) {  // against the given wrong answers where there are some
    const float inf = std::numeric_limits<float>::infinity();
    auto s = logits.sizes().vec();
    s.back() = readout.wrong.size(-1);
    at::Tensor w = readout.wrong.to(logits.device());
    std::vector<int64_t> wshape(logits.dim() - 2, 1);
    wshape.push_back(R);
    wshape.push_back(w.size(-1));
    at::Tensor ids = w.view(wshape).expand(s);
    at::Tensor given = at::where(ids.ge(0), logits.gather(-1, ids.clamp_min(0)), at::full({}, -inf, logits.options()));
    at::Tensor has = w.ge(0).any(-1).view([&] { auto t = wshape; t.back() = 1; t.pop_back(); return t; }());
    v.logit_diff = at::where(has.expand_as(v.logit_diff), answer_logit - std::get<0>(given.max(-1)), v.logit_diff);
    if (readout.multiple_choice) {  // the answer above every candidate (a readout without candidates: the argmax)
      v.correct = at::where(has.expand_as(v.logit_diff), v.logit_diff.gt(0),
                            std::get<1>(logits.max(-1)).eq(target.squeeze(-1)))
                      .to(at::kFloat);
      return finish_kl(v, logp, reference);
    }
  }
  // max's index is the first maximal one, as argmax's (both documented so), at half argmax's cost here.
  v.correct = std::get<1>(logits.max(-1)).eq(target.squeeze(-1)).to(at::kFloat);
  return finish_kl(v, logp, reference);
}

// KL(ref || these) = sum p_ref log p_ref - sum p_ref log p (>= 0; rounding may dip below)
ReadoutValues finish_kl(ReadoutValues v, const at::Tensor& logp, const MetricReference& reference) {
  if (reference.p.defined()) {
    v.kl = (reference.neg_entropy - (reference.p * logp).sum(-1)).clamp_min(0);
    // A reference with leading ones ([1, R, V]) against one variant's logits [R, V]: broadcasting added a dimension.
    if (!v.kl.sizes().equals(v.prob.sizes()) && v.kl.numel() == v.prob.numel()) v.kl = v.kl.view(v.prob.sizes());
  }
  return v;
}

}  // namespace

ExampleMetrics example_metrics(const at::Tensor& logits_in, const Readout& readout, const MetricReference& reference) {
  // logits [..., R, V]; per-readout values [..., R] then per-example means [..., E].
  at::Tensor logits = logits_in.to(at::kFloat);
  const int64_t R = readout.size(), E = readout.num_examples;
  if (logits.dim() < 2 || logits.size(-2) != R)
    throw std::invalid_argument("metrics: expected readout logits [..., " + std::to_string(R) + ", vocab]");
  ReadoutValues v;
  if (readout.wrong.defined() ||  // the kernel knows no given wrong answers
      !kernels::readout_metrics(logits, readout.target, reference.p, reference.neg_entropy, v.prob, v.logit_diff,
                                v.correct, v.kl))
    v = readout_values_aten(logits, readout, reference);
  const at::Tensor &prob = v.prob, &logit_diff = v.logit_diff, &correct = v.correct, &kl = v.kl;
  if (prob.device().is_cpu() && !kernels::wants_grad({prob, logit_diff, kl})) {  // per-example means in one loop (six small ATen ops cost more than the metrics)
    at::Tensor ex = readout.example.to(at::kLong).contiguous();
    const int64_t* e = ex.data_ptr<int64_t>();
    std::vector<float> counts(E, 0.f);
    for (int64_t r = 0; r < R; ++r) {
      if (e[r] < 0 || e[r] >= E) throw std::invalid_argument("metrics: a readout names example " + std::to_string(e[r]) +
                                                            " of " + std::to_string(E));
      counts[e[r]] += 1.f;
    }
    auto shape = prob.sizes().vec();
    shape.back() = E;
    const int64_t rows = prob.numel() / std::max<int64_t>(R, 1);
    ExampleMetrics out;
    at::Tensor* outs[4] = {&out.prob, &out.logit_diff, &out.correct, &out.kl};
    const at::Tensor* ins[4] = {&prob, &logit_diff, &correct, &kl};
    for (int i = 0; i < 4; ++i) {
      if (!ins[i]->defined()) continue;
      at::Tensor in = ins[i]->to(at::kFloat).contiguous();
      *outs[i] = at::zeros(shape, in.options());
      const float* src = in.data_ptr<float>();
      float* dst = outs[i]->data_ptr<float>();
      for (int64_t k = 0; k < rows; ++k)
        for (int64_t r = 0; r < R; ++r) dst[k * E + e[r]] += src[k * R + r];
      for (int64_t k = 0; k < rows; ++k)
        for (int64_t j = 0; j < E; ++j) dst[k * E + j] /= std::max(counts[j], 1.f);
    }
    return out;
  }
  // Per-example means, the four metrics in one index_add.
  at::Tensor counts = at::zeros({E}, logits.options()).index_add_(0, readout.example, at::ones({R}, logits.options()));
  counts = counts.clamp_min(1);
  at::Tensor all = at::stack({prob, logit_diff, correct, kl.defined() ? kl : at::zeros_like(prob)});  // [4, ..., R]
  auto shape = all.sizes().vec();
  shape.back() = E;
  auto m = (at::zeros(shape, all.options()).index_add_(-1, readout.example, all) / counts).unbind(0);
  return {m[0], m[1], m[2], kl.defined() ? m[3] : at::Tensor()};
}

}  // namespace mechscope
