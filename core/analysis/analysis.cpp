// Analyses of spec §5 (see analysis.h).
#include "core/analysis/analysis.h"

#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "core/model/model.h"

namespace mechscope {

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

void check_mixer(const LanguageModel& model, int64_t layer, const std::string& mixer) {
  if (layer < 0 || layer >= model.n_layers())
    throw std::invalid_argument("attention map: layer " + std::to_string(layer) + " is outside 0.." +
                                std::to_string(model.n_layers() - 1));
  for (const auto& [m, H] : model.heads_of_layer(layer))
    if (m == mixer) return;
  throw std::invalid_argument("attention map: layer " + std::to_string(layer) + " has no '" + mixer + "' mixer");
}

// Mass of `pattern` [B, H, L, L] summed over (example, q, k) triples -> [H].
at::Tensor mass_over(const at::Tensor& mass, const std::vector<int64_t>& e, const std::vector<int64_t>& q,
                     const std::vector<int64_t>& k) {
  if (e.empty()) return at::zeros({mass.size(1)}, mass.options());
  auto idx = [](const std::vector<int64_t>& v) { return at::tensor(v, at::kLong); };
  // mass[e, :, q, k] -> [n, H]
  at::Tensor picked = mass.permute({0, 2, 3, 1}).index({idx(e), idx(q), idx(k)});
  return picked.sum(0);
}

}  // namespace

// ---------------------------------------------------------------- attention maps

AttentionMap attention_map(LanguageModel& model, const at::Tensor& tokens, int64_t layer, const std::string& mixer,
                           int64_t groups, const std::vector<Hook>& hooks) {
  at::NoGradGuard no_grad;
  check_mixer(model, layer, mixer);
  const HeadGroup group = model.head_group(layer, mixer);
  const std::string hook = group.pattern_hook;
  at::Tensor pattern = model.run(tokens, hooks, HookSelection::of({hook})).second.at(hook);
  if (group.channels) {
    const int64_t D = pattern.size(1);
    if (groups < 1 || D % groups != 0)
      throw std::invalid_argument("attention map: " + std::to_string(D) + " Mamba1 channels do not split into " +
                                  std::to_string(groups) + " equal groups");
    pattern = pattern.view({pattern.size(0), groups, D / groups, pattern.size(2), pattern.size(3)}).mean(2);
  }
  return {layer, mixer, pattern};
}

std::vector<AttentionMap> attention_maps(LanguageModel& model, const at::Tensor& tokens) {
  std::vector<AttentionMap> out;
  for (int64_t l = 0; l < model.n_layers(); ++l)
    for (const auto& [mixer, H] : model.heads_of_layer(l)) out.push_back(attention_map(model, tokens, l, mixer, 1));
  return out;
}

at::Tensor normalise_map(const at::Tensor& pattern) {
  const int64_t L = pattern.size(-1);
  at::Tensor causal = at::ones({pattern.size(-2), L}, pattern.options().dtype(at::kBool)).tril();
  const double inf = std::numeric_limits<double>::infinity();
  at::Tensor lo = pattern.masked_fill(causal.logical_not(), inf).amin({-2, -1}, true);
  at::Tensor hi = pattern.masked_fill(causal.logical_not(), -inf).amax({-2, -1}, true);
  return ((pattern - lo) / (hi - lo).clamp_min(1e-12)).masked_fill(causal.logical_not(), 0);
}

at::Tensor attention_mass(const at::Tensor& pattern) {
  at::Tensor a = pattern.abs();
  return a / a.sum(-1, true).clamp_min(1e-30);
}

// ---------------------------------------------------------------- head scores

const std::vector<std::string>& head_score_names() {
  static const std::vector<std::string> n = {"gather", "aggregate", "causal", "induction", "prev_token"};
  return n;
}

at::Tensor head_score(const HeadScores& s, const std::string& name) {
  if (name == "gather") return s.gather;
  if (name == "aggregate") return s.aggregate;
  if (name == "causal") return s.causal;
  if (name == "induction") return s.induction;
  if (name == "prev_token") return s.prev_token;
  throw std::invalid_argument("head score '" + name + "': expected gather, aggregate, causal, induction or prev_token");
}

std::string top_aggregate_reading(const HeadScores& s) {
  if (!s.aggregate.defined() || s.aggregate.numel() == 0) return "";
  at::Tensor agg = s.aggregate.to(at::kDouble).nan_to_num(-1), causal = s.causal.to(at::kDouble).nan_to_num(-1);
  if (agg.max().item<double>() < 0) return "";
  const int64_t ta = agg.argmax().item<int64_t>(), tc = causal.argmax().item<int64_t>();
  const int64_t rank = causal.gt(causal[ta]).sum().item<int64_t>() + 1;
  char buf[320];
  std::snprintf(buf, sizeof buf, "top aggregate head %s (%.3f): causal %.3f, rank %lld of %lld by causal score; most causal %s (%.3f)",
                s.heads[ta].label().c_str(), s.aggregate[ta].item<double>(), s.causal[ta].item<double>(),
                static_cast<long long>(rank), static_cast<long long>(s.heads.size()), s.heads[tc].label().c_str(),
                s.causal[tc].item<double>());
  return buf;
}

