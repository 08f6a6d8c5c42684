// MainWindow: see mainwindow.h. Every call into the Workbench runs in the single job thread; the UI thread
// only renders what a job returned, so it never waits on torch.
#include "app/mainwindow.h"

#include "core/engine/memory.h"

#include <chrono>
#include <cmath>
#include <optional>

#include <QAction>
#include <QCoreApplication>
#include <QPluginLoader>
#include <QApplication>
#include <QCheckBox>
#include <QCloseEvent>
#include <QComboBox>
#include <QDir>
#include <QDockWidget>
#include <QDragEnterEvent>
#include <QElapsedTimer>
#include <QFile>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QFutureWatcher>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLabel>
#include <QLineEdit>
#include <QListWidget>
#include <QMenuBar>
#include <QMessageBox>
#include <QMimeData>
#include <QProgressBar>
#include <QPushButton>
#include <QSaveFile>
#include <QSettings>
#include <QSlider>
#include <QSpinBox>
#include <QStatusBar>
#include <QStyleFactory>
#include <QTabWidget>
#include <QTableWidget>
#include <QTextBrowser>
#include <QThread>
#include <QTimer>
#include <QVBoxLayout>
#include <QtConcurrent/QtConcurrentRun>

#include "app/plotview.h"
#include "app/training.h"
#include "core/engine/runtime.h"

