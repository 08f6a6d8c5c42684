// PlotView: see plotview.h.
#include "app/plotview.h"

#include <cmath>
#include <fstream>
#include <limits>

#include <QApplication>
#include <QClipboard>
#include <QFileDialog>
#include <QFileInfo>
#include <QFontMetrics>
#include <QHBoxLayout>
#include <QInputDialog>
#include <QLabel>
#include <QMessageBox>
#include <QPushButton>
#include <QSaveFile>
#include <QSvgGenerator>
#include <QToolButton>
#include <QVBoxLayout>
#include <qcustomplot.h>

#include "core/util/files.h"

namespace mechscope::app {

namespace {
// Viridis (perceptually uniform, colour-blind safe); QCustomPlot 2.1 has no preset for it.
QCPColorGradient viridis() {
  QCPColorGradient g;
  g.clearColorStops();
  const QColor stops[] = {QColor(68, 1, 84), QColor(72, 40, 120), QColor(62, 74, 137), QColor(49, 104, 142),
                          QColor(38, 130, 142), QColor(31, 158, 137), QColor(53, 183, 121), QColor(109, 205, 89),
                          QColor(180, 222, 44), QColor(253, 231, 37)};
  for (int i = 0; i < 10; ++i) g.setColorStopAt(i / 9.0, stops[i]);
  g.setColorInterpolation(QCPColorGradient::ciRGB);
  return g;
}

// Blue - white - red, for signed scores (white at zero).
QCPColorGradient diverging() {
  QCPColorGradient g;
  g.clearColorStops();
  g.setColorStopAt(0.0, QColor(33, 102, 172));
  g.setColorStopAt(0.25, QColor(146, 197, 222));
  g.setColorStopAt(0.5, QColor(247, 247, 247));
  g.setColorStopAt(0.75, QColor(244, 165, 130));
  g.setColorStopAt(1.0, QColor(178, 24, 43));
  g.setColorInterpolation(QCPColorGradient::ciRGB);
  return g;
}

QString csvField(const std::string& s) {
  QString q = QString::fromStdString(s);
  if (q.contains(',') || q.contains('"') || q.contains('\n')) q = '"' + q.replace("\"", "\"\"") + '"';
  return q;
}
}  // namespace

// A colour map that draws exact cells when exporting to PDF or SVG (QCPColorMap embeds a small image that viewers
// scale with smoothing, blurring the cells): vector rectangles up to kVectorCells cells, else an image of the
// visible cells at the drawn size, each cell whole pixels (nearest neighbour).
class CellMap : public QCPColorMap {
 public:
  CellMap(QCPAxis* key, QCPAxis* value, const Grid* grid) : QCPColorMap(key, value), grid_(grid) {}
  bool exact = false;

 protected:
  void draw(QCPPainter* painter) override {
    if (!exact) return QCPColorMap::draw(painter);
    const Grid& g = *grid_;
    const bool log = mDataScaleType == QCPAxis::stLogarithmic;
    auto px = [this](double c, double r) { return QPointF(mKeyAxis->coordToPixel(c), mValueAxis->coordToPixel(r)); };
    // Only the cells in view (a zoomed 2,048-token map is not drawn whole).
    const int c0 = std::max(0, static_cast<int>(std::floor(mKeyAxis->range().lower + 0.5)));
    const int c1 = std::min(g.cols - 1, static_cast<int>(std::ceil(mKeyAxis->range().upper - 0.5)));
    const int r0 = std::max(0, static_cast<int>(std::floor(mValueAxis->range().lower + 0.5)));
    const int r1 = std::min(g.rows - 1, static_cast<int>(std::ceil(mValueAxis->range().upper - 0.5)));
    if (c1 < c0 || r1 < r0) return;
    if (static_cast<qint64>(g.rows) * g.cols <= PlotView::kVectorCells) {
      painter->setPen(Qt::NoPen);
      for (int r = r0; r <= r1; ++r)
        for (int c = c0; c <= c1; ++c) {
          const double v = g.at(r, c);
          if (std::isfinite(v))
            painter->fillRect(QRectF(px(c - 0.5, r - 0.5), px(c + 0.5, r + 0.5)).normalized(),
                              QColor::fromRgba(mGradient.color(v, mDataRange, log)));
        }
      return;
    }
    QImage cells(c1 - c0 + 1, r1 - r0 + 1, QImage::Format_ARGB32);
    cells.fill(Qt::transparent);
    for (int r = r0; r <= r1; ++r)
      for (int c = c0; c <= c1; ++c) {
        const double v = g.at(r, c);
        if (std::isfinite(v)) cells.setPixel(c - c0, r - r0, mGradient.color(v, mDataRange, log));
      }
    const QRectF target = QRectF(px(c0 - 0.5, r0 - 0.5), px(c1 + 0.5, r1 + 0.5)).normalized();
    if (px(0, 0).y() > px(0, 1).y()) cells = cells.mirrored(false, true);  // row 0 drawn at the bottom
    painter->drawImage(target.topLeft(), cells.scaled(target.size().toSize(), Qt::IgnoreAspectRatio, Qt::FastTransformation));
  }

