// The fast scan kernels against their plain LibTorch reference twins (core/model/scan.cpp): outputs,
// per-position states and gradients over several shapes (fixed seeds), shape errors, and the model with
// the fast path on and off.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "core/engine/runtime.h"
#include "core/model/hooks.h"
#include "core/model/model.h"
#include "core/model/block.h"
#include "core/model/scan.h"
#include "kernels/binding/scan_ops.h"
#include "tests/support/test_support.h"

using namespace mechscope;
using mechscope::test::grads_of;
using mechscope::test::max_abs_diff;

namespace {

void expect_close(const at::Tensor& a, const at::Tensor& b, double tol, const std::string& what) {
  EXPECT_TRUE(at::allclose(a, b, tol, tol)) << what << ": max diff " << max_abs_diff(a, b);
}

}  // namespace

TEST(Kernels, SelectiveScanMatchesReferenceOutputsStatesAndGradients) {
  for (auto [b, L, D, N] : std::vector<std::array<int64_t, 4>>{{1, 1, 3, 2}, {2, 9, 17, 4}, {3, 40, 33, 16}, {1, 70, 8, 5}}) {
    at::manual_seed(b * 100 + L);
    at::Tensor x = at::randn({b, L, D}), dt = at::softplus(at::randn({b, L, D})), A = -at::exp(at::randn({D, N}));
    at::Tensor B = at::randn({b, L, N}), C = at::randn({b, L, N}), Dk = at::randn({D}), w = at::randn({b, L, D});
    const std::string shape = "B=" + std::to_string(b) + " L=" + std::to_string(L) + " D=" + std::to_string(D);
    expect_close(kernels::selective_scan(x, dt, A, B, C, Dk), mamba1_scan_ref(x, dt, A, B, C, Dk), 1e-5, "y " + shape);
    auto [y, states] = kernels::selective_scan_states(x, dt, A, B, C, Dk);
    at::Tensor dA, dBx;
    mamba1_discretize(x, dt, A, B, dA, dBx);
    expect_close(states, linear_scan_sequential(dA, dBx), 1e-5, "states " + shape);
    // From an initial state: the rest of a sequence, against the literal recurrence from h0.
    at::Tensor h0 = at::randn({b, D, N});
    expect_close(kernels::selective_scan_from(x, dt, A, B, C, Dk, h0),
                 mamba1_readout(linear_scan_sequential(dA, dBx, h0), x, C, Dk), 1e-5, "y from h0 " + shape);
    auto gf = grads_of([](const auto& v) { return kernels::selective_scan(v[0], v[1], v[2], v[3], v[4], v[5]); },
                       {x, dt, A, B, C, Dk}, w);
    auto gr = grads_of([](const auto& v) { return mamba1_scan_ref(v[0], v[1], v[2], v[3], v[4], v[5]); },
                       {x, dt, A, B, C, Dk}, w);
    const char* names[] = {"dx", "ddt", "dA", "dB", "dC", "dD"};
    for (int i = 0; i < 6; ++i) expect_close(gf[i], gr[i], 1e-4 * (1 + gr[i].abs().max().item<double>()), std::string(names[i]) + " " + shape);
  }
}