HeadScores head_scores(LanguageModel& model, const Batch& batch, int64_t first_id, int64_t repeat_len, uint64_t seed,
                       const SweepOptions& options) {
  at::NoGradGuard no_grad;
  HeadScores s;
  s.heads = all_heads(model);
  std::vector<std::string> hooks;
  for (int64_t l = 0; l < model.n_layers(); ++l)
    for (const auto& g : model.head_groups(l)) hooks.push_back(g.pattern_hook);

  // Segments from roles: a key starts one; the values after it join it.
  const int64_t B = batch.size(), L = batch.tokens.size(1);
  at::Tensor roles = batch.roles.contiguous(), toks = batch.tokens.contiguous(), tg = batch.targets.contiguous();
  auto R = roles.accessor<int8_t, 2>();
  auto T = toks.accessor<int64_t, 2>();
  auto Y = tg.accessor<int64_t, 2>();
  std::vector<int64_t> ge, gq, gk, ae, aq, ak;
  int64_t n_segments = 0, n_answers = 0;
  bool any_key = false;
  for (int64_t e = 0; e < B; ++e) {
    std::vector<std::pair<int64_t, int64_t>> segs;  // [start, end]
    for (int64_t j = 0; j < L; ++j) {
      if (R[e][j] == static_cast<int8_t>(Role::Key)) {
        any_key = true;
        int64_t end = j;
        while (end + 1 < L && R[e][end + 1] == static_cast<int8_t>(Role::Value)) ++end;
        segs.push_back({j, end});
      }
    }
    for (const auto& [a, b] : segs)
      if (b > a) {
        ++n_segments;
        for (int64_t k = a; k < b; ++k) ge.push_back(e), gq.push_back(b), gk.push_back(k);
      }
    for (int64_t q = 0; q < L; ++q) {
      if (Y[e][q] == -100) continue;
      std::vector<int64_t> seg;
      for (const auto& [a, b] : segs)
        if (b < q)
          for (int64_t j = a + 1; j <= b; ++j)
            if (T[e][j] == Y[e][q]) {
              for (int64_t k = a; k <= b; ++k) seg.push_back(k);
              break;
            }
      if (seg.empty() && segs.empty())  // no key-value structure: the answer's earlier copy and its predecessor
        for (int64_t j = 1; j < q; ++j)
          if (T[e][j] == Y[e][q]) seg.insert(seg.end(), {j - 1, j});
      if (seg.empty()) continue;
      ++n_answers;
      for (int64_t k : seg) ae.push_back(e), aq.push_back(q), ak.push_back(k);
    }
  }

  // Repeated random sequences for induction and previous-token scores.
  const int64_t V = model.config().vocab_size;
  if (first_id < 0 || first_id >= V) throw std::invalid_argument("head scores: first token id outside the vocabulary");
  at::Tensor half = at::randint(first_id, V, {8, repeat_len}, at::make_generator<at::CPUGeneratorImpl>(seed), at::kLong);
  at::Tensor rep = at::cat({half, half}, 1);

  auto cache = model.run_with_cache(batch.tokens, HookSelection::of(hooks)).second;
  auto rcache = model.run_with_cache(rep, HookSelection::of(hooks)).second;
  if (options.progress) options.progress(0.3, "head scores: patterns");

  std::vector<at::Tensor> gather, aggregate, induction, prev;
  for (int64_t l = 0; l < model.n_layers(); ++l)
    for (const auto& g : model.head_groups(l)) {
      const int64_t H = g.heads;
      at::Tensor mass = attention_mass(cache.at(g.pattern_hook).to(at::kFloat));  // [B, H, L, L]
      gather.push_back(any_key && n_segments ? mass_over(mass, ge, gq, gk) / n_segments
                                             : at::full({H}, kNaN, mass.options()));
      aggregate.push_back(n_answers ? mass_over(mass, ae, aq, ak) / n_answers : at::full({H}, kNaN, mass.options()));
      at::Tensor rm = attention_mass(rcache.at(g.pattern_hook).to(at::kFloat));  // [8, H, 2T, 2T]
      const int64_t Tn = repeat_len;
      at::Tensor t = at::arange(Tn, 2 * Tn, at::kLong);
      induction.push_back(rm.index({at::indexing::Slice(), at::indexing::Slice(), t, t - Tn + 1}).mean(std::vector<int64_t>{0, 2}));
      at::Tensor t1 = at::arange(1, 2 * Tn, at::kLong);
      prev.push_back(rm.index({at::indexing::Slice(), at::indexing::Slice(), t1, t1 - 1}).mean(std::vector<int64_t>{0, 2}));
    }
  s.gather = at::cat(gather);
  s.aggregate = at::cat(aggregate);
  s.induction = at::cat(induction);
  s.prev_token = at::cat(prev);

  Ablator zero(model, AblationKind::Zero);
  SweepOptions sweep = options;
  if (options.progress)
    sweep.progress = [&options](double f, const std::string& w) { options.progress(0.3 + 0.7 * f, w); };
  HeadSweepResult abl = head_ablation_sweep(model, batch.tokens, Readout::all_labelled(batch), zero, s.heads, sweep);
  s.causal = abl.base.accuracy - abl.ablated.accuracy;
  return s;
}

