// Headless figures from a results file (`mechscope --render`): a tensor of an `analyze` results file drawn with
// the workbench's own plot view and written as PNG, PDF or SVG.
#pragma once

#include <string>

#include "app/workbench.h"

namespace mechscope {
struct ResultTensor;
}

namespace mechscope::app {

/// A results tensor as a grid: 2-D as it is, 1-D as one row, 3-D as slice `index` of its first axis (throws when
/// `index` is out of range); labels from the tensor's axis labels, else indices. The title is left to the caller.
Grid grid_of_result(const ResultTensor& t, int index);

/// Renders tensor `name` of `results` (a 1-D or 2-D tensor, or slice `index` of the first axis of a 3-D one) to
/// `out` (.png, .pdf or .svg) at width x height. Returns a one-line description; throws with a clear message.
std::string render_results(const std::string& results, const std::string& name, int index, const std::string& out,
                           int width, int height);

}  // namespace mechscope::app
