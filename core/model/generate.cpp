// Incremental decoding and greedy generation (see generate.h).
#include "core/model/generate.h"

#include <ATen/ATen.h>

#include <stdexcept>

#include "core/model/block.h"
#include "core/model/model.h"

namespace mechscope {

namespace {

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// How much of a prefix hook incremental decoding keeps: an SSM's last state, its convolution's last inputs (a
// window wider than any d_conv), the token embedding of the chunk being read (set before each chunk); everything
// else (attention's keys and values) at every position.
constexpr int64_t kConvWindow = 16;

}  // namespace

IncrementalDecoder::IncrementalDecoder(LanguageModel& model) : model_(model) {
  const int64_t n = model.n_layers();
  layers_.resize(static_cast<size_t>(n));
  hooks_.resize(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) hooks_[static_cast<size_t>(j)] = model.block(j).prefix_hooks();
}

at::Tensor IncrementalDecoder::feed(const at::Tensor& tokens) {
  if (tokens.dim() != 2 || tokens.size(1) < 1) throw std::invalid_argument("incremental decoding: tokens must be [batch, n >= 1]");
  if (batch_ >= 0 && tokens.size(0) != batch_)
    throw std::invalid_argument("incremental decoding: a batch of " + std::to_string(tokens.size(0)) + " after " +
                                std::to_string(batch_));
  model_.check_tokens(tokens);
  batch_ = tokens.size(0);
  const int64_t s = length_, n = tokens.size(1);
  at::NoGradGuard no_grad;
  at::Tensor embedding;
  at::Tensor resid = model_.embed(tokens, nullptr, &embedding, s);
  // The chunk's values of every prefix hook, caught as the layers compute them (a hook function, not the cache:
  // an SSM's per-position states live for one layer only).
  std::vector<std::map<std::string, at::Tensor>> fresh(layers_.size());
  HookContext ctx;
  for (size_t j = 0; j < layers_.size(); ++j) {
    layers_[j].start = s;
    for (const auto& h : hooks_[j]) {
      if (h == "hook_embed") {
        layers_[j].tensors[h] = embedding;
        layers_[j].first[h] = s;
        continue;
      }
      auto* slot = &fresh[j][h];
      const bool state = ends_with(h, "hook_state");
      ctx.add_hook(h, [slot, state, n](const at::Tensor& v, const std::string&) {
        *slot = state ? v.narrow(1, n - 1, 1).clone() : v;
        return v;
      });
    }
  }
  const at::Tensor rows = at::full({batch_, 1}, n - 1, tokens.options());
  at::Tensor last = model_.forward_blocks_partial(0, resid, layers_, rows, &ctx);  // [batch, 1, d_model]
  for (size_t j = 0; j < layers_.size(); ++j) {
    LayerPrefix& p = layers_[j];
    for (const auto& h : hooks_[j]) {
      if (h == "hook_embed") continue;
      const at::Tensor& v = fresh[j][h];
      if (!v.defined()) throw std::logic_error("incremental decoding: layer " + std::to_string(j) + " did not compute " + h);
      if (ends_with(h, "hook_state")) {
        p.tensors[h] = v;
        p.first[h] = s + n - 1;
      } else if (ends_with(h, "hook_mixer_in")) {
        at::Tensor all = p.tensors.count(h) ? at::cat({p.tensors[h], v}, 1) : v;
        const int64_t keep = std::min<int64_t>(all.size(1), kConvWindow);
        p.tensors[h] = all.narrow(1, all.size(1) - keep, keep).contiguous();
        p.first[h] = s + n - keep;
      } else {
        p.tensors[h] = p.tensors.count(h) ? at::cat({p.tensors[h], v}, 1) : v;
      }
    }
  }
  length_ = s + n;
  return model_.unembed(last).select(1, 0);
}

namespace {

// One greedy step's bookkeeping: appends each row's next id (-1 for a row that stopped); false when all stopped.
bool take(const at::Tensor& logits, std::vector<std::vector<int64_t>>& out, std::vector<bool>& done,
          const GenerationOptions& o) {
  const at::Tensor next = logits.argmax(-1).to(at::kCPU);
  bool any = false;
  for (size_t b = 0; b < out.size(); ++b) {
    if (done[b]) {
      out[b].push_back(-1);
      continue;
    }
    const int64_t id = next[static_cast<int64_t>(b)].item<int64_t>();
    out[b].push_back(id);
    for (int64_t stop : o.stop) done[b] = done[b] || id == stop;
    any = any || !done[b];
  }
  return any;
}

// Each row's last id as the next input [batch, 1] (a row that stopped reads 0: its outputs are not used).
at::Tensor last_ids(const std::vector<std::vector<int64_t>>& out, const at::Tensor& like) {
  at::Tensor next = at::empty({static_cast<int64_t>(out.size()), 1}, like.options());
  for (size_t b = 0; b < out.size(); ++b) next[static_cast<int64_t>(b)][0] = std::max<int64_t>(out[b].back(), 0);
  return next;
}

at::Tensor as_tensor(const std::vector<std::vector<int64_t>>& rows) {
  const auto B = static_cast<int64_t>(rows.size());
  const auto n = rows.empty() ? int64_t{0} : static_cast<int64_t>(rows[0].size());
  at::Tensor t = at::empty({B, n}, at::kLong);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t k = 0; k < n; ++k) t[b][k] = rows[static_cast<size_t>(b)][static_cast<size_t>(k)];
  return t;
}

void check(const at::Tensor& prompts, const GenerationOptions& o) {
  if (prompts.dim() != 2 || prompts.size(0) < 1 || prompts.size(1) < 1)
    throw std::invalid_argument("generation: prompts must be [batch >= 1, length >= 1]");
  if (o.max_new_tokens < 1 || o.max_new_tokens > 100000)
    throw std::invalid_argument("generation: max_new_tokens must be in 1..100000");
  if (o.prompt_chunk < 1) throw std::invalid_argument("generation: prompt_chunk must be at least 1");
}

}  // namespace

at::Tensor greedy_generate(LanguageModel& model, const at::Tensor& prompts, const GenerationOptions& o) {
  check(prompts, o);
  IncrementalDecoder dec(model);
  at::Tensor logits;
  for (int64_t s = 0; s < prompts.size(1); s += o.prompt_chunk)
    logits = dec.feed(prompts.narrow(1, s, std::min<int64_t>(o.prompt_chunk, prompts.size(1) - s)));
  std::vector<std::vector<int64_t>> out(static_cast<size_t>(prompts.size(0)));
  std::vector<bool> done(out.size(), false);
  for (int64_t k = 0; k < o.max_new_tokens; ++k) {
    const bool more = take(logits, out, done, o);
    if (!more || k + 1 == o.max_new_tokens) break;
    logits = dec.feed(last_ids(out, prompts));
  }
  return as_tensor(out);
}

at::Tensor greedy_generate_reference(LanguageModel& model, const at::Tensor& prompts, const GenerationOptions& o) {
  check(prompts, o);
  at::NoGradGuard no_grad;
  at::Tensor seq = prompts;
  std::vector<std::vector<int64_t>> out(static_cast<size_t>(prompts.size(0)));
  std::vector<bool> done(out.size(), false);
  for (int64_t k = 0; k < o.max_new_tokens; ++k) {
    const bool more = take(model.forward(seq).select(1, seq.size(1) - 1), out, done, o);
    if (!more || k + 1 == o.max_new_tokens) break;
    seq = at::cat({seq, last_ids(out, prompts)}, 1);
  }
  return as_tensor(out);
}

}  // namespace mechscope
