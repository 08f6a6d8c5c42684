// Widget tests of the workbench under QT_QPA_PLATFORM=offscreen: the real window, driven as a user would.
#include <sys/stat.h>

#include <set>

#include <QDir>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QFile>
#include <QLineEdit>
#include <QDockWidget>
#include <QListWidget>
#include <QComboBox>
#include <QPushButton>
#include <QSvgRenderer>
#include <QTableWidget>
#include <QTemporaryDir>
#include <QtTest/QtTest>
#include <qcustomplot.h>

#include "app/gridwindow.h"
#include "app/jobs.h"
#include "app/mainwindow.h"
#include "app/panels/analyses_panel.h"
#include "app/panels/attention_panel.h"
#include "app/panels/heads_panel.h"
#include "app/panels/compare_panel.h"
#include "app/panels/input_panel.h"
#include "app/panels/training_panel.h"
#include "app/plotview.h"
#include "tests/app/foreign_fixture.h"

using mechscope::app::MainWindow;

namespace {
// How long a test waits for the window's jobs: generous, since a demo's panels take tens of seconds on a loaded
// 2-core machine (MainWindow::waitIdle's own default is 60 s; ctest stops the whole test at 300 s).
constexpr int kIdleMs = 180000;

QString demo(const char* name) { return QStringLiteral(MECHSCOPE_MODELS_DIR "/%1.h5").arg(name); }

int rowOf(const mechscope::app::Grid& g, const std::string& label) {
  for (size_t i = 0; i < g.row_labels.size(); ++i)
    if (g.row_labels[i] == label) return static_cast<int>(i);
  return -1;
}

// The hybrid demo exported as a foreign model folder with a hand-made BPE tokenizer.json: "a" 5, "b" 6, "ab" 7
// (the one merge), " " 8.
bool folderWithHandTokenizer(const QString& dir) {
  mechscope::test::export_mamba_ssm_folder(demo("mqar-hybrid").toStdString(), dir.toStdString());
  QFile tok(QDir(dir).filePath("tokenizer.json"));
  if (!tok.open(QIODevice::WriteOnly)) return false;
  tok.write(R"({"model": {"type": "BPE", "vocab": {"a": 5, "b": 6, "ab": 7, " ": 8}, "merges": ["a b"]}})");
  return true;
}

// The window shown quietly at 1500 x 950 with these files opened one after another, each one's jobs done.
bool showWith(MainWindow& w, const QStringList& files) {
  w.setQuiet(true);
  w.resize(1500, 950);
  w.show();
  for (const QString& f : files) {
    w.openFile(f);
    if (!w.waitIdle(kIdleMs)) return false;
  }
  return true;
}

// A test's own calls into the workbench, between jobs: the window's guard lifted while it lives.
struct Direct {
  explicit Direct(MainWindow& w) : wb(w.workbench()) { wb.guard_thread(std::thread::id()); }
  ~Direct() { wb.guard_thread(std::this_thread::get_id()); }
  mechscope::app::Workbench& wb;
};

QPushButton* button(QWidget& w, const QString& text) {
  for (auto* b : w.findChildren<QPushButton*>())
    if (b->text() == text) return b;
  return nullptr;
}
}  // namespace

class AppTest : public QObject {
  Q_OBJECT
 private slots:
  void initTestCase() {
    qputenv("MECHSCOPE_DEFAULT_LAYOUT", "1");
    // Issue 26: no model computation on the window's thread. Every window of these tests refuses engine calls made
    // on its thread (Workbench::guard_thread): a panel that computed outside a job fails here. The tests' own direct
    // calls lift the guard for their scope (Direct).
    qputenv("MECHSCOPE_GUARD_UI_THREAD", "1");
  }

  // Issue 26: after a model switch the session has no ablations (Outcome says none), and the Heads panel's line
  // said the previous model's heads were still ablated.
  void headsPanelForgetsAblationsOnModelSwitch() {
    MainWindow w;
    QVERIFY(showWith(w, {demo("mqar-attn"), demo("ar-attn")}));
    QCOMPARE(w.workbench().model_count(), 2);
    QTest::qWait(400);  // the default layout is arranged 200 ms after the first show
    auto* left = w.findChild<QDockWidget*>("dock-model");
    QVERIFY(left);
    const int left_width = left->width();
    w.ablateHeads({"L0.attn.H0"});
    QVERIFY(w.waitIdle(kIdleMs));
    QCOMPARE(w.workbench().ablated(), std::vector<std::string>{"L0.attn.H0"});
    QVERIFY2(w.headsAblatedText().contains("L0.attn.H0"), qPrintable(w.headsAblatedText()));
    auto* models = w.findChild<QListWidget*>();
    QVERIFY(models);
    const int other = w.workbench().current() == 0 ? 1 : 0;
    models->setCurrentRow(other);
    QVERIFY(w.waitIdle(kIdleMs));
    QCOMPARE(w.workbench().current(), other);
    QVERIFY(w.workbench().ablated().empty());
    QVERIFY2(w.outcomeText().contains("interventions: none"), qPrintable(w.outcomeText()));
    QVERIFY2(!w.headsAblatedText().contains("L0.attn.H0") && w.headsAblatedText().contains("no head ablated"),
             qPrintable(w.headsAblatedText()));

    // Issue 26: the window grew with each refresh (2249 px after Compare) and could not be narrowed to a 1280 x 800
    // screen: the panels' rows of controls set its minimum width. Now they scroll inside their docks.
    for (int view : {0, 1, 2}) {
      w.comparePanel().compare(view, 1);
      QVERIFY(w.waitIdle(kIdleMs));
    }
    // The columns keep their widths while panels refresh (without a central widget the left one grew at every
    // relayout, taking the big views' width).
    QCoreApplication::processEvents();
    QVERIFY2(std::abs(left->width() - left_width) <= 2, qPrintable(QString("%1 -> %2").arg(left_width).arg(left->width())));
    w.resize(1280, 800);
    QCoreApplication::processEvents();
    QVERIFY2(w.width() <= 1280 && w.height() <= 800, qPrintable(QString("%1 x %2").arg(w.width()).arg(w.height())));
    QVERIFY2(w.minimumSizeHint().width() <= 1280, qPrintable(QString::number(w.minimumSizeHint().width())));
    w.resetLayout();  // View > Reset layout: the default docks, at most 1500 x 950 and within the screen
    QCoreApplication::processEvents();
    QVERIFY(w.width() <= 1500 && w.height() <= 950);
    for (auto* d : w.findChildren<QDockWidget*>()) QVERIFY(!d->isFloating());
  }

