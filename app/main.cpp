// mechscope: the workbench. Arguments: checkpoints (.h5) and workspaces (.json) to open;
// --screenshots DIR saves one screenshot per panel and exits; --dark starts with the dark theme.
#include <algorithm>
#include <cstdlib>
#include <cmath>
#include <cstring>
#include <iostream>
#include <string>

#include "core/engine/memory.h"
#include "core/engine/runtime.h"
#include "core/plugin/plugin.h"
#include "app/gridwindow.h"
#include "app/render.h"

#include <QApplication>
#include <QElapsedTimer>
#include <qcustomplot.h>

#include "app/plotview.h"
#include <QCommandLineParser>
#include <QFileInfo>
#include <QTimer>

#include "app/journey.h"
#include "app/mainwindow.h"
#include "app/panels/analyses_panel.h"
#include "app/panels/compare_panel.h"
#include "app/panels/input_panel.h"
#include "app/panels/training_panel.h"

namespace {

// --bench-map N: an N x N attention-style map in a plot view: time to draw it, and per zoom and pan step.
int run_bench_map(int n) {
  if (n < 2 || n > 16384) {
    std::cerr << "error: --bench-map N with N in 2..16384\n";
    return 1;
  }
  mechscope::app::Grid g;
  g.rows = g.cols = n;
  g.values.assign(static_cast<size_t>(n) * n, std::nan(""));
  for (int q = 0; q < n; ++q)
    for (int k = 0; k <= q; ++k) g.values[static_cast<size_t>(q) * n + k] = 1.0 / (1 + q - k);
  for (int i = 0; i < n; ++i) g.row_labels.push_back("t" + std::to_string(i));
  g.col_labels = g.row_labels;
  g.title = std::to_string(n) + " x " + std::to_string(n) + " map";
  mechscope::app::PlotView view("bench");
  view.resize(1200, 900);
  view.show();
  QApplication::processEvents();
  QElapsedTimer t;
  t.start();
  view.showGrid(g);
  QApplication::processEvents();
  const double draw = t.nsecsElapsed() / 1e6;
  auto* plot = view.plot();
  std::vector<double> zoom, pan;
  for (int i = 0; i < 20; ++i) {
    t.restart();
    plot->xAxis->scaleRange(0.8, plot->xAxis->range().center());
    plot->yAxis->scaleRange(0.8, plot->yAxis->range().center());
    plot->replot(QCustomPlot::rpImmediateRefresh);
    zoom.push_back(t.nsecsElapsed() / 1e6);
  }
  for (int i = 0; i < 20; ++i) {
    t.restart();
    plot->xAxis->moveRange(plot->xAxis->range().size() * 0.05);
    plot->yAxis->moveRange(plot->yAxis->range().size() * 0.05);
    plot->replot(QCustomPlot::rpImmediateRefresh);
    pan.push_back(t.nsecsElapsed() / 1e6);
  }
  std::sort(zoom.begin(), zoom.end());
  std::sort(pan.begin(), pan.end());
  std::cout << n << " x " << n << " map: first draw " << draw << " ms; zoom step " << zoom[10] << " ms, pan step "
            << pan[10] << " ms (medians of 20); after zooming in, " << plot->xAxis->range().size()
            << " columns visible with "
            << qSharedPointerCast<QCPAxisTickerText>(plot->xAxis->ticker())->ticks().size() << " token labels\n";
  return 0;
}

// --bench-latency: on 256 examples of each checkpoint, the time from toggling a head ablation to the updated outcome.
void bench_latency(mechscope::app::MainWindow& w) {
  w.waitIdle(120000);
  for (int m = 0; m < w.workbench().model_count(); ++m) {
    w.workbench().set_current(m);
    w.drawExamples(256, 1);
    w.waitIdle(120000);
    const auto summary = w.workbench().summary();
    std::vector<double> all;
    std::string worst_head;
    double worst = 0;
    std::vector<size_t> picks;  // up to 16 heads spread over the layers
    for (size_t i = 0; i < std::min<size_t>(16, summary.heads.size()); ++i)
      picks.push_back(i * summary.heads.size() / std::min<size_t>(16, summary.heads.size()));
    for (size_t h : picks) {
      std::vector<double> t;
      for (int i = 0; i < 9; ++i) {
        w.ablateHeads(i % 2 ? std::vector<std::string>{} : std::vector<std::string>{summary.heads[h].label});
        w.waitIdle(60000);
        if (i % 2 == 0) t.push_back(w.lastOutcomeMs());  // the toggles that ablate (clearing is free)
      }
      std::sort(t.begin(), t.end());
      all.push_back(t[t.size() / 2]);
      if (std::getenv("MECHSCOPE_LATENCY_DETAIL"))
        std::cout << "  " << summary.heads[h].label << " " << t[t.size() / 2] << " ms\n";
      if (t[t.size() / 2] > worst) worst = t[t.size() / 2], worst_head = summary.heads[h].label;
    }
    std::sort(all.begin(), all.end());
    std::cout << summary.name << ": toggling a head ablation -> outcome updated, 256 examples: median "
              << all[all.size() / 2] << " ms over " << all.size() << " heads, slowest " << worst_head << " "
              << worst << " ms\n";
  }
}

// --bench-startup: from showing the window with the files given to (a) the first outcome in the Outcome panel, (b) the
// head grid drawn, (c) every job done; and which model is current then. The window is usable from (a) on: the panels
// answer clicks while later models load behind them.
void bench_startup(mechscope::app::MainWindow& w, const QElapsedTimer& since, int files) {
  double outcome = -1, heads = -1;
  QElapsedTimer limit;
  limit.start();
  while (limit.elapsed() < 600000) {
    QApplication::processEvents(QEventLoop::AllEvents, 5);
    const double t = since.nsecsElapsed() / 1e6;
    if (outcome < 0 && w.outcomeText().contains("before")) outcome = t;
    if (heads < 0 && w.headsPlot()->hasData()) heads = t;
    if (!w.busy() && w.workbench().model_count() + w.errorCount() >= files) break;
  }
  const double all = since.nsecsElapsed() / 1e6;
  std::cout << "start-up with " << w.workbench().model_count() << " model(s): first outcome " << outcome
            << " ms, head grid " << heads << " ms, every job done " << all << " ms; current: "
            << w.workbench().summary().name << "\n";
}

// --replay DIR: every panel recomputed (and a patching sweep), each figure exported; false when something failed.
bool run_replay(mechscope::app::MainWindow& w, const QString& dir) {
  w.waitIdle(120000);
  w.runPatching();
  w.waitIdle(300000);
  if (w.workbench().model_count() > 1) {
    w.comparePanel().compare(0, 1);
    w.waitIdle(120000);
  }
  const QStringList files = w.exportFigures(dir);
  for (const auto& f : files) std::cout << "wrote " << f.toStdString() << "\n";
  if (!w.lastError().isEmpty()) {
    std::cerr << "mechscope: " << w.lastError().toStdString() << "\n";
    return false;
  }
  return true;
}

// --screenshots DIR: something in each panel (the last head ablated, a patching sweep), then one screenshot per panel.
void screenshots(mechscope::app::MainWindow& w, const QString& dir, const QString& analysis) {
  w.waitIdle(120000);
  // Something in each panel: the last head ablated, a patching sweep run.
  if (w.workbench().model_count() > 0) w.ablateHeads({w.workbench().summary().heads.back().label});
  w.waitIdle(60000);
  w.runPatching();
  w.waitIdle(300000);
  w.comparePanel().compare(0, 1);  // the loaded models side by side: layer 1's attention
  w.waitIdle(120000);
  if (analysis.isEmpty()) w.analysesPanel().run("attention-rollout", "");  // a plugin's analysis, if that plugin is loaded
  w.waitIdle(60000);
  w.takeScreenshots(dir);
  if (!w.lastError().isEmpty()) std::cerr << "mechscope: " << w.lastError().toStdString() << "\n";
  std::cout << "screenshots in " << dir.toStdString() << "\n";
}

// --dataset and --analysis, after the files are open (the screenshots' run does them first itself).
void dataset_and_analysis(mechscope::app::MainWindow& w, const QString& dataset, const QString& analysis) {
  w.waitIdle(120000);
  if (!dataset.isEmpty()) w.inputPanel().loadDataset(dataset, 64);
  w.waitIdle(120000);
  if (!analysis.isEmpty()) w.analysesPanel().run(analysis, "");
}

// --render RESULTS: one tensor of a results file drawn into a figure file.
int run_render(const QCommandLineParser& parser, const QCommandLineOption& render_opt, const QCommandLineOption& tensor_opt,
               const QCommandLineOption& index_opt, const QCommandLineOption& out_opt, const QCommandLineOption& size_opt) {
  try {
    if (!parser.isSet(out_opt)) throw std::invalid_argument("--render needs --out FIGURE.png|.pdf|.svg");
    const QStringList wh = parser.value(size_opt).toLower().split('x');
    if (wh.size() != 2) throw std::invalid_argument("--size: expected WIDTHxHEIGHT, e.g. 1200x800");
    const std::string path = parser.value(render_opt).toStdString();
    if (mechscope::grid::is_grid_table(path)) {  // a collected grid: its figure (mechscope-cli collect runs this)
      mechscope::grid::Figure f{parser.value("x").toStdString(), parser.value("y").toStdString(),
                                parser.value("series").toStdString()};
      std::cout << mechscope::app::render_grid_table(path, f, parser.value(out_opt).toStdString(), wh[0].toInt(),
                                                     wh[1].toInt())
                << "\n";
      return 0;
    }
    std::cout << mechscope::app::render_results(path, parser.value(tensor_opt).toStdString(),
                                                parser.value(index_opt).toInt(), parser.value(out_opt).toStdString(),
                                                wh[0].toInt(), wh[1].toInt())
              << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "error: " << mechscope::describe_error(e) << "\n";
    return 1;
  }
}

// After the window is shown: the files given (the first checkpoint current, the rest loaded behind it: the window
// is usable as soon as the first one's views are drawn), then the mode asked for (a benchmark, a replay, screenshots).
void open_and_schedule(QApplication& app, mechscope::app::MainWindow& w, const QCommandLineParser& parser,
                       const QElapsedTimer& since_shown) {
  QStringList checkpoints;
  for (const QString& f : parser.positionalArguments()) {
    if (QFileInfo(f).suffix().toLower() == "json") w.openWorkspace(f);
    else checkpoints << f;
  }
  w.openFiles(checkpoints);
  const bool screenshot_mode = parser.isSet("screenshots");
  auto requested = [&w, &parser] { dataset_and_analysis(w, parser.value("dataset"), parser.value("analysis")); };
  if (!screenshot_mode && (parser.isSet("dataset") || parser.isSet("analysis"))) QTimer::singleShot(0, &w, requested);
  if (parser.isSet("bench-latency")) {
    w.setQuiet(true);
    QTimer::singleShot(0, &w, [&app, &w] {
      bench_latency(w);
      app.quit();
    });
  }
  if (parser.isSet("bench-startup")) {
    w.setQuiet(true);
    QTimer::singleShot(0, &w, [&app, &w, &parser, &since_shown] {
      bench_startup(w, since_shown, static_cast<int>(parser.positionalArguments().size()));
      app.quit();
    });
  }
  if (parser.isSet("journey")) {
    w.setQuiet(true);
    QTimer::singleShot(0, &w, [&app, &w, &parser] {
      app.exit(mechscope::app::run_journey(w, parser.value("journey")) ? 0 : 1);
    });
  }
  if (parser.isSet("replay")) {
    w.setQuiet(true);
    QTimer::singleShot(0, &w, [&app, &w, &parser] { app.exit(run_replay(w, parser.value("replay")) ? 0 : 1); });
  }
  if (screenshot_mode) {
    QTimer::singleShot(0, &w, [&app, &w, &parser, requested] {
      requested();
      screenshots(w, parser.value("screenshots"), parser.value("analysis"));
      app.quit();
    });
  }
}

}  // namespace

