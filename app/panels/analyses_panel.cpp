// The Analyses panel (see analyses_panel.h).
#include "app/panels/analyses_panel.h"

#include <QComboBox>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QVBoxLayout>

#include "app/plotview.h"

namespace mechscope::app {

AnalysesPanel::AnalysesPanel(PanelContext& ctx) : Panel(ctx) {
  combo_ = new QComboBox;
  for (const auto& [name, about] : Workbench::plugin_analyses()) {
    combo_->addItem(qs(name));
    combo_->setItemData(combo_->count() - 1, qs(about), Qt::ToolTipRole);
  }
  options_ = new QLineEdit;
  options_->setPlaceholderText(QObject::tr("options as JSON, e.g. {\"site\": \"heads\"} or a plugin's {\"example\": 2}"));
  auto* run_b = new QPushButton(QObject::tr("Run"));
  label_ = new QLabel(QObject::tr("every registered analysis: MechScope's own and the plugins' (Help > Plugins lists them)"));
  label_->setWordWrap(true);
  plot_ = ctx.plot("analysis");
  widget_ = new QWidget;
  auto* l = new QVBoxLayout(widget_);
  l->addWidget(row({new QLabel(QObject::tr("analysis")), combo_, options_, run_b}));
  l->addWidget(plot_, 1);
  l->addWidget(label_);
  QObject::connect(run_b, &QPushButton::clicked, widget_, [this] { run(combo_->currentText(), options_->text()); });
}

void AnalysesPanel::run(const QString& name, const QString& options_json) {
  if (name.isEmpty()) return ctx_.error(QObject::tr("analysis"), QObject::tr("no analysis is registered"));
  const std::string n = name.toStdString(), o = options_json.trimmed().toStdString();
  ctx_.job<Grid>(QObject::tr("running %1").arg(name), [this, n, o](const Progress&) { return ctx_.wb.run_plugin_analysis(n, o); },
                 [this](const Grid& g) {
                   plot_->showGrid(g);
                   label_->setText(qs(g.title));
                 });
}

}  // namespace mechscope::app
