// A collected grid (`mechscope-cli collect`) opened in the workbench: its table, and its figure (a column against an
// axis, a line per series, the mean over seeds), with the three chosen in combo boxes; the figure exports like
// every plot (PNG, PDF, SVG, CSV) with the grid's provenance as its record.
#pragma once

#include <string>

#include <QDialog>

#include "core/grid/grid.h"

class QComboBox;
class QLabel;
class QTableWidget;

namespace mechscope::app {

class PlotView;

class GridWindow : public QDialog {
 public:
  /// Reads the table (throws with the reader's message when it cannot) and draws the default figure.
  GridWindow(const std::string& path, QWidget* parent = nullptr);
  void setFigure(const grid::Figure& f);
  grid::Figure figure() const;
  PlotView* plot() const { return plot_; }
  QTableWidget* table() const { return table_; }
  const grid::TableFile& file() const { return file_; }

 private:
  void redraw();
  grid::TableFile file_;
  std::string path_;
  QComboBox *x_ = nullptr, *y_ = nullptr, *series_ = nullptr;
  PlotView* plot_ = nullptr;
  QTableWidget* table_ = nullptr;
  QLabel* note_ = nullptr;
};

/// Draws a collected grid's figure into `out` (.png, .pdf or .svg) headless; empty fields of `f` take the defaults.
/// Returns a one-line description.
std::string render_grid_table(const std::string& path, grid::Figure f, const std::string& out, int width, int height);

}  // namespace mechscope::app
