// Dispatch of the readout metrics' CPU kernel (see metric_ops.h).
#include "kernels/binding/metric_ops.h"

#include <ATen/ATen.h>

#include "kernels/binding/scan_ops.h"
#include "kernels/cpu/scan_params.h"

namespace mechscope::kernels {

namespace {

// Logits the CPU kernels take: fast paths on, float32 on the CPU, at least min_dim dimensions, two tokens or more.
bool kernel_takes(const at::Tensor& logits, int64_t min_dim) {
  return fast_scan_enabled() && logits.defined() && logits.device().is_cpu() && logits.scalar_type() == at::kFloat &&
         logits.dim() >= min_dim && logits.size(-1) >= 2;
}

}  // namespace

bool readout_metrics(const at::Tensor& logits_in, const at::Tensor& target_in, const at::Tensor& ref_p_in,
                     const at::Tensor& ref_ne_in, at::Tensor& prob, at::Tensor& logit_diff, at::Tensor& correct,
                     at::Tensor& kl) {
  // No autograd through the kernel: a caller differentiating a metric gets the ATen path.
  if (wants_grad({logits_in, ref_p_in, ref_ne_in}) || !kernel_takes(logits_in, 2)) return false;
  const int64_t V = logits_in.size(-1), R = logits_in.size(-2), rows = logits_in.numel() / V;
  if (!target_in.defined() || target_in.dim() != 1 || target_in.size(0) != R || !target_in.device().is_cpu() ||
      R == 0)
    return false;
  at::Tensor target = target_in.to(at::kLong).contiguous();
  const int64_t* tp = target.data_ptr<int64_t>();
  for (int64_t i = 0; i < R; ++i)
    if (tp[i] < 0 || tp[i] >= V) return false;  // the ATen path raises its error
  const bool with_ref = ref_p_in.defined();
  at::Tensor ref_p, ref_ne;
  int64_t ref_rows = 0;
  if (with_ref) {
    if (!ref_ne_in.defined() || !ref_p_in.device().is_cpu() || ref_p_in.scalar_type() != at::kFloat ||
        ref_ne_in.scalar_type() != at::kFloat || ref_p_in.dim() < 2 || ref_p_in.size(-1) != V ||
        ref_p_in.size(-2) != R || ref_ne_in.numel() * V != ref_p_in.numel())
      return false;
    if (ref_p_in.numel() == R * V) ref_rows = R;                            // one reference for every variant
    else if (ref_p_in.sizes() == logits_in.sizes()) ref_rows = rows;        // one per variant
    else return false;
    ref_p = ref_p_in.contiguous();
    ref_ne = ref_ne_in.contiguous();
  }
  at::Tensor logits = logits_in.contiguous();
  auto out_shape = logits.sizes().vec();
  out_shape.pop_back();
  at::Tensor o_prob = at::empty(out_shape, logits.options()), o_ld = at::empty(out_shape, logits.options()),
             o_correct = at::empty(out_shape, logits.options()), o_kl;
  if (with_ref) o_kl = at::empty(out_shape, logits.options());
  ReadoutMetricParams p;
  p.rows = rows;
  p.vocab = V;
  p.targets = R;
  p.ref_rows = ref_rows;
  p.logits = logits.data_ptr<float>();
  p.target = tp;
  p.ref_p = with_ref ? ref_p.data_ptr<float>() : nullptr;
  p.ref_ne = with_ref ? ref_ne.data_ptr<float>() : nullptr;
  p.prob = o_prob.data_ptr<float>();
  p.logit_diff = o_ld.data_ptr<float>();
  p.correct = o_correct.data_ptr<float>();
  p.kl = with_ref ? o_kl.data_ptr<float>() : nullptr;
  if (!readout_metrics_cpu(p)) return false;
  prob = o_prob;
  logit_diff = o_ld;
  correct = o_correct;
  kl = o_kl;
  return true;
}

bool readout_reference(const at::Tensor& logits_in, at::Tensor& p, at::Tensor& neg_entropy) {
  if (wants_grad({logits_in}) || !kernel_takes(logits_in, 1)) return false;
  const at::Tensor logits = logits_in.contiguous();
  const int64_t V = logits.size(-1), rows = logits.numel() / V;
  auto ne_shape = logits.sizes().vec();
  ne_shape.pop_back();
  at::Tensor o_p = at::empty(logits.sizes(), logits.options()), o_ne = at::empty(ne_shape, logits.options());
  if (!readout_reference_cpu(rows, V, logits.data_ptr<float>(), o_p.data_ptr<float>(), o_ne.data_ptr<float>()))
    return false;
  p = o_p;
  neg_entropy = o_ne;
  return true;
}

}  // namespace mechscope::kernels
