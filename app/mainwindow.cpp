// MainWindow: see mainwindow.h. It arranges the panels and passes changes on; what each panel shows and does is in
// its own file under app/panels/.
#include "app/mainwindow.h"

#include <algorithm>

#include <thread>

#include <QAction>
#include <QApplication>
#include <QCloseEvent>
#include <QComboBox>
#include <QCoreApplication>
#include <QDir>
#include <QDockWidget>
#include <QScreen>
#include <QScrollArea>
#include <QDragEnterEvent>
#include <QElapsedTimer>
#include <QFile>
#include <QFileDialog>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QLabel>
#include <QMenuBar>
#include <QMessageBox>
#include <QMimeData>
#include <QPluginLoader>
#include <QProgressBar>
#include <QPushButton>
#include <QSaveFile>
#include <QSettings>
#include <QStatusBar>
#include <QStyleFactory>
#include <QThread>
#include <QTimer>

#include "app/gridwindow.h"
#include "app/panels/analyses_panel.h"
#include "app/panels/attention_panel.h"
#include "app/panels/compare_panel.h"
#include "app/panels/embeddings_panel.h"
#include "app/panels/heads_panel.h"
#include "app/panels/input_panel.h"
#include "app/panels/model_panel.h"
#include "app/panels/outcome_panel.h"
#include "app/panels/patching_panel.h"
#include "app/panels/plugin_panel.h"
#include "app/panels/training_panel.h"
#include "app/plotview.h"
#include "core/engine/memory.h"
#include "core/util/files.h"

namespace mechscope::app {

namespace {

constexpr int kLayoutVersion = 6;  // bump when the panels change, so an old saved layout is ignored
// Workspace files (docs/gui.md): 1 kept the task config only; 2 adds "input" (how the examples were made) and the
// Attention panel's view. Older files open; a newer one is refused by name.
constexpr int kWorkspaceVersion = 2;

// A typed pointer to a panel the window keeps, and the panel handed to the list.
template <class P>
std::unique_ptr<Panel> keep(PanelContext& ctx, P*& slot) {
  auto p = std::make_unique<P>(ctx);
  slot = p.get();
  return p;
}

}  // namespace

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent), wb_(std::make_unique<Workbench>()) {
  setWindowTitle(tr("MechScope"));
  setObjectName("MechScopeMainWindow");
  setAcceptDrops(true);
  setDockNestingEnabled(true);
  // A central widget of no height (Qt does not support a main window without one): the big views' top dock area
  // spans the centre column and takes the whole height. Without it QMainWindow re-shared the width among the columns
  // at each relayout (a panel's contents changing): at 1280 x 800 the left column grew step by step from 378 to
  // 576 px while the Attention map shrank to 117 px.
  auto* centre = new QWidget;
  centre->setObjectName("centre");
  centre->setMaximumHeight(0);
  setCentralWidget(centre);
  jobs_ = std::make_unique<Jobs>([this](const QString& what, const QString& message) { showError(what, message); },
                                 [this] { updateStatus(); }, this);
  ctx_ = std::make_unique<PanelContext>(*wb_, *jobs_);
  if (qEnvironmentVariableIsSet("MECHSCOPE_GUARD_UI_THREAD")) wb_->guard_thread(std::this_thread::get_id());
  ctx_->error = [this](const QString& what, const QString& message) { showError(what, message); };
  ctx_->status = [this](const QString& message) { statusBar()->showMessage(message, 4000); };
  ctx_->changed = [this](Change c) { changed(c); };
  ctx_->open = [this](const QString& path) { openFile(path); };
  // The panels, in dock order: left column, the big views (tabbed, the first in front), right column.
  ModelPanel* model = nullptr;
  addPanel(keep(*ctx_, model));
  addPanel(keep(*ctx_, input_));
  addPanel(keep(*ctx_, attention_));
  addPanel(keep(*ctx_, patching_));
  addPanel(keep(*ctx_, embeddings_));
  addPanel(keep(*ctx_, heads_));
  addPanel(keep(*ctx_, outcome_));
  addPanel(keep(*ctx_, compare_));
  addPanel(keep(*ctx_, training_));
  addPanel(keep(*ctx_, analyses_));
  loadPanels();  // before the saved layout is restored, so that plugin docks keep their places
  arrangeDocks();
  default_layout_ = saveState(kLayoutVersion);  // View > Reset layout
  buildStatusBar();
  buildMenus();
  QSettings settings("MechScope", "MechScope");
  if (qEnvironmentVariableIsEmpty("MECHSCOPE_DEFAULT_LAYOUT")) {  // tests and screenshots use the default layout
    restoreGeometry(settings.value("geometry").toByteArray());
    layout_restored_ = restoreState(settings.value("state").toByteArray(), kLayoutVersion);
    fitToScreen();  // a layout saved on a larger screen
    setDark(settings.value("dark", false).toBool());
  }
  changed(Change::Models);
}

