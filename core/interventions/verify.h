// `verify`: the fast paths of a model against its plain reference paths, so a user can trust what the
// workbench shows (scan kernels vs pure-LibTorch scans, cached vs plain forward, batched vs plain sweeps).
#pragma once

#include <string>
#include <vector>

#include "core/tasks/task.h"

namespace mechscope {

class LanguageModel;

struct VerifyCheck {
  std::string what;
  double diff = 0, scale = 1;
  bool pass = true;
};
struct VerifyReport {
  std::vector<VerifyCheck> checks;
  bool pass = true;
  std::string summary;  ///< "verify: PASS (tolerance 1e-04 relative; 16 examples)"
};
/// With a task, the sweeps are checked on its examples; without, random tokens test the forward only.
VerifyReport verify_model(LanguageModel& model, const Task* task, int64_t examples, uint64_t seed, double tolerance);

}  // namespace mechscope
