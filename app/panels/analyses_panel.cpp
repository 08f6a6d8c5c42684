// The Analyses panel (see analyses_panel.h).
#include "app/panels/analyses_panel.h"

#include <QComboBox>
#include <QFontDatabase>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
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
  result_combo_ = new QComboBox;
  result_combo_->setSizeAdjustPolicy(QComboBox::AdjustToContents);
  result_combo_->setToolTip(QObject::tr("Which result of the last run to draw"));
  summary_ = new QPlainTextEdit;
  summary_->setReadOnly(true);
  summary_->setFont(QFontDatabase::systemFont(QFontDatabase::FixedFont));
  summary_->setLineWrapMode(QPlainTextEdit::NoWrap);
  summary_->setPlaceholderText(QObject::tr("the run's summary (what mechscope-cli analyze prints)"));
  plot_ = ctx.plot("analysis");
  widget_ = new QWidget;
  auto* l = new QVBoxLayout(widget_);
  l->addWidget(row({new QLabel(QObject::tr("analysis")), combo_, options_, run_b}));
  l->addWidget(row({new QLabel(QObject::tr("result")), result_combo_}));
  l->addWidget(plot_, 3);
  l->addWidget(summary_, 2);
  l->addWidget(label_);
  QObject::connect(run_b, &QPushButton::clicked, widget_, [this] { run(combo_->currentText(), options_->text()); });
  QObject::connect(result_combo_, qOverload<int>(&QComboBox::activated), widget_, [this](int i) { show(i); });
}

QStringList AnalysesPanel::results() const {
  QStringList out;
  for (const auto& g : grids_) out << qs(g.title);
  return out;
}

QString AnalysesPanel::summary() const { return summary_->toPlainText(); }

void AnalysesPanel::show(int i) {
  if (i < 0 || i >= static_cast<int>(grids_.size())) return;
  plot_->showGrid(grids_[static_cast<size_t>(i)]);
  label_->setText(qs(grids_[static_cast<size_t>(i)].title));
  if (result_combo_->currentIndex() != i) result_combo_->setCurrentIndex(i);
}

void AnalysesPanel::run(const QString& name, const QString& options_json) {
  if (name.isEmpty()) return ctx_.error(QObject::tr("analysis"), QObject::tr("no analysis is registered"));
  const std::string n = name.toStdString(), o = options_json.trimmed().toStdString();
  if (combo_->findText(name) >= 0) combo_->setCurrentIndex(combo_->findText(name));
  ctx_.job<AnalysisRun>(QObject::tr("running %1").arg(name), [this, n, o](const Progress&) { return ctx_.wb.run_analysis(n, o); },
                        [this](const AnalysisRun& r) {
                          grids_ = r.grids;
                          result_combo_->clear();
                          for (const auto& g : grids_) result_combo_->addItem(qs(g.title));
                          summary_->setPlainText(qs(r.summary));
                          show(0);
                        });
}

}  // namespace mechscope::app
