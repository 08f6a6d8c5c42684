// The Compare panel (see compare_panel.h).
#include "app/panels/compare_panel.h"

#include <QComboBox>
#include <QGridLayout>
#include <QHeaderView>
#include <QLabel>
#include <QPushButton>
#include <QSpinBox>
#include <QTableWidget>
#include <QVBoxLayout>

#include "app/plotview.h"

namespace mechscope::app {

ComparePanel::ComparePanel(PanelContext& ctx) : Panel(ctx) {
  table_ = new QTableWidget(0, 4);
  table_->setHorizontalHeaderLabels({QObject::tr("model"), QObject::tr("accuracy"), QObject::tr("answer probability"),
                                     QObject::tr("note")});
  table_->horizontalHeader()->setStretchLastSection(true);
  for (int c = 0; c < 3; ++c) table_->horizontalHeader()->setSectionResizeMode(c, QHeaderView::ResizeToContents);
  table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  auto* cmp_b = new QPushButton(QObject::tr("Compare loaded models on these examples"));
  view_ = new QComboBox;
  view_->addItems({QObject::tr("attention (mean over heads)"), QObject::tr("head grid (aggregate score)"),
                   QObject::tr("embedding PCA")});
  layer_ = new QSpinBox;
  layer_->setRange(0, 64);
  box_ = new QWidget;
  new QGridLayout(box_);  // every loaded model, in rows of two or three
  box_->layout()->setContentsMargins(0, 0, 0, 0);
  widget_ = new QWidget;
  auto* cl = new QVBoxLayout(widget_);
  cl->addWidget(cmp_b);
  table_->verticalHeader()->setVisible(false);
  cl->addWidget(table_);
  auto* note = new QLabel(QObject::tr("Every model runs clean here: ablations apply to the current model's Outcome and "
                                      "its Attention view."));
  note->setWordWrap(true);
  cl->addWidget(note);
  cl->addWidget(row({new QLabel(QObject::tr("side by side:")), view_, new QLabel(QObject::tr("layer")), layer_}));
  cl->addWidget(box_, 3);
  QObject::connect(cmp_b, &QPushButton::clicked, widget_, [this] { refreshPlots(); });
  QObject::connect(view_, qOverload<int>(&QComboBox::currentIndexChanged), widget_, [this] { refreshPlots(); });
  QObject::connect(layer_, qOverload<int>(&QSpinBox::valueChanged), widget_, [this] { refreshPlots(); });
}

void ComparePanel::compare(int view, int layer) {
  QSignalBlocker b1(view_), b2(layer_);
  view_->setCurrentIndex(view);
  layer_->setValue(layer);
  refreshPlots();
}

void ComparePanel::refreshTable() {
  ctx_.job<std::vector<Workbench::CompareRow>>(QObject::tr("comparing models"), [this](const Progress&) { return ctx_.wb.compare(); },
      [this](const std::vector<Workbench::CompareRow>& rows) {
        table_->setRowCount(static_cast<int>(rows.size()));
        // Tall enough for the header and every row (up to eight; more scroll), so that neither is cut.
        const int shown = std::min<int>(static_cast<int>(rows.size()), 8);
        table_->setFixedHeight(table_->horizontalHeader()->sizeHint().height() + 2 * table_->frameWidth() +
                               shown * table_->verticalHeader()->defaultSectionSize() + 2);
        for (size_t i = 0; i < rows.size(); ++i) {
          table_->setItem(i, 0, new QTableWidgetItem(qs(rows[i].model)));
          table_->setItem(i, 1, new QTableWidgetItem(num(rows[i].accuracy)));
          table_->setItem(i, 2, new QTableWidgetItem(num(rows[i].prob)));
          table_->setItem(i, 3, new QTableWidgetItem(qs(rows[i].note)));
        }
      });
}

void ComparePanel::refreshPlots() {
  if (ctx_.wb.model_count() == 0) return;
  refreshTable();
  const int n = ctx_.wb.model_count();  // all of them (four used to be shown, a fifth silently left out)
  const int columns = n <= 2 ? n : n <= 4 ? 2 : 3;
  auto* grid = static_cast<QGridLayout*>(box_->layout());
  while (static_cast<int>(plots_.size()) < n) plots_.push_back(ctx_.plot(QStringLiteral("compare-%1").arg(plots_.size())));
  for (int i = 0; i < static_cast<int>(plots_.size()); ++i) grid->addWidget(plots_[i], i / columns, i % columns);
  for (size_t i = 0; i < plots_.size(); ++i) plots_[i]->setVisible(static_cast<int>(i) < n);
  for (int i = 0; i < n; ++i) showModel(i, view_->currentIndex(), layer_->value());
}

void ComparePanel::showModel(int i, int view, int layer) {
  PlotView* plot = plots_[i];
  if (view == 2) {
    ctx_.job<std::pair<std::string, Embedding>>(QObject::tr("comparing embeddings"), [this, i](const Progress&) {
      return std::make_pair(ctx_.wb.summary(i).name, ctx_.wb.embeddings(0, 1, -1, i));
    }, [plot](const std::pair<std::string, Embedding>& r) {
      plot->showScatter(r.second.x, r.second.y, r.second.labels, "PC1", "PC2",
                        QStringLiteral("%1: locality %2").arg(qs(r.first)).arg(num(r.second.locality)));
      plot->setRecord(r.second.provenance);
    });
    return;
  }
  if (!ctx_.wb.reads_input(i)) {  // its own vocabulary: the table says so; the plot too, instead of an error
    plot->showMessage(QObject::tr("%1\nreads another vocabulary:\nnot run on this input").arg(qs(ctx_.wb.summary(i).name)));
    return;
  }
  ctx_.job<Grid>(QObject::tr("comparing models"), [this, i, view, layer](const Progress& p) {
    Workbench& wb = ctx_.wb;
    const std::string name = wb.summary(i).name;
    Grid g;
    if (view == 0) {
      const std::string mixer = wb.map_mixer(layer, i);
      g = wb.attention(layer, mixer, -1, true, i);
      g.title = name + ": L" + std::to_string(layer) + " " + mixer + ", clean run";
    } else {
      g = wb.head_scores("aggregate", p, i);
      g.title = name + ": aggregate score, clean run";
    }
    return g;
  }, [plot](const Grid& g) { plot->showGrid(g); });
}

}  // namespace mechscope::app
