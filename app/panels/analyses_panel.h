// The Analyses panel: any analysis in the registry (core's own and plugins') run on the current model and input with
// options as JSON; its first one- to three-dimensional result drawn.
#pragma once

#include "app/panel.h"

class QComboBox;
class QLabel;
class QLineEdit;

namespace mechscope::app {

class AnalysesPanel : public Panel {
 public:
  explicit AnalysesPanel(PanelContext& ctx);
  QString title() const override { return QObject::tr("Analyses"); }
  QString name() const override { return "analyses"; }
  QWidget* widget() override { return widget_; }
  std::vector<PlotView*> plots() const override { return {plot_}; }
  PlotView* plot() const { return plot_; }
  /// Runs an analysis, as the Run button does.
  void run(const QString& name, const QString& options_json);

 private:
  QWidget* widget_;
  QComboBox* combo_;
  QLineEdit* options_;
  QLabel* label_;
  PlotView* plot_;
};

}  // namespace mechscope::app
