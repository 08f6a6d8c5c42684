// Writing results files.
#include "core/io/results.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <stdexcept>

#include <ATen/ATen.h>

#include "core/io/checkpoint.h"
#include "core/io/hdf5.h"
#include "core/util/files.h"
#include "core/util/json.h"

namespace mechscope {

void write_results(const std::string& path, const ResultsFile& results) {
  h5::remove_stale_temporaries(path);
  try {
    TempFile temp(path);  // exclusive, never a planted link; removed unless committed
    temp.close();
    const std::string& tmp = temp.path();
    const std::string where = "'" + tmp + "'";
    {
      h5::File f = h5::File::create(tmp);
      const hid_t root = f.id();
      h5::write_attr_string(root, "format", kResultsFormat, where);
      h5::write_attr_int(root, "format_version", kResultsVersion, where);
      h5::write_attr_string(root, "kind", results.kind, where);
      h5::write_attr_string(root, "provenance", results.provenance.dump(), where);
      h5::write_attr_string(root, "created_by", program_id(), where);
      if (!results.settings.is_null()) h5::write_attr_string(root, "settings", results.settings.dump(), where);
      std::set<std::string> groups;
      for (const auto& r : results.tensors) {
        // Intermediate groups ("head_ablation/prob" -> group head_ablation), each with the settings.
        for (size_t slash = r.name.find('/'); slash != std::string::npos; slash = r.name.find('/', slash + 1)) {
          const std::string g = r.name.substr(0, slash);
          if (groups.insert(g).second) {
            h5::Handle gh = h5::create_group(root, g, where);
            if (!results.settings.is_null()) h5::write_attr_string(gh.get(), "settings", results.settings.dump(), where);
          }
        }
        at::Tensor t = r.value.detach().to(at::kCPU).contiguous();
        if (!r.axes.empty() && static_cast<int64_t>(r.axes.size()) != t.dim())
          throw std::runtime_error("result " + r.name + ": " + std::to_string(r.axes.size()) + " axis names for " +
                                   std::to_string(t.dim()) + " dimensions");
        h5::Handle ds;
        if (at::isFloatingType(t.scalar_type())) {
          t = t.to(at::kFloat);
          ds = h5::write_float(root, r.name, t.data_ptr<float>(), t.sizes().vec(), where);
        } else {
          t = t.to(at::kLong);
          ds = h5::write_int64(root, r.name, t.data_ptr<int64_t>(), t.sizes().vec(), where);
        }
        if (!r.axes.empty()) h5::write_attr_string(ds.get(), "axes", nlohmann::json(r.axes).dump(), where);
        if (!r.labels.is_null()) {
          for (const auto& item : r.labels.items())
            h5::write_attr_string(ds.get(), "labels_" + item.key(), item.value().dump(), where);
        }
      }
      f.flush();
    }
    h5::seal(tmp);
    temp.commit();
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string("cannot write results '") + path + "': " + e.what());
  }
}

const ResultTensor& ResultsFile::get(const std::string& name) const {
  std::vector<std::string> names;
  for (const auto& t : tensors) {
    if (t.name == name) return t;
    names.push_back(t.name);
  }
  throw std::runtime_error("results: no tensor '" + name + "' (have: " + [&] {
    std::string s;
    for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
    return s;
  }() + ")");
}

namespace {
// Reads a results file in this process (see read_results).
ResultsFile read_results_here(const std::string& path) {
  const std::string where = "'" + path + "'";
  try {
    h5::File f = h5::File::open_read(path);
    const hid_t root = f.id();
    auto format = h5::read_attr_string(root, "format", where);
    if (!format || *format != kResultsFormat)
      throw std::runtime_error("not a MechScope results file (format attribute is " +
                               (format ? "'" + *format + "'" : std::string("missing")) + ")");
    ResultsFile r;
    r.kind = h5::read_attr_string(root, "kind", where).value_or("");
    auto parse = [&](const std::optional<std::string>& s) { return s ? parse_json(*s) : nlohmann::json(); };
    h5::ByteBudget budget(path, where);
    r.provenance = parse(h5::read_attr_string(root, "provenance", where));
    r.settings = parse(h5::read_attr_string(root, "settings", where));
    std::function<void(hid_t, const std::string&, int)> walk = [&](hid_t loc, const std::string& prefix, int depth) {
      if (depth > 16) throw std::runtime_error("groups nested deeper than 16 levels; the file is not a results file");
      for (const auto& name : h5::list_children(loc, where)) {
        const std::string full = prefix.empty() ? name : prefix + "/" + name;
        H5O_info_t info{};
        h5::QuietErrors quiet;
#if H5_VERSION_GE(1, 12, 0)
        const herr_t got = H5Oget_info_by_name3(loc, name.c_str(), &info, H5O_INFO_BASIC, H5P_DEFAULT);
#else
        const herr_t got = H5Oget_info_by_name(loc, name.c_str(), &info, H5P_DEFAULT);
#endif
        if (got < 0) throw std::runtime_error("cannot read object '" + full + "' (corrupt file?)");
        if (info.type == H5O_TYPE_GROUP) {
          h5::Handle g = h5::open_group(loc, name, where);
          walk(g.get(), full, depth + 1);
          continue;
        }
        if (info.type != H5O_TYPE_DATASET) continue;
        h5::Shape shape = h5::dataset_shape(loc, name, where);
        budget.take(shape, full);  // refused from its shape, before allocating
        ResultTensor t;
        t.name = full;
        if (h5::dataset_is_float(loc, name, where)) {
          t.value = at::empty(shape.dims, at::kFloat);
          h5::read_float(loc, name, t.value.data_ptr<float>(), where);
        } else {
          t.value = at::empty(shape.dims, at::kLong);
          h5::read_int64(loc, name, t.value.data_ptr<int64_t>(), where);
        }
        h5::Handle ds(H5Dopen2(loc, name.c_str(), H5P_DEFAULT));
        if (auto axes = h5::read_attr_string(ds.get(), "axes", where)) t.axes = parse_json(*axes).get<std::vector<std::string>>();
        for (const auto& axis : t.axes)
          if (auto lab = h5::read_attr_string(ds.get(), "labels_" + axis, where)) t.labels[axis] = parse_json(*lab);
        r.tensors.push_back(std::move(t));
      }
    };
    walk(root, "", 0);
    return r;
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error("cannot read results " + where + ": a JSON attribute is malformed (" + e.what() + ")");
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    if (msg.find(path) != std::string::npos) throw;
    throw std::runtime_error("cannot read results " + where + ": " + msg);
  }
}
}  // namespace

