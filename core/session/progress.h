// Progress and cancel of a long call (a sweep, an analysis): what the CLI's progress line and the workbench's status
// bar pass down. No torch, no Qt: the workbench's torch-free façade includes it.
#pragma once

#include <atomic>
#include <functional>
#include <string>

namespace mechscope {

struct Progress {
  std::function<void(double fraction, const std::string& what)> report;  ///< optional
  const std::atomic<bool>* cancel = nullptr;                              ///< optional: stop when set
};

}  // namespace mechscope