TEST(Kernels, SsdScanMatchesReferenceOutputsStatesAndGradients) {
  struct Shape { int64_t b, L, H, P, G, N; bool d_hdim; };
  for (auto s : std::vector<Shape>{{1, 1, 2, 3, 1, 4, false}, {2, 11, 4, 3, 2, 5, false}, {2, 33, 6, 8, 3, 16, true}, {1, 64, 2, 4, 1, 8, false}}) {
    at::manual_seed(s.L * 7 + s.H);
    at::Tensor x = at::randn({s.b, s.L, s.H, s.P}), dt = at::softplus(at::randn({s.b, s.L, s.H})), A = -at::exp(at::randn({s.H}));
    at::Tensor B = at::randn({s.b, s.L, s.G, s.N}), C = at::randn({s.b, s.L, s.G, s.N});
    at::Tensor Dk = s.d_hdim ? at::randn({s.H, s.P}) : at::randn({s.H}), w = at::randn({s.b, s.L, s.H, s.P});
    const std::string shape = "L=" + std::to_string(s.L) + " H=" + std::to_string(s.H) + " G=" + std::to_string(s.G);
    at::Tensor ref = mamba2_scan_ref(x, dt, A, B, C, Dk);
    expect_close(kernels::ssd_scan(x, dt, A, B, C, Dk), ref, 1e-5, "y " + shape);
    {  // inference reads x, B and C as views of one split projection (row strides), as the model passes them
      at::Tensor xbc = at::cat({x.flatten(2), B.flatten(2), C.flatten(2), at::randn({s.b, s.L, 3})}, -1);
      auto parts = xbc.split_with_sizes({s.H * s.P, s.G * s.N, s.G * s.N, 3}, -1);
      at::Tensor xv = parts[0].unflatten(-1, {s.H, s.P}), Bv = parts[1].unflatten(-1, {s.G, s.N});
      at::Tensor Cv = parts[2].unflatten(-1, {s.G, s.N});
      if (s.L > 1) EXPECT_FALSE(xv.is_contiguous());
      expect_close(kernels::ssd_scan(xv, dt, A, Bv, Cv, Dk), ref, 1e-5, "y from strided views " + shape);
    }
    expect_close(mamba2_ssd(x, dt, A, B, C, Dk, 8), ref, 1e-5, "chunked y " + shape);
    auto [y, states] = kernels::ssd_scan_states(x, dt, A, B, C, Dk);
    at::Tensor dA, dBx;
    mamba2_discretize(x, dt, A, B, dA, dBx);
    expect_close(states, linear_scan_sequential(dA, dBx), 1e-5, "states " + shape);
    auto gf = grads_of([](const auto& v) { return kernels::ssd_scan(v[0], v[1], v[2], v[3], v[4], v[5]); },
                       {x, dt, A, B, C, Dk}, w);
    auto gr = grads_of([](const auto& v) { return mamba2_scan_ref(v[0], v[1], v[2], v[3], v[4], v[5]); },
                       {x, dt, A, B, C, Dk}, w);
    const char* names[] = {"dx", "ddt", "dA", "dB", "dC", "dD"};
    for (int i = 0; i < 6; ++i) expect_close(gf[i], gr[i], 1e-4 * (1 + gr[i].abs().max().item<double>()), std::string(names[i]) + " " + shape);
  }
}

// The short convolution against at::conv1d (groups = C, padding K-1, first L outputs): values and the
// gradients of x, weight and bias, over channel counts around the kernel's block of 32, widths 1-4 and
// sequences shorter than the width.
TEST(Kernels, CausalConvMatchesConv1dValuesAndGradients) {
  for (auto [b, L, C, K] : std::vector<std::array<int64_t, 4>>{{1, 1, 3, 4}, {2, 3, 33, 4}, {3, 17, 64, 4}, {2, 9, 40, 2}, {1, 5, 7, 1}}) {
    for (bool with_bias : {true, false}) {
      at::manual_seed(b * 1000 + L * 10 + C);
      at::Tensor x = at::randn({b, L, C}), w = at::randn({C, 1, K}), bias = with_bias ? at::randn({C}) : at::Tensor();
      at::Tensor dy = at::randn({b, L, C});
      const std::string shape = "B=" + std::to_string(b) + " L=" + std::to_string(L) + " C=" + std::to_string(C) +
                                " K=" + std::to_string(K) + (with_bias ? " bias" : "");
      auto run = [&](bool fast) {
        at::Tensor xg = x.clone().requires_grad_(true), wg = w.clone().requires_grad_(true);
        at::Tensor bg = with_bias ? bias.clone().requires_grad_(true) : at::Tensor();
        at::Tensor y = fast ? kernels::causal_conv1d(xg, wg, bg)
                            : at::conv1d(xg.transpose(1, 2), wg, bg, 1, K - 1, 1, C).narrow(2, 0, L).transpose(1, 2);
        (y * dy).sum().backward();
        return std::vector<at::Tensor>{y.detach(), xg.grad(), wg.grad(), with_bias ? bg.grad() : at::zeros({1})};
      };
      auto f = run(true), r = run(false);
      const char* names[] = {"y", "dx", "dw", "dbias"};
      for (int i = 0; i < 4; ++i) expect_close(f[i], r[i], 1e-4 * (1 + r[i].abs().max().item<double>()), std::string(names[i]) + " " + shape);
    }
  }
  EXPECT_THROW(kernels::causal_conv1d(at::randn({1, 4, 3}), at::randn({5, 1, 4}), at::Tensor()), c10::Error);
}

