// Plugin (GUI part): the "Residual stream" panel, through the workbench's panel interface (app/panel_plugin.h).
#pragma once

#include <QObject>

#include "app/panel_plugin.h"

class ResidualStreamPanel : public QObject, public mechscope::PanelPlugin {
  Q_OBJECT
  Q_PLUGIN_METADATA(IID MECHSCOPE_PANEL_IID)
  Q_INTERFACES(mechscope::PanelPlugin)

 public:
  QString title() const override { return tr("Residual stream"); }
  QWidget* createPanel(mechscope::PanelHost& host, QWidget* parent) override;
  void refresh(QWidget* panel) override;
};
