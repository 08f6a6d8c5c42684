// verify_model: see verify.h.
#include "core/interventions/verify.h"

#include <algorithm>
#include <cstdio>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "core/interventions/interventions.h"
#include "core/model/model.h"
#include "kernels/binding/scan_ops.h"

namespace mechscope {

VerifyReport verify_model(LanguageModel& model, const Task* task, int64_t examples, uint64_t seed, double tolerance) {
  at::NoGradGuard no_grad;
  at::Tensor tokens;
  Batch batch;
  const ModelConfig& c = model.config();
  if (task) {
    batch = task->sample(examples, seed);
    tokens = batch.tokens;
  } else {
    const int64_t L = c.pos_emb == "learned" ? std::min<int64_t>(64, c.max_seq_len) : 64;
    tokens = at::randint(c.vocab_size, {examples, L}, at::make_generator<at::CPUGeneratorImpl>(seed), at::kLong);
  }
  VerifyReport rep;
  auto add = [&](const std::string& what, const at::Tensor& a, const at::Tensor& b) {
    VerifyCheck ch;
    ch.what = what;
    ch.diff = (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
    ch.scale = std::max(1.0, b.abs().max().item<double>());
    ch.pass = ch.diff <= tolerance * ch.scale;
    rep.pass = rep.pass && ch.pass;
    rep.checks.push_back(ch);
  };
  at::Tensor fast = model.forward(tokens);
  const bool was = kernels::fast_scan_enabled();
  kernels::set_fast_scan_enabled(false);
  at::Tensor reference;
  try {
    reference = model.forward(tokens);
  } catch (...) {
    kernels::set_fast_scan_enabled(was);
    throw;
  }
  kernels::set_fast_scan_enabled(was);
  add("fast forward vs reference forward (logits)", fast, reference);
  auto [cached, cache] = model.run_with_cache(tokens, HookSelection::everything(true));
  add("forward with the full cache (" + std::to_string(cache.size()) + " hooks) vs plain forward", cached, fast);
  if (task) {
    Readout r = Readout::all_labelled(batch);
    {  // the last block run at the readout rows only (attention's fused rows kernel), as the sweeps run it
      const std::string last = "blocks." + std::to_string(model.n_layers() - 1) + ".";
      const at::Tensor rows = readout_rows(r, tokens.size(0)).first;
      add("last block at the readout rows vs the full forward there",
          model.forward_blocks_at(model.n_layers() - 1, cache.at(last + "hook_resid_pre"), rows, nullptr,
                                  cache.at("hook_embed")),
          gather_rows(cache.at(last + "hook_resid_post"), rows));
    }
    Ablator zero(model, AblationKind::Zero);
    auto heads = all_heads(model);
    if (heads.size() > 16) {
      std::vector<HeadRef> some;
      for (size_t i = 0; i < 16; ++i) some.push_back(heads[i * heads.size() / 16]);
      heads = some;
    }
    SweepOptions plain;
    plain.batched = false;
    auto a = head_ablation_sweep(model, tokens, r, zero, heads, plain);
    auto b = head_ablation_sweep(model, tokens, r, zero, heads, {});
    add("batched head-ablation sweep vs one forward per head (" + std::to_string(heads.size()) + " heads, probability)",
        b.ablated.prob, a.ablated.prob);
    const int64_t n = std::min<int64_t>(4, batch.size());
    Batch small = batch.narrow(0, n);
    Batch corrupted = task->corrupt(small, seed + 1);
    SweepOptions keep_all;
    keep_all.keep_threshold = -1;
    SweepOptions plain_all = keep_all;
    plain_all.batched = false;
    auto pa = activation_patching(model, small, corrupted, "resid_pre", plain_all);
    auto pb = activation_patching(model, small, corrupted, "resid_pre", keep_all);
    add("batched residual patching vs one forward per cell (probability)", pb.prob, pa.prob);
  }
  char buf[128];
  std::snprintf(buf, sizeof buf, "verify: %s (tolerance %.0e relative; %lld examples)", rep.pass ? "PASS" : "FAIL",
                tolerance, static_cast<long long>(examples));
  rep.summary = buf;
  return rep;
}

}  // namespace mechscope