MainWindow::~MainWindow() {
  jobs_->cancelAll();
  for (auto& p : panels_) p->close();
  jobs_->waitForDone();
}

void MainWindow::addPanel(std::unique_ptr<Panel> panel) {
  auto* d = new QDockWidget(panel->title(), this);
  d->setObjectName("dock-" + panel->name());
  // In a scroll area, a panel's rows of controls no longer set the window's minimum width: the window had grown
  // with each refresh (2249 px on a 1920 px screen) and could not be narrowed below 1712 px at 1280 x 800 (issue
  // 26). A dock narrower than its panel scrolls instead.
  auto* scroll = new QScrollArea;
  scroll->setObjectName("scroll-" + panel->name());
  scroll->setWidgetResizable(true);
  scroll->setFrameShape(QFrame::NoFrame);
  scroll->setWidget(panel->widget());
  d->setWidget(scroll);
  addDockWidget(panel->area(), d);
  docks_.push_back(d);
  panels_.push_back(std::move(panel));
}

// Left and right: a column each, at the panels' preferred sizes; top: one tab stack, its first panel in front.
void MainWindow::arrangeDocks() {
  setCorner(Qt::TopLeftCorner, Qt::LeftDockWidgetArea);
  setCorner(Qt::BottomLeftCorner, Qt::LeftDockWidgetArea);
  setCorner(Qt::TopRightCorner, Qt::RightDockWidgetArea);
  setCorner(Qt::BottomRightCorner, Qt::RightDockWidgetArea);
  QDockWidget* first_top = nullptr;
  for (size_t i = 0; i < panels_.size(); ++i) {
    if (panels_[i]->area() != Qt::TopDockWidgetArea) continue;
    if (first_top) tabifyDockWidget(first_top, docks_[i]);
    else first_top = docks_[i];
  }
  if (first_top) first_top->raise();
  // The columns' widths in one call with the top area's (a side column resized alone kept an equal share: 466 / 557
  // / 465 px at 1500, cutting Attention's controls). Before the window is shown this has no effect: showEvent
  // arranges the default layout again.
  QList<QDockWidget*> across;
  QList<int> across_widths;
  int sides = 0;
  for (Qt::DockWidgetArea side : {Qt::LeftDockWidgetArea, Qt::RightDockWidgetArea}) {
    QList<QDockWidget*> column;
    QList<int> widths, heights;
    for (size_t i = 0; i < panels_.size(); ++i)
      if (panels_[i]->area() == side && panels_[i]->preferred().isValid()) {
        column << docks_[i];
        widths << panels_[i]->preferred().width();
        heights << panels_[i]->preferred().height();
      }
    if (column.isEmpty()) continue;
    across << column.front();
    across_widths << widths.front();
    sides += widths.front();
    resizeDocks(column, heights, Qt::Vertical);
  }
  if (first_top) {  // first: then the side columns take their widths from it
    across.prepend(first_top);
    across_widths.prepend(std::max(200, width() - sides - 30));
  }
  resizeDocks(across, across_widths, Qt::Horizontal);
}

void MainWindow::showEvent(QShowEvent* e) {
  QMainWindow::showEvent(e);
  if (shown_once_) return;
  shown_once_ = true;
  // After the first layout passes have placed the docks (at 0 ms the 1280 px window's columns kept their first
  // shares): the default layout's widths, once.
  if (!layout_restored_) QTimer::singleShot(200, this, [this] { arrangeDocks(); });
}

