// What the Mamba1 and Mamba2 mixers share (spec §1, §2): dt initialisation, the depthwise causal convolution and
// its window in a partial run, and the state hook whose replacements carry forward through the scan. Internal to
// core/model/mixers. Must not: know about blocks or interventions.
#pragma once

#include <string>

#include <ATen/ATen.h>
#include <torch/nn/modules/conv.h>

#include "core/model/hooks.h"
#include "core/model/layers.h"
#include "core/model/mixer.h"
#include "core/model/scan.h"
#include "kernels/binding/scan_ops.h"

namespace mechscope::ssm {

// dt initialisation of both Mambas: softplus^-1 of log-uniform values in [dt_min, dt_max], floored.
at::Tensor inverse_softplus_dt(int64_t n, double dt_min, double dt_max, double floor);

// Depthwise causal convolution: conv1d with padding d_conv-1, keeping the first L outputs. x [b, L, C] -> [b, L, C].
// With `window` [b, w, C] (the w <= d_conv-1 inputs before x's first position, in a partial run), those take
// the place of the zero padding.
// The CPU kernel takes it where the fast path applies (float32, width <= 16): in inference it reads the split
// projection where it lies, 2x at::conv1d's speed; in training, forward and backward together made the SSM demos'
// steps 1.1x faster (docs/benchmarks.md). at::conv1d is the reference and serves every other case.
at::Tensor causal_conv(torch::nn::Conv1d& conv, const at::Tensor& x, const at::Tensor& window = {});

// A partial run's conv window: `project` maps the earlier run's normed inputs before `start` (the block's
// hook_mixer_in, `mixer_in_hook`) to the conv's inputs there; repeated to the partial run's batch b.
template <class Project>
at::Tensor conv_window(const Partial& part, const std::string& mixer_in_hook, int64_t d_conv, int64_t b,
                       Project project) {
  const int64_t s = part.start();
  if (s == 0) return {};
  const int64_t w = std::min<int64_t>(s, d_conv - 1);
  return repeat_batch(project(part.prefix->positions(mixer_in_hook, s - w, w)), b);
}

// A partial run may not take the implicit attention pattern: it needs every position (its states it may take:
// they continue from the prefix's).
void check_partial_hooks(const Partial& part, HookContext* ctx, const std::string& state, const std::string& pattern);

// The fast kernels serve a forward when they apply (float32 CPU) and no gradient flows through the states.
bool fast_states_ok(const at::Tensor& x);

// The state hook: let the hooks see all states, and if a hook replaced any element, continue the recurrence
// from the replaced values (spec §2). `states` [b, L, ...] come from a scan; `discretize` gives the decay and
// input of the recurrence (only needed when something was replaced). Returns the states actually used.
template <typename Discretize>
at::Tensor states_through_hook(HookContext* ctx, const std::string& name, at::Tensor states, Discretize discretize,
                               int64_t head_dim_insert /* -1: states already [b, L, H, P, N] */) {
  at::Tensor shown = head_dim_insert >= 0 ? states.unsqueeze(head_dim_insert) : states;
  at::Tensor after = ctx->run(name, shown);
  if (!after.is_same(shown)) {
    at::Tensor replaced = after.ne(shown);
    if (replaced.any().item<bool>()) {
      at::Tensor values = after;
      if (head_dim_insert >= 0) {
        replaced = replaced.squeeze(head_dim_insert);
        values = values.squeeze(head_dim_insert);
      }
      at::Tensor dA, dBx;
      discretize(dA, dBx);
      states = linear_scan_with_replacement(dA.expand_as(dBx), dBx, replaced, values, states);
      ctx->recache(name, head_dim_insert >= 0 ? states.unsqueeze(head_dim_insert) : states);
    }
  }
  return states;
}

// Per-position states of a layer for the state hook: from the kernel (`fast_states`) when it applies, else the
// step-by-step recurrence; then through the hook (replacements carry forward). `h0` [b, state...]: the state
// before the first position (a partial run's, from its prefix); undefined: zero.
template <typename FastStates, typename Discretize>
at::Tensor hooked_states(HookContext* ctx, const std::string& name, const at::Tensor& x, FastStates fast_states,
                         Discretize discretize, int64_t head_dim_insert, const at::Tensor& h0 = {}) {
  at::Tensor states;
  if (fast_states_ok(x) && !h0.defined()) {
    states = fast_states();
  } else {
    at::Tensor dA, dBx;
    discretize(dA, dBx);
    states = linear_scan_sequential(dA, dBx, h0);
  }
  return states_through_hook(ctx, name, states, discretize, head_dim_insert);
}

}  // namespace mechscope::ssm
