// CPU Mamba1 selective scan, forward and backward. Work is split over (batch, block of channels) in the
// forward and over channel blocks in the backward (so dA and dD need no reduction; dB and dC get one partial
// buffer per block). The forward keeps a block's state transposed ([N][channels], see fwd_tasks); the
// backward keeps [channels][N] with the state loop innermost and contiguous, so the compiler vectorises it.
// Reference twin: core/model/scan.cpp mamba1_scan_ref.
#include <algorithm>
#include <cmath>
#include <vector>

#include <ATen/Parallel.h>

#include "kernels/cpu/scan_params.h"
#include "kernels/cpu/simd.h"

namespace mechscope::kernels {

namespace {
constexpr int64_t kBlock = 16;  // channels per task

// The forward keeps a block's state transposed, [N][kBlock]: each state index n updates the block's channels
// as one vector (dt, x and y are contiguous over channels), so the output needs no horizontal sum.
MECHSCOPE_KERNEL_CLONES void fwd_tasks(const SelectiveScanParams& p, int64_t begin, int64_t end) {
    const int64_t L = p.seqlen, D = p.dim, N = p.dstate;
    const int64_t nblk = (D + kBlock - 1) / kBlock;
    std::vector<float> h(N * kBlock), a(N * kBlock), At(N * kBlock);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / nblk, d0 = (task % nblk) * kBlock, nd = std::min(kBlock, D - d0);
      std::fill(h.begin(), h.end(), 0.f);
      if (p.h0)
        for (int64_t j = 0; j < nd; ++j)
          for (int64_t n = 0; n < N; ++n) h[n * kBlock + j] = p.h0[(b * D + d0 + j) * N + n];
      // A of the block, transposed ([n][j]); padding channels get 0 (their state stays 0).
      std::fill(At.begin(), At.end(), 0.f);
      for (int64_t j = 0; j < nd; ++j)
        for (int64_t n = 0; n < N; ++n) At[n * kBlock + j] = p.A[(d0 + j) * N + n];
      float dt[kBlock] = {}, dtx[kBlock] = {};
      for (int64_t t = 0; t < L; ++t) {
        const int64_t row = (b * L + t) * D;
        const float* Bt = p.Bm + (b * L + t) * N;
        const float* Ct = p.Cm + (b * L + t) * N;
        for (int64_t j = 0; j < nd; ++j) {
          dt[j] = p.dt[row + d0 + j];
          dtx[j] = dt[j] * p.x[row + d0 + j];
        }
        // All decays of the block in one vectorised pass (one long run of exps).
        for (int64_t n = 0; n < N; ++n)
#pragma omp simd
          for (int64_t j = 0; j < kBlock; ++j) a[n * kBlock + j] = dt[j] * At[n * kBlock + j];
#pragma omp simd
        for (int64_t k = 0; k < N * kBlock; ++k) a[k] = std::exp(a[k]);
        float acc[kBlock] = {};
        for (int64_t n = 0; n < N; ++n) {
          float* hn = h.data() + n * kBlock;
          const float* an = a.data() + n * kBlock;
          const float bn = Bt[n], cn = Ct[n];
#pragma omp simd
          for (int64_t j = 0; j < kBlock; ++j) {
            hn[j] = an[j] * hn[j] + dtx[j] * bn;
            acc[j] += hn[j] * cn;
          }
        }
        for (int64_t j = 0; j < nd; ++j) {
          const int64_t d = d0 + j;
          p.y[row + d] = acc[j] + p.Dskip[d] * p.x[row + d];
          if (p.states)
            for (int64_t n = 0; n < N; ++n) p.states[(row + d) * N + n] = h[n * kBlock + j];
        }
      }
    }
}

MECHSCOPE_KERNEL_CLONES void bwd_blocks(const SelectiveScanParams& p, const SelectiveScanGrads& g, float* partial_dB,
                                        float* partial_dC, int64_t begin, int64_t end) {
    const int64_t B = p.batch, L = p.seqlen, D = p.dim, N = p.dstate;
    // Per block: the states H[t][j][n] and decays E[t][j][n] of all steps, so exp runs once per element.
    std::vector<float> H(L * kBlock * N), E(L * kBlock * N), R(kBlock * N), zeros(N, 0.f);
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t d0 = blk * kBlock, nd = std::min(kBlock, D - d0);
      float* pdB = partial_dB + blk * B * L * N;
      float* pdC = partial_dC + blk * B * L * N;
      for (int64_t b = 0; b < B; ++b) {
        // Recompute the states of this block: H[t][j][n].
        std::fill(R.begin(), R.end(), 0.f);  // used as the running state here
        for (int64_t t = 0; t < L; ++t) {
          const int64_t row = (b * L + t) * D;
          const float* Bt = p.Bm + (b * L + t) * N;
          const float* dtr = p.dt + row + d0;
          float* Et = E.data() + t * kBlock * N;
          for (int64_t j = 0; j < nd; ++j)
            for (int64_t n = 0; n < N; ++n) Et[j * N + n] = dtr[j] * p.A[(d0 + j) * N + n];
#pragma omp simd
          for (int64_t k = 0; k < nd * N; ++k) Et[k] = std::exp(Et[k]);
          for (int64_t j = 0; j < nd; ++j) {
            const float dtx = dtr[j] * p.x[row + d0 + j];
            const float* Es = Et + j * N;
            float* hd = R.data() + j * N;
            float* Hs = H.data() + (t * kBlock + j) * N;
            for (int64_t n = 0; n < N; ++n) {
              hd[n] = Es[n] * hd[n] + dtx * Bt[n];
              Hs[n] = hd[n];
            }
          }
        }
        // Reverse sweep. R[j][n] carries a_{t+1} * dL/dh_{t+1}.
        std::fill(R.begin(), R.end(), 0.f);
        for (int64_t t = L - 1; t >= 0; --t) {
          const int64_t row = (b * L + t) * D;
          const float* Bt = p.Bm + (b * L + t) * N;
          const float* Ct = p.Cm + (b * L + t) * N;
          float* dBt = pdB + (b * L + t) * N;
          float* dCt = pdC + (b * L + t) * N;
          for (int64_t j = 0; j < nd; ++j) {
            const int64_t d = d0 + j;
            const float dy = g.dy[row + d], dt = p.dt[row + d], xv = p.x[row + d];
            const float* Ad = p.A + d * N;
            const float* ht = H.data() + (t * kBlock + j) * N;
            const float* hp = t > 0 ? H.data() + ((t - 1) * kBlock + j) * N : zeros.data();  // h_{-1} = 0
            float* Rj = R.data() + j * N;
            float* dAd = g.dA + d * N;
            const float* a = E.data() + (t * kBlock + j) * N;
            float gdt = 0.f, gx = 0.f;
#pragma omp simd reduction(+ : gdt, gx)
            for (int64_t n = 0; n < N; ++n) {
              const float G = dy * Ct[n] + Rj[n];  // dL/dh_t
              const float h_prev = hp[n];
              dCt[n] += dy * ht[n];
              gdt += G * (Ad[n] * a[n] * h_prev + Bt[n] * xv);
              gx += G * Bt[n];
              dBt[n] += G * dt * xv;
              dAd[n] += G * dt * a[n] * h_prev;
              Rj[n] = a[n] * G;
            }
            g.dx[row + d] = gx * dt + p.Dskip[d] * dy;
            g.ddt[row + d] = gdt;
            g.dD[d] += dy * xv;
          }
        }
      }
    }
}

}  // namespace