void MainWindow::resetLayout() {
  for (auto* d : docks_) {
    d->setFloating(false);
    d->show();
  }
  restoreState(default_layout_, kLayoutVersion);
  arrangeDocks();
  if (isMaximized() || isFullScreen()) showNormal();
  fitToScreen(defaultSize());
}

void MainWindow::fitToScreen(QSize wanted) {
  const QScreen* s = screen();
  if (!s) return;
  const QRect avail = s->availableGeometry();
  if (!wanted.isValid()) wanted = size();
  // The frame (title bar, borders) is outside size(): leave room for it.
  const QSize frame = frameGeometry().size() - size();
  const QSize fit(std::min(wanted.width(), avail.width() - frame.width()),
                  std::min(wanted.height(), avail.height() - frame.height()));
  if (fit != size()) resize(fit);
  if (!avail.contains(frameGeometry())) move(avail.topLeft());
}

void MainWindow::changed(Change c) {
  if (c == Change::Models && wb_->model_count() > 0) setWindowTitle(tr("MechScope — %1").arg(qs(wb_->summary().name)));
  for (auto& p : panels_) p->changed(c);
}

void MainWindow::buildStatusBar() {
  progress_ = new QProgressBar;
  progress_->setRange(0, 1000);
  progress_->setMaximumWidth(220);
  progress_->setVisible(false);
  cancel_ = new QPushButton(tr("Cancel"));
  cancel_->setVisible(false);
  cancel_->setShortcut(QKeySequence(Qt::Key_Escape));
  status_ = new QLabel;
  statusBar()->addWidget(status_, 1);
  statusBar()->addPermanentWidget(progress_);
  statusBar()->addPermanentWidget(cancel_);
  connect(cancel_, &QPushButton::clicked, this, [this] { jobs_->cancelAll(); });
  auto* timer = new QTimer(this);
  connect(timer, &QTimer::timeout, this, &MainWindow::updateStatus);
  timer->start(100);
}

