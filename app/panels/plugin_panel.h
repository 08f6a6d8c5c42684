// A panel a plugin adds (app/panel_plugin.h), in the built-in panels' interface: its widget, docked with the big
// views, refreshed when the outcome is recomputed (what the plugin interface calls "the model, the input or the
// interventions change"); a throwing refresh is reported, not fatal.
#pragma once

#include "app/panel.h"
#include "app/panel_plugin.h"

namespace mechscope::app {

class PluginPanel : public Panel {
 public:
  PluginPanel(PanelContext& ctx, mechscope::PanelPlugin* plugin, QWidget* widget, QString title)
      : Panel(ctx), plugin_(plugin), widget_(widget), title_(std::move(title)) {}
  QString title() const override { return title_; }
  QString name() const override { return "plugin:" + title_; }
  QWidget* widget() override { return widget_; }
  void changed(Change c) override;

 private:
  mechscope::PanelPlugin* plugin_;
  QWidget* widget_;
  QString title_;
};

}  // namespace mechscope::app
