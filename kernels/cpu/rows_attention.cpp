// Causal attention at chosen query rows with rotary applied in place (RowsAttentionParams, scan_params.h).
// The batched head-ablation sweep runs its last block at the readout rows only; there the ATen path spent more
// on its dozen small ops (rotary tables and copies, the causal mask, a batch loop of tiny matmuls, masked_fill,
// softmax) than on arithmetic. Here one pass per (example, key/value head): rotate its keys once into a
// transposed scratch, then per query row the scores (16-key tiles, accumulators in registers), the softmax and
// the weighted sum of values (64-feature blocks). Reference twin: AttentionImpl::forward's ATen
// expressions (Kernels.RowsAttentionEqualsTheReferencePath in tests/kernels/test_scan_kernels.cpp).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include <ATen/Parallel.h>

#include "kernels/cpu/scan_params.h"
#include "kernels/cpu/simd.h"

namespace mechscope::kernels {

namespace {

// Eight floats; GCC lowers the arithmetic to one AVX2 register (x86-64-v3 clone) or two SSE ones (baseline).
// The helpers are always inlined into the clones (MECHSCOPE_INLINE), so no vector crosses a call, which
// -Wpsabi warns of for the baseline.
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float v8 __attribute__((vector_size(32)));
MECHSCOPE_INLINE v8 load8(const float* p) {
  v8 r;
  std::memcpy(&r, p, sizeof r);
  return r;
}
MECHSCOPE_INLINE void store8(float* p, v8 x) { std::memcpy(p, &x, sizeof x); }
MECHSCOPE_INLINE v8 splat8(float x) { return v8{x, x, x, x, x, x, x, x}; }

// s[0 .. 16 NT) = <qr, key j> for the 16 NT keys whose transposed features start at kt (feature i at kt + i * ldk).
template <int NT>
MECHSCOPE_INLINE void score_tiles(const float* qr, const float* kt, int64_t ldk, int64_t D, float* s) {
  v8 acc[2 * NT];
  for (int t = 0; t < 2 * NT; ++t) acc[t] = splat8(0.f);
  for (int64_t i = 0; i < D; ++i) {
    const v8 q = splat8(qr[i]);
    const float* row = kt + i * ldk;
    for (int t = 0; t < 2 * NT; ++t) acc[t] += q * load8(row + 8 * t);
  }
  for (int t = 0; t < 2 * NT; ++t) store8(s + 8 * t, acc[t]);
}

// z[0 .. 8 NV) = sum_{j < m} w_j v[j][0 .. 8 NV) (row j at v + j * vsl).
template <int NV>
MECHSCOPE_INLINE void weighted_values(const float* w, const float* v, int64_t vsl, int64_t m, float* z) {
  v8 acc[NV];
  for (int t = 0; t < NV; ++t) acc[t] = splat8(0.f);
  for (int64_t j = 0; j < m; ++j) {
    const v8 wj = splat8(w[j]);
    const float* vj = v + j * vsl;
    for (int t = 0; t < NV; ++t) acc[t] += wj * load8(vj + 8 * t);
  }
  for (int t = 0; t < NV; ++t) store8(z + 8 * t, acc[t]);
}

// Rotates x (head_dim D) at the angles c, s (rd / 2 each) into out; features from rd on are copied.
MECHSCOPE_INLINE void rotate(const float* x, const float* c, const float* s, int64_t D, int64_t rd, bool interleaved, float* out,
                   int64_t out_stride) {
  const int64_t half = rd / 2;
  if (!interleaved) {
    for (int64_t i = 0; i < half; ++i) {
      out[i * out_stride] = x[i] * c[i] - x[half + i] * s[i];
      out[(half + i) * out_stride] = x[half + i] * c[i] + x[i] * s[i];
    }
  } else {
    for (int64_t i = 0; i < half; ++i) {
      out[2 * i * out_stride] = x[2 * i] * c[i] - x[2 * i + 1] * s[i];
      out[(2 * i + 1) * out_stride] = x[2 * i + 1] * c[i] + x[2 * i] * s[i];
    }
  }
  for (int64_t i = rd; i < D; ++i) out[i * out_stride] = x[i];
}

// One example and key/value head: its query heads' rows. Scratch: kt [D, ldk], s [ldk], qr [D]. False when a
// score is not finite (-ffast-math, this file's flags, assumes finite values: tested on the bits).
MECHSCOPE_KERNEL_CLONES bool example_head(const RowsAttentionParams& p, int64_t e, int64_t g, float* kt, int64_t ldk,
                                          float* s, float* qr) {
  const int64_t D = p.head_dim, rd = p.rotary_dim, half = rd / 2, P = p.rows, group = p.heads / p.kv_heads;
  const int64_t* qpos = p.qpos + (p.qpos_rows == 1 ? 0 : e) * P;
  int64_t n = 0;  // keys any row of this example reads
  for (int64_t r = 0; r < P; ++r) n = std::max(n, qpos[r] + 1);
  const int64_t npad = (n + 15) / 16 * 16;
  const float* k = p.k + e * p.k_sb + g * p.k_sh;
  const float* v = p.v + e * p.v_sb + g * p.v_sh;
  for (int64_t j = 0; j < n; ++j)
    rotate(k + j * p.k_sl, rd ? p.cos + j * half : nullptr, rd ? p.sin + j * half : nullptr, D, rd, p.interleaved,
           kt + j, ldk);
  for (int64_t i = 0; i < D; ++i)
    for (int64_t j = n; j < npad; ++j) kt[i * ldk + j] = 0.f;  // the last tile's columns past the keys
  for (int64_t h = g * group; h < (g + 1) * group; ++h) {
    for (int64_t r = 0; r < P; ++r) {
      const int64_t t = qpos[r], m = t + 1;
      rotate(p.q + e * p.q_sb + r * p.q_sp + h * p.q_sh, rd ? p.cos + t * half : nullptr, rd ? p.sin + t * half : nullptr,
             D, rd, p.interleaved, qr, 1);
      int64_t j0 = 0;
      for (; j0 + 64 <= m; j0 += 64) score_tiles<4>(qr, kt + j0, ldk, D, s + j0);
      switch ((m - j0 + 15) / 16) {
        case 1: score_tiles<1>(qr, kt + j0, ldk, D, s + j0); break;
        case 2: score_tiles<2>(qr, kt + j0, ldk, D, s + j0); break;
        case 3: score_tiles<3>(qr, kt + j0, ldk, D, s + j0); break;
        case 4: score_tiles<4>(qr, kt + j0, ldk, D, s + j0); break;
        default: break;
      }
      uint32_t nonfinite = 0;
      float mx = -std::numeric_limits<float>::max();
#pragma omp simd reduction(max : mx) reduction(| : nonfinite)
      for (int64_t j = 0; j < m; ++j) {
        const float x = s[j] * p.scale;
        uint32_t bits;
        std::memcpy(&bits, &x, sizeof bits);
        nonfinite |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
        s[j] = x;
        mx = x > mx ? x : mx;
      }
      if (nonfinite) return false;
      float sum = 0.f;
#pragma omp simd reduction(+ : sum)
      for (int64_t j = 0; j < m; ++j) {
        s[j] = std::exp(s[j] - mx);
        sum += s[j];
      }
#pragma omp simd
      for (int64_t j = 0; j < m; ++j) s[j] /= sum;
      float* z = p.z + ((e * P + r) * p.heads + h) * D;
      int64_t i0 = 0;
      for (; i0 + 64 <= D; i0 += 64) weighted_values<8>(s, v + i0, p.v_sl, m, z + i0);
      for (; i0 + 16 <= D; i0 += 16) weighted_values<2>(s, v + i0, p.v_sl, m, z + i0);
      for (; i0 + 8 <= D; i0 += 8) weighted_values<1>(s, v + i0, p.v_sl, m, z + i0);
      for (; i0 < D; ++i0) {
        float a = 0.f;
        for (int64_t j = 0; j < m; ++j) a += s[j] * v[j * p.v_sl + i0];
        z[i0] = a;
      }
    }
  }
  return true;
}

}  // namespace

bool rows_attention_cpu(const RowsAttentionParams& p) {
  std::atomic<bool> ok{true};
  const int64_t ldk = std::max<int64_t>(16, (p.keys + 15) / 16 * 16);
  at::parallel_for(0, p.batch * p.kv_heads, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> kt(p.head_dim * ldk), s(ldk), qr(p.head_dim);
    for (int64_t i = begin; i < end && ok.load(std::memory_order_relaxed); ++i)
      if (!example_head(p, i / p.kv_heads, i % p.kv_heads, kt.data(), ldk, s.data(), qr.data())) ok = false;
  });
  return ok.load();
}

}  // namespace mechscope::kernels
