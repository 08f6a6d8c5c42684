// The Heads panel (see heads_panel.h).
#include "app/panels/heads_panel.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include <QComboBox>
#include <QElapsedTimer>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLabel>
#include <QLineEdit>
#include <QRegularExpression>
#include <QPushButton>
#include <QVBoxLayout>

#include "app/plotview.h"

namespace mechscope::app {

HeadsPanel::HeadsPanel(PanelContext& ctx) : Panel(ctx) {
  score_combo_ = new QComboBox;
  for (const auto& s : Workbench::head_score_names()) score_combo_->addItem(qs(s));
  score_combo_->setCurrentText("aggregate");
  ablation_combo_ = new QComboBox;
  for (const auto& k : Workbench::ablation_kinds()) ablation_combo_->addItem(qs(k));
  requested_ = {{}, ablation_combo_->currentText()};
  auto* clear_b = new QPushButton(QObject::tr("Clear ablations"));
  clear_b->setShortcut(QKeySequence("Ctrl+Shift+X"));
  ablated_label_ = new QLabel(QObject::tr("click a head to ablate it; shift-click to add it to a set"));
  ablated_label_->setWordWrap(true);
  plot_ = ctx.plot("heads");
  reading_ = new QLabel;
  reading_->setWordWrap(true);
  reading_->setToolTip(QObject::tr("Aggregate: attention from the answer-predicting position onto the segment holding "
                                   "the answer. Causal: the accuracy lost when the head alone is zero-ablated."));
  find_ = new QLineEdit;
  find_->setPlaceholderText(QObject::tr("find heads: a name part (L1, attn.H3) or top N"));
  find_->setClearButtonEnabled(true);
  found_ = new QLabel;
  found_->setWordWrap(true);
  card_ = new QLabel;
  card_->setWordWrap(true);
  card_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  card_->setToolTip(QObject::tr("The focused head (arrows, or a click): its scores on these examples, the keys its row at "
                                "the current example's answer weighs most, and its direct logit attribution (its share "
                                "of the answer logit through the final norm, mean over the labelled positions)"));
  widget_ = new QWidget;
  auto* hl = new QVBoxLayout(widget_);
  hl->addWidget(row({new QLabel(QObject::tr("colour by")), score_combo_, new QLabel(QObject::tr("ablation")), ablation_combo_,
                     clear_b}));
  hl->addWidget(find_);
  hl->addWidget(plot_, 1);
  hl->addWidget(found_);
  hl->addWidget(reading_);
  hl->addWidget(card_);
  hl->addWidget(ablated_label_);
  QObject::connect(score_combo_, qOverload<int>(&QComboBox::currentIndexChanged), widget_, [this] { refresh(); });
  QObject::connect(ablation_combo_, qOverload<int>(&QComboBox::currentIndexChanged), widget_,
                   [this] { ablate(ctx_.wb.ablated()); });
  QObject::connect(clear_b, &QPushButton::clicked, widget_, [this] { ablate({}); });
  QObject::connect(plot_, &PlotView::cellClicked, widget_,
                   [this](int r, int c, Qt::KeyboardModifiers m) { toggle(r, c, m); });
  QObject::connect(plot_, &PlotView::focusMoved, widget_, [this](int r, int c) { showCard(r, c); });
  QObject::connect(find_, &QLineEdit::textChanged, widget_, [this] { find(); });
}

void HeadsPanel::changed(Change c) {
  if (c == Change::Models) {  // heads belong to one model
    undo_.clear();
    redo_.clear();
    requested_ = {ctx_.wb.ablated(), qs(ctx_.wb.ablation_kind())};
  }
  if (c == Change::Models || c == Change::Interventions) show_ablated();
  if (c == Change::Models || c == Change::Input || c == Change::Example) card_->clear();  // another head, batch or row
  if (c == Change::Models || c == Change::Input || c == Change::Interventions) refresh();
}

void HeadsPanel::save(QJsonObject& w) const { w["ablation"] = ablation_combo_->currentText(); }

void HeadsPanel::restore(const QJsonObject& w) {
  QSignalBlocker b(ablation_combo_);  // the workspace's job sets the ablation itself
  ablation_combo_->setCurrentText(w["ablation"].toString("zero"));
}

QString HeadsPanel::reading() const { return reading_->text(); }
QString HeadsPanel::cardText() const { return card_->text(); }

QString HeadsPanel::findHeads(const QString& query) {
  find_->setText(query);
  return found_->text();
}

void HeadsPanel::find() {
  const QString q = find_->text().trimmed();
  const Grid& g = plot_->grid();
  std::vector<std::pair<double, std::pair<int, int>>> hits;  // (score, cell)
  if (!q.isEmpty() && g.rows > 0) {
    const QRegularExpressionMatch top = QRegularExpression("^top\\s*(\\d+)$", QRegularExpression::CaseInsensitiveOption).match(q);
    for (int r = 0; r < g.rows; ++r)
      for (int c = 0; c < g.cols; ++c) {
        const QString label = qs(g.cell_label(r, c));
        if (label.isEmpty()) continue;
        const double v = g.at(r, c);
        if (top.hasMatch() ? std::isfinite(v) : label.contains(q, Qt::CaseInsensitive)) hits.push_back({v, {r, c}});
      }
    // Highest score first; an undefined score (NaN) last.
    std::stable_sort(hits.begin(), hits.end(), [](const auto& a, const auto& b) {
      return std::isfinite(a.first) && (!std::isfinite(b.first) || a.first > b.first);
    });
    if (top.hasMatch()) hits.resize(std::min<size_t>(hits.size(), top.captured(1).toULongLong()));
  }
  std::vector<std::pair<int, int>> cells;
  QStringList names;
  for (const auto& [v, cell] : hits) {
    cells.push_back(cell);
    if (names.size() < 12) names << QStringLiteral("%1 %2").arg(qs(g.cell_label(cell.first, cell.second)), num(v));
  }
  plot_->highlightCells(cells);
  found_->setText(q.isEmpty() ? QString()
                  : hits.empty() ? QObject::tr("no head matches \"%1\"").arg(q)
                                 : QObject::tr("%n head(s), by %1: ", "", static_cast<int>(hits.size()))
                                           .arg(score_combo_->currentText()) +
                                       names.join(", ") + (hits.size() > 12 ? QStringLiteral(", …") : QString()));
}

void HeadsPanel::showCard(int r, int c) {
  const std::string label = plot_->grid().cell_label(r, c);
  if (label.empty() || !ctx_.wb.has_targets()) return card_->clear();
  ctx_.job<HeadCard>(QObject::tr("head card"), [this, label](const Progress& p) { return ctx_.wb.head_card(label, p); },
      [this](const HeadCard& h) {
        QString scores, looks;
        for (const auto& [name, v] : h.scores) scores += QStringLiteral("%1 %2  ").arg(qs(name), num(v));
        for (const auto& [key, w] : h.attended) looks += QStringLiteral("%1 (%2)  ").arg(qs(key), num(w));
        card_->setText(QObject::tr("<b>%1</b><br>%2<br>%3 at the answer: %4<br>direct logit attribution %5 of the answer "
                                   "logit %6")
                           .arg(qs(h.head), scores.trimmed(), qs(h.map), looks.trimmed().toHtmlEscaped(), num(h.dla),
                                num(h.answer_logit)));
      });
}
QString HeadsPanel::ablatedText() const { return ablated_label_->text(); }

void HeadsPanel::show_ablated() {
  const auto ab = ctx_.wb.ablated();
  QString list;
  for (const auto& h : ab) list += qs(h) + " ";
  ablated_label_->setText(ab.empty() ? QObject::tr("no head ablated; click a head to ablate it, shift-click for sets")
                                     : QObject::tr("%1-ablated: %2").arg(qs(ctx_.wb.ablation_kind()), list.trimmed()));
}

void HeadsPanel::refresh() {
  if (ctx_.wb.model_count() == 0 || ctx_.wb.example_count() == 0) return;
  if (!ctx_.wb.has_targets()) {  // typed tokens or text: a state of the input, not an error to pop up
    plot_->showMessage(QObject::tr("no head scores: the typed input has no answers"));
    reading_->setText(QObject::tr("Head scores (and clicking heads to ablate them) need examples with answers: draw "
                                  "task examples or load a dataset in Input. Outcome still shows the predictions."));
    return;
  }
  const std::string score = score_combo_->currentText().toStdString();
  ctx_.job<std::pair<Grid, std::string>>(QObject::tr("head scores"), [this, score](const Progress& p) {
    Grid g = ctx_.wb.head_scores(score, p);
    return std::make_pair(g, ctx_.wb.head_scores_reading());
  }, [this](const std::pair<Grid, std::string>& r) {
                   const Grid& g = r.first;
                   plot_->showGrid(g);
                   reading_->setText(qs(r.second));
                   const auto ablated = ctx_.wb.ablated();
                   std::vector<std::pair<int, int>> marks;
                   for (int r = 0; r < g.rows; ++r)
                     for (int c = 0; c < g.cols; ++c)
                       if (std::find(ablated.begin(), ablated.end(), g.cell_label(r, c)) != ablated.end())
                         marks.push_back({r, c});
                   plot_->markCells(marks);
                   find();  // the search again, on the new scores
                   // The crosses are the heads ablated in the Outcome panel; the scores themselves are clean.
                   QJsonObject rec = QJsonDocument::fromJson(QByteArray::fromStdString(g.provenance)).object();
                   QJsonObject fig = rec["figure"].toObject();
                   QJsonArray marked;
                   for (const auto& h : ablated) marked.append(qs(h));
                   fig["marked"] = marked;
                   rec["figure"] = fig;
                   plot_->setRecord(QJsonDocument(rec).toJson(QJsonDocument::Compact).toStdString());
                 });
}

void HeadsPanel::toggle(int r, int c, Qt::KeyboardModifiers mods) {
  const std::string label = plot_->grid().cell_label(r, c);
  if (label.empty()) return;  // no head there
  std::vector<std::string> cur = ctx_.wb.ablated();
  const bool had = std::find(cur.begin(), cur.end(), label) != cur.end();
  if (mods & Qt::ShiftModifier) {  // sets: add or remove this head
    if (had) cur.erase(std::remove(cur.begin(), cur.end(), label), cur.end());
    else cur.push_back(label);
  } else {  // a plain click: this head alone, or nothing if it was the only one
    cur = had && cur.size() == 1 ? std::vector<std::string>{} : std::vector<std::string>{label};
  }
  ablate(cur);
}

HeadsPanel::State HeadsPanel::now() const { return requested_; }

QStringList HeadsPanel::history() const {
  QStringList out;
  auto line = [](const State& s) {
    QString l;
    for (const auto& h : s.heads) l += " " + qs(h);
    return s.heads.empty() ? QStringLiteral("none") : s.kind + ":" + l;
  };
  for (const auto& s : undo_) out << line(s);
  out << line(now()) + QObject::tr("  (now)");
  for (auto it = redo_.rbegin(); it != redo_.rend(); ++it) out << line(*it);
  return out;
}

void HeadsPanel::undo() {
  if (undo_.empty()) return;
  redo_.push_back(now());
  const State s = undo_.back();
  undo_.pop_back();
  apply(s);
}

void HeadsPanel::redo() {
  if (redo_.empty()) return;
  undo_.push_back(now());
  const State s = redo_.back();
  redo_.pop_back();
  apply(s);
}

void HeadsPanel::apply(const State& s) {
  {
    QSignalBlocker b(ablation_combo_);
    ablation_combo_->setCurrentText(s.kind);
  }
  const std::vector<State> keep_undo = undo_, keep_redo = redo_;
  ablate(s.heads);  // records nothing: the history is put back below
  undo_ = keep_undo;
  redo_ = keep_redo;
}

void HeadsPanel::ablate(const std::vector<std::string>& heads) {
  const State before = now();
  if (before.heads != heads || before.kind != ablation_combo_->currentText()) {
    undo_.push_back(before);
    redo_.clear();
  }
  requested_ = {heads, ablation_combo_->currentText()};
  const std::string kind = ablation_combo_->currentText().toStdString();
  auto started = std::make_shared<QElapsedTimer>();
  started->start();
  ctx_.job<Outcome>(QObject::tr("ablating"), [this, heads, kind](const Progress&) {
    ctx_.wb.set_ablation(heads, kind);
    return ctx_.wb.outcome(true);
  }, [this, started](const Outcome& o) {
    ctx_.after = o;
    ctx_.last_outcome_ms = static_cast<double>(started->nsecsElapsed()) / 1e6;
    ctx_.changed(Change::Interventions);  // show_ablated() among the rest
  });
}

}  // namespace mechscope::app