 private:
  const Grid* grid_;
};

PlotView::PlotView(const QString& name, QWidget* parent) : QWidget(parent), name_(name) {
  setObjectName(name);
  plot_ = new QCustomPlot(this);
  plot_->setObjectName(name + "-plot");
  setFocusPolicy(Qt::StrongFocus);  // a grid's cells are reachable from the keyboard
  plot_->setFocusProxy(this);
  setAccessibleName(name);
  plot_->setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
  plot_->setMinimumSize(240, 200);
  plot_->setNoAntialiasingOnDrag(true);
  hover_ = new QLabel(this);
  hover_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  auto* exportButton = new QToolButton(this);
  exportButton->setText(tr("Export…"));
  exportButton->setToolTip(tr("Save the figure as PNG, PDF or SVG at a chosen size"));
  auto* csvButton = new QToolButton(this);
  csvButton->setText(tr("CSV…"));
  csvButton->setToolTip(tr("Save the data behind the figure as CSV"));
  auto* copyButton = new QToolButton(this);
  copyButton->setText(tr("Copy"));
  copyButton->setToolTip(tr("Copy the figure to the clipboard"));
  auto* resetButton = new QToolButton(this);
  resetButton->setText(tr("Reset zoom"));
  connect(exportButton, &QToolButton::clicked, this, &PlotView::exportDialog);
  connect(csvButton, &QToolButton::clicked, this, &PlotView::csvDialog);
  connect(copyButton, &QToolButton::clicked, this, [this] { copyToClipboard(); });
  connect(resetButton, &QToolButton::clicked, this, [this] {
    plot_->rescaleAxes();
    if (is_grid_) {
      plot_->xAxis->setRange(-0.5, grid_.cols - 0.5);
      plot_->yAxis->setRange(-0.5, grid_.rows - 0.5);
    }
    relabel();
    plot_->replot();
  });
  auto* bar = new QHBoxLayout;
  bar->addWidget(hover_, 1);
  bar->addWidget(resetButton);
  bar->addWidget(copyButton);
  bar->addWidget(csvButton);
  bar->addWidget(exportButton);
  auto* lay = new QVBoxLayout(this);
  lay->setContentsMargins(2, 2, 2, 2);
  lay->addWidget(plot_, 1);
  lay->addLayout(bar);
  connect(plot_, &QCustomPlot::mouseMove, this, &PlotView::onMouseMove);
  connect(plot_, &QCustomPlot::mousePress, this, &PlotView::onMousePress);
  // Labels for the axis rect's size, also when it changes without a zoom (a plot resized in its grid: Compare's
  // plots were labelled for their first, larger size and their rotated labels overlapped): afterLayout comes before
  // the axes are drawn, so the new labels show in the same replot.
  connect(plot_, &QCustomPlot::afterLayout, this, [this] {
    const QSize s = plot_->axisRect()->size();
    if (is_grid_ && s != labelled_for_) {
      labelled_for_ = s;
      relabel(s.width(), s.height());
    }
  });
  connect(plot_->xAxis, qOverload<const QCPRange&>(&QCPAxis::rangeChanged), this, [this] { relabel(); });
  connect(plot_->yAxis, qOverload<const QCPRange&>(&QCPAxis::rangeChanged), this, [this] { relabel(); });
}

void PlotView::setDark(bool dark) {
  dark_ = dark;
  const QColor bg = dark ? QColor(0x26, 0x28, 0x2b) : Qt::white, fg = dark ? QColor(0xdd, 0xdd, 0xdd) : Qt::black;
  plot_->setBackground(bg);
  for (QCPAxis* ax : {plot_->xAxis, plot_->yAxis, plot_->xAxis2, plot_->yAxis2}) {
    ax->setBasePen(QPen(fg));
    ax->setTickPen(QPen(fg));
    ax->setSubTickPen(QPen(fg));
    ax->setTickLabelColor(fg);
    ax->setLabelColor(fg);
  }
  if (plot_->plotLayout()->rowCount() > 1)
    if (auto* t = qobject_cast<QCPTextElement*>(plot_->plotLayout()->element(0, 0))) t->setTextColor(fg);
  plot_->replot();
}

// Back to an empty plot: no plottables, items, title row or colour scale, no data of any kind.
void PlotView::reset() {
  plot_->xAxis->setVisible(true);  // showMessage hides them
  plot_->yAxis->setVisible(true);
  plot_->clearPlottables();
  plot_->clearItems();
  marks_.clear();
  highlights_.clear();
  focus_frame_ = nullptr;  // cleared with the items
  while (plot_->plotLayout()->rowCount() > 1) {  // the title row
    plot_->plotLayout()->remove(plot_->plotLayout()->element(0, 0));
    plot_->plotLayout()->simplify();
  }
  for (int i = plot_->plotLayout()->columnCount() - 1; i > 0; --i)  // colour scales
    if (auto* el = plot_->plotLayout()->element(0, i)) plot_->plotLayout()->remove(el);
  plot_->plotLayout()->simplify();
  plot_->legend->setVisible(false);
  plot_->xAxis->setLabel(QString());
  plot_->yAxis->setLabel(QString());
  map_ = nullptr;
  record_.clear();
  labelled_for_ = QSize();  // the next layout labels the new figure for its own axis rect
  is_grid_ = false;
  grid_ = Grid{};
  sx_.clear();
  sy_.clear();
  slabels_.clear();
  cx_.clear();
  curves_.clear();
}

void PlotView::showMessage(const QString& text) {
  reset();
  has_data_ = false;
  plot_->xAxis->setVisible(false);
  plot_->yAxis->setVisible(false);
  addTitle(text);
  plot_->replot();
}

void PlotView::addTitle(const QString& title) {
  if (title.isEmpty()) return;
  plot_->plotLayout()->insertRow(0);
  auto* t = new QCPTextElement(plot_, title, QFont(font().family(), 9, QFont::Bold));
  t->setTextColor(dark_ ? QColor(0xdd, 0xdd, 0xdd) : Qt::black);
  plot_->plotLayout()->addElement(0, 0, t);
}

void PlotView::showGrid(const Grid& g, bool symmetric) {
  reset();
  grid_ = g;
  record_ = g.provenance;
  is_grid_ = true;
  has_data_ = g.rows > 0 && g.cols > 0;
  map_ = new CellMap(plot_->xAxis, plot_->yAxis, &grid_);
  // QCPColorMap draws a lone cell along an axis with zero width (its half cell is the range over size - 1): a
  // single column (one head per layer) or row is stored as two half-width cells of the same value.
  const int nc = std::max(g.cols, 1), nr = std::max(g.rows, 1);
  const int sc = nc == 1 ? 2 : nc, sr = nr == 1 ? 2 : nr;
  map_->data()->setSize(sc, sr);
  map_->data()->setRange(nc == 1 ? QCPRange(-0.25, 0.25) : QCPRange(0, nc - 1),
                         nr == 1 ? QCPRange(-0.25, 0.25) : QCPRange(0, nr - 1));
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (int r = 0; r < (g.rows > 0 ? sr : 0); ++r)
    for (int c = 0; c < (g.cols > 0 ? sc : 0); ++c) {
      const double v = g.at(nr == 1 ? 0 : r, nc == 1 ? 0 : c);
      map_->data()->setCell(c, r, v);
      if (std::isfinite(v)) {
        lo = std::min(lo, v);
        hi = std::max(hi, v);
        map_->data()->setAlpha(c, r, 255);
      } else {
        map_->data()->setAlpha(c, r, 0);
      }
    }
  if (!std::isfinite(lo)) lo = 0, hi = 1;
  if (lo < 0 && hi > 0) symmetric = true;  // signed values: zero must be visible (white), not mid-way up a ramp
  if (symmetric) {
    const double m = std::max({std::abs(lo), std::abs(hi), 1e-9});
    lo = -m;
    hi = m;
  }
  if (hi <= lo) hi = lo + 1e-9;
  map_->setInterpolate(false);
  map_->setTightBoundary(false);
  QCPColorGradient grad = symmetric ? diverging() : viridis();
  grad.setNanHandling(QCPColorGradient::nhTransparent);
  map_->setGradient(grad);
  map_->setDataRange(QCPRange(lo, hi));
  auto* scale = new QCPColorScale(plot_);
  plot_->plotLayout()->addElement(0, 1, scale);
  scale->setType(QCPAxis::atRight);
  map_->setColorScale(scale);
  scale->setGradient(grad);
  scale->setDataRange(QCPRange(lo, hi));
  scale->axis()->setLabel(QString::fromStdString(g.value_title));
  scale->axis()->setLabelColor(plot_->xAxis->labelColor());
  scale->axis()->setTickLabelColor(plot_->xAxis->tickLabelColor());
  plot_->xAxis->setLabel(QString::fromStdString(g.x_title));
  plot_->yAxis->setLabel(QString::fromStdString(g.y_title));
  auto* group = new QCPMarginGroup(plot_);
  plot_->axisRect()->setMarginGroup(QCP::msBottom | QCP::msTop, group);
  scale->setMarginGroup(QCP::msBottom | QCP::msTop, group);
  plot_->yAxis->setRangeReversed(true);
  plot_->xAxis->setRange(-0.5, g.cols - 0.5);
  plot_->yAxis->setRange(-0.5, g.rows - 0.5);
  plot_->xAxis->setTickLabelRotation(g.cols > 12 ? 60 : 0);
  addTitle(QString::fromStdString(g.title));
  setAccessibleDescription(QString::fromStdString(g.title));
  if (focus_.x() >= g.cols || focus_.y() >= g.rows) focus_ = QPoint(-1, -1);
  if (hasFocus()) showFocus();
  relabel();
  plot_->replot();
}

void PlotView::focusInEvent(QFocusEvent* e) {
  QWidget::focusInEvent(e);
  if (is_grid_ && has_data_ && focus_.x() < 0) focus_ = QPoint(0, 0);
  showFocus();
}

void PlotView::focusOutEvent(QFocusEvent* e) {
  QWidget::focusOutEvent(e);
  if (focus_frame_) focus_frame_->setVisible(false);
  plot_->replot();
}

void PlotView::keyPressEvent(QKeyEvent* e) {
  if (!is_grid_ || !has_data_) return QWidget::keyPressEvent(e);
  QPoint f = focus_.x() < 0 ? QPoint(0, 0) : focus_;
  switch (e->key()) {
    case Qt::Key_Left: f.rx() = std::max(0, f.x() - 1); break;
    case Qt::Key_Right: f.rx() = std::min(grid_.cols - 1, f.x() + 1); break;
    case Qt::Key_Up: f.ry() = std::max(0, f.y() - 1); break;
    case Qt::Key_Down: f.ry() = std::min(grid_.rows - 1, f.y() + 1); break;
    case Qt::Key_Home: f = QPoint(0, f.y()); break;
    case Qt::Key_End: f = QPoint(grid_.cols - 1, f.y()); break;
    case Qt::Key_Return:
    case Qt::Key_Enter:
    case Qt::Key_Space:
      emit cellClicked(f.y(), f.x(), e->modifiers());
      return;
    default:
      return QWidget::keyPressEvent(e);
  }
  focus_ = f;
  showFocus();
}

void PlotView::setFocusCell(int row, int col) {
  if (!is_grid_ || row < 0 || col < 0 || row >= grid_.rows || col >= grid_.cols) return;
  focus_ = QPoint(col, row);
  showFocus();
}

void PlotView::showFocus() {
  if (!is_grid_ || focus_.x() < 0) return;
  if (!focus_frame_) {
    focus_frame_ = new QCPItemRect(plot_);
    focus_frame_->setPen(QPen(dark_ ? Qt::white : Qt::black, 2, Qt::DashLine));
    focus_frame_->setBrush(Qt::NoBrush);
  }
  const int c = focus_.x(), r = focus_.y();
  focus_frame_->topLeft->setCoords(c - 0.5, r - 0.5);
  focus_frame_->bottomRight->setCoords(c + 0.5, r + 0.5);
  focus_frame_->setVisible(true);
  const QString text = cellText(r, c, false);
  hover_->setText(text);
  setAccessibleDescription(QString::fromStdString(grid_.title) + ". " + text);
  plot_->replot();
  if (focus_ != last_focus_) {
    last_focus_ = focus_;
    emit focusMoved(r, c);
  }
}

void PlotView::showScatter(const std::vector<double>& x, const std::vector<double>& y,
                           const std::vector<std::string>& labels, const QString& xlabel, const QString& ylabel,
                           const QString& title) {
  reset();
  has_data_ = !x.empty();
  sx_ = x;
  sy_ = y;
  slabels_ = labels;
  plot_->yAxis->setRangeReversed(false);
  plot_->xAxis->setTickLabelRotation(0);
  plot_->xAxis->setTicker(QSharedPointer<QCPAxisTicker>(new QCPAxisTicker));
  plot_->yAxis->setTicker(QSharedPointer<QCPAxisTicker>(new QCPAxisTicker));
  QCPColorGradient grad = viridis();
  const int n = static_cast<int>(x.size());
  // A faint line in index order shows whether neighbours in index are neighbours in space.
  auto* path = new QCPCurve(plot_->xAxis, plot_->yAxis);
  path->setPen(QPen(QColor(150, 150, 150, 90)));
  for (int i = 0; i < n; ++i) path->addData(i, x[i], y[i]);
  for (int i = 0; i < n; ++i) {
    auto* g = plot_->addGraph();
    g->setLineStyle(QCPGraph::lsNone);
    const QColor c = grad.color(i, QCPRange(0, std::max(n - 1, 1)));
    g->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDisc, c, c, 8));
    g->addData(x[i], y[i]);
  }
  plot_->xAxis->setLabel(xlabel);
  plot_->yAxis->setLabel(ylabel);
  if (n > 1) {  // the legend of the colours: row order
    auto* scale = new QCPColorScale(plot_);
    plot_->plotLayout()->addElement(0, 1, scale);
    scale->setType(QCPAxis::atRight);
    scale->setGradient(grad);
    scale->setDataRange(QCPRange(0, n - 1));
    scale->axis()->setLabel(tr("row (in order)"));
    scale->axis()->setLabelColor(plot_->xAxis->labelColor());
    scale->axis()->setTickLabelColor(plot_->xAxis->tickLabelColor());
    auto* group = new QCPMarginGroup(plot_);
    plot_->axisRect()->setMarginGroup(QCP::msBottom | QCP::msTop, group);
    scale->setMarginGroup(QCP::msBottom | QCP::msTop, group);
  }
  plot_->rescaleAxes();
  plot_->xAxis->scaleRange(1.1);
  plot_->yAxis->scaleRange(1.1);
  addTitle(title);
  plot_->replot();
}

