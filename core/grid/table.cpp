// Collected tables in HDF5 and the grid's figure: curves of a column against an axis per series (grid.h).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>

#include "core/grid/grid.h"
#include "core/io/hdf5.h"
#include "core/util/files.h"
#include "core/util/json.h"
#include "core/util/strings.h"

namespace mechscope::grid {

using nlohmann::json;

namespace {

constexpr const char* kTableFormat = "mechscope-grid-table";

bool number(const std::string& cell, double* v) {
  if (cell.empty()) {
    *v = std::nan("");
    return true;
  }
  char* end = nullptr;
  *v = std::strtod(cell.c_str(), &end);
  return end && *end == '\0';
}

bool numeric_column(const Table& t, size_t c) {
  double v;
  bool any = false;
  for (const auto& r : t.rows) {
    if (!number(r[c], &v)) return false;
    any = any || !r[c].empty();
  }
  return any;
}

// The shortest decimal text that reads back as `v`.
std::string shortest(double v) {
  char buf[40];
  for (int digits = 1; digits <= 17; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

size_t column_index(const Table& t, const std::string& name, const std::string& what) {
  auto it = std::find(t.columns.begin(), t.columns.end(), name);
  if (it == t.columns.end())
    throw std::invalid_argument("the grid's table has no column '" + name + "' for " + what + " (columns: " +
                                join(t.columns, ", ") + ")");
  return static_cast<size_t>(it - t.columns.begin());
}

}  // namespace

// The columns of a collected table in HDF5: numbers as float64, text as integer codes with their labels.
void write_table_h5(const std::string& path, const Table& t, const json& provenance) {
  h5::remove_stale_temporaries(path);
  TempFile temp(path);
  temp.close();
  const std::string where = "'" + temp.path() + "'";
  {
    h5::File f = h5::File::create(temp.path());
    const hid_t root = f.id();
    h5::write_attr_string(root, "format", kTableFormat, where);
    h5::write_attr_int(root, "format_version", 1, where);
    h5::write_attr_string(root, "columns", json(t.columns).dump(), where);
    h5::write_attr_string(root, "provenance", provenance.dump(), where);
    const std::vector<int64_t> dims = {static_cast<int64_t>(t.rows.size())};
    for (size_t c = 0; c < t.columns.size(); ++c) {
      std::vector<double> num(t.rows.size());
      bool numeric = true;
      for (size_t r = 0; r < t.rows.size() && numeric; ++r) {
        const std::string& cell = t.rows[r][c];
        numeric = number(cell, &num[r]);
      }
      const std::string name = "column_" + fmt("%03.0f", static_cast<double>(c));
      h5::Handle ds;
      if (numeric) {
        ds = h5::write_double(root, name, num.data(), dims, where);
        h5::write_attr_string(ds.get(), "kind", "number", where);
      } else {
        std::vector<std::string> labels;
        std::map<std::string, int64_t> code;
        std::vector<int64_t> codes;
        for (const auto& row : t.rows) {
          auto [it, fresh] = code.emplace(row[c], static_cast<int64_t>(labels.size()));
          if (fresh) labels.push_back(row[c]);
          codes.push_back(it->second);
        }
        ds = h5::write_int64(root, name, codes.data(), dims, where);
        h5::write_attr_string(ds.get(), "kind", "text", where);
        h5::write_attr_string(ds.get(), "labels", json(labels).dump(), where);
      }
      h5::write_attr_string(ds.get(), "name", t.columns[c], where);
    }
    f.flush();
  }
  h5::seal(temp.path());
  temp.commit();
}


TableFile read_table_h5(const std::string& path) {
  TableFile out;
  auto read_body = [&] {
    h5::File f = h5::File::open_read(path);
    const std::string where = "'" + path + "'";
    const hid_t root = f.id();
    if (h5::read_attr_string(root, "format", where).value_or("") != kTableFormat)
      throw std::runtime_error(where + " is not a collected grid table (format " + kTableFormat + ")");
    const int64_t version = h5::read_attr_int(root, "format_version", where).value_or(0);
    if (version != 1)
      throw std::runtime_error(where + ": grid table format_version " + std::to_string(version) + " is not one this "
                               "version reads (1)");
    out.table.columns = parse_json(h5::read_attr_string(root, "columns", where).value_or("[]")).get<std::vector<std::string>>();
    out.provenance = parse_json(h5::read_attr_string(root, "provenance", where).value_or("{}"));
    h5::ByteBudget budget(path, where);
    int64_t n = -1;
    std::vector<std::vector<std::string>> cols;
    for (size_t c = 0; c < out.table.columns.size(); ++c) {
      const std::string name = "column_" + fmt("%03.0f", static_cast<double>(c));
      const h5::Shape shape = h5::dataset_shape(root, name, where);
      if (shape.dims.size() != 1 || (n >= 0 && shape.dims[0] != n))
        throw std::runtime_error(where + ": column " + name + " has shape " + shape.str() + "; the columns differ in length");
      budget.take(shape, name);
      n = shape.dims[0];
      h5::Handle ds(H5Dopen2(root, name.c_str(), H5P_DEFAULT));
      const std::string kind = h5::read_attr_string(ds.get(), "kind", where).value_or("");
      std::vector<std::string> cells(static_cast<size_t>(n));
      if (kind == "number") {
        std::vector<double> v(static_cast<size_t>(n));
        h5::read_double(root, name, v.data(), where);
        for (int64_t i = 0; i < n; ++i) cells[i] = std::isnan(v[i]) ? "" : shortest(v[i]);
      } else if (kind == "text") {
        std::vector<int64_t> v(static_cast<size_t>(n));
        h5::read_int64(root, name, v.data(), where);
        const auto labels = parse_json(h5::read_attr_string(ds.get(), "labels", where).value_or("[]"));
        for (int64_t i = 0; i < n; ++i) {
          if (v[i] < 0 || v[i] >= static_cast<int64_t>(labels.size()))
            throw std::runtime_error(where + ": column " + name + " holds a code without a label");
          cells[i] = labels[v[i]].get<std::string>();
        }
      } else {
        throw std::runtime_error(where + ": column " + name + " is of kind '" + kind + "' (number or text)");
      }
      cols.push_back(std::move(cells));
    }
    out.table.rows.assign(static_cast<size_t>(std::max<int64_t>(n, 0)), std::vector<std::string>(cols.size()));
    for (size_t c = 0; c < cols.size(); ++c)
      for (size_t r = 0; r < cols[c].size(); ++r) out.table.rows[r][c] = cols[c][r];
  };
  auto read = [&] {
    try {
      read_body();
    } catch (const nlohmann::json::exception& e) {  // a column name, label or provenance of the wrong type
      throw std::runtime_error("'" + path + "': not a readable grid table: " + e.what());
    }
  };
  h5::check_in_child(path, read);
  read();
  return out;
}

bool is_grid_table(const std::string& path) {
  if (!h5::looks_like_hdf5(path)) return false;
  bool yes = false;
  auto read = [&] {
    h5::File f = h5::File::open_read(path);
    yes = h5::read_attr_string(f.id(), "format", "'" + path + "'").value_or("") == kTableFormat;
  };
  try {
    h5::check_in_child(path, read);
    read();
  } catch (const std::exception&) {
    return false;  // the caller's own reader says what is wrong with it
  }
  return yes;
}

Figure default_figure(const Table& t, const std::vector<std::string>& axes) {
  Figure f;
  for (const std::string& y : {"accuracy_mean", "accuracy", "accuracy_after", "prob"})
    if (std::find(t.columns.begin(), t.columns.end(), y) != t.columns.end() && f.y.empty()) f.y = y;
  if (f.y.empty())
    for (size_t c = t.columns.size(); c-- > 1;)
      if (numeric_column(t, c) && std::find(axes.begin(), axes.end(), t.columns[c]) == axes.end()) {
        f.y = t.columns[c];
        break;
      }
  auto distinct = [&](const std::string& col) {
    std::set<std::string> v;
    const size_t c = column_index(t, col, "the figure");
    for (const auto& r : t.rows) v.insert(r[c]);
    return v.size();
  };
  for (const auto& a : axes)  // x: the first numeric axis that varies; series: the first other one that varies
    if (f.x.empty() && numeric_column(t, column_index(t, a, "x")) && distinct(a) > 1) f.x = a;
  for (const auto& a : axes)
    if (a != f.x && f.series.empty() && distinct(a) > 1 && a != "seed") f.series = a;
  return f;
}

Curves curves_of(const Table& t, const Figure& f) {
  if (f.x.empty() || f.y.empty()) throw std::invalid_argument("a grid figure needs an x axis and a y column");
  const size_t xc = column_index(t, f.x, "x"), yc = column_index(t, f.y, "y");
  std::vector<size_t> sc;  // "model,set.d_model": a line per combination
  if (!f.series.empty())
    for (const auto& name : split(f.series, ',')) sc.push_back(column_index(t, trim(name), "the series"));
  if (!numeric_column(t, xc)) throw std::invalid_argument("x: column '" + f.x + "' is not numeric");
  if (!numeric_column(t, yc)) throw std::invalid_argument("y: column '" + f.y + "' is not numeric");
  std::set<double> xs;
  std::vector<std::string> order;
  std::map<std::string, std::map<double, std::pair<double, int>>> sums;  // series -> x -> (sum, count)
  for (const auto& r : t.rows) {
    double x, y;
    number(r[xc], &x);
    number(r[yc], &y);
    if (std::isnan(x) || std::isnan(y)) continue;
    std::string s = sc.empty() ? f.y : "";
    for (size_t k = 0; k < sc.size(); ++k)
      s += (k ? ", " : "") + (sc.size() > 1 ? trim(split(f.series, ',')[k]) + "=" : std::string()) + r[sc[k]];
    if (!sums.count(s)) order.push_back(s);
    auto& cell = sums[s][x];
    cell.first += y;
    cell.second += 1;
    xs.insert(x);
  }
  Curves c;
  c.x.assign(xs.begin(), xs.end());
  for (const auto& s : order) {
    std::vector<double> line;
    for (double x : c.x) {
      auto it = sums[s].find(x);
      line.push_back(it == sums[s].end() ? std::nan("") : it->second.first / it->second.second);
    }
    c.series.emplace_back(sc.size() == 1 ? f.series + "=" + s : s, std::move(line));
  }
  return c;
}

}  // namespace mechscope::grid
