// The Embeddings panel: PCA of the position tokens' embedding rows (or the learned position table), their cosine
// similarity and locality score, scrubbed through the snapshots a training run kept.
#pragma once

#include "app/panel.h"

class QLabel;
class QSlider;
class QSpinBox;

namespace mechscope::app {

class EmbeddingsPanel : public Panel {
 public:
  explicit EmbeddingsPanel(PanelContext& ctx);
  QString title() const override { return QObject::tr("Embeddings"); }
  QString name() const override { return "embeddings"; }
  QWidget* widget() override { return widget_; }
  void changed(Change c) override;
  std::vector<PlotView*> plots() const override { return {pca_, cosine_}; }
  PlotView* plot() const { return pca_; }

 private:
  void refresh();
  QWidget* widget_;
  QSpinBox* pcx_;
  QSpinBox* pcy_;
  QSlider* snapshot_;
  QLabel* label_;
  PlotView* pca_;
  PlotView* cosine_;
};

}  // namespace mechscope::app
