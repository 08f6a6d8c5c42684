// The Attention panel: one layer's (implicit) attention map on the current example: a head, or the mean over heads,
// raw or min-max normalised.
#pragma once

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
  PlotView* plot() const { return plot_; }

 private:
  void refreshMixers();
  void refresh();
  QWidget* widget_;
  QSpinBox* layer_spin_;
  QComboBox* mixer_combo_;
  QSpinBox* head_spin_;
  QCheckBox* mean_heads_;
  QCheckBox* normalise_;
  PlotView* plot_;
};

}  // namespace mechscope::app
