// The Input panel: draw task examples (count, seed, changed task parameters), type tokens or text, or read a prompt
// dataset's lines; step through the examples (or jump to the next one the model gets wrong); the current example's
// tokens with their roles, targets and loss.
#pragma once

#include <vector>

#include "app/panel.h"

class QLabel;
class QLineEdit;
class QSpinBox;
class QTableWidget;

namespace mechscope::app {

class InputPanel : public Panel {
 public:
  explicit InputPanel(PanelContext& ctx);
  QString title() const override { return QObject::tr("Input"); }
  QString name() const override { return "input"; }
  Qt::DockWidgetArea area() const override { return Qt::LeftDockWidgetArea; }
  QSize preferred() const override { return {330, 520}; }
  QWidget* widget() override { return widget_; }
  void changed(Change c) override;
  void save(QJsonObject& w) const override;
  void restore(const QJsonObject& w) override;
  /// Draws examples of the current model's task, as the Draw button does.
  void draw(int n, int seed);
  /// Greedy continuation of the current example (at most `max_new` tokens, stopping at the one token `stop`, where a
  /// typed \n is a newline), shown under the examples, as the Generate button does.
  void generate(int max_new, const QString& stop);
  /// The last continuation's text ("" before one, or after the input changed).
  QString generated() const { return generated_; }
  /// Reads the first `n` lines of a prompt dataset as the examples, as the dataset row's Load button does.
  void loadDataset(const QString& path, int n);
  /// Replaces the current example's token at `position`, as editing its cell in the token table does.
  void editToken(int position, const QString& token);

 private:
  void refresh();
  void nextWrong();
  QWidget* widget_;
  QSpinBox* n_spin_;
  QSpinBox* seed_spin_;
  QLineEdit* task_edit_;
  QSpinBox* example_spin_;
  QLineEdit* text_edit_ = nullptr;
  QLineEdit* dataset_edit_ = nullptr;
  QSpinBox* gen_spin_ = nullptr;
  QLineEdit* stop_edit_ = nullptr;
  QLabel* gen_label_ = nullptr;
  QString generated_;
  QLineEdit* tokens_edit_;
  QTableWidget* token_table_;
  QLabel* label_;
};

}  // namespace mechscope::app
