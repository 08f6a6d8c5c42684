// The workbench's panel interface (version 1): how a plugin adds a dockable panel to the GUI. Qt only, no torch;
// installed with the SDK as <mechscope/app/panel_plugin.h>. A panel plugin is a Qt plugin (Q_PLUGIN_METADATA
// with IID MECHSCOPE_PANEL_IID) implementing PanelPlugin; it usually also registers an analysis through the core
// entry points of core/plugin/plugin.h (MECHSCOPE_PLUGIN) in the same library, and its panel runs that analysis
// through the PanelHost. Only the workbench looks the interface up (QPluginLoader); the CLI ignores panels.
// The IID carries the version: a panel built against another version is reported and skipped. docs/plugins.md.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <QString>
#include <QtPlugin>

class QWidget;

#define MECHSCOPE_PANEL_IID_PREFIX "io.mechscope.PanelPlugin/"
#define MECHSCOPE_PANEL_IID "io.mechscope.PanelPlugin/1"

namespace mechscope {

/// A 1-D or 2-D result, as the workbench's grid view draws it (row-major values).
struct PanelGrid {
  int rows = 0, cols = 0;
  std::vector<double> values;
  std::vector<std::string> row_labels, col_labels;
  std::string title;
};

/// What a panel may use of the workbench. Every call is made on the UI thread.
class PanelHost {
 public:
  virtual ~PanelHost() = default;
  /// Name of the current model ("" when none is open) and how many examples the current input holds.
  virtual QString currentModel() const = 0;
  virtual int exampleCount() const = 0;
  /// Runs an analysis registered with core (by any plugin) on the current model and input, off the UI thread,
  /// with the status bar's progress and cancel; `done` runs on the UI thread with the result's first 1-D or 2-D
  /// tensor, or with an error message. `options` is a JSON object (may be empty).
  virtual void runAnalysis(const QString& name, const QString& options,
                           std::function<void(const PanelGrid& grid, const QString& error)> done) = 0;
  /// The workbench's heatmap view (hover values, zoom and pan, PNG/PDF/SVG/CSV export with provenance).
  virtual QWidget* createGridView(const QString& name, QWidget* parent) = 0;
  virtual void showGrid(QWidget* gridView, const PanelGrid& grid) = 0;
};

class PanelPlugin {
 public:
  virtual ~PanelPlugin() = default;
  /// The dock's title, e.g. "Residual stream".
  virtual QString title() const = 0;
  /// Builds the panel's widget (owned by the workbench). May throw: the panel is then reported and skipped.
  virtual QWidget* createPanel(PanelHost& host, QWidget* parent) = 0;
  /// Called when the model, the input or the interventions change.
  virtual void refresh(QWidget* panel) { (void)panel; }
};

}  // namespace mechscope

Q_DECLARE_INTERFACE(mechscope::PanelPlugin, MECHSCOPE_PANEL_IID)
