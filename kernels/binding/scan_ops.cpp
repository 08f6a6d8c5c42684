// Binding of the scan kernels: shape checks (TORCH_CHECK with the expected and found shapes), autograd
// Functions, dispatch to the CPU kernels or (built with MECHSCOPE_WITH_CUDA) the CUDA kernels.
#include "kernels/binding/scan_ops.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <torch/autograd.h>

#include "kernels/cpu/scan_params.h"

#if defined(MECHSCOPE_WITH_CUDA)
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "kernels/cuda/scan_cuda.h"
#endif

namespace mechscope::kernels {

namespace {

std::atomic<int> g_enabled{-1};

#define CHECK_SHAPE(t, ...)                                                                              \
  TORCH_CHECK((t).sizes() == at::IntArrayRef({__VA_ARGS__}), #t " must have shape [" #__VA_ARGS__ "] = ", \
              at::IntArrayRef({__VA_ARGS__}), ", found ", (t).sizes())

void check_common(const std::initializer_list<at::Tensor>& ts) {
  const at::Device dev = ts.begin()->device();
  for (const auto& t : ts) {
    TORCH_CHECK(t.device() == dev, "fast scan: tensors must be on one device, found ", dev, " and ", t.device());
    TORCH_CHECK(t.scalar_type() == at::kFloat, "fast scan: tensors must be float32, found ", t.scalar_type());
  }
#if defined(MECHSCOPE_WITH_CUDA)
  TORCH_CHECK(dev.is_cpu() || dev.is_cuda(), "fast scan: tensors must be on the CPU or a CUDA device, found ", dev);
#else
  TORCH_CHECK(dev.is_cpu(), "fast scan: tensors must be on the CPU (this build has no CUDA kernels), found ", dev);
#endif
}

SelectiveScanParams m1_params(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& A, const at::Tensor& B,
                              const at::Tensor& C, const at::Tensor& D) {
  TORCH_CHECK(x.dim() == 3, "selective_scan: x must be [batch, L, D], found ", x.sizes());
  const int64_t b = x.size(0), L = x.size(1), d = x.size(2);
  TORCH_CHECK(A.dim() == 2 && A.size(0) == d, "selective_scan: A must be [D, N] with D = ", d, ", found ", A.sizes());
  const int64_t n = A.size(1);
  CHECK_SHAPE(dt, b, L, d);
  CHECK_SHAPE(B, b, L, n);
  CHECK_SHAPE(C, b, L, n);
  CHECK_SHAPE(D, d);
  check_common({x, dt, A, B, C, D});
  for (const auto& t : {x, dt, A, B, C, D}) TORCH_CHECK(t.is_contiguous(), "selective_scan: inputs must be contiguous");
  SelectiveScanParams p;
  p.batch = b;
  p.seqlen = L;
  p.dim = d;
  p.dstate = n;
  p.x = x.data_ptr<float>();
  p.dt = dt.data_ptr<float>();
  p.A = A.data_ptr<float>();
  p.Bm = B.data_ptr<float>();
  p.Cm = C.data_ptr<float>();
  p.Dskip = D.data_ptr<float>();
  return p;
}

SsdParams m2_params(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& A, const at::Tensor& B,
                    const at::Tensor& C, const at::Tensor& D, bool row_strides = false) {
  TORCH_CHECK(x.dim() == 4, "ssd_scan: x must be [batch, L, H, P], found ", x.sizes());
  const int64_t b = x.size(0), L = x.size(1), h = x.size(2), pd = x.size(3);
  TORCH_CHECK(B.dim() == 4, "ssd_scan: B must be [batch, L, G, N], found ", B.sizes());
  const int64_t g = B.size(2), n = B.size(3);
  TORCH_CHECK(g > 0 && h % g == 0, "ssd_scan: heads (", h, ") must be a multiple of groups (", g, ")");
  CHECK_SHAPE(dt, b, L, h);
  CHECK_SHAPE(A, h);
  CHECK_SHAPE(B, b, L, g, n);
  CHECK_SHAPE(C, b, L, g, n);
  TORCH_CHECK(D.sizes() == at::IntArrayRef({h}) || D.sizes() == at::IntArrayRef({h, pd}),
              "ssd_scan: D must be [H] or [H, P], found ", D.sizes());
  check_common({x, dt, A, B, C, D});
  for (const auto& t : {dt, A, D}) TORCH_CHECK(t.is_contiguous(), "ssd_scan: inputs must be contiguous");
  if (!row_strides)
    for (const auto& t : {x, B, C}) TORCH_CHECK(t.is_contiguous(), "ssd_scan: inputs must be contiguous");
  SsdParams p;
  if (row_strides) {  // the caller checked dense rows (rows_dense)
    p.x_stride_l = x.stride(1);
    p.x_stride_b = x.stride(0);
    p.bc_stride_l = B.stride(1);
    p.bc_stride_b = B.stride(0);
  }
  p.batch = b;
  p.seqlen = L;
  p.nheads = h;
  p.headdim = pd;
  p.ngroups = g;
  p.dstate = n;
  p.d_has_hdim = D.dim() == 2;
  p.x = x.data_ptr<float>();
  p.dt = dt.data_ptr<float>();
  p.A = A.data_ptr<float>();
  p.Bm = B.data_ptr<float>();
  p.Cm = C.data_ptr<float>();
  p.Dskip = D.data_ptr<float>();
  return p;
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// One autograd Function for both scans: Op supplies Params/Grads, the parameter builder and the kernels.
struct SelectiveScanOp {
  using Params = SelectiveScanParams;
  using Grads = SelectiveScanGrads;
  static Params params(const variable_list& v) { return m1_params(v[0], v[1], v[2], v[3], v[4], v[5]); }
  static void fwd(const Params& p) { selective_scan_fwd_cpu(p); }
  static void bwd(const Params& p, const Grads& g) { selective_scan_bwd_cpu(p, g); }
#if defined(MECHSCOPE_WITH_CUDA)
  static void fwd_cuda(const Params& p, float* ws, void* s) { selective_scan_fwd_cuda(p, ws, s); }
  static int64_t fwd_workspace(const Params& p) { return selective_scan_fwd_workspace_floats(p); }
  static void bwd_cuda(const Params& p, const Grads& g, float* ws, void* s) { selective_scan_bwd_cuda(p, g, ws, s); }
  static int64_t workspace(const Params& p) { return selective_scan_bwd_workspace_floats(p); }
#endif
  static std::vector<int64_t> state_shape(const Params& p) { return {p.batch, p.seqlen, p.dim, p.dstate}; }
};
struct SsdOp {
  using Params = SsdParams;
  using Grads = SsdGrads;
  static Params params(const variable_list& v) { return m2_params(v[0], v[1], v[2], v[3], v[4], v[5]); }
  static void fwd(const Params& p) { ssd_fwd_cpu(p); }
  static void bwd(const Params& p, const Grads& g) { ssd_bwd_cpu(p, g); }
#if defined(MECHSCOPE_WITH_CUDA)
  static void fwd_cuda(const Params& p, float* ws, void* s) { ssd_fwd_cuda(p, ws, s); }
  static int64_t fwd_workspace(const Params& p) { return ssd_fwd_workspace_floats(p); }
  static void bwd_cuda(const Params& p, const Grads& g, float* ws, void* s) { ssd_bwd_cuda(p, g, ws, s); }
  static int64_t workspace(const Params& p) { return ssd_bwd_workspace_floats(p); }
#endif
  static std::vector<int64_t> state_shape(const Params& p) { return {p.batch, p.seqlen, p.nheads, p.headdim, p.dstate}; }
};

// The forward on the tensors' device: the CPU kernel, or the CUDA kernel on the current stream.
template <typename Op>
void run_fwd(const typename Op::Params& p, const at::Tensor& x) {
#if defined(MECHSCOPE_WITH_CUDA)
  if (x.is_cuda()) {
    const c10::cuda::CUDAGuard guard(x.device());
    const int64_t n = Op::fwd_workspace(p);
    at::Tensor ws = n > 0 ? at::empty({n}, x.options()) : at::Tensor();
    Op::fwd_cuda(p, n > 0 ? ws.data_ptr<float>() : nullptr, c10::cuda::getCurrentCUDAStream().stream());
    return;
  }
#endif
  Op::fwd(p);
}

template <typename Op>
class ScanFunction : public torch::autograd::Function<ScanFunction<Op>> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& dt, const at::Tensor& A,
                            const at::Tensor& B, const at::Tensor& C, const at::Tensor& D) {
    typename Op::Params p = Op::params({x, dt, A, B, C, D});
    at::Tensor y = at::empty_like(x);
    p.y = y.data_ptr<float>();
    run_fwd<Op>(p, x);
    ctx->save_for_backward({x, dt, A, B, C, D});
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto s = ctx->get_saved_variables();
    typename Op::Params p = Op::params(s);
    at::Tensor dy = grads[0].contiguous();
    variable_list out;
    for (const auto& t : s) out.push_back(at::empty_like(t));  // dx, ddt, dA, dB, dC, dD
    typename Op::Grads g{dy.data_ptr<float>(), out[0].data_ptr<float>(), out[1].data_ptr<float>(), out[2].data_ptr<float>(),
                         out[3].data_ptr<float>(), out[4].data_ptr<float>(), out[5].data_ptr<float>()};
#if defined(MECHSCOPE_WITH_CUDA)
    if (dy.is_cuda()) {
      const c10::cuda::CUDAGuard guard(dy.device());
      at::Tensor ws = at::empty({Op::workspace(p)}, dy.options());
      Op::bwd_cuda(p, g, ws.data_ptr<float>(), c10::cuda::getCurrentCUDAStream().stream());
      return out;
    }
#endif
    Op::bwd(p, g);
    return out;
  }
};

CausalConvParams conv_params(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias) {
  CausalConvParams p;
  p.batch = x.size(0);
  p.seqlen = x.size(1);
  p.channels = x.size(2);
  p.width = w.size(1);
  p.x = x.data_ptr<float>();
  p.w = w.data_ptr<float>();
  p.bias = bias.data_ptr<float>();
  return p;
}

class CausalConvFunction : public torch::autograd::Function<CausalConvFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias) {
    CausalConvParams p = conv_params(x, w, bias);
    at::Tensor y = at::empty_like(x);
    p.y = y.data_ptr<float>();
    causal_conv_fwd_cpu(p);
    ctx->save_for_backward({x, w, bias});
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto s = ctx->get_saved_variables();
    CausalConvParams p = conv_params(s[0], s[1], s[2]);
    at::Tensor dy = grads[0].contiguous();
    at::Tensor dx = at::empty_like(s[0]), dw = at::empty_like(s[1]), db = at::empty_like(s[2]);
    causal_conv_bwd_cpu(p, {dy.data_ptr<float>(), dx.data_ptr<float>(), dw.data_ptr<float>(), db.data_ptr<float>()});
    return {dx, dw, db};
  }
};

}  // namespace