TEST(Kernels, CausalConvInferenceReadsStridedInputs) {
  // Without a gradient the kernel reads a split projection where it lies (row stride > C): every width the
  // unrolled paths take (1-8) and the general one (9, 16), full and partial channel blocks, sequences shorter
  // than the width.
  at::NoGradGuard no_grad;
  for (int64_t K : {1, 2, 3, 4, 5, 8, 9, 16})
    for (auto [L, C] : std::vector<std::pair<int64_t, int64_t>>{{20, 64}, {3, 40}, {17, 33}}) {
      at::manual_seed(K * 100 + L + C);
      at::Tensor wide = at::randn({3, L, C + 11}), w = at::randn({C, 1, K}), bias = at::randn({C});
      at::Tensor x = wide.narrow(2, 5, C);
      at::Tensor got = kernels::causal_conv1d(x, w, bias);
      at::Tensor want = at::conv1d(x.transpose(1, 2), w, bias, 1, K - 1, 1, C).narrow(2, 0, L).transpose(1, 2);
      expect_close(got, want, 1e-5 * (1 + want.abs().max().item<double>()),
                   "K=" + std::to_string(K) + " L=" + std::to_string(L) + " C=" + std::to_string(C));
    }
}

TEST(Kernels, ShapeErrorsNameTheTensor) {
  at::Tensor x = at::randn({2, 5, 4}), dt = at::rand({2, 5, 4}), A = -at::rand({4, 3});
  at::Tensor B = at::randn({2, 5, 3}), C = at::randn({2, 6, 3}), D = at::randn({4});
  try {
    kernels::selective_scan(x, dt, A, B, C, D);
    FAIL();
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("C must have shape"), std::string::npos) << e.what();
  }
  EXPECT_THROW(kernels::selective_scan(x.to(at::kDouble), dt, A, B, B, D), c10::Error);
  EXPECT_THROW(kernels::ssd_scan(at::randn({1, 3, 4, 2}), at::rand({1, 3, 4}), -at::rand({4}), at::randn({1, 3, 3, 2}),
                                 at::randn({1, 3, 3, 2}), at::randn({4})),
               c10::Error);  // 4 heads, 3 groups
}

TEST(Kernels, ModelTrainsTheSameWithAndWithoutTheFastPath) {
  for (const auto& preset : {"mamba1", "mamba2", "hybrid"}) {
    at::Tensor toks = mechscope::test::random_tokens(3, 13, 37, 2);
    std::vector<at::Tensor> logits, grads;
    for (bool fast : {false, true}) {
      kernels::set_fast_scan_enabled(fast);
      LanguageModel m(mechscope::test::small_config(preset), 4);
      at::Tensor out = m.forward(toks);
      at::cross_entropy_loss(out.reshape({-1, out.size(-1)}), toks.reshape({-1})).backward();
      logits.push_back(out.detach());
      std::vector<at::Tensor> g;
      for (auto& p : m.parameters()) g.push_back(p.grad().reshape({-1}));
      grads.push_back(at::cat(g));
    }
    kernels::set_fast_scan_enabled(true);
    expect_close(logits[0], logits[1], 1e-5, std::string(preset) + " logits");
    expect_close(grads[0], grads[1], 1e-4, std::string(preset) + " parameter gradients");
  }
}

