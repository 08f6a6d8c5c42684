// Dispatch of the rows-only attention's CPU kernel (see attention_ops.h).
#include "kernels/binding/attention_ops.h"

#include <ATen/ATen.h>

#include "kernels/binding/scan_ops.h"
#include "kernels/cpu/scan_params.h"

namespace mechscope::kernels {

at::Tensor rows_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& qpos_in,
                          const at::Tensor& cos_in, const at::Tensor& sin_in, int64_t rotary_dim, bool interleaved,
                          double scale) {
  if (!fast_scan_enabled() || wants_grad({q, k, v})) return {};
  auto cpu_float = [](const at::Tensor& t) {
    return t.defined() && t.device().is_cpu() && t.scalar_type() == at::kFloat && t.dim() == 4 && t.stride(3) == 1;
  };
  if (!cpu_float(q) || !cpu_float(k) || !cpu_float(v) || k.sizes() != v.sizes()) return {};
  const int64_t b = q.size(0), P = q.size(1), H = q.size(2), D = q.size(3), Lk = k.size(1), Hkv = k.size(2);
  if (b == 0 || P == 0 || Lk == 0 || k.size(0) != b || k.size(3) != D || Hkv == 0 || H % Hkv != 0) return {};
  if (!qpos_in.defined() || !qpos_in.device().is_cpu() || qpos_in.dim() != 2 || qpos_in.size(1) != P ||
      (qpos_in.size(0) != 1 && qpos_in.size(0) != b))
    return {};
  const at::Tensor qpos = qpos_in.to(at::kLong).contiguous();
  const int64_t* pp = qpos.data_ptr<int64_t>();
  for (int64_t i = 0; i < qpos.numel(); ++i)
    if (pp[i] < 0 || pp[i] >= Lk) return {};
  at::Tensor cos, sin;
  if (rotary_dim != 0) {
    if (rotary_dim < 0 || rotary_dim % 2 != 0 || rotary_dim > D) return {};
    for (const at::Tensor* t : {&cos_in, &sin_in})
      if (!t->defined() || !t->device().is_cpu() || t->scalar_type() != at::kFloat || t->dim() != 2 ||
          t->size(0) < Lk || t->size(1) != rotary_dim / 2)
        return {};
    cos = cos_in.contiguous();
    sin = sin_in.contiguous();
  }
  at::Tensor z = at::empty({b, P, H, D}, q.options());
  RowsAttentionParams p;
  p.batch = b;
  p.rows = P;
  p.heads = H;
  p.kv_heads = Hkv;
  p.head_dim = D;
  p.keys = Lk;
  p.rotary_dim = rotary_dim;
  p.interleaved = interleaved;
  p.scale = static_cast<float>(scale);
  p.q = q.data_ptr<float>();
  p.q_sb = q.stride(0), p.q_sp = q.stride(1), p.q_sh = q.stride(2);
  p.k = k.data_ptr<float>();
  p.k_sb = k.stride(0), p.k_sl = k.stride(1), p.k_sh = k.stride(2);
  p.v = v.data_ptr<float>();
  p.v_sb = v.stride(0), p.v_sl = v.stride(1), p.v_sh = v.stride(2);
  p.qpos = pp;
  p.qpos_rows = qpos.size(0);
  p.cos = rotary_dim ? cos.data_ptr<float>() : nullptr;
  p.sin = rotary_dim ? sin.data_ptr<float>() : nullptr;
  p.z = z.data_ptr<float>();
  if (!rows_attention_cpu(p)) return {};
  return z;
}

}  // namespace mechscope::kernels
