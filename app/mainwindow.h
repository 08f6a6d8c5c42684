// The workbench window: dockable panels over a Workbench (model, input, attention, heads, outcome, patching,
// embeddings, compare), a job thread for everything that touches the engine, export, workspaces, themes.
// No torch here: the engine is behind app/workbench.h.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <vector>

#include <QMainWindow>

#include "app/panel_plugin.h"
#include <QThreadPool>
#include <thread>

#include "app/workbench.h"

class QCheckBox;
class QComboBox;
class QDockWidget;
class QLabel;
class QLineEdit;
class QListWidget;
class QProgressBar;
class QPushButton;
class QSlider;
class QSpinBox;
class QTableWidget;
class QTextBrowser;

namespace mechscope::app {

class PlotView;

class MainWindow : public QMainWindow, public mechscope::PanelHost {
  Q_OBJECT
 public:
  explicit MainWindow(QWidget* parent = nullptr);
  ~MainWindow() override;

  /// Opens a checkpoint in the job thread; errors appear in a dialog (or the status bar when `quiet`).
  void openFile(const QString& path);
  /// Processes events until no job is queued or running; false on timeout.
  bool waitIdle(int timeout_ms = 60000);
  bool busy() const { return jobs_running_ > 0; }
  Workbench& workbench() { return *wb_; }
  PlotView* headsPlot() const { return heads_plot_; }
  PlotView* attentionPlot() const { return attn_plot_; }
  PlotView* patchingPlot() const { return patch_plot_; }
  QComboBox* patchingViewCombo() const { return patch_view_combo_; }
  QString headsReading() const;  ///< the heads panel's reading line (tests)
  PlotView* embeddingPlot() const { return emb_plot_; }
  QString outcomeText() const;
  QString lastError() const { return last_error_; }
  double lastOutcomeMs() const { return last_outcome_ms_; }
  void runPatching();
  void showPatching();
  /// Ablates exactly these heads (labels like L1.attn.H0) and updates the outcome, as a click on the grid does.
  void ablateHeads(const std::vector<std::string>& heads) { applyAblation(heads); }
  /// Draws examples of the current model's task, as the Input panel's button does.
  void drawExamples(int n, int seed);
  void saveWorkspace(const QString& path);
  void openWorkspace(const QString& path);
  /// Starts a training run with the Training panel's settings (its own thread); false if one is running.
  bool startTraining();
  /// Fills the Training panel (tests and scripts).
  void setTrainingSettings(const QString& preset, const QString& model_json, const QString& task_json, int steps,
                           int batch, const QString& out);
  void stopTraining() { train_stop_ = true; }
  bool training() const { return train_running_; }
  PlotView* trainingPlot() const { return train_plot_; }
  PlotView* pluginPlot() const { return plugin_plot_; }
  /// Runs a plugin analysis in the Plugins panel, as its Run button does.
  void runPluginAnalysis(const QString& name, const QString& options_json);
  const std::vector<PlotView*>& comparePlots() const { return compare_plots_; }
  /// Shows every loaded model side by side: view 0 attention (mean over heads) of `layer`, 1 head grid
  /// (aggregate score), 2 embedding PCA.
  void compareModels(int view, int layer);
  /// Exports every panel's figure (PNG and SVG) and data (CSV) into `dir`; returns the files written.
  QStringList exportFigures(const QString& dir);
  /// Raises each panel in turn and saves a screenshot of the window per panel into `dir`.
  void takeScreenshots(const QString& dir);
  void setDark(bool dark);
  /// Errors go to the status bar instead of a dialog (tests, screenshots).
  void setQuiet(bool quiet) { quiet_ = quiet; }

 protected:
  void closeEvent(QCloseEvent* e) override;
  void dragEnterEvent(QDragEnterEvent* e) override;
  void dropEvent(QDropEvent* e) override;

 public:
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

