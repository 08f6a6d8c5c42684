// The SSM scans against literal loops: segsum, Mamba1's log-depth scan, Mamba2's chunked SSD (lengths
// around the chunk size), the state-replacement recurrence, and the implicit attention matrices.
#include <cmath>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "core/model/scan.h"
#include "tests/support/test_support.h"

using namespace mechscope;
using mechscope::test::grads_of;
using mechscope::test::max_abs_diff;

namespace {

struct Mamba1Inputs {
  at::Tensor x, dt, A, B, C, D;
};
Mamba1Inputs mamba1_inputs(int64_t b, int64_t L, int64_t Dm, int64_t N, uint64_t seed) {
  at::manual_seed(seed);
  return {at::randn({b, L, Dm}), at::softplus(at::randn({b, L, Dm})), -at::exp(at::randn({Dm, N})),
          at::randn({b, L, N}), at::randn({b, L, N}), at::randn({Dm})};
}

struct Mamba2Inputs {
  at::Tensor x, dt, A, B, C, D;
};
Mamba2Inputs mamba2_inputs(int64_t b, int64_t L, int64_t H, int64_t P, int64_t G, int64_t N, bool d_hdim, uint64_t seed) {
  at::manual_seed(seed);
  return {at::randn({b, L, H, P}), at::softplus(at::randn({b, L, H})), -at::exp(at::randn({H})),
          at::randn({b, L, G, N}), at::randn({b, L, G, N}), d_hdim ? at::randn({H, P}) : at::randn({H})};
}

bool close(const at::Tensor& a, const at::Tensor& b, double tol = 1e-5) {
  return at::allclose(a, b, tol, tol);
}

}  // namespace

TEST(Scan, SegsumMatchesLiteralSums) {
  at::manual_seed(0);
  at::Tensor x = at::randn({2, 3, 7});
  at::Tensor s = segsum(x);
  ASSERT_EQ(s.sizes(), (std::vector<int64_t>{2, 3, 7, 7}));
  for (int64_t t = 0; t < 7; ++t)
    for (int64_t u = 0; u < 7; ++u) {
      at::Tensor got = s.select(-2, t).select(-1, u);
      if (u > t) {
        EXPECT_TRUE(at::all(got == -INFINITY).item<bool>());
      } else {
        at::Tensor want = at::zeros({2, 3});
        for (int64_t k = u + 1; k <= t; ++k) want += x.select(-1, k);
        EXPECT_LT(max_abs_diff(got, want), 1e-6) << t << "," << u;
      }
    }
}

TEST(Scan, Mamba1VectorisedScanEqualsLiteralRecurrence) {
  for (auto [b, L, Dm, N] : std::vector<std::array<int64_t, 4>>{{2, 1, 3, 4}, {2, 7, 5, 4}, {1, 33, 8, 16}, {3, 64, 4, 2}, {1, 100, 6, 3}}) {
    auto in = mamba1_inputs(b, L, Dm, N, 1 + L);
    at::Tensor fast = mamba1_scan(in.x, in.dt, in.A, in.B, in.C, in.D);
    at::Tensor ref = mamba1_scan_ref(in.x, in.dt, in.A, in.B, in.C, in.D);
    EXPECT_TRUE(close(fast, ref)) << "L=" << L << " diff " << max_abs_diff(fast, ref);
  }
}

TEST(Scan, Mamba1GradientsMatchRecurrence) {
  auto in = mamba1_inputs(2, 19, 5, 4, 3);
  at::manual_seed(9);
  at::Tensor w = at::randn({2, 19, 5});
  auto gf = grads_of([](const auto& v) { return mamba1_scan(v[0], v[1], v[2], v[3], v[4], v[5]); },
                     {in.x, in.dt, in.A, in.B, in.C, in.D}, w);
  auto gr = grads_of([](const auto& v) { return mamba1_scan_ref(v[0], v[1], v[2], v[3], v[4], v[5]); },
                     {in.x, in.dt, in.A, in.B, in.C, in.D}, w);
  for (size_t i = 0; i < gf.size(); ++i) EXPECT_TRUE(at::allclose(gf[i], gr[i], 1e-4, 1e-4)) << "input " << i << " diff " << max_abs_diff(gf[i], gr[i]);
}

