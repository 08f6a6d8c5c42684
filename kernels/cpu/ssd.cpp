// CPU Mamba2 recurrence (the SSD layer as a scan), forward and backward. Each head's state tile stays in
// cache while the time loop runs: [N][P] in the forward (vectorised over the head-dim rows, see fwd_tasks),
// [P][N] in the backward (rows of N vectorised). The forward splits over (batch, head); the backward over
// (batch, group) so that dB and dC (shared by the heads of a group) need no reduction, with per-batch
// partials for dA and dD. Reference twin: core/model/scan.cpp
// mamba2_scan_ref (and the chunked mamba2_ssd).
#include <algorithm>
#include <cmath>
#include <vector>

#include <ATen/Parallel.h>

#include "kernels/cpu/scan_params.h"
#include "kernels/cpu/simd.h"

namespace mechscope::kernels {

namespace {

// The forward keeps each head's state transposed, [N][P]: the update of state row n is a vector operation over
// the P head-dim rows (x and the output are contiguous over P), so the output needs no horizontal sum per row;
// rows go in blocks of kRows whose accumulators stay in registers.
constexpr int64_t kRows = 16;

MECHSCOPE_KERNEL_CLONES void fwd_tasks(const SsdParams& p, int64_t begin, int64_t end) {
    const int64_t L = p.seqlen, H = p.nheads, P = p.headdim, G = p.ngroups, N = p.dstate;
    const int64_t hpg = H / G;
    const int64_t sxl = p.x_stride_l > 0 ? p.x_stride_l : H * P, sxb = p.x_stride_b > 0 ? p.x_stride_b : L * sxl;
    const int64_t sbl = p.bc_stride_l > 0 ? p.bc_stride_l : G * N, sbb = p.bc_stride_b > 0 ? p.bc_stride_b : L * sbl;
    std::vector<float> S(N * P), dtx(P);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / H, h = task % H, g = h / hpg;
      const float Ah = p.A[h];
      std::fill(S.begin(), S.end(), 0.f);
      for (int64_t t = 0; t < L; ++t) {
        const int64_t bt = b * L + t;
        const float dt = p.dt[bt * H + h], a = std::exp(dt * Ah);
        const float* xt = p.x + b * sxb + t * sxl + h * P;
        const float* Bt = p.Bm + b * sbb + t * sbl + g * N;
        const float* Ct = p.Cm + b * sbb + t * sbl + g * N;
        float* yt = p.y + (bt * H + h) * P;
        for (int64_t i = 0; i < P; ++i) dtx[i] = dt * xt[i];
        for (int64_t i0 = 0; i0 < P; i0 += kRows) {
          const int64_t m = std::min(kRows, P - i0);
          float acc[kRows] = {};
          if (m == kRows) {
            for (int64_t n = 0; n < N; ++n) {
              float* Sn = S.data() + n * P + i0;
              const float bn = Bt[n], cn = Ct[n];
              const float* dx = dtx.data() + i0;
#pragma omp simd
              for (int64_t k = 0; k < kRows; ++k) {
                Sn[k] = a * Sn[k] + dx[k] * bn;
                acc[k] += Sn[k] * cn;
              }
            }
          } else {
            for (int64_t n = 0; n < N; ++n) {
              float* Sn = S.data() + n * P + i0;
              const float bn = Bt[n], cn = Ct[n];
              for (int64_t k = 0; k < m; ++k) {
                Sn[k] = a * Sn[k] + dtx[i0 + k] * bn;
                acc[k] += Sn[k] * cn;
              }
            }
          }
          for (int64_t k = 0; k < m; ++k) {
            const int64_t i = i0 + k;
            yt[i] = acc[k] + (p.d_has_hdim ? p.Dskip[h * P + i] : p.Dskip[h]) * xt[i];
          }
        }
        if (p.states) {  // [P, N] per head, as the state hook lays it out
          float* st = p.states + (bt * H + h) * P * N;
          for (int64_t i = 0; i < P; ++i)
            for (int64_t n = 0; n < N; ++n) st[i * N + n] = S[n * P + i];
        }
      }
    }
}

MECHSCOPE_KERNEL_CLONES void bwd_tasks(const SsdParams& p, const SsdGrads& gr, float* partial_dA, float* partial_dD,
                                       int64_t begin, int64_t end) {
    const int64_t L = p.seqlen, H = p.nheads, P = p.headdim, G = p.ngroups, N = p.dstate;
    const int64_t hpg = H / G;
    const int64_t nD = p.d_has_hdim ? H * P : H;
    std::vector<float> Sall(L * P * N), R(P * N), zeros(P * N, 0.f);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / G, g = task % G;
      for (int64_t h = g * hpg; h < (g + 1) * hpg; ++h) {
        const float Ah = p.A[h];
        // Recompute the states S_t of this head.
        std::fill(R.begin(), R.end(), 0.f);
        for (int64_t t = 0; t < L; ++t) {
          const int64_t bt = b * L + t;
          const float dt = p.dt[bt * H + h], a = std::exp(dt * Ah);
          const float* xt = p.x + (bt * H + h) * P;
          const float* Bt = p.Bm + (bt * G + g) * N;
          float* St = Sall.data() + t * P * N;
          for (int64_t i = 0; i < P; ++i) {
            const float dtx = dt * xt[i];
            float* Ri = R.data() + i * N;
            for (int64_t n = 0; n < N; ++n) {
              Ri[n] = a * Ri[n] + dtx * Bt[n];
              St[i * N + n] = Ri[n];
            }
          }
        }
        // Reverse sweep; R carries a_{t+1} * dL/dS_{t+1}.
        std::fill(R.begin(), R.end(), 0.f);
        float dA_acc = 0.f;
        for (int64_t t = L - 1; t >= 0; --t) {
          const int64_t bt = b * L + t;
          const float dt = p.dt[bt * H + h], a = std::exp(dt * Ah);
          const float* xt = p.x + (bt * H + h) * P;
          const float* dyt = gr.dy + (bt * H + h) * P;
          const float* Bt = p.Bm + (bt * G + g) * N;
          const float* Ct = p.Cm + (bt * G + g) * N;
          float* dBt = gr.dB + (bt * G + g) * N;
          float* dCt = gr.dC + (bt * G + g) * N;
          float* dxt = gr.dx + (bt * H + h) * P;
          const float* St = Sall.data() + t * P * N;
          const float* Sp = t > 0 ? Sall.data() + (t - 1) * P * N : zeros.data();  // S_{-1} = 0
          float gdt = 0.f, decay_term = 0.f;
          for (int64_t i = 0; i < P; ++i) {
            const float dy = dyt[i], xv = xt[i];
            const float* Si = St + i * N;
            const float* Spi = Sp + i * N;
            float* Ri = R.data() + i * N;
            float gx = 0.f, gdt_i = 0.f, dec_i = 0.f;
#pragma omp simd reduction(+ : gx, gdt_i, dec_i)
            for (int64_t n = 0; n < N; ++n) {
              const float Gv = dy * Ct[n] + Ri[n];  // dL/dS_t[i, n]
              const float sp = Spi[n];
              dCt[n] += dy * Si[n];
              dBt[n] += Gv * dt * xv;
              gx += Gv * Bt[n];
              gdt_i += Gv * Bt[n] * xv;
              dec_i += Gv * a * sp;
              Ri[n] = a * Gv;
            }
            const float Dv = p.d_has_hdim ? p.Dskip[h * P + i] : p.Dskip[h];
            dxt[i] = gx * dt + Dv * dy;
            gdt += gdt_i;
            decay_term += dec_i;
            partial_dD[b * nD + (p.d_has_hdim ? h * P + i : h)] += dy * xv;
          }
          gr.ddt[bt * H + h] = gdt + Ah * decay_term;
          dA_acc += dt * decay_term;
        }
        partial_dA[b * H + h] += dA_acc;
      }
    }
}

}  // namespace

