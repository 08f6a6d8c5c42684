// Direct logit attribution (spec §4): each component's output (the embedding, every head, each layer's rest, the
// MLPs, the final norm's bias) through the final norm's scale of the clean run onto the answer's unembedding
// direction; the components sum to the answer logit. Must not: do file I/O.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "core/model/hooks.h"
#include "core/tasks/task.h"

#include "core/interventions/metrics.h"

namespace mechscope {

class LanguageModel;

struct DlaResult {
  std::vector<std::string> components;  ///< "embed", "L0.attn.H0", ..., "L0.mixer_rest", "L0.mlp", "norm_bias"
  at::Tensor value;                     ///< [components]: mean over readout positions of the answer logit share
  double answer_logit = 0;              ///< mean answer logit (before a final soft-cap); sum of `value` equals it (to float tolerance)
};
/// Each component's output through the final norm (with the clean run's scale) onto the answer's unembedding.
DlaResult direct_logit_attribution(LanguageModel& model, const at::Tensor& tokens, const Readout& readout);

}  // namespace mechscope
