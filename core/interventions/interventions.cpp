// Head ablation, attention knockout, activation / attribution patching and direct logit attribution.
// Plain paths go through the public hooks; batched paths reuse the cached prefix, stack variants along the
// batch and unembed only the readout positions (SPEC §4 "Making sweeps fast without approximating").
#include "core/interventions/interventions.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <regex>
#include <set>
#include <tuple>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/autograd.h>

#include "core/engine/memory.h"
#include "core/model/model.h"
#include "core/util/strings.h"

namespace mechscope {

namespace {

void check_cancel(const SweepOptions& o) {
  if (o.cancel && o.cancel->load()) throw Cancelled();
}
void report(const SweepOptions& o, double f, const std::string& what) {
  if (o.progress) o.progress(f, what);
}

bool has_hook(const LanguageModel& m, const std::string& name) {
  const auto& names = m.hook_names();
  return std::find(names.begin(), names.end(), name) != names.end();
}

// The residuals [k, ...] after one mixer with each of k units of its heads ablated: resid_mid [..., d] plus
// each unit's linear change. z [..., H, D] is the mixer's head output; change(h, z_h) the slice's ablation change
// (zero_kind: it is -z_h). Single heads go as one batched product, resid_mid + C_j W_j^T for all j at once (no
// per-head product, stack and sum); units of several heads add their heads' terms one by one.
at::Tensor ablated_residuals(const HeadGroup& p, const at::Tensor& resid_mid, const at::Tensor& z,
                             const std::vector<const std::vector<HeadRef>*>& units, bool zero_kind,
                             const std::function<at::Tensor(const HeadRef&, const at::Tensor&)>& change) {
  const int64_t k = static_cast<int64_t>(units.size()), d = resid_mid.size(-1);
  bool singles = true;
  for (const auto* u : units) singles = singles && u->size() == 1;
  if (!singles) {
    std::vector<at::Tensor> deltas;
    for (const auto* u : units) {
      at::Tensor delta;  // a group's heads add up: each changes the residual by its own linear term
      for (const HeadRef& h : *u) {
        at::Tensor term = p.project(h.head, change(h, z.select(-2, h.head)));
        delta = delta.defined() ? delta + term : term;
      }
      deltas.push_back(delta);
    }
    return resid_mid.unsqueeze(0) + at::stack(deltas);
  }
  const auto dtype = resid_mid.scalar_type();  // the residual's (float32 under residual_in_fp32)
  const at::Tensor zf = z.reshape({-1, z.size(-2), z.size(-1)});  // [N, H, D]
  const int64_t N = zf.size(0);
  auto shape = resid_mid.sizes().vec();
  shape.insert(shape.begin(), k);
  if (k == 1 && zero_kind) {  // one head: one addmm on the head's (strided) slice, no gathers or batch copies
    const int64_t h = units[0]->front().head;
    const double alpha = p.scale.defined() ? -p.scale.item<double>() : -1.0;
    const at::Tensor W = p.columns(h).t().to(dtype);  // [D, d]
    return at::addmm(resid_mid.reshape({N, d}), zf.select(1, h).to(dtype), W, 1.0, alpha).view(shape);
  }
  std::vector<int64_t> heads;
  for (const auto* u : units) heads.push_back(u->front().head);
  const at::Tensor idx = at::tensor(heads, at::kLong).to(z.device());
  at::Tensor C;  // [k, N, D]
  double alpha = 1.0;
  if (zero_kind) {
    C = zf.index_select(1, idx).transpose(0, 1).to(dtype);
    alpha = -1.0;
  } else {
    std::vector<at::Tensor> cs;
    for (const auto* u : units) cs.push_back(change(u->front(), z.select(-2, u->front().head)).reshape({N, p.head_dim}));
    C = at::stack(cs).to(dtype);
  }
  if (p.scale.defined()) alpha *= p.scale.item<double>();
  at::Tensor W = p.weight.narrow(1, p.offset, p.heads * p.head_dim)
                     .view({d, p.heads, p.head_dim})
                     .index_select(1, idx)
                     .permute({1, 2, 0})
                     .to(dtype);
  at::Tensor out = at::baddbmm(resid_mid.reshape({1, N, d}).expand({k, N, d}), C, W, 1.0, alpha);  // [k, N, d]
  return out.view(shape);
}

// Mean over kept examples of per-example values [..., E] -> [...].
at::Tensor mean_over(const at::Tensor& v, const at::Tensor& keep /*[E] bool*/) {
  if (!v.defined()) return v;
  at::Tensor w = keep.to(v.scalar_type());
  return (v * w).sum(-1) / w.sum().clamp_min(1);
}

at::Tensor examples_with_readout(const Readout& r) {
  return at::zeros({r.num_examples}, r.example.options()).index_add_(0, r.example, at::ones_like(r.example)).gt(0);
}

MetricTable table_of(const ExampleMetrics& m, const at::Tensor& keep) {
  return {mean_over(m.prob, keep), mean_over(m.logit_diff, keep), mean_over(m.correct, keep), mean_over(m.kl, keep)};
}

// Rough bytes one example of one variant needs while layers run (activations of the largest layer).
int64_t bytes_per_example(const LanguageModel& model, int64_t L, bool states) {
  const ModelConfig& c = model.config();
  int64_t per_pos = 24 * c.d_model + 4 * c.padded_vocab_size() / std::max<int64_t>(L, 1);
  int64_t worst = 0;
  for (int64_t l = 0; l < model.n_layers(); ++l) worst = std::max(worst, model.block(l).mixer().sweep_floats_per_token(L, states));
  return 4 * L * (per_pos + worst + 4 * c.d_intermediate);
}

// Variants per stacked forward: under the memory budget, and no more than about kStackTokens tokens. Stacking pays
// for per-operation overhead (most of all in patching's partial runs, whose suffixes are short); past a few
// thousand tokens a larger stack only adds memory traffic on a CPU. Measured on the demo models (32 x 64-token
// examples, docs/benchmarks.md): 8192 against 2048 made residual patching 1.2-1.3x faster and left the
// head-ablation sweeps as they were; 16384 gained nothing more. (Before freed tensors stayed in the heap,
// runtime.cpp, page faults made any stack slower.) A chunk holds at least one variant per intra-op thread when the
// budget allows, so that run_example_parts has a part for each: with 128 examples of 64 tokens the token cap alone
// gave one-variant chunks, run one after the other on intra-op threads (docs/benchmarks.md).
constexpr int64_t kStackTokens = 8192;
int64_t chunk_size(const SweepOptions& o, int64_t per_variant_bytes, int64_t total, int64_t tokens_per_variant) {
  const int64_t budget = std::max<int64_t>(o.memory_budget_mb, 1) << 20;
  const int64_t by_memory = budget / std::max<int64_t>(per_variant_bytes, 1);
  const int64_t by_tokens = std::max<int64_t>(kStackTokens / std::max<int64_t>(tokens_per_variant, 1), at::get_num_threads());
  return std::clamp<int64_t>(std::min(by_memory, by_tokens), 1, std::max<int64_t>(total, 1));
}

}  // namespace

std::pair<at::Tensor, at::Tensor> readout_rows(const Readout& readout, int64_t B) {
  const int64_t R = readout.size();
  auto ex = readout.example.to(at::kCPU).contiguous(), pos = readout.position.to(at::kCPU).contiguous();
  const int64_t* e = ex.data_ptr<int64_t>();
  const int64_t* p = pos.data_ptr<int64_t>();
  std::vector<std::vector<int64_t>> per(B);
  std::vector<int64_t> slot(R);
  for (int64_t i = 0; i < R; ++i) {
    slot[i] = static_cast<int64_t>(per[e[i]].size());
    per[e[i]].push_back(p[i]);
  }
  size_t P = 1;
  for (const auto& v : per) P = std::max(P, v.size());
  at::Tensor rows = at::zeros({B, static_cast<int64_t>(P)}, at::kLong);
  auto acc = rows.accessor<int64_t, 2>();
  for (int64_t b = 0; b < B; ++b)
    for (size_t j = 0; j < P; ++j) acc[b][j] = per[b].empty() ? 0 : per[b][std::min(j, per[b].size() - 1)];
  return {rows.to(readout.position.device()), at::tensor(slot, at::kLong).to(readout.position.device())};
}

namespace {

// Where each example's readouts start when the readout lists examples in ascending order (as Readout's
// constructors do): start[i] .. start[i + 1] are example i's entries. `sorted` false: another order, and
// callers take their whole-batch path. Lets a part of the examples unembed its own readout rows.
struct ReadoutSpans {
  bool sorted = true;
  std::vector<int64_t> start;  // [E + 1]
  ReadoutSpans(const Readout& r, int64_t E) : start(E + 1, 0) {
    const at::Tensor ex = r.example.to(at::kCPU, at::kLong).contiguous();
    const int64_t* e = ex.data_ptr<int64_t>();
    for (int64_t i = 0; i < ex.numel(); ++i) {
      if (e[i] < 0 || e[i] >= E || (i > 0 && e[i] < e[i - 1])) {
        sorted = false;
        return;
      }
      ++start[e[i] + 1];
    }
    for (int64_t i = 0; i < E; ++i) start[i + 1] += start[i];
  }
  // The readout entries of examples [b, e): (their examples relative to b, their slots), in readout order.
  std::pair<at::Tensor, at::Tensor> of(const Readout& r, const at::Tensor& slot, int64_t b, int64_t e) const {
    const int64_t r0 = start[b], n = start[e] - r0;
    return {r.example.narrow(0, r0, n) - b, slot.narrow(0, r0, n)};
  }
};

// The readout logits of rows [b, e) of a variant-major stack of B-example variants, `out` [e - b, P, d] being
// their residuals at the readout rows (`slot`: each readout's column there): variant by variant, in readout order,
// so consecutive parts concatenate to [K * R, V]. Needs spans.sorted.
at::Tensor unembed_part_readouts(LanguageModel& model, const at::Tensor& out, int64_t b, int64_t e, int64_t B,
                                 const ReadoutSpans& spans, const Readout& readout, const at::Tensor& slot) {
  std::vector<at::Tensor> picked;
  for (int64_t v = b / B; v * B < e; ++v) {
    const int64_t lo = std::max(b, v * B) - v * B, hi = std::min(e, (v + 1) * B) - v * B;  // variant v's examples
    auto [ex, sl] = spans.of(readout, slot, lo, hi);
    picked.push_back(out.index({ex + (v * B + lo - b), sl}));
  }
  return model.unembed(picked.size() == 1 ? picked[0] : at::cat(picked));
}

// The whole-batch twin, for a readout in another order: residuals at the readout rows [K * B, P, d] -> [K, R, V].
at::Tensor unembed_all_readouts(LanguageModel& model, const at::Tensor& out, int64_t K, int64_t B,
                                const Readout& readout, const at::Tensor& slot) {
  const at::Tensor r = out.view({K, B, out.size(1), out.size(2)});
  return model.unembed(r.index({at::indexing::Slice(), readout.example, slot}));
}

// Runs the stacked residuals [K*B, L, d] (variant-major) from block `from` to the end and returns logits at the
// readout [K, R, V]; the last block runs at the readout rows only (forward_blocks_at). `rows_of(b, e)` gives rows
// [b, e) of the stack, so a caller may build them inside the parts.
at::Tensor finish_and_read(LanguageModel& model, int64_t from, int64_t K, int64_t B, const Readout& readout,
                           const at::Device& device, const std::function<at::Tensor(int64_t, int64_t)>& rows_of) {
  auto [rows, slot] = readout_rows(readout, B);
  const at::Tensor stacked_rows = rows.repeat({K, 1});
  const ReadoutSpans spans(readout, B);
  // Every row of the stack is independent work. A chunk with fewer variants than threads (one first-layer head)
  // gets no parts of variants; its rows then run as parts side by side here (inside a part: the whole stack),
  // each unembedding its own readouts (variant by variant, in readout order: the parts concatenate to [K*R, V]).
  at::Tensor r = run_example_parts(K * B, device, nullptr, [&](int64_t b, int64_t e, HookContext*) {
    at::Tensor out = model.forward_blocks_at(from, rows_of(b, e), stacked_rows.narrow(0, b, e - b));  // [e - b, P, d]
    return spans.sorted ? unembed_part_readouts(model, out, b, e, B, spans, readout, slot) : out;
  });
  return spans.sorted ? r.view({K, readout.size(), r.size(-1)}) : unembed_all_readouts(model, r, K, B, readout, slot);
}

}  // namespace

// ---------------------------------------------------------------- heads

std::string HeadRef::label() const { return "L" + std::to_string(layer) + "." + mixer + ".H" + std::to_string(head); }

std::vector<HeadRef> all_heads(const LanguageModel& model) {
  std::vector<HeadRef> out;
  for (int64_t l = 0; l < model.n_layers(); ++l)
    for (const auto& [mixer, H] : model.heads_of_layer(l))
      for (int64_t h = 0; h < H; ++h) out.push_back({l, mixer, h});
  return out;
}

HeadRef parse_head(const std::string& text, const LanguageModel& model) {
  static const std::regex full(R"(^L?(\d+)\.(attn|ssm)\.H?(\d+)$)"), shortform(R"(^L?(\d+)[.H](\d+)$)");
  std::smatch m;
  HeadRef h;
  if (std::regex_match(text, m, full)) {
    h = {std::stoll(m[1]), m[2], std::stoll(m[3])};
  } else if (std::regex_match(text, m, shortform)) {
    h.layer = std::stoll(m[1]);
    h.head = std::stoll(m[2]);
    if (h.layer >= model.n_layers()) throw std::invalid_argument("head '" + text + "': no layer " + m[1].str());
    auto mixers = model.heads_of_layer(h.layer);
    if (mixers.size() != 1)
      throw std::invalid_argument("head '" + text + "': layer " + m[1].str() +
                                  " has attention and SSM heads; write L" + m[1].str() + ".attn.H" + m[2].str() +
                                  " or L" + m[1].str() + ".ssm.H" + m[2].str());
    h.mixer = mixers[0].first;
  } else {
    throw std::invalid_argument("head '" + text + "': expected L<layer>.<attn|ssm>.H<head>, e.g. L1.attn.H0");
  }
  if (h.layer < 0 || h.layer >= model.n_layers())
    throw std::invalid_argument("head '" + text + "': the model has layers 0.." + std::to_string(model.n_layers() - 1));
  for (const auto& [mixer, H] : model.heads_of_layer(h.layer))
    if (mixer == h.mixer) {
      if (h.head < 0 || h.head >= H)
        throw std::invalid_argument("head '" + text + "': layer " + std::to_string(h.layer) + " " + mixer + " has " +
                                    std::to_string(H) + " heads (0.." + std::to_string(H - 1) + ")");
      return h;
    }
  throw std::invalid_argument("head '" + text + "': layer " + std::to_string(h.layer) + " has no " + h.mixer + " mixer");
}

std::vector<HeadRef> parse_heads(const std::string& text, const LanguageModel& model) {
  static const std::regex range(R"(^(L?\d+\.(?:attn|ssm)\.H?)(\d+)-(\d+)$)");
  std::smatch m;
  if (!std::regex_match(text, m, range)) return {parse_head(text, model)};
  const int64_t first = std::stoll(m[2]), last = std::stoll(m[3]);
  if (last < first) throw std::invalid_argument("heads '" + text + "': the range ends before it starts");
  HeadRef a = parse_head(m[1].str() + m[2].str(), model);
  parse_head(m[1].str() + m[3].str(), model);  // checks the end of the range
  std::vector<HeadRef> out;
  for (int64_t h = first; h <= last; ++h) out.push_back({a.layer, a.mixer, h});
  return out;
}

std::string group_label(const std::vector<HeadRef>& heads) {
  if (heads.empty()) return "none";
  std::vector<HeadRef> g = heads;
  std::sort(g.begin(), g.end(), [](const HeadRef& a, const HeadRef& b) {
    return std::tie(a.layer, a.mixer, a.head) < std::tie(b.layer, b.mixer, b.head);
  });
  std::string out;
  for (size_t i = 0; i < g.size();) {  // runs of consecutive heads of one mixer: L0.ssm.H0-15
    size_t j = i + 1;
    while (j < g.size() && g[j].layer == g[i].layer && g[j].mixer == g[i].mixer && g[j].head == g[j - 1].head + 1) ++j;
    out += (out.empty() ? "" : "+") + g[i].label() + (j - i > 1 ? "-" + std::to_string(g[j - 1].head) : "");
    i = j;
  }
  return out;
}

std::vector<std::vector<HeadRef>> channel_groups(const LanguageModel& model, int64_t size) {
  if (size < 1) throw std::invalid_argument("channel groups: the size must be at least 1, got " + std::to_string(size));
  std::vector<std::vector<HeadRef>> out;
  for (int64_t l = 0; l < model.n_layers(); ++l)
    for (const auto& group : model.head_groups(l)) {
      const int64_t g = group.channels ? size : 1, H = group.heads;
      for (int64_t h0 = 0; h0 < H; h0 += g) {
        out.emplace_back();
        for (int64_t h = h0; h < std::min(H, h0 + g); ++h) out.back().push_back({l, group.scope, h});
      }
    }
  return out;
}

std::string head_hook_name(const LanguageModel& model, const HeadRef& h) { return model.head_group(h.layer, h.mixer).hook; }

AblationKind parse_ablation(const std::string& t) {
  if (t == "zero") return AblationKind::Zero;
  if (t == "mean") return AblationKind::Mean;
  if (t == "resample") return AblationKind::Resample;
  throw std::invalid_argument("ablation '" + t + "': expected zero, mean or resample");
}
const char* ablation_name(AblationKind k) {
  return k == AblationKind::Zero ? "zero" : k == AblationKind::Mean ? "mean" : "resample";
}

Ablator::Ablator(LanguageModel& model, AblationKind kind, const Batch& reference) : model_(model), kind_(kind) {
  if (kind == AblationKind::Zero) return;
  if (reference.size() == 0)
    throw std::invalid_argument(std::string(ablation_name(kind)) + " ablation needs a reference batch");
  at::NoGradGuard no_grad;
  std::vector<std::string> names;
  for (int64_t l = 0; l < model.n_layers(); ++l)
    for (const auto& g : model.head_groups(l)) names.push_back(g.hook);
  reference_ = model.run_with_cache(reference.tokens, HookSelection::of(names)).second;
  ref_lengths_ = reference.lengths.defined() ? reference.lengths
                                             : at::full({reference.size()}, reference.tokens.size(1), at::kLong);
  const int64_t L = reference.tokens.size(1);
  at::Tensor valid = at::arange(L, at::kLong).unsqueeze(0).lt(ref_lengths_.unsqueeze(1)).to(at::kFloat);  // [B, L]
  for (const auto& [name, act] : reference_) {
    at::Tensor w = valid.view({valid.size(0), L, 1, 1});
    mean_[name] = (act * w).sum(0) / w.sum(0).clamp_min(1);  // [L, H, D]
  }
}

at::Tensor Ablator::replacement(const HeadRef& h, const at::Tensor& current) const {
  if (kind_ == AblationKind::Zero) return at::zeros_like(current);
  return replacement(h, current.size(0), current.size(1), current.scalar_type());
}

at::Tensor Ablator::replacement(const HeadRef& h, int64_t B, int64_t L, at::ScalarType dtype) const {
  const std::string name = head_hook_name(model_, h);
  at::Tensor src;
  if (kind_ == AblationKind::Mean) {
    src = mean_.at(name).select(1, h.head).unsqueeze(0);  // [1, Lref, D]
  } else {
    const at::Tensor& ref = reference_.at(name);  // [Bref, Lref, H, D]
    at::Tensor idx = at::arange(B, at::kLong).remainder(ref.size(0));
    src = ref.index_select(0, idx).select(2, h.head);  // [B, Lref, D]
  }
  const int64_t Lref = src.size(1);
  if (L <= Lref) {
    src = src.narrow(1, 0, L);
  } else {  // positions beyond the reference: its mean over positions
    at::Tensor tail = src.mean(1, true).expand({src.size(0), L - Lref, src.size(2)});
    src = at::cat({src, tail}, 1);
  }
  return src.expand({B, L, src.size(2)}).to(dtype);
}

at::Tensor Ablator::change(const HeadRef& h, const at::Tensor& current) const {
  return kind_ == AblationKind::Zero ? -current : replacement(h, current) - current;
}

at::Tensor Ablator::change_at(const HeadRef& h, const at::Tensor& current_at, const Readout& readout, int64_t B,
                              int64_t L) const {
  if (kind_ == AblationKind::Zero) return -current_at;
  return gather_readout(replacement(h, B, L, current_at.scalar_type()), readout) - current_at;
}

std::vector<Hook> Ablator::hooks(const std::vector<HeadRef>& heads) const {
  std::map<std::string, std::vector<HeadRef>> by_hook;
  for (const auto& h : heads) by_hook[head_hook_name(model_, h)].push_back(h);
  std::vector<Hook> out;
  for (auto& [name, hs] : by_hook) {
    out.push_back({name, [this, hs](const at::Tensor& v, const std::string&) {
                     at::Tensor r = v.clone();
                     for (const auto& h : hs) r.select(2, h.head).copy_(replacement(h, v.select(2, h.head)));
                     return r;
                   }});
  }
  return out;
}

std::vector<std::string> ablation_cache_names(const LanguageModel& model) {
  std::vector<std::string> names;
  const int64_t n = model.n_layers();
  for (int64_t l = 0; l < n; ++l) {
    names.push_back(model.block(l).resid_mid_hook());
    for (const auto& g : model.head_groups(l)) names.push_back(g.hook);
  }
  if (model.block(n - 1).has_mlp()) names.push_back(model.block(n - 1).resid_post_hook());  // else already in
  return names;
}

namespace {

// The residual leaving block `first` (the earliest ablated layer) with that layer's heads ablated, and the heads
// of later layers (which need hooks).
struct AfterFirst {
  int64_t first = 0;
  at::Tensor resid;
  std::vector<HeadRef> later;
};

AfterFirst ablate_first_layer(LanguageModel& model, const ActivationCache& clean, const Ablator& ablator,
                              const std::vector<HeadRef>& heads) {
  const int64_t n = model.n_layers();
  int64_t first = n;
  for (const auto& h : heads) first = std::min(first, h.layer);
  at::Tensor resid = clean.at(model.block(first).resid_mid_hook());
  std::vector<HeadRef> later;
  std::map<std::string, HeadGroup> projections;
  for (const auto& h : heads) {
    if (h.layer != first) {
      later.push_back(h);
      continue;
    }
    if (!projections.count(h.mixer)) projections[h.mixer] = model.head_group(h.layer, h.mixer);
    const HeadGroup& g = projections[h.mixer];
    resid = resid + g.project(h.head, ablator.change(h, clean.at(g.hook).select(2, h.head)));
  }
  resid = model.block(first).forward_after_mixer(resid, nullptr);
  return {first, resid, later};
}

// The final residual [B, L, d] from there: the later layers in full, with hooks for their ablated heads.
at::Tensor finish_ablated(LanguageModel& model, const AfterFirst& a, const Ablator& ablator) {
  HookContext ctx;
  for (auto& hook : ablator.hooks(a.later)) ctx.add_hook(hook.name, hook.fn);
  return model.forward_blocks(a.first + 1, model.n_layers(), a.resid, a.later.empty() ? nullptr : &ctx);
}

}  // namespace

at::Tensor ablated_final_resid(LanguageModel& model, const at::Tensor& tokens, const ActivationCache& clean,
                               const Ablator& ablator, const std::vector<HeadRef>& heads) {
  at::NoGradGuard no_grad;
  if (heads.empty()) return clean.at(layer_prefix(model.n_layers() - 1) + "hook_resid_post");
  return finish_ablated(model, ablate_first_layer(model, clean, ablator, heads), ablator);
}

ReadoutResid ablated_readout_resid(LanguageModel& model, const at::Tensor& tokens, const ActivationCache& clean,
                                   const Ablator& ablator, const std::vector<HeadRef>& heads, const at::Tensor& rows,
                                   int64_t example) {
  at::NoGradGuard no_grad;
  const int64_t n = model.n_layers();
  ReadoutResid out;
  auto from_full = [&](const at::Tensor& full) {
    out.at_rows = gather_rows(full, rows);
    if (example >= 0) out.example_full = full[example];
  };
  if (heads.empty()) {
    from_full(clean.at(layer_prefix(n - 1) + "hook_resid_post"));
    return out;
  }
  AfterFirst a = ablate_first_layer(model, clean, ablator, heads);
  if (!a.later.empty()) {  // later layers need hooks, which the rows-only last block does not take
    from_full(finish_ablated(model, a, ablator));
    return out;
  }
  out.at_rows = model.forward_blocks_at(a.first + 1, a.resid, rows);
  if (example >= 0) out.example_full = model.forward_blocks(a.first + 1, n, a.resid.narrow(0, example, 1))[0];
  return out;
}

HeadSweepResult head_ablation_sweep(LanguageModel& model, const at::Tensor& tokens, const Readout& readout,
                                    const Ablator& ablator, const std::vector<HeadRef>& heads_in,
                                    const SweepOptions& options) {
  std::vector<std::vector<HeadRef>> groups;
  for (const auto& h : heads_in.empty() ? all_heads(model) : heads_in) groups.push_back({h});
  return head_group_sweep(model, tokens, readout, ablator, groups, options);
}

HeadSweepResult head_group_sweep(LanguageModel& model, const at::Tensor& tokens, const Readout& readout,
                                 const Ablator& ablator, const std::vector<std::vector<HeadRef>>& units,
                                 const SweepOptions& options) {
  at::NoGradGuard no_grad;
  model.check_tokens(tokens);
  HeadSweepResult res;
  for (const auto& u : units) {
    if (u.empty()) throw std::invalid_argument("head-ablation sweep: an empty group of heads");
    for (const auto& h : u)
      if (h.layer != u[0].layer || h.mixer != u[0].mixer)
        throw std::invalid_argument("head-ablation sweep: the group " + group_label(u) +
                                    " spans layers or mixers; a group's heads share one layer and mixer");
    res.heads.push_back(u[0]);
    res.labels.push_back(group_label(u));
  }
  const int64_t B = tokens.size(0), L = tokens.size(1), n = static_cast<int64_t>(units.size());
  at::Tensor keep = examples_with_readout(readout);

  const std::vector<std::string> names = ablation_cache_names(model);
  at::Tensor base_read;  // [R, V]
  ActivationCache cache;
  at::Tensor slot;  // the readout's column in the rows of the last block's cached hooks
  if (options.batched) {
    // The cached run runs its last block at the readout rows only and unembeds only them (the naive loop's
    // forwards run every position): the last layer's hooks are [B, P, ...] at those rows.
    const std::set<std::string> cached(names.begin(), names.end());
    require_memory(model.estimate_forward_bytes(B, L, cached),
                   "the head-ablation sweep's cached run over " + std::to_string(B) + " x " + std::to_string(L) + " tokens",
                   "Use fewer examples or a shorter input.");
    HookContext ctx;
    ctx.cache(cached);
    at::Tensor rows;
    std::tie(rows, slot) = readout_rows(readout, B);
    const ReadoutSpans spans(readout, B);
    // Each part unembeds its own examples' readouts (in readout order, so the parts concatenate to [R, V]).
    at::Tensor out = run_example_parts(B, tokens.device(), &ctx, [&](int64_t b, int64_t e, HookContext* c) {
      at::Tensor final_rows = model.forward_blocks_at(0, model.embed(tokens.narrow(0, b, e - b), c), rows.narrow(0, b, e - b), c);
      return spans.sorted ? unembed_part_readouts(model, final_rows, b, e, B, spans, readout, slot) : final_rows;
    });
    base_read = spans.sorted ? out : unembed_all_readouts(model, out, 1, B, readout, slot)[0];
    cache = std::move(ctx.cached());
  } else {
    base_read = gather_readout(model.forward(tokens), readout);
  }
  const MetricReference base_ref = metric_reference(base_read.unsqueeze(0));
  res.base = table_of(example_metrics(base_read.unsqueeze(0), readout, base_ref), keep);

  // Per-example metrics of each unit [E]; averaged over the kept examples once, for all units, at the end.
  std::vector<at::Tensor> prob(n), ld(n), acc(n), kl(n);
  auto store = [&](int64_t i, const ExampleMetrics& m, int64_t k) {
    prob[i] = m.prob[k];
    ld[i] = m.logit_diff[k];
    acc[i] = m.correct[k];
    kl[i] = m.kl[k];
  };

  if (!options.batched) {
    for (int64_t i = 0; i < n; ++i) {
      check_cancel(options);
      at::Tensor logits = model.run_with_hooks(tokens, ablator.hooks(units[i]));
      store(i, example_metrics(gather_readout(logits, readout).unsqueeze(0), readout, base_ref), 0);
      report(options, double(i + 1) / n, "ablating " + res.labels[i]);
    }
  } else {
    // Group heads by (layer, mixer); an ablation only changes that mixer's output, by a linear function of the
    // head slice: resid_mid' = resid_mid + scale * (r_h - z_h) W_h^T. Layers before it are not recomputed.
    const int64_t K = chunk_size(options, B * bytes_per_example(model, L, false), n, B * L);
    int64_t done = 0;
    std::map<std::pair<int64_t, std::string>, std::vector<int64_t>> groups;
    for (int64_t i = 0; i < n; ++i) groups[{res.heads[i].layer, res.heads[i].mixer}].push_back(i);
    for (const auto& [key, idxs] : groups) {
      const int64_t l = key.first;
      const HeadGroup proj = model.head_group(l, key.second);
      BlockImpl* block = &model.block(l);
      // The last block is cached at the readout rows from its mixer on, and the rest of it is per position:
      // there the change is needed at the readout only ([R, ...] below).
      const bool last = l == model.n_layers() - 1;
      auto at_readout = [&](const at::Tensor& rows_form) { return rows_form.index({readout.example, slot}); };
      at::Tensor z = cache.at(proj.hook);  // [B, L, H, D], or [R, H, D] when last
      at::Tensor resid_mid = cache.at(model.block(l).resid_mid_hook());    // [B, L, d], or [R, d] when last
      if (last) {
        z = at_readout(z);
        resid_mid = at_readout(resid_mid);
      }
      for (size_t s = 0; s < idxs.size(); s += K) {
        check_cancel(options);
        const int64_t k = std::min<int64_t>(K, idxs.size() - s);
        std::vector<const std::vector<HeadRef>*> chunk;
        for (int64_t j = 0; j < k; ++j) chunk.push_back(&units[idxs[s + j]]);
        auto change = [&](const HeadRef& h, const at::Tensor& zh) {
          return last ? ablator.change_at(h, zh, readout, B, L) : ablator.change(h, zh);
        };
        const bool zero = ablator.kind() == AblationKind::Zero;
        at::Tensor logits;  // [k, R, V]
        if (last) {  // the rest of the block and the unembedding are per row: parts of the chunk's [k * R] rows
          const at::Tensor mid = ablated_residuals(proj, resid_mid, z, chunk, zero, change);  // [k, R, d]
          const at::Tensor flat = mid.reshape({-1, mid.size(-1)});
          logits = run_example_parts(flat.size(0), flat.device(), nullptr, [&](int64_t b, int64_t e, HookContext*) {
                     return model.unembed(block->forward_after_mixer(flat.narrow(0, b, e - b), nullptr));
                   }).view({mid.size(0), mid.size(1), -1});
        } else if (k == 1 && zero) {  // one variant: its residual too is built in the row parts, example by example
          logits = finish_and_read(model, l + 1, 1, B, readout, resid_mid.device(), [&](int64_t b, int64_t e) {
            const at::Tensor mid = ablated_residuals(proj, resid_mid.narrow(0, b, e - b), z.narrow(0, b, e - b), chunk, true, change);
            return block->forward_after_mixer(mid[0], nullptr);
          });
        } else {  // the later layers over every position: the chunk's variants in parts side by side
          logits = run_example_parts(k, resid_mid.device(), nullptr, [&](int64_t b, int64_t e, HookContext*) {
            const std::vector<const std::vector<HeadRef>*> part(chunk.begin() + b, chunk.begin() + e);
            const at::Tensor stacked = ablated_residuals(proj, resid_mid, z, part, zero, change);
            const at::Tensor resid = block->forward_after_mixer(stacked.view({(e - b) * B, L, -1}), nullptr);
            return finish_and_read(model, l + 1, e - b, B, readout, resid.device(),
                                   [&](int64_t rb, int64_t re) { return resid.narrow(0, rb, re - rb); });
          });
        }
        ExampleMetrics m = example_metrics(logits, readout, base_ref);
        for (int64_t j = 0; j < k; ++j) store(idxs[s + j], m, j);
        done += k;
        report(options, double(done) / n, "ablating layer " + std::to_string(l) + " " + key.second + " heads");
      }
    }
  }
  res.ablated = {mean_over(at::stack(prob), keep), mean_over(at::stack(ld), keep), mean_over(at::stack(acc), keep),
                 mean_over(at::stack(kl), keep)};
  return res;
}

// ---------------------------------------------------------------- knockout

std::vector<Hook> knockout_hooks(const LanguageModel& model, const std::vector<Knockout>& knockouts,
                                 const Readout& readout) {
  std::vector<Hook> out;
  for (const auto& ko : knockouts) {
    std::string name;
    int64_t H = 0;
    if (ko.layer >= 0 && ko.layer < model.n_layers())
      for (const auto& g : model.head_groups(ko.layer))
        if (!g.scores_hook.empty()) {
          name = g.scores_hook;
          H = g.heads;
        }
    if (name.empty()) throw std::invalid_argument("knockout: layer " + std::to_string(ko.layer) + " has no attention");
    for (int64_t h : ko.heads)
      if (h < 0 || h >= H)
        throw std::invalid_argument("knockout: layer " + std::to_string(ko.layer) + " has heads 0.." +
                                    std::to_string(H - 1) + ", not " + std::to_string(h));
    out.push_back({name, [ko, readout](const at::Tensor& scores, const std::string&) {
                     // scores [b, H, q, k]
                     const int64_t Lq = scores.size(2), Lk = scores.size(3);
                     at::Tensor block = at::zeros({scores.size(0), Lq, Lk}, scores.options().dtype(at::kBool));
                     for (const auto& [q, k] : ko.edges) {
                       if (q < 0 || q >= Lq || k < 0 || k >= Lk)
                         throw std::invalid_argument("knockout: edge (" + std::to_string(q) + ", " + std::to_string(k) +
                                                     ") is outside the " + std::to_string(Lq) + "-position sequence");
                       if (k < q) block.select(1, q).select(1, k).fill_(true);
                     }
                     if (ko.last_row) {
                       at::Tensor ex = readout.example, pos = readout.position;
                       for (int64_t i = 0; i < ex.size(0); ++i) {
                         const int64_t e = ex[i].item<int64_t>(), q = pos[i].item<int64_t>();
                         if (e < block.size(0) && q > 0) block[e][q].narrow(0, 0, q).fill_(true);
                       }
                     }
                     at::Tensor mask = block.unsqueeze(1).expand_as(scores);
                     if (!ko.heads.empty()) {
                       at::Tensor sel = at::zeros({scores.size(1)}, scores.options().dtype(at::kBool));
                       for (int64_t h : ko.heads) sel[h] = true;
                       mask = mask.logical_and(sel.view({1, -1, 1, 1}));
                     }
                     return scores.masked_fill(mask, -std::numeric_limits<double>::infinity());
                   }});
  }
  return out;
}

// ---------------------------------------------------------------- patching

const std::vector<std::string>& patch_sites() {
  static const std::vector<std::string> s = {"resid_pre", "resid_mid", "resid_post", "mixer_in", "mixer_out",
                                             "mlp_in",    "mlp_out",   "heads",      "conv_out", "state"};
  return s;
}

std::string site_hook_name(const LanguageModel& model, const std::string& site, int64_t layer,
                           const std::string& mixer) {
  if (std::find(patch_sites().begin(), patch_sites().end(), site) == patch_sites().end())
    throw std::invalid_argument("site '" + site + "': expected one of " + join(patch_sites(), ", ") +
                                closest_matches_hint(site, patch_sites()));
  if (layer < 0 || layer >= model.n_layers()) return "";
  if (site != "heads") return model.block(layer).site_hook(site);
  for (const auto& g : model.head_groups(layer))
    if (mixer.empty() || g.scope == mixer) return g.hook;
  return "";
}

namespace {

struct Cell {
  int64_t row, pos, head;  // head < 0: the whole site
};

struct PatchPlan {
  struct Row {
    std::string label, hook;
    int64_t layer, head;  // head < 0 for whole-site rows
  };
  std::vector<Row> rows;
  std::vector<std::string> hooks;  // the distinct hooks of the rows that have the site
};

// The grid's rows for a site (validated; throws if no layer has it).
PatchPlan plan_rows(const LanguageModel& model, const std::string& site) {
  site_hook_name(model, site, 0);  // validates the site name
  PatchPlan plan;
  for (int64_t l = 0; l < model.n_layers(); ++l) {
    if (site == "heads") {
      for (const auto& g : model.head_groups(l))
        for (int64_t h = 0; h < g.heads; ++h) plan.rows.push_back({HeadRef{l, g.scope, h}.label(), g.hook, l, h});
    } else {
      plan.rows.push_back({"L" + std::to_string(l), site_hook_name(model, site, l), l, -1});
    }
  }
  std::set<std::string> hooks;
  for (const auto& r : plan.rows)
    if (!r.hook.empty()) hooks.insert(r.hook);
  if (hooks.empty()) throw std::invalid_argument("patching: this model has no '" + site + "' site in any layer");
  plan.hooks.assign(hooks.begin(), hooks.end());
  return plan;
}

// Copies the clean value into the variant rows of a stacked activation [k*B, L, ...] at each cell's position.
at::Tensor patch_stacked(const at::Tensor& value, const at::Tensor& clean, const std::vector<Cell>& cells, int64_t B) {
  at::Tensor out = value.clone();
  const int64_t k = static_cast<int64_t>(cells.size());
  auto shape = out.sizes().vec();
  shape.erase(shape.begin());
  shape.insert(shape.begin(), {k, B});
  at::Tensor v = out.view(shape);
  for (int64_t j = 0; j < k; ++j) {
    const Cell& c = cells[j];
    if (c.pos >= clean.size(1)) continue;
    if (c.head >= 0) v[j].select(1, c.pos).select(1, c.head).copy_(clean.select(1, c.pos).select(1, c.head));
    else v[j].select(1, c.pos).copy_(clean.select(1, c.pos));
  }
  return out;
}

struct PairRun {
  Readout readout;
  at::Tensor p_clean, p_corrupt, keep;  // [E]
  at::Tensor clean_read;                // [R, V]
  ActivationCache clean_cache, corrupt_cache;
  at::Tensor corrupt_read;
};

PairRun run_pair(LanguageModel& model, const Batch& clean, const Batch& corrupted,
                 const std::vector<std::string>& clean_names, const std::vector<std::string>& corrupt_names,
                 double keep_threshold) {
  if (!clean.tokens.sizes().equals(corrupted.tokens.sizes()))
    throw std::invalid_argument("patching: clean and corrupted batches differ in shape");
  model.check_tokens(clean.tokens);
  model.check_tokens(corrupted.tokens);
  PairRun pr;
  pr.readout = Readout::last_labelled(clean);
  auto [cl, cc] = model.run_with_cache(clean.tokens, HookSelection::of(clean_names));
  auto [xl, xc] = model.run_with_cache(corrupted.tokens, HookSelection::of(corrupt_names));
  pr.clean_cache = std::move(cc);
  pr.corrupt_cache = std::move(xc);
  pr.clean_read = gather_readout(cl, pr.readout);
  pr.corrupt_read = gather_readout(xl, pr.readout);
  pr.p_clean = example_metrics(pr.clean_read, pr.readout).prob;
  pr.p_corrupt = example_metrics(pr.corrupt_read, pr.readout).prob;
  pr.keep = (pr.p_clean - pr.p_corrupt).gt(keep_threshold).logical_and(examples_with_readout(pr.readout));
  return pr;
}

void fill_pair_stats(PatchResult& res, const PairRun& pr, double keep_threshold) {
  res.total_examples = pr.readout.num_examples;
  res.kept_examples = pr.keep.sum().item<int64_t>();
  if (res.kept_examples == 0)
    throw std::invalid_argument("patching: no example has p(answer | clean) - p(answer | corrupted) > " +
                                format_double(keep_threshold, 3) + " (clean " +
                                format_double(mean_over(pr.p_clean, examples_with_readout(pr.readout)).item<double>(), 3) +
                                ", corrupted " +
                                format_double(mean_over(pr.p_corrupt, examples_with_readout(pr.readout)).item<double>(), 3) +
                                "): the corruption does not change the answer, or the model does not solve the task");
  res.clean_prob = mean_over(pr.p_clean, pr.keep).item<double>();
  res.corrupted_prob = mean_over(pr.p_corrupt, pr.keep).item<double>();
}

// PatchResult::aligned, accumulated cell by cell: each example's score at a cell goes to the anchors that fall on
// the cell's position in that example.
class Aligner {
 public:
  Aligner(const Batch& clean, const Batch& corrupted, const PairRun& pr, int64_t rows) {
    const int64_t E = clean.size(), L = clean.tokens.size(1);
    at::Tensor differs = clean.tokens.ne(corrupted.tokens).to(at::kCPU);  // [E, L]
    at::Tensor keep = pr.keep.to(at::kCPU), pos = pr.readout.position.to(at::kCPU), ex = pr.readout.example.to(at::kCPU);
    std::vector<int64_t> readout_pos(E, -1);
    for (int64_t i = 0; i < ex.size(0); ++i) readout_pos[ex[i].item<int64_t>()] = pos[i].item<int64_t>();
    const int64_t A = static_cast<int64_t>(aligned_anchors().size());
    by_pos_.resize(L);
    for (int64_t e = 0; e < E; ++e) {
      if (!keep[e].item<bool>()) continue;
      at::Tensor where = differs[e].nonzero();
      if (where.size(0) == 0) continue;
      ++examples_;
      const int64_t c = where[0][0].item<int64_t>();
      const int64_t len = clean.lengths.defined() ? std::min(L, clean.lengths[e].item<int64_t>()) : L;
      for (int64_t a = 0; a + 1 < A; ++a) {  // corrupted-1 .. corrupted+3, within the example (not its padding)
        const int64_t p = c + a - 1;
        if (p >= 0 && p < len) by_pos_[p].push_back({a, e});
      }
      if (readout_pos[e] >= 0) by_pos_[readout_pos[e]].push_back({A - 1, e});
    }
    sum_.assign(rows * A, 0.0);
    count_.assign(rows * A, 0);
    A_ = A;
  }
  // The per-example scores [E] of the cell (row, pos).
  void add(int64_t row, int64_t pos, const float* sp) {
    if (by_pos_[pos].empty()) return;
    for (const auto& [a, e] : by_pos_[pos]) {
      sum_[row * A_ + a] += sp[e];
      ++count_[row * A_ + a];
    }
  }
  void finish(PatchResult& res) const {
    const int64_t rows = static_cast<int64_t>(sum_.size()) / A_;
    res.aligned = at::full({rows, A_}, std::numeric_limits<double>::quiet_NaN(), at::kFloat);
    auto acc = res.aligned.accessor<float, 2>();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t a = 0; a < A_; ++a)
        if (count_[r * A_ + a] > 0) acc[r][a] = static_cast<float>(sum_[r * A_ + a] / count_[r * A_ + a]);
    res.aligned_examples = examples_;
  }