void ssd_fwd_cpu(const SsdParams& p) {
  at::parallel_for(0, p.batch * p.nheads, 1, [&](int64_t begin, int64_t end) { fwd_tasks(p, begin, end); });
}

void ssd_bwd_cpu(const SsdParams& p, const SsdGrads& gr) {
  const int64_t B = p.batch, L = p.seqlen, H = p.nheads, P = p.headdim, G = p.ngroups, N = p.dstate;
  const int64_t nD = p.d_has_hdim ? H * P : H;
  std::vector<float> partial_dA(B * H, 0.f), partial_dD(B * nD, 0.f);
  std::fill(gr.dB, gr.dB + B * L * G * N, 0.f);
  std::fill(gr.dC, gr.dC + B * L * G * N, 0.f);
  at::parallel_for(0, B * G, 1, [&](int64_t begin, int64_t end) {
    bwd_tasks(p, gr, partial_dA.data(), partial_dD.data(), begin, end);
  });
  for (int64_t h = 0; h < H; ++h) {
    float s = 0.f;
    for (int64_t b = 0; b < B; ++b) s += partial_dA[b * H + h];
    gr.dA[h] = s;
  }
  for (int64_t k = 0; k < nD; ++k) {
    float s = 0.f;
    for (int64_t b = 0; b < B; ++b) s += partial_dD[b * nD + k];
    gr.dD[k] = s;
  }
}

}  // namespace mechscope::kernels