void MainWindow::buildMenus() {
  QMenu* file = menuBar()->addMenu(tr("&File"));
  QAction* open = file->addAction(tr("&Open checkpoint…"), this, [this] {
    const QString p = QFileDialog::getOpenFileName(
        this, tr("Open checkpoint"), QString(),
        tr("Checkpoints (*.h5 config.json *.safetensors *.bin);;MechScope checkpoints (*.h5);;"
           "mamba_ssm or Hugging Face (config.json *.safetensors *.bin)"));
    if (!p.isEmpty()) openFile(p);
  });
  open->setShortcut(QKeySequence::Open);
  file->addAction(tr("Open mamba_ssm / Hugging Face &folder…"), this, [this] {
    const QString p = QFileDialog::getExistingDirectory(this, tr("Open a folder holding config.json and its weights"));
    if (!p.isEmpty()) openFile(p);
  });
  file->addAction(tr("Open collected &grid…"), this, [this] {  // `mechscope-cli collect`'s table (docs/cluster.md)
    const QString p = QFileDialog::getOpenFileName(this, tr("Open a collected grid"), QString(),
                                                   tr("Collected grids (collected.h5 *.h5)"));
    if (!p.isEmpty()) openFile(p);
  });
  recent_menu_ = file->addMenu(tr("Open &recent"));
  updateRecentMenu();
  file->addSeparator();
  file->addAction(tr("Open prompt &dataset…"), this, [this] {  // the Input panel's dataset row, from the menu
    const QString p = QFileDialog::getOpenFileName(this, tr("Open prompt dataset"), QString(),
                                                   tr("Prompt datasets (*.jsonl *.json);;All files (*)"));
    if (!p.isEmpty()) input_->loadDataset(p, 64);
  });
  file->addAction(tr("Open &workspace…"), this, [this] {
    const QString p = QFileDialog::getOpenFileName(this, tr("Open workspace"), QString(), tr("Workspaces (*.json)"));
    if (!p.isEmpty()) openWorkspace(p);
  });
  QAction* save = file->addAction(tr("&Save workspace…"), this, [this] {
    const QString p = QFileDialog::getSaveFileName(this, tr("Save workspace"), "workspace.json", tr("Workspaces (*.json)"));
    if (!p.isEmpty()) saveWorkspace(p);
  });
  save->setShortcut(QKeySequence::Save);
  file->addSeparator();
  QAction* quit = file->addAction(tr("&Quit"), this, &QWidget::close);
  quit->setShortcut(QKeySequence::Quit);
  QMenu* edit = menuBar()->addMenu(tr("&Edit"));  // the interventions' history (the Heads panel's ablations)
  QAction* undo = edit->addAction(tr("&Undo ablation"), this, [this] { heads_->undo(); });
  undo->setShortcut(QKeySequence::Undo);
  QAction* redo = edit->addAction(tr("&Redo ablation"), this, [this] { heads_->redo(); });
  redo->setShortcut(QKeySequence::Redo);
  edit->addAction(tr("Intervention &history…"), this, [this] {
    QMessageBox::information(this, tr("Intervention history"),
                             tr("The ablations of this model, oldest first (Ctrl+Z and Ctrl+Shift+Z step through them):\n\n") +
                                 heads_->history().join("\n"));
  });
  QMenu* view = menuBar()->addMenu(tr("&View"));
  QAction* dark = view->addAction(tr("&Dark theme"));
  dark->setCheckable(true);
  dark->setChecked(ctx_->dark);
  dark->setShortcut(QKeySequence("Ctrl+Shift+D"));
  connect(dark, &QAction::toggled, this, &MainWindow::setDark);
  QAction* refresh = view->addAction(tr("&Refresh"), this, [this] { changed(Change::Models); });
  view->addAction(tr("Reset &layout"), this, [this] { resetLayout(); });
  refresh->setShortcut(QKeySequence::Refresh);
  view->addSeparator();
  for (auto* d : docks_) view->addAction(d->toggleViewAction());
  QMenu* help = menuBar()->addMenu(tr("&Help"));
  help->addAction(tr("&Plugins…"), this, [this] {
    QString text;
    for (const auto& line : Workbench::plugin_report()) text += qs(line).toHtmlEscaped() + "<br>";
    for (const auto& line : panel_report_) text += line.toHtmlEscaped() + "<br>";
    QMessageBox box(this);
    box.setWindowTitle(tr("Plugins"));
    box.setTextFormat(Qt::RichText);
    box.setText(tr("<b>Plugins</b> (from &lt;install&gt;/lib/mechscope/plugins and $MECHSCOPE_PLUGIN_PATH)<br><br>") + text +
                tr("<br>Plugin tasks are available to Draw examples and Training; plugin analyses to the Analyses "
                   "panel, <code>mechscope-cli analyze NAME</code> and <code>mechscope --render</code>."));
    box.exec();
  });
  help->addAction(tr("&About MechScope"), this, [this] {
    QMessageBox::about(this, tr("About MechScope"),
                       tr("MechScope: mechanistic interpretability of Transformers, Mamba and hybrids.\n\n"
                          "Click a head to ablate it (shift-click for sets), run patching sweeps, compare models. "
                          "Every plot exports PNG, PDF, SVG and CSV."));
  });
}

void MainWindow::setDark(bool dark) {
  ctx_->dark = dark;
  qApp->setStyle(QStyleFactory::create("Fusion"));
  QPalette p;
  if (dark) {
    p.setColor(QPalette::Window, QColor(45, 47, 50));
    p.setColor(QPalette::WindowText, QColor(220, 220, 220));
    p.setColor(QPalette::Base, QColor(32, 34, 37));
    p.setColor(QPalette::AlternateBase, QColor(45, 47, 50));
    p.setColor(QPalette::Text, QColor(220, 220, 220));
    p.setColor(QPalette::Button, QColor(55, 57, 60));
    p.setColor(QPalette::ButtonText, QColor(220, 220, 220));
    p.setColor(QPalette::Highlight, QColor(60, 110, 180));
    p.setColor(QPalette::HighlightedText, Qt::white);
    p.setColor(QPalette::ToolTipBase, QColor(45, 47, 50));
    p.setColor(QPalette::ToolTipText, QColor(220, 220, 220));
  } else {
    p = qApp->style()->standardPalette();
  }
  qApp->setPalette(p);
  for (auto* pv : allPlots()) pv->setDark(dark);
  changed(Change::Theme);
}