 private:
  std::vector<std::vector<std::pair<int64_t, int64_t>>> by_pos_;  // position -> (anchor, example)
  std::vector<double> sum_;
  std::vector<int64_t> count_;
  int64_t A_ = 0, examples_ = 0;
};

// A result with the plan's rows, the pair's statistics, and a score grid of NaN (a site a layer does not have).
PatchResult start_result(const std::string& site, const PatchPlan& plan, const PairRun& pr, int64_t L,
                         double keep_threshold) {
  PatchResult res;
  res.site = site;
  fill_pair_stats(res, pr, keep_threshold);
  res.positions = L;
  for (const auto& r : plan.rows) res.rows.push_back(r.label);
  res.score = at::full({static_cast<int64_t>(plan.rows.size()), L}, std::numeric_limits<double>::quiet_NaN(), at::kFloat);
  return res;
}

// Readout logits [k, R, V] of the corrupted run with the chunk's cells of one (layer, hook) patched from the clean
// run, from the corrupted run's cached input of layer l. With `from_first_cell`, only positions >= the chunk's
// first cell position are computed (earlier positions cannot change: readouts there keep the corrupted logits;
// the cache must hold the prefixes, see activation_patching); otherwise every position.
at::Tensor patched_from(LanguageModel& model, const PairRun& pr, int64_t l, const std::string& site,
                        const std::string& hook, const at::Tensor& clean_act, std::vector<Cell> cells, int64_t B,
                        bool from_first_cell) {
  const int64_t n = model.n_layers(), k = static_cast<int64_t>(cells.size());
  int64_t start = from_first_cell ? cells[0].pos : 0;
  for (const auto& c : cells) start = std::min(start, c.pos);
  const int64_t L = pr.corrupt_cache.at(layer_prefix(l) + "hook_resid_pre").size(1), Ls = L - start;
  std::vector<LayerPrefix> prefixes(n - l);
  for (int64_t j = l; j < n; ++j) {
    LayerPrefix& p = prefixes[j - l];
    p.start = start;
    for (const auto& name : model.block(j).prefix_hooks()) {
      auto it = pr.corrupt_cache.find(name);
      if (it != pr.corrupt_cache.end()) p.tensors[name] = it->second;
    }
  }
  for (auto& c : cells) c.pos -= start;
  const at::Tensor clean_tail = clean_act.narrow(1, start, Ls);
  at::Tensor resid = pr.corrupt_cache.at(layer_prefix(l) + "hook_resid_pre").narrow(1, start, Ls);
  resid = repeat_batch(resid, k * B);
  auto [rows, slot] = readout_rows(pr.readout, B);
  at::Tensor rel = (rows - start).clamp_min(0).repeat({k, 1});  // [k B, P]; rows before start are replaced below
  at::Tensor fin;
  if (site == "resid_pre") {  // the block input itself, patched without a hook
    fin = model.forward_blocks_partial(l, patch_stacked(resid, clean_tail, cells, B), prefixes, rel);
  } else {
    HookContext ctx;
    ctx.add_hook(hook, [&clean_tail, &cells, B](const at::Tensor& v, const std::string&) {
      return patch_stacked(v, clean_tail, cells, B);
    });
    if (l == n - 1) {  // the hook may come after the last block's row gather: run it at every position
      fin = gather_rows(model.block(l).forward_partial(resid, Partial{&prefixes[0], nullptr}, &ctx), rel);
    } else {
      fin = model.forward_blocks_partial(l, resid, prefixes, rel, &ctx);
    }
  }
  fin = fin.view({k, B, fin.size(1), fin.size(2)});
  at::Tensor logits = model.unembed(fin.index({at::indexing::Slice(), pr.readout.example, slot}));  // [k, R, V]
  at::Tensor before = pr.readout.position.lt(start).view({1, -1, 1});
  return at::where(before, pr.corrupt_read.unsqueeze(0).to(logits.scalar_type()), logits);
}

}  // namespace

