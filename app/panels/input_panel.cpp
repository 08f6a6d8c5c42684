// The Input panel (see input_panel.h).
#include "app/panels/input_panel.h"

#include <cmath>

#include <QFileDialog>
#include <QFormLayout>
#include <QHeaderView>
#include <QJsonDocument>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QSpinBox>
#include <QTableWidget>
#include <QVBoxLayout>

namespace mechscope::app {

namespace {

struct InputView {
  std::vector<std::string> tokens, roles, targets;
  int count = 0, example = 0;
  std::string task, hint;
};

QColor role_colour(const QString& role) {
  return role == "key" ? QColor(90, 140, 220, 60) : role == "value" ? QColor(80, 180, 100, 60)
       : role == "query" ? QColor(230, 150, 40, 70) : role == "answer" ? QColor(200, 70, 70, 60) : QColor(0, 0, 0, 0);
}

}  // namespace

InputPanel::InputPanel(PanelContext& ctx) : Panel(ctx) {
  n_spin_ = new QSpinBox;
  n_spin_->setRange(1, 4096);
  n_spin_->setValue(64);
  seed_spin_ = new QSpinBox;
  seed_spin_->setRange(0, 1 << 30);
  task_edit_ = new QLineEdit;
  task_edit_->setPlaceholderText(QObject::tr("task parameters to change, JSON, e.g. {\"num_pairs\": 8}"));
  auto* draw_button = new QPushButton(QObject::tr("Draw examples"));
  draw_button->setShortcut(QKeySequence("Ctrl+D"));
  example_spin_ = new QSpinBox;
  example_spin_->setRange(0, 0);
  auto* prev_b = new QPushButton(QObject::tr("◀"));
  auto* next_b = new QPushButton(QObject::tr("▶"));
  prev_b->setShortcut(QKeySequence("Alt+Left"));
  next_b->setShortcut(QKeySequence("Alt+Right"));
  auto* wrong_b = new QPushButton(QObject::tr("Next wrong"));
  wrong_b->setToolTip(QObject::tr("Jump to the next example the model gets wrong"));
  tokens_edit_ = new QLineEdit;
  tokens_edit_->setPlaceholderText(QObject::tr("or type tokens: ids or vocabulary strings"));
  auto* use_tokens = new QPushButton(QObject::tr("Use tokens"));
  text_edit_ = new QLineEdit;
  text_edit_->setPlaceholderText(QObject::tr("or type text: through the model's tokenizer, e.g. The capital of France is"));
  auto* use_text = new QPushButton(QObject::tr("Use text"));
  dataset_edit_ = new QLineEdit;
  dataset_edit_->setPlaceholderText(QObject::tr("or a prompt dataset (.jsonl): its first lines as the examples"));
  auto* browse_b = new QPushButton(QObject::tr("Browse…"));
  auto* load_b = new QPushButton(QObject::tr("Load"));
  load_b->setToolTip(QObject::tr("Read the dataset's first lines (the examples count above) through the model's tokenizer"));
  gen_spin_ = new QSpinBox;
  gen_spin_->setRange(1, 4096);
  gen_spin_->setValue(16);
  gen_spin_->setToolTip(QObject::tr("New tokens at most"));
  stop_edit_ = new QLineEdit;
  stop_edit_->setPlaceholderText(QObject::tr("stop at (one token, e.g. \\n)"));
  auto* gen_b = new QPushButton(QObject::tr("Generate"));
  gen_b->setToolTip(QObject::tr("Greedy continuation of the current example's prompt (through its query), with the KV and "
                                "state caches; the ablations do not apply"));
  gen_label_ = new QLabel;
  gen_label_->setWordWrap(true);
  gen_label_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  token_table_ = new QTableWidget(0, 4);
  token_table_->setHorizontalHeaderLabels({QObject::tr("token"), QObject::tr("role"), QObject::tr("target"), QObject::tr("loss")});
  token_table_->horizontalHeader()->setStretchLastSection(true);
  // A token can be edited in place (double-click or F2): the current example with that one token replaced.
  token_table_->setEditTriggers(QAbstractItemView::DoubleClicked | QAbstractItemView::EditKeyPressed);
  token_table_->setToolTip(QObject::tr("Double-click a token to replace it (an id or a vocabulary string); its role and "
                                       "target stay, so the answer may now be wrong"));
  label_ = new QLabel;
  label_->setWordWrap(true);  // a long task description must not widen the window
  widget_ = new QWidget;
  auto* il = new QVBoxLayout(widget_);
  auto* form = new QFormLayout;
  form->addRow(QObject::tr("examples"), row({n_spin_, new QLabel(QObject::tr("seed")), seed_spin_, draw_button}));
  form->addRow(QObject::tr("task"), task_edit_);
  form->addRow(QObject::tr("example"), row({prev_b, example_spin_, next_b, wrong_b}));
  form->addRow(QObject::tr("tokens"), row({tokens_edit_, use_tokens}));
  form->addRow(QObject::tr("text"), row({text_edit_, use_text}));
  form->addRow(QObject::tr("dataset"), row({dataset_edit_, browse_b, load_b}));
  form->addRow(QObject::tr("generate"), row({gen_spin_, stop_edit_, gen_b}));
  il->addLayout(form);
  il->addWidget(label_);
  il->addWidget(gen_label_);
  il->addWidget(token_table_, 1);
  QObject::connect(draw_button, &QPushButton::clicked, widget_, [this] {
    const int n = n_spin_->value(), seed = seed_spin_->value();
    const std::string t = task_edit_->text().trimmed().toStdString();
    ctx_.job<int>(QObject::tr("drawing examples"), [this, n, seed, t](const Progress&) { ctx_.wb.draw(n, seed, t); return 0; },
                  [this](const int&) { ctx_.changed(Change::Input); });
  });
  QObject::connect(use_tokens, &QPushButton::clicked, widget_, [this] {
    const std::string t = tokens_edit_->text().toStdString();
    ctx_.job<int>(QObject::tr("reading tokens"), [this, t](const Progress&) { ctx_.wb.set_tokens(t); return 0; },
                  [this](const int&) { ctx_.changed(Change::Input); });
  });
  auto take_text = [this] {
    const std::string t = text_edit_->text().toStdString();
    ctx_.job<int>(QObject::tr("tokenizing"), [this, t](const Progress&) { ctx_.wb.set_text(t); return 0; },
                  [this](const int&) { ctx_.changed(Change::Input); });
  };
  QObject::connect(use_text, &QPushButton::clicked, widget_, take_text);
  QObject::connect(text_edit_, &QLineEdit::returnPressed, widget_, take_text);
  QObject::connect(browse_b, &QPushButton::clicked, widget_, [this] {
    const QString f = QFileDialog::getOpenFileName(widget_, QObject::tr("Prompt dataset"), dataset_edit_->text(),
                                                   QObject::tr("Prompt datasets (*.jsonl *.json);;All files (*)"));
    if (f.isEmpty()) return;
    dataset_edit_->setText(f);
    loadDataset(f, n_spin_->value());
  });
  QObject::connect(load_b, &QPushButton::clicked, widget_, [this] { loadDataset(dataset_edit_->text(), n_spin_->value()); });
  QObject::connect(dataset_edit_, &QLineEdit::returnPressed, widget_,
                   [this] { loadDataset(dataset_edit_->text(), n_spin_->value()); });
  QObject::connect(gen_b, &QPushButton::clicked, widget_, [this] { generate(gen_spin_->value(), stop_edit_->text()); });
  QObject::connect(example_spin_, qOverload<int>(&QSpinBox::valueChanged), widget_, [this](int e) {
    ctx_.job<int>(QObject::tr("choosing example"), [this, e](const Progress&) {
      if (e < ctx_.wb.example_count()) ctx_.wb.set_example(e);
      return 0;
    }, [this](const int&) { ctx_.changed(Change::Example); });
  });
  QObject::connect(token_table_, &QTableWidget::itemChanged, widget_, [this](QTableWidgetItem* item) {
    if (item->column() == 0) editToken(item->row(), item->text());
  });
  QObject::connect(prev_b, &QPushButton::clicked, widget_, [this] { example_spin_->setValue(example_spin_->value() - 1); });
  QObject::connect(next_b, &QPushButton::clicked, widget_, [this] { example_spin_->setValue(example_spin_->value() + 1); });
  QObject::connect(wrong_b, &QPushButton::clicked, widget_, [this] { nextWrong(); });
}

void InputPanel::editToken(int position, const QString& token) {
  std::string t = token.toStdString();
  if (t == "\u2423") t = " ";  // the space's open box, as shown
  ctx_.job<std::string>(QObject::tr("editing a token"), [this, position, t](const Progress&) {
    try {
      ctx_.wb.edit_token(position, t);
      return std::string();
    } catch (const std::exception& e) {  // said below, and the table shows the token that is really there again
      return std::string(e.what());
    }
  }, [this](const std::string& error) {
    if (error.empty()) return ctx_.changed(Change::Input);
    ctx_.error(QObject::tr("editing a token"), qs(error));
    refresh();
  });
}

void InputPanel::nextWrong() {
  const std::vector<int>& wrong = ctx_.after.wrong_examples;
  for (int e : wrong)
    if (e > example_spin_->value()) {
      example_spin_->setValue(e);
      return;
    }
  if (!wrong.empty()) example_spin_->setValue(wrong.front());
  else ctx_.status(QObject::tr("the model gets every example of this batch right"));
}

void InputPanel::draw(int n, int seed) {
  n_spin_->setValue(n);
  seed_spin_->setValue(seed);
  ctx_.job<int>(QObject::tr("drawing examples"), [this, n, seed](const Progress&) { ctx_.wb.draw(n, seed, ""); return 0; },
                [this](const int&) { ctx_.changed(Change::Input); });
}

void InputPanel::loadDataset(const QString& path, int n) {
  if (path.trimmed().isEmpty()) return ctx_.error(QObject::tr("dataset"), QObject::tr("choose a dataset file first"));
  dataset_edit_->setText(path);
  const std::string p = path.trimmed().toStdString();
  ctx_.job<int>(QObject::tr("reading the dataset"), [this, p, n](const Progress&) { ctx_.wb.load_dataset(p, n); return 0; },
                [this](const int&) { ctx_.changed(Change::Input); });
}

void InputPanel::generate(int max_new, const QString& stop) {
  std::string s = stop.toStdString();
  for (size_t i; (i = s.find("\\n")) != std::string::npos;) s.replace(i, 2, "\n");  // typed \n: a newline
  ctx_.job<Generation>(QObject::tr("generating"), [this, max_new, s](const Progress&) { return ctx_.wb.generate(max_new, s); },
                       [this](const Generation& g) {
                         QString text = qs(g.text).toHtmlEscaped().replace("\n", "<b>\\n</b>");
                         generated_ = qs(g.text);
                         gen_label_->setText(QObject::tr("after token %1: <span style='background:#fff3c4'>%2</span> "
                                                         "(%3 tokens)").arg(g.prompt_tokens - 1).arg(text).arg(g.tokens.size()));
                       });
}

void InputPanel::changed(Change c) {
  if (c == Change::Input || c == Change::Example || c == Change::Models) {
    gen_label_->clear();
    generated_.clear();
  }
  if (c != Change::Theme && c != Change::Interventions) refresh();
}

void InputPanel::save(QJsonObject& w) const {
  w["examples"] = n_spin_->value();
  w["seed"] = seed_spin_->value();
}

void InputPanel::restore(const QJsonObject& w) {
  n_spin_->setValue(w["examples"].toInt(64));
  seed_spin_->setValue(w["seed"].toInt());
  const QJsonObject in = w["input"].toObject();  // the typed input or the dataset back in its field
  const QString kind = in["kind"].toString();
  if (kind == "tokens") tokens_edit_->setText(in["text"].toString());
  if (kind == "text") text_edit_->setText(in["text"].toString());
  if (kind == "dataset") dataset_edit_->setText(in["path"].toString());
  if (kind == "task" && !in["overrides"].toObject().isEmpty())
    task_edit_->setText(QString::fromUtf8(QJsonDocument(in["overrides"].toObject()).toJson(QJsonDocument::Compact)));
}

void InputPanel::refresh() {
  if (ctx_.wb.model_count() == 0) return;
  ctx_.job<InputView>(QObject::tr("reading the input"), [this](const Progress&) {
    Workbench& wb = ctx_.wb;
    InputView v;
    v.count = wb.example_count();
    if (v.count == 0) return v;
    v.example = wb.example();
    v.tokens = wb.tokens();
    v.roles = wb.roles();
    v.targets = wb.targets();
    v.task = wb.task_summary();
    v.hint = wb.token_hint();
    return v;
  }, [this](const InputView& v) {
    QSignalBlocker b(example_spin_), bt(token_table_);
    example_spin_->setRange(0, std::max(0, v.count - 1));
    example_spin_->setValue(v.example);
    // The hint is this model's own tokens, so that it reads as typed (a fixed "<bos> ..." did not in the demos).
    tokens_edit_->setPlaceholderText(v.hint.empty() ? QObject::tr("or type tokens: ids or vocabulary strings")
                                                    : QObject::tr("or type tokens: ids or vocabulary strings, e.g. %1")
                                                          .arg(qs(v.hint)));
    label_->setText(v.count ? QObject::tr("%n example(s) of %1", "", v.count).arg(qs(v.task.empty() ? "typed tokens" : v.task))
                            : QObject::tr("no input"));
    token_table_->setRowCount(static_cast<int>(v.tokens.size()));
    QStringList rows;
    for (size_t j = 0; j < v.tokens.size(); ++j) {
      rows << QString::number(j);
      token_table_->setItem(j, 0, new QTableWidgetItem(qs(v.tokens[j])));
      token_table_->setItem(j, 1, new QTableWidgetItem(qs(v.roles[j])));
      token_table_->setItem(j, 2, new QTableWidgetItem(qs(v.targets[j])));
      const double loss = j < ctx_.after.example_loss.size() ? ctx_.after.example_loss[j] : NAN;
      token_table_->setItem(j, 3, new QTableWidgetItem(std::isfinite(loss) ? num(loss) : QString()));
      for (int c2 = 0; c2 < 3; ++c2) token_table_->item(j, c2)->setBackground(role_colour(qs(v.roles[j])));
      for (int c2 = 1; c2 < 4; ++c2) token_table_->item(j, c2)->setFlags(Qt::ItemIsSelectable | Qt::ItemIsEnabled);
    }
    token_table_->setVerticalHeaderLabels(rows);
  });
}

}  // namespace mechscope::app
