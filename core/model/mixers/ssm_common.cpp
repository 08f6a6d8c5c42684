// The Mambas' shared pieces (see ssm_common.h).
#include "core/model/mixers/ssm_common.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace mechscope::ssm {

// dt initialisation of both Mambas: softplus^-1 of log-uniform values in [dt_min, dt_max], floored.
at::Tensor inverse_softplus_dt(int64_t n, double dt_min, double dt_max, double floor) {
  at::Tensor dt = at::exp(at::rand({n}) * (std::log(dt_max) - std::log(dt_min)) + std::log(dt_min)).clamp_min(floor);
  return dt + at::log(-at::expm1(-dt));
}

// Depthwise causal convolution: conv1d with padding d_conv-1, keeping the first L outputs. x [b, L, C] -> [b, L, C].
// With `window` [b, w, C] (the w <= d_conv-1 inputs before x's first position, in a partial run), those take
// the place of the zero padding.
// The CPU kernel takes it where the fast path applies (float32, width <= 16): in inference it reads the split
// projection where it lies, 2x at::conv1d's speed; in training, forward and backward together made the SSM demos'
// steps 1.1x faster (docs/benchmarks.md). at::conv1d is the reference and serves every other case.
at::Tensor causal_conv(torch::nn::Conv1d& conv, const at::Tensor& x, const at::Tensor& window) {
  const int64_t L = x.size(1), w = window.defined() ? window.size(1) : 0;
  at::Tensor in = w > 0 ? at::cat({window.to(x.scalar_type()), x}, 1) : x;
  if (kernels::fast_scan_applies(in) && in.is_cpu() && conv->weight.size(-1) <= 16 &&
      conv->weight.scalar_type() == at::kFloat)
    return kernels::causal_conv1d(in, conv->weight, conv->bias).narrow(1, w, L);
  return conv->forward(in.transpose(1, 2)).narrow(2, w, L).transpose(1, 2);
}

// A partial run may not take hooks that need the positions before its start.
void check_partial_hooks(const Partial& part, HookContext* ctx, const std::string& state, const std::string& pattern) {
  (void)state;
  if (part.start() > 0 && ctx && ctx->wants(pattern))
    throw std::logic_error("a partial run (from position " + std::to_string(part.start()) + ") cannot take " + pattern +
                           ": it needs every position");
}

// The fast kernels serve a forward when they apply (float32 CPU) and no gradient flows through the states.
bool fast_states_ok(const at::Tensor& x) { return kernels::fast_scan_applies(x) && !at::GradMode::is_enabled(); }

}  // namespace mechscope::ssm