ResultsFile read_results(const std::string& path) {
  h5::check_in_child(path, [&] { read_results_here(path); });
  return read_results_here(path);
}

namespace {

void write_text_atomic(const std::string& path, const std::string& text) { write_file_atomically(path, text); }

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string csv_number(double v) {
  if (std::isnan(v)) return "";
  std::ostringstream o;
  o.precision(9);
  o << v;
  return o.str();
}

std::string label_of(const nlohmann::json& labels, const std::string& axis, int64_t i) {
  if (labels.is_object() && labels.contains(axis) && labels[axis].is_array() && i < (int64_t)labels[axis].size()) {
    const auto& l = labels[axis][i];
    return l.is_string() ? l.get<std::string>() : l.dump();
  }
  return std::to_string(i);
}

}  // namespace

void write_csv(const std::string& path, const ResultTensor& t) {
  at::Tensor v = t.value.detach().to(at::kCPU).to(at::kDouble).contiguous();
  const std::string a0 = t.axes.size() > 0 ? t.axes[0] : "row", a1 = t.axes.size() > 1 ? t.axes[1] : "col";
  std::ostringstream o;
  if (v.dim() == 1) {
    o << csv_field(a0) << "," << csv_field(t.name) << "\n";
    for (int64_t i = 0; i < v.size(0); ++i) o << csv_field(label_of(t.labels, a0, i)) << "," << csv_number(v[i].item<double>()) << "\n";
  } else if (v.dim() == 2) {
    o << csv_field(a0 + "\\" + a1);
    for (int64_t j = 0; j < v.size(1); ++j) o << "," << csv_field(label_of(t.labels, a1, j));
    o << "\n";
    auto acc = v.accessor<double, 2>();
    for (int64_t i = 0; i < v.size(0); ++i) {
      o << csv_field(label_of(t.labels, a0, i));
      for (int64_t j = 0; j < v.size(1); ++j) o << "," << csv_number(acc[i][j]);
      o << "\n";
    }
  } else {
    throw std::invalid_argument("CSV: '" + t.name + "' has " + std::to_string(v.dim()) +
                                " dimensions; CSV holds one- and two-dimensional results (use the HDF5 file)");
  }
  write_text_atomic(path, o.str());
}

void write_csv_table(const std::string& path, const std::string& row_axis, const std::vector<std::string>& rows,
                     const std::vector<std::pair<std::string, at::Tensor>>& columns) {
  std::ostringstream o;
  o << csv_field(row_axis);
  std::vector<at::Tensor> cols;
  for (const auto& [name, t] : columns) {
    if (t.dim() != 1 || t.size(0) != static_cast<int64_t>(rows.size()))
      throw std::invalid_argument("CSV table: column '" + name + "' does not have one value per row");
    o << "," << csv_field(name);
    cols.push_back(t.detach().to(at::kCPU).to(at::kDouble).contiguous());
  }
  o << "\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    o << csv_field(rows[i]);
    for (const auto& c : cols) o << "," << csv_number(c[i].item<double>());
    o << "\n";
  }
  write_text_atomic(path, o.str());
}

void write_csv(const std::string& path, const CsvExport& csv) {
  if (!csv.columns.empty()) return write_csv_table(path, csv.row_axis, csv.rows, csv.columns);
  if (!csv.tensor.value.defined())
    throw std::invalid_argument(csv.unavailable.empty() ? "CSV: this result has no one- or two-dimensional table"
                                                        : csv.unavailable);
  write_csv(path, csv.tensor);
}

}  // namespace mechscope