// ---------------------------------------------------------------- embedding geometry

double locality_score(const at::Tensor& rows_in, int64_t k) {
  const int64_t n = rows_in.size(0);
  if (n < 2) throw std::invalid_argument("locality: needs at least two rows");
  if (k < 1) throw std::invalid_argument("locality: k must be at least 1");
  const int64_t kk = std::min<int64_t>(k, n - 1);
  at::Tensor x = rows_in.to(at::kDouble);
  x = x / x.norm(2, 1, true).clamp_min(1e-30);
  at::Tensor sim = at::matmul(x, x.t());
  sim.fill_diagonal_(-std::numeric_limits<double>::infinity());
  at::Tensor nn = std::get<1>(sim.topk(kk, 1));  // [n, kk]
  at::Tensor idx = at::arange(n, at::kLong).unsqueeze(1);
  return (nn - idx).abs().le(k).to(at::kDouble).mean().item<double>();
}

EmbeddingGeometry embedding_geometry(const at::Tensor& rows, int64_t components, int64_t k) {
  if (rows.dim() != 2 || rows.size(0) < 2)
    throw std::invalid_argument("embedding geometry: expected at least two rows [n, d]");
  EmbeddingGeometry g;
  g.rows = rows.detach().to(at::kFloat);
  g.k = k;
  at::Tensor x = g.rows.to(at::kDouble);
  at::Tensor centred = x - x.mean(0, true);
  auto [U, S, Vh] = at::linalg_svd(centred, false);
  const int64_t c = std::min<int64_t>({components, Vh.size(0), x.size(0)});
  at::Tensor comps = Vh.narrow(0, 0, c);  // [c, d]
  // Deterministic signs: the largest coefficient of each component is positive.
  at::Tensor big = comps.abs().argmax(1, true);
  comps = comps * comps.gather(1, big).sign().clamp_min(0).mul(2).sub(1);
  g.projection = at::matmul(centred, comps.t()).to(at::kFloat);
  at::Tensor var = S.pow(2);
  g.explained = (var.narrow(0, 0, c) / var.sum().clamp_min(1e-300)).to(at::kFloat);
  at::Tensor xn = x / x.norm(2, 1, true).clamp_min(1e-30);
  g.cosine = at::matmul(xn, xn.t()).to(at::kFloat);
  g.locality = locality_score(x, k);
  return g;
}

at::Tensor probe_rows(const LanguageModel& model, const Task* task, std::vector<int64_t>* ids) {
  if (task) {
    auto probe = task->embedding_probe_ids();
    if (!probe.empty()) {
      if (ids) *ids = probe;
      return model.embedding_matrix().detach().index_select(0, at::tensor(probe, at::kLong));
    }
  }
  if (model.position_table().defined()) {
    at::Tensor w = model.position_table().detach();
    if (ids) {
      ids->clear();
      for (int64_t i = 0; i < w.size(0); ++i) ids->push_back(i);
    }
    return w;
  }
  return {};
}

// ---------------------------------------------------------------- logit lens

LogitLens logit_lens(LanguageModel& model, const Batch& batch) {
  at::NoGradGuard no_grad;
  const int64_t n = model.n_layers();
  std::vector<std::string> hooks = {layer_prefix(0) + "hook_resid_pre"};
  for (int64_t l = 0; l < n; ++l) hooks.push_back(layer_prefix(l) + "hook_resid_post");
  auto cache = model.run_with_cache(batch.tokens, HookSelection::of(hooks)).second;
  Readout r = Readout::all_labelled(batch);
  LogitLens out;
  std::vector<at::Tensor> prob, acc, ex_prob, ex_top;
  at::Tensor t0 = batch.targets[0];
  at::Tensor labelled0 = t0.ne(-100);
  for (size_t i = 0; i < hooks.size(); ++i) {
    out.stages.push_back(i == 0 ? "embed" : "L" + std::to_string(i - 1));
    at::Tensor resid = cache.at(hooks[i]);
    at::Tensor logits = model.unembed(gather_readout(resid, r));
    ExampleMetrics m = example_metrics(logits, r);
    prob.push_back(m.prob.mean());
    acc.push_back(m.correct.mean());
    at::Tensor l0 = model.unembed(resid[0]).to(at::kFloat);  // [L, V]
    at::Tensor p0 = at::softmax(l0, -1).gather(-1, t0.clamp_min(0).unsqueeze(-1)).squeeze(-1);
    ex_prob.push_back(p0.masked_fill(labelled0.logical_not(), kNaN));
    ex_top.push_back(l0.argmax(-1));
  }
  out.prob = at::stack(prob);
  out.accuracy = at::stack(acc);
  out.example_prob = at::stack(ex_prob);
  out.example_top = at::stack(ex_top);
  return out;
}

}  // namespace mechscope
