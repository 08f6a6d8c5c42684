// The Residual stream panel: a measure chooser and the workbench's own grid view, refreshed whenever the model,
// the input or the interventions change. No torch here: the numbers come from the residual-stream analysis
// (residual.cpp) through PanelHost::runAnalysis, off the UI thread.
#include "panel.h"

#include <QComboBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QPointer>
#include <QVBoxLayout>
#include <QWidget>

namespace {

struct PanelWidgets {
  mechscope::PanelHost* host;
  QComboBox* measure;
  QLabel* status;
  QWidget* view;
};

}  // namespace

Q_DECLARE_METATYPE(PanelWidgets*)

static PanelWidgets* widgets_of(QWidget* panel) { return panel->property("mechscope_panel").value<PanelWidgets*>(); }

QWidget* ResidualStreamPanel::createPanel(mechscope::PanelHost& host, QWidget* parent) {
  auto* panel = new QWidget(parent);
  auto* w = new PanelWidgets{&host, new QComboBox, new QLabel, nullptr};
  w->measure->addItem(tr("norm"), "norm");
  w->measure->addItem(tr("block update (relative)"), "update");
  w->view = host.createGridView("residual-stream", panel);
  w->status->setWordWrap(true);
  auto* top = new QHBoxLayout;
  top->addWidget(new QLabel(tr("measure")));
  top->addWidget(w->measure);
  top->addStretch(1);
  auto* layout = new QVBoxLayout(panel);
  layout->addLayout(top);
  layout->addWidget(w->view, 1);
  layout->addWidget(w->status);
  panel->setProperty("mechscope_panel", QVariant::fromValue(w));
  QObject::connect(panel, &QObject::destroyed, [w] { delete w; });
  QObject::connect(w->measure, &QComboBox::currentIndexChanged, panel, [this, panel] { refresh(panel); });
  refresh(panel);
  return panel;
}

void ResidualStreamPanel::refresh(QWidget* panel) {
  PanelWidgets* w = widgets_of(panel);
  if (!w) return;
  if (w->host->currentModel().isEmpty() || w->host->exampleCount() == 0) {
    w->status->setText(tr("Open a model and give it input: this panel shows the residual stream of the current example."));
    return;
  }
  const QString options = QString("{\"measure\": \"%1\"}").arg(w->measure->currentData().toString());
  QPointer<QWidget> alive(panel);
  w->host->runAnalysis("residual-stream", options, [alive, w](const mechscope::PanelGrid& g, const QString& error) {
    if (!alive) return;
    if (!error.isEmpty()) {
      w->status->setText(tr("residual-stream: %1").arg(error));
      return;
    }
    w->host->showGrid(w->view, g);
    w->status->setText(tr("%1 of the current example, per layer (rows) and position (columns); the unablated model")
                           .arg(w->measure->currentText()));
  });
}