PatchResult activation_patching(LanguageModel& model, const Batch& clean, const Batch& corrupted,
                                const std::string& site, const SweepOptions& options) {
  at::NoGradGuard no_grad;
  PatchPlan plan = plan_rows(model, site);
  const int64_t B = clean.size(), L = clean.tokens.size(1), nrows = static_cast<int64_t>(plan.rows.size());
  // Batched: every layer starts from the corrupted run's cached block input, and (SPEC §4's causality) runs
  // only the positions from the chunk's first patched one on, with the corrupted run's keys, values, SSM
  // states and conv windows before it. Not for the state site (the state hook needs every position), nor when
  // the SSM states would not fit the memory budget.
  std::vector<std::string> corrupt_names;
  bool partial = false;
  if (options.batched) {
    std::vector<std::string> prefix_names;
    double state_bytes = 0;
    for (int64_t l = 0; l < model.n_layers(); ++l) {
      corrupt_names.push_back(layer_prefix(l) + "hook_resid_pre");
      for (const auto& name : model.block(l).prefix_hooks()) prefix_names.push_back(name);
      state_bytes += model.block(l).mixer().prefix_state_bytes(B, L);
    }
    partial = site != "state" && state_bytes <= static_cast<double>(options.memory_budget_mb) * (1 << 20);
    if (partial) corrupt_names.insert(corrupt_names.end(), prefix_names.begin(), prefix_names.end());
  }
  PairRun pr = run_pair(model, clean, corrupted, plan.hooks, corrupt_names, options.keep_threshold);
  PatchResult res = start_result(site, plan, pr, L, options.keep_threshold);
  res.prob = res.score.clone();
  res.logit_diff = res.score.clone();
  res.accuracy = res.score.clone();
  res.kl = res.score.clone();
  at::Tensor denom = (pr.p_clean - pr.p_corrupt).where(pr.keep, at::ones_like(pr.p_clean));
  const MetricReference clean_ref = metric_reference(pr.clean_read.unsqueeze(0));

  Aligner aligner(clean, corrupted, pr, nrows);
  // A chunk's metrics [k, E] -> its cells' means over the kept examples, in a few whole-chunk ops (per-cell ops
  // were thousands of tiny ones in a sweep).
  auto store = [&](const std::vector<Cell>& cells, const ExampleMetrics& m) {
    const int64_t k = static_cast<int64_t>(cells.size());
    const at::Tensor s = (m.prob - pr.p_corrupt) / denom;  // [k, E]
    const at::Tensor means = at::stack({mean_over(s, pr.keep), mean_over(m.prob, pr.keep), mean_over(m.logit_diff, pr.keep),
                                        mean_over(m.correct, pr.keep), mean_over(m.kl, pr.keep)})
                                 .to(at::kCPU, at::kFloat)
                                 .contiguous();  // [5, k]
    const at::Tensor per_example = s.to(at::kCPU, at::kFloat).contiguous();
    auto mv = means.accessor<float, 2>();
    at::TensorAccessor<float, 2> outs[5] = {res.score.accessor<float, 2>(), res.prob.accessor<float, 2>(),
                                            res.logit_diff.accessor<float, 2>(), res.accuracy.accessor<float, 2>(),
                                            res.kl.accessor<float, 2>()};
    for (int64_t j = 0; j < k; ++j) {
      aligner.add(cells[j].row, cells[j].pos, per_example.data_ptr<float>() + j * per_example.size(1));
      for (int i = 0; i < 5; ++i) outs[i][cells[j].row][cells[j].pos] = mv[i][j];
    }
  };

  // Cells grouped by (layer, hook): one group shares a block input and a hook function.
  std::map<std::pair<int64_t, std::string>, std::vector<Cell>> groups;
  int64_t total = 0;
  for (int64_t r = 0; r < nrows; ++r) {
    if (plan.rows[r].hook.empty()) continue;
    for (int64_t p = 0; p < L; ++p) groups[{plan.rows[r].layer, plan.rows[r].hook}].push_back({r, p, plan.rows[r].head});
    total += L;
  }
  int64_t done = 0;
  const int64_t K = options.batched ? chunk_size(options, B * bytes_per_example(model, L, site == "state"), total, B * L) : 1;
  for (const auto& [key, cells] : groups) {
    const int64_t l = key.first;
    const std::string& hook = key.second;
    const at::Tensor& clean_act = pr.clean_cache.at(hook);
    for (size_t s = 0; s < cells.size(); s += K) {
      check_cancel(options);
      std::vector<Cell> chunk(cells.begin() + s, cells.begin() + std::min(cells.size(), s + K));
      const int64_t k = static_cast<int64_t>(chunk.size());
      at::Tensor logits;
      if (options.batched) {
        logits = run_example_parts(k, clean_act.device(), nullptr, [&](int64_t b, int64_t e, HookContext*) {
          return patched_from(model, pr, l, site, hook, clean_act,
                              std::vector<Cell>(chunk.begin() + b, chunk.begin() + e), B, partial);
        });
      } else {
        Hook patch{hook, [&clean_act, chunk, B](const at::Tensor& v, const std::string&) {
                     return patch_stacked(v, clean_act, chunk, B);
                   }};
        logits = gather_readout(model.run_with_hooks(corrupted.tokens, {patch}), pr.readout).unsqueeze(0);
      }
      store(chunk, example_metrics(logits, pr.readout, clean_ref));
      done += k;
      report(options, double(done) / total, "patching " + hook);
    }
  }
  aligner.finish(res);
  return res;
}