void PlotView::showCurves(const std::vector<double>& x, const std::vector<std::pair<std::string, std::vector<double>>>& series,
                          const QString& xlabel, const QString& title) {
  reset();
  cx_ = x;
  curves_ = series;
  has_data_ = !x.empty();
  plot_->yAxis->setRangeReversed(false);
  plot_->xAxis->setTickLabelRotation(0);
  plot_->xAxis->setTicker(QSharedPointer<QCPAxisTicker>(new QCPAxisTicker));
  plot_->yAxis->setTicker(QSharedPointer<QCPAxisTicker>(new QCPAxisTicker));
  const QColor colours[] = {QColor(31, 119, 180), QColor(214, 39, 40),  QColor(44, 160, 44),  QColor(148, 103, 189),
                            QColor(255, 127, 14), QColor(140, 86, 75),  QColor(227, 119, 194), QColor(23, 190, 207)};
  const bool few = x.size() <= 24;  // a grid's points (a width, a number of pairs) are marked, a training curve is not
  plot_->legend->setVisible(true);
  for (size_t s = 0; s < series.size(); ++s) {
    auto* g = plot_->addGraph();
    g->setName(QString::fromStdString(series[s].first));
    g->setPen(QPen(colours[s % 8], 2));
    if (few) g->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCircle, colours[s % 8], colours[s % 8], 7));
    for (size_t i = 0; i < x.size() && i < series[s].second.size(); ++i)
      if (std::isfinite(series[s].second[i])) g->addData(x[i], series[s].second[i]);
  }
  plot_->xAxis->setLabel(xlabel);
  plot_->yAxis->setLabel(QString());
  plot_->rescaleAxes();
  plot_->yAxis->setRangeLower(std::min(0.0, plot_->yAxis->range().lower));
  plot_->axisRect()->insetLayout()->setInsetAlignment(0, few ? Qt::AlignBottom | Qt::AlignRight : Qt::AlignTop | Qt::AlignRight);
  if (few) {  // room for the end points' markers; the legend where accuracies rarely are
    plot_->xAxis->scaleRange(1.08, plot_->xAxis->range().center());
    plot_->yAxis->setRangeUpper(plot_->yAxis->range().upper + 0.04 * plot_->yAxis->range().size());
  }
  addTitle(title);
  plot_->replot();
}

