// The Model panel (see model_panel.h).
#include "app/panels/model_panel.h"

#include <map>

#include <QLabel>
#include <QListWidget>
#include <QPushButton>
#include <QTextBrowser>
#include <QVBoxLayout>

namespace mechscope::app {

ModelPanel::ModelPanel(PanelContext& ctx) : Panel(ctx) {
  list_ = new QListWidget;
  info_ = new QTextBrowser;
  auto* verify = new QPushButton(QObject::tr("Verify fast paths"));
  verify->setToolTip(QObject::tr("Compare the fast forward, the cache and the batched sweeps with the reference paths"));
  widget_ = new QWidget;
  auto* l = new QVBoxLayout(widget_);
  l->addWidget(new QLabel(QObject::tr("Loaded models (click to switch):")));
  l->addWidget(list_, 1);
  l->addWidget(info_, 2);
  l->addWidget(verify);
  QObject::connect(list_, &QListWidget::currentRowChanged, widget_, [this](int r) {
    if (r < 0 || r == ctx_.wb.current()) return;
    ctx_.job<int>(QObject::tr("switching model"), [this, r](const Progress&) { ctx_.wb.set_current(r); return r; },
                  [this](const int&) { ctx_.changed(Change::Models); });
  });
  QObject::connect(verify, &QPushButton::clicked, widget_, [this] {
    ctx_.job<std::string>(QObject::tr("verifying"), [this](const Progress&) { return ctx_.wb.verify(); },
                          [this](const std::string&) {
                            refresh();
                            ctx_.changed(Change::Outcome);  // the outcome panel shows the verdict too
                          });
  });
}

void ModelPanel::changed(Change c) {
  if (c == Change::Models || c == Change::Input || c == Change::ModelList) refresh();
}

void ModelPanel::refresh() {
  Workbench& wb = ctx_.wb;
  QSignalBlocker b(list_);
  list_->clear();
  for (int i = 0; i < wb.model_count(); ++i) list_->addItem(qs(wb.summary(i).name));
  list_->setCurrentRow(wb.current());
  if (wb.model_count() == 0) {
    info_->setHtml(QObject::tr("<p>No model open.</p><p>File &gt; Open (Ctrl+O), drop a <code>.h5</code> checkpoint (or a "
                               "mamba_ssm / Hugging Face folder) here, or start <code>mechscope resources/models/*.h5</code>.</p>"));
    return;
  }
  ModelSummary s = wb.summary();
  QString html = QStringLiteral("<h3>%1</h3><p>%2</p><p><b>task</b> %3</p><table>").arg(qs(s.name), qs(s.architecture), qs(s.task));
  std::map<std::pair<int, std::string>, int> counts;
  for (const auto& h : s.heads) counts[{h.layer, h.mixer}]++;
  for (int l = 0; l < s.layers; ++l) {
    QString heads;
    for (const auto& [k, n] : counts)
      if (k.first == l) heads += QStringLiteral("%1 %2 heads ").arg(n).arg(qs(k.second));
    html += QStringLiteral("<tr><td>layer %1</td><td>%2</td><td>%3</td></tr>").arg(l).arg(qs(s.layer_kinds[l]), heads);
  }
  html += "</table>";
  html += QStringLiteral("<p><b>verify</b>: %1</p>").arg(s.verify.empty() ? QObject::tr("not run (button below)") : qs(s.verify));
  html += QStringLiteral("<p><small>%1</small></p>").arg(qs(s.path));
  info_->setHtml(html);
}

}  // namespace mechscope::app