void MainWindow::setQuiet(bool quiet) {
  quiet_ = quiet;
  training_->quiet = quiet;
}

void MainWindow::showError(const QString& what, const QString& message) {
  if (message.isEmpty()) {  // a cancelled job
    statusBar()->showMessage(what + tr(": cancelled"), 4000);
    return;
  }
  last_error_ = message;
  ++error_count_;
  statusBar()->showMessage(what + ": " + message, 8000);
  if (!quiet_) QMessageBox::warning(this, tr("MechScope"), what + ":\n\n" + message);
}

void MainWindow::updateStatus() {
  if (!status_) return;
  const bool running = jobs_->running() > 0;
  progress_->setVisible(running);
  cancel_->setVisible(running);
  if (running) {
    progress_->setValue(static_cast<int>(1000 * jobs_->progress()));
    const int queued = jobs_->running() - 1;
    const double eta = jobs_->eta_s();
    const QString left = eta < 0 ? QString() : eta < 90 ? tr(", about %1 s left").arg(std::max(1, static_cast<int>(eta)))
                                                        : tr(", about %1 min left").arg(static_cast<int>(eta / 60 + 0.5));
    status_->setText(jobs_->label() + "…" + left + (queued > 0 ? tr(" (%n more queued)", "", queued) : QString()));
  } else {
    QString s;
    if (wb_->model_count() == 0) s = tr("Open a checkpoint (Ctrl+O) or drop one on the window");
    else if (ctx_->last_outcome_ms >= 0) s = tr("outcome updated in %1 ms").arg(ctx_->last_outcome_ms, 0, 'f', 0);
    status_->setText(s);
  }
}

bool MainWindow::waitIdle(int timeout_ms) {
  QElapsedTimer t;
  t.start();
  while (jobs_->running() > 0 && t.elapsed() < timeout_ms) {
    QApplication::processEvents(QEventLoop::AllEvents, 20);
    QThread::msleep(2);
  }
  QApplication::processEvents();
  return jobs_->running() == 0;
}

// ---------------------------------------------------------------- files and workspaces

void MainWindow::openFile(const QString& path, bool make_current) {
  const std::string p = path.toStdString();
  if (grid::is_grid_table(p)) {  // a collected grid: its own window (table and figure), not a model
    try {
      auto* g = new GridWindow(p, this);
      g->setAttribute(Qt::WA_DeleteOnClose);
      g->show();
      addRecent(QFileInfo(path).absoluteFilePath());
    } catch (const std::exception& e) {
      QMessageBox::warning(this, tr("Open grid"), QString::fromStdString(describe_error(e)));
    }
    return;
  }
  ctx_->job<int>(tr("opening %1").arg(QFileInfo(path).fileName()),
                 [this, p, make_current](const Progress&) {
                   const int before = wb_->current();
                   wb_->open(p, make_current);
                   return before >= 0 && wb_->current() == before ? 0 : 1;  // 1: it became current
                 },
                 [this, path](const int& current) {
                   addRecent(QFileInfo(path).absoluteFilePath());
                   changed(current ? Change::Models : Change::ModelList);
                 });
}

void MainWindow::openFiles(const QStringList& paths) {
  for (int i = 0; i < paths.size(); ++i) openFile(paths[i], i == 0);
}

void MainWindow::addRecent(const QString& path) {
  QSettings s("MechScope", "MechScope");
  QStringList r = s.value("recent").toStringList();
  r.removeAll(path);
  r.prepend(path);
  while (r.size() > 10) r.removeLast();
  s.setValue("recent", r);
  updateRecentMenu();
}

void MainWindow::updateRecentMenu() {
  recent_menu_->clear();
  QSettings s("MechScope", "MechScope");
  for (const QString& p : s.value("recent").toStringList()) recent_menu_->addAction(p, this, [this, p] { openFile(p); });
  recent_menu_->setEnabled(!recent_menu_->isEmpty());
}

