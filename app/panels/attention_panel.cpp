// The Attention panel (see attention_panel.h).
#include "app/panels/attention_panel.h"

#include <QCheckBox>
#include <QComboBox>
#include <QLabel>
#include <QSpinBox>
#include <QVBoxLayout>

#include "app/plotview.h"

namespace mechscope::app {

AttentionPanel::AttentionPanel(PanelContext& ctx) : Panel(ctx) {
  layer_spin_ = new QSpinBox;
  mixer_combo_ = new QComboBox;
  head_spin_ = new QSpinBox;
  mean_heads_ = new QCheckBox(QObject::tr("mean over heads"));
  normalise_ = new QCheckBox(QObject::tr("min-max normalise"));
  every_head_ = new QCheckBox(QObject::tr("every head"));
  every_head_->setToolTip(QObject::tr("Every head of the layer side by side (a Mamba1 layer's channels in 16 groups); "
                                      "click a tile to see that head alone"));
  run_combo_ = new QComboBox;
  run_combo_->addItems({QObject::tr("clean run"), QObject::tr("with the ablations"), QObject::tr("ablated − clean")});
  run_combo_->setToolTip(QObject::tr("Which run the map shows: the clean one, the one with the heads ablated in the Heads "
                                     "panel, or the change they make (a head ablated upstream changes what later layers "
                                     "attend to)"));
  run_combo_->setEnabled(false);
  plot_ = ctx.plot("attention");
  widget_ = new QWidget;
  auto* al = new QVBoxLayout(widget_);
  al->addWidget(row({new QLabel(QObject::tr("layer")), layer_spin_, new QLabel(QObject::tr("mixer")), mixer_combo_,
                     new QLabel(QObject::tr("head")), head_spin_, mean_heads_, normalise_}));
  al->addWidget(row({new QLabel(QObject::tr("run")), run_combo_, every_head_}));
  al->addWidget(plot_, 1);
  QObject::connect(layer_spin_, qOverload<int>(&QSpinBox::valueChanged), widget_, [this] { refreshMixers(); });
  QObject::connect(mixer_combo_, qOverload<int>(&QComboBox::currentIndexChanged), widget_, [this] {
    head_spin_->setRange(0, std::max(0, mixer_combo_->currentData().toInt() - 1));
    refresh();
  });
  QObject::connect(head_spin_, qOverload<int>(&QSpinBox::valueChanged), widget_, [this] { refresh(); });
  QObject::connect(mean_heads_, &QCheckBox::toggled, widget_, [this] { refresh(); });
  QObject::connect(normalise_, &QCheckBox::toggled, widget_, [this] { refresh(); });
  QObject::connect(run_combo_, qOverload<int>(&QComboBox::currentIndexChanged), widget_, [this] { refresh(); });
  QObject::connect(every_head_, &QCheckBox::toggled, widget_, [this](bool on) {
    head_spin_->setEnabled(!on);
    mean_heads_->setEnabled(!on);
    refresh();
  });
  QObject::connect(plot_, &PlotView::cellClicked, widget_, [this](int r, int c, Qt::KeyboardModifiers) {
    const std::string tile = plot_->grid().cell_label(r, c);  // "H3" in the small multiples
    if (!every_head_->isChecked() || tile.size() < 2 || tile[0] != 'H') return;
    QSignalBlocker b(head_spin_);
    head_spin_->setValue(std::stoi(tile.substr(1)));
    mean_heads_->setChecked(false);
    setEveryHead(false);
  });
}

void AttentionPanel::setEveryHead(bool every) { every_head_->setChecked(every); }

void AttentionPanel::setRun(int run) { run_combo_->setCurrentIndex(run); }

void AttentionPanel::changed(Change c) {
  if (c == Change::Models || c == Change::Input) {
    if (ctx_.wb.model_count() == 0) return;
    {
      QSignalBlocker b(layer_spin_);
      layer_spin_->setRange(0, std::max(0, ctx_.wb.summary().layers - 1));
      if (pending_.contains("layer")) layer_spin_->setValue(pending_["layer"].toInt());
    }
    syncRun();  // another model or input: its own ablations (none yet)
    refreshMixers();
  } else if (c == Change::Example) {
    refresh();
  } else if (c == Change::Interventions) {
    syncRun();
    refresh();  // the title says whether the ablations apply
  }
}

void AttentionPanel::syncRun() {
  const bool any = !ctx_.wb.ablated().empty();
  QSignalBlocker b(run_combo_);
  run_combo_->setEnabled(any);
  if (!any) run_combo_->setCurrentIndex(0);
}

void AttentionPanel::save(QJsonObject& w) const {
  w["layer"] = layer_spin_->value();
  w["mixer"] = mixer_combo_->currentText();
  w["head"] = head_spin_->value();
  w["mean_heads"] = mean_heads_->isChecked();
  w["normalise"] = normalise_->isChecked();
  w["attention_run"] = run_combo_->currentIndex();
}

void AttentionPanel::restore(const QJsonObject& w) {
  pending_ = QJsonObject();
  for (const char* k : {"layer", "mixer", "head", "mean_heads", "normalise", "attention_run"})
    if (w.contains(k)) pending_[k] = w[k];
}

// The mixers of the chosen layer (and the head range of the first), then the map.
void AttentionPanel::refreshMixers() {
  const int l = layer_spin_->value();
  ctx_.job<std::vector<std::pair<std::string, int>>>(QObject::tr("reading layer"),
      [this, l](const Progress&) { return ctx_.wb.mixers(l); },
      [this, l](const std::vector<std::pair<std::string, int>>& ms) {
        if (layer_spin_->value() != l) return;  // stale: the layer changed since (its own reading is queued)
        QSignalBlocker b(mixer_combo_), bh(head_spin_), bm(mean_heads_), bn(normalise_), br(run_combo_);
        mixer_combo_->clear();
        for (const auto& [m, H] : ms) mixer_combo_->addItem(qs(m), H);
        if (pending_.contains("mixer") && mixer_combo_->findText(pending_["mixer"].toString()) >= 0)
          mixer_combo_->setCurrentText(pending_["mixer"].toString());
        head_spin_->setRange(0, std::max(0, mixer_combo_->currentData().toInt() - 1));
        if (!pending_.isEmpty() && pending_["layer"].toInt(l) == l) {  // a workspace's view, once its mixers are known
          head_spin_->setValue(pending_["head"].toInt(head_spin_->value()));
          mean_heads_->setChecked(pending_["mean_heads"].toBool(mean_heads_->isChecked()));
          normalise_->setChecked(pending_["normalise"].toBool(normalise_->isChecked()));
          syncRun();
          if (run_combo_->isEnabled()) run_combo_->setCurrentIndex(pending_["attention_run"].toInt(0));
          pending_ = QJsonObject();
        }
        refresh();
      });
}

void AttentionPanel::refresh() {
  if (ctx_.wb.model_count() == 0 || mixer_combo_->count() == 0 || ctx_.wb.example_count() == 0) return;
  const int l = layer_spin_->value(),
            h = every_head_->isChecked() ? Workbench::kEveryHead : mean_heads_->isChecked() ? -1 : head_spin_->value();
  const std::string m = mixer_combo_->currentText().toStdString();
  const bool norm = normalise_->isChecked();
  const MapRun run = run_combo_->isEnabled() ? static_cast<MapRun>(run_combo_->currentIndex()) : MapRun::Clean;
  ctx_.job<Grid>(QObject::tr("attention map"),
                 [this, l, m, h, norm, run](const Progress&) { return ctx_.wb.attention(l, m, h, norm, -1, run); },
                 [this](const Grid& g) { plot_->showGrid(g); });
}

}  // namespace mechscope::app
