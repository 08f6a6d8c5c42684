// The Outcome panel: accuracy, answer probability and logit difference on the input before and after the
// interventions, the current example's top predictions both ways, and how many examples go wrong.
#pragma once

#include "app/panel.h"

class QTextBrowser;

namespace mechscope::app {

class OutcomePanel : public Panel {
 public:
  explicit OutcomePanel(PanelContext& ctx);
  QString title() const override { return QObject::tr("Outcome"); }
  QString name() const override { return "outcome"; }
  Qt::DockWidgetArea area() const override { return Qt::RightDockWidgetArea; }
  QSize preferred() const override { return {430, 420}; }
  QWidget* widget() override;
  void changed(Change c) override;
  QString text() const;

 private:
  void recompute();
  void render();
  QTextBrowser* view_;
};

}  // namespace mechscope::app
