// The Analyses panel: any analysis in the registry (core's own and plugins') run on the current model and input with
// options as JSON; each of its one- to three-dimensional results drawn on choice (ga-discovery's causal, gather and
// aggregate scores per head, its pruning curve), beside the summary the CLI prints (its ranked head table).
#pragma once

#include <vector>

#include "app/panel.h"

class QComboBox;
class QLabel;
class QLineEdit;
class QPlainTextEdit;

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
  /// The last run's results (titles) and its summary.
  QStringList results() const;
  QString summary() const;
  /// Draws the last run's result `i`, as the result box does.
  void show(int i);

 private:
  QWidget* widget_;
  QComboBox* combo_;
  QComboBox* result_combo_;
  QLineEdit* options_;
  QLabel* label_;
  QPlainTextEdit* summary_;
  PlotView* plot_;
  std::vector<Grid> grids_;
};

}  // namespace mechscope::app
