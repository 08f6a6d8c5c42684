// The mixture of experts (see moe.h).
#include "core/model/moe.h"

#include <ATen/ATen.h>

namespace mechscope {

MoEImpl::MoEImpl(const ModelConfig& cfg, std::string router_hook)
    : top_k_(cfg.moe.top_k), normalize_(cfg.moe.normalize_top_k), router_hook_(std::move(router_hook)) {
  const MoEConfig& m = cfg.moe;
  // Registration order is construction order: the reference initialisation draws in this order.
  router = register_module("router", make_linear(cfg.d_model, m.num_experts, false));
  experts = register_module("experts", torch::nn::ModuleList());
  for (int64_t e = 0; e < m.num_experts; ++e) experts->push_back(std::make_shared<MLPImpl>(cfg, m.hidden));
  if (m.shared_hidden > 0) shared = register_module("shared", std::make_shared<MLPImpl>(cfg, m.shared_hidden));
  if (m.shared_gate) shared_gate = register_module("shared_gate", make_linear(cfg.d_model, 1, false));
}

std::pair<at::Tensor, at::Tensor> MoEImpl::route(const at::Tensor& logits, at::ScalarType dtype) const {
  at::Tensor probs = at::softmax(logits.to(at::kFloat), -1);
  auto top = at::topk(probs, top_k_, -1);
  at::Tensor weights = std::get<0>(top);
  if (normalize_) weights = weights / weights.sum(-1, true);
  return {std::get<1>(top), weights.to(dtype)};
}

at::Tensor MoEImpl::forward(const at::Tensor& x, HookContext* ctx) {
  const int64_t d = x.size(-1);
  at::Tensor logits = hook_point(ctx, router_hook_, router->forward(x));  // [..., E]
  auto [picked, weights] = route(logits, x.scalar_type());
  const at::Tensor flat = x.reshape({-1, d});
  const at::Tensor picked_flat = picked.reshape({-1, top_k_});
  const at::Tensor weights_flat = weights.reshape({-1, top_k_});
  // Each expert runs on the positions that picked it; the outputs are added in expert order (as transformers does),
  // so a position's sum is the same whatever the batch holds.
  at::Tensor out = at::zeros_like(flat);
  const at::Tensor hits = at::bincount(picked_flat.reshape(-1), {}, num_experts());
  const auto* count = hits.data_ptr<int64_t>();
  for (int64_t e = 0; e < num_experts(); ++e) {
    if (count[e] == 0) continue;
    const at::Tensor where = (picked_flat == e).nonzero();  // [n, 2]: (position, slot), each position at most once
    const at::Tensor rows = where.select(1, 0), slots = where.select(1, 1);
    const at::Tensor w = weights_flat.index_select(0, rows).gather(1, slots.unsqueeze(1));  // [n, 1]
    out = out.index_add(0, rows, expert(e).forward(flat.index_select(0, rows)) * w);
  }
  if (shared) {
    at::Tensor s = shared->forward(flat);
    if (shared_gate) s = at::sigmoid(shared_gate->forward(flat)) * s;
    out = out + s;
  }
  return out.view(x.sizes());
}

}  // namespace mechscope
