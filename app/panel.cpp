// What the panels share (see panel.h).
#include "app/panel.h"

#include <cmath>

#include <QHBoxLayout>
#include <QWidget>

#include "app/plotview.h"

namespace mechscope::app {

QString qs(const std::string& s) { return QString::fromStdString(s); }

QString num(double v, int digits) { return std::isfinite(v) ? QString::number(v, 'f', digits) : QStringLiteral("—"); }

QWidget* row(std::initializer_list<QWidget*> ws) {
  auto* w = new QWidget;
  auto* l = new QHBoxLayout(w);
  l->setContentsMargins(0, 0, 0, 0);
  for (auto* x : ws) l->addWidget(x);
  l->addStretch(1);
  return w;
}

PlotView* PanelContext::plot(const QString& name, QWidget* parent) {
  auto* pv = new PlotView(name, parent);
  pv->setProvenance([this](const std::string& record) { return wb.provenance(record); });
  pv->setDark(dark);
  return pv;
}

}  // namespace mechscope::app