// The rows-only attention kernel (kernels/cpu/rows_attention.cpp) against the ATen expressions it replaces, through
// the attention module's partial run at chosen query rows: one and several heads, grouped keys and values, biases,
// partial and interleaved rotary, no rotary, a head size that is not a multiple of 8, more keys than one 64-key
// tile, shared and per-example rows (position 0, the last position, repeats).
TEST(Kernels, RowsAttentionEqualsTheReferencePath) {
  const std::vector<nlohmann::json> cases = {
      nlohmann::json::object(),
      {{"attn_cfg", {{"num_heads", 4}, {"num_heads_kv", 2}}}},
      {{"attn_cfg", {{"num_heads", 2}, {"qkv_proj_bias", true}, {"rotary_emb_interleaved", true}, {"rotary_emb_dim", 6}}}},
      {{"attn_cfg", {{"num_heads", 2}, {"rotary_emb_dim", 0}}}},
      {{"d_model", 40}, {"attn_cfg", {{"num_heads", 2}, {"rotary_emb_dim", 12}}}},  // head size 20
      {{"d_model", 64}, {"attn_cfg", {{"num_heads", 1}, {"head_dim", 64}, {"rotary_emb_dim", 64}}}}};
  for (const auto& overrides : cases) {
    LanguageModel m(mechscope::test::small_config("transformer", overrides), 7);
    MixerImpl* attn = &m.block(0).mixer();
    at::NoGradGuard ng;
    for (const int64_t L : {11, 70}) {
      at::manual_seed(L);
      const at::Tensor x = at::randn({3, L, m.config().d_model});
      auto longs = [](std::vector<int64_t> v) { return at::tensor(v, at::kLong); };
      const at::Tensor per = at::stack({longs({L - 1, 3, 3, 0}), longs({0, 1, 2, 3}), at::randint(0, L, {4}, at::kLong)});
      const at::Tensor shared = longs({5, L - 1, 0, 5}).unsqueeze(0);
      for (const at::Tensor& rows : {per, shared}) {
        const std::string what = overrides.dump() + " L " + std::to_string(L) + " rows " + std::to_string(rows.size(0));
        kernels::set_fast_scan_enabled(false);
        const at::Tensor ref = attn->forward(x, Partial{nullptr, &rows}, nullptr);
        kernels::set_fast_scan_enabled(true);
        const at::Tensor fast = attn->forward(x, Partial{nullptr, &rows}, nullptr);
        ASSERT_EQ(fast.sizes(), ref.sizes()) << what;
        EXPECT_LT(max_abs_diff(fast, ref), 2e-6) << what;
        // A context that reads the scores takes the reference path: the same bits as with the kernel off.
        HookContext ctx;
        ctx.cache({"blocks.0.attn.hook_attn_scores"});
        EXPECT_TRUE(at::equal(attn->forward(x, Partial{nullptr, &rows}, &ctx), ref)) << what;
        // hook_z alone keeps the kernel and sees its output.
        HookContext zctx;
        zctx.cache({"blocks.0.attn.hook_z"});
        EXPECT_TRUE(at::equal(attn->forward(x, Partial{nullptr, &rows}, &zctx), fast)) << what;
        EXPECT_EQ(zctx.cached().at("blocks.0.attn.hook_z").size(1), rows.size(1)) << what;
      }
    }
  }
}

// An infinite input makes non-finite scores: the kernel declines and the ATen path decides what they give.
TEST(Kernels, RowsAttentionLeavesNonFiniteScoresToTheReferencePath) {
  LanguageModel m(mechscope::test::small_config("transformer"), 7);
  MixerImpl* attn = &m.block(0).mixer();
  at::NoGradGuard ng;
  at::Tensor x = at::randn({2, 9, m.config().d_model});
  x[1][4] = std::numeric_limits<float>::infinity();
  const at::Tensor rows = at::tensor(std::vector<int64_t>{8, 2, 3, 8}, at::kLong).view({2, 2});
  kernels::set_fast_scan_enabled(false);
  const at::Tensor ref = attn->forward(x, Partial{nullptr, &rows}, nullptr);
  kernels::set_fast_scan_enabled(true);
  const at::Tensor fast = attn->forward(x, Partial{nullptr, &rows}, nullptr);
  EXPECT_TRUE(at::equal(at::isnan(fast), at::isnan(ref)));
  EXPECT_GT(at::isnan(ref).sum().item<int64_t>(), 0);  // example 1's row at position 8 reads the infinite key
  const at::Tensor ok = at::isfinite(ref);
  EXPECT_TRUE(at::equal(fast.masked_select(ok), ref.masked_select(ok)));
}

