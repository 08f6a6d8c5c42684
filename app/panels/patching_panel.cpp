// The Patching panel (see patching_panel.h).
#include "app/panels/patching_panel.h"

#include <QComboBox>
#include <QLabel>
#include <QPushButton>
#include <QVBoxLayout>

#include "app/plotview.h"

namespace mechscope::app {

PatchingPanel::PatchingPanel(PanelContext& ctx) : Panel(ctx) {
  site_combo_ = new QComboBox;
  for (const auto& s : Workbench::patch_sites()) site_combo_->addItem(qs(s));
  role_combo_ = new QComboBox;
  role_combo_->setToolTip(QObject::tr("the role whose token the corruption replaces (the task's default first)"));
  auto* run_b = new QPushButton(QObject::tr("Run patching"));
  run_b->setShortcut(QKeySequence("Ctrl+P"));
  plot_ = ctx.plot("patching");
  label_ = new QLabel(QObject::tr("clean run patched into the corrupted run, one site and position at a time; click a cell"));
  label_->setWordWrap(true);
  view_combo_ = new QComboBox;
  view_combo_->addItems({QObject::tr("by position"), QObject::tr("aligned to the corruption")});
  view_combo_->setToolTip(QObject::tr("By position: the mean over examples at each absolute position (labelled with the "
                                      "current example's tokens). Aligned: each example's score at its own corrupted "
                                      "token, the tokens after it, and its readout; with a key corrupted, corrupted+1 is "
                                      "the key's value token (induction)."));
  widget_ = new QWidget;
  auto* pl = new QVBoxLayout(widget_);
  pl->addWidget(row({new QLabel(QObject::tr("site")), site_combo_, new QLabel(QObject::tr("corrupt")), role_combo_, run_b,
                     new QLabel(QObject::tr("view")), view_combo_}));
  pl->addWidget(plot_, 1);
  pl->addWidget(label_);
  QObject::connect(run_b, &QPushButton::clicked, widget_, [this] { run(); });
  QObject::connect(view_combo_, qOverload<int>(&QComboBox::currentIndexChanged), widget_, [this] { show(); });
  QObject::connect(plot_, &PlotView::cellClicked, widget_, [this](int r, int c, Qt::KeyboardModifiers) { cellClicked(r, c); });
}

void PatchingPanel::changed(Change c) {
  if (c == Change::Interventions) return show();  // the sweep is clean: its title says so while ablations are active
  if (c != Change::Models && c != Change::Input) return;
  ctx_.job<std::vector<std::string>>(QObject::tr("reading the task"),
      [this](const Progress&) { return ctx_.wb.corruptible_roles(); },
      [this](const std::vector<std::string>& roles) {
        const QString keep = role_combo_->currentText();
        role_combo_->clear();
        for (const auto& r : roles) role_combo_->addItem(qs(r));
        if (role_combo_->findText(keep) >= 0) role_combo_->setCurrentText(keep);
      });
}

void PatchingPanel::save(QJsonObject& w) const {
  w["site"] = site_combo_->currentText();
  w["patching_view"] = view_combo_->currentIndex() == 1 ? "aligned" : "positions";
}

void PatchingPanel::restore(const QJsonObject& w) {
  site_combo_->setCurrentText(w["site"].toString("resid_pre"));
  QSignalBlocker b(view_combo_);  // no sweep to show yet
  view_combo_->setCurrentIndex(w["patching_view"].toString("positions") == "aligned" ? 1 : 0);
}

void PatchingPanel::run() {
  const std::string site = site_combo_->currentText().toStdString(), role = role_combo_->currentText().toStdString();
  const bool aligned = view_combo_->currentIndex() == 1;
  ctx_.job<Grid>(QObject::tr("patching sweep"), [this, site, role, aligned](const Progress& p) {
    Grid by_position = ctx_.wb.patching(site, role, p);
    return aligned ? ctx_.wb.patching_aligned() : by_position;
  }, [this, aligned](const Grid& g) { showGrid(g, aligned); });
}

void PatchingPanel::show() {
  if (!plot_->hasData()) return;  // no sweep yet
  const bool aligned = view_combo_->currentIndex() == 1;
  ctx_.job<Grid>(QObject::tr("patching view"), [this, aligned](const Progress&) {
    return aligned ? ctx_.wb.patching_aligned() : ctx_.wb.patching_grid();
  }, [this, aligned](const Grid& g) { showGrid(g, aligned); });
}

void PatchingPanel::showGrid(const Grid& g, bool aligned) {
  plot_->showGrid(g, true);
  label_->setText(qs(g.title) + (aligned ? QObject::tr("; each example read at its own corrupted token, the tokens "
                                                       "around it and its readout (corrupted+1: a corrupted key's value)")
                                         : QObject::tr("; click a cell to apply that patch")));
}

void PatchingPanel::cellClicked(int r, int c) {
  if (view_combo_->currentIndex() == 1) {
    const auto& g = plot_->grid();
    label_->setText(QObject::tr("%1 at %2: mean score %3 over the kept examples; switch the view to \"by position\" to "
                                "apply one patch")
                        .arg(qs(g.row_labels[r])).arg(qs(g.col_labels[c])).arg(num(g.at(r, c))));
    return;
  }
  ctx_.job<Outcome>(QObject::tr("applying the patch"), [this, r, c](const Progress&) { return ctx_.wb.patch_cell(r, c); },
      [this, r, c](const Outcome& o) {
        plot_->markCells({{r, c}});  // which cell the outcome below (and in the Outcome panel) belongs to
        const auto& cell = plot_->grid();
        ctx_.patched = o;
        ctx_.patched_what = QObject::tr("%1 at %2 (%3)").arg(qs(cell.row_labels[r]), qs(cell.col_labels[c]),
                                                             site_combo_->currentText());
        ctx_.changed(Change::Outcome);
        QString top;
        for (const auto& [t, p] : o.top) top += QStringLiteral("%1 %2  ").arg(qs(t)).arg(num(p));
        const auto& g = plot_->grid();
        label_->setText(QObject::tr("patched %1 at %2: answer probability %3, accuracy %4, logit difference %5 over %6 "
                                    "kept examples; current example (answer %7): %8")
                            .arg(qs(g.row_labels[r])).arg(qs(g.col_labels[c])).arg(num(o.prob)).arg(num(o.accuracy))
                            .arg(num(o.logit_diff)).arg(o.examples).arg(qs(o.target)).arg(top));
      });
}

}  // namespace mechscope::app
