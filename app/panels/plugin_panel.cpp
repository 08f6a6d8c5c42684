// A plugin's panel (see plugin_panel.h).
#include "app/panels/plugin_panel.h"

namespace mechscope::app {

void PluginPanel::changed(Change c) {
  if (c != Change::Outcome) return;
  try {
    plugin_->refresh(widget_);
  } catch (const std::exception& e) {
    ctx_.error(QObject::tr("panel %1").arg(title_), qs(e.what()));
  }
}

}  // namespace mechscope::app