// The CUDA kernels on a GPU against the CPU reference (outputs, states, gradients). Skipped in a build
// without them or on a machine without a GPU; their arithmetic is also covered by CudaEmulation.*.
namespace {
bool cuda_ready() { return kernels::cuda_scan_built() && at::hasCUDA(); }

std::vector<at::Tensor> to_cuda(const std::vector<at::Tensor>& v) {
  std::vector<at::Tensor> out;
  for (const auto& t : v) out.push_back(t.to(at::kCUDA));
  return out;
}
}  // namespace

TEST(Kernels, CudaSelectiveScanMatchesReference) {
  if (!cuda_ready()) GTEST_SKIP() << "no CUDA kernels in this build or no GPU";
  for (auto [b, L, D, N] : std::vector<std::array<int64_t, 4>>{{1, 1, 3, 2}, {2, 37, 70, 16}, {3, 300, 130, 16}, {1, 64, 40, 64}}) {
    at::manual_seed(b * 100 + L);
    std::vector<at::Tensor> in{at::randn({b, L, D}), at::softplus(at::randn({b, L, D})), -at::exp(at::randn({D, N})),
                               at::randn({b, L, N}), at::randn({b, L, N}), at::randn({D})};
    at::Tensor w = at::randn({b, L, D});
    const std::string shape = "B=" + std::to_string(b) + " L=" + std::to_string(L) + " D=" + std::to_string(D);
    auto c = to_cuda(in);
    ASSERT_TRUE(kernels::fast_scan_applies(c[0]));
    expect_close(kernels::selective_scan(c[0], c[1], c[2], c[3], c[4], c[5]).cpu(),
                 mamba1_scan_ref(in[0], in[1], in[2], in[3], in[4], in[5]), 1e-4, "y " + shape);
    auto [y, states] = kernels::selective_scan_states(c[0], c[1], c[2], c[3], c[4], c[5]);
    at::Tensor dA, dBx;
    mamba1_discretize(in[0], in[1], in[2], in[3], dA, dBx);
    expect_close(states.cpu(), linear_scan_sequential(dA, dBx), 1e-4, "states " + shape);
    auto gf = grads_of([](const auto& v) { return kernels::selective_scan(v[0], v[1], v[2], v[3], v[4], v[5]); }, c, w.cuda());
    auto gr = grads_of([](const auto& v) { return mamba1_scan_ref(v[0], v[1], v[2], v[3], v[4], v[5]); }, in, w);
    const char* names[] = {"dx", "ddt", "dA", "dB", "dC", "dD"};
    for (int i = 0; i < 6; ++i)
      expect_close(gf[i].cpu(), gr[i], 1e-4 * (1 + gr[i].abs().max().item<double>()), std::string(names[i]) + " " + shape);
  }
}

TEST(Kernels, CudaSsdScanMatchesReference) {
  if (!cuda_ready()) GTEST_SKIP() << "no CUDA kernels in this build or no GPU";
  struct Shape { int64_t b, L, H, P, G, N; bool d_hdim; };
  for (auto s : std::vector<Shape>{{1, 1, 2, 3, 1, 4, false}, {2, 45, 4, 16, 2, 16, false}, {2, 257, 8, 64, 1, 64, true}, {1, 9, 2, 4, 2, 128, false}}) {
    at::manual_seed(s.L * 7 + s.H);
    std::vector<at::Tensor> in{at::randn({s.b, s.L, s.H, s.P}), at::softplus(at::randn({s.b, s.L, s.H})), -at::exp(at::randn({s.H})),
                               at::randn({s.b, s.L, s.G, s.N}), at::randn({s.b, s.L, s.G, s.N}),
                               s.d_hdim ? at::randn({s.H, s.P}) : at::randn({s.H})};
    at::Tensor w = at::randn({s.b, s.L, s.H, s.P});
    const std::string shape = "L=" + std::to_string(s.L) + " H=" + std::to_string(s.H) + " N=" + std::to_string(s.N);
    auto c = to_cuda(in);
    expect_close(kernels::ssd_scan(c[0], c[1], c[2], c[3], c[4], c[5]).cpu(),
                 mamba2_scan_ref(in[0], in[1], in[2], in[3], in[4], in[5]), 1e-4, "y " + shape);
    auto gf = grads_of([](const auto& v) { return kernels::ssd_scan(v[0], v[1], v[2], v[3], v[4], v[5]); }, c, w.cuda());
    auto gr = grads_of([](const auto& v) { return mamba2_scan_ref(v[0], v[1], v[2], v[3], v[4], v[5]); }, in, w);
    const char* names[] = {"dx", "ddt", "dA", "dB", "dC", "dD"};
    for (int i = 0; i < 6; ++i)
      expect_close(gf[i].cpu(), gr[i], 1e-4 * (1 + gr[i].abs().max().item<double>()), std::string(names[i]) + " " + shape);
  }
}