  void openAblatePatchExport() {
    MainWindow w;
    QVERIFY(showWith(w, {demo("mqar-hybrid")}));
    QCOMPARE(w.workbench().model_count(), 1);
    QVERIFY2(w.lastError().isEmpty(), qPrintable(w.lastError()));
    QVERIFY(w.headsPlot()->hasData());
    QVERIFY(w.attentionPlot()->hasData());
    QVERIFY(w.outcomeText().contains("interventions: none"));
    // The heads panel states the issue's reading: on the hybrid its attention head tops both scores.
    QVERIFY2(w.headsReading().contains("top aggregate head L1.attn.H0") &&
                 w.headsReading().contains("most causal L1.attn.H0"),
             qPrintable(w.headsReading()));

    // Click the attention head of layer 1 in the grid: it is ablated, the outcome changes.
    const int r = rowOf(w.headsPlot()->grid(), "L1 attn");
    QVERIFY(r >= 0);
    QTest::mouseClick(w.headsPlot()->plot(), Qt::LeftButton, Qt::NoModifier, w.headsPlot()->cellCenter(r, 0));
    QVERIFY(w.waitIdle(kIdleMs));
    QCOMPARE(w.workbench().ablated(), std::vector<std::string>{"L1.attn.H0"});
    QVERIFY2(w.outcomeText().contains("zero ablation of L1.attn.H0"), qPrintable(w.outcomeText()));
    const auto after = Direct(w).wb.outcome(true), before = Direct(w).wb.outcome(false);
    QVERIFY(after.accuracy < before.accuracy - 0.5);  // this head carries the retrieval (tests/demo/test_science)
    qInfo("outcome after a click: %.0f ms (64 examples)", w.lastOutcomeMs());

    // Shift-click adds a Mamba2 head to the set; the clear button removes all.
    const int s = rowOf(w.headsPlot()->grid(), "L0 ssm");
    QTest::mouseClick(w.headsPlot()->plot(), Qt::LeftButton, Qt::ShiftModifier, w.headsPlot()->cellCenter(s, 2));
    QVERIFY(w.waitIdle(kIdleMs));
    QCOMPARE(w.workbench().ablated().size(), size_t(2));
    QPushButton* clear = button(w, "Clear ablations");
    QVERIFY(clear);
    clear->click();
    QVERIFY(w.waitIdle(kIdleMs));
    QVERIFY(w.workbench().ablated().empty());

    // A patching sweep, then a click on a cell.
    w.runPatching();
    QVERIFY(w.waitIdle(120000));
    QVERIFY2(w.lastError().isEmpty(), qPrintable(w.lastError()));
    QVERIFY(w.patchingPlot()->hasData());
    QCOMPARE(w.patchingPlot()->grid().rows, 2);
    QTest::mouseClick(w.patchingPlot()->plot(), Qt::LeftButton, Qt::NoModifier, w.patchingPlot()->cellCenter(1, 31));
    QVERIFY(w.waitIdle(kIdleMs));
    // The aligned view: rows x anchors, the same rows; a click explains instead of patching; back to positions.
    const int positions = w.patchingPlot()->grid().cols;
    w.patchingViewCombo()->setCurrentIndex(1);
    QVERIFY(w.waitIdle(kIdleMs));
    QVERIFY2(w.lastError().isEmpty(), qPrintable(w.lastError()));
    QCOMPARE(w.patchingPlot()->grid().rows, 2);
    QCOMPARE(w.patchingPlot()->grid().cols, 6);
    QCOMPARE(w.patchingPlot()->grid().col_labels[2], std::string("corrupted+1"));
    QTest::mouseClick(w.patchingPlot()->plot(), Qt::LeftButton, Qt::NoModifier, w.patchingPlot()->cellCenter(1, 2));
    QVERIFY(w.waitIdle(kIdleMs));
    QVERIFY2(w.lastError().isEmpty(), qPrintable(w.lastError()));
    w.patchingViewCombo()->setCurrentIndex(0);
    QVERIFY(w.waitIdle(kIdleMs));
    QCOMPARE(w.patchingPlot()->grid().cols, positions);

    // Every export format, checked by its header or parser.
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    for (auto* plot : {w.attentionPlot(), w.headsPlot(), w.patchingPlot(), w.embeddingPlot()}) {
      QVERIFY(plot->hasData());
      const QString base = dir.filePath(plot->objectName());
      plot->exportTo(base + ".png", 800, 600);
      plot->exportTo(base + ".pdf", 800, 600);
      plot->exportTo(base + ".svg", 800, 600);
      plot->exportCsv(base + ".csv");
      QFile png(base + ".png"), pdf(base + ".pdf"), csv(base + ".csv");
      QVERIFY(png.open(QIODevice::ReadOnly) && png.read(8) == QByteArray("\x89PNG\r\n\x1a\n", 8));
      QVERIFY(pdf.open(QIODevice::ReadOnly) && pdf.read(5) == QByteArray("%PDF-"));
      QVERIFY(QSvgRenderer(base + ".svg").isValid());
      QVERIFY(csv.open(QIODevice::ReadOnly));
      const QByteArray first = csv.readLine();  // the figure's own record: its view and which run it shows
      QVERIFY2(first.startsWith("# {") && first.contains("\"figure\":{") && first.contains("\"run\":"), first.constData());
      QImage img(base + ".png");
      QCOMPARE(img.size(), QSize(800, 600));
      QVERIFY(img.text("Description").contains("checkpoint_sha256"));
    }
    QVERIFY_EXCEPTION_THROWN(w.attentionPlot()->exportTo(dir.filePath("x.bmp"), 100, 100), std::invalid_argument);
    QVERIFY(!QFile::exists(dir.filePath("x.bmp")));
    QVERIFY(QDir(dir.path()).entryList({"*.tmp-*"}).isEmpty());  // every export's temporary renamed or removed

    // A second model: compare on the same examples, switch back and forth.
    w.openFile(demo("mqar-attn"));
    QVERIFY(w.waitIdle(kIdleMs));
    QCOMPARE(w.workbench().model_count(), 2);
    const auto rows = Direct(w).wb.compare();
    QCOMPARE(rows.size(), size_t(2));
    QVERIFY(rows[0].accuracy > 0.9 && rows[1].accuracy > 0.9);
    for (int view : {0, 1, 2}) {  // side by side: attention of layer 1, head grids, embeddings
      w.comparePanel().compare(view, 1);
      QVERIFY(w.waitIdle(kIdleMs));
      QVERIFY2(w.lastError().isEmpty(), qPrintable(w.lastError()));
      QCOMPARE(w.comparePanel().comparePlots().size(), size_t(2));
      for (auto* p : w.comparePanel().comparePlots()) QVERIFY(p->hasData());
      if (view == 0)  // each plot says which model it shows
        for (auto* p : w.comparePanel().comparePlots())
          QVERIFY2(p->grid().title.rfind("mqar-hybrid: L1", 0) == 0 || p->grid().title.rfind("mqar-attn: L1", 0) == 0,
                   p->grid().title.c_str());
    }

    // A plugin's analysis in the Plugins panel (attention rollout loads from the build tree's plugin folder).
    w.analysesPanel().run("attention-rollout", "");
    QVERIFY(w.waitIdle(kIdleMs));
    QVERIFY2(w.lastError().isEmpty(), qPrintable(w.lastError()));
    QVERIFY(w.analysesPanel().plot()->hasData());
    QCOMPARE(w.analysesPanel().plot()->grid().rows, w.analysesPanel().plot()->grid().cols);
    w.analysesPanel().run("attention-rollout", "{\"example\": 999}");
    QVERIFY(w.waitIdle(kIdleMs));
    QVERIFY(w.lastError().contains("example"));
    // Core's own analyses are in the same registry: head scores (one value per head), and the attention maps of the
    // current example; an option the analysis does not declare is refused by name.
    const int heads = static_cast<int>(w.workbench().summary().heads.size());
    w.analysesPanel().run("head-scores", "");
    QVERIFY(w.waitIdle(kIdleMs));
    QVERIFY2(w.analysesPanel().plot()->grid().title.find("head_scores/gather") != std::string::npos,
             w.analysesPanel().plot()->grid().title.c_str());
    QCOMPARE(w.analysesPanel().plot()->grid().rows * w.analysesPanel().plot()->grid().cols, heads);
    w.analysesPanel().run("attention", "{\"layer\": 1}");
    QVERIFY(w.waitIdle(kIdleMs));
    QCOMPARE(w.analysesPanel().plot()->grid().rows, static_cast<int>(Direct(w).wb.tokens().size()));
    w.analysesPanel().run("attention", "{\"layr\": 1}");
    QVERIFY(w.waitIdle(kIdleMs));
    QVERIFY2(w.lastError().contains("unknown option 'layr'") && w.lastError().contains("did you mean layer"),
             qPrintable(w.lastError()));
    w.setQuiet(true);

    // A workspace round trip.
    const QString ws = dir.filePath("ws.json");
    w.patchingViewCombo()->setCurrentIndex(1);
    QVERIFY(w.waitIdle(kIdleMs));
    w.saveWorkspace(ws);
    MainWindow w2;
    w2.setQuiet(true);
    w2.openWorkspace(ws);
    QVERIFY(w2.waitIdle(kIdleMs));
    QCOMPARE(w2.workbench().model_count(), 2);
    QCOMPARE(w2.workbench().current(), w.workbench().current());
    QCOMPARE(w2.patchingViewCombo()->currentIndex(), 1);  // the patching view travels with the workspace
  }