at::Tensor causal_conv1d(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  TORCH_CHECK(x.dim() == 3, "causal_conv1d: x must be [batch, L, C], found ", x.sizes());
  const int64_t C = x.size(2);
  at::Tensor w = weight.dim() == 3 ? weight.squeeze(1) : weight;  // [C, K] (a view: gradients reach the weight)
  TORCH_CHECK(w.dim() == 2 && w.size(0) == C && w.size(1) >= 1 && w.size(1) <= 16,
              "causal_conv1d: weight must be [C, 1, K] with C = ", C, " and K in 1..16, found ", weight.sizes());
  at::Tensor b = bias.defined() ? bias : at::zeros({C}, x.options());
  TORCH_CHECK(b.dim() == 1 && b.size(0) == C, "causal_conv1d: bias must be [", C, "], found ", b.sizes());
  for (const auto& t : {x, w, b})
    TORCH_CHECK(t.scalar_type() == at::kFloat && t.device().is_cpu(), "causal_conv1d: CPU float32 tensors only");
  if (!wants_grad({x, w, b})) {
    // Inference: reads x where it lies when its channels are contiguous (the split of a projection), no copy.
    at::Tensor xin = x.stride(2) == 1 && x.stride(1) >= C ? x : x.contiguous();
    at::Tensor wc = w.contiguous(), bc = b.contiguous();
    CausalConvParams p = conv_params(xin, wc, bc);
    p.x_stride_l = xin.stride(1);
    p.x_stride_b = xin.stride(0);
    at::Tensor y = at::empty({x.size(0), x.size(1), C}, x.options());
    p.y = y.data_ptr<float>();
    causal_conv_fwd_cpu(p);
    return y;
  }
  return CausalConvFunction::apply(x.contiguous(), w.contiguous(), b.contiguous());
}