namespace mechscope::app {

namespace {

constexpr int kLayoutVersion = 4;  // bump when the panels change, so an old saved layout is ignored

QString qs(const std::string& s) { return QString::fromStdString(s); }
QString num(double v, int digits = 3) { return std::isfinite(v) ? QString::number(v, 'f', digits) : QStringLiteral("—"); }

struct InputView {
  std::vector<std::string> tokens, roles, targets;
  int count = 0, example = 0;
  std::string task;
};

QWidget* row(std::initializer_list<QWidget*> ws) {
  auto* w = new QWidget;
  auto* l = new QHBoxLayout(w);
  l->setContentsMargins(0, 0, 0, 0);
  for (auto* x : ws) l->addWidget(x);
  l->addStretch(1);
  return w;
}

}  // namespace

template <class R>
void MainWindow::job(const QString& what, std::function<R(const Progress&)> work, std::function<void(const R&)> done) {
  auto state = std::make_shared<JobState>();
  jobs_.push_back(state);
  ++jobs_running_;
  auto result = std::make_shared<std::optional<R>>();
  auto error = std::make_shared<QString>();
  auto cancelled = std::make_shared<bool>(false);
  auto* watcher = new QFutureWatcher<void>(this);
  connect(watcher, &QFutureWatcher<void>::finished, this, [=] {
    --jobs_running_;
    jobs_.erase(std::remove(jobs_.begin(), jobs_.end(), state), jobs_.end());
    if (*cancelled) statusBar()->showMessage(what + tr(": cancelled"), 4000);
    else if (!error->isEmpty()) showError(what, *error);
    else if (result->has_value()) done(**result);
    watcher->deleteLater();
    updateStatus();
  });
  job_label_ = what;
  updateStatus();
  watcher->setFuture(QtConcurrent::run(&pool_, [=] {
    init_thread();
    if (state->cancel) {
      *cancelled = true;
      return;
    }
    Progress p;
    p.report = [state](double f, const std::string&) { state->progress = f; };
    p.cancel = &state->cancel;
    try {
      *result = work(p);
    } catch (const std::exception& e) {
      if (state->cancel) *cancelled = true;
      else *error = QString::fromStdString(describe_error(e));
    }
  }));
}

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent), wb_(std::make_unique<Workbench>()) {
  setWindowTitle(tr("MechScope"));
  setObjectName("MechScopeMainWindow");
  setAcceptDrops(true);
  setDockNestingEnabled(true);
  pool_.setMaxThreadCount(1);  // one engine, one job at a time, in order
  pool_.setExpiryTimeout(-1);
  // Model panel.
  model_list_ = new QListWidget;
  model_info_ = new QTextBrowser;
  auto* verify_button = new QPushButton(tr("Verify fast paths"));
  verify_button->setToolTip(tr("Compare the fast forward, the cache and the batched sweeps with the reference paths"));
  auto* model_w = new QWidget;
  auto* ml = new QVBoxLayout(model_w);
  ml->addWidget(new QLabel(tr("Loaded models (click to switch):")));
  ml->addWidget(model_list_, 1);
  ml->addWidget(model_info_, 2);
  ml->addWidget(verify_button);
  connect(model_list_, &QListWidget::currentRowChanged, this, [this](int r) {
    if (r < 0 || r == wb_->current()) return;
    job<int>(tr("switching model"), [this, r](const Progress&) { wb_->set_current(r); return r; },
             [this](const int&) { refreshAll(); });
  });
  connect(verify_button, &QPushButton::clicked, this, [this] {
    job<std::string>(tr("verifying"), [this](const Progress&) { return wb_->verify(); },
                     [this](const std::string& v) { verify_status_ = v; refreshModels(); refreshOutcome(); });
  });

  // Input panel.
  n_spin_ = new QSpinBox;
  n_spin_->setRange(1, 4096);
  n_spin_->setValue(64);
  seed_spin_ = new QSpinBox;
  seed_spin_->setRange(0, 1 << 30);
  task_edit_ = new QLineEdit;
  task_edit_->setPlaceholderText(tr("task parameters to change, JSON, e.g. {\"num_pairs\": 8}"));
  auto* draw_button = new QPushButton(tr("Draw examples"));
  draw_button->setShortcut(QKeySequence("Ctrl+D"));
  example_spin_ = new QSpinBox;
  example_spin_->setRange(0, 0);
  auto* prev_b = new QPushButton(tr("◀"));
  auto* next_b = new QPushButton(tr("▶"));
  prev_b->setShortcut(QKeySequence("Alt+Left"));
  next_b->setShortcut(QKeySequence("Alt+Right"));
  auto* wrong_b = new QPushButton(tr("Next wrong"));
  wrong_b->setToolTip(tr("Jump to the next example the model gets wrong"));
  tokens_edit_ = new QLineEdit;
  tokens_edit_->setPlaceholderText(tr("or type tokens: ids or vocabulary strings, e.g. <bos> k3 v7 k3"));
  auto* use_tokens = new QPushButton(tr("Use tokens"));
  token_table_ = new QTableWidget(0, 4);
  token_table_->setHorizontalHeaderLabels({tr("token"), tr("role"), tr("target"), tr("loss")});
  token_table_->horizontalHeader()->setStretchLastSection(true);
  token_table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  input_label_ = new QLabel;
  auto* input_w = new QWidget;
  auto* il = new QVBoxLayout(input_w);
  auto* form = new QFormLayout;
  form->addRow(tr("examples"), row({n_spin_, new QLabel(tr("seed")), seed_spin_, draw_button}));
  form->addRow(tr("task"), task_edit_);
  form->addRow(tr("example"), row({prev_b, example_spin_, next_b, wrong_b}));
  form->addRow(tr("tokens"), row({tokens_edit_, use_tokens}));
  il->addLayout(form);
  il->addWidget(input_label_);
  il->addWidget(token_table_, 1);
  connect(draw_button, &QPushButton::clicked, this, [this] {
    const int n = n_spin_->value(), seed = seed_spin_->value();
    const std::string t = task_edit_->text().trimmed().toStdString();
    job<int>(tr("drawing examples"), [this, n, seed, t](const Progress&) { wb_->draw(n, seed, t); return 0; },
             [this](const int&) { refreshAll(); });
  });
  connect(use_tokens, &QPushButton::clicked, this, [this] {
    const std::string t = tokens_edit_->text().toStdString();
    job<int>(tr("reading tokens"), [this, t](const Progress&) { wb_->set_tokens(t); return 0; },
             [this](const int&) { refreshAll(); });
  });
  connect(example_spin_, qOverload<int>(&QSpinBox::valueChanged), this, [this](int e) {
    job<int>(tr("choosing example"), [this, e](const Progress&) {
      if (e < wb_->example_count()) wb_->set_example(e);
      return 0;
    }, [this](const int&) { refreshInput(); refreshAttention(); refreshOutcome(); });
  });
  connect(prev_b, &QPushButton::clicked, this, [this] { example_spin_->setValue(example_spin_->value() - 1); });
  connect(next_b, &QPushButton::clicked, this, [this] { example_spin_->setValue(example_spin_->value() + 1); });
  connect(wrong_b, &QPushButton::clicked, this, [this] {
    for (int e : wrong_examples_)
      if (e > example_spin_->value()) {
        example_spin_->setValue(e);
        return;
      }
    if (!wrong_examples_.empty()) example_spin_->setValue(wrong_examples_.front());
    else statusBar()->showMessage(tr("the model gets every example of this batch right"), 4000);
  });

  // Attention panel.
  layer_spin_ = new QSpinBox;
  mixer_combo_ = new QComboBox;
  head_spin_ = new QSpinBox;
  mean_heads_ = new QCheckBox(tr("mean over heads"));
  normalise_ = new QCheckBox(tr("min-max normalise"));
  attn_plot_ = new PlotView("attention");
  auto* attn_w = new QWidget;
  auto* al = new QVBoxLayout(attn_w);
  al->addWidget(row({new QLabel(tr("layer")), layer_spin_, new QLabel(tr("mixer")), mixer_combo_, new QLabel(tr("head")),
                     head_spin_, mean_heads_, normalise_}));
  al->addWidget(attn_plot_, 1);
  connect(layer_spin_, qOverload<int>(&QSpinBox::valueChanged), this, [this] { refreshMixers(); });
  connect(mixer_combo_, qOverload<int>(&QComboBox::currentIndexChanged), this, [this] {
    head_spin_->setRange(0, std::max(0, mixer_combo_->currentData().toInt() - 1));
    refreshAttention();
  });
  connect(head_spin_, qOverload<int>(&QSpinBox::valueChanged), this, [this] { refreshAttention(); });
  connect(mean_heads_, &QCheckBox::toggled, this, [this] { refreshAttention(); });
  connect(normalise_, &QCheckBox::toggled, this, [this] { refreshAttention(); });

  // Heads panel.
  score_combo_ = new QComboBox;
  score_combo_->addItems({"aggregate", "gather", "causal", "induction", "prev_token"});
  ablation_combo_ = new QComboBox;
  ablation_combo_->addItems({"zero", "mean", "resample"});
  auto* clear_b = new QPushButton(tr("Clear ablations"));
  clear_b->setShortcut(QKeySequence("Ctrl+Shift+X"));
  ablated_label_ = new QLabel(tr("click a head to ablate it; shift-click to add it to a set"));
  ablated_label_->setWordWrap(true);
  heads_plot_ = new PlotView("heads");
  auto* heads_w = new QWidget;
  auto* hl = new QVBoxLayout(heads_w);
  hl->addWidget(row({new QLabel(tr("colour by")), score_combo_, new QLabel(tr("ablation")), ablation_combo_, clear_b}));
  heads_reading_ = new QLabel;
  heads_reading_->setWordWrap(true);
  heads_reading_->setToolTip(tr("Aggregate: attention from the answer-predicting position onto the segment holding "
                                "the answer. Causal: the accuracy lost when the head alone is zero-ablated."));
  hl->addWidget(heads_plot_, 1);
  hl->addWidget(heads_reading_);
  hl->addWidget(ablated_label_);
  connect(score_combo_, qOverload<int>(&QComboBox::currentIndexChanged), this, [this] { refreshHeads(); });
  connect(ablation_combo_, qOverload<int>(&QComboBox::currentIndexChanged), this, [this] { applyAblation(wb_->ablated()); });
  connect(clear_b, &QPushButton::clicked, this, [this] { applyAblation({}); });
  connect(heads_plot_, &PlotView::cellClicked, this, &MainWindow::toggleHead);

  // Outcome panel.
  outcome_view_ = new QTextBrowser;

  // Patching panel.
  site_combo_ = new QComboBox;
  site_combo_->addItems({"resid_pre", "resid_mid", "resid_post", "mixer_in", "mixer_out", "mlp_in", "mlp_out", "heads",
                         "conv_out", "state"});
  role_combo_ = new QComboBox;
  role_combo_->addItems({"key", "value", "query"});
  auto* run_b = new QPushButton(tr("Run patching"));
  run_b->setShortcut(QKeySequence("Ctrl+P"));
  patch_plot_ = new PlotView("patching");
  patch_label_ = new QLabel(tr("clean run patched into the corrupted run, one site and position at a time; click a cell"));
  patch_label_->setWordWrap(true);
  auto* patch_w = new QWidget;
  auto* pl = new QVBoxLayout(patch_w);
  patch_view_combo_ = new QComboBox;
  patch_view_combo_->addItems({tr("by position"), tr("aligned to the corruption")});
  patch_view_combo_->setToolTip(tr("By position: the mean over examples at each absolute position (labelled with the "
                                   "current example's tokens). Aligned: each example's score at its own corrupted "
                                   "token, the tokens after it, and its readout; with a key corrupted, corrupted+1 is "
                                   "the key's value token (induction)."));
  pl->addWidget(row({new QLabel(tr("site")), site_combo_, new QLabel(tr("corrupt")), role_combo_, run_b,
                     new QLabel(tr("view")), patch_view_combo_}));
  pl->addWidget(patch_plot_, 1);
  pl->addWidget(patch_label_);
  connect(run_b, &QPushButton::clicked, this, &MainWindow::runPatching);
  connect(patch_view_combo_, qOverload<int>(&QComboBox::currentIndexChanged), this, [this] { showPatching(); });
  connect(patch_plot_, &PlotView::cellClicked, this, [this](int r, int c, Qt::KeyboardModifiers) {
    if (patch_view_combo_->currentIndex() == 1) {
      const auto& g = patch_plot_->grid();
      patch_label_->setText(tr("%1 at %2: mean score %3 over the kept examples; switch the view to \"by position\" "
                               "to apply one patch")
                                .arg(qs(g.row_labels[r])).arg(qs(g.col_labels[c])).arg(num(g.at(r, c))));
      return;
    }
    job<Outcome>(tr("applying the patch"), [this, r, c](const Progress&) { return wb_->patch_cell(r, c); },
        [this, r, c](const Outcome& o) {
          QString top;
          for (const auto& [t, p] : o.top) top += QStringLiteral("%1 %2  ").arg(qs(t)).arg(num(p));
          const auto& g = patch_plot_->grid();
          patch_label_->setText(tr("patched %1 at %2: answer probability %3, accuracy %4, logit difference %5 over %6 kept "
                                   "examples; current example (answer %7): %8")
                                    .arg(qs(g.row_labels[r])).arg(qs(g.col_labels[c])).arg(num(o.prob)).arg(num(o.accuracy))
                                    .arg(num(o.logit_diff)).arg(o.examples).arg(qs(o.target)).arg(top));
        });
  });

  // Embeddings panel.
  pcx_ = new QSpinBox;
  pcy_ = new QSpinBox;
  pcx_->setRange(1, 3);
  pcy_->setRange(1, 3);
  pcy_->setValue(2);
  snapshot_slider_ = new QSlider(Qt::Horizontal);
  snapshot_slider_->setRange(-1, -1);
  snapshot_slider_->setToolTip(tr("scrub through the embedding snapshots kept during training (right end: final)"));
  emb_label_ = new QLabel;
  emb_plot_ = new PlotView("embeddings-pca");
  cos_plot_ = new PlotView("embeddings-cosine");
  auto* tabs = new QTabWidget;
  tabs->addTab(emb_plot_, tr("PCA"));
  tabs->addTab(cos_plot_, tr("cosine similarity"));
  auto* emb_w = new QWidget;
  auto* el = new QVBoxLayout(emb_w);
  el->addWidget(row({new QLabel(tr("x: PC")), pcx_, new QLabel(tr("y: PC")), pcy_, new QLabel(tr("training snapshot")),
                     snapshot_slider_}));
  el->addWidget(tabs, 1);
  el->addWidget(emb_label_);
  connect(pcx_, qOverload<int>(&QSpinBox::valueChanged), this, [this] { refreshEmbeddings(); });
  connect(pcy_, qOverload<int>(&QSpinBox::valueChanged), this, [this] { refreshEmbeddings(); });
  connect(snapshot_slider_, &QSlider::valueChanged, this, [this] { refreshEmbeddings(); });

  // Compare panel.
  compare_table_ = new QTableWidget(0, 4);
  compare_table_->setHorizontalHeaderLabels({tr("model"), tr("accuracy"), tr("answer probability"), tr("note")});
  compare_table_->horizontalHeader()->setStretchLastSection(true);
  compare_table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  auto* cmp_b = new QPushButton(tr("Compare loaded models on these examples"));
  compare_view_ = new QComboBox;
  compare_view_->addItems({tr("attention (mean over heads)"), tr("head grid (aggregate score)"), tr("embedding PCA")});
  compare_layer_ = new QSpinBox;
  compare_layer_->setRange(0, 64);
  compare_plots_box_ = new QWidget;
  new QHBoxLayout(compare_plots_box_);
  compare_plots_box_->layout()->setContentsMargins(0, 0, 0, 0);
  auto* cmp_w = new QWidget;
  auto* cl = new QVBoxLayout(cmp_w);
  cl->addWidget(cmp_b);
  compare_table_->setMaximumHeight(140);
  cl->addWidget(compare_table_);
  cl->addWidget(row({new QLabel(tr("side by side:")), compare_view_, new QLabel(tr("layer")), compare_layer_}));
  cl->addWidget(compare_plots_box_, 3);
  connect(cmp_b, &QPushButton::clicked, this, [this] { refreshComparePlots(); });
  connect(compare_view_, qOverload<int>(&QComboBox::currentIndexChanged), this, [this] { refreshComparePlots(); });
  connect(compare_layer_, qOverload<int>(&QSpinBox::valueChanged), this, [this] { refreshComparePlots(); });

  // Plugins panel: analyses that plugins add, drawn like the built-in ones.
  plugin_combo_ = new QComboBox;
  for (const auto& [name, about] : Workbench::plugin_analyses()) {
    plugin_combo_->addItem(qs(name));
    plugin_combo_->setItemData(plugin_combo_->count() - 1, qs(about), Qt::ToolTipRole);
  }
  plugin_options_ = new QLineEdit;
  plugin_options_->setPlaceholderText(tr("options as JSON, e.g. {\"example\": 2} (default: the current example)"));
  auto* plugin_run = new QPushButton(tr("Run"));
  plugin_label_ = new QLabel(plugin_combo_->count() ? tr("analyses that plugins add (Help > Plugins lists them)")
                                                    : tr("no plugin analysis is loaded (Help > Plugins)"));
  plugin_label_->setWordWrap(true);
  plugin_plot_ = new PlotView("plugin");
  auto* plugin_w = new QWidget;
  auto* pgl = new QVBoxLayout(plugin_w);
  pgl->addWidget(row({new QLabel(tr("analysis")), plugin_combo_, plugin_options_, plugin_run}));
  pgl->addWidget(plugin_plot_, 1);
  pgl->addWidget(plugin_label_);
  connect(plugin_run, &QPushButton::clicked, this,
          [this] { runPluginAnalysis(plugin_combo_->currentText(), plugin_options_->text()); });

  // Training panel.
  train_preset_ = new QComboBox;
  train_preset_->addItems({"transformer", "hybrid", "mamba2", "mamba1", "parallel-hybrid"});
  train_model_ = new QLineEdit(R"({"d_model": 64, "n_layer": 2})");
  train_model_->setToolTip(tr("overrides of the preset (SPEC §1 keys), e.g. {\"attn_cfg\": {\"num_heads\": 1, \"head_dim\": 64}}"));
  train_task_ = new QLineEdit(R"({"task": "mqar", "vocab_size": 256, "seq_len": 64, "num_pairs": 16})");
  train_steps_ = new QSpinBox;
  train_steps_->setRange(1, 10000000);
  train_steps_->setValue(3000);
  train_batch_ = new QSpinBox;
  train_batch_->setRange(1, 4096);
  train_batch_->setValue(64);
  train_lr_ = new QLineEdit("1e-3");
  train_out_ = new QLineEdit(QDir::home().filePath("mechscope-run.h5"));
  train_start_ = new QPushButton(tr("Start"));
  train_stop_button_ = new QPushButton(tr("Stop (saves)"));
  train_stop_button_->setEnabled(false);
  train_label_ = new QLabel(tr("the run writes its checkpoint (with history and embedding snapshots) as it goes, and "
                               "opens it here when it ends"));
  train_label_->setWordWrap(true);
  train_plot_ = new PlotView("training");
  auto* train_w = new QWidget;
  auto* tl = new QVBoxLayout(train_w);
  auto* tform = new QFormLayout;
  tform->addRow(tr("model"), row({train_preset_, train_model_}));
  tform->addRow(tr("task"), train_task_);
  tform->addRow(tr("steps"), row({train_steps_, new QLabel(tr("batch")), train_batch_, new QLabel(tr("lr")), train_lr_}));
  tform->addRow(tr("checkpoint"), row({train_out_, train_start_, train_stop_button_}));
  tl->addLayout(tform);
  tl->addWidget(train_plot_, 1);
  tl->addWidget(train_label_);
  connect(train_start_, &QPushButton::clicked, this, [this] { startTraining(); });
  connect(train_stop_button_, &QPushButton::clicked, this, [this] { stopTraining(); });

  for (auto* p : {attn_plot_, heads_plot_, patch_plot_, emb_plot_, cos_plot_, train_plot_, plugin_plot_})
    p->setProvenance([this] { return wb_->provenance(); });

  // Docks.
  // Left: model over input. Middle (top area, which fills the window without a central widget): the big plots,
  // tabbed with compare and training. Right: heads over outcome.
  auto* d_model = dock(tr("Model"), "model", model_w, Qt::LeftDockWidgetArea);
  auto* d_input = dock(tr("Input"), "input", input_w, Qt::LeftDockWidgetArea);
  auto* d_attn = dock(tr("Attention"), "attention", attn_w, Qt::TopDockWidgetArea);
  auto* d_patch = dock(tr("Patching"), "patching", patch_w, Qt::TopDockWidgetArea);
  auto* d_emb = dock(tr("Embeddings"), "embeddings", emb_w, Qt::TopDockWidgetArea);
  auto* d_heads = dock(tr("Heads"), "heads", heads_w, Qt::RightDockWidgetArea);
  auto* d_out = dock(tr("Outcome"), "outcome", outcome_view_, Qt::RightDockWidgetArea);
  auto* d_cmp = dock(tr("Compare"), "compare", cmp_w, Qt::TopDockWidgetArea);
  auto* d_train = dock(tr("Training"), "training", train_w, Qt::TopDockWidgetArea);
  auto* d_plugins = dock(tr("Plugins"), "plugins", plugin_w, Qt::TopDockWidgetArea);
  setCorner(Qt::TopLeftCorner, Qt::LeftDockWidgetArea);
  setCorner(Qt::BottomLeftCorner, Qt::LeftDockWidgetArea);
  setCorner(Qt::TopRightCorner, Qt::RightDockWidgetArea);
  setCorner(Qt::BottomRightCorner, Qt::RightDockWidgetArea);
  tabifyDockWidget(d_attn, d_patch);
  tabifyDockWidget(d_attn, d_emb);
  tabifyDockWidget(d_attn, d_train);
  tabifyDockWidget(d_attn, d_plugins);
  tabifyDockWidget(d_attn, d_cmp);
  d_attn->raise();
  d_out->raise();
  resizeDocks({d_model, d_heads}, {330, 430}, Qt::Horizontal);
  resizeDocks({d_model, d_input}, {330, 520}, Qt::Vertical);
  resizeDocks({d_heads, d_out}, {430, 420}, Qt::Vertical);

  // Status bar: progress and cancel for the running job.
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
  connect(cancel_, &QPushButton::clicked, this, [this] {
    for (auto& j : jobs_) j->cancel = true;
  });
  auto* timer = new QTimer(this);
  connect(timer, &QTimer::timeout, this, &MainWindow::updateStatus);
  timer->start(100);

  loadPanels(d_attn);  // before the saved layout is restored, so that plugin docks keep their places
  buildMenus();
  QSettings settings("MechScope", "MechScope");
  if (qEnvironmentVariableIsEmpty("MECHSCOPE_DEFAULT_LAYOUT")) {  // tests and screenshots use the default layout
    restoreGeometry(settings.value("geometry").toByteArray());
    restoreState(settings.value("state").toByteArray(), kLayoutVersion);
    setDark(settings.value("dark", false).toBool());
  }
  refreshAll();
}