  void trainFromTheWorkbench() {
    MainWindow w;
    w.setQuiet(true);
    QTemporaryDir dir;
    const QString out = dir.filePath("run.h5");
    w.trainingPanel().setSettings("transformer", R"({"d_model": 32, "n_layer": 1, "attn_cfg": {"num_heads": 2, "head_dim": 16, "rotary_emb_dim": 16}})",
                          R"({"task": "ar", "num_pairs": 3, "num_keys": 8, "num_values": 8})", 60, 16, out);
    QVERIFY(w.trainingPanel().start());
    QVERIFY(!w.trainingPanel().start());  // one run at a time
    QTRY_VERIFY_WITH_TIMEOUT(!w.trainingPanel().running(), 120000);
    QVERIFY2(w.lastError().isEmpty(), qPrintable(w.lastError()));
    QVERIFY(QFile::exists(out));
    QVERIFY(w.trainingPanel().plot()->hasData());
    QVERIFY(w.waitIdle(kIdleMs));
    QCOMPARE(w.workbench().model_count(), 1);  // the finished run opened in the workbench
    QVERIFY(w.workbench().summary().has_task);
    // A bad task is an error message, not a crash; stopping a run saves it.
    w.trainingPanel().setSettings("transformer", "{}", R"({"task": "nosuch"})", 10, 4, dir.filePath("bad.h5"));
    QVERIFY(w.trainingPanel().start());
    QTRY_VERIFY_WITH_TIMEOUT(!w.trainingPanel().running(), 60000);
    QVERIFY(w.lastError().contains("nosuch"));
    w.trainingPanel().setSettings("mamba1", R"({"d_model": 32, "n_layer": 1})",
                          R"({"task": "ar", "num_pairs": 3, "num_keys": 8, "num_values": 8})", 100000, 8, dir.filePath("long.h5"));
    QVERIFY(w.trainingPanel().start());
    QTest::qWait(1500);
    w.trainingPanel().stop();
    QTRY_VERIFY_WITH_TIMEOUT(!w.trainingPanel().running(), 60000);
    QVERIFY(QFile::exists(dir.filePath("long.h5")));
  }

  void opensAForeignFolder() {
    // A mamba_ssm folder (config.json + model.safetensors) opens like a native checkpoint and gives its outcome.
    QTemporaryDir dir;
    mechscope::test::export_mamba_ssm_folder(demo("mqar-hybrid").toStdString(), dir.path().toStdString());
    MainWindow w;
    w.setQuiet(true);
    w.openFile(dir.path());
    QVERIFY(w.waitIdle(kIdleMs));
    QVERIFY2(w.lastError().isEmpty(), qPrintable(w.lastError()));
    QCOMPARE(w.workbench().model_count(), 1);
    QVERIFY2(w.outcomeText().contains("no task attached"), qPrintable(w.outcomeText()));
    // Its config.json with a wrong architecture is an error message, and the app goes on.
    QFile cfg(dir.filePath("config.json"));
    QVERIFY(cfg.open(QIODevice::WriteOnly | QIODevice::Truncate));
    cfg.write(R"({"model_type": "t5"})");
    cfg.close();
    w.openFile(dir.path());
    QVERIFY(w.waitIdle(kIdleMs));
    QVERIFY2(w.lastError().contains("t5"), qPrintable(w.lastError()));
    QCOMPARE(w.workbench().model_count(), 1);
  }

  void typedTextThroughTheTokenizer() {
    // A model folder with a tokenizer.json (a hand-made BPE whose merge makes "ab a" ids 7, 8, 5): the text box
    // tokenizes, and the tokens read as text. A model without one says so.
    QTemporaryDir dir;
    QVERIFY(folderWithHandTokenizer(dir.path()));
    MainWindow w;
    w.setQuiet(true);
    w.show();
    w.openFile(dir.path());
    QVERIFY(w.waitIdle(kIdleMs));
    QVERIFY2(w.lastError().isEmpty(), qPrintable(w.lastError()));
    QLineEdit* text = nullptr;
    for (auto* e : w.findChildren<QLineEdit*>())
      if (e->placeholderText().startsWith("or type text")) text = e;
    QVERIFY(text);
    text->setText("ab a");
    QPushButton* use = button(w, "Use text");
    QVERIFY(use);
    use->click();
    QVERIFY(w.waitIdle(kIdleMs));
    // Views that need answers say so inside their panel (issue 26: a modal error came up at each typed input).
    QVERIFY2(w.lastError().isEmpty(), qPrintable(w.lastError()));
    QVERIFY2(w.headsReading().contains("need examples with answers"), qPrintable(w.headsReading()));
    QVERIFY(!w.headsPlot()->hasData());
    QCOMPARE(Direct(w).wb.tokens(), (std::vector<std::string>{"ab", "\u2423", "a"}));  // a space shows as an open box
    QVERIFY(Direct(w).wb.has_tokenizer());
    // Generate: the first new token is the model's top prediction after the text (Outcome's), and a longer run
    // begins with it.
    const std::string top = Direct(w).wb.outcome(false).top.at(0).first;
    const mechscope::app::Generation one = Direct(w).wb.generate(1, "");
    QCOMPARE(one.tokens, std::vector<std::string>{top});
    QCOMPARE(one.prompt_tokens, 3);
    w.inputPanel().generate(4, "");
    QVERIFY(w.waitIdle(kIdleMs));
    const mechscope::app::Generation four = Direct(w).wb.generate(4, "");
    QCOMPARE(four.tokens.size(), size_t{4});
    QCOMPARE(four.tokens.front(), top);
    QCOMPARE(w.inputPanel().generated(), QString::fromStdString(four.text));
    w.openFile(demo("mqar-attn"));  // a checkpoint without a tokenizer becomes the current model
    QVERIFY(w.waitIdle(kIdleMs));
    use->click();
    QVERIFY(w.waitIdle(kIdleMs));
    QVERIFY2(w.lastError().contains("no tokenizer.json"), qPrintable(w.lastError()));
  }

