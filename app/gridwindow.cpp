// GridWindow and render_grid_table: see gridwindow.h. Core headers come before Qt's.
#include "app/gridwindow.h"

#include "core/util/strings.h"

#include <QComboBox>
#include <QFileInfo>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QSplitter>
#include <QTableWidget>
#include <QVBoxLayout>

#include "app/plotview.h"

namespace mechscope::app {

namespace {

std::vector<std::string> axes_of(const grid::TableFile& f) {
  std::vector<std::string> axes;
  if (f.provenance.contains("axes"))
    for (const auto& a : f.provenance["axes"]) axes.push_back(a.get<std::string>());
  return axes;
}

grid::Figure completed(const grid::TableFile& file, grid::Figure f) {
  const grid::Figure d = grid::default_figure(file.table, axes_of(file));
  if (f.x.empty()) f.x = d.x;
  if (f.y.empty()) f.y = d.y;
  if (f.series.empty() && f.x != d.series) f.series = d.series;
  if (f.series == "-") f.series.clear();
  return f;
}

void draw(PlotView& view, const grid::TableFile& file, const grid::Figure& f, const std::string& name) {
  const grid::Curves c = grid::curves_of(file.table, f);
  const std::string title = file.provenance.value("grid", name) + ": " + f.y + " by " + f.x +
                            (f.series.empty() ? "" : ", a line per " + join(split(f.series, ','), " and ")) + " (mean over the other axes)";
  view.showCurves(c.x, c.series, QString::fromStdString(f.x), QString::fromStdString(title));
  nlohmann::json record = {{"grid_table", name}, {"figure", {{"x", f.x}, {"y", f.y}, {"series", f.series}}},
                           {"grid", file.provenance}};
  record["grid"].erase("tasks");  // the table's file holds them; the record names the grid and its manifest
  view.setRecord(record.dump());
}

}  // namespace

GridWindow::GridWindow(const std::string& path, QWidget* parent)
    : QDialog(parent), file_(grid::read_table_h5(path)), path_(path) {
  setWindowTitle(tr("Grid %1 — %2").arg(QString::fromStdString(file_.provenance.value("grid", "?")),
                                        QFileInfo(QString::fromStdString(path)).fileName()));
  auto* layout = new QVBoxLayout(this);
  auto* choose = new QHBoxLayout;
  x_ = new QComboBox(this);
  y_ = new QComboBox(this);
  series_ = new QComboBox(this);
  series_->addItem(tr("(one line)"), QString("-"));
  for (const auto& c : file_.table.columns) {
    const QString q = QString::fromStdString(c);
    x_->addItem(q, q);
    y_->addItem(q, q);
    series_->addItem(q, q);
  }
  for (auto [label, box] : {std::pair{tr("x"), x_}, {tr("y"), y_}, {tr("lines"), series_}}) {
    choose->addWidget(new QLabel(label, this));
    choose->addWidget(box, 1);
  }
  layout->addLayout(choose);
  note_ = new QLabel(this);
  note_->setWordWrap(true);
  layout->addWidget(note_);
  auto* split = new QSplitter(Qt::Vertical, this);
  plot_ = new PlotView("grid", split);
  plot_->setProvenance([](const std::string& record) { return record; });
  table_ = new QTableWidget(static_cast<int>(file_.table.rows.size()), static_cast<int>(file_.table.columns.size()), split);
  for (size_t c = 0; c < file_.table.columns.size(); ++c)
    table_->setHorizontalHeaderItem(static_cast<int>(c), new QTableWidgetItem(QString::fromStdString(file_.table.columns[c])));
  for (size_t r = 0; r < file_.table.rows.size(); ++r)
    for (size_t c = 0; c < file_.table.columns.size(); ++c)
      table_->setItem(static_cast<int>(r), static_cast<int>(c), new QTableWidgetItem(QString::fromStdString(file_.table.rows[r][c])));
  table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  table_->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
  split->addWidget(plot_);
  split->addWidget(table_);
  split->setStretchFactor(0, 3);
  split->setStretchFactor(1, 2);
  layout->addWidget(split, 1);
  resize(1000, 760);
  setFigure(completed(file_, {}));
  for (QComboBox* b : {x_, y_, series_}) connect(b, &QComboBox::currentIndexChanged, this, [this] { redraw(); });
}

void GridWindow::setFigure(const grid::Figure& f) {
  if (f.series.find(',') != std::string::npos && series_->findData(QString::fromStdString(f.series)) < 0)
    series_->addItem(QString::fromStdString(f.series), QString::fromStdString(f.series));  // a combination
  for (auto [box, value] : {std::pair{x_, f.x}, {y_, f.y}, {series_, f.series.empty() ? std::string("-") : f.series}}) {
    const QSignalBlocker block(box);
    const int i = box->findData(QString::fromStdString(value));
    if (i >= 0) box->setCurrentIndex(i);
  }
  redraw();
}

grid::Figure GridWindow::figure() const {
  grid::Figure f{x_->currentData().toString().toStdString(), y_->currentData().toString().toStdString(),
                 series_->currentData().toString().toStdString()};
  if (f.series == "-") f.series.clear();
  return f;
}

void GridWindow::redraw() {
  const grid::Figure f = figure();
  try {
    draw(*plot_, file_, f, QFileInfo(QString::fromStdString(path_)).fileName().toStdString());
    note_->setText(tr("%1 rows from %2 tasks; collected %3")
                       .arg(file_.table.rows.size())
                       .arg(file_.provenance.contains("tasks") ? file_.provenance["tasks"].size() : 0)
                       .arg(QString::fromStdString(file_.provenance.value("collected", "?"))));
  } catch (const std::exception& e) {
    plot_->showMessage(QString::fromStdString(e.what()));
    note_->setText(tr("Choose a numeric axis for x and a numeric column for y."));
  }
}

std::string render_grid_table(const std::string& path, grid::Figure f, const std::string& out, int width, int height) {
  const grid::TableFile file = grid::read_table_h5(path);
  f = completed(file, f);
  PlotView view("grid");
  view.resize(width, height);
  view.setProvenance([](const std::string& record) { return record; });
  draw(view, file, f, QFileInfo(QString::fromStdString(path)).fileName().toStdString());
  view.exportTo(QString::fromStdString(out), width, height);
  return "drew " + f.y + " by " + f.x + (f.series.empty() ? "" : " per " + f.series) + " into " + out;
}

}  // namespace mechscope::app
