// Two broken panel plugins for the workbench's loader (tests/app/test_app.cpp): built with MECHSCOPE_BAD_PANEL=1,
// one declares panel interface version 999; with MECHSCOPE_BAD_PANEL=2, one whose createPanel throws.
#include <stdexcept>

#include <QObject>

#include "app/panel_plugin.h"

#if MECHSCOPE_BAD_PANEL == 1
class FuturePanel : public QObject {
  Q_OBJECT
  Q_PLUGIN_METADATA(IID "io.mechscope.PanelPlugin/999")
};
#else
class ThrowingPanel : public QObject, public mechscope::PanelPlugin {
  Q_OBJECT
  Q_PLUGIN_METADATA(IID MECHSCOPE_PANEL_IID)
  Q_INTERFACES(mechscope::PanelPlugin)

 public:
  QString title() const override { return "Throwing"; }
  QWidget* createPanel(mechscope::PanelHost&, QWidget*) override { throw std::runtime_error("no panel today"); }
};
#endif

#include "bad_panels.moc"
