// The readout metrics (answer probability, logit difference, accuracy, KL to a reference) in two passes over
// each row of logits, instead of the dozen full-size ATen ops of the reference path (log_softmax, gather,
// scatter, two maxes, the KL product...). A sweep evaluates them once per variant, so they were about 0.4 ms
// of every variant of the demos' head-ablation sweeps (512 readouts x 256 tokens).
// Reference twin: the ATen path of core/interventions/metrics.cpp (Metrics.CpuKernelEqualsTheAtenPath in
// tests/core/interventions/test_interventions.cpp compares them, ties and a non-finite logit included).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include <ATen/Parallel.h>

#include "kernels/cpu/scan_params.h"
#include "kernels/cpu/simd.h"

namespace mechscope::kernels {

namespace {

// The row's maximum, or false when a value is not finite or V < 2. -ffast-math (this file's flags) assumes
// finite values, so finiteness is tested on the bits: an exponent of all ones is an infinity or a NaN.
MECHSCOPE_INLINE bool finite_max(const float* x, int64_t V, float& m) {
  uint32_t nonfinite = 0;
  m = -std::numeric_limits<float>::max();
#pragma omp simd reduction(max : m) reduction(| : nonfinite)
  for (int64_t v = 0; v < V; ++v) {
    uint32_t bits;
    std::memcpy(&bits, x + v, sizeof bits);
    nonfinite |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
    m = x[v] > m ? x[v] : m;
  }
  return !nonfinite && V >= 2;
}

// One row.
MECHSCOPE_KERNEL_CLONES bool row_metrics(const float* x, int64_t V, int64_t t, const float* ref_p, float ref_ne,
                                         float& prob, float& logit_diff, float& correct, float& kl) {
  float m;
  if (!finite_max(x, V, m)) return false;
  int64_t argmax = 0;  // the first maximal index, as ATen's max and argmax: find its block of 16, then scan it
  for (int64_t b = 0; b < V; b += 16) {
    const int64_t e = std::min<int64_t>(V, b + 16);
    int hit = 0;
#pragma omp simd reduction(| : hit)
    for (int64_t v = b; v < e; ++v) hit |= static_cast<int>(x[v] == m);
    if (hit) {
      argmax = b;
      while (x[argmax] != m) ++argmax;
      break;
    }
  }
  float best_wrong = -std::numeric_limits<float>::max();  // over v != t (V >= 2)
#pragma omp simd reduction(max : best_wrong)
  for (int64_t v = 0; v < t; ++v) best_wrong = x[v] > best_wrong ? x[v] : best_wrong;
#pragma omp simd reduction(max : best_wrong)
  for (int64_t v = t + 1; v < V; ++v) best_wrong = x[v] > best_wrong ? x[v] : best_wrong;
  float s = 0.f;
#pragma omp simd reduction(+ : s)
  for (int64_t v = 0; v < V; ++v) s += std::exp(x[v] - m);
  const float lse = m + std::log(s);
  prob = std::exp(x[t] - lse);
  logit_diff = x[t] - best_wrong;
  correct = argmax == t ? 1.f : 0.f;
  if (ref_p) {
    float dot = 0.f, mass = 0.f;  // sum p (x - m), sum p: sum p log_softmax(x) = dot - (lse - m) mass
#pragma omp simd reduction(+ : dot, mass)
    for (int64_t v = 0; v < V; ++v) {
      dot += ref_p[v] * (x[v] - m);
      mass += ref_p[v];
    }
    const float d = ref_ne - (dot - (lse - m) * mass);
    kl = d > 0.f ? d : 0.f;
  }
  return true;
}

// One row of the reference: p = softmax(x), ne = sum p (x - lse).
MECHSCOPE_KERNEL_CLONES bool row_reference(const float* x, int64_t V, float* p, float& ne) {
  float m;
  if (!finite_max(x, V, m)) return false;
  float s = 0.f;
#pragma omp simd reduction(+ : s)
  for (int64_t v = 0; v < V; ++v) {
    p[v] = std::exp(x[v] - m);
    s += p[v];
  }
  const float lse = m + std::log(s), inv = 1.f / s;
  float acc = 0.f;
#pragma omp simd reduction(+ : acc)
  for (int64_t v = 0; v < V; ++v) {
    p[v] *= inv;
    acc += p[v] * (x[v] - lse);
  }
  ne = acc;
  return true;
}

}  // namespace

bool readout_reference_cpu(int64_t rows, int64_t V, const float* logits, float* p, float* ne) {
  std::atomic<bool> ok{true};
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, V));
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end && ok.load(std::memory_order_relaxed); ++i)
      if (!row_reference(logits + i * V, V, p + i * V, ne[i])) ok = false;
  });
  return ok.load();
}

bool readout_metrics_cpu(const ReadoutMetricParams& p) {
  std::atomic<bool> ok{true};
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, p.vocab));
  at::parallel_for(0, p.rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end && ok.load(std::memory_order_relaxed); ++i) {
      const int64_t r = p.ref_rows > 0 ? i % p.ref_rows : 0;
      float kl = 0.f;
      if (!row_metrics(p.logits + i * p.vocab, p.vocab, p.target[i % p.targets], p.ref_p ? p.ref_p + r * p.vocab : nullptr,
                       p.ref_p ? p.ref_ne[r] : 0.f, p.prob[i], p.logit_diff[i], p.correct[i], kl))
        ok = false;
      if (p.kl) p.kl[i] = kl;
    }
  });
  return ok.load();
}

}  // namespace mechscope::kernels
