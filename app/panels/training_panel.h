// The Training panel: train a model from a preset and a task on its own thread, with live loss and accuracy curves;
// the checkpoint (with history and embedding snapshots) opens in the workbench when the run ends.
#pragma once

#include <atomic>
#include <thread>
#include <vector>

#include "app/panel.h"

class QComboBox;
class QLabel;
class QLineEdit;
class QPushButton;
class QSpinBox;

namespace mechscope::app {

struct TrainingPoint;

class TrainingPanel : public Panel {
 public:
  explicit TrainingPanel(PanelContext& ctx);
  ~TrainingPanel() override;
  QString title() const override { return QObject::tr("Training"); }
  QString name() const override { return "training"; }
  QWidget* widget() override { return widget_; }
  std::vector<PlotView*> plots() const override { return {plot_}; }
  void close() override;
  PlotView* plot() const { return plot_; }
  /// Starts a run with the panel's settings; false if one is running or the settings are refused.
  bool start();
  void stop() { stop_ = true; }
  bool running() const { return running_; }
  void setSettings(const QString& preset, const QString& model_json, const QString& task_json, int steps, int batch,
                   const QString& out);
  bool quiet = false;  ///< no overwrite question (tests)

 private:
  void point(const TrainingPoint& p);
  void finished(const std::string& summary, const std::string& error, const std::string& out);
  QWidget* widget_;
  QComboBox* preset_;
  QLineEdit* model_;
  QLineEdit* task_;
  QSpinBox* steps_;
  QSpinBox* batch_;
  QLineEdit* lr_;
  QLineEdit* out_;
  QPushButton* start_;
  QPushButton* stop_button_;
  QLabel* label_;
  PlotView* plot_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  bool running_ = false;
  std::vector<double> steps_x_, loss_, acc_;
  std::string record_;  // the curves' provenance record (PlotView::setRecord)
};

}  // namespace mechscope::app