  void datasetThroughPatchingAndGaDiscovery() {
    // A prompt dataset read by the Input panel through the model's tokenizer (the hand-made BPE: "ab a ab" is ids
    // 7 8 5 8 7, the answer " " id 8): its lines are the examples, patching corrupts them with the lines' corrupted
    // prompts, and the Analyses panel shows ga-discovery's per-head results and its summary. Typed text replaces
    // the dataset.
    QTemporaryDir dir;
    QVERIFY(folderWithHandTokenizer(dir.path()));
    QFile ds(dir.filePath("prompts.jsonl"));
    QVERIFY(ds.open(QIODevice::WriteOnly));
    for (const char* q : {"ab", "b", "a"})
      ds.write(QStringLiteral(R"({"clean": "ab a %1", "corrupted": "ab b %1", "answer": " ", "wrong": ["a"], )"
                              R"("key": [0, 2], "value": [3, 4]})" "\n").arg(q).toUtf8());
    ds.close();
    MainWindow w;
    w.setQuiet(true);
    w.show();
    w.openFile(dir.path());
    QVERIFY(w.waitIdle(kIdleMs));
    QLineEdit* path = nullptr;
    for (auto* e : w.findChildren<QLineEdit*>())
      if (e->placeholderText().startsWith("or a prompt dataset")) path = e;
    QVERIFY(path);
    path->setText(dir.filePath("prompts.jsonl"));
    QPushButton* load = button(w, "Load");
    QVERIFY(load);
    load->click();
    QVERIFY(w.waitIdle(kIdleMs));
    QVERIFY2(w.lastError().isEmpty(), qPrintable(w.lastError()));
    mechscope::app::Workbench& wb = w.workbench();
    QCOMPARE(wb.example_count(), 3);
    QVERIFY(!wb.dataset().empty());
    QCOMPARE(Direct(w).wb.tokens(), (std::vector<std::string>{"ab", "\u2423", "a", "\u2423", "ab"}));
    QCOMPARE(Direct(w).wb.roles()[0], std::string("key"));
    QCOMPARE(Direct(w).wb.targets()[4], std::string(" "));
    QCOMPARE(Direct(w).wb.corruptible_roles(), (std::vector<std::string>{"prompt"}));
    // Patching runs the lines' corrupted prompts; on these prompts (not the demo's task) neither run gives the answer
    // any probability, which patching reports.
    try {
      Direct(w).wb.patching("resid_pre", "", {});
      QFAIL("patching kept examples the model does not solve");
    } catch (const std::invalid_argument& e) {
      QVERIFY2(std::string(e.what()).find("p(answer | clean)") != std::string::npos, e.what());
    }
    w.analysesPanel().run("ga-discovery", "");
    QVERIFY(w.waitIdle(kIdleMs));
    QVERIFY2(w.lastError().isEmpty(), qPrintable(w.lastError()));
    const QString results = w.analysesPanel().results().join(" ");
    for (const char* r : {"ga_discovery/causal", "ga_discovery/gather", "ga_discovery/aggregate",
                          "ga_discovery/pruned_accuracy"})
      QVERIFY2(results.contains(r), qPrintable(results));
    QVERIFY2(w.analysesPanel().summary().contains("causal"), qPrintable(w.analysesPanel().summary()));
    w.analysesPanel().show(static_cast<int>(w.analysesPanel().results().indexOf(QRegularExpression(".*pruned_accuracy"))));
    QVERIFY(w.analysesPanel().plot()->hasData());
    // Another model (the same demo with a tokenizer without the merge) made current reads the same file through
    // its own tokenizer: "ab a ab" becomes a b ' ' a ' ' a b.
    QTemporaryDir other;
    QVERIFY(folderWithHandTokenizer(other.path()));
    QFile plain(QDir(other.path()).filePath("tokenizer.json"));
    QVERIFY(plain.open(QIODevice::WriteOnly | QIODevice::Truncate));
    plain.write(R"({"model": {"type": "BPE", "vocab": {"a": 5, "b": 6, " ": 8}, "merges": []}})");
    plain.close();
    w.openFile(other.path());
    QVERIFY(w.waitIdle(kIdleMs));
    QCOMPARE(wb.model_count(), 2);
    QVERIFY(!wb.dataset().empty());
    QCOMPARE(Direct(w).wb.tokens(0), (std::vector<std::string>{"a", "b", "\u2423", "a", "\u2423", "a", "b"}));
    // A line the dataset reader refuses names its line; the examples stay.
    QFile bad(dir.filePath("bad.jsonl"));
    QVERIFY(bad.open(QIODevice::WriteOnly));
    bad.write("{\"clean\": \"ab\", \"answer\": \" \"}\n{\"clean\": \"ab\"}\n");
    bad.close();
    w.inputPanel().loadDataset(dir.filePath("bad.jsonl"), 8);
    QVERIFY(w.waitIdle(kIdleMs));
    QVERIFY2(w.lastError().contains("line 2"), qPrintable(w.lastError()));
    QCOMPARE(wb.example_count(), 3);
    Direct(w).wb.set_text("ab");  // typed text replaces the dataset's examples
    QVERIFY(wb.dataset().empty());
    QCOMPARE(wb.example_count(), 1);
  }

  void panelPlugins() {
    // The in-tree Residual stream panel loads from the build's plugin folder; a panel built for another interface
    // version and one whose createPanel throws are reported and skipped; the workbench runs on.
    qputenv("MECHSCOPE_PLUGIN_PATH", BAD_PANELS);
    MainWindow w;
    w.setQuiet(true);
    qunsetenv("MECHSCOPE_PLUGIN_PATH");
    const QString report = w.panelReport().join("\n");
    QVERIFY2(report.contains("loaded panel: Residual stream"), qPrintable(report));
    QVERIFY2(report.contains("built against panel interface io.mechscope.PanelPlugin/999; this workbench provides "
                             "io.mechscope.PanelPlugin/1"), qPrintable(report));
    QVERIFY2(report.contains("createPanel threw: no panel today"), qPrintable(report));
    QWidget* panel = w.pluginPanel("Residual stream");
    QVERIFY(panel);
    QVERIFY(!w.pluginPanel("Throwing"));
    w.openFile(demo("mqar-attn"));
    QVERIFY(w.waitIdle(kIdleMs));
    QVERIFY2(w.lastError().isEmpty(), qPrintable(w.lastError()));
    auto* view = panel->findChild<mechscope::app::PlotView*>();
    QVERIFY(view);
    QVERIFY(w.waitIdle(kIdleMs));
    QVERIFY(view->hasData());
    QCOMPARE(view->grid().rows, 3);  // into L0, into L1, out
    // Switching the measure re-runs the analysis: one row per block.
    auto* measure = panel->findChild<QComboBox*>();
    QVERIFY(measure);
    measure->setCurrentIndex(1);
    QVERIFY(w.waitIdle(kIdleMs));
    QCOMPARE(view->grid().rows, 2);
  }