TEST(Scan, Mamba2ChunkedSsdEqualsRecurrenceAroundChunkSize) {
  const int64_t chunk = 8;
  for (int64_t L : {1, 5, 7, 8, 9, 15, 16, 17, 30}) {
    for (int64_t G : {1, 2}) {
      for (bool d_hdim : {false, true}) {
        auto in = mamba2_inputs(2, L, 4, 3, G, 5, d_hdim, 100 + L);
        at::Tensor fast = mamba2_ssd(in.x, in.dt, in.A, in.B, in.C, in.D, chunk);
        at::Tensor ref = mamba2_scan_ref(in.x, in.dt, in.A, in.B, in.C, in.D);
        EXPECT_TRUE(close(fast, ref)) << "L=" << L << " G=" << G << " diff " << max_abs_diff(fast, ref);
      }
    }
  }
}

TEST(Scan, Mamba2ChunkedSsdIsStableForLongDecays) {
  // Large dt*|A| over a chunk would overflow exp(cumsum) differences; segsum keeps it finite.
  auto in = mamba2_inputs(1, 64, 2, 2, 1, 3, false, 7);
  in.dt = in.dt * 20;
  at::Tensor fast = mamba2_ssd(in.x, in.dt, in.A, in.B, in.C, in.D, 64);
  at::Tensor ref = mamba2_scan_ref(in.x, in.dt, in.A, in.B, in.C, in.D);
  ASSERT_TRUE(at::all(at::isfinite(fast)).item<bool>());
  EXPECT_TRUE(close(fast, ref)) << max_abs_diff(fast, ref);
}

TEST(Scan, Mamba2GradientsMatchRecurrence) {
  auto in = mamba2_inputs(2, 13, 4, 3, 2, 5, false, 4);
  at::manual_seed(9);
  at::Tensor w = at::randn({2, 13, 4, 3});
  auto gf = grads_of([](const auto& v) { return mamba2_ssd(v[0], v[1], v[2], v[3], v[4], v[5], 4); },
                     {in.x, in.dt, in.A, in.B, in.C, in.D}, w);
  auto gr = grads_of([](const auto& v) { return mamba2_scan_ref(v[0], v[1], v[2], v[3], v[4], v[5]); },
                     {in.x, in.dt, in.A, in.B, in.C, in.D}, w);
  for (size_t i = 0; i < gf.size(); ++i) EXPECT_TRUE(at::allclose(gf[i], gr[i], 1e-4, 1e-4)) << "input " << i << " diff " << max_abs_diff(gf[i], gr[i]);
}

TEST(Scan, StateReadoutsReproduceTheScans) {
  auto m1 = mamba1_inputs(2, 11, 3, 4, 5);
  at::Tensor dA, dBx;
  mamba1_discretize(m1.x, m1.dt, m1.A, m1.B, dA, dBx);
  EXPECT_TRUE(close(mamba1_readout(linear_scan_sequential(dA, dBx), m1.x, m1.C, m1.D), mamba1_scan_ref(m1.x, m1.dt, m1.A, m1.B, m1.C, m1.D)));
  auto m2 = mamba2_inputs(2, 11, 4, 3, 2, 5, true, 6);
  mamba2_discretize(m2.x, m2.dt, m2.A, m2.B, dA, dBx);
  EXPECT_TRUE(close(mamba2_readout(linear_scan_sequential(dA, dBx), m2.x, m2.C, m2.D), mamba2_scan_ref(m2.x, m2.dt, m2.A, m2.B, m2.C, m2.D)));
}

