// The CUDA scans' functors and launch plans (kernels/cuda/scan_device.h), run on the host thread by thread
// in a shuffled order within each phase (so no thread may depend on another of its phase, as on a GPU),
// against the plain LibTorch reference twins: outputs, states and all six gradients, over several shapes,
// including state sizes that are not a power of two (the kN padding) and grouped Mamba2 heads.
// The GPU itself runs the same code (tests Kernels.Cuda* run it where a GPU is present).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

#include "core/model/scan.h"
#include "kernels/cuda/scan_device.h"
#include "tests/support/test_support.h"

using namespace mechscope;
using mechscope::test::grads_of;
using mechscope::test::max_abs_diff;

namespace {

// Runs a phase's threads in a random order: a hidden dependence between threads of one phase shows up.
struct HostExec {
  std::mt19937_64* rng;
  int64_t* phases;
  template <class F>
  void operator()(int64_t count, const F& f) const {
    std::vector<int64_t> order(count);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), *rng);
    for (int64_t i : order) f(i);
    ++*phases;
  }
};

float* fp(const at::Tensor& t) { return t.data_ptr<float>(); }

void expect_close(const at::Tensor& a, const at::Tensor& b, double tol, const std::string& what) {
  EXPECT_TRUE(at::allclose(a, b, tol, tol)) << what << ": max diff " << max_abs_diff(a, b);
}

}  // namespace

TEST(CudaEmulation, SelectiveScanPlanMatchesReference) {
  std::mt19937_64 rng(7);
  for (auto [b, L, D, N] : std::vector<std::array<int64_t, 4>>{{1, 1, 3, 2}, {2, 9, 17, 4}, {3, 21, 33, 16}, {1, 30, 8, 5}, {2, 6, 4, 40}}) {
    at::manual_seed(b * 100 + L + N);
    at::Tensor x = at::randn({b, L, D}), dt = at::softplus(at::randn({b, L, D})), A = -at::exp(at::randn({D, N}));
    at::Tensor B = at::randn({b, L, N}), C = at::randn({b, L, N}), Dk = at::randn({D}), w = at::randn({b, L, D});
    const std::string shape = "B=" + std::to_string(b) + " L=" + std::to_string(L) + " D=" + std::to_string(D) + " N=" + std::to_string(N);
    kernels::SelectiveScanParams p;
    p.batch = b, p.seqlen = L, p.dim = D, p.dstate = N;
    p.x = fp(x), p.dt = fp(dt), p.A = fp(A), p.Bm = fp(B), p.Cm = fp(C), p.Dskip = fp(Dk);
    at::Tensor y = at::full({b, L, D}, NAN), states = at::full({b, L, D, N}, NAN);
    p.y = fp(y), p.states = fp(states);
    int64_t phases = 0;
    at::Tensor dA, dBx;
    mamba1_discretize(x, dt, A, B, dA, dBx);
    // One chunk (the default for short inputs), and chunks of 8 and 7 steps (several, the last one partial).
    for (int64_t T : {kernels::cuda::kChunk, int64_t{8}, int64_t{7}}) {
      y.fill_(NAN), states.fill_(NAN), phases = 0;
      std::vector<float> fws(kernels::cuda::selective_scan_fwd_workspace(p, T) + 1, NAN);
      kernels::cuda::selective_scan_fwd_plan(p, HostExec{&rng, &phases}, fws.data(), T);
      EXPECT_EQ(phases, (L + T - 1) / T > 1 ? 3 : 1);
      expect_close(y, mamba1_scan_ref(x, dt, A, B, C, Dk), 1e-5, "y " + shape + " chunk " + std::to_string(T));
      expect_close(states, linear_scan_sequential(dA, dBx), 1e-5, "states " + shape + " chunk " + std::to_string(T));
    }

    // Backward: every output buffer starts as NaN, so a gradient the plan forgets to write shows.
    std::vector<at::Tensor> out;
    for (const auto& t : {x, dt, A, B, C, Dk}) out.push_back(at::full_like(t, NAN));
    kernels::SelectiveScanGrads g{fp(w), fp(out[0]), fp(out[1]), fp(out[2]), fp(out[3]), fp(out[4]), fp(out[5])};
    p.y = nullptr, p.states = nullptr;
    std::vector<float> ws(kernels::cuda::selective_scan_bwd_workspace(p), NAN);
    phases = 0;
    kernels::cuda::selective_scan_bwd_plan(p, g, ws.data(), HostExec{&rng, &phases});
    EXPECT_EQ(phases, 5);
    auto gr = grads_of([](const auto& v) { return mamba1_scan_ref(v[0], v[1], v[2], v[3], v[4], v[5]); },
                       {x, dt, A, B, C, Dk}, w);
    const char* names[] = {"dx", "ddt", "dA", "dB", "dC", "dD"};
    for (int i = 0; i < 6; ++i)
      expect_close(out[i], gr[i], 1e-4 * (1 + gr[i].abs().max().item<double>()), std::string(names[i]) + " " + shape);
  }
}

