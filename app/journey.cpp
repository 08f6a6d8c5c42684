// The scripted user journey (see journey.h).
#include "app/journey.h"

#include <iostream>

#include <QApplication>
#include <QDir>
#include <QLineEdit>
#include <QPushButton>

#include "app/mainwindow.h"
#include "app/panels/attention_panel.h"
#include "app/panels/compare_panel.h"
#include "app/plotview.h"

namespace mechscope::app {

namespace {

struct Journey {
  MainWindow& w;
  QString dir;
  int step = 0;
  bool ok = true;

  // Waits for the jobs, saves the window as NN-name.png and reports the step (and an error it raised).
  void shot(const QString& name, const QString& what) {
    w.waitIdle(300000);
    QApplication::processEvents();
    const QString file = QStringLiteral("%1/%2-%3.png").arg(dir).arg(++step, 2, 10, QChar('0')).arg(name);
    w.grab().save(file);
    std::cout << file.toStdString() << ": " << what.toStdString() << "\n";
    if (w.errorCount() > errors) {
      std::cout << "  error: " << w.lastError().toStdString() << "\n";
      ok = false;
      errors = w.errorCount();
    }
  }
  int errors = 0;

  QLineEdit* field(const QString& placeholder_start) const {
    for (auto* e : w.findChildren<QLineEdit*>())
      if (e->placeholderText().startsWith(placeholder_start)) return e;
    return nullptr;
  }
  void press(const QString& text) {
    for (auto* b : w.findChildren<QPushButton*>())
      if (b->text() == text) return b->click();
  }
  // The first loaded model with (or without) a task, a tokenizer: -1 when none.
  int model_where(bool task, bool tokenizer) {
    for (int i = 0; i < w.workbench().model_count(); ++i) {
      const auto s = w.workbench().summary(i);
      w.switchModel(i);
      w.waitIdle(300000);
      if (s.has_task == task && w.workbench().has_tokenizer() == tokenizer) return i;
    }
    return -1;
  }
};

}  // namespace

bool run_journey(MainWindow& w, const QString& dir) {
  QDir().mkpath(dir + "/figures");
  Journey j{w, dir};
  w.waitIdle(300000);
  j.shot("open", "the models opened; the first is current, its panels filled");
  if (w.workbench().model_count() == 0) return false;
  // Ablate a first-layer head: the Outcome changes; the attention map of the next layer under the ablation.
  const auto heads = w.workbench().summary().heads;
  w.ablateHeads({heads.front().label});
  w.headsPlot()->setFocusCell(0, 0);  // the keyboard's cell: the first head, and its card under the grid
  j.shot("ablate", QString("ablated %1 (Heads: a cross, the focused head's card; Outcome: before and after)")
                       .arg(qs(heads.front().label)));
  if (w.workbench().summary().layers > 1) {
    QJsonObject view{{"layer", 1}, {"head", 0}};
    w.attentionPanel().restore(view);
    w.attentionPanel().changed(Change::Models);
    w.waitIdle(300000);
    w.attentionPanel().setRun(2);
    j.shot("attention-difference", "Attention: layer 1, ablated minus clean");
  }
  w.attentionPanel().restore(QJsonObject{{"layer", 0}, {"head", 0}});
  w.attentionPanel().changed(Change::Models);
  w.waitIdle(300000);
  w.attentionPanel().setEveryHead(true);
  j.shot("every-head", "Attention: every head of layer 0 side by side (clean run)");
  w.attentionPanel().setEveryHead(false);
  // Patching, and a click on the cell of the last layer at the last position.
  w.showPanel("patching");
  w.runPatching();
  w.waitIdle(300000);
  if (auto* p = w.patchingPlot(); p->hasData()) {
    emit p->cellClicked(p->grid().rows - 1, p->grid().cols - 1, Qt::NoModifier);  // as a click on that cell
  }
  j.shot("patching", "Patching: a sweep (clean run), the clicked cell marked, its outcome in Outcome");
  w.showPanel("compare");
  w.comparePanel().compare(0, 1);
  j.shot("compare", "Compare: every loaded model's layer-1 attention");
  const QStringList figures = w.exportFigures(dir + "/figures");
  std::cout << "  exported " << figures.size() << " files into " << (dir + "/figures").toStdString() << "\n";
  w.saveWorkspace(dir + "/workspace.json");
  // Text through a model's tokenizer, and tokens typed into a model without a task.
  if (j.model_where(true, true) >= 0 || j.model_where(false, true) >= 0) {
    if (auto* text = j.field("or type text")) {
      text->setText("The capital of France is");
      j.press("Use text");
      w.showPanel("attention");
      j.shot("text", "a typed text through the model's tokenizer: Input's tokens, Attention, Outcome's predictions");
    }
  }
  if (j.model_where(false, false) >= 0 || j.model_where(false, true) >= 0) {
    if (auto* tokens = j.field("or type tokens")) {
      tokens->setText("1 2 3 4 5 6 7 8");
      j.press("Use tokens");
      j.shot("tokens", "an imported model without a task: typed token ids");
    }
  }
  // The workspace saved above, in a second window.
  MainWindow again;
  again.setQuiet(true);
  again.resize(w.size());
  again.show();
  again.openWorkspace(dir + "/workspace.json");
  again.waitIdle(300000);
  QApplication::processEvents();
  again.grab().save(QStringLiteral("%1/%2-restored.png").arg(dir).arg(++j.step, 2, 10, QChar('0')));
  std::cout << "restored the workspace in a second window"
            << (again.errorCount() ? ": error: " + again.lastError().toStdString() : std::string()) << "\n";
  return j.ok && again.errorCount() == 0;
}

}  // namespace mechscope::app