void PlotView::markCells(const std::vector<std::pair<int, int>>& cells) {
  for (auto* m : marks_) plot_->removeItem(m);
  marks_.clear();
  for (const auto& [r, c] : cells) {
    auto* t = new QCPItemText(plot_);
    t->position->setCoords(c, r);
    t->setText(QStringLiteral("✕"));
    t->setFont(QFont(font().family(), 12, QFont::Bold));
    t->setColor(QColor(230, 40, 40));
    marks_.push_back(t);
  }
  plot_->replot();
}

void PlotView::highlightCells(const std::vector<std::pair<int, int>>& cells) {
  for (auto* h : highlights_) plot_->removeItem(h);
  highlights_.clear();
  for (const auto& [r, c] : cells) {
    auto* box = new QCPItemRect(plot_);
    box->topLeft->setCoords(c - 0.45, r - 0.45);
    box->bottomRight->setCoords(c + 0.45, r + 0.45);
    box->setPen(QPen(QColor(255, 140, 0), 3));
    box->setBrush(Qt::NoBrush);
    highlights_.push_back(box);
  }
  plot_->replot();
}

// Tick labels: every label when they fit, else every k-th, so that a 2,048-token map shows labels as you zoom in.
void PlotView::relabel(int w, int h) const {
  if (!is_grid_) return;
  auto label = [this](QCPAxis* ax, const std::vector<std::string>& labels, int n, int pixels, int per_label) {
    QSharedPointer<QCPAxisTickerText> t(new QCPAxisTickerText);
    const QCPRange r = ax->range();
    const int first = std::max(0, static_cast<int>(std::ceil(r.lower))), last = std::min(n - 1, static_cast<int>(r.upper));
    const int visible = std::max(1, last - first + 1);
    const int fit = std::max(1, pixels / per_label);
    for (int i : labelTicks(first, last, std::max(1, (visible + fit - 1) / fit)))
      t->addTick(i, i < (int)labels.size() ? QString::fromStdString(labels[i]) : QString::number(i));
    ax->setTicker(t);
    ax->setSubTicks(false);
  };
  // Before the widget is laid out (headless export) its axis rect has no size: plan for a usual one.
  const int aw = w > 0 ? w : plot_->axisRect()->width() > 50 ? plot_->axisRect()->width() : 700;
  const int ah = h > 0 ? h : plot_->axisRect()->height() > 50 ? plot_->axisRect()->height() : 500;
  // Horizontal column labels only where each fits in its column (head names in a one-row grid of ten heads did
  // not: they overlapped); else rotated, as a long map's are.
  if (grid_.cols <= 12) {
    const QFontMetrics fm(plot_->xAxis->tickLabelFont());
    int widest = 0;
    for (const auto& l : grid_.col_labels) widest = std::max(widest, fm.horizontalAdvance(QString::fromStdString(l)));
    plot_->xAxis->setTickLabelRotation(grid_.cols * (widest + 8) > aw ? 60 : 0);
  }
  // A rotated label takes more room along the axis than a line of text's height.
  label(plot_->xAxis, grid_.col_labels, grid_.cols, aw, plot_->xAxis->tickLabelRotation() != 0 ? 18 : 14);
  label(plot_->yAxis, grid_.row_labels, grid_.rows, ah, 14);
}