PatchResult attribution_patching(LanguageModel& model, const Batch& clean, const Batch& corrupted,
                                 const std::string& site, const SweepOptions& options) {
  if (site == "state")
    throw std::invalid_argument("attribution patching: the state site is exact-only (a state replacement changes "
                                "the scan itself); use activation_patching");
  PatchPlan plan = plan_rows(model, site);
  PairRun pr = [&] {
    at::NoGradGuard no_grad;
    return run_pair(model, clean, corrupted, plan.hooks, {}, options.keep_threshold);
  }();
  const int64_t L = clean.tokens.size(1), nrows = static_cast<int64_t>(plan.rows.size());
  PatchResult res = start_result(site, plan, pr, L, options.keep_threshold);

  // Corrupted forward with a zero probe added at every site: d metric / d probe = d metric / d activation.
  std::map<std::string, at::Tensor> probes, acts;
  HookContext ctx;
  for (const auto& h : plan.hooks)
    ctx.add_hook(h, [&probes, &acts](const at::Tensor& v, const std::string& name) {
      at::Tensor probe = at::zeros_like(v).requires_grad_(true);
      probes[name] = probe;
      acts[name] = v.detach();
      return v + probe;
    });
  at::Tensor grads_sum;
  std::vector<at::Tensor> probe_list;
  std::vector<std::string> probe_names;
  {
    at::AutoGradMode grad(true);
    at::Tensor logits = model.forward(corrupted.tokens, &ctx);
    at::Tensor read = gather_readout(logits, pr.readout);
    at::Tensor p = at::log_softmax(read, -1).gather(-1, pr.readout.target.unsqueeze(-1)).exp();
    for (auto& [n, t] : probes) {
      probe_names.push_back(n);
      probe_list.push_back(t);
    }
    auto grads = torch::autograd::grad({p.sum()}, probe_list, {}, false, false, /*allow_unused=*/true);
    for (size_t i = 0; i < grads.size(); ++i) probes[probe_names[i]] = grads[i].defined() ? grads[i].detach()
                                                                                         : at::zeros_like(probe_list[i]);
  }
  at::NoGradGuard no_grad;
  at::Tensor denom = (pr.p_clean - pr.p_corrupt).where(pr.keep, at::ones_like(pr.p_clean));  // [E]
  Aligner aligner(clean, corrupted, pr, nrows);
  for (int64_t r = 0; r < nrows; ++r) {
    const auto& row = plan.rows[r];
    if (row.hook.empty()) continue;
    at::Tensor g = probes.at(row.hook), diff = pr.clean_cache.at(row.hook) - acts.at(row.hook);
    at::Tensor prod = (g * diff).to(at::kFloat);  // [B, L, ...]
    if (row.head >= 0) prod = prod.select(2, row.head);
    at::Tensor est = prod.flatten(2).sum(2);                  // [B, L]
    at::Tensor norm = est / denom.unsqueeze(1);
    at::Tensor w = pr.keep.to(at::kFloat).unsqueeze(1);
    res.score[r] = (norm * w).sum(0) / w.sum();
    const at::Tensor by_pos = norm.t().to(at::kCPU, at::kFloat).contiguous();  // [L, E]
    for (int64_t p = 0; p < L; ++p) aligner.add(r, p, by_pos.data_ptr<float>() + p * by_pos.size(1));
  }
  aligner.finish(res);
  return res;
}