void MainWindow::dragEnterEvent(QDragEnterEvent* e) {
  if (e->mimeData()->hasUrls()) e->acceptProposedAction();
}

void MainWindow::dropEvent(QDropEvent* e) {
  QStringList files;
  for (const QUrl& u : e->mimeData()->urls())
    if (u.isLocalFile()) files << u.toLocalFile();
  openFiles(files);
}

void MainWindow::closeEvent(QCloseEvent* e) {
  jobs_->cancelAll();                       // a running sweep stops at its next chunk
  for (auto& p : panels_) p->close();       // a training run saves its checkpoint and stops
  jobs_->waitForDone();
  QSettings s("MechScope", "MechScope");
  s.setValue("geometry", saveGeometry());
  s.setValue("state", saveState(kLayoutVersion));
  s.setValue("dark", ctx_->dark);
  e->accept();
}

void MainWindow::saveWorkspace(const QString& path) {
  QJsonObject w;
  QJsonArray models;
  for (int i = 0; i < wb_->model_count(); ++i) models.append(qs(wb_->summary(i).path));
  w["format"] = "mechscope-workspace";
  w["version"] = kWorkspaceVersion;
  w["input"] = QJsonDocument::fromJson(QByteArray::fromStdString(wb_->input_state())).object();
  w["models"] = models;
  w["current"] = wb_->current();
  w["task"] = qs(wb_->task_json());
  w["example"] = wb_->example();
  QJsonArray ab;
  for (const auto& h : wb_->ablated()) ab.append(qs(h));
  w["ablated"] = ab;
  for (const auto& p : panels_) p->save(w);
  w["ablation"] = qs(wb_->ablation_kind());
  w["layout"] = QString::fromLatin1(saveState(kLayoutVersion).toBase64());
  QSaveFile f(path);
  if (!f.open(QIODevice::WriteOnly) || f.write(QJsonDocument(w).toJson()) < 0 || !f.commit())
    showError(tr("saving the workspace"), tr("cannot write %1").arg(path));
}

void MainWindow::openWorkspace(const QString& path) {
  QByteArray text;
  try {  // a regular file of at most 16 MiB: a FIFO or a device is refused without blocking
    const std::string s = mechscope::read_file_capped(path.toStdString(), 16u << 20, "workspace");
    text = QByteArray(s.data(), static_cast<qsizetype>(s.size()));
  } catch (const std::exception& e) {
    return showError(tr("opening the workspace"), QString::fromStdString(e.what()));
  }
  QJsonParseError err;
  const QJsonDocument doc = QJsonDocument::fromJson(text, &err);
  if (doc.isNull() || doc.object().value("format").toString() != "mechscope-workspace")
    return showError(tr("opening the workspace"), tr("%1 is not a MechScope workspace (%2)").arg(path, err.errorString()));
  const QJsonObject w = doc.object();
  if (w["version"].toInt(1) > kWorkspaceVersion)
    return showError(tr("opening the workspace"), tr("%1 is a version %2 workspace; this MechScope reads versions 1 to %3: "
                                                     "open it with a newer MechScope")
                                                      .arg(path).arg(w["version"].toInt()).arg(kWorkspaceVersion));
  QStringList models;
  for (const auto& m : w["models"].toArray()) models << m.toString();
  openFiles(models);  // the saved current one is made current below, once all are loaded
  const int current = w["current"].toInt(), n = w["examples"].toInt(64), seed = w["seed"].toInt(), ex = w["example"].toInt();
  const std::string task = w["task"].toString().toStdString(), kind = w["ablation"].toString("zero").toStdString();
  std::vector<std::string> ablated;
  for (const auto& h : w["ablated"].toArray()) ablated.push_back(h.toString().toStdString());
  restoreState(QByteArray::fromBase64(w["layout"].toString().toLatin1()), kLayoutVersion);
  const std::string input = w.contains("input") ? QJsonDocument(w["input"].toObject()).toJson().toStdString() : "";
  ctx_->job<int>(tr("restoring the workspace"), [=](const Progress&) {
    if (current >= 0 && current < wb_->model_count()) wb_->set_current(current);
    if (!input.empty()) wb_->restore_input(input);  // version 2: drawn (with the task's changes), typed, or a dataset
    else if (!task.empty() || wb_->summary().has_task) wb_->draw(n, seed, task);  // version 1: the task config
    if (ex < wb_->example_count()) wb_->set_example(ex);
    wb_->set_ablation(ablated, kind);
    return 0;
  }, [this, w](const int&) {
    for (auto& p : panels_) p->restore(w);  // the panels' settings, now that the models and the input are back
    changed(Change::Models);
  });
}