std::vector<int> PlotView::labelTicks(int first, int last, int step) {
  std::vector<int> out;
  if (step <= 1) {
    for (int i = std::max(0, first); i <= last; ++i) out.push_back(i);
    return out;
  }
  // Cycles of 3 * step + 1 indices labelled at 0, step and 2 * step: the cycle length is odd for an even step (an
  // odd step alternates parity itself) and 1 more than a multiple of 3, so every residue mod 2 and 3 comes round.
  const int cycle = 3 * step + 1;
  for (int base = (std::max(0, first) / cycle) * cycle; base <= last; base += cycle)
    for (int k = 0; k < 3; ++k) {
      const int i = base + k * step;
      if (i >= first && i <= last) out.push_back(i);
    }
  return out;
}

QPoint PlotView::cellCenter(int row, int col) const {
  return QPoint(static_cast<int>(plot_->xAxis->coordToPixel(col)), static_cast<int>(plot_->yAxis->coordToPixel(row)));
}

QString PlotView::cellText(int r, int c, bool indices) const {
  const double v = grid_.at(r, c);
  const QString rl = r < (int)grid_.row_labels.size() ? QString::fromStdString(grid_.row_labels[r]) : QString::number(r);
  const QString cl = c < (int)grid_.col_labels.size() ? QString::fromStdString(grid_.col_labels[c]) : QString::number(c);
  const QString value = std::isfinite(v) ? QString::number(v, 'g', 4) : QStringLiteral("—");
  return indices ? QStringLiteral("%1 (%2) × %3 (%4): %5").arg(rl).arg(r).arg(cl).arg(c).arg(value)
                 : QStringLiteral("%1 × %2: %3").arg(rl, cl, value);
}

