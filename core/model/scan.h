// SSM scans of spec §1 as plain LibTorch tensor ops: the Mamba1 selective scan, Mamba2's chunked SSD,
// their literal step-by-step reference twins, state-carrying recurrences for the state hook, and the
// implicit attention matrices of spec §5. Differentiable (autograd) and device-agnostic.
// Must not: know about modules, hooks or configs. The fast kernels (kernels/) are tested against these.
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

namespace mechscope {

/// Stable segment sum: x [..., T] -> [..., T, T] with out[..., t, s] = sum_{k=s+1..t} x_k for s <= t, -inf above
/// the diagonal (a cumulative sum of masked copies, never a difference of cumulative sums).
at::Tensor segsum(const at::Tensor& x);

/// Diagonal linear recurrence along dim 1: h_t = dA_t * h_{t-1} + dBx_t, h_{-1} = h0 (zeros if undefined).
/// dA broadcastable to dBx [batch, L, ...]. Returns every state [batch, L, ...].
at::Tensor linear_scan_sequential(const at::Tensor& dA, const at::Tensor& dBx, const at::Tensor& h0 = {});

/// The same recurrence where, at elements with `replaced` set, the state is `values` instead and the scan continues
/// from it. `replaced` and `values` have dBx's shape. This is what replacing `ssm.hook_state` means (spec §2).
/// With `prior` (the unreplaced states), positions before the first replacement are copied from it unchanged.
at::Tensor linear_scan_with_replacement(const at::Tensor& dA, const at::Tensor& dBx, const at::Tensor& replaced,
                                        const at::Tensor& values, const at::Tensor& prior = {});

// ---- Mamba1 (selective scan). Shapes: x, dt [batch, L, D]; A [D, N]; B, C [batch, L, N]; Dskip [D]. ----

/// Decay exp(dt*A) [batch, L, D, N] and input dt*x*B [batch, L, D, N] of the Mamba1 recurrence.
void mamba1_discretize(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& A, const at::Tensor& B,
                       at::Tensor& dA, at::Tensor& dBx);
/// y [batch, L, D] = C_t . h_t + Dskip * x_t, the engine's path (vectorised discretisation, then one fused
/// multiply-add and one batched readout per step).
at::Tensor mamba1_scan(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& A, const at::Tensor& B,
                       const at::Tensor& C, const at::Tensor& Dskip);
/// Literal per-step recurrence (selective_scan_ref), the reference twin.
at::Tensor mamba1_scan_ref(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& A, const at::Tensor& B,
                           const at::Tensor& C, const at::Tensor& Dskip);
/// Readout of given states [batch, L, D, N]: y = sum_n C h + Dskip x.
at::Tensor mamba1_readout(const at::Tensor& states, const at::Tensor& x, const at::Tensor& C, const at::Tensor& Dskip);

// ---- Mamba2 (SSD). Shapes: x [batch, L, H, P]; dt [batch, L, H]; A [H]; B, C [batch, L, G, N]; Dskip [H] or [H, P]. ----

/// Decay exp(dt*A) [batch, L, H, 1, 1] and input dt * x B^T [batch, L, H, P, N].
void mamba2_discretize(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& A, const at::Tensor& B,
                       at::Tensor& dA, at::Tensor& dBx);
/// Chunked SSD (ssd_minimal_discrete's algorithm, L padded up to a multiple of chunk). y [batch, L, H, P].
at::Tensor mamba2_ssd(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& A, const at::Tensor& B,
                      const at::Tensor& C, const at::Tensor& Dskip, int64_t chunk);
/// Literal per-step recurrence, the reference twin.
at::Tensor mamba2_scan_ref(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& A, const at::Tensor& B,
                           const at::Tensor& C, const at::Tensor& Dskip);
/// Readout of given states [batch, L, H, P, N]: y = h C + Dskip x.
at::Tensor mamba2_readout(const at::Tensor& states, const at::Tensor& x, const at::Tensor& C, const at::Tensor& Dskip);

// ---- Implicit attention (spec §5) ----

/// Mamba2: M[b, h, t, s] = (C_t . B_s) exp(A_h sum_{k=s+1..t} dt_k) dt_s for s <= t, plus D_h on the diagonal
/// (mean over P when D has a head dimension). [batch, H, L, L].
at::Tensor mamba2_implicit_attention(const at::Tensor& dt, const at::Tensor& A, const at::Tensor& B,
                                     const at::Tensor& C, const at::Tensor& Dskip);
/// Mamba1 per channel: alpha[b, d, t, s] = sum_n C_t[n] exp(sum_{k=s+1..t} dt_k[d] A[d, n]) dt_s[d] B_s[n].
/// [batch, D, L, L], accumulated over state dims and channel blocks of at most `max_elements` temporaries.
at::Tensor mamba1_implicit_attention(const at::Tensor& dt, const at::Tensor& A, const at::Tensor& B,
                                     const at::Tensor& C, int64_t max_elements = int64_t(1) << 26);

}  // namespace mechscope
