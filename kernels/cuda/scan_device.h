// The CUDA scans as per-thread functors and launch plans, compiled by nvcc for the GPU (kernels/cuda/*.cu)
// and by the host compiler for the emulation test (tests/kernels/test_cuda_emulation.cpp), which runs the
// same functors and the same sequence of phases thread by thread on the CPU. So the arithmetic, the
// indexing and the phase order that the GPU runs are tested here even without a GPU; only the launch
// (grid, stream, errors) is GPU-only.
//
// Design (state-spaces/mamba's csrc is the model for the parameters, not the structure): one thread per
// independent recurrence — (batch, channel) for Mamba1, (batch, head, head-dim row) for Mamba2 — keeps its
// N-dimensional state in registers (kN is the smallest supported power of two >= N) and walks the sequence.
// The forward also splits the sequence into chunks of kChunk steps, one thread per (recurrence, chunk): each
// chunk's own end state, the states entering the chunks (exp(A * sum dt) is a chunk's exact decay), then each
// chunk rerun from its entering state; a GPU needs more threads in flight than batch x channels.
// Adjacent threads take adjacent channels, so every load and store of x, dt, y is coalesced; B and C are
// shared by the warp (one transaction each). The backward writes the forward states once into a workspace,
// reduces dC over channels from it, runs the reverse sweep (which overwrites each state slot, once read, with
// that step's dB contribution), then reduces dB, dt, dA and dD. No atomics: gradients are deterministic.
//
// Must not: include torch, core, or any CUDA header (the .cu files include this after cuda_runtime.h).
#pragma once

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cpu/scan_params.h"

#if defined(__CUDACC__)
#define MECHSCOPE_HD __host__ __device__ __forceinline__
#else
#define MECHSCOPE_HD inline
#endif
// Unrolled (so the state stays in registers) in the device pass only; the host compiler ignores it.
#if defined(__CUDA_ARCH__)
#define MECHSCOPE_UNROLL _Pragma("unroll")
#else
#define MECHSCOPE_UNROLL
#endif