  // Issue 26: the attention map, patching and the head grid ran clean while their exports listed the active
  // ablations. Now each figure's title and record say which run it shows, and the map can show the ablated run.
  void figuresSayWhichRunTheyShow() {
    MainWindow w;
    QVERIFY(showWith(w, {demo("mqar-hybrid")}));
    auto& wb = w.workbench();
    // Layer 1's attention reads layer 0's output: ablating a layer-0 Mamba2 head changes its map.
    w.ablateHeads({"L0.ssm.H1"});
    QVERIFY(w.waitIdle(kIdleMs));
    QJsonObject view{{"layer", 1}, {"mixer", "attn"}, {"head", 0}, {"normalise", false}};
    w.attentionPanel().restore(view);
    w.attentionPanel().changed(mechscope::app::Change::Models);
    QVERIFY(w.waitIdle(kIdleMs));
    const auto clean = w.attentionPlot()->grid();
    QVERIFY2(clean.title.find("(clean run)") != std::string::npos, clean.title.c_str());
    auto record = [](const mechscope::app::PlotView* p) {
      return QJsonDocument::fromJson(QByteArray::fromStdString(p->record())).object();
    };
    QCOMPARE(record(w.attentionPlot())["run"].toString(), QString("clean"));
    QVERIFY(!record(w.attentionPlot()).contains("ablated"));
    QCOMPARE(record(w.attentionPlot())["figure"].toObject()["layer"].toInt(), 1);
    w.attentionPanel().setRun(1);  // with the ablations
    QVERIFY(w.waitIdle(kIdleMs));
    const auto ablated = w.attentionPlot()->grid();
    QVERIFY2(ablated.title.find("with the ablations") != std::string::npos, ablated.title.c_str());
    QCOMPARE(record(w.attentionPlot())["ablated"].toArray().first().toString(), QString("L0.ssm.H1"));
    w.attentionPanel().setRun(2);  // their difference: ablated minus clean, cell by cell, and not all zero
    QVERIFY(w.waitIdle(kIdleMs));
    const auto diff = w.attentionPlot()->grid();
    double largest = 0;
    for (size_t i = 0; i < diff.values.size(); ++i)
      if (std::isfinite(diff.values[i])) {
        QVERIFY(std::abs(diff.values[i] - (ablated.values[i] - clean.values[i])) < 1e-6);  // float32 subtraction
        largest = std::max(largest, std::abs(diff.values[i]));
      }
    QVERIFY2(largest > 1e-4, qPrintable(QString::number(largest)));
    // An ablation after the layer leaves its map exactly as it was (the causal order of the layers).
    const auto down = Direct(w).wb.attention(0, "ssm", 0, false, -1, mechscope::app::MapRun::Difference);
    for (double v : down.values) QVERIFY(!std::isfinite(v) || v == 0.0);
    QTemporaryDir dir;
    w.attentionPlot()->exportCsv(dir.filePath("a.csv"));
    QFile csv(dir.filePath("a.csv"));
    QVERIFY(csv.open(QIODevice::ReadOnly));
    const QByteArray first = csv.readLine();
    QVERIFY2(first.contains("\"ablated\":[\"L0.ssm.H1\"]") && first.contains("\"map\":\"difference\"") &&
             first.contains("checkpoint_sha256"), first.constData());
    // Patching runs clean: its title says so while an ablation is active, and its record lists none.
    w.runPatching();
    QVERIFY(w.waitIdle(kIdleMs));
    QVERIFY2(w.patchingPlot()->grid().title.find("clean run") != std::string::npos, w.patchingPlot()->grid().title.c_str());
    QVERIFY(!record(w.patchingPlot()).contains("ablated"));
    // A clicked cell is marked, and its outcome reaches the Outcome panel.
    QTest::mouseClick(w.patchingPlot()->plot(), Qt::LeftButton, Qt::NoModifier, w.patchingPlot()->cellCenter(1, 31));
    QVERIFY(w.waitIdle(kIdleMs));
    int marks = 0;
    for (int i = 0; i < w.patchingPlot()->plot()->itemCount(); ++i)
      marks += qobject_cast<QCPItemText*>(w.patchingPlot()->plot()->item(i)) != nullptr;
    QCOMPARE(marks, 1);
    QVERIFY2(w.outcomeText().contains("patched L1 at 31"), qPrintable(w.outcomeText()));
    // Clearing the ablations: the map's run choice goes back to clean, and the titles lose the note.
    w.ablateHeads({});
    QVERIFY(w.waitIdle(kIdleMs));
    QVERIFY(w.attentionPlot()->grid().title.find("ablat") == std::string::npos);
    QVERIFY(w.patchingPlot()->grid().title.find("clean run") == std::string::npos);
  }

  // Issue 26: keyboard navigation of the head grid, and undo / redo of the ablations.
  void keyboardAndUndo() {
    MainWindow w;
    QVERIFY(showWith(w, {demo("mqar-hybrid")}));
    auto* grid = w.headsPlot();
    grid->setFocus();
    QCoreApplication::processEvents();
    QCOMPARE(grid->focusCell(), QPoint(0, 0));
    QTest::keyClick(grid, Qt::Key_Right);
    QTest::keyClick(grid, Qt::Key_Right);
    QCOMPARE(grid->focusCell(), QPoint(2, 0));
    const std::string first = grid->grid().cell_label(0, 2);
    // The focused head's card: its label, the score the grid shows, where it looks, its direct logit attribution.
    QVERIFY(w.waitIdle(kIdleMs));
    const QString card = w.headsPanel().cardText();
    QVERIFY2(card.contains(QString::fromStdString(first)) &&
                 card.contains("aggregate " + QString::number(grid->grid().at(0, 2), 'f', 3)) &&
                 card.contains("implicit attention at the answer") && card.contains("direct logit attribution"),
             qPrintable(card));
    QTest::keyClick(grid, Qt::Key_Space);  // as a click: that head alone
    QVERIFY(w.waitIdle(kIdleMs));
    QCOMPARE(w.workbench().ablated(), std::vector<std::string>{first});
    QTest::keyClick(grid, Qt::Key_Down);
    QTest::keyClick(grid, Qt::Key_Home);
    const std::string second = grid->grid().cell_label(1, 0);
    QTest::keyClick(grid, Qt::Key_Space, Qt::ShiftModifier);  // as a shift-click: added to the set
    QVERIFY(w.waitIdle(kIdleMs));
    QCOMPARE(w.workbench().ablated(), (std::vector<std::string>{first, second}));
    QVERIFY2(grid->accessibleDescription().contains("score per head"), qPrintable(grid->accessibleDescription()));
    auto& heads = w.headsPanel();
    heads.undo();
    QVERIFY(w.waitIdle(kIdleMs));
    QCOMPARE(w.workbench().ablated(), std::vector<std::string>{first});
    heads.undo();
    QVERIFY(w.waitIdle(kIdleMs));
    QVERIFY(w.workbench().ablated().empty());
    QVERIFY(!heads.canUndo());
    heads.redo();
    heads.redo();
    QVERIFY(w.waitIdle(kIdleMs));
    QCOMPARE(w.workbench().ablated(), (std::vector<std::string>{first, second}));
    QCOMPARE(heads.history().size(), 3);  // none, the first head, both (now)
    // Search and sort: the top two by the shown score (aggregate), highest first; a name part; nothing.
    const QString top2 = heads.findHeads("top 2");
    QVERIFY2(top2.startsWith("2 head(s), by aggregate: L1.attn.H0 0.99"), qPrintable(top2));
    QVERIFY2(heads.findHeads("ssm").startsWith("4 head(s)"), qPrintable(heads.findHeads("ssm")));
    QVERIFY2(heads.findHeads("zzz").contains("no head matches"), qPrintable(heads.findHeads("zzz")));
    QVERIFY2(w.outcomeText().contains(QString::fromStdString(second)), qPrintable(w.outcomeText()));
  }