const std::vector<std::string>& aligned_anchors() {
  static const std::vector<std::string> a = {"corrupted-1", "corrupted",   "corrupted+1",
                                             "corrupted+2", "corrupted+3", "readout"};
  return a;
}

double score_correlation(const at::Tensor& a_in, const at::Tensor& b_in) {
  at::Tensor a = a_in.flatten().to(at::kDouble), b = b_in.flatten().to(at::kDouble);
  at::Tensor ok = at::isfinite(a).logical_and(at::isfinite(b));
  a = a.masked_select(ok);
  b = b.masked_select(ok);
  if (a.numel() < 2) return std::numeric_limits<double>::quiet_NaN();
  a = a - a.mean();
  b = b - b.mean();
  const double den = std::sqrt((a * a).sum().item<double>() * (b * b).sum().item<double>());
  return den > 0 ? (a * b).sum().item<double>() / den : std::numeric_limits<double>::quiet_NaN();
}

// ---------------------------------------------------------------- direct logit attribution

DlaResult direct_logit_attribution(LanguageModel& model, const at::Tensor& tokens, const Readout& readout) {
  at::NoGradGuard no_grad;
  model.check_tokens(tokens);
  const int64_t n = model.n_layers();
  std::vector<std::string> names = {"hook_embed"};
  if (has_hook(model, "hook_pos_embed")) names.push_back("hook_pos_embed");
  for (int64_t l = 0; l < n; ++l) {
    names.push_back(layer_prefix(l) + "hook_mixer_out");
    if (has_hook(model, layer_prefix(l) + "hook_mlp_out")) names.push_back(layer_prefix(l) + "hook_mlp_out");
    for (const auto& g : model.head_groups(l)) names.push_back(g.hook);
  }
  names.push_back(layer_prefix(n - 1) + "hook_resid_post");
  auto [logits, cache] = model.run_with_cache(tokens, HookSelection::of(names));
  auto read = [&](const std::string& name) { return gather_readout(cache.at(name), readout).to(at::kFloat); };

  NormImpl* norm = &model.final_norm();
  at::Tensor x = read(layer_prefix(n - 1) + "hook_resid_post");  // [R, d]
  at::Tensor U = model.unembedding_matrix().detach().to(at::kFloat).index_select(0, readout.target);  // [R, d]
  at::Tensor dir = U * norm->weight().detach().to(at::kFloat);  // [R, d]
  at::Tensor scale;
  if (norm->is_rms()) scale = at::rsqrt(x.pow(2).mean(-1, true) + norm->eps());
  else scale = at::rsqrt(x.var(-1, false, true) + norm->eps());
  auto project = [&](at::Tensor c) {  // [R, d] -> mean over readout of its logit share
    if (!norm->is_rms()) c = c - c.mean(-1, true);
    return ((c * scale) * dir).sum(-1).mean().item<double>();
  };

  DlaResult res;
  std::vector<double> vals;
  auto add = [&](const std::string& label, double v) {
    res.components.push_back(label);
    vals.push_back(v);
  };
  add("embed", project(read("hook_embed")));
  if (has_hook(model, "hook_pos_embed")) add("pos_embed", project(read("hook_pos_embed")));
  for (int64_t l = 0; l < n; ++l) {
    at::Tensor rest = read(layer_prefix(l) + "hook_mixer_out");
    for (const auto& proj : model.head_groups(l)) {
      at::Tensor z = read(proj.hook);  // [R, H, D]
      for (int64_t h = 0; h < proj.heads; ++h) {
        at::Tensor c = proj.project(h, z.select(1, h)).to(at::kFloat);
        rest = rest - c;
        add(HeadRef{l, proj.scope, h}.label(), project(c));
      }
    }
    add("L" + std::to_string(l) + ".mixer_rest", project(rest));
    if (has_hook(model, layer_prefix(l) + "hook_mlp_out")) add("L" + std::to_string(l) + ".mlp", project(read(layer_prefix(l) + "hook_mlp_out")));
  }
  if (!norm->is_rms()) add("norm_bias", (U * norm->bias().detach().to(at::kFloat)).sum(-1).mean().item<double>());
  res.value = at::tensor(vals, at::kDouble).to(at::kFloat);
  res.answer_logit = gather_readout(logits, readout).gather(-1, readout.target.unsqueeze(-1)).mean().item<double>();
  return res;
}

}  // namespace mechscope
