// The absent mixer (see none.h).
#include "core/model/mixers/none.h"

#include <stdexcept>

#include <ATen/core/Tensor.h>

namespace mechscope {

at::Tensor NoMixerImpl::forward(const at::Tensor&, const Partial&, HookContext*) {
  throw std::logic_error("a block without a mixer (mlp_only_layer_idx) was asked to run one");
}

}  // namespace mechscope
