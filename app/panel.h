// The built-in panels' interface: each panel (app/panels/) builds its own widget, reads the session through the
// Workbench façade in jobs, and reacts to changes the window passes on; MainWindow only arranges them in docks.
// Plugin panels (app/panel_plugin.h) are wrapped in the same interface (app/panels/plugin_panel.h). No torch here.
#pragma once

#include <functional>
#include <vector>

#include <QJsonObject>
#include <QSize>
#include <QString>

#include "app/jobs.h"
#include "app/workbench.h"

class QWidget;

namespace mechscope::app {

class PlotView;

/// What changed, as the window tells every panel.
enum class Change {
  Models,         ///< a model was opened or switched: everything is new (the input too)
  ModelList,      ///< a model was loaded behind the current one: only the list of models changed
  Input,          ///< new examples or typed tokens
  Example,        ///< another example of the same input
  Interventions,  ///< the ablation changed (the new outcome is in PanelContext::after)
  Outcome,        ///< the outcome before and after the interventions was recomputed
  Theme           ///< light or dark
};

/// What every panel may use: the workbench (only inside jobs), the job runner, the outcome several panels show, and
/// the window's services. One instance, owned by the window.
struct PanelContext {
  PanelContext(Workbench& workbench, Jobs& job_runner) : wb(workbench), jobs(job_runner) {}
  Workbench& wb;
  Jobs& jobs;
  Outcome before, after;            ///< the current input's outcome without and with the interventions
  double last_outcome_ms = -1;      ///< how long the last ablation took to reach the outcome panel
  Outcome patched;                  ///< the outcome of the patch clicked in the Patching panel
  QString patched_what;             ///< which patch ("" : none since the input changed)
  bool dark = false;
  std::function<void(const QString& what, const QString& message)> error;  ///< a dialog (or the status bar)
  std::function<void(const QString& message)> status;                      ///< a transient status-bar message
  std::function<void(Change)> changed;         ///< a panel's change, passed on to every panel
  std::function<void(const QString&)> open;    ///< opens a checkpoint (the training panel opens its result)
  /// A plot view with the workbench's provenance and the current theme.
  PlotView* plot(const QString& name, QWidget* parent = nullptr);
  template <class R>
  void job(const QString& what, std::function<R(const Progress&)> work, std::function<void(const R&)> done) {
    jobs.run<R>(what, std::move(work), std::move(done));
  }
};

class Panel {
 public:
  explicit Panel(PanelContext& ctx) : ctx_(ctx) {}
  virtual ~Panel() = default;
  Panel(const Panel&) = delete;
  Panel& operator=(const Panel&) = delete;
  /// The dock's title, and its stable name (dock object name "dock-<name>", screenshot names, workspace keys).
  virtual QString title() const = 0;
  virtual QString name() const = 0;
  /// Where the window puts it: left (model, input), top (the big views, tabbed) or right (heads, outcome).
  virtual Qt::DockWidgetArea area() const { return Qt::TopDockWidgetArea; }
  /// Its starting width and height in a side column (empty: the window decides).
  virtual QSize preferred() const { return {}; }
  virtual QWidget* widget() = 0;
  /// Called for every change (the panel decides what to refresh).
  virtual void changed(Change) {}
  /// Its figures (for export and the theme).
  virtual std::vector<PlotView*> plots() const { return {}; }
  /// Its part of a workspace file, and restoring it (after the models and the input are back).
  virtual void save(QJsonObject&) const {}
  virtual void restore(const QJsonObject&) {}
  /// The window closes: stop background work (a training run saves and stops).
  virtual void close() {}

 protected:
  PanelContext& ctx_;
};

/// Helpers the panels share.
QString qs(const std::string& s);
/// A number with `digits` decimals, or an em dash for NaN.
QString num(double v, int digits = 3);
/// Widgets side by side, then a stretch.
QWidget* row(std::initializer_list<QWidget*> widgets);

}  // namespace mechscope::app
