// CPU depthwise causal convolution (the Mamba layers' short conv1d), forward and backward, on channels-last
// [B, L, C] tensors: the inner loops run over a block of contiguous channels, so they vectorise, and no
// transposes are needed around them. Work is split over (batch, channel block) in the forward and over channel
// blocks in the backward (dw and dbias then need no reduction across threads).
// Reference twin: at::conv1d with groups = C and padding K-1 (core/model/mixers/ssm_common.cpp, causal_conv).
#include <algorithm>
#include <vector>

#include <ATen/Parallel.h>

#include "kernels/cpu/scan_params.h"
#include "kernels/cpu/simd.h"

namespace mechscope::kernels {

namespace {
constexpr int64_t kBlock = 32;  // channels per task

// One output row of a full block (every tap inside the sequence): the KK taps unrolled.
template <int KK>
__attribute__((always_inline)) inline void full_row(const float* xt, int64_t sl, const float (*wt)[kBlock], const float* bias,
                                                    float* yr) {
#pragma omp simd
  for (int64_t j = 0; j < kBlock; ++j) {
    float a = bias[j];
    for (int k = 0; k < KK; ++k) a += wt[k][j] * xt[k * sl + j];
    yr[j] = a;
  }
}

MECHSCOPE_KERNEL_CLONES void fwd_tasks(const CausalConvParams& p, int64_t begin, int64_t end) {
  const int64_t L = p.seqlen, C = p.channels, K = p.width;
  const int64_t sl = p.x_stride_l > 0 ? p.x_stride_l : C, sb = p.x_stride_b > 0 ? p.x_stride_b : L * sl;
  const int64_t nblk = (C + kBlock - 1) / kBlock;
  float wt[16][kBlock];  // the block's taps, [k][channel]
  for (int64_t task = begin; task < end; ++task) {
    const int64_t b = task / nblk, c0 = (task % nblk) * kBlock, nc = std::min(kBlock, C - c0);
    for (int64_t k = 0; k < K; ++k)
      for (int64_t j = 0; j < kBlock; ++j) wt[k][j] = j < nc ? p.w[(c0 + j) * K + k] : 0.f;
    float bias[kBlock] = {};
    if (p.bias)
      for (int64_t j = 0; j < nc; ++j) bias[j] = p.bias[c0 + j];
    const float* xb = p.x + b * sb + c0;
    float* yb = p.y + b * L * C + c0;
    for (int64_t t = 0; t < L; ++t) {
      // Taps k0..K-1 read positions t-(K-1)+k >= 0; the sum runs over the taps inside each channel's lane (the
      // accumulator stays in a register), in tap order, bias first.
      const int64_t k0 = std::max<int64_t>(0, K - 1 - t);
      const float* xt = xb + (t - (K - 1) + k0) * sl;
      float* yr = yb + t * C;
      if (nc == kBlock && k0 == 0 && K <= 8) {  // a full block: taps unrolled, a vector per lane group
        switch (K) {
          case 1: full_row<1>(xt, sl, wt, bias, yr); break;
          case 2: full_row<2>(xt, sl, wt, bias, yr); break;
          case 3: full_row<3>(xt, sl, wt, bias, yr); break;
          case 4: full_row<4>(xt, sl, wt, bias, yr); break;  // the usual d_conv
          case 5: full_row<5>(xt, sl, wt, bias, yr); break;
          case 6: full_row<6>(xt, sl, wt, bias, yr); break;
          case 7: full_row<7>(xt, sl, wt, bias, yr); break;
          default: full_row<8>(xt, sl, wt, bias, yr); break;
        }
      } else {
        for (int64_t j = 0; j < nc; ++j) {
          float a = bias[j];
          for (int64_t k = k0; k < K; ++k) a += wt[k][j] * xt[(k - k0) * sl + j];
          yr[j] = a;
        }
      }
    }
  }
}

MECHSCOPE_KERNEL_CLONES void bwd_tasks(const CausalConvParams& p, const CausalConvGrads& g, int64_t begin, int64_t end) {
  const int64_t B = p.batch, L = p.seqlen, C = p.channels, K = p.width;
  float wt[16][kBlock];
  for (int64_t blk = begin; blk < end; ++blk) {
    const int64_t c0 = blk * kBlock, nc = std::min(kBlock, C - c0);
    for (int64_t k = 0; k < K; ++k)
      for (int64_t j = 0; j < kBlock; ++j) wt[k][j] = j < nc ? p.w[(c0 + j) * K + k] : 0.f;
    float dw[16][kBlock] = {}, db[kBlock] = {};
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t t = 0; t < L; ++t) {
        const float* dyr = g.dy + (b * L + t) * C + c0;
        for (int64_t j = 0; j < nc; ++j) db[j] += dyr[j];
        // y[t] used x[t - (K-1) + k] with tap k: dw[k] += dy[t] x[...]; dx[s] = sum_k w[k] dy[s + (K-1) - k].
        for (int64_t k = std::max<int64_t>(0, K - 1 - t); k < K; ++k) {
          const float* xr = p.x + (b * L + t - (K - 1) + k) * C + c0;
          for (int64_t j = 0; j < nc; ++j) dw[k][j] += dyr[j] * xr[j];
        }
        float acc[kBlock] = {};
        for (int64_t k = 0; k < K; ++k) {
          const int64_t s = t + (K - 1) - k;  // the output that read x[t] through tap k
          if (s >= L) continue;
          const float* dys = g.dy + (b * L + s) * C + c0;
          for (int64_t j = 0; j < nc; ++j) acc[j] += wt[k][j] * dys[j];
        }
        float* dxr = g.dx + (b * L + t) * C + c0;
        for (int64_t j = 0; j < nc; ++j) dxr[j] = acc[j];
      }
    }
    for (int64_t j = 0; j < nc; ++j) {
      for (int64_t k = 0; k < K; ++k) g.dw[(c0 + j) * K + k] = dw[k][j];
      if (g.dbias) g.dbias[c0 + j] = db[j];
    }
  }
}

}  // namespace

void causal_conv_fwd_cpu(const CausalConvParams& p) {
  const int64_t nblk = (p.channels + kBlock - 1) / kBlock;
  at::parallel_for(0, p.batch * nblk, 1, [&](int64_t begin, int64_t end) { fwd_tasks(p, begin, end); });
}

void causal_conv_bwd_cpu(const CausalConvParams& p, const CausalConvGrads& g) {
  const int64_t nblk = (p.channels + kBlock - 1) / kBlock;
  at::parallel_for(0, nblk, 1, [&](int64_t begin, int64_t end) { bwd_tasks(p, g, begin, end); });
}

}  // namespace mechscope::kernels
