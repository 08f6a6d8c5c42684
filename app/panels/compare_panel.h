// The Compare panel: every loaded model that reads the same vocabulary on the current examples (accuracy, answer
// probability), and side by side: a layer's attention, the head grid, or the embedding PCA.
#pragma once

#include <vector>

#include "app/panel.h"

class QComboBox;
class QSpinBox;
class QTableWidget;

namespace mechscope::app {

class ComparePanel : public Panel {
 public:
  explicit ComparePanel(PanelContext& ctx);
  QString title() const override { return QObject::tr("Compare"); }
  QString name() const override { return "compare"; }
  QWidget* widget() override { return widget_; }
  std::vector<PlotView*> plots() const override { return plots_; }
  /// Shows every loaded model side by side: view 0 attention (mean over heads) of `layer`, 1 head grid (aggregate
  /// score), 2 embedding PCA.
  void compare(int view, int layer);
  const std::vector<PlotView*>& comparePlots() const { return plots_; }

 private:
  void refreshTable();
  void refreshPlots();
  void showModel(int i, int view, int layer);
  QWidget* widget_;
  QTableWidget* table_;
  QComboBox* view_;
  QSpinBox* layer_;
  QWidget* box_;
  std::vector<PlotView*> plots_;
};

}  // namespace mechscope::app