MainWindow::~MainWindow() {
  for (auto& j : jobs_) j->cancel = true;
  train_stop_ = true;
  if (train_thread_.joinable()) train_thread_.join();
  pool_.waitForDone();
}

void MainWindow::setTrainingSettings(const QString& preset, const QString& model_json, const QString& task_json,
                                     int steps, int batch, const QString& out) {
  train_preset_->setCurrentText(preset);
  train_model_->setText(model_json);
  train_task_->setText(task_json);
  train_steps_->setValue(steps);
  train_batch_->setValue(batch);
  train_out_->setText(out);
}

bool MainWindow::startTraining() {
  if (train_running_) return false;
  if (train_thread_.joinable()) train_thread_.join();
  TrainingRequest r;
  r.preset = train_preset_->currentText().toStdString();
  r.model_json = train_model_->text().toStdString();
  r.task_json = train_task_->text().toStdString();
  r.steps = train_steps_->value();
  r.batch = train_batch_->value();
  bool ok = false;
  r.lr = train_lr_->text().toDouble(&ok);
  if (!ok || r.lr <= 0) {
    showError(tr("training"), tr("the learning rate '%1' is not a positive number").arg(train_lr_->text()));
    return false;
  }
  r.out = train_out_->text().trimmed().toStdString();
  r.eval_every = std::max<int64_t>(10, r.steps / 60);
  if (QFile::exists(train_out_->text().trimmed()) && !quiet_ &&
      QMessageBox::question(this, tr("Training"), tr("%1 exists. Overwrite it?").arg(train_out_->text())) !=
          QMessageBox::Yes)
    return false;
  train_steps_x_.clear();
  train_loss_.clear();
  train_acc_.clear();
  train_stop_ = false;
  train_running_ = true;
  train_start_->setEnabled(false);
  train_stop_button_->setEnabled(true);
  train_label_->setText(tr("starting…"));
  train_thread_ = std::thread([this, r] {
    init_thread();
    std::string summary, error;
    try {
      summary = run_training(r, [this](const TrainingPoint& p) {
        QMetaObject::invokeMethod(this, [this, p] {
          if (p.evaluated || train_steps_x_.empty() || p.step - train_steps_x_.back() >= 5) {
            train_steps_x_.push_back(static_cast<double>(p.step));
            train_loss_.push_back(p.loss);
            train_acc_.push_back(p.evaluated ? p.accuracy : NAN);
            train_plot_->showCurves(train_steps_x_, {{"loss", train_loss_}, {"eval accuracy", train_acc_}}, tr("step"),
                                    tr("training"));
          }
          train_label_->setText(tr("step %1 / %2   loss %3   accuracy %4   %5 examples/s   %6 s left")
                                    .arg(p.step).arg(p.steps).arg(num(p.loss, 4)).arg(p.accuracy < 0 ? "—" : num(p.accuracy))
                                    .arg(p.examples_per_s, 0, 'f', 0).arg(p.eta_s, 0, 'f', 0));
        }, Qt::QueuedConnection);
      }, &train_stop_);
    } catch (const std::exception& e) {
      error = describe_error(e);
    }
    QMetaObject::invokeMethod(this, [this, summary, error, out = r.out] {
      train_running_ = false;
      train_start_->setEnabled(true);
      train_stop_button_->setEnabled(false);
      if (!error.empty()) {
        train_label_->setText(tr("failed: %1").arg(qs(error)));
        showError(tr("training"), qs(error));
        return;
      }
      train_label_->setText(qs(summary));
      openFile(qs(out));  // its embedding snapshots can be scrubbed in the Embeddings panel
    }, Qt::QueuedConnection);
  });
  return true;
}