void PlotView::onMouseMove(QMouseEvent* e) {
  const double cx = plot_->xAxis->pixelToCoord(e->pos().x()), cy = plot_->yAxis->pixelToCoord(e->pos().y());
  if (is_grid_) {
    const int c = static_cast<int>(std::lround(cx)), r = static_cast<int>(std::lround(cy));
    if (r >= 0 && r < grid_.rows && c >= 0 && c < grid_.cols) {
      hover_->setText(cellText(r, c, true));
      return;
    }
  } else if (!sx_.empty()) {
    int best = -1;
    double bd = 1e18;
    for (size_t i = 0; i < sx_.size(); ++i) {
      const double dx = plot_->xAxis->coordToPixel(sx_[i]) - e->pos().x(), dy = plot_->yAxis->coordToPixel(sy_[i]) - e->pos().y();
      if (dx * dx + dy * dy < bd) bd = dx * dx + dy * dy, best = static_cast<int>(i);
    }
    if (best >= 0 && bd < 200) {
      hover_->setText(QStringLiteral("#%1 %2 (%3, %4)").arg(best).arg(QString::fromStdString(slabels_[best]))
                          .arg(sx_[best], 0, 'g', 3).arg(sy_[best], 0, 'g', 3));
      return;
    }
  }
  hover_->clear();
}