// ---------------------------------------------------------------- figures

std::vector<PlotView*> MainWindow::allPlots() const {
  std::vector<PlotView*> plots;
  for (const auto& p : panels_)
    for (auto* pv : p->plots()) plots.push_back(pv);
  return plots;
}

QStringList MainWindow::exportFigures(const QString& dir) {
  QDir().mkpath(dir);
  QStringList written;
  for (auto* p : allPlots()) {
    if (!p->hasData() || !p->isVisibleTo(this)) continue;
    const QString base = dir + "/" + p->objectName();
    try {
      p->exportTo(base + ".png", 1200, 800);
      p->exportTo(base + ".pdf", 1200, 800);
      p->exportTo(base + ".svg", 1200, 800);
      p->exportCsv(base + ".csv");
      written << base + ".png" << base + ".pdf" << base + ".svg" << base + ".csv";
    } catch (const std::exception& e) {
      showError(tr("exporting %1").arg(p->objectName()), qs(e.what()));
    }
  }
  return written;
}

void MainWindow::switchModel(int index) {
  ctx_->job<int>(tr("switching model"), [this, index](const Progress&) { wb_->set_current(index); return index; },
                 [this](const int&) { changed(Change::Models); });
}

void MainWindow::showPanel(const QString& name) {
  if (auto* d = dockOf(name)) {
    d->show();
    d->raise();
  }
}

QDockWidget* MainWindow::dockOf(const QString& name) const {
  for (auto* d : docks_)
    if (d->objectName() == "dock-" + name) return d;
  return nullptr;
}

void MainWindow::takeScreenshots(const QString& dir) {
  QDir().mkpath(dir);
  waitIdle();
  grab().save(dir + "/window.png");
  for (auto* d : docks_) {
    d->show();
    d->raise();
    waitIdle();
    QApplication::processEvents();
    grab().save(dir + "/panel-" + d->objectName().mid(5) + ".png");
  }
  int n = 0;  // the collected grids the files opened, each in its window
  for (auto* g : findChildren<GridWindow*>()) g->grab().save(dir + QString("/grid-%1.png").arg(n++));
  if (patchingPlot()->hasData()) {  // the patching sweep again, aligned to each example's corruption
    dockOf("patching")->show();
    dockOf("patching")->raise();
    patchingViewCombo()->setCurrentIndex(1);
    waitIdle();
    QApplication::processEvents();
    grab().save(dir + "/panel-patching-aligned.png");
    patchingViewCombo()->setCurrentIndex(0);
    waitIdle();
  }
}

// ---------------------------------------------------------------- what tests and scripts drive

PlotView* MainWindow::headsPlot() const { return heads_->plot(); }
PlotView* MainWindow::attentionPlot() const { return attention_->plot(); }
PlotView* MainWindow::patchingPlot() const { return patching_->plot(); }
PlotView* MainWindow::embeddingPlot() const { return embeddings_->plot(); }
QComboBox* MainWindow::patchingViewCombo() const { return patching_->viewCombo(); }
QString MainWindow::headsReading() const { return heads_->reading(); }
QString MainWindow::headsAblatedText() const { return heads_->ablatedText(); }
QString MainWindow::outcomeText() const { return outcome_->text(); }
void MainWindow::runPatching() { patching_->run(); }
void MainWindow::ablateHeads(const std::vector<std::string>& heads) { heads_->ablate(heads); }
void MainWindow::drawExamples(int n, int seed) { input_->draw(n, seed); }

// ------------------------------------------------------------------ panel plugins

