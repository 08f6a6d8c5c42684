// The readout metrics' fast path (kernels/cpu/readout_metrics.cpp): shape and dtype checks and dispatch.
// core/interventions/metrics.cpp calls it first and keeps its ATen expressions as the reference and fallback.
// Must not: include core.
#pragma once

#include <ATen/core/Tensor.h>

namespace mechscope::kernels {

/// Per-row metrics of spec §4 for float32 CPU logits [..., R, V] with answers `target` [R], and the reference
/// side of the KL (`ref_p` [..., R, V] of the logits' shape or [R, V] with leading ones, `ref_ne` its sum p log p;
/// both undefined: no KL). On success fills prob, logit_diff, correct and kl (undefined without a reference),
/// each [..., R], and returns true. Returns false, touching nothing, when the fast path cannot take the input:
/// another device or dtype, a non-finite logit, fewer than two tokens, a target out of range, a reference of
/// another shape, an input that wants a gradient (the kernel has no backward), or the fast paths turned off
/// (MECHSCOPE_FAST_SCAN=0).
bool readout_metrics(const at::Tensor& logits, const at::Tensor& target, const at::Tensor& ref_p,
                     const at::Tensor& ref_ne, at::Tensor& prob, at::Tensor& logit_diff, at::Tensor& correct,
                     at::Tensor& kl);

/// The reference side of the KL for float32 CPU logits [..., V]: p = softmax [..., V] and its sum p log p [...].
/// Returns false, touching nothing, on the same inputs as readout_metrics declines (the caller takes the ATen path).
bool readout_reference(const at::Tensor& logits, at::Tensor& p, at::Tensor& neg_entropy);

}  // namespace mechscope::kernels
