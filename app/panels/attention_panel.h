// The Attention panel: one layer's (implicit) attention map on the current example: a head, or the mean over heads,
// raw or min-max normalised; of the clean run, the run under the ablations, or their difference.
#pragma once

#include <QJsonObject>

#include "app/panel.h"

class QCheckBox;
class QComboBox;
class QSpinBox;

namespace mechscope::app {

class AttentionPanel : public Panel {
 public:
  explicit AttentionPanel(PanelContext& ctx);
  QString title() const override { return QObject::tr("Attention"); }
  QString name() const override { return "attention"; }
  QWidget* widget() override { return widget_; }
  void changed(Change c) override;
  std::vector<PlotView*> plots() const override { return {plot_}; }
  void save(QJsonObject& w) const override;
  /// The layer, mixer, head and options, applied once the model's mixers are read.
  void restore(const QJsonObject& w) override;
  PlotView* plot() const { return plot_; }
  /// 0 clean, 1 with the ablations, 2 ablated minus clean (enabled while ablations are active).
  void setRun(int run);
  /// Every head of the layer side by side (a click on a tile shows that head alone), or one map.
  void setEveryHead(bool every);

 private:
  void refreshMixers();
  void refresh();
  /// The run choice follows the session: enabled while ablations are active, else back to the clean run.
  void syncRun();
  QWidget* widget_;
  QSpinBox* layer_spin_;
  QComboBox* mixer_combo_;
  QSpinBox* head_spin_;
  QCheckBox* mean_heads_;
  QCheckBox* normalise_;
  QCheckBox* every_head_;  // small multiples: every head of the layer side by side
  QComboBox* run_combo_;
  PlotView* plot_;
  QJsonObject pending_;  // a workspace's settings, until the mixers they name are read
};

}  // namespace mechscope::app
