// Fast SSM scan ops (autograd-aware) over the kernels in kernels/cpu: the one place that checks shapes
// and dtypes and dispatches. core's SSM layers call these for float32 CPU tensors when enabled.
// Must not: include core.
#pragma once

#include <initializer_list>
#include <utility>

#include <ATen/core/Tensor.h>

namespace mechscope::kernels {

/// Whether the fast path is on (default on; MECHSCOPE_FAST_SCAN=0 in the environment turns it off).
bool fast_scan_enabled();
void set_fast_scan_enabled(bool on);
/// True when the fast path can take these tensors (float32 on the CPU, or on a CUDA device in a CUDA build)
/// and is enabled.
bool fast_scan_applies(const at::Tensor& x);
/// True when autograd is on and some defined tensor of `ts` requires a gradient: the inference-only fast paths
/// (which have no backward) step aside then.
bool wants_grad(std::initializer_list<at::Tensor> ts);
/// Whether this build has the CUDA kernels (MECHSCOPE_CUDA found a CUDA LibTorch and nvcc).
bool cuda_scan_built();

/// Mamba1: x, dt [B, L, D]; A [D, N]; B, C [B, L, N]; D [D] -> y [B, L, D]. Differentiable in all inputs.
at::Tensor selective_scan(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& A, const at::Tensor& B,
                          const at::Tensor& C, const at::Tensor& D);
/// Forward only, also returning the per-position states [B, L, D, N].
std::pair<at::Tensor, at::Tensor> selective_scan_states(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& A,
                                                        const at::Tensor& B, const at::Tensor& C, const at::Tensor& D);

/// Forward only, from the state h0 [B, D, N] before the first position instead of zeros (the rest of a sequence
/// whose beginning was run earlier). CPU float32 only.
at::Tensor selective_scan_from(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& A, const at::Tensor& B,
                               const at::Tensor& C, const at::Tensor& D, const at::Tensor& h0);

/// The SSMs' short convolution: depthwise, causal (K-1 zeros on the left), on channels-last x [B, L, C], with
/// weight [C, 1, K] or [C, K] (K <= 16) and bias [C] (may be undefined). Differentiable in all three. CPU
/// float32 only (the caller checks fast_scan_applies and the device); reference: at::conv1d.
at::Tensor causal_conv1d(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias);

/// Mamba2: x [B, L, H, P]; dt [B, L, H]; A [H]; B, C [B, L, G, N]; D [H] or [H, P] -> y [B, L, H, P].
at::Tensor ssd_scan(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& A, const at::Tensor& B,
                    const at::Tensor& C, const at::Tensor& D);
/// Forward only, also returning the per-position states [B, L, H, P, N].
std::pair<at::Tensor, at::Tensor> ssd_scan_states(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& A,
                                                  const at::Tensor& B, const at::Tensor& C, const at::Tensor& D);

}  // namespace mechscope::kernels