  // Issue 26: a workspace lost the attention layer and head, typed tokens and the task's changed parameters.
  void workspaceRestoresTheView() {
    QTemporaryDir dir;
    const QString ws = dir.filePath("ws.json"), ws2 = dir.filePath("ws2.json");
    QString edited;
    {
      MainWindow w;
      QVERIFY(showWith(w, {demo("mqar-attn4")}));
      QJsonObject view{{"layer", 1}, {"mixer", "attn"}, {"head", 2}, {"normalise", true}, {"mean_heads", false}};
      w.attentionPanel().restore(view);
      w.attentionPanel().changed(mechscope::app::Change::Models);
      QVERIFY(w.waitIdle(kIdleMs));
      Direct(w).wb.draw(12, 5, R"({"num_pairs": 8})");
      w.inputPanel().changed(mechscope::app::Change::Input);
      QVERIFY(w.waitIdle(kIdleMs));
      // Edit one token in the table: example 0's first token becomes its third (another key).
      QTableWidget* table = nullptr;  // Input's token table
      for (auto* t : w.findChildren<QTableWidget*>())
        if (t->horizontalHeaderItem(0) && t->horizontalHeaderItem(0)->text() == "token") table = t;
      QVERIFY(table && table->rowCount() > 3);
      const QString third = table->item(2, 0)->text();
      QVERIFY(third != table->item(0, 0)->text());
      table->item(0, 0)->setText(third);
      QVERIFY(w.waitIdle(kIdleMs));
      QVERIFY2(w.lastError().isEmpty(), qPrintable(w.lastError()));
      QCOMPARE(QString::fromStdString(Direct(w).wb.tokens(0)[0]), third);
      QCOMPARE(table->item(0, 0)->text(), third);  // the table redrawn from the edited example
      edited = third;
      w.saveWorkspace(ws);
      // The hint of the typed-tokens field is this model's own tokens, and the field takes it.
      QLineEdit* tokens = nullptr;
      for (auto* e : w.findChildren<QLineEdit*>())
        if (e->placeholderText().startsWith("or type tokens")) tokens = e;
      QVERIFY(tokens);
      const QString hint = tokens->placeholderText().section("e.g. ", 1);
      QVERIFY2(!hint.isEmpty() && !hint.contains("<bos>"), qPrintable(tokens->placeholderText()));
      tokens->setText(hint);
      button(w, "Use tokens")->click();
      QVERIFY(w.waitIdle(kIdleMs));
      QVERIFY2(w.lastError().isEmpty(), qPrintable(w.lastError()));
      QCOMPARE(static_cast<int>(Direct(w).wb.tokens().size()), static_cast<int>(hint.split(' ').size()));
      w.saveWorkspace(ws2);
      table->item(1, 0)->setText("nosuchtoken");  // refused by name; the cell shows the real token again
      QVERIFY(w.waitIdle(kIdleMs));
      QVERIFY2(w.lastError().contains("nosuchtoken"), qPrintable(w.lastError()));
      QVERIFY(table->item(1, 0)->text() != "nosuchtoken");
    }
    MainWindow w;
    w.setQuiet(true);
    w.openWorkspace(ws);
    QVERIFY(w.waitIdle(kIdleMs));
    QVERIFY2(w.lastError().isEmpty(), qPrintable(w.lastError()));
    QJsonObject saved;
    w.attentionPanel().save(saved);
    QCOMPARE(saved["layer"].toInt(), 1);
    QCOMPARE(saved["head"].toInt(), 2);
    QCOMPARE(saved["normalise"].toBool(), true);
    QVERIFY2(w.attentionPlot()->grid().title.find("L1 attn H2, min-max") == 0, w.attentionPlot()->grid().title.c_str());
    QCOMPARE(w.workbench().example_count(), 12);
    QCOMPARE(QString::fromStdString(Direct(w).wb.tokens(0)[0]), edited);  // the hand-edited token came back
    QVERIFY2(QString::fromStdString(w.workbench().task_json()).contains("\"num_pairs\":8"),
             w.workbench().task_json().c_str());
    MainWindow t;
    t.setQuiet(true);
    t.openWorkspace(ws2);
    QVERIFY(t.waitIdle(kIdleMs));
    QVERIFY2(t.lastError().isEmpty(), qPrintable(t.lastError()));
    QCOMPARE(t.workbench().example_count(), 1);
    QVERIFY(!t.workbench().has_targets());  // the typed tokens, not examples drawn again
    // A workspace from a newer MechScope is refused by name.
    QFile f(ws2);
    QVERIFY(f.open(QIODevice::ReadOnly));
    QJsonObject o = QJsonDocument::fromJson(f.readAll()).object();
    f.close();
    o["version"] = 99;
    QVERIFY(f.open(QIODevice::WriteOnly | QIODevice::Truncate));
    f.write(QJsonDocument(o).toJson());
    f.close();
    t.openWorkspace(ws2);
    QVERIFY(t.waitIdle(kIdleMs));
    QVERIFY2(t.lastError().contains("version 99"), qPrintable(t.lastError()));
  }

