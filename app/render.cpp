// render_results: see render.h. Core (torch) headers come before Qt's (Qt's `slots` macro breaks torch).
#include "app/render.h"

#include <stdexcept>

#include <ATen/ATen.h>

#include "core/io/results.h"

#include <QString>

#include "app/plotview.h"

namespace mechscope::app {

Grid grid_of_result(const ResultTensor& t, int index) {
  at::Tensor v = t.value.to(at::kDouble);
  std::vector<std::string> axes = t.axes;
  axes.resize(static_cast<size_t>(v.dim()));  // unnamed axes: index labels
  if (v.dim() == 3) {
    if (index < 0 || index >= v.size(0))
      throw std::invalid_argument("'" + t.name + "' is 3-dimensional " + "[" + std::to_string(v.size(0)) + ", ...]: choose "
                                  "a slice of its first axis with --index 0.." + std::to_string(v.size(0) - 1));
    v = v[index];
    axes.erase(axes.begin());
  } else if (v.dim() == 1) {
    v = v.unsqueeze(0);
    axes.insert(axes.begin(), "");
  } else if (v.dim() != 2) {
    throw std::invalid_argument("'" + t.name + "' has " + std::to_string(v.dim()) + " dimensions; figures draw 1-3");
  }
  v = v.contiguous();
  Grid g;
  g.rows = static_cast<int>(v.size(0));
  g.cols = static_cast<int>(v.size(1));
  g.values.assign(v.data_ptr<double>(), v.data_ptr<double>() + v.numel());
  auto labels = [&](const std::string& axis, int n) {
    std::vector<std::string> out;
    if (!axis.empty() && t.labels.is_object() && t.labels.contains(axis))
      for (const auto& l : t.labels[axis]) out.push_back(l.is_string() ? l.get<std::string>() : l.dump());
    if (static_cast<int>(out.size()) != n) {
      out.clear();
      for (int i = 0; i < n; ++i) out.push_back(std::to_string(i));
    }
    return out;
  };
  g.row_labels = t.value.dim() == 1 ? std::vector<std::string>{t.name} : labels(axes[0], g.rows);
  g.col_labels = labels(axes[1], g.cols);
  g.y_title = t.value.dim() == 1 ? "" : axes[0];
  g.x_title = axes[1];
  g.value_title = t.name;
  return g;
}

std::string render_results(const std::string& results, const std::string& name, int index, const std::string& out,
                           int width, int height) {
  ResultsFile rf = read_results(results);
  std::string chosen = name;
  if (chosen.empty()) {  // the first tensor that is not an input
    for (const auto& t : rf.tensors)
      if (t.name.rfind("inputs/", 0) != 0 && t.value.dim() >= 1 && t.value.dim() <= 3) {
        chosen = t.name;
        break;
      }
    if (chosen.empty()) throw std::runtime_error("'" + results + "' has no tensor to draw");
  }
  const ResultTensor& t = rf.get(chosen);
  Grid g = grid_of_result(t, index);
  std::string ck = rf.provenance.value("checkpoint", "");
  g.title = rf.kind + ": " + chosen + (t.value.dim() == 3 ? " [" + std::to_string(index) + "]" : "") +
            (ck.empty() ? "" : " — " + ck.substr(ck.find_last_of('/') + 1));
  bool symmetric = false;
  for (double x : g.values)
    if (x < 0) symmetric = true;
  PlotView view(QString::fromStdString(chosen));
  view.resize(width, height);
  const std::string prov = rf.provenance.dump();
  view.setProvenance([prov](const std::string&) { return prov; });
  view.showGrid(g, symmetric);
  view.exportTo(QString::fromStdString(out), width, height);
  return "drew " + chosen + " [" + std::to_string(g.rows) + " x " + std::to_string(g.cols) + "] into " + out;
}

}  // namespace mechscope::app
