// Torch-free parameter structs of the SSM scan kernels (state-spaces/mamba's SSMParamsBase is the model):
// raw pointers to contiguous float32 buffers and their sizes. Shapes in comments; row-major, batch first.
// Must not: include torch or core.
#pragma once

#include <cstdint>

namespace mechscope::kernels {

/// Mamba1 selective scan: h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t; y_t = C_t . h_t + D x_t (per channel d).
struct SelectiveScanParams {
  int64_t batch = 0, seqlen = 0, dim = 0, dstate = 0;  // B, L, D (d_inner), N
  const float* x = nullptr;      // [B, L, D]
  const float* dt = nullptr;     // [B, L, D]  (after softplus)
  const float* A = nullptr;      // [D, N]     (negative)
  const float* Bm = nullptr;     // [B, L, N]
  const float* Cm = nullptr;     // [B, L, N]
  const float* Dskip = nullptr;  // [D]
  float* y = nullptr;            // [B, L, D]            output
  float* states = nullptr;       // [B, L, D, N]         optional output (per-position states)
  const float* h0 = nullptr;     // [B, D, N]            optional state before the first position (CPU forward only)
};

struct SelectiveScanGrads {
  const float* dy = nullptr;     // [B, L, D]
  float* dx = nullptr;           // [B, L, D]
  float* ddt = nullptr;          // [B, L, D]
  float* dA = nullptr;           // [D, N]
  float* dB = nullptr;           // [B, L, N]
  float* dC = nullptr;           // [B, L, N]
  float* dD = nullptr;           // [D]
};

/// Mamba2 SSD recurrence: per head h (group g = h / (H/G)), state [P, N]:
/// S_t = exp(dt_t A_h) S_{t-1} + dt_t x_t B_t^T; y_t = S_t C_t + D x_t.
struct SsdParams {
  int64_t batch = 0, seqlen = 0, nheads = 0, headdim = 0, ngroups = 0, dstate = 0;  // B, L, H, P, G, N
  bool d_has_hdim = false;       // D is [H, P] instead of [H]
  const float* x = nullptr;      // [B, L, H, P]
  // Row strides of x and of B, C (both alike), CPU forward only: elements between positions and between examples
  // (0: dense). The heads of a row stay contiguous, so x and B, C may be views of one split projection.
  int64_t x_stride_l = 0, x_stride_b = 0, bc_stride_l = 0, bc_stride_b = 0;
  const float* dt = nullptr;     // [B, L, H]
  const float* A = nullptr;      // [H]
  const float* Bm = nullptr;     // [B, L, G, N]
  const float* Cm = nullptr;     // [B, L, G, N]
  const float* Dskip = nullptr;  // [H] or [H, P]
  float* y = nullptr;            // [B, L, H, P]
  float* states = nullptr;       // [B, L, H, P, N] optional
};

struct SsdGrads {
  const float* dy = nullptr;     // [B, L, H, P]
  float* dx = nullptr;           // [B, L, H, P]
  float* ddt = nullptr;          // [B, L, H]
  float* dA = nullptr;           // [H]
  float* dB = nullptr;           // [B, L, G, N]
  float* dC = nullptr;           // [B, L, G, N]
  float* dD = nullptr;           // [H] or [H, P]
};

/// Depthwise causal convolution over channels-last input (the SSMs' short conv1d, padding K-1 on the left):
/// y[b, t, c] = bias[c] + sum_k w[c, k] x[b, t - (K-1) + k, c], zero before the first position.
struct CausalConvParams {
  int64_t batch = 0, seqlen = 0, channels = 0, width = 0;  // B, L, C, K
  const float* x = nullptr;     // [B, L, C]; channels contiguous
  int64_t x_stride_l = 0;       // elements between positions (0: C); forward only, the backward wants it dense
  int64_t x_stride_b = 0;       // elements between examples (0: L * x_stride_l)
  const float* w = nullptr;     // [C, K]
  const float* bias = nullptr;  // [C] or null
  float* y = nullptr;           // [B, L, C]
};

struct CausalConvGrads {
  const float* dy = nullptr;  // [B, L, C]
  float* dx = nullptr;        // [B, L, C]
  float* dw = nullptr;        // [C, K]
  float* dbias = nullptr;     // [C] or null
};

void causal_conv_fwd_cpu(const CausalConvParams& p);
void causal_conv_bwd_cpu(const CausalConvParams& p, const CausalConvGrads& g);

/// The readout metrics of spec §4 per row of logits (one row = one readout of one variant): with
/// lse = log sum_v exp(x_v) and t the row's answer token,
///   prob = exp(x_t - lse); logit_diff = x_t - max_{v != t} x_v; correct = [first argmax_v x_v == t];
///   kl = max(0, ref_ne - sum_v ref_p_v (x_v - lse))   (only when ref_p is set).
/// Row i's answer is target[i % targets] and its reference row is (i % ref_rows). Reference twin: the ATen
/// expressions of core/interventions/metrics.cpp.
struct ReadoutMetricParams {
  int64_t rows = 0, vocab = 0, targets = 0, ref_rows = 0;
  const float* logits = nullptr;   // [rows, V]
  const int64_t* target = nullptr; // [targets], each in [0, V)
  const float* ref_p = nullptr;    // [ref_rows, V] or null (no KL)
  const float* ref_ne = nullptr;   // [ref_rows]: sum_v p log p
  float* prob = nullptr;           // [rows] outputs
  float* logit_diff = nullptr;
  float* correct = nullptr;
  float* kl = nullptr;             // [rows], when ref_p is set
};
/// Returns false (outputs unspecified) when a logit is not finite or V < 2: the caller then takes the ATen path, which
/// defines what infinities and NaNs give.
bool readout_metrics_cpu(const ReadoutMetricParams& p);
/// The reference side of the KL for rows of logits [rows, V]: p = softmax(x) [rows, V] and ne = sum_v p_v log p_v
/// [rows], in one pass that keeps exp(x_v - max) for p. False (outputs unspecified) when a logit is not finite or
/// V < 2. Reference twin: metric_reference's ATen expressions (core/interventions/metrics.cpp).
bool readout_reference_cpu(int64_t rows, int64_t V, const float* logits, float* p, float* ne);

/// Causal attention for chosen query rows (the batched sweeps' last block runs its queries at the readout rows
/// only), rotary applied in place: per example e, query head h (key/value head g = h / (heads / kv_heads)) and
/// row p at position t = qpos[e or 0][p], with rotary R_t over the first rotary_dim features (pairs (i, i + rd/2),
/// or (2i, 2i + 1) when interleaved, by the angles of cos/sin row t),
///   s_j = scale * <R_t q[e,p,h], R_j k[e,j,g]>  for j = 0..t;   z[e,p,h] = sum_j softmax(s)_j v[e,j,g].
/// Keys sit at positions 0..keys-1 (no cached prefix). Reference twin: the ATen expressions of
/// AttentionImpl::forward (core/model/mixers/attention.cpp).
struct RowsAttentionParams {
  int64_t batch = 0, rows = 0, heads = 0, kv_heads = 0, head_dim = 0, keys = 0, rotary_dim = 0;
  bool interleaved = false;
  float scale = 1.f;
  const float* q = nullptr;  // [batch, rows, heads, head_dim], unit stride last
  int64_t q_sb = 0, q_sp = 0, q_sh = 0;
  const float* k = nullptr;  // [batch, keys, kv_heads, head_dim], unit stride last
  int64_t k_sb = 0, k_sl = 0, k_sh = 0;
  const float* v = nullptr;  // as k
  int64_t v_sb = 0, v_sl = 0, v_sh = 0;
  const int64_t* qpos = nullptr;  // [qpos_rows, rows], each in [0, keys); qpos_rows 1 (shared) or batch
  int64_t qpos_rows = 1;
  const float* cos = nullptr;  // [keys, rotary_dim / 2] (null when rotary_dim is 0)
  const float* sin = nullptr;
  float* z = nullptr;  // [batch, rows, heads, head_dim] contiguous output
};
/// Returns false (z unspecified) when a score is not finite: the caller then takes the ATen path.
bool rows_attention_cpu(const RowsAttentionParams& p);

// CPU implementations (kernels/cpu/*.cpp), multi-threaded over independent rows.
void selective_scan_fwd_cpu(const SelectiveScanParams& p);
void selective_scan_bwd_cpu(const SelectiveScanParams& p, const SelectiveScanGrads& g);
void ssd_fwd_cpu(const SsdParams& p);
void ssd_bwd_cpu(const SsdParams& p, const SsdGrads& g);

}  // namespace mechscope::kernels