void MainWindow::loadPanels() {
  QStringList entries = {QCoreApplication::applicationDirPath() + "/../lib/mechscope/plugins"};
  for (const QString& e : qEnvironmentVariable("MECHSCOPE_PLUGIN_PATH").split(':', Qt::SkipEmptyParts)) entries << e;
  QStringList files;
  for (const QString& e : entries) {
    const QFileInfo fi(e);
    if (fi.isDir()) {
      for (const QFileInfo& f : QDir(e).entryInfoList({"*.so"}, QDir::Files, QDir::Name)) files << f.canonicalFilePath();
    } else if (fi.isFile()) {
      files << fi.canonicalFilePath();
    }
  }
  files.removeDuplicates();
  for (const QString& f : files) {
    QPluginLoader loader(f);
    const QString iid = loader.metaData().value("IID").toString();
    if (!iid.startsWith(MECHSCOPE_PANEL_IID_PREFIX)) continue;  // not a panel plugin (a core plugin, or foreign)
    if (iid != MECHSCOPE_PANEL_IID) {
      panel_report_ << tr("FAILED panel: %1: built against panel interface %2; this workbench provides %3: rebuild it "
                          "against this SDK").arg(f, iid, MECHSCOPE_PANEL_IID);
      continue;
    }
    QObject* instance = loader.instance();
    auto* plugin = instance ? qobject_cast<mechscope::PanelPlugin*>(instance) : nullptr;
    if (!plugin) {
      panel_report_ << tr("FAILED panel: %1: %2").arg(f, instance ? tr("it does not implement PanelPlugin")
                                                                  : loader.errorString());
      continue;
    }
    QString title;
    QWidget* w = nullptr;
    try {
      title = plugin->title();
      w = plugin->createPanel(*this, nullptr);
      if (!w) throw std::runtime_error("createPanel returned no widget");
    } catch (const std::exception& e) {
      panel_report_ << tr("FAILED panel: %1: createPanel threw: %2").arg(f, qs(e.what()));
      continue;
    } catch (...) {
      panel_report_ << tr("FAILED panel: %1: createPanel threw a non-standard exception").arg(f);
      continue;
    }
    addPanel(std::make_unique<PluginPanel>(*ctx_, plugin, w, title));
    panel_report_ << tr("loaded panel: %1 (%2)").arg(title, f);
  }
}

QWidget* MainWindow::pluginPanel(const QString& title) const {
  for (const auto& p : panels_)
    if (p->name() == "plugin:" + title) return p->widget();
  return nullptr;
}

QString MainWindow::currentModel() const { return wb_->model_count() == 0 ? QString() : qs(wb_->summary().name); }

int MainWindow::exampleCount() const { return wb_->model_count() == 0 ? 0 : wb_->example_count(); }

void MainWindow::runAnalysis(const QString& name, const QString& options,
                             std::function<void(const mechscope::PanelGrid&, const QString&)> done) {
  const std::string n = name.toStdString(), o = options.toStdString();
  ctx_->job<std::pair<Grid, std::string>>(tr("running %1").arg(name), [this, n, o](const Progress&) {
    try {
      return std::make_pair(wb_->run_plugin_analysis(n, o), std::string());
    } catch (const std::exception& e) {
      return std::make_pair(Grid{}, describe_error(e));
    }
  }, [done](const std::pair<Grid, std::string>& r) {
    const Grid& g = r.first;
    done(mechscope::PanelGrid{g.rows, g.cols, g.values, g.row_labels, g.col_labels, g.title}, qs(r.second));
  });
}

QWidget* MainWindow::createGridView(const QString& name, QWidget* parent) { return ctx_->plot(name, parent); }

void MainWindow::showGrid(QWidget* gridView, const mechscope::PanelGrid& g) {
  auto* pv = qobject_cast<PlotView*>(gridView);
  if (!pv) return;
  Grid grid;  // a plugin's grid: no record of its own (exports describe the current model and input)
  grid.rows = g.rows;
  grid.cols = g.cols;
  grid.values = g.values;
  grid.row_labels = g.row_labels;
  grid.col_labels = g.col_labels;
  grid.title = g.title;
  pv->showGrid(grid);
}

}  // namespace mechscope::app