TEST(Scan, ReplacementCarriesForward) {
  at::manual_seed(2);
  const int64_t L = 9, t0 = 4;
  at::Tensor dA = at::rand({1, L, 3}), dBx = at::randn({1, L, 3});
  at::Tensor base = linear_scan_sequential(dA, dBx);
  at::Tensor replaced = at::zeros({1, L, 3}, at::kBool);
  replaced.select(1, t0).select(1, 1).fill_(true);  // one element at t0
  at::Tensor values = base.clone();
  values.select(1, t0).select(1, 1).fill_(5.0);
  at::Tensor out = linear_scan_with_replacement(dA, dBx, replaced, values);
  // Before t0: unchanged. At t0: the replaced element is 5, the others as before. After: recurrence from there.
  EXPECT_EQ(max_abs_diff(out.narrow(1, 0, t0), base.narrow(1, 0, t0)), 0.0);
  double h = 5.0;
  EXPECT_FLOAT_EQ(out[0][t0][1].item<float>(), 5.0f);
  for (int64_t t = t0 + 1; t < L; ++t) {
    h = dA[0][t][1].item<double>() * h + dBx[0][t][1].item<double>();
    EXPECT_NEAR(out[0][t][1].item<double>(), h, 1e-5);
    EXPECT_NEAR(out[0][t][0].item<double>(), base[0][t][0].item<double>(), 1e-6);  // other channels untouched
  }
}

TEST(Scan, Mamba2ImplicitAttentionMatchesTripleLoopAndReproducesY) {
  auto in = mamba2_inputs(1, 6, 2, 3, 1, 4, false, 8);
  at::Tensor M = mamba2_implicit_attention(in.dt, in.A, in.B, in.C, in.D);
  ASSERT_EQ(M.sizes(), (std::vector<int64_t>{1, 2, 6, 6}));
  for (int64_t h = 0; h < 2; ++h)
    for (int64_t t = 0; t < 6; ++t)
      for (int64_t s = 0; s < 6; ++s) {
        double want = 0;
        if (s <= t) {
          double acc = 0;
          for (int64_t k = s + 1; k <= t; ++k) acc += in.dt[0][k][h].item<double>();
          want = (in.C[0][t][0] * in.B[0][s][0]).sum().item<double>() * std::exp(in.A[h].item<double>() * acc) *
                 in.dt[0][s][h].item<double>();
          if (s == t) want += in.D[h].item<double>();
        }
        EXPECT_NEAR(M[0][h][t][s].item<double>(), want, 1e-5) << h << "," << t << "," << s;
      }
  // y_t = sum_s M[t, s] x_s: the matrix is the layer's exact linear map of x.
  at::Tensor y = at::einsum("bhts,bshp->bthp", {M, in.x});
  EXPECT_TRUE(close(y, mamba2_scan_ref(in.x, in.dt, in.A, in.B, in.C, in.D)));
}

TEST(Scan, Mamba1ImplicitAttentionMatchesTripleLoopAndReproducesY) {
  auto in = mamba1_inputs(2, 5, 3, 4, 9);
  for (int64_t budget : {int64_t(1) << 26, int64_t(30)}) {  // one block, then one channel at a time
    at::Tensor M = mamba1_implicit_attention(in.dt, in.A, in.B, in.C, budget);
    for (int64_t d = 0; d < 3; ++d)
      for (int64_t t = 0; t < 5; ++t)
        for (int64_t s = 0; s <= t; ++s) {
          double want = 0;
          for (int64_t n = 0; n < 4; ++n) {
            double acc = 0;
            for (int64_t k = s + 1; k <= t; ++k) acc += in.dt[1][k][d].item<double>() * in.A[d][n].item<double>();
            want += in.C[1][t][n].item<double>() * std::exp(acc) * in.dt[1][s][d].item<double>() * in.B[1][s][n].item<double>();
          }
          EXPECT_NEAR(M[1][d][t][s].item<double>(), want, 1e-5);
        }
    at::Tensor y = at::einsum("bdts,bsd->btd", {M, in.x}) + in.x * in.D;
    EXPECT_TRUE(close(y, mamba1_scan_ref(in.x, in.dt, in.A, in.B, in.C, in.D)));
  }
}