  // Issue 26: at start-up the last model opened became current (its panels computed after every other's), and the
  // status bar named the last job queued, not the one running.
  void startUpKeepsTheFirstModel() {
    MainWindow w;
    w.setQuiet(true);
    w.show();
    w.openFiles({demo("mqar-hybrid"), demo("mqar-attn"), demo("mqar-mamba2")});
    QVERIFY(w.waitIdle(kIdleMs));
    QCOMPARE(w.workbench().model_count(), 3);
    QCOMPARE(w.workbench().summary().name, std::string("mqar-hybrid"));
    auto* models = w.findChild<QListWidget*>();
    QVERIFY(models);
    QCOMPARE(models->count(), 3);  // the others are listed, ready to switch to
    QCOMPARE(models->currentRow(), 0);
    QVERIFY(w.headsPlot()->grid().title.find("score per head") != std::string::npos);
    QVERIFY2(w.outcomeText().contains("mqar-hybrid"), qPrintable(w.outcomeText()));
    mechscope::app::Jobs jobs([](const QString&, const QString&) {}, [] {});
    std::atomic<bool> release{false};
    std::atomic<bool> halfway{false};
    jobs.run<int>("first", [&](const mechscope::app::Progress& p) {
      QThread::msleep(300);
      p.report(0.5, "");  // half done after 0.3 s: about 0.3 s left
      halfway = true;
      while (!release) QThread::msleep(5);
      return 0;
    }, [](const int&) {});
    jobs.run<int>("second", [](const mechscope::app::Progress&) { return 0; }, [](const int&) {});
    QCOMPARE(jobs.label(), QString("first"));
    QTRY_VERIFY_WITH_TIMEOUT(halfway.load(), 10000);
    QVERIFY2(jobs.eta_s() > 0.2 && jobs.eta_s() < 5, qPrintable(QString::number(jobs.eta_s())));  // the status bar's estimate
    release = true;
    QTRY_COMPARE_WITH_TIMEOUT(jobs.running(), 0, 10000);
  }

  // Issue 26: a small-multiples grid of every head of a layer; a click on a tile shows that head alone.
  void smallMultiples() {
    MainWindow w;
    QVERIFY(showWith(w, {demo("mqar-attn4")}));
    QJsonObject view{{"layer", 0}, {"mixer", "attn"}, {"head", 0}, {"normalise", false}, {"mean_heads", false}};
    w.attentionPanel().restore(view);
    w.attentionPanel().changed(mechscope::app::Change::Models);
    QVERIFY(w.waitIdle(kIdleMs));
    w.attentionPanel().setEveryHead(true);
    QVERIFY(w.waitIdle(kIdleMs));
    const auto tiles = w.attentionPlot()->grid();
    const int L = static_cast<int>(Direct(w).wb.tokens().size());
    QCOMPARE(tiles.cols, 2 * (L + 1) - 1);  // four heads: two tiles across, two down, one empty line between
    QCOMPARE(tiles.rows, 2 * (L + 1) - 1);
    QVERIFY2(tiles.title.find("every head") != std::string::npos, tiles.title.c_str());
    for (int h = 0; h < 4; ++h) {  // each tile is that head's own map
      const auto one = Direct(w).wb.attention(0, "attn", h, false);
      const int r0 = (h / 2) * (L + 1), c0 = (h % 2) * (L + 1);
      for (int q = 0; q < L; q += 7)
        for (int k = 0; k <= q; k += 3) QCOMPARE(tiles.at(r0 + q, c0 + k), one.at(q, k));
      QCOMPARE(tiles.cell_label(r0 + L - 1, c0), "H" + std::to_string(h));
    }
    QVERIFY(std::isnan(tiles.at(L, 0)));  // the line between tiles
    emit w.attentionPlot()->cellClicked(L + 1 + 10, 5, Qt::NoModifier);  // a click in the bottom-left tile: H2
    QVERIFY(w.waitIdle(kIdleMs));
    QVERIFY2(w.attentionPlot()->grid().title.rfind("L0 attn H2", 0) == 0, w.attentionPlot()->grid().title.c_str());
  }

  // Issue 26: thinning took every k-th label, so at k = 2 every MQAR value token lost its label.
  void labelsThinWithoutLosingARole() {
    using mechscope::app::PlotView;
    QCOMPARE(PlotView::labelTicks(0, 5, 1), (std::vector<int>{0, 1, 2, 3, 4, 5}));
    for (int step : {2, 3, 4, 6}) {
      const auto ticks = PlotView::labelTicks(0, 63, step);
      std::set<int> mod2, mod3;
      for (size_t i = 0; i < ticks.size(); ++i) {
        mod2.insert(ticks[i] % 2);
        mod3.insert(ticks[i] % 3);
        if (i > 0) QVERIFY(ticks[i] - ticks[i - 1] >= step);  // never denser than fits
      }
      QVERIFY2(mod2.size() == 2 && mod3.size() == 3, qPrintable(QString("step %1").arg(step)));
      QVERIFY(static_cast<int>(ticks.size()) >= 64 / (step + 1));  // and not much sparser
    }
    // Panning keeps the labels on the same indices.
    const auto all = PlotView::labelTicks(0, 63, 2), part = PlotView::labelTicks(20, 40, 2);
    for (int i : part) QVERIFY(std::find(all.begin(), all.end(), i) != all.end());
  }

  // Issue 26: heatmaps in SVG and PDF were small embedded images that viewers blur; signed maps used a one-sided
  // colour ramp; axes and colour bars had no titles.
  void vectorHeatmapsAndSignedMaps() {
    mechscope::app::PlotView view("grid");
    view.resize(600, 400);
    view.show();
    mechscope::app::Grid g;
    g.rows = g.cols = 8;
    for (int i = 0; i < 64; ++i) g.values.push_back(i % 2 ? -2.0 + i / 32.0 : 0.5 * i / 64.0);
    g.x_title = "key position";
    g.y_title = "query position";
    g.value_title = "implicit attention";
    view.showGrid(g);
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    QCOMPARE(view.plot()->xAxis->label(), QString("key position"));
    auto* map = qobject_cast<QCPColorMap*>(view.plot()->plottable(0));
    QVERIFY(map);
    QCOMPARE(map->colorScale()->axis()->label(), QString("implicit attention"));
    QCOMPARE(map->dataRange().lower, -map->dataRange().upper);  // signed: centred on zero
    QTemporaryDir dir;
    auto images = [](const QString& path) {
      QFile f(path);
      if (!f.open(QIODevice::ReadOnly)) return -1;
      const QByteArray svg = f.readAll();
      return static_cast<int>(svg.count("<image"));
    };
    view.exportTo(dir.filePath("small.svg"), 600, 400);
    // Only the colour bar's ramp is an image; the 64 cells are vector shapes.
    QCOMPARE(images(dir.filePath("small.svg")), 1);
    view.exportTo(dir.filePath("small.pdf"), 600, 400);
    QFile pdf(dir.filePath("small.pdf"));
    QVERIFY(pdf.open(QIODevice::ReadOnly));
    QCOMPARE(pdf.readAll().count("/Subtype /Image"), 1);
    // Above 256 x 256 cells: one image of the cells in view at the drawn size (whole pixels per cell).
    g.rows = g.cols = 300;
    g.values.assign(300 * 300, 0.25);
    view.showGrid(g);
    view.exportTo(dir.filePath("big.svg"), 600, 400);
    QCOMPARE(images(dir.filePath("big.svg")), 2);
  }

