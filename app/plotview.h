// A QCustomPlot with what every MechScope figure needs: heatmaps with token labels that thin out as you zoom
// out, scatter plots, hover values, click-to-cell, and export (PNG, PDF, SVG at a chosen size; CSV data;
// clipboard) carrying provenance in the file's metadata. No torch here.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <QWidget>

#include "app/workbench.h"

class QCustomPlot;
class QCPItemText;
class QCPItemRect;
class QLabel;

namespace mechscope::app {

class CellMap;

class PlotView : public QWidget {
  Q_OBJECT
 public:
  explicit PlotView(const QString& name, QWidget* parent = nullptr);
  /// Heatmap of a grid (row 0 at the top), NaN cells blank, the grid's axis and colour-scale titles; `symmetric`
  /// centres the colour scale on 0, as does a grid with values of both signs (a diverging map, zero white).
  /// The grid's provenance becomes the figure's record.
  void showGrid(const Grid& g, bool symmetric = false);
  /// Scatter of points coloured by index (a colour scale says which), with hover labels.
  void showScatter(const std::vector<double>& x, const std::vector<double>& y, const std::vector<std::string>& labels,
                   const QString& xlabel, const QString& ylabel, const QString& title);
  /// Line plots sharing an x axis (e.g. loss and accuracy over training steps); series may hold NaN gaps.
  void showCurves(const std::vector<double>& x, const std::vector<std::pair<std::string, std::vector<double>>>& series,
                  const QString& xlabel, const QString& title);
  /// Marks cells (row, col) with a cross (e.g. ablated heads); empty clears.
  void markCells(const std::vector<std::pair<int, int>>& cells);
  /// Outlines cells (row, col) in orange (e.g. the heads a search found); empty clears. Independent of the crosses.
  void highlightCells(const std::vector<std::pair<int, int>>& cells);
  /// No figure, only this line where it would be: a state of the panel, not an error.
  void showMessage(const QString& text);
  /// What an exported file records: fn(the figure's record) -> JSON text (PanelContext: Workbench::provenance).
  void setProvenance(const std::function<std::string(const std::string& record)>& fn) { provenance_ = fn; }
  /// The record of the figure shown (showGrid takes the grid's; scatter and curves are given theirs after).
  void setRecord(const std::string& record) { record_ = record; }
  const std::string& record() const { return record_; }
  void setDark(bool dark);

  /// Writes the figure: format from the suffix (.png, .pdf, .svg), width x height pixels. Throws on failure.
  /// In PDF and SVG a heatmap of up to kVectorCells cells is drawn as vector cells; a larger one as an image of
  /// the drawn size, each cell a block of whole pixels (nothing for a viewer to interpolate at that size).
  void exportTo(const QString& path, int width, int height) const;
  /// Writes the data as CSV (grid or points), with a provenance comment line first.
  void exportCsv(const QString& path) const;
  void copyToClipboard() const;
  QCustomPlot* plot() const { return plot_; }
  bool hasData() const { return has_data_; }
  const Grid& grid() const { return grid_; }
  /// Pixel centre of a grid cell (for tests and keyboard navigation).
  QPoint cellCenter(int row, int col) const;
  /// The keyboard's cell in a grid (arrows move it, Enter or Space clicks it, Shift+Space shift-clicks); (-1, -1)
  /// before the grid has had focus.
  QPoint focusCell() const { return focus_; }
  /// Moves the keyboard's cell (as the arrows do), e.g. from a script; out-of-grid cells are ignored.
  void setFocusCell(int row, int col);
  static constexpr int kVectorCells = 256 * 256;
  /// The labelled indices of [first, last] when one in `step` fits: every index for step 1, else gaps of step,
  /// step, step + 1 repeating from index 0 (stable while panning), so that tokens alternating in roles of period
  /// 2 or 3 (key, value, ...) all keep labels as labels thin out (every step-th index lost every value token).
  static std::vector<int> labelTicks(int first, int last, int step);

 signals:
  void cellClicked(int row, int col, Qt::KeyboardModifiers modifiers);
  /// The keyboard's cell moved (arrows, or a click on a cell).
  void focusMoved(int row, int col);

 protected:
  void keyPressEvent(QKeyEvent* e) override;
  void focusInEvent(QFocusEvent* e) override;
  void focusOutEvent(QFocusEvent* e) override;

 private slots:
  void exportDialog();
  void csvDialog();

 private:
  /// Tick labels for the visible range; `w`, `h`: the axis lengths in pixels to plan for (default: on screen).
  void relabel(int w = -1, int h = -1) const;
  void reset();
  void addTitle(const QString& title);
  void onMouseMove(QMouseEvent* e);
  void onMousePress(QMouseEvent* e);
  /// A grid cell's row and column labels (and indices) and value, for the hover line.
  QString cellText(int row, int col, bool indices) const;
  /// Draws the keyboard's cell (a frame) and says what it holds in the hover line and the accessible description.
  void showFocus();
  QString name_;
  QCustomPlot* plot_;
  CellMap* map_ = nullptr;
  QLabel* hover_;
  Grid grid_;
  std::vector<double> sx_, sy_;
  std::vector<std::string> slabels_;
  std::vector<double> cx_;
  std::vector<std::pair<std::string, std::vector<double>>> curves_;
  bool is_grid_ = false, has_data_ = false, dark_ = false;
  std::vector<QCPItemText*> marks_;
  std::vector<QCPItemRect*> highlights_;
  QPoint focus_{-1, -1};  // (column, row)
  QPoint last_focus_{-1, -1};  // the last one focusMoved announced
  QCPItemRect* focus_frame_ = nullptr;
  std::function<std::string(const std::string&)> provenance_;
  std::string record_;
  QSize labelled_for_;  // the axis rect size the labels were made for
};

}  // namespace mechscope::app
