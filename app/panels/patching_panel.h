// The Patching panel: an activation patching sweep of a site on the input and its corruption (the role chosen), by
// absolute position or aligned to each example's corruption; click a cell to apply that one patch.
#pragma once

#include "app/panel.h"

class QComboBox;
class QLabel;

namespace mechscope::app {

class PatchingPanel : public Panel {
 public:
  explicit PatchingPanel(PanelContext& ctx);
  QString title() const override { return QObject::tr("Patching"); }
  QString name() const override { return "patching"; }
  QWidget* widget() override { return widget_; }
  void changed(Change c) override;
  std::vector<PlotView*> plots() const override { return {plot_}; }
  void save(QJsonObject& w) const override;
  void restore(const QJsonObject& w) override;
  PlotView* plot() const { return plot_; }
  QComboBox* viewCombo() const { return view_combo_; }
  /// Runs the sweep with the panel's site and role, as its button does.
  void run();
  /// The last sweep again in the chosen view.
  void show();

 private:
  void showGrid(const Grid& g, bool aligned);
  void cellClicked(int r, int c);
  QWidget* widget_;
  QComboBox* site_combo_;
  QComboBox* role_combo_;
  QComboBox* view_combo_;  // the grid by absolute position, or aligned to each example's corruption
  PlotView* plot_;
  QLabel* label_;
};

}  // namespace mechscope::app
