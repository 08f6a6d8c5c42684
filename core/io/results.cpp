// Writing results files.
#include "core/io/results.h"

#include <unistd.h>

#include <cstdio>
#include <stdexcept>

#include <ATen/ATen.h>

#include "core/io/checkpoint.h"
#include "core/io/hdf5.h"

namespace mechscope {

void write_results(const std::string& path, const ResultsFile& results) {
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  const std::string where = "'" + tmp + "'";
  try {
    {
      h5::File f = h5::File::create(tmp);
      const hid_t root = f.id();
      h5::write_attr_string(root, "format", kResultsFormat, where);
      h5::write_attr_int(root, "format_version", kResultsVersion, where);
      h5::write_attr_string(root, "kind", results.kind, where);
      h5::write_attr_string(root, "provenance", results.provenance.dump(), where);
      h5::write_attr_string(root, "created_by", program_id(), where);
      for (const auto& r : results.tensors) {
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
    if (std::rename(tmp.c_str(), path.c_str()) != 0)
      throw std::runtime_error("cannot move the finished results file to '" + path + "'");
  } catch (const std::exception& e) {
    std::remove(tmp.c_str());
    throw std::runtime_error(std::string("cannot write results '") + path + "': " + e.what());
  }
}

}  // namespace mechscope