 private:
  void showPatchingGrid(const Grid& g, bool aligned);  // a patching grid and its label in the panel
  void loadPanels(QDockWidget* tabWith);
  void refreshPanels();
  struct LoadedPanel {
    mechscope::PanelPlugin* plugin;
    QWidget* widget;
    QString title;
  };
  std::vector<LoadedPanel> panels_;
  QStringList panel_report_;
  template <class R>
  void job(const QString& what, std::function<R(const Progress&)> work, std::function<void(const R&)> done);
  void showError(const QString& what, const QString& message);
  void buildMenus();
  QDockWidget* dock(const QString& title, const QString& name, QWidget* body, Qt::DockWidgetArea area);
  void refreshModels();
  void refreshInput();
  void refreshMixers();
  void refreshAttention();
  void refreshHeads();
  void refreshOutcome();
  void renderOutcome();
  void refreshEmbeddings();
  void refreshCompare();
  void refreshAll();
  void toggleHead(int row, int col, Qt::KeyboardModifiers mods);
  void applyAblation(const std::vector<std::string>& heads);
  void addRecent(const QString& path);
  void updateRecentMenu();
  void updateStatus();

  std::unique_ptr<Workbench> wb_;
  QThreadPool pool_;
  int jobs_running_ = 0;
  struct JobState {
    std::atomic<bool> cancel{false};
    std::atomic<double> progress{0};
  };
  std::vector<std::shared_ptr<JobState>> jobs_;
  QString job_label_;
  QString last_error_;
  bool quiet_ = false;
  bool dark_ = false;
  double last_outcome_ms_ = -1;

  // Model panel
  QListWidget* model_list_;
  QTextBrowser* model_info_;
  // Input panel
  QSpinBox* n_spin_;
  QSpinBox* seed_spin_;
  QLineEdit* task_edit_;
  QSpinBox* example_spin_;
  QLineEdit* tokens_edit_;
  QTableWidget* token_table_;
  QLabel* input_label_;
  std::vector<int> wrong_examples_;
  // Attention
  QSpinBox* layer_spin_;
  QComboBox* mixer_combo_;
  QSpinBox* head_spin_;
  QCheckBox* mean_heads_;
  QCheckBox* normalise_;
  PlotView* attn_plot_;
  // Heads
  QComboBox* score_combo_;
  QComboBox* ablation_combo_;
  QLabel* ablated_label_;
  QLabel* heads_reading_;  // the top aggregate head against the most causal one
  PlotView* heads_plot_;
  std::vector<std::pair<int, std::string>> head_rows_;  // grid row -> (layer, mixer)
  // Outcome
  QTextBrowser* outcome_view_;
  Outcome before_, after_;
  std::string verify_status_;
  // Patching
  QComboBox* site_combo_;
  QComboBox* role_combo_;
  QComboBox* patch_view_combo_;  // the grid by absolute position, or aligned to each example's corruption
  PlotView* patch_plot_;
  QLabel* patch_label_;
  // Embeddings
  QSpinBox* pcx_;
  QSpinBox* pcy_;
  QSlider* snapshot_slider_;
  QLabel* emb_label_;
  PlotView* emb_plot_;
  PlotView* cos_plot_;
  // Compare
  QTableWidget* compare_table_;
  QComboBox* compare_view_;
  QSpinBox* compare_layer_;
  QWidget* compare_plots_box_;
  std::vector<PlotView*> compare_plots_;
  void refreshComparePlots();
  // Plugin analyses
  QComboBox* plugin_combo_;
  QLineEdit* plugin_options_;
  QLabel* plugin_label_;
  PlotView* plugin_plot_;
  // Training
  QComboBox* train_preset_;
  QLineEdit* train_model_;
  QLineEdit* train_task_;
  QSpinBox* train_steps_;
  QSpinBox* train_batch_;
  QLineEdit* train_lr_;
  QLineEdit* train_out_;
  QPushButton* train_start_;
  QPushButton* train_stop_button_;
  QLabel* train_label_;
  PlotView* train_plot_;
  std::thread train_thread_;
  std::atomic<bool> train_stop_{false};
  bool train_running_ = false;
  std::vector<double> train_steps_x_, train_loss_, train_acc_;
  // Status bar
  QProgressBar* progress_;
  QPushButton* cancel_;
  QLabel* status_;
  QMenu* recent_menu_;
  std::vector<QDockWidget*> docks_;
};

}  // namespace mechscope::app
