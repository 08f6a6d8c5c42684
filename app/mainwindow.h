// The workbench window: arranges the panels (app/panels/, one file each, behind app/panel.h) in docks, passes every
// change on to all of them, and owns what they share: the Workbench (core's session behind a torch-free façade), the
// job runner, the status bar, menus, themes, workspaces and export. Plugin panels come in through the PanelHost
// interface (app/panel_plugin.h). No torch here.
#pragma once

#include <memory>
#include <vector>

#include <QMainWindow>

#include "app/jobs.h"
#include "app/panel.h"
#include "app/panel_plugin.h"
#include "app/workbench.h"

class QComboBox;
class QDockWidget;
class QLabel;
class QProgressBar;
class QPushButton;

namespace mechscope::app {

class PlotView;
class AttentionPanel;
class HeadsPanel;
class InputPanel;
class OutcomePanel;
class PatchingPanel;
class EmbeddingsPanel;
class ComparePanel;
class AnalysesPanel;
class TrainingPanel;

class MainWindow : public QMainWindow, public mechscope::PanelHost {
  Q_OBJECT
 public:
  explicit MainWindow(QWidget* parent = nullptr);
  ~MainWindow() override;

  /// Opens a checkpoint in the job thread; errors appear in a dialog (or the status bar when quiet). With
  /// `make_current` false and a model already current, it loads behind that one (the panels keep their views).
  void openFile(const QString& path, bool make_current = true);
  /// Opens several (start-up, a drop): the first becomes current and fills the panels; the rest load behind it.
  void openFiles(const QStringList& paths);
  /// Processes events until no job is queued or running; false on timeout.
  bool waitIdle(int timeout_ms = 60000);
  bool busy() const { return jobs_->running() > 0; }
  Workbench& workbench() { return *wb_; }
  void saveWorkspace(const QString& path);
  void openWorkspace(const QString& path);
  /// Exports every panel's figure (PNG, PDF and SVG) and data (CSV) into `dir`; returns the files written.
  QStringList exportFigures(const QString& dir);
  /// Raises each panel in turn and saves a screenshot of the window per panel into `dir`.
  void takeScreenshots(const QString& dir);
  void setDark(bool dark);
  /// Errors go to the status bar instead of a dialog (tests, screenshots).
  void setQuiet(bool quiet);
  QString lastError() const { return last_error_; }
  /// How many errors were reported since the window opened.
  int errorCount() const { return error_count_; }
  double lastOutcomeMs() const { return ctx_->last_outcome_ms; }

  // The panels, and what tests and scripts drive through them.
  AttentionPanel& attentionPanel() const { return *attention_; }
  HeadsPanel& headsPanel() const { return *heads_; }
  PatchingPanel& patchingPanel() const { return *patching_; }
  ComparePanel& comparePanel() const { return *compare_; }
  AnalysesPanel& analysesPanel() const { return *analyses_; }
  TrainingPanel& trainingPanel() const { return *training_; }
  InputPanel& inputPanel() const { return *input_; }
  PlotView* headsPlot() const;
  PlotView* attentionPlot() const;
  PlotView* patchingPlot() const;
  PlotView* embeddingPlot() const;
  QComboBox* patchingViewCombo() const;
  QString headsReading() const;
  QString headsAblatedText() const;
  /// View > Reset layout: every panel docked where it starts, at its preferred size, the window fitted to its
  /// screen (at most 1500 x 950).
  void resetLayout();
  /// Shrinks the window to the screen's available area (keeping `wanted`, default its size, where it fits) and
  /// moves it onto the screen.
  void fitToScreen(QSize wanted = QSize());
  /// The window's size where the screen allows it (main() and Reset layout).
  static QSize defaultSize() { return {1500, 950}; }
  QString outcomeText() const;
  void runPatching();
  /// Ablates exactly these heads (labels like L1.attn.H0) and updates the outcome, as a click on the grid does.
  void ablateHeads(const std::vector<std::string>& heads);
  /// Draws examples of the current model's task, as the Input panel's button does.
  void drawExamples(int n, int seed);
  /// Makes a loaded model current, as a click in the Model panel's list does.
  void switchModel(int index);
  /// Shows and raises a panel's dock by its name ("attention", "patching", ...).
  void showPanel(const QString& name);

  // PanelHost: what panel plugins (app/panel_plugin.h) may use.
  QString currentModel() const override;
  int exampleCount() const override;
  void runAnalysis(const QString& name, const QString& options,
                   std::function<void(const mechscope::PanelGrid&, const QString&)> done) override;
  QWidget* createGridView(const QString& name, QWidget* parent) override;
  void showGrid(QWidget* gridView, const mechscope::PanelGrid& grid) override;
  /// One line per panel plugin found: loaded (with its title) or skipped and why.
  QStringList panelReport() const { return panel_report_; }
  /// The widget of a loaded plugin panel, by its title (null if none).
  QWidget* pluginPanel(const QString& title) const;

 protected:
  void closeEvent(QCloseEvent* e) override;
  void dragEnterEvent(QDragEnterEvent* e) override;
  void dropEvent(QDropEvent* e) override;

 private:
  void addPanel(std::unique_ptr<Panel> panel);
  void arrangeDocks();
  void showEvent(QShowEvent* e) override;
  QByteArray default_layout_;
  bool layout_restored_ = false;  ///< a saved layout was restored (else the default one is arranged once shown)
  bool shown_once_ = false;
  int error_count_ = 0;
  void loadPanels();
  void buildMenus();
  void buildStatusBar();
  void changed(Change c);
  void showError(const QString& what, const QString& message);
  void updateStatus();
  void addRecent(const QString& path);
  void updateRecentMenu();
  std::vector<PlotView*> allPlots() const;
  QDockWidget* dockOf(const QString& name) const;

  std::unique_ptr<Workbench> wb_;
  std::unique_ptr<Jobs> jobs_;
  std::unique_ptr<PanelContext> ctx_;
  std::vector<std::unique_ptr<Panel>> panels_;
  std::vector<QDockWidget*> docks_;  // one per panel, in panels_' order
  AttentionPanel* attention_ = nullptr;
  HeadsPanel* heads_ = nullptr;
  InputPanel* input_ = nullptr;
  OutcomePanel* outcome_ = nullptr;
  PatchingPanel* patching_ = nullptr;
  EmbeddingsPanel* embeddings_ = nullptr;
  ComparePanel* compare_ = nullptr;
  AnalysesPanel* analyses_ = nullptr;
  TrainingPanel* training_ = nullptr;
  QStringList panel_report_;
  QString last_error_;
  bool quiet_ = false;
  QProgressBar* progress_ = nullptr;
  QPushButton* cancel_ = nullptr;
  QLabel* status_ = nullptr;
  QMenu* recent_menu_ = nullptr;
};

}  // namespace mechscope::app
