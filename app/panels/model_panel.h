// The Model panel: the loaded models (click to switch), the current one's architecture, heads and task, and the
// fast-path check (Verify).
#pragma once

#include "app/panel.h"

class QListWidget;
class QTextBrowser;

namespace mechscope::app {

class ModelPanel : public Panel {
 public:
  explicit ModelPanel(PanelContext& ctx);
  QString title() const override { return QObject::tr("Model"); }
  QString name() const override { return "model"; }
  Qt::DockWidgetArea area() const override { return Qt::LeftDockWidgetArea; }
  QSize preferred() const override { return {330, 330}; }
  QWidget* widget() override { return widget_; }
  void changed(Change c) override;

 private:
  void refresh();
  QWidget* widget_;
  QListWidget* list_;
  QTextBrowser* info_;
};

}  // namespace mechscope::app