// OpenBLAS 0.3.21 falls back to its SSE3 (Prescott) kernels on Intel CPUs newer than its table; select_blas_core
// chooses again by the CPU's own features. On such a CPU (this machine's Emerald Rapids) the core is Prescott
// before the call; after it no CPU with AVX runs Prescott, and the products it computes still match a plain sum.
TEST(Kernels, OpenBlasRunsKernelsTheCpuSupports) {
  if (blas_core().empty()) GTEST_SKIP() << "OpenBLAS is not the BLAS loaded";
  if (std::getenv("OPENBLAS_CORETYPE")) GTEST_SKIP() << "OPENBLAS_CORETYPE is set: the user's choice stands";
  select_blas_core();
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx")) EXPECT_NE(blas_core(), "Prescott");
  at::manual_seed(3);
  at::Tensor a = at::randn({70, 300}), b = at::randn({300, 90});
  at::Tensor ref = (a.unsqueeze(2).to(at::kDouble) * b.unsqueeze(0).to(at::kDouble)).sum(1);
  expect_close(at::mm(a, b).to(at::kDouble), ref, 1e-3, "mm after select_blas_core (" + blas_core() + ")");
}

// MechScope's own parallel loops (at::parallel_for is an inline template: without -fopenmp in our build it runs
// on one thread). With two threads the kernels split their tasks across the team; each task computes the same
// values whatever the split, and the backward passes reduce their partial sums in a fixed order, so one thread
// and two give the same bits.
TEST(Kernels, ParallelLoopsAreBuiltAndGiveTheSameBitsOnOneThreadAndTwo) {
  EXPECT_TRUE(runtime_info().parallel_loops) << "core was compiled without OpenMP: its parallel_for loops run serially";
  const int before = at::get_num_threads();
  at::manual_seed(5);
  at::Tensor x1 = at::randn({3, 40, 33}), dt1 = at::softplus(at::randn({3, 40, 33})), A1 = -at::exp(at::randn({33, 8}));
  at::Tensor B1 = at::randn({3, 40, 8}), C1 = at::randn({3, 40, 8}), D1 = at::randn({33}), w1 = at::randn({3, 40, 33});
  at::Tensor x2 = at::randn({3, 33, 6, 8}), dt2 = at::softplus(at::randn({3, 33, 6})), A2 = -at::exp(at::randn({6}));
  at::Tensor B2 = at::randn({3, 33, 2, 16}), C2 = at::randn({3, 33, 2, 16}), D2 = at::randn({6}), w2 = at::randn({3, 33, 6, 8});
  auto run = [&](int threads) {
    at::set_num_threads(threads);
    std::vector<at::Tensor> out = {kernels::selective_scan(x1, dt1, A1, B1, C1, D1), kernels::ssd_scan(x2, dt2, A2, B2, C2, D2)};
    for (auto& g : grads_of([](const auto& v) { return kernels::selective_scan(v[0], v[1], v[2], v[3], v[4], v[5]); },
                            {x1, dt1, A1, B1, C1, D1}, w1))
      out.push_back(g);
    for (auto& g : grads_of([](const auto& v) { return kernels::ssd_scan(v[0], v[1], v[2], v[3], v[4], v[5]); },
                            {x2, dt2, A2, B2, C2, D2}, w2))
      out.push_back(g);
    return out;
  };
  auto one = run(1), two = run(2);
  at::set_num_threads(before);
  ASSERT_EQ(one.size(), two.size());
  for (size_t i = 0; i < one.size(); ++i) EXPECT_TRUE(at::equal(one[i], two[i])) << "output " << i << ": max diff " << max_abs_diff(one[i], two[i]);
}
