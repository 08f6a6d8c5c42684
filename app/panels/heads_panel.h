// The Heads panel: every head of the model coloured by a score (aggregate, gather, causal, induction, previous-token),
// with the reading "is the top aggregate head the most causal?"; click a head to ablate it, shift-click for sets.
#pragma once

#include <string>
#include <vector>

#include <QStringList>

#include "app/panel.h"

class QComboBox;
class QLabel;
class QLineEdit;

namespace mechscope::app {

class HeadsPanel : public Panel {
 public:
  explicit HeadsPanel(PanelContext& ctx);
  QString title() const override { return QObject::tr("Heads"); }
  QString name() const override { return "heads"; }
  Qt::DockWidgetArea area() const override { return Qt::RightDockWidgetArea; }
  QSize preferred() const override { return {430, 430}; }
  QWidget* widget() override { return widget_; }
  void changed(Change c) override;
  std::vector<PlotView*> plots() const override { return {plot_}; }
  void save(QJsonObject& w) const override;
  void restore(const QJsonObject& w) override;
  PlotView* plot() const { return plot_; }
  QString reading() const;
  /// What the panel says is ablated now (the line under the grid).
  QString ablatedText() const;
  /// The focused head's card as shown (plain text; "" before a head was focused).
  QString cardText() const;
  /// Searches the grid as the field does ("L1", "attn.H3", "top 5") and returns the line listing what it found.
  QString findHeads(const QString& query);
  /// Ablates exactly these heads (labels like L1.attn.H0) with the chosen kind and updates the outcome; the state
  /// before goes on the undo history.
  void ablate(const std::vector<std::string>& heads);
  /// Edit > Undo / Redo: the previous or next set of ablated heads and kind (per model: a switch clears the history).
  void undo();
  void redo();
  bool canUndo() const { return !undo_.empty(); }
  /// The history, oldest first, one line per state ("zero: L0.attn.H0 L1.attn.H0", "none").
  QStringList history() const;

 private:
  void refresh();
  void show_ablated();  ///< the line under the grid, from the session's ablations (a model switch clears them)
  void toggle(int row, int col, Qt::KeyboardModifiers mods);
  struct State {
    std::vector<std::string> heads;
    QString kind;
  };
  /// Applies a state without recording it (undo, redo).
  void apply(const State& s);
  State now() const;
  std::vector<State> undo_, redo_;
  State requested_;  // the last state asked for (its job may still be queued); the session's after a model change
  QWidget* widget_;
  QComboBox* score_combo_;
  QComboBox* ablation_combo_;
  QLabel* ablated_label_;
  QLabel* reading_;
  QLabel* card_;  // the focused head's card (Workbench::head_card)
  QLineEdit* find_;   // a name part or "top N"
  QLabel* found_;     // what it found, by score
  /// Outlines the heads the search field names and lists them by the current score, highest first.
  void find();
  /// The card of the head in grid cell (row, col), computed in a job.
  void showCard(int row, int col);
  PlotView* plot_;
};

}  // namespace mechscope::app
