// The rows-only causal attention's fast path (kernels/cpu/rows_attention.cpp): checks and dispatch.
// core/model/mixers/attention.cpp (AttentionImpl::forward) calls it for a block run at chosen query rows and keeps
// its ATen expressions as the reference and fallback. Must not: include core.
#pragma once

#include <ATen/core/Tensor.h>

namespace mechscope::kernels {

/// Causal attention of the queries q [b, P, H, D] at positions qpos ([1 or b, P], each in [0, Lk)) over the keys
/// and values k, v [b, Lk, Hkv, D] at positions 0..Lk-1 (H a multiple of Hkv), q and k not yet rotated: rotary
/// over the first rotary_dim features with the tables cos, sin [>= Lk, rotary_dim / 2] (row t: position t;
/// undefined when rotary_dim is 0), scores scaled by `scale`. Returns z [b, P, H, D], or an undefined tensor,
/// touching nothing, when the fast path cannot take the input: another device or dtype, a last stride other
/// than 1, a position out of range, a non-finite score, an input that wants a gradient, or the fast paths
/// turned off (MECHSCOPE_FAST_SCAN=0).
at::Tensor rows_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& qpos,
                          const at::Tensor& cos, const at::Tensor& sin, int64_t rotary_dim, bool interleaved,
                          double scale);

}  // namespace mechscope::kernels