int main(int argc, char** argv) {
  mechscope::select_blas_core();
  const char* platform = std::getenv("QT_QPA_PLATFORM");
  const bool headless_platform = platform && (std::strcmp(platform, "offscreen") == 0 || std::strcmp(platform, "minimal") == 0);
  auto has = [&](const char* flag) {
    for (int i = 1; i < argc; ++i)
      if (!std::strcmp(argv[i], flag)) return true;
    return false;
  };
  const bool wants_help = has("--help") || has("-h") || has("--version");
  // Modes that draw without showing a window: no display needed.
  const bool headless_mode = has("--render") || has("--replay") || has("--bench-map");
  if (headless_mode && !platform) qputenv("QT_QPA_PLATFORM", "offscreen");
  // Screenshots and replays use the default layout and theme, whatever was saved.
  if (has("--screenshots") || has("--replay") || has("--journey")) qputenv("MECHSCOPE_DEFAULT_LAYOUT", "1");
  if (!headless_platform && !wants_help && !headless_mode && !std::getenv("DISPLAY") && !std::getenv("WAYLAND_DISPLAY")) {
    std::cerr << "mechscope: no display found (DISPLAY and WAYLAND_DISPLAY are unset).\n"
                 "  On a machine without a screen, run the workbench under a virtual display:\n"
                 "    xvfb-run -a -s \"-screen 0 1600x1000x24\" mechscope resources/models/*.h5 --screenshots shots/\n"
                 "  or use the command-line tool, which does everything the workbench does:\n"
                 "    mechscope-cli analyze --help\n";
    return 2;
  }
  mechscope::init_runtime();
  for (const auto& p : mechscope::load_plugins())  // Help > Plugins shows these too
    if (!p.loaded) std::cerr << "warning: plugin " << p.path << " skipped: " << p.error << "\n";
  QApplication app(argc, argv);
  QApplication::setApplicationName("MechScope");
  QApplication::setOrganizationName("MechScope");
  QApplication::setApplicationVersion(MECHSCOPE_VERSION_STRING);
  QCommandLineParser parser;
  parser.setApplicationDescription("MechScope: mechanistic interpretability of Transformers, Mamba and hybrids.");
  parser.addHelpOption();
  parser.addVersionOption();
  QCommandLineOption shots("screenshots", "Save a screenshot of each panel into DIR, then quit.", "DIR");
  QCommandLineOption dark("dark", "Start with the dark theme.");
  QCommandLineOption latency("bench-latency",
                             "Benchmark: on 256 examples of each checkpoint, time from toggling a head ablation to the "
                             "updated outcome panel (median of 5 ablating toggles per head), print it and quit.");
  parser.addOption(latency);
  QCommandLineOption startup("bench-startup", "Benchmark: open the files given and print when the first outcome, the "
                                              "head grid and the last job were done, then quit.");
  parser.addOption(startup);
  QCommandLineOption journey("journey", "Script a user's session on the files given (ablate, the map under the "
                                        "ablation, patch and click, compare, type text and tokens, export every "
                                        "figure, save and reopen the workspace), saving the window at each step into "
                                        "DIR, then quit (scripts/screenshots.sh).", "DIR");
  parser.addOption(journey);
  QCommandLineOption bench_map("bench-map", "Benchmark: an N x N attention-style map in a plot view (1200 x 900): time to "
                                            "draw it, and per zoom and pan step (median of 20), then quit.", "N");
  parser.addOption(bench_map);
  QCommandLineOption replay("replay", "Open the workspace(s) given, recompute every panel (and a patching sweep at the "
                                      "workspace's site), export each figure as PNG, PDF, SVG and CSV into DIR, and quit "
                                      "(no display needed).", "DIR");
  parser.addOption(replay);
  QCommandLineOption render_opt("render", "Draw a tensor of an `mechscope-cli analyze` results file (no display needed) "
                                          "and quit; with --tensor, --index, --out, --size.", "RESULTS");
  QCommandLineOption tensor_opt("tensor", "Tensor to draw, e.g. patching/score (default: the first).", "NAME");
  QCommandLineOption index_opt("index", "Slice of the first axis of a 3-D tensor (attention heads).", "N", "-1");
  QCommandLineOption out_opt("out", "Figure to write: .png, .pdf or .svg.", "FILE");
  QCommandLineOption size_opt("size", "Figure size in pixels.", "WxH", "1200x800");
  for (const auto& o : {render_opt, tensor_opt, index_opt, out_opt, size_opt}) parser.addOption(o);
  QCommandLineOption x_opt("x", "A collected grid's figure: the axis along x (default: the first numeric axis).", "COLUMN"),
      y_opt("y", "A collected grid's figure: the column along y (default: accuracy).", "COLUMN"),
      series_opt("series", "A collected grid's figure: a line per value of this axis ('-': one line).", "COLUMN");
  for (const auto& o : {x_opt, y_opt, series_opt}) parser.addOption(o);
  parser.addOption(shots);
  parser.addOption(dark);
  QCommandLineOption list_plugins("list-plugins", "Build the window (loading every plugin and panel), print what "
                                                  "Help > Plugins shows, and quit (no display needed).");
  parser.addOption(list_plugins);
  QCommandLineOption dataset_opt("dataset", "After opening the files, read the first 64 lines of a prompt dataset (.jsonl) "
                                            "as the examples (the Input panel's dataset row).", "FILE"),
      analysis_opt("analysis", "Then run an analysis in the Analyses panel, e.g. ga-discovery.", "NAME");
  for (const auto& o : {dataset_opt, analysis_opt}) parser.addOption(o);
  parser.addPositionalArgument("files", "Checkpoints (.h5) or a workspace (.json) to open.", "[files...]");
  parser.process(app);

  if (parser.isSet(render_opt)) return run_render(parser, render_opt, tensor_opt, index_opt, out_opt, size_opt);

  if (parser.isSet(bench_map)) return run_bench_map(parser.value(bench_map).toInt());

  mechscope::app::MainWindow w;
  if (parser.isSet(list_plugins)) {
    for (const auto& line : mechscope::app::Workbench::plugin_report()) std::cout << line << "\n";
    for (const QString& line : w.panelReport()) std::cout << line.toStdString() << "\n";
    std::cout << "plugin analyses in the Plugins panel:";
    for (const auto& [name, about] : mechscope::app::Workbench::plugin_analyses()) std::cout << " " << name;
    std::cout << "\n";
    return 0;
  }
  if (parser.isSet(dark)) w.setDark(true);
  const bool screenshot_mode = parser.isSet(shots);
  w.setQuiet(screenshot_mode);
  // The default size, within the screen's available area (a 1280 x 800 laptop) where there is a real screen; the
  // offscreen platform's nominal 800 x 600 screen would shrink replays and screenshots.
  if (headless_platform || headless_mode) w.resize(mechscope::app::MainWindow::defaultSize());
  else w.fitToScreen(mechscope::app::MainWindow::defaultSize());
  QElapsedTimer since_shown;
  since_shown.start();
  w.show();
  open_and_schedule(app, w, parser, since_shown);
  return app.exec();
}