void PlotView::onMousePress(QMouseEvent* e) {
  if (!is_grid_ || e->button() != Qt::LeftButton) return;
  const int c = static_cast<int>(std::lround(plot_->xAxis->pixelToCoord(e->pos().x())));
  const int r = static_cast<int>(std::lround(plot_->yAxis->pixelToCoord(e->pos().y())));
  if (r >= 0 && r < grid_.rows && c >= 0 && c < grid_.cols) {
    focus_ = QPoint(c, r);  // the keyboard goes on from the clicked cell
    setFocus(Qt::MouseFocusReason);
    showFocus();
    emit cellClicked(r, c, e->modifiers());
  }
}

void PlotView::exportTo(const QString& path, int width, int height) const {
  if (width < 16 || height < 16 || width > 20000 || height > 20000)
    throw std::invalid_argument("export size must be 16..20000 pixels per side");
  const QString prov = provenance_ ? QString::fromStdString(provenance_(record_)) : QString();
  const QString suffix = QFileInfo(path).suffix().toLower();
  // An exclusive temporary beside the target (never a planted link), renamed over it when complete.
  mechscope::TempFile temp(path.toStdString());
  temp.close();
  const QString tmp = QString::fromStdString(temp.path());
  bool ok = false;
  relabel(width * 8 / 10, height * 8 / 10);  // label density for the exported size
  if (map_) map_->exact = suffix == "pdf" || suffix == "svg";  // vector cells, or whole-pixel blocks
  struct Restore {
    const PlotView* v;
    ~Restore() {
      if (v->map_) v->map_->exact = false;
      v->relabel();
    }
  } restore{this};
  if (suffix == "png") {
    QImage img = plot_->toPixmap(width, height).toImage();
    img.setText("Software", "MechScope");
    img.setText("Description", prov);
    ok = img.save(tmp, "PNG");
  } else if (suffix == "pdf") {
    ok = plot_->savePdf(tmp, width, height, QCP::epAllowCosmetic, "MechScope", name_ + " " + prov);
  } else if (suffix == "svg") {
    QSvgGenerator gen;
    gen.setFileName(tmp);
    gen.setSize(QSize(width, height));
    gen.setViewBox(QRect(0, 0, width, height));
    gen.setTitle(name_);
    gen.setDescription(prov);
    QCPPainter painter;
    ok = painter.begin(&gen);
    if (ok) {
      plot_->toPainter(&painter, width, height);
      painter.end();
    }
  } else {
    throw std::invalid_argument("unknown figure format '." + suffix.toStdString() + "': use .png, .pdf or .svg");
  }
  if (!ok) throw std::runtime_error("cannot write '" + path.toStdString() + "'");  // the temporary is removed
  temp.commit();
}