TEST(CudaEmulation, SsdPlanMatchesReference) {
  std::mt19937_64 rng(11);
  struct Shape { int64_t b, L, H, P, G, N; bool d_hdim; };
  for (auto s : std::vector<Shape>{{1, 1, 2, 3, 1, 4, false}, {2, 11, 4, 3, 2, 5, false}, {2, 23, 6, 8, 3, 16, true}, {1, 40, 2, 4, 1, 8, false}, {1, 5, 2, 2, 2, 33, true}}) {
    at::manual_seed(s.L * 7 + s.H);
    at::Tensor x = at::randn({s.b, s.L, s.H, s.P}), dt = at::softplus(at::randn({s.b, s.L, s.H})), A = -at::exp(at::randn({s.H}));
    at::Tensor B = at::randn({s.b, s.L, s.G, s.N}), C = at::randn({s.b, s.L, s.G, s.N});
    at::Tensor Dk = s.d_hdim ? at::randn({s.H, s.P}) : at::randn({s.H}), w = at::randn({s.b, s.L, s.H, s.P});
    const std::string shape = "L=" + std::to_string(s.L) + " H=" + std::to_string(s.H) + " G=" + std::to_string(s.G) + " N=" + std::to_string(s.N);
    kernels::SsdParams p;
    p.batch = s.b, p.seqlen = s.L, p.nheads = s.H, p.headdim = s.P, p.ngroups = s.G, p.dstate = s.N, p.d_has_hdim = s.d_hdim;
    p.x = fp(x), p.dt = fp(dt), p.A = fp(A), p.Bm = fp(B), p.Cm = fp(C), p.Dskip = fp(Dk);
    at::Tensor y = at::full({s.b, s.L, s.H, s.P}, NAN), states = at::full({s.b, s.L, s.H, s.P, s.N}, NAN);
    p.y = fp(y), p.states = fp(states);
    int64_t phases = 0;
    at::Tensor dA, dBx;
    mamba2_discretize(x, dt, A, B, dA, dBx);
    for (int64_t T : {kernels::cuda::kChunk, int64_t{8}, int64_t{7}}) {
      y.fill_(NAN), states.fill_(NAN), phases = 0;
      std::vector<float> fws(kernels::cuda::ssd_fwd_workspace(p, T) + 1, NAN);
      kernels::cuda::ssd_fwd_plan(p, HostExec{&rng, &phases}, fws.data(), T);
      EXPECT_EQ(phases, (s.L + T - 1) / T > 1 ? 3 : 1);
      expect_close(y, mamba2_scan_ref(x, dt, A, B, C, Dk), 1e-5, "y " + shape + " chunk " + std::to_string(T));
      expect_close(states, linear_scan_sequential(dA, dBx), 1e-5, "states " + shape + " chunk " + std::to_string(T));
    }

    std::vector<at::Tensor> out;
    for (const auto& t : {x, dt, A, B, C, Dk}) out.push_back(at::full_like(t, NAN));
    kernels::SsdGrads g{fp(w), fp(out[0]), fp(out[1]), fp(out[2]), fp(out[3]), fp(out[4]), fp(out[5])};
    p.y = nullptr, p.states = nullptr;
    std::vector<float> ws(kernels::cuda::ssd_bwd_workspace(p), NAN);
    phases = 0;
    kernels::cuda::ssd_bwd_plan(p, g, ws.data(), HostExec{&rng, &phases});
    EXPECT_EQ(phases, 6);
    auto gr = grads_of([](const auto& v) { return mamba2_scan_ref(v[0], v[1], v[2], v[3], v[4], v[5]); },
                       {x, dt, A, B, C, Dk}, w);
    const char* names[] = {"dx", "ddt", "dA", "dB", "dC", "dD"};
    for (int i = 0; i < 6; ++i)
      expect_close(out[i], gr[i], 1e-4 * (1 + gr[i].abs().max().item<double>()), std::string(names[i]) + " " + shape);
  }
}

TEST(CudaEmulation, StateSizeOutsideTheSupportedRangeIsRefused) {
  kernels::SelectiveScanParams p;
  p.batch = 1, p.seqlen = 1, p.dim = 1, p.dstate = kernels::cuda::kMaxState + 1;
  try {
    kernels::cuda::selective_scan_fwd_plan(p, [](int64_t, const auto&) {});
    FAIL() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("state size 257"), std::string::npos) << e.what();
  }
}