bool fast_scan_enabled() {
  int v = g_enabled.load();
  if (v < 0) {
    const char* env = std::getenv("MECHSCOPE_FAST_SCAN");
    v = (env && std::strcmp(env, "0") == 0) ? 0 : 1;
    g_enabled.store(v);
  }
  return v == 1;
}

void set_fast_scan_enabled(bool on) { g_enabled.store(on ? 1 : 0); }

bool fast_scan_applies(const at::Tensor& x) {
  if (!fast_scan_enabled() || x.scalar_type() != at::kFloat) return false;
  return x.device().is_cpu() || (cuda_scan_built() && x.device().is_cuda());
}

bool wants_grad(std::initializer_list<at::Tensor> ts) {
  if (!at::GradMode::is_enabled()) return false;
  for (const auto& t : ts)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

bool cuda_scan_built() {
#if defined(MECHSCOPE_WITH_CUDA)
  return true;
#else
  return false;
#endif
}

namespace {

variable_list contiguous(std::initializer_list<at::Tensor> ts) {
  variable_list out;
  for (const auto& t : ts) out.push_back(t.contiguous());
  return out;
}

template <typename Op>
at::Tensor scan(const variable_list& v) {
  return ScanFunction<Op>::apply(v[0], v[1], v[2], v[3], v[4], v[5]);
}

// Forward only, also writing the per-position states.
template <typename Op>
std::pair<at::Tensor, at::Tensor> scan_states(const variable_list& v) {
  typename Op::Params p = Op::params(v);
  at::Tensor y = at::empty_like(v[0]), states = at::empty(Op::state_shape(p), v[0].options());
  p.y = y.data_ptr<float>();
  p.states = states.data_ptr<float>();
  run_fwd<Op>(p, v[0]);
  return {y, states};
}

}  // namespace

at::Tensor selective_scan(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& A, const at::Tensor& B,
                          const at::Tensor& C, const at::Tensor& D) {
  return scan<SelectiveScanOp>(contiguous({x, dt, A, B, C, D}));
}

std::pair<at::Tensor, at::Tensor> selective_scan_states(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& A,
                                                        const at::Tensor& B, const at::Tensor& C, const at::Tensor& D) {
  return scan_states<SelectiveScanOp>(contiguous({x, dt, A, B, C, D}));
}

namespace {
// [batch, L, heads, width] with each row's heads dense (a view of a split projection qualifies).
bool rows_dense(const at::Tensor& t) {
  return t.dim() == 4 && t.stride(3) == 1 && t.stride(2) == t.size(3) && t.stride(1) >= t.size(2) * t.size(3) &&
         t.stride(0) >= 0;
}
}  // namespace

at::Tensor ssd_scan(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& A, const at::Tensor& B,
                    const at::Tensor& C, const at::Tensor& D) {
  if (!wants_grad({x, dt, A, B, C, D}) && x.device().is_cpu() && rows_dense(x) && rows_dense(B) && B.strides() == C.strides() &&
      B.sizes() == C.sizes()) {
    // Inference on the CPU reads x, B and C where they lie (views of the conv output), no copies.
    auto v = contiguous({dt, A, D});
    SsdParams p = m2_params(x, v[0], v[1], B, C, v[2], true);
    at::Tensor y = at::empty(x.sizes(), x.options());
    p.y = y.data_ptr<float>();
    ssd_fwd_cpu(p);
    return y;
  }
  return scan<SsdOp>(contiguous({x, dt, A, B, C, D}));
}

at::Tensor selective_scan_from(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& A, const at::Tensor& B,
                               const at::Tensor& C, const at::Tensor& D, const at::Tensor& h0) {
  TORCH_CHECK(x.device().is_cpu() && h0.device().is_cpu(), "selective_scan_from: CPU tensors only");
  auto v = contiguous({x, dt, A, B, C, D});
  SelectiveScanParams p = SelectiveScanOp::params(v);
  at::Tensor h = h0.to(at::kFloat).contiguous();
  TORCH_CHECK(h.dim() == 3 && h.size(0) == p.batch && h.size(1) == p.dim && h.size(2) == p.dstate,
              "selective_scan_from: h0 must be [batch, D, N] = [", p.batch, ", ", p.dim, ", ", p.dstate, "], found ",
              h0.sizes());
  at::Tensor y = at::empty_like(v[0]);
  p.y = y.data_ptr<float>();
  p.h0 = h.data_ptr<float>();
  selective_scan_fwd_cpu(p);
  return y;
}

std::pair<at::Tensor, at::Tensor> ssd_scan_states(const at::Tensor& x, const at::Tensor& dt, const at::Tensor& A,
                                                  const at::Tensor& B, const at::Tensor& C, const at::Tensor& D) {
  return scan_states<SsdOp>(contiguous({x, dt, A, B, C, D}));
}

}  // namespace mechscope::kernels
