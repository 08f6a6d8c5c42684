// The Embeddings panel (see embeddings_panel.h).
#include "app/panels/embeddings_panel.h"

#include <algorithm>

#include <QLabel>
#include <QSlider>
#include <QSpinBox>
#include <QTabWidget>
#include <QVBoxLayout>

#include "app/plotview.h"

namespace mechscope::app {

EmbeddingsPanel::EmbeddingsPanel(PanelContext& ctx) : Panel(ctx) {
  pcx_ = new QSpinBox;
  pcy_ = new QSpinBox;
  pcx_->setRange(1, 3);
  pcy_->setRange(1, 3);
  pcy_->setValue(2);
  snapshot_ = new QSlider(Qt::Horizontal);
  snapshot_->setRange(-1, -1);
  snapshot_->setToolTip(QObject::tr("scrub through the embedding snapshots kept during training (right end: final)"));
  label_ = new QLabel;
  pca_ = ctx.plot("embeddings-pca");
  cosine_ = ctx.plot("embeddings-cosine");
  auto* tabs = new QTabWidget;
  tabs->addTab(pca_, QObject::tr("PCA"));
  tabs->addTab(cosine_, QObject::tr("cosine similarity"));
  widget_ = new QWidget;
  auto* el = new QVBoxLayout(widget_);
  el->addWidget(row({new QLabel(QObject::tr("x: PC")), pcx_, new QLabel(QObject::tr("y: PC")), pcy_,
                     new QLabel(QObject::tr("training snapshot")), snapshot_}));
  el->addWidget(tabs, 1);
  el->addWidget(label_);
  QObject::connect(pcx_, qOverload<int>(&QSpinBox::valueChanged), widget_, [this] { refresh(); });
  QObject::connect(pcy_, qOverload<int>(&QSpinBox::valueChanged), widget_, [this] { refresh(); });
  QObject::connect(snapshot_, &QSlider::valueChanged, widget_, [this] { refresh(); });
}

void EmbeddingsPanel::changed(Change c) {
  if (c != Change::Models) return;
  {  // another model: its final weights (the slider's position belonged to the previous model's snapshots)
    QSignalBlocker b(snapshot_);
    snapshot_->setRange(-1, -1);
  }
  refresh();
}

void EmbeddingsPanel::refresh() {
  if (ctx_.wb.model_count() == 0) return;
  const int px = pcx_->value() - 1, py = pcy_->value() - 1, snap = snapshot_->value();
  const int max_snap = snapshot_->maximum();
  ctx_.job<Embedding>(QObject::tr("embedding geometry"), [this, px, py, snap, max_snap](const Progress&) {
    return ctx_.wb.embeddings(px, py, snap >= 0 && snap < max_snap ? snap : -1);
  }, [this, px, py, snap](const Embedding& e) {
    {
      QSignalBlocker b(snapshot_);
      snapshot_->setRange(e.snapshot_steps.empty() ? -1 : 0, static_cast<int>(e.snapshot_steps.size()));
      if (snap < snapshot_->minimum()) snapshot_->setValue(snapshot_->maximum());
    }
    const int s = snapshot_->value();
    const QString when = s >= 0 && s < (int)e.snapshot_steps.size() ? QObject::tr("training step %1").arg(e.snapshot_steps[s])
                                                                    : QObject::tr("final weights");
    pca_->showScatter(e.x, e.y, e.labels, QObject::tr("PC%1 (%2%)").arg(px + 1).arg(100 * e.explained[px], 0, 'f', 1),
                      QObject::tr("PC%1 (%2%)").arg(py + 1).arg(100 * e.explained[py], 0, 'f', 1),
                      QObject::tr("embedding rows, coloured by index — %1").arg(when));
    pca_->setRecord(e.provenance);
    cosine_->showGrid(e.cosine, true);
    label_->setText(QObject::tr("%1 rows; locality (k = 5) %2 (1 = neighbours in space are neighbours in index; random ≈ %3); %4")
                        .arg(e.x.size()).arg(num(e.locality)).arg(num(std::min(1.0, 10.0 / e.x.size()))).arg(when));
  });
}

}  // namespace mechscope::app
