// Attention knockout (spec §4): chosen query -> key edges of a layer's attention heads blocked (the score set to
// -inf before the softmax), as hooks on the scores. Must not: do file I/O.
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

/// Blocks query->key edges of attention heads of one layer (the score becomes -inf before the softmax).
struct Knockout {
  int64_t layer = 0;
  std::vector<int64_t> heads;                         ///< empty: every head of the layer
  std::vector<std::pair<int64_t, int64_t>> edges;     ///< (query position, key position), every example
  bool last_row = false;  ///< also block every edge from each example's readout position to the earlier keys
};
/// Hooks implementing the knockouts (one per layer) for a run whose readout is `readout`.
std::vector<Hook> knockout_hooks(const LanguageModel& model, const std::vector<Knockout>& knockouts,
                                 const Readout& readout);

}  // namespace mechscope