  void headLabelsDoNotOverlap() {
    // A one-row grid of ten heads (ga-discovery's per-head scores): their names ("L0.ssm.H0") do not fit side by
    // side in a narrow plot, so they are rotated; two short labels stay horizontal.
    mechscope::app::PlotView view("grid");
    view.resize(500, 300);
    view.show();
    mechscope::app::Grid g;
    g.rows = 1;
    g.cols = 10;
    g.values.assign(10, 0.5);
    g.row_labels = {"causal"};
    for (int h = 0; h < 10; ++h) g.col_labels.push_back("L0.ssm.H" + std::to_string(h));
    view.showGrid(g);
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    QVERIFY(view.plot()->xAxis->tickLabelRotation() != 0);
    g.cols = 2;
    g.values.assign(2, 0.5);
    g.col_labels = {"H0", "H1"};
    view.showGrid(g);
    QCOMPARE(view.plot()->xAxis->tickLabelRotation(), 0.0);
  }

  void loneColumnAndRowGridsAreDrawn() {
    // One head per layer makes the heads grid a single column; QCPColorMap draws a lone cell with zero width,
    // so PlotView stores it as two half cells. Each cell must show its own colour, not the background.
    for (const bool column : {true, false}) {
      mechscope::app::PlotView view("grid");
      view.resize(400, 300);
      view.show();
      mechscope::app::Grid g;
      g.rows = column ? 2 : 1;
      g.cols = column ? 1 : 2;
      g.values = {0.0, 1.0};
      g.row_labels = column ? std::vector<std::string>{"L0", "L1"} : std::vector<std::string>{"L0"};
      g.col_labels = column ? std::vector<std::string>{"H0"} : std::vector<std::string>{"H0", "H1"};
      view.showGrid(g);
      QVERIFY(QTest::qWaitForWindowExposed(&view));
      const QImage img = view.plot()->toPixmap(view.plot()->width(), view.plot()->height()).toImage();
      const QPoint a = view.cellCenter(0, 0), b = column ? view.cellCenter(1, 0) : view.cellCenter(0, 1);
      const QColor ca = img.pixelColor(a), cb = img.pixelColor(b), bg = img.pixelColor(2, 2);
      QVERIFY2(ca != bg && cb != bg && ca != cb,
               qPrintable(QString("%1: %2 %3 background %4").arg(column ? "column" : "row", ca.name(), cb.name(), bg.name())));
    }
  }

  void badFilesShowAnError() {
    MainWindow w;
    w.setQuiet(true);
    w.openFile("/nonexistent/model.h5");
    QVERIFY(w.waitIdle(kIdleMs));
    QVERIFY2(w.lastError().contains("nonexistent"), qPrintable(w.lastError()));
    QTemporaryDir dir;
    QFile f(dir.filePath("text.h5"));
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write("not a checkpoint");
    f.close();
    w.openFile(f.fileName());
    QVERIFY(w.waitIdle(kIdleMs));
    QVERIFY2(w.lastError().contains("HDF5"), qPrintable(w.lastError()));
    QCOMPARE(w.workbench().model_count(), 0);
    w.openWorkspace(dir.filePath("text.h5"));
    QVERIFY(w.lastError().contains("not a MechScope workspace"));
    // A FIFO as a model or a workspace is refused at once (opening it would wait for a writer forever).
    const QString fifo = dir.filePath("pipe");
    QCOMPARE(::mkfifo(fifo.toLocal8Bit().constData(), 0600), 0);
    w.openWorkspace(fifo);
    QVERIFY2(w.lastError().contains("FIFO"), qPrintable(w.lastError()));
    w.openFile(fifo);
    QVERIFY(w.waitIdle(kIdleMs));
    QVERIFY2(w.lastError().contains("FIFO"), qPrintable(w.lastError()));
  }

  void cancelAndCloseDuringAJob() {
    MainWindow w;
    w.setQuiet(true);
    w.openFile(demo("mqar-mamba1"));
    QVERIFY(w.waitIdle(kIdleMs));
    w.runPatching();  // seconds of work: cancel it through the status bar button
    QTest::qWait(50);
    QPushButton* cancel = button(w, "Cancel");
    QVERIFY(cancel);
    cancel->click();
    QVERIFY(w.waitIdle(20000));
    w.runPatching();
    QTest::qWait(20);
    w.close();  // closing while a sweep runs: it stops at the next chunk, nothing crashes
  }

  // A collected grid (mechscope-cli collect's HDF5 table) opens in its own window: the table read back cell for cell,
  // and the default figure (accuracy by the numeric axis, a line per model, seeds averaged by hand below).
  void opensACollectedGrid() {
    QTemporaryDir dir;
    const std::string path = (dir.path() + "/collected.h5").toStdString();
    namespace grid = mechscope::grid;
    grid::Table t;
    t.columns = {"task", "model", "set.d_model", "seed", "accuracy_mean"};
    t.rows = {{"a", "attention", "32", "1", "0.5"}, {"a", "attention", "32", "2", "0.7"},
              {"b", "attention", "64", "1", "0.9"}, {"c", "mamba2", "32", "1", "0.2"},
              {"d", "mamba2", "64", "1", "0.4"},    {"d", "mamba2", "64", "2", ""}};
    grid::write_table_h5(path, t, {{"grid", "demo"}, {"axes", {"model", "set.d_model", "seed"}}});
    QVERIFY(grid::is_grid_table(path));
    QVERIFY(!grid::is_grid_table(demo("mqar-attn").toStdString()));
    const grid::TableFile back = grid::read_table_h5(path);
    QVERIFY(back.table.columns == t.columns);
    QVERIFY(back.table.rows == t.rows);
    mechscope::app::GridWindow g(path);
    QCOMPARE(QString::fromStdString(g.figure().x), QString("set.d_model"));
    QCOMPARE(QString::fromStdString(g.figure().y), QString("accuracy_mean"));
    QCOMPARE(QString::fromStdString(g.figure().series), QString("model"));
    const grid::Curves c = grid::curves_of(back.table, g.figure());
    QVERIFY(c.x == std::vector<double>({32, 64}));
    QCOMPARE(c.series.size(), size_t(2));
    QCOMPARE(c.series[0].first, std::string("model=attention"));
    QCOMPARE(c.series[0].second[0], 0.6);  // (0.5 + 0.7) / 2
    QCOMPARE(c.series[0].second[1], 0.9);
    QCOMPARE(c.series[1].second[1], 0.4);  // the empty cell is no row
    QVERIFY(g.plot()->hasData());
    QCOMPARE(g.table()->rowCount(), 6);
    QCOMPARE(g.table()->item(2, 1)->text(), QString("attention"));
    const grid::Curves both = grid::curves_of(back.table, {"seed", "accuracy_mean", "model,set.d_model"});
    QCOMPARE(both.series.size(), size_t(4));  // a line per model and width
    QCOMPARE(both.series[0].first, std::string("model=attention, set.d_model=32"));
    QCOMPARE(both.series[0].second[1], 0.7);  // seed 2
    g.setFigure({"seed", "accuracy_mean", "-"});  // one line over seeds
    QVERIFY(g.plot()->hasData());
    g.setFigure({"model", "accuracy_mean", ""});  // text along x: said, not drawn
    QVERIFY(!g.plot()->hasData());
    MainWindow w;  // File > Open on the table: a grid window, not a model
    w.setQuiet(true);
    w.openFile(QString::fromStdString(path));
    QVERIFY(w.findChild<mechscope::app::GridWindow*>());
  }
};

QTEST_MAIN(AppTest)
#include "test_app.moc"