void PlotView::exportCsv(const QString& path) const {
  QSaveFile f(path);
  if (!f.open(QIODevice::WriteOnly | QIODevice::Text)) throw std::runtime_error("cannot write '" + path.toStdString() + "'");
  QTextStream out(&f);
  if (provenance_) out << "# " << QString::fromStdString(provenance_(record_)) << "\n";
  if (is_grid_) {
    out << "row";
    for (int c = 0; c < grid_.cols; ++c) out << "," << csvField(c < (int)grid_.col_labels.size() ? grid_.col_labels[c] : std::to_string(c));
    out << "\n";
    for (int r = 0; r < grid_.rows; ++r) {
      out << csvField(r < (int)grid_.row_labels.size() ? grid_.row_labels[r] : std::to_string(r));
      for (int c = 0; c < grid_.cols; ++c) {
        const double v = grid_.at(r, c);
        out << "," << (std::isfinite(v) ? QString::number(v, 'g', 9) : QString());
      }
      out << "\n";
    }
  } else if (!curves_.empty()) {
    out << "x";
    for (const auto& c : curves_) out << "," << csvField(c.first);
    out << "\n";
    for (size_t i = 0; i < cx_.size(); ++i) {
      out << QString::number(cx_[i], 'g', 9);
      for (const auto& c : curves_)
        out << "," << (i < c.second.size() && std::isfinite(c.second[i]) ? QString::number(c.second[i], 'g', 9) : QString());
      out << "\n";
    }
  } else {
    out << "index,label,x,y\n";
    for (size_t i = 0; i < sx_.size(); ++i)
      out << i << "," << csvField(slabels_[i]) << "," << QString::number(sx_[i], 'g', 9) << "," << QString::number(sy_[i], 'g', 9) << "\n";
  }
  out.flush();
  if (!f.commit()) throw std::runtime_error("cannot write '" + path.toStdString() + "'");
}

void PlotView::copyToClipboard() const { QApplication::clipboard()->setPixmap(plot_->toPixmap()); }

void PlotView::exportDialog() {
  const QString path = QFileDialog::getSaveFileName(this, tr("Export figure"), name_ + ".png",
                                                    tr("PNG (*.png);;PDF (*.pdf);;SVG (*.svg)"));
  if (path.isEmpty()) return;
  bool ok = false;
  const QString size = QInputDialog::getText(this, tr("Size"), tr("Width x height in pixels:"), QLineEdit::Normal,
                                             QStringLiteral("%1x%2").arg(plot_->width()).arg(plot_->height()), &ok);
  if (!ok) return;
  const auto parts = size.toLower().split('x');
  try {
    if (parts.size() != 2) throw std::invalid_argument("expected WIDTHxHEIGHT, e.g. 1200x800");
    exportTo(path, parts[0].trimmed().toInt(), parts[1].trimmed().toInt());
  } catch (const std::exception& e) {
    QMessageBox::warning(this, tr("Export failed"), QString::fromStdString(e.what()));
  }
}

void PlotView::csvDialog() {
  const QString path = QFileDialog::getSaveFileName(this, tr("Export data"), name_ + ".csv", tr("CSV (*.csv)"));
  if (path.isEmpty()) return;
  try {
    exportCsv(path);
  } catch (const std::exception& e) {
    QMessageBox::warning(this, tr("Export failed"), QString::fromStdString(e.what()));
  }
}

}  // namespace mechscope::app