QDockWidget* MainWindow::dock(const QString& title, const QString& name, QWidget* body, Qt::DockWidgetArea area) {
  auto* d = new QDockWidget(title, this);
  d->setObjectName("dock-" + name);
  d->setWidget(body);
  addDockWidget(area, d);
  docks_.push_back(d);
  return d;
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
  recent_menu_ = file->addMenu(tr("Open &recent"));
  updateRecentMenu();
  file->addSeparator();
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
  QMenu* view = menuBar()->addMenu(tr("&View"));
  QAction* dark = view->addAction(tr("&Dark theme"));
  dark->setCheckable(true);
  dark->setChecked(dark_);
  dark->setShortcut(QKeySequence("Ctrl+Shift+D"));
  connect(dark, &QAction::toggled, this, &MainWindow::setDark);
  QAction* refresh = view->addAction(tr("&Refresh"), this, [this] { refreshAll(); });
  refresh->setShortcut(QKeySequence::Refresh);
  view->addSeparator();
  for (auto* d : docks_) view->addAction(d->toggleViewAction());
  QMenu* help = menuBar()->addMenu(tr("&Help"));
  help->addAction(tr("&Plugins…"), this, [this] {
    QString text;
    for (const auto& line : Workbench::plugin_report()) text += qs(line).toHtmlEscaped() + "<br>";
    QMessageBox box(this);
    box.setWindowTitle(tr("Plugins"));
    box.setTextFormat(Qt::RichText);
    for (const auto& line : panel_report_) text += line.toHtmlEscaped() + "<br>";
    box.setText(tr("<b>Plugins</b> (from &lt;install&gt;/lib/mechscope/plugins and $MECHSCOPE_PLUGIN_PATH)<br><br>") + text +
                tr("<br>Plugin tasks are available to Draw examples and Training; plugin analyses to "
                   "<code>mechscope-cli analyze NAME</code> and <code>mechscope --render</code>."));
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
  dark_ = dark;
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
  for (auto* pv : {attn_plot_, heads_plot_, patch_plot_, emb_plot_, cos_plot_, train_plot_, plugin_plot_}) pv->setDark(dark);
}

void MainWindow::showError(const QString& what, const QString& message) {
  last_error_ = message;
  statusBar()->showMessage(what + ": " + message, 8000);
  if (!quiet_) QMessageBox::warning(this, tr("MechScope"), what + ":\n\n" + message);
}

void MainWindow::updateStatus() {
  const bool running = jobs_running_ > 0;
  progress_->setVisible(running);
  cancel_->setVisible(running);
  if (running) {
    double f = jobs_.empty() ? 0 : jobs_.front()->progress.load();
    progress_->setValue(static_cast<int>(1000 * f));
    status_->setText(job_label_ + "…");
  } else {
    QString s;
    if (wb_->model_count() == 0) s = tr("Open a checkpoint (Ctrl+O) or drop one on the window");
    else if (last_outcome_ms_ >= 0) s = tr("outcome updated in %1 ms").arg(last_outcome_ms_, 0, 'f', 0);
    status_->setText(s);
  }
}

bool MainWindow::waitIdle(int timeout_ms) {
  QElapsedTimer t;
  t.start();
  while (jobs_running_ > 0 && t.elapsed() < timeout_ms) {
    QApplication::processEvents(QEventLoop::AllEvents, 20);
    QThread::msleep(2);
  }
  QApplication::processEvents();
  return jobs_running_ == 0;
}

// ---------------------------------------------------------------- files and workspaces

void MainWindow::openFile(const QString& path) {
  const std::string p = path.toStdString();
  job<int>(tr("opening %1").arg(QFileInfo(path).fileName()), [this, p](const Progress&) { return wb_->open(p); },
           [this, path](const int&) {
             addRecent(QFileInfo(path).absoluteFilePath());
             refreshAll();
           });
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
  for (const QString& p : s.value("recent").toStringList())
    recent_menu_->addAction(p, this, [this, p] { openFile(p); });
  recent_menu_->setEnabled(!recent_menu_->isEmpty());
}

void MainWindow::dragEnterEvent(QDragEnterEvent* e) {
  if (e->mimeData()->hasUrls()) e->acceptProposedAction();
}

void MainWindow::dropEvent(QDropEvent* e) {
  for (const QUrl& u : e->mimeData()->urls())
    if (u.isLocalFile()) openFile(u.toLocalFile());
}

void MainWindow::closeEvent(QCloseEvent* e) {
  for (auto& j : jobs_) j->cancel = true;  // a running sweep stops at its next chunk
  train_stop_ = true;                      // a training run saves its checkpoint and stops
  if (train_thread_.joinable()) train_thread_.join();
  pool_.waitForDone();
  QSettings s("MechScope", "MechScope");
  s.setValue("geometry", saveGeometry());
  s.setValue("state", saveState(kLayoutVersion));
  s.setValue("dark", dark_);
  e->accept();
}

void MainWindow::saveWorkspace(const QString& path) {
  QJsonObject w;
  QJsonArray models;
  for (int i = 0; i < wb_->model_count(); ++i) models.append(qs(wb_->summary(i).path));
  w["format"] = "mechscope-workspace";
  w["version"] = 1;
  w["models"] = models;
  w["current"] = wb_->current();
  w["task"] = qs(wb_->task_json());
  w["examples"] = n_spin_->value();
  w["seed"] = seed_spin_->value();
  w["example"] = wb_->example();
  QJsonArray ab;
  for (const auto& h : wb_->ablated()) ab.append(qs(h));
  w["ablated"] = ab;
  w["ablation"] = qs(wb_->ablation_kind());
  w["layer"] = layer_spin_->value();
  w["head"] = head_spin_->value();
  w["site"] = site_combo_->currentText();
  w["patching_view"] = patch_view_combo_->currentIndex() == 1 ? "aligned" : "positions";
  w["layout"] = QString::fromLatin1(saveState(kLayoutVersion).toBase64());
  QSaveFile f(path);
  if (!f.open(QIODevice::WriteOnly) || f.write(QJsonDocument(w).toJson()) < 0 || !f.commit())
    showError(tr("saving the workspace"), tr("cannot write %1").arg(path));
}

void MainWindow::openWorkspace(const QString& path) {
  QFile f(path);
  if (!f.open(QIODevice::ReadOnly)) return showError(tr("opening the workspace"), tr("cannot read %1").arg(path));
  QJsonParseError err;
  const QJsonDocument doc = QJsonDocument::fromJson(f.readAll(), &err);
  if (doc.isNull() || doc.object().value("format").toString() != "mechscope-workspace")
    return showError(tr("opening the workspace"), tr("%1 is not a MechScope workspace (%2)").arg(path, err.errorString()));
  const QJsonObject w = doc.object();
  for (const auto& m : w["models"].toArray()) openFile(m.toString());
  const int current = w["current"].toInt(), n = w["examples"].toInt(64), seed = w["seed"].toInt(), ex = w["example"].toInt();
  const std::string task = w["task"].toString().toStdString(), kind = w["ablation"].toString("zero").toStdString();
  std::vector<std::string> ablated;
  for (const auto& h : w["ablated"].toArray()) ablated.push_back(h.toString().toStdString());
  n_spin_->setValue(n);
  seed_spin_->setValue(seed);
  site_combo_->setCurrentText(w["site"].toString("resid_pre"));
  {
    QSignalBlocker b(patch_view_combo_);  // no sweep to show yet
    patch_view_combo_->setCurrentIndex(w["patching_view"].toString("positions") == "aligned" ? 1 : 0);
  }
  restoreState(QByteArray::fromBase64(w["layout"].toString().toLatin1()), kLayoutVersion);
  job<int>(tr("restoring the workspace"), [=](const Progress&) {
    if (current >= 0 && current < wb_->model_count()) wb_->set_current(current);
    if (!task.empty() || wb_->summary().has_task) wb_->draw(n, seed, "");
    if (ex < wb_->example_count()) wb_->set_example(ex);
    wb_->set_ablation(ablated, kind);
    return 0;
  }, [this, w](const int&) {
    ablation_combo_->setCurrentText(w["ablation"].toString("zero"));
    refreshAll();
  });
}

// ---------------------------------------------------------------- refresh

void MainWindow::refreshAll() {
  refreshModels();
  if (wb_->model_count() == 0) return;
  {
    QSignalBlocker b(layer_spin_);
    layer_spin_->setRange(0, std::max(0, wb_->summary().layers - 1));
  }
  refreshMixers();
  refreshInput();
  refreshHeads();
  refreshOutcome();
  refreshEmbeddings();
}

// The mixers of the chosen layer (and the head range of the first), then the attention map.
void MainWindow::refreshMixers() {
  const int l = layer_spin_->value();
  job<std::vector<std::pair<std::string, int>>>(tr("reading layer"), [this, l](const Progress&) { return wb_->mixers(l); },
      [this](const std::vector<std::pair<std::string, int>>& ms) {
        QSignalBlocker b(mixer_combo_);
        mixer_combo_->clear();
        for (const auto& [m, H] : ms) mixer_combo_->addItem(qs(m), H);
        head_spin_->setRange(0, std::max(0, ms.empty() ? 0 : ms[0].second - 1));
        refreshAttention();
      });
}

void MainWindow::refreshModels() {
  QSignalBlocker b(model_list_);
  model_list_->clear();
  for (int i = 0; i < wb_->model_count(); ++i) model_list_->addItem(qs(wb_->summary(i).name));
  model_list_->setCurrentRow(wb_->current());
  if (wb_->model_count() == 0) {
    model_info_->setHtml(tr("<p>No model open.</p><p>File &gt; Open (Ctrl+O), drop a <code>.h5</code> checkpoint (or a mamba_ssm / Hugging Face folder) here, "
                            "or start <code>mechscope resources/models/*.h5</code>.</p>"));
    return;
  }
  ModelSummary s = wb_->summary();
  QString html = QStringLiteral("<h3>%1</h3><p>%2</p><p><b>task</b> %3</p><table>").arg(qs(s.name), qs(s.architecture), qs(s.task));
  std::map<std::pair<int, std::string>, int> counts;
  for (const auto& h : s.heads) counts[{h.layer, h.mixer}]++;
  for (int l = 0; l < s.layers; ++l) {
    QString heads;
    for (const auto& [k, n] : counts)
      if (k.first == l) heads += QStringLiteral("%1 %2 heads ").arg(n).arg(qs(k.second));
    html += QStringLiteral("<tr><td>layer %1</td><td>%2</td><td>%3</td></tr>").arg(l).arg(qs(s.layer_kinds[l]), heads);
  }
  html += "</table>";
  html += QStringLiteral("<p><b>verify</b>: %1</p>").arg(s.verify.empty() ? tr("not run (button below)") : qs(s.verify));
  html += QStringLiteral("<p><small>%1</small></p>").arg(qs(s.path));
  model_info_->setHtml(html);
  setWindowTitle(tr("MechScope — %1").arg(qs(s.name)));
}

void MainWindow::refreshInput() {
  if (wb_->model_count() == 0) return;
  job<InputView>(tr("reading the input"), [this](const Progress&) {
    InputView v;
    v.count = wb_->example_count();
    if (v.count == 0) return v;
    v.example = wb_->example();
    v.tokens = wb_->tokens();
    v.roles = wb_->roles();
    v.targets = wb_->targets();
    v.task = wb_->task_json();
    return v;
  }, [this](const InputView& v) {
    QSignalBlocker b(example_spin_);
    example_spin_->setRange(0, std::max(0, v.count - 1));
    example_spin_->setValue(v.example);
    input_label_->setText(v.count ? tr("%1 examples of %2").arg(v.count).arg(qs(v.task.empty() ? "typed tokens" : v.task))
                                  : tr("no input"));
    token_table_->setRowCount(static_cast<int>(v.tokens.size()));
    QStringList rows;
    for (size_t j = 0; j < v.tokens.size(); ++j) {
      rows << QString::number(j);
      token_table_->setItem(j, 0, new QTableWidgetItem(qs(v.tokens[j])));
      token_table_->setItem(j, 1, new QTableWidgetItem(qs(v.roles[j])));
      token_table_->setItem(j, 2, new QTableWidgetItem(qs(v.targets[j])));
      const double loss = j < after_.example_loss.size() ? after_.example_loss[j] : NAN;
      token_table_->setItem(j, 3, new QTableWidgetItem(std::isfinite(loss) ? num(loss) : QString()));
      const QString role = qs(v.roles[j]);
      QColor c = role == "key" ? QColor(90, 140, 220, 60) : role == "value" ? QColor(80, 180, 100, 60)
               : role == "query" ? QColor(230, 150, 40, 70) : role == "answer" ? QColor(200, 70, 70, 60) : QColor(0, 0, 0, 0);
      for (int c2 = 0; c2 < 3; ++c2) token_table_->item(j, c2)->setBackground(c);
    }
    token_table_->setVerticalHeaderLabels(rows);
  });
}

void MainWindow::refreshAttention() {
  if (wb_->model_count() == 0 || mixer_combo_->count() == 0 || wb_->example_count() == 0) return;
  const int l = layer_spin_->value(), h = mean_heads_->isChecked() ? -1 : head_spin_->value();
  const std::string m = mixer_combo_->currentText().toStdString();
  const bool norm = normalise_->isChecked();
  job<Grid>(tr("attention map"), [this, l, m, h, norm](const Progress&) { return wb_->attention(l, m, h, norm); },
            [this](const Grid& g) { attn_plot_->showGrid(g); });
}

void MainWindow::refreshHeads() {
  if (wb_->model_count() == 0 || wb_->example_count() == 0) return;
  const std::string score = score_combo_->currentText().toStdString();
  job<Grid>(tr("head scores"), [this, score](const Progress& p) { return wb_->head_scores(score, p); },
            [this](const Grid& g) {
              heads_plot_->showGrid(g);
              heads_reading_->setText(qs(wb_->head_scores_reading()));
              head_rows_.clear();
              for (const auto& r : g.row_labels) {  // "L1 attn"
                const auto sp = r.find(' ');
                head_rows_.push_back({std::stoi(r.substr(1, sp - 1)), r.substr(sp + 1)});
              }
              std::vector<std::pair<int, int>> marks;
              for (const auto& label : wb_->ablated()) {
                // L1.attn.H0
                const auto a = label.find('.'), b = label.rfind(".H");
                const int layer = std::stoi(label.substr(1, a - 1)), head = std::stoi(label.substr(b + 2));
                const std::string mixer = label.substr(a + 1, b - a - 1);
                for (size_t r = 0; r < head_rows_.size(); ++r)
                  if (head_rows_[r].first == layer && head_rows_[r].second == mixer) marks.push_back({(int)r, head});
              }
              heads_plot_->markCells(marks);
            });
}

void MainWindow::toggleHead(int r, int c, Qt::KeyboardModifiers mods) {
  if (r < 0 || r >= static_cast<int>(head_rows_.size())) return;
  if (std::isnan(heads_plot_->grid().at(r, c))) return;  // no head there
  const std::string label = "L" + std::to_string(head_rows_[r].first) + "." + head_rows_[r].second + ".H" + std::to_string(c);
  std::vector<std::string> cur = wb_->ablated();
  const bool had = std::find(cur.begin(), cur.end(), label) != cur.end();
  if (mods & Qt::ShiftModifier) {  // sets: add or remove this head
    if (had) cur.erase(std::remove(cur.begin(), cur.end(), label), cur.end());
    else cur.push_back(label);
  } else {  // a plain click: this head alone, or nothing if it was the only one
    cur = had && cur.size() == 1 ? std::vector<std::string>{} : std::vector<std::string>{label};
  }
  applyAblation(cur);
}

void MainWindow::applyAblation(const std::vector<std::string>& heads) {
  const std::string kind = ablation_combo_->currentText().toStdString();
  auto started = std::make_shared<QElapsedTimer>();
  started->start();
  job<Outcome>(tr("ablating"), [this, heads, kind](const Progress&) {
    wb_->set_ablation(heads, kind);
    return wb_->outcome(true);
  }, [this, started](const Outcome& o) {
    after_ = o;
    last_outcome_ms_ = static_cast<double>(started->nsecsElapsed()) / 1e6;
    const auto ab = wb_->ablated();
    QString list;
    for (const auto& h : ab) list += qs(h) + " ";
    ablated_label_->setText(ab.empty() ? tr("no head ablated; click a head to ablate it, shift-click for sets")
                                       : tr("%1-ablated: %2").arg(qs(wb_->ablation_kind()), list));
    renderOutcome();
    refreshHeads();
  });
}

void MainWindow::refreshOutcome() {
  if (wb_->model_count() == 0) return;
  if (wb_->example_count() == 0) {  // a bare model (e.g. imported) has no task to draw examples from
    outcome_view_->setHtml(tr("<p>This model has no task attached, so there is no input yet.</p><p>Type tokens in the "
                              "Input panel (ids or vocabulary strings), or choose a task there and draw examples. "
                              "<code>mechscope-cli convert SRC -o OUT.h5 --task NAME</code> attaches a task for good.</p>"));
    refreshInput();
    return;
  }
  job<std::pair<Outcome, Outcome>>(tr("outcome"), [this](const Progress&) {
    if (wb_->example_count() == 0) return std::make_pair(Outcome{}, Outcome{});
    return std::make_pair(wb_->outcome(false), wb_->outcome(true));
  }, [this](const std::pair<Outcome, Outcome>& r) {
    before_ = r.first;
    after_ = r.second;
    renderOutcome();
    refreshInput();
    refreshPanels();
  });
}

void MainWindow::renderOutcome() {
  {
    wrong_examples_ = after_.wrong_examples;
    const ModelSummary s = wb_->summary();
    auto top = [](const Outcome& o) {
      QString t;
      for (const auto& [tok, p] : o.top) t += QStringLiteral("%1&nbsp;%2 ").arg(qs(tok).toHtmlEscaped()).arg(num(p));
      return t;
    };
    const auto ab = wb_->ablated();
    QString html = QStringLiteral("<h3>%1</h3>").arg(qs(s.name));
    html += QStringLiteral("<p>verify: %1</p>").arg(s.verify.empty() ? tr("not run") : qs(s.verify));
    html += QStringLiteral("<table border=1 cellspacing=0 cellpadding=3><tr><th></th><th>before</th><th>after</th></tr>"
                           "<tr><td>accuracy</td><td>%1</td><td>%2</td></tr>"
                           "<tr><td>answer probability</td><td>%3</td><td>%4</td></tr>"
                           "<tr><td>logit difference</td><td>%5</td><td>%6</td></tr></table>")
                .arg(num(before_.accuracy), num(after_.accuracy), num(before_.prob), num(after_.prob),
                     num(before_.logit_diff), num(after_.logit_diff));
    html += QStringLiteral("<p>%1 examples; interventions: %2</p>").arg(before_.examples)
                .arg(ab.empty() ? tr("none") : qs(wb_->ablation_kind()) + " ablation of " + qs([&] {
                       std::string x;
                       for (const auto& h : ab) x += h + " ";
                       return x;
                     }()));
    html += QStringLiteral("<p><b>current example</b>, answer <b>%1</b><br>before: %2<br>after: %3</p>")
                .arg(qs(after_.target).toHtmlEscaped(), top(before_), top(after_));
    html += QStringLiteral("<p>%1 of %2 examples have a wrong answer after the interventions (Input &gt; Next wrong)</p>")
                .arg(after_.wrong_examples.size()).arg(after_.examples);
    outcome_view_->setHtml(html);
  }
}

void MainWindow::refreshEmbeddings() {
  if (wb_->model_count() == 0) return;
  const int px = pcx_->value() - 1, py = pcy_->value() - 1, snap = snapshot_slider_->value();
  const int max_snap = snapshot_slider_->maximum();
  job<Embedding>(tr("embedding geometry"), [this, px, py, snap, max_snap](const Progress&) {
    return wb_->embeddings(px, py, snap >= 0 && snap < max_snap ? snap : -1);
  }, [this, px, py, snap](const Embedding& e) {
    {
      QSignalBlocker b(snapshot_slider_);
      snapshot_slider_->setRange(e.snapshot_steps.empty() ? -1 : 0, static_cast<int>(e.snapshot_steps.size()));
      if (snap < snapshot_slider_->minimum()) snapshot_slider_->setValue(snapshot_slider_->maximum());
    }
    const int s = snapshot_slider_->value();
    const QString when = s >= 0 && s < (int)e.snapshot_steps.size() ? tr("training step %1").arg(e.snapshot_steps[s])
                                                                    : tr("final weights");
    emb_plot_->showScatter(e.x, e.y, e.labels, tr("PC%1 (%2%)").arg(px + 1).arg(100 * e.explained[px], 0, 'f', 1),
                           tr("PC%1 (%2%)").arg(py + 1).arg(100 * e.explained[py], 0, 'f', 1),
                           tr("embedding rows, coloured by index — %1").arg(when));
    cos_plot_->showGrid(e.cosine, true);
    emb_label_->setText(tr("%1 rows; locality (k = 5) %2 (1 = neighbours in space are neighbours in index; random ≈ %3); %4")
                            .arg(e.x.size()).arg(num(e.locality)).arg(num(std::min(1.0, 10.0 / e.x.size()))).arg(when));
  });
}

void MainWindow::refreshCompare() {
  job<std::vector<Workbench::CompareRow>>(tr("comparing models"), [this](const Progress&) { return wb_->compare(); },
      [this](const std::vector<Workbench::CompareRow>& rows) {
        compare_table_->setRowCount(static_cast<int>(rows.size()));
        for (size_t i = 0; i < rows.size(); ++i) {
          compare_table_->setItem(i, 0, new QTableWidgetItem(qs(rows[i].model)));
          compare_table_->setItem(i, 1, new QTableWidgetItem(num(rows[i].accuracy)));
          compare_table_->setItem(i, 2, new QTableWidgetItem(num(rows[i].prob)));
          compare_table_->setItem(i, 3, new QTableWidgetItem(qs(rows[i].note)));
        }
      });
}

void MainWindow::compareModels(int view, int layer) {
  QSignalBlocker b1(compare_view_), b2(compare_layer_);
  compare_view_->setCurrentIndex(view);
  compare_layer_->setValue(layer);
  refreshComparePlots();
}

void MainWindow::refreshComparePlots() {
  if (wb_->model_count() == 0) return;
  refreshCompare();
  const int n = std::min(wb_->model_count(), 4);
  while (static_cast<int>(compare_plots_.size()) < n) {
    auto* p = new PlotView(QStringLiteral("compare-%1").arg(compare_plots_.size()));
    p->setProvenance([this] { return wb_->provenance(); });
    p->setDark(dark_);
    compare_plots_box_->layout()->addWidget(p);
    compare_plots_.push_back(p);
  }
  for (size_t i = 0; i < compare_plots_.size(); ++i) compare_plots_[i]->setVisible(static_cast<int>(i) < n);
  const int view = compare_view_->currentIndex(), layer = compare_layer_->value();
  for (int i = 0; i < n; ++i) {
    PlotView* plot = compare_plots_[i];
    if (view == 2) {
      job<std::pair<std::string, Embedding>>(tr("comparing embeddings"), [this, i](const Progress&) {
        return std::make_pair(wb_->summary(i).name, wb_->embeddings(0, 1, -1, i));
      }, [plot](const std::pair<std::string, Embedding>& r) {
        plot->showScatter(r.second.x, r.second.y, r.second.labels, "PC1", "PC2",
                          QStringLiteral("%1: locality %2").arg(qs(r.first)).arg(num(r.second.locality)));
      });
      continue;
    }
    job<Grid>(tr("comparing models"), [this, i, view, layer](const Progress& p) {
      const std::string name = wb_->summary(i).name;
      Grid g;
      if (view == 0) {
        auto ms = wb_->mixers(layer, i);
        if (ms.empty()) throw std::invalid_argument("'" + name + "' has no layer " + std::to_string(layer));
        std::string mixer = ms[0].first;
        for (const auto& [m, H] : ms)
          if (m == "attn") mixer = m;
        g = wb_->attention(layer, mixer, -1, true, i);
        g.title = name + ": L" + std::to_string(layer) + " " + mixer;
      } else {
        g = wb_->head_scores("aggregate", p, i);
        g.title = name + ": aggregate";
      }
      return g;
    }, [plot](const Grid& g) { plot->showGrid(g); });
  }
}

void MainWindow::runPluginAnalysis(const QString& name, const QString& options_json) {
  if (name.isEmpty()) return showError(tr("plugin analysis"), tr("no plugin analysis is loaded"));
  const std::string n = name.toStdString(), o = options_json.trimmed().toStdString();
  job<Grid>(tr("running %1").arg(name), [this, n, o](const Progress&) { return wb_->run_plugin_analysis(n, o); },
            [this](const Grid& g) {
              plugin_plot_->showGrid(g);
              plugin_label_->setText(qs(g.title));
            });
}

void MainWindow::runPatching() {
  const std::string site = site_combo_->currentText().toStdString(), role = role_combo_->currentText().toStdString();
  const bool aligned = patch_view_combo_->currentIndex() == 1;
  job<Grid>(tr("patching sweep"), [this, site, role, aligned](const Progress& p) {
    Grid by_position = wb_->patching(site, role, p);
    return aligned ? wb_->patching_aligned() : by_position;
  }, [this, aligned](const Grid& g) { showPatchingGrid(g, aligned); });
}

QString MainWindow::headsReading() const { return heads_reading_->text(); }

// The last patching sweep in the chosen view.
void MainWindow::showPatching() {
  if (!patch_plot_->hasData()) return;  // no sweep yet
  const bool aligned = patch_view_combo_->currentIndex() == 1;
  job<Grid>(tr("patching view"), [this, aligned](const Progress&) {
    return aligned ? wb_->patching_aligned() : wb_->patching_grid();
  }, [this, aligned](const Grid& g) { showPatchingGrid(g, aligned); });
}

void MainWindow::showPatchingGrid(const Grid& g, bool aligned) {
  patch_plot_->showGrid(g, true);
  patch_label_->setText(qs(g.title) + (aligned ? tr("; each example read at its own corrupted token, the tokens "
                                                    "around it and its readout (corrupted+1: a corrupted key's value)")
                                               : tr("; click a cell to apply that patch")));
}

void MainWindow::drawExamples(int n, int seed) {
  n_spin_->setValue(n);
  seed_spin_->setValue(seed);
  job<int>(tr("drawing examples"), [this, n, seed](const Progress&) { wb_->draw(n, seed, ""); return 0; },
           [this](const int&) { refreshAll(); });
}

QString MainWindow::outcomeText() const { return outcome_view_->toPlainText(); }

QStringList MainWindow::exportFigures(const QString& dir) {
  QDir().mkpath(dir);
  QStringList written;
  std::vector<PlotView*> plots = {attn_plot_, heads_plot_, patch_plot_, emb_plot_, cos_plot_, train_plot_, plugin_plot_};
  for (auto* p : compare_plots_) plots.push_back(p);
  for (auto* p : plots) {
    if (!p->hasData() || !p->isVisibleTo(this)) continue;
    const QString base = dir + "/" + p->objectName();
    try {
      p->exportTo(base + ".png", 1200, 800);
      p->exportTo(base + ".svg", 1200, 800);
      p->exportCsv(base + ".csv");
      written << base + ".png" << base + ".svg" << base + ".csv";
    } catch (const std::exception& e) {
      showError(tr("exporting %1").arg(p->objectName()), qs(e.what()));
    }
  }
  return written;
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
  if (patch_plot_->hasData()) {  // the patching sweep again, aligned to each example's corruption
    for (auto* d : docks_)
      if (d->objectName() == "dock-patching") {
        d->show();
        d->raise();
      }
    patch_view_combo_->setCurrentIndex(1);
    waitIdle();
    QApplication::processEvents();
    grab().save(dir + "/panel-patching-aligned.png");
    patch_view_combo_->setCurrentIndex(0);
    waitIdle();
  }
}

// ------------------------------------------------------------------ panel plugins

void MainWindow::loadPanels(QDockWidget* tabWith) {
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
    auto* d = dock(title, "plugin:" + title, w, Qt::TopDockWidgetArea);
    if (tabWith) tabifyDockWidget(tabWith, d);
    panels_.push_back({plugin, w, title});
    panel_report_ << tr("loaded panel: %1 (%2)").arg(title, f);
  }
  if (tabWith) tabWith->raise();  // the built-in view stays in front; plugin panels are one tab away
}

void MainWindow::refreshPanels() {
  for (const auto& p : panels_) {
    try {
      p.plugin->refresh(p.widget);
    } catch (const std::exception& e) {
      showError(tr("panel %1").arg(p.title), qs(e.what()));
    }
  }
}

QWidget* MainWindow::pluginPanel(const QString& title) const {
  for (const auto& p : panels_)
    if (p.title == title) return p.widget;
  return nullptr;
}

QString MainWindow::currentModel() const {
  return wb_->model_count() == 0 ? QString() : qs(wb_->summary().name);
}

int MainWindow::exampleCount() const { return wb_->model_count() == 0 ? 0 : wb_->example_count(); }

void MainWindow::runAnalysis(const QString& name, const QString& options,
                             std::function<void(const mechscope::PanelGrid&, const QString&)> done) {
  const std::string n = name.toStdString(), o = options.toStdString();
  job<std::pair<Grid, std::string>>(tr("running %1").arg(name), [this, n, o](const Progress&) {
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

QWidget* MainWindow::createGridView(const QString& name, QWidget* parent) {
  auto* pv = new PlotView(name, parent);
  pv->setProvenance([this] { return wb_->provenance(); });
  pv->setDark(dark_);
  return pv;
}

void MainWindow::showGrid(QWidget* gridView, const mechscope::PanelGrid& g) {
  auto* pv = qobject_cast<PlotView*>(gridView);
  if (!pv) return;
  pv->showGrid(Grid{g.rows, g.cols, g.values, g.row_labels, g.col_labels, g.title});
}

}  // namespace mechscope::app
