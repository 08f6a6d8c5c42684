// Patching's grid, pair run and alignment, shared by activation and attribution patching (see patching.h).
#include "core/interventions/patching.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include <ATen/ATen.h>

#include "core/interventions/heads.h"
#include "core/model/model.h"
#include "core/util/strings.h"

namespace mechscope {

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

at::Tensor patch_one_cell(LanguageModel& model, const at::Tensor& clean_tokens, const at::Tensor& corrupted_tokens,
                          const std::string& hook, int64_t pos, int64_t head, const at::Tensor& aligned) {
  at::NoGradGuard no_grad;
  const at::Tensor clean = model.run_with_cache(clean_tokens, HookSelection::of({hook})).second.at(hook);
  return model.run_with_hooks(corrupted_tokens, {{hook, [&](const at::Tensor& v, const std::string&) {
                                                  at::Tensor out = v.clone();
                                                  patching::copy_cell(out, clean, pos, head, aligned);
                                                  return out;
                                                }}});
}

namespace patching {

void copy_cell(at::Tensor rows, const at::Tensor& clean, int64_t pos, int64_t head, const at::Tensor& aligned) {
  auto at_head = [head](const at::Tensor& t, int64_t dim) { return head >= 0 ? t.select(dim, head) : t; };
  if (!aligned.defined()) {
    at_head(rows.select(1, pos), 1).copy_(at_head(clean.select(1, pos), 1));
    return;
  }
  const at::Tensor to = aligned.select(1, pos).to(at::kCPU);
  for (int64_t b = 0; b < rows.size(0); ++b) {
    const int64_t q = to[b].item<int64_t>();
    if (q >= 0) at_head(rows[b][q], 0).copy_(at_head(clean[b][pos], 0));
  }
}

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

PairRun run_pair(LanguageModel& model, const Batch& clean, const Batch& corrupted,
                 const std::vector<std::string>& clean_names, const std::vector<std::string>& corrupt_names,
                 double keep_threshold) {
  if (corrupted.aligned.defined() ? corrupted.size() != clean.size() || corrupted.aligned.size(1) != clean.tokens.size(1)
                                   : !clean.tokens.sizes().equals(corrupted.tokens.sizes()))
    throw std::invalid_argument("patching: clean and corrupted batches differ in shape");
  model.check_tokens(clean.tokens);
  model.check_tokens(corrupted.tokens);
  PairRun pr;
  pr.readout = Readout::last_labelled(clean);
  pr.corrupt_readout = pr.readout;
  if (corrupted.aligned.defined()) {  // the corrupted prompts' own readout positions, the same examples and answers
    pr.corrupt_readout = Readout::last_labelled(corrupted);
    if (!at::equal(pr.corrupt_readout.example, pr.readout.example) || !at::equal(pr.corrupt_readout.target, pr.readout.target))
      throw std::invalid_argument("patching: the corrupted prompts' answers are not the clean ones'");
  }
  auto [cl, cc] = model.run_with_cache(clean.tokens, HookSelection::of(clean_names));
  auto [xl, xc] = model.run_with_cache(corrupted.tokens, HookSelection::of(corrupt_names));
  pr.clean_cache = std::move(cc);
  pr.corrupt_cache = std::move(xc);
  pr.clean_read = gather_readout(cl, pr.readout);
  pr.corrupt_read = gather_readout(xl, pr.corrupt_readout);
  pr.p_clean = example_metrics(pr.clean_read, pr.readout).prob;
  pr.p_corrupt = example_metrics(pr.corrupt_read, pr.readout).prob;
  pr.keep = (pr.p_clean - pr.p_corrupt).gt(keep_threshold).logical_and(examples_with_readout(pr.readout));
  return pr;
}

namespace {

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

}  // namespace

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

Aligner::Aligner(const Batch& clean, const Batch& corrupted, const PairRun& pr, int64_t rows) {
  const int64_t E = clean.size(), L = clean.tokens.size(1);
  const int64_t A = static_cast<int64_t>(aligned_anchors().size());
  by_pos_.resize(L);
  sum_.assign(rows * A, 0.0);
  count_.assign(rows * A, 0);
  A_ = A;
  if (corrupted.aligned.defined()) return;  // prompts of different lengths: no first differing position
  at::Tensor differs = clean.tokens.ne(corrupted.tokens).to(at::kCPU);  // [E, L]
  at::Tensor keep = pr.keep.to(at::kCPU), pos = pr.readout.position.to(at::kCPU), ex = pr.readout.example.to(at::kCPU);
  std::vector<int64_t> readout_pos(E, -1);
  for (int64_t i = 0; i < ex.size(0); ++i) readout_pos[ex[i].item<int64_t>()] = pos[i].item<int64_t>();
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
}

void Aligner::add(int64_t row, int64_t pos, const float* sp) {
  if (by_pos_[pos].empty()) return;
  for (const auto& [a, e] : by_pos_[pos]) {
    sum_[row * A_ + a] += sp[e];
    ++count_[row * A_ + a];
  }
}

void Aligner::finish(PatchResult& res) const {
  const int64_t rows = static_cast<int64_t>(sum_.size()) / A_;
  res.aligned = at::full({rows, A_}, std::numeric_limits<double>::quiet_NaN(), at::kFloat);
  auto acc = res.aligned.accessor<float, 2>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t a = 0; a < A_; ++a)
      if (count_[r * A_ + a] > 0) acc[r][a] = static_cast<float>(sum_[r * A_ + a] / count_[r * A_ + a]);
  res.aligned_examples = examples_;
}

}  // namespace patching

}  // namespace mechscope
