// The mixer registry (make_mixer) and the small shared parts of the interface (see mixer.h).
#include "core/model/mixer.h"

#include <stdexcept>

#include <ATen/ATen.h>

#include "core/model/mixers/attention.h"
#include "core/model/mixers/mamba1.h"
#include "core/model/mixers/mamba2.h"
#include "core/model/mixers/none.h"
#include "core/model/mixers/parallel.h"

namespace mechscope {

const at::Tensor& LayerPrefix::at(const std::string& hook) const {
  auto it = tensors.find(hook);
  if (it == tensors.end() || !it->second.defined())
    throw std::logic_error("partial run from position " + std::to_string(start) + ": the prefix lacks " + hook);
  return it->second;
}

at::Tensor LayerPrefix::positions(const std::string& hook, int64_t from, int64_t n) const {
  const at::Tensor& t = at(hook);
  auto it = first.find(hook);
  const int64_t f = it == first.end() ? 0 : it->second;
  if (from < f || from + n > f + t.size(1))
    throw std::logic_error("partial run from position " + std::to_string(start) + ": the prefix holds positions " +
                           std::to_string(f) + ".." + std::to_string(f + t.size(1) - 1) + " of " + hook + ", not " +
                           std::to_string(from) + ".." + std::to_string(from + n - 1));
  return t.narrow(1, from - f, n);
}

at::Tensor HeadGroup::project(int64_t h, const at::Tensor& slice) const {
  at::Tensor out = at::matmul(slice.to(weight.scalar_type()), columns(h).t());
  return scale.defined() ? out * scale : out;
}

// Adding a mixer: its file under mixers/, a MixerKind with its name (config.h), and one line here.
std::shared_ptr<MixerImpl> make_mixer(MixerKind kind, const ModelConfig& cfg, int64_t layer) {
  switch (kind) {
    case MixerKind::Attention: return std::make_shared<AttentionImpl>(cfg, layer);
    case MixerKind::Mamba1: return std::make_shared<Mamba1Impl>(cfg, layer);
    case MixerKind::Mamba2: return std::make_shared<Mamba2Impl>(cfg, layer);
    case MixerKind::Parallel: return std::make_shared<ParallelMixerImpl>(cfg, layer);
    case MixerKind::None: return std::make_shared<NoMixerImpl>();
  }
  throw std::logic_error("make_mixer: unknown mixer kind for layer " + std::to_string(layer));
}

}  // namespace mechscope