namespace mechscope::kernels::cuda {

/// Largest supported state size (registers per thread grow with it).
constexpr int kMaxState = 256;

MECHSCOPE_HD float fexp(float v) { return expf(v); }

// ------------------------------------------------------------------------------------------- Mamba1

/// Chunked forward, phase 1: thread = (b, chunk, d). The chunk's own contribution to the state at its end
/// (starting from zero) and the sum of its dt (the chunk's decay is exp(A * sum dt), exactly).
template <int kN>
struct M1ChunkState {
  SelectiveScanParams p;
  int64_t T;          // chunk length
  float* hc;          // [B, C, D, N]
  float* sdt;         // [B, C, D]
  MECHSCOPE_HD void operator()(int64_t idx) const {
    const int64_t D = p.dim, L = p.seqlen, N = p.dstate, C = (L + T - 1) / T;
    const int64_t d = idx % D, c = (idx / D) % C, b = idx / (D * C);
    float h[kN];
    MECHSCOPE_UNROLL
    for (int n = 0; n < kN; ++n) h[n] = 0.f;
    float s = 0.f;
    const int64_t t1 = c * T + T < L ? c * T + T : L;
    for (int64_t t = c * T; t < t1; ++t) {
      const int64_t bt = b * L + t, row = bt * D + d;
      const float dt = p.dt[row], dtx = dt * p.x[row];
      const float* Bt = p.Bm + bt * N;
      MECHSCOPE_UNROLL
      for (int n = 0; n < kN; ++n)
        if (n < N) h[n] = fexp(dt * p.A[d * N + n]) * h[n] + dtx * Bt[n];
      s += dt;
    }
    float* out = hc + idx * N;
    MECHSCOPE_UNROLL
    for (int n = 0; n < kN; ++n)
      if (n < N) out[n] = h[n];
    sdt[idx] = s;
  }
};

/// Chunked forward, phase 2: thread = (b, d). Walks the chunks, replacing each chunk's own end state in hc
/// with the state entering it.
template <int kN>
struct M1ChunkCarry {
  SelectiveScanParams p;
  int64_t T;
  float* hc;
  const float* sdt;
  MECHSCOPE_HD void operator()(int64_t idx) const {
    const int64_t D = p.dim, L = p.seqlen, N = p.dstate, C = (L + T - 1) / T;
    const int64_t d = idx % D, b = idx / D;
    float H[kN];
    MECHSCOPE_UNROLL
    for (int n = 0; n < kN; ++n) H[n] = 0.f;
    for (int64_t c = 0; c < C; ++c) {
      const int64_t k = (b * C + c) * D + d;
      float* slot = hc + k * N;
      const float s = sdt[k];
      MECHSCOPE_UNROLL
      for (int n = 0; n < kN; ++n) {
        if (n < N) {
          const float own = slot[n];
          slot[n] = H[n];
          H[n] = fexp(p.A[d * N + n] * s) * H[n] + own;
        }
      }
    }
  }
};

/// The forward proper: thread = (b, chunk, d), d fastest. Runs the chunk from the state entering it (hc; null:
/// zero, as at the start), writing y (may be null: states only) and the states when asked. With T >= L it is
/// the whole unchunked forward; in the chunked one it is phase 3.
template <int kN>
struct M1ChunkOutput {
  SelectiveScanParams p;
  int64_t T;
  const float* hc;  // [B, C, D, N] or null
  MECHSCOPE_HD void operator()(int64_t idx) const {
    const int64_t D = p.dim, L = p.seqlen, N = p.dstate, C = (L + T - 1) / T;
    const int64_t d = idx % D, c = (idx / D) % C, b = idx / (D * C);
    float h[kN];
    const float* in = hc ? hc + idx * N : nullptr;
    MECHSCOPE_UNROLL
    for (int n = 0; n < kN; ++n) h[n] = in && n < N ? in[n] : 0.f;
    const float Dd = p.Dskip[d];
    const int64_t t1 = c * T + T < L ? c * T + T : L;
    for (int64_t t = c * T; t < t1; ++t) {
      const int64_t bt = b * L + t, row = bt * D + d;
      const float dt = p.dt[row], xv = p.x[row], dtx = dt * xv;
      const float* Bt = p.Bm + bt * N;
      const float* Ct = p.Cm + bt * N;
      float acc = 0.f;
      MECHSCOPE_UNROLL
      for (int n = 0; n < kN; ++n) {
        if (n < N) {
          h[n] = fexp(dt * p.A[d * N + n]) * h[n] + dtx * Bt[n];
          acc += h[n] * Ct[n];
        }
      }
      if (p.y) p.y[row] = acc + Dd * xv;
      if (p.states) {
        float* st = p.states + row * N;
        MECHSCOPE_UNROLL
        for (int n = 0; n < kN; ++n)
          if (n < N) st[n] = h[n];
      }
    }
  }
};

/// dC[b, t, n] = sum_d dy[b, t, d] * S[b, t, d, n]; thread = (b, t, n), n fastest.
struct M1GradC {
  SelectiveScanParams p;
  const float* dy;
  const float* ws;  // states [B, L, D, N]
  float* dC;
  MECHSCOPE_HD void operator()(int64_t idx) const {
    const int64_t D = p.dim, N = p.dstate;
    const int64_t bt = idx / N, n = idx % N;
    float acc = 0.f;
    for (int64_t d = 0; d < D; ++d) acc += dy[bt * D + d] * ws[(bt * D + d) * N + n];
    dC[idx] = acc;
  }
};

/// Reverse sweep; thread = (b, d). Reads S_{t-1} from the workspace and overwrites slot t (read at step t+1
/// as S_{(t+1)-1}, and by M1GradC before this phase) with dL/dh_t * dt * x, the summand of dB.
template <int kN>
struct M1Reverse {
  SelectiveScanParams p;
  SelectiveScanGrads g;
  float* ws;        // [B, L, D, N]
  float* dA_part;   // [B, D, N]
  float* dD_part;   // [B, D]
  MECHSCOPE_HD void operator()(int64_t idx) const {
    const int64_t D = p.dim, L = p.seqlen, N = p.dstate;
    const int64_t b = idx / D, d = idx % D;
    float R[kN], A[kN], dA[kN];
MECHSCOPE_UNROLL
    for (int n = 0; n < kN; ++n) {
      R[n] = 0.f;
      dA[n] = 0.f;
      A[n] = n < N ? p.A[d * N + n] : 0.f;
    }
    const float Dd = p.Dskip[d];
    float dDacc = 0.f;
    for (int64_t t = L - 1; t >= 0; --t) {
      const int64_t bt = b * L + t, row = bt * D + d;
      const float dy = g.dy[row], dt = p.dt[row], xv = p.x[row];
      const float* Bt = p.Bm + bt * N;
      const float* Ct = p.Cm + bt * N;
      const float* Sp = t > 0 ? ws + (row - D) * N : nullptr;  // S_{t-1}; S_{-1} = 0
      float* St = ws + row * N;
      float gdt = 0.f, gx = 0.f;
MECHSCOPE_UNROLL
      for (int n = 0; n < kN; ++n) {
        if (n < N) {
          const float a = fexp(dt * A[n]);
          const float G = dy * Ct[n] + R[n];  // dL/dh_t
          const float hp = Sp ? Sp[n] : 0.f;
          gdt += G * (A[n] * a * hp + Bt[n] * xv);
          gx += G * Bt[n];
          dA[n] += G * dt * a * hp;
          R[n] = a * G;
          St[n] = G * dt * xv;
        }
      }
      g.dx[row] = gx * dt + Dd * dy;
      g.ddt[row] = gdt;
      dDacc += dy * xv;
    }
MECHSCOPE_UNROLL
    for (int n = 0; n < kN; ++n)
      if (n < N) dA_part[(b * D + d) * N + n] = dA[n];
    dD_part[b * D + d] = dDacc;
  }
};

/// dB[b, t, n] = sum_d (dB summand in ws); thread = (b, t, n).
struct M1GradB {
  SelectiveScanParams p;
  const float* ws;
  float* dB;
  MECHSCOPE_HD void operator()(int64_t idx) const {
    const int64_t D = p.dim, N = p.dstate;
    const int64_t bt = idx / N, n = idx % N;
    float acc = 0.f;
    for (int64_t d = 0; d < D; ++d) acc += ws[(bt * D + d) * N + n];
    dB[idx] = acc;
  }
};

/// dA[d, n] and dD[d] summed over the batch; thread = one of D*N + D outputs.
struct M1ReduceBatch {
  SelectiveScanParams p;
  const float* dA_part;
  const float* dD_part;
  float* dA;
  float* dD;
  MECHSCOPE_HD void operator()(int64_t idx) const {
    const int64_t B = p.batch, D = p.dim, N = p.dstate;
    float acc = 0.f;
    if (idx < D * N) {
      for (int64_t b = 0; b < B; ++b) acc += dA_part[b * D * N + idx];
      dA[idx] = acc;
    } else {
      const int64_t d = idx - D * N;
      for (int64_t b = 0; b < B; ++b) acc += dD_part[b * D + d];
      dD[d] = acc;
    }
  }
};

/// Floats of device workspace the Mamba1 backward needs.
inline int64_t selective_scan_bwd_workspace(const SelectiveScanParams& p) {
  return p.batch * p.seqlen * p.dim * p.dstate + p.batch * p.dim * p.dstate + p.batch * p.dim;
}

// ------------------------------------------------------------------------------------------- Mamba2

MECHSCOPE_HD float ssd_D(const SsdParams& p, int64_t h, int64_t i) {
  return p.d_has_hdim ? p.Dskip[h * p.headdim + i] : p.Dskip[h];
}

/// Chunked forward, phase 1: thread = (b, chunk, h, i). The chunk's own end state (from zero) and sum of dt.
template <int kN>
struct SsdChunkState {
  SsdParams p;
  int64_t T;
  float* hc;   // [B, C, H, P, N]
  float* sdt;  // [B, C, H, P]
  MECHSCOPE_HD void operator()(int64_t idx) const {
    const int64_t L = p.seqlen, H = p.nheads, P = p.headdim, G = p.ngroups, N = p.dstate, C = (L + T - 1) / T;
    const int64_t i = idx % P, h = (idx / P) % H, c = (idx / (P * H)) % C, b = idx / (P * H * C), g = h / (H / G);
    float S[kN];
    MECHSCOPE_UNROLL
    for (int n = 0; n < kN; ++n) S[n] = 0.f;
    float s = 0.f;
    const float Ah = p.A[h];
    const int64_t t1 = c * T + T < L ? c * T + T : L;
    for (int64_t t = c * T; t < t1; ++t) {
      const int64_t bt = b * L + t;
      const float dt = p.dt[bt * H + h], a = fexp(dt * Ah), dtx = dt * p.x[(bt * H + h) * P + i];
      const float* Bt = p.Bm + (bt * G + g) * N;
      MECHSCOPE_UNROLL
      for (int n = 0; n < kN; ++n)
        if (n < N) S[n] = a * S[n] + dtx * Bt[n];
      s += dt;
    }
    float* out = hc + idx * N;
    MECHSCOPE_UNROLL
    for (int n = 0; n < kN; ++n)
      if (n < N) out[n] = S[n];
    sdt[idx] = s;
  }
};

/// Chunked forward, phase 2: thread = (b, h, i); each chunk's slot gets the state entering it.
template <int kN>
struct SsdChunkCarry {
  SsdParams p;
  int64_t T;
  float* hc;
  const float* sdt;
  MECHSCOPE_HD void operator()(int64_t idx) const {
    const int64_t L = p.seqlen, H = p.nheads, P = p.headdim, N = p.dstate, C = (L + T - 1) / T;
    const int64_t hi = idx % (H * P), b = idx / (H * P), h = hi / P;
    float S[kN];
    MECHSCOPE_UNROLL
    for (int n = 0; n < kN; ++n) S[n] = 0.f;
    for (int64_t c = 0; c < C; ++c) {
      const int64_t k = (b * C + c) * H * P + hi;
      float* slot = hc + k * N;
      const float decay = fexp(p.A[h] * sdt[k]);
      MECHSCOPE_UNROLL
      for (int n = 0; n < kN; ++n) {
        if (n < N) {
          const float own = slot[n];
          slot[n] = S[n];
          S[n] = decay * S[n] + own;
        }
      }
    }
  }
};

/// The forward proper: thread = (b, chunk, h, i), i (the head-dim row) fastest. Runs the chunk from its entering
/// state (hc; null: zero), writing y (may be null) and the states when asked. With T >= L it is the whole
/// unchunked forward; in the chunked one it is phase 3.
template <int kN>
struct SsdChunkOutput {
  SsdParams p;
  int64_t T;
  const float* hc;  // [B, C, H, P, N] or null
  MECHSCOPE_HD void operator()(int64_t idx) const {
    const int64_t L = p.seqlen, H = p.nheads, P = p.headdim, G = p.ngroups, N = p.dstate, C = (L + T - 1) / T;
    const int64_t i = idx % P, h = (idx / P) % H, c = (idx / (P * H)) % C, b = idx / (P * H * C), g = h / (H / G);
    float S[kN];
    const float* in = hc ? hc + idx * N : nullptr;
    MECHSCOPE_UNROLL
    for (int n = 0; n < kN; ++n) S[n] = in && n < N ? in[n] : 0.f;
    const float Ah = p.A[h], Dv = ssd_D(p, h, i);
    const int64_t t1 = c * T + T < L ? c * T + T : L;
    for (int64_t t = c * T; t < t1; ++t) {
      const int64_t bt = b * L + t, row = (bt * H + h) * P + i;
      const float dt = p.dt[bt * H + h], a = fexp(dt * Ah), xv = p.x[row], dtx = dt * xv;
      const float* Bt = p.Bm + (bt * G + g) * N;
      const float* Ct = p.Cm + (bt * G + g) * N;
      float acc = 0.f;
      MECHSCOPE_UNROLL
      for (int n = 0; n < kN; ++n) {
        if (n < N) {
          S[n] = a * S[n] + dtx * Bt[n];
          acc += S[n] * Ct[n];
        }
      }
      if (p.y) p.y[row] = acc + Dv * xv;
      if (p.states) {
        float* st = p.states + row * N;
        MECHSCOPE_UNROLL
        for (int n = 0; n < kN; ++n)
          if (n < N) st[n] = S[n];
      }
    }
  }
};

/// dC[b, t, g, n] = sum over the group's heads h and rows i of dy[b, t, h, i] * S[b, t, h, i, n].
struct SsdGradC {
  SsdParams p;
  const float* dy;
  const float* ws;  // [B, L, H, P, N]
  float* dC;
  MECHSCOPE_HD void operator()(int64_t idx) const {
    const int64_t H = p.nheads, P = p.headdim, G = p.ngroups, N = p.dstate, hpg = H / G;
    const int64_t n = idx % N, g = (idx / N) % G, bt = idx / (N * G);
    float acc = 0.f;
    for (int64_t h = g * hpg; h < (g + 1) * hpg; ++h)
      for (int64_t i = 0; i < P; ++i) {
        const int64_t row = (bt * H + h) * P + i;
        acc += dy[row] * ws[row * N + n];
      }
    dC[idx] = acc;
  }
};

/// Reverse sweep; thread = (b, h, i). Per-row partials of ddt, dA and dD are reduced afterwards.
template <int kN>
struct SsdReverse {
  SsdParams p;
  SsdGrads g;
  float* ws;        // [B, L, H, P, N]: states in, dB summands out
  float* ddt_part;  // [B, L, H, P]
  float* dA_part;   // [B, H, P]
  float* dD_part;   // [B, H, P]
  MECHSCOPE_HD void operator()(int64_t idx) const {
    const int64_t L = p.seqlen, H = p.nheads, P = p.headdim, G = p.ngroups, N = p.dstate;
    const int64_t i = idx % P, h = (idx / P) % H, b = idx / (P * H), gi = h / (H / G);
    float R[kN];
MECHSCOPE_UNROLL
    for (int n = 0; n < kN; ++n) R[n] = 0.f;
    const float Ah = p.A[h], Dv = ssd_D(p, h, i);
    float dAacc = 0.f, dDacc = 0.f;
    for (int64_t t = L - 1; t >= 0; --t) {
      const int64_t bt = b * L + t, row = (bt * H + h) * P + i;
      const float dt = p.dt[bt * H + h], a = fexp(dt * Ah), xv = p.x[row], dy = g.dy[row];
      const float* Bt = p.Bm + (bt * G + gi) * N;
      const float* Ct = p.Cm + (bt * G + gi) * N;
      const float* Sp = t > 0 ? ws + (row - H * P) * N : nullptr;  // same (b, h, i) one step back
      float* St = ws + row * N;
      float gx = 0.f, gdt = 0.f, dec = 0.f;
MECHSCOPE_UNROLL
      for (int n = 0; n < kN; ++n) {
        if (n < N) {
          const float Gv = dy * Ct[n] + R[n];  // dL/dS_t[i, n]
          const float sp = Sp ? Sp[n] : 0.f;
          gx += Gv * Bt[n];
          gdt += Gv * Bt[n] * xv;
          dec += Gv * a * sp;
          R[n] = a * Gv;
          St[n] = Gv * dt * xv;
        }
      }
      g.dx[row] = gx * dt + Dv * dy;
      ddt_part[row] = gdt + Ah * dec;
      dAacc += dt * dec;
      dDacc += dy * xv;
    }
    dA_part[idx] = dAacc;
    dD_part[idx] = dDacc;
  }
};

/// dB[b, t, g, n] = sum over the group's heads and rows of the summands left in ws.
struct SsdGradB {
  SsdParams p;
  const float* ws;
  float* dB;
  MECHSCOPE_HD void operator()(int64_t idx) const {
    const int64_t H = p.nheads, P = p.headdim, G = p.ngroups, N = p.dstate, hpg = H / G;
    const int64_t n = idx % N, g = (idx / N) % G, bt = idx / (N * G);
    float acc = 0.f;
    for (int64_t h = g * hpg; h < (g + 1) * hpg; ++h)
      for (int64_t i = 0; i < P; ++i) acc += ws[((bt * H + h) * P + i) * N + n];
    dB[idx] = acc;
  }
};

/// ddt[b, t, h] = sum_i ddt_part[b, t, h, i].
struct SsdGradDt {
  SsdParams p;
  const float* ddt_part;
  float* ddt;
  MECHSCOPE_HD void operator()(int64_t idx) const {
    const int64_t P = p.headdim;
    float acc = 0.f;
    for (int64_t i = 0; i < P; ++i) acc += ddt_part[idx * P + i];
    ddt[idx] = acc;
  }
};

/// dA[h] (over batch and rows) and dD ([H]: over batch and rows; [H, P]: over batch); thread = one output.
struct SsdReduceBatch {
  SsdParams p;
  const float* dA_part;
  const float* dD_part;
  float* dA;
  float* dD;
  MECHSCOPE_HD void operator()(int64_t idx) const {
    const int64_t B = p.batch, H = p.nheads, P = p.headdim;
    const int64_t nD = p.d_has_hdim ? H * P : H;
    float acc = 0.f;
    if (idx < H) {
      for (int64_t b = 0; b < B; ++b)
        for (int64_t i = 0; i < P; ++i) acc += dA_part[(b * H + idx) * P + i];
      dA[idx] = acc;
    } else if (idx - H < nD) {
      const int64_t k = idx - H;
      if (p.d_has_hdim) {
        for (int64_t b = 0; b < B; ++b) acc += dD_part[b * H * P + k];
      } else {
        for (int64_t b = 0; b < B; ++b)
          for (int64_t i = 0; i < P; ++i) acc += dD_part[(b * H + k) * P + i];
      }
      dD[k] = acc;
    }
  }
};

/// Floats of device workspace the Mamba2 backward needs.
inline int64_t ssd_bwd_workspace(const SsdParams& p) {
  const int64_t rows = p.batch * p.seqlen * p.nheads * p.headdim;
  return rows * p.dstate + rows + 2 * p.batch * p.nheads * p.headdim;
}

// ------------------------------------------------------------------------------------------- plans

/// Calls f(std::integral_constant-like tag) with the smallest supported kN >= n.
template <int kN>
struct StateSize {
  static constexpr int value = kN;
};

template <class F>
void with_state_size(int64_t n, F&& f) {
  if (n <= 0 || n > kMaxState)
    throw std::invalid_argument("scan: state size " + std::to_string(n) + " outside 1.." + std::to_string(kMaxState));
  if (n <= 4) return f(StateSize<4>{});
  if (n <= 8) return f(StateSize<8>{});
  if (n <= 16) return f(StateSize<16>{});
  if (n <= 32) return f(StateSize<32>{});
  if (n <= 64) return f(StateSize<64>{});
  if (n <= 128) return f(StateSize<128>{});
  return f(StateSize<256>{});
}

// A plan is the sequence of phases; `exec(count, functor)` runs functor(idx) for idx in [0, count), all of a
// phase finishing before the next starts (a kernel launch on one stream, or a loop on the host).

/// The forward splits the sequence into chunks of kChunk steps (more threads than one per recurrence: a GPU
/// needs far more than batch x channels in flight): each chunk's own end state, then the states entering each
/// chunk (a short walk per recurrence), then each chunk rerun from its entering state.
constexpr int64_t kChunk = 64;

inline int64_t chunks_of(int64_t L, int64_t T) { return (L + T - 1) / T; }
/// A chunk length that covers the whole sequence (one chunk: the unchunked forward).
inline int64_t whole(int64_t L) { return L > 0 ? L : 1; }

/// Floats of device workspace the chunked forwards need (0: a single chunk, run directly).
inline int64_t selective_scan_fwd_workspace(const SelectiveScanParams& p, int64_t T = kChunk) {
  const int64_t C = chunks_of(p.seqlen, T);
  return C <= 1 ? 0 : p.batch * C * p.dim * (p.dstate + 1);
}

/// ws: selective_scan_fwd_workspace(p, T) floats (may be null when that is 0).
template <class Exec>
void selective_scan_fwd_plan(const SelectiveScanParams& p, Exec&& exec, float* ws = nullptr, int64_t T = kChunk) {
  const int64_t C = chunks_of(p.seqlen, T);
  with_state_size(p.dstate, [&](auto tag) {
    constexpr int kN = decltype(tag)::value;
    if (C <= 1) return exec(p.batch * p.dim, M1ChunkOutput<kN>{p, whole(p.seqlen), nullptr});
    float* hc = ws;
    float* sdt = ws + p.batch * C * p.dim * p.dstate;
    exec(p.batch * C * p.dim, M1ChunkState<kN>{p, T, hc, sdt});
    exec(p.batch * p.dim, M1ChunkCarry<kN>{p, T, hc, sdt});
    exec(p.batch * C * p.dim, M1ChunkOutput<kN>{p, T, hc});
  });
}

/// ws: selective_scan_bwd_workspace(p) floats.
template <class Exec>
void selective_scan_bwd_plan(const SelectiveScanParams& p, const SelectiveScanGrads& g, float* ws, Exec&& exec) {
  const int64_t B = p.batch, L = p.seqlen, D = p.dim, N = p.dstate;
  float* states = ws;
  float* dA_part = states + B * L * D * N;
  float* dD_part = dA_part + B * D * N;
  with_state_size(N, [&](auto tag) {
    constexpr int kN = decltype(tag)::value;
    SelectiveScanParams fp = p;
    fp.y = nullptr;
    fp.states = states;
    exec(B * D, M1ChunkOutput<kN>{fp, whole(L), nullptr});
    exec(B * L * N, M1GradC{p, g.dy, states, g.dC});
    exec(B * D, M1Reverse<kN>{p, g, states, dA_part, dD_part});
  });
  exec(B * L * N, M1GradB{p, states, g.dB});
  exec(D * N + D, M1ReduceBatch{p, dA_part, dD_part, g.dA, g.dD});
}

inline int64_t ssd_fwd_workspace(const SsdParams& p, int64_t T = kChunk) {
  const int64_t C = chunks_of(p.seqlen, T);
  return C <= 1 ? 0 : p.batch * C * p.nheads * p.headdim * (p.dstate + 1);
}

/// ws: ssd_fwd_workspace(p, T) floats (may be null when that is 0).
template <class Exec>
void ssd_fwd_plan(const SsdParams& p, Exec&& exec, float* ws = nullptr, int64_t T = kChunk) {
  const int64_t C = chunks_of(p.seqlen, T), rows = p.batch * p.nheads * p.headdim;
  with_state_size(p.dstate, [&](auto tag) {
    constexpr int kN = decltype(tag)::value;
    if (C <= 1) return exec(rows, SsdChunkOutput<kN>{p, whole(p.seqlen), nullptr});
    float* hc = ws;
    float* sdt = ws + rows * C * p.dstate;
    exec(rows * C, SsdChunkState<kN>{p, T, hc, sdt});
    exec(rows, SsdChunkCarry<kN>{p, T, hc, sdt});
    exec(rows * C, SsdChunkOutput<kN>{p, T, hc});
  });
}

/// ws: ssd_bwd_workspace(p) floats.
template <class Exec>
void ssd_bwd_plan(const SsdParams& p, const SsdGrads& g, float* ws, Exec&& exec) {
  const int64_t B = p.batch, L = p.seqlen, H = p.nheads, P = p.headdim, G = p.ngroups, N = p.dstate;
  const int64_t rows = B * L * H * P;
  float* states = ws;
  float* ddt_part = states + rows * N;
  float* dA_part = ddt_part + rows;
  float* dD_part = dA_part + B * H * P;
  with_state_size(N, [&](auto tag) {
    constexpr int kN = decltype(tag)::value;
    SsdParams fp = p;
    fp.y = nullptr;
    fp.states = states;
    exec(B * H * P, SsdChunkOutput<kN>{fp, whole(L), nullptr});
    exec(B * L * G * N, SsdGradC{p, g.dy, states, g.dC});
    exec(B * H * P, SsdReverse<kN>{p, g, states, ddt_part, dA_part, dD_part});
  });
  exec(B * L * G * N, SsdGradB{p, states, g.dB});
  exec(B * L * H, SsdGradDt{p, ddt_part, g.ddt});
  exec(H + (p.d_has_hdim ? H * P : H), SsdReduceBatch{p, dA_part, dD_part, g.dA, g.dD});
}

}  // namespace mechscope::kernels::cuda