void selective_scan_fwd_cpu(const SelectiveScanParams& p) {
  const int64_t nblk = (p.dim + kBlock - 1) / kBlock;
  at::parallel_for(0, p.batch * nblk, 1, [&](int64_t begin, int64_t end) { fwd_tasks(p, begin, end); });
}

void selective_scan_bwd_cpu(const SelectiveScanParams& p, const SelectiveScanGrads& g) {
  const int64_t B = p.batch, L = p.seqlen, D = p.dim, N = p.dstate;
  const int64_t nblk = (D + kBlock - 1) / kBlock;
  // One partial dB / dC per channel block (summed below); dA / dD rows belong to one block each.
  std::vector<float> partial_dB(nblk * B * L * N, 0.f), partial_dC(nblk * B * L * N, 0.f);
  std::fill(g.dA, g.dA + D * N, 0.f);
  std::fill(g.dD, g.dD + D, 0.f);
  at::parallel_for(0, nblk, 1, [&](int64_t begin, int64_t end) {
    bwd_blocks(p, g, partial_dB.data(), partial_dC.data(), begin, end);
  });
  // Sum the per-block partials of dB and dC.
  const int64_t M = B * L * N;
  at::parallel_for(0, M, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      float sb = 0.f, sc = 0.f;
      for (int64_t k = 0; k < nblk; ++k) {
        sb += partial_dB[k * M + i];
        sc += partial_dC[k * M + i];
      }
      g.dB[i] = sb;
      g.dC[i] = sc;
    }
  });
}

}  // namespace mechscope::kernels
