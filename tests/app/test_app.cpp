// Widget tests of the workbench under QT_QPA_PLATFORM=offscreen: the real window, driven as a user would.
#include <sys/stat.h>

#include <QDir>
#include <QFile>
#include <QLineEdit>
#include <QDockWidget>
#include <QListWidget>
#include <QComboBox>
#include <QPushButton>
#include <QSvgRenderer>
#include <QTemporaryDir>
#include <QtTest/QtTest>
#include <qcustomplot.h>

#include "app/mainwindow.h"
#include "app/panels/analyses_panel.h"
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

QPushButton* button(QWidget& w, const QString& text) {
  for (auto* b : w.findChildren<QPushButton*>())
    if (b->text() == text) return b;
  return nullptr;
}
}  // namespace

class AppTest : public QObject {
  Q_OBJECT
 private slots:
  void initTestCase() { qputenv("MECHSCOPE_DEFAULT_LAYOUT", "1"); }

  // Issue 26: after a model switch the session has no ablations (Outcome says none), and the Heads panel's line
  // said the previous model's heads were still ablated.
  void headsPanelForgetsAblationsOnModelSwitch() {
    MainWindow w;
    QVERIFY(showWith(w, {demo("mqar-attn"), demo("ar-attn")}));
    QCOMPARE(w.workbench().model_count(), 2);
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
    const auto after = w.workbench().outcome(true), before = w.workbench().outcome(false);
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
      QVERIFY(csv.open(QIODevice::ReadOnly) && csv.readLine().startsWith("# {\"ablated\""));
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
    const auto rows = w.workbench().compare();
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
    QCOMPARE(w.analysesPanel().plot()->grid().rows, static_cast<int>(w.workbench().tokens().size()));
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
    QCOMPARE(w.workbench().tokens(), (std::vector<std::string>{"ab", " ", "a"}));
    QVERIFY(w.workbench().has_tokenizer());
    // Generate: the first new token is the model's top prediction after the text (Outcome's), and a longer run
    // begins with it.
    const std::string top = w.workbench().outcome(false).top.at(0).first;
    const mechscope::app::Generation one = w.workbench().generate(1, "");
    QCOMPARE(one.tokens, std::vector<std::string>{top});
    QCOMPARE(one.prompt_tokens, 3);
    w.inputPanel().generate(4, "");
    QVERIFY(w.waitIdle(kIdleMs));
    const mechscope::app::Generation four = w.workbench().generate(4, "");
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
    QCOMPARE(wb.tokens(), (std::vector<std::string>{"ab", " ", "a", " ", "ab"}));
    QCOMPARE(wb.roles()[0], std::string("key"));
    QCOMPARE(wb.targets()[4], std::string(" "));
    QCOMPARE(wb.corruptible_roles(), (std::vector<std::string>{"prompt"}));
    // Patching runs the lines' corrupted prompts; on these prompts (not the demo's task) neither run gives the answer
    // any probability, which patching reports.
    try {
      wb.patching("resid_pre", "", {});
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
    QCOMPARE(wb.tokens(0), (std::vector<std::string>{"a", "b", " ", "a", " ", "a", "b"}));
    // A line the dataset reader refuses names its line; the examples stay.
    QFile bad(dir.filePath("bad.jsonl"));
    QVERIFY(bad.open(QIODevice::WriteOnly));
    bad.write("{\"clean\": \"ab\", \"answer\": \" \"}\n{\"clean\": \"ab\"}\n");
    bad.close();
    w.inputPanel().loadDataset(dir.filePath("bad.jsonl"), 8);
    QVERIFY(w.waitIdle(kIdleMs));
    QVERIFY2(w.lastError().contains("line 2"), qPrintable(w.lastError()));
    QCOMPARE(wb.example_count(), 3);
    wb.set_text("ab");  // typed text replaces the dataset's examples
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
};

QTEST_MAIN(AppTest)
#include "test_app.moc"
