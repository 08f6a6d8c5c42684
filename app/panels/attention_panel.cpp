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
  plot_ = ctx.plot("attention");
  widget_ = new QWidget;
  auto* al = new QVBoxLayout(widget_);
  al->addWidget(row({new QLabel(QObject::tr("layer")), layer_spin_, new QLabel(QObject::tr("mixer")), mixer_combo_,
                     new QLabel(QObject::tr("head")), head_spin_, mean_heads_, normalise_}));
  al->addWidget(plot_, 1);
  QObject::connect(layer_spin_, qOverload<int>(&QSpinBox::valueChanged), widget_, [this] { refreshMixers(); });
  QObject::connect(mixer_combo_, qOverload<int>(&QComboBox::currentIndexChanged), widget_, [this] {
    head_spin_->setRange(0, std::max(0, mixer_combo_->currentData().toInt() - 1));
    refresh();
  });
  QObject::connect(head_spin_, qOverload<int>(&QSpinBox::valueChanged), widget_, [this] { refresh(); });
  QObject::connect(mean_heads_, &QCheckBox::toggled, widget_, [this] { refresh(); });
  QObject::connect(normalise_, &QCheckBox::toggled, widget_, [this] { refresh(); });
}

void AttentionPanel::changed(Change c) {
  if (c == Change::Models || c == Change::Input) {
    if (ctx_.wb.model_count() == 0) return;
    {
      QSignalBlocker b(layer_spin_);
      layer_spin_->setRange(0, std::max(0, ctx_.wb.summary().layers - 1));
    }
    refreshMixers();
  } else if (c == Change::Example) {
    refresh();
  }
}

void AttentionPanel::save(QJsonObject& w) const {
  w["layer"] = layer_spin_->value();
  w["head"] = head_spin_->value();
}

// The mixers of the chosen layer (and the head range of the first), then the map.
void AttentionPanel::refreshMixers() {
  const int l = layer_spin_->value();
  ctx_.job<std::vector<std::pair<std::string, int>>>(QObject::tr("reading layer"),
      [this, l](const Progress&) { return ctx_.wb.mixers(l); },
      [this](const std::vector<std::pair<std::string, int>>& ms) {
        QSignalBlocker b(mixer_combo_);
        mixer_combo_->clear();
        for (const auto& [m, H] : ms) mixer_combo_->addItem(qs(m), H);
        head_spin_->setRange(0, std::max(0, ms.empty() ? 0 : ms[0].second - 1));
        refresh();
      });
}

void AttentionPanel::refresh() {
  if (ctx_.wb.model_count() == 0 || mixer_combo_->count() == 0 || ctx_.wb.example_count() == 0) return;
  const int l = layer_spin_->value(), h = mean_heads_->isChecked() ? -1 : head_spin_->value();
  const std::string m = mixer_combo_->currentText().toStdString();
  const bool norm = normalise_->isChecked();
  ctx_.job<Grid>(QObject::tr("attention map"), [this, l, m, h, norm](const Progress&) { return ctx_.wb.attention(l, m, h, norm); },
                 [this](const Grid& g) { plot_->showGrid(g); });
}

}  // namespace mechscope::app
