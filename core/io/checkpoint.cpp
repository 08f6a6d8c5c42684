// Reading, validating and atomically writing checkpoints (spec §0).
#include "core/io/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>
#include <sstream>

#include <ATen/ATen.h>
#include <ATen/core/Generator.h>
#include <ATen/CPUGeneratorImpl.h>

#include "core/engine/memory.h"
#include "core/io/hdf5.h"
#include "core/model/model.h"
#include "core/util/files.h"
#include "core/util/json.h"
#include "core/util/strings.h"
#include "core/version.h"

namespace mechscope {
using nlohmann::json;

std::string program_id() { return std::string("mechscope ") + kVersion; }

std::vector<std::string> default_vocab(int64_t vocab_size) {
  const std::vector<std::string> markers = {"<pad>", "<bos>", "<eos>", "<sep>", "<query>"};
  std::vector<std::string> v;
  for (int64_t i = 0; i < vocab_size; ++i)
    v.push_back(i < static_cast<int64_t>(markers.size()) ? markers[i] : "x" + std::to_string(i));
  return v;
}

namespace {

std::string shape_str(at::IntArrayRef s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

json parse_json_attr(const std::string& text, const std::string& what, const std::string& path) {
  try {
    return parse_json(text);
  } catch (const json::exception& e) {
    throw CheckpointError("'" + path + "': attribute " + what + " is not valid JSON (" + e.what() + ")");
  } catch (const JsonDepthError& e) {
    throw CheckpointError("'" + path + "': attribute " + what + ": " + e.what());
  }
}

// Restores the global CPU generator after building a model whose random init is overwritten anyway.
struct RngGuard {
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  at::Tensor state;
  RngGuard() {
    std::lock_guard<std::mutex> lock(gen.mutex());
    state = gen.get_state();
  }
  ~RngGuard() {
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(state);
  }
};

// Every dataset of an optional group, as float32 or int64 tensors.
std::map<std::string, at::Tensor> read_group(hid_t root, const std::string& group, const std::string& where,
                                             h5::ByteBudget& budget) {
  std::map<std::string, at::Tensor> out;
  if (!h5::exists(root, group)) return out;
  h5::Handle g = h5::open_group(root, group, where);
  const std::string gw = where + " /" + group;
  for (const auto& name : h5::list_children(g.get(), gw)) {
    h5::Shape s = h5::dataset_shape(g.get(), name, gw);
    budget.take(s, "/" + group + "/" + name);
    if (h5::dataset_is_float(g.get(), name, gw)) {
      at::Tensor t = at::empty(s.dims, at::kFloat);
      h5::read_float(g.get(), name, t.data_ptr<float>(), gw);
      out[name] = t;
    } else {
      at::Tensor t = at::empty(s.dims, at::kLong);
      h5::read_int64(g.get(), name, t.data_ptr<int64_t>(), gw);
      out[name] = t;
    }
  }
  return out;
}

void write_group(hid_t root, const std::string& group, const std::map<std::string, at::Tensor>& data,
                 const std::string& where) {
  if (data.empty()) return;
  h5::Handle g = h5::create_group(root, group, where);
  for (const auto& [name, t0] : data) {
    at::Tensor t = t0.detach().to(at::kCPU).contiguous();
    if (at::isFloatingType(t.scalar_type())) {
      t = t.to(at::kFloat);
      h5::write_float(g.get(), name, t.data_ptr<float>(), t.sizes().vec(), where);
    } else {
      t = t.to(at::kLong);
      h5::write_int64(g.get(), name, t.data_ptr<int64_t>(), t.sizes().vec(), where);
    }
  }
}

}  // namespace

// The non-finite values of a weight, counted in slices of a million so that the check of a large model's weights
// allocates a few megabytes at a time (a whole-tensor isfinite() left hundreds of megabytes of the heap resident).
static int64_t count_nonfinite(const at::Tensor& w) {
  if (!at::isFloatingType(w.scalar_type())) return 0;
  if (w.scalar_type() == at::kFloat && w.is_contiguous() && w.device().is_cpu()) {
    const float* p = w.data_ptr<float>();
    int64_t bad = 0;
    for (int64_t i = 0, n = w.numel(); i < n; ++i) bad += std::isfinite(p[i]) ? 0 : 1;
    return bad;
  }
  if ((w.scalar_type() == at::kBFloat16 || w.scalar_type() == at::kHalf) && w.is_contiguous() && w.device().is_cpu()) {
    // By the bits: an all-ones exponent is an infinity or a NaN (LibTorch's isfinite converts each element).
    const auto* p = static_cast<const uint16_t*>(w.data_ptr());
    const uint16_t exponent = w.scalar_type() == at::kBFloat16 ? 0x7F80 : 0x7C00;
    int64_t bad = 0;
    for (int64_t i = 0, n = w.numel(); i < n; ++i) bad += (p[i] & exponent) == exponent ? 1 : 0;
    return bad;
  }
  const at::Tensor flat = w.reshape({-1});
  int64_t bad = 0;
  for (int64_t i = 0, n = flat.numel(), step = int64_t{1} << 20; i < n; i += step) {
    const at::Tensor part = flat.narrow(0, i, std::min(step, n - i));
    bad += part.numel() - at::isfinite(part).sum().item<int64_t>();
  }
  return bad;
}

// A model whose every parameter the caller overwrites: built without drawing or touching its parameters.
static std::shared_ptr<LanguageModel> new_model(const ModelConfig& config) {
  RngGuard rng;
  at::NoGradGuard no_grad;
  SkipParameterInit uninitialised;
  return std::make_shared<LanguageModel>(config, 0, false);
}

// Every expected parameter present, nothing else: otherwise a message listing up to 8 names.
static void check_parameter_names(const std::vector<std::pair<std::string, at::Tensor>>& params,
                                  const std::set<std::string>& present, const std::string& where, bool tied,
                                  const std::string& in) {
  std::vector<std::string> missing;
  std::set<std::string> expected;
  for (const auto& [name, p] : params) {
    expected.insert(name);
    if (!present.count(name)) missing.push_back(name);
  }
  auto first8 = [](const std::vector<std::string>& v) {
    std::vector<std::string> head(v.begin(), v.begin() + std::min<size_t>(v.size(), 8));
    return join(head, ", ") + (v.size() > 8 ? ", ..." : "");
  };
  if (!missing.empty())
    throw CheckpointError(where + ": " + std::to_string(missing.size()) + " parameter(s) missing from " + in + ": " +
                          first8(missing));
  std::vector<std::string> extra;
  for (const auto& name : present)
    if (!expected.count(name)) extra.push_back(name);
  if (!extra.empty()) {
    std::string hint;
    if (std::find(extra.begin(), extra.end(), "lm_head.weight") != extra.end() && tied)
      hint = " (lm_head.weight is stored although tie_embeddings is true)";
    throw CheckpointError(where + ": " + std::to_string(extra.size()) + " unexpected parameter(s) in " + in + ": " +
                          first8(extra) + hint);
  }
}

// One weight dataset read into a float32 tensor of `dims`, with its stored-dtype attribute.
static at::Tensor read_weight(hid_t weights, const std::string& name, const std::vector<int64_t>& dims,
                              const std::string& wwhere, Checkpoint& ck) {
  if (!h5::dataset_is_float(weights, name, wwhere))
    throw CheckpointError(wwhere + ": parameter " + name + " is not stored as floating point");
  at::Tensor buf = at::empty(dims, at::kFloat);
  h5::read_float(weights, name, buf.data_ptr<float>(), wwhere);
  h5::QuietErrors quiet;
  hid_t ds = H5Dopen2(weights, name.c_str(), H5P_DEFAULT);
  if (ds >= 0) {
    h5::Handle dsh(ds);
    if (auto dt = h5::read_attr_string(ds, "dtype", wwhere + "/" + name)) ck.weight_dtypes[name] = *dt;
  }
  return buf;
}

// The header: format, version, configs and vocabulary, checked.
static void read_header(hid_t root, const std::string& path, const std::string& where, Checkpoint& ck) {
  auto format = h5::read_attr_string(root, "format", where);
  if (!format)
    throw CheckpointError(where + " is an HDF5 file but not a MechScope checkpoint: the root attribute 'format' is missing");
  if (*format != kCheckpointFormat)
    throw CheckpointError(where + " is not a MechScope checkpoint: format is '" + *format + "', expected '" +
                          kCheckpointFormat + "'");
  auto version = h5::read_attr_int(root, "format_version", where);
  if (!version) throw CheckpointError(where + ": the root attribute 'format_version' is missing");
  if (*version != kCheckpointVersion)
    throw CheckpointError(where + ": format_version " + std::to_string(*version) +
                          (*version > kCheckpointVersion ? " was written by a newer MechScope; this build reads version "
                                                         : " is not supported; this build reads version ") +
                          std::to_string(kCheckpointVersion));
  auto mc = h5::read_attr_string(root, "model_config", where);
  if (!mc) throw CheckpointError(where + ": the root attribute 'model_config' is missing");
  try {
    ck.config = ModelConfig::from_json(parse_json_attr(*mc, "model_config", path));
  } catch (const std::invalid_argument& e) {
    throw CheckpointError(where + ": " + e.what());
  }
  if (auto tc = h5::read_attr_string(root, "task_config", where)) {
    ck.task_config = parse_json_attr(*tc, "task_config", path);
    if (!ck.task_config.is_object() || !ck.task_config.contains("task"))
      throw CheckpointError(where + ": task_config must be a JSON object with a \"task\" key");
  }
  auto vocab = h5::read_attr_string(root, "vocab", where);
  if (!vocab) throw CheckpointError(where + ": the root attribute 'vocab' is missing");
  json vj = parse_json_attr(*vocab, "vocab", path);
  if (!vj.is_array()) throw CheckpointError(where + ": vocab must be a JSON list of token strings");
  for (const auto& t : vj) {
    if (!t.is_string()) throw CheckpointError(where + ": vocab entry " + t.dump() + " is not a string");
    ck.vocab.push_back(t.get<std::string>());
  }
  if (static_cast<int64_t>(ck.vocab.size()) != ck.config.vocab_size)
    throw CheckpointError(where + ": vocab lists " + std::to_string(ck.vocab.size()) +
                          " tokens but model_config.vocab_size is " + std::to_string(ck.config.vocab_size));
  ck.created_by = h5::read_attr_string(root, "created_by", where).value_or("");
}

// Reads a checkpoint. With `probe` (in the child process of h5::check_in_child) it makes every libhdf5 call the
// real read makes on the file's datasets but builds no model: no torch compute runs in a forked child.
static Checkpoint read_checkpoint(const std::string& path, bool probe) {
  Checkpoint ck;
  ck.path = path;
  try {
    h5::File f = h5::File::open_read(path);
    const hid_t root = f.id();
    const std::string where = "'" + path + "'";
    read_header(root, path, where, ck);

    const double approx = ck.config.approx_parameter_count();
    if (approx > 4.0e9)
      throw CheckpointError(where + ": model_config describes about " + std::to_string(static_cast<int64_t>(approx / 1e6)) +
                            "M parameters, beyond what MechScope loads (4000M)");

    h5::Handle weights = h5::open_group(root, "weights", where);
    const std::string wwhere = where + " /weights";
    std::vector<std::string> present = h5::list_children(weights.get(), wwhere);
    std::set<std::string> present_set(present.begin(), present.end());

    // Sizes alone first: what the file stores must roughly be what the config describes, before the model is
    // built from the config (a 2 MB file whose config says d_model 8192 must not allocate gigabytes first).
    h5::ByteBudget budget(path, where);
    std::map<std::string, h5::Shape> shapes;
    double stored = 0;
    for (const auto& name : present) {
      h5::Shape shape = h5::dataset_shape(weights.get(), name, wwhere);
      budget.take(shape, "/weights/" + name);
      stored += static_cast<double>(shape.numel());
      shapes[name] = shape;
    }
    if (approx > 2.0 * stored + 1.0e6)
      throw CheckpointError(where + ": model_config describes about " + fmt("%.0f", approx) + " parameters but /weights holds " +
                            fmt("%.0f", stored) + " values; the config does not belong to these weights");
    if (!probe) require_memory(approx * 4.0 * 1.25, "the model of " + where);

    if (probe) {
      for (const auto& name : present) read_weight(weights.get(), name, shapes[name].dims, wwhere, ck);
    } else {
      std::shared_ptr<LanguageModel> model = new_model(ck.config);
      auto params = model->state_dict();
      check_parameter_names(params, present_set, where, ck.config.tie_embeddings, "/weights");
      at::NoGradGuard no_grad;
      for (auto& [name, p] : params) {
        const h5::Shape& shape = shapes[name];
        if (shape.dims != p.sizes().vec())
          throw CheckpointError(where + ": parameter " + name + " has shape " + shape.str() + ", the config expects " +
                                shape_str(p.sizes()));
        at::Tensor buf = read_weight(weights.get(), name, shape.dims, wwhere, ck);
        const int64_t bad = count_nonfinite(buf);
        if (bad > 0)
          ck.warnings.push_back("parameter " + name + " has " + std::to_string(bad) + " non-finite value(s)");
        p.copy_(buf);
      }
      ck.model = model;
    }
    ck.training = read_group(root, "training", where, budget);
    ck.optimizer = read_group(root, "optimizer", where, budget);
    if (auto tc = h5::read_attr_string(root, "train_config", where)) ck.train_config = parse_json_attr(*tc, "train_config", path);
  } catch (const h5::Error& e) {
    throw CheckpointError(e.what());
  }
  return ck;
}

Checkpoint load_checkpoint(const std::string& path) {
  try {
    h5::check_in_child(path, [&] { read_checkpoint(path, true); });
  } catch (const h5::Error& e) {
    throw CheckpointError(e.what());
  }
  return read_checkpoint(path, false);
}

std::shared_ptr<LanguageModel> model_from_weights(const ModelConfig& config, const std::map<std::string, at::Tensor>& weights,
                                                  const std::string& where, std::vector<std::string>* warnings,
                                                  at::ScalarType dtype) {
  std::shared_ptr<LanguageModel> model = new_model(config);  // every parameter is replaced below
  auto params = model->state_dict();
  std::set<std::string> present;
  for (const auto& kv : weights) present.insert(kv.first);
  check_parameter_names(params, present, where, config.tie_embeddings, "the weights");
  at::NoGradGuard no_grad;
  std::set<const void*> adopted;  // a storage becomes one parameter at most; another one sharing it is copied
  for (auto& [name, p] : params) {
    const at::Tensor& w = weights.at(name);
    if (w.sizes() != p.sizes())
      throw CheckpointError(where + ": parameter " + name + " has shape " + shape_str(w.sizes()) + ", the config expects " +
                            shape_str(p.sizes()));
    if (!at::isFloatingType(w.scalar_type()))
      throw CheckpointError(where + ": parameter " + name + " is not floating point (" + c10::toString(w.scalar_type()) + ")");
    const int64_t bad = count_nonfinite(w);
    if (bad > 0 && warnings) warnings->push_back("parameter " + name + " has " + std::to_string(bad) + " non-finite value(s)");
    // A weight of its own in the model's dtype becomes the parameter (no second copy of the model in memory);
    // another one is copied (in another dtype: into a new tensor, the uninitialised float32 one freed unwritten).
    if (w.scalar_type() == dtype && w.is_contiguous() && w.device() == p.device() && w.storage_offset() == 0 &&
        w.storage().nbytes() == w.nbytes() && adopted.insert(w.storage().data()).second)
      p.set_data(w);
    else if (dtype == p.scalar_type())
      p.copy_(w);
    else
      p.set_data(w.to(dtype, /*non_blocking=*/false, /*copy=*/true).contiguous());
  }
  if (dtype != at::kFloat) model->to(dtype);  // the buffers (the parameters are in it already)
  return model;
}

void save_checkpoint(const std::string& path, const LanguageModel& model, const CheckpointExtras& extras) {
  h5::remove_stale_temporaries(path);
  const ModelConfig& cfg = model.config();
  std::vector<std::string> vocab = extras.vocab.empty() ? default_vocab(cfg.vocab_size) : extras.vocab;
  if (static_cast<int64_t>(vocab.size()) != cfg.vocab_size)
    throw CheckpointError("cannot save '" + path + "': the vocabulary has " + std::to_string(vocab.size()) +
                          " tokens but the model's vocab_size is " + std::to_string(cfg.vocab_size));
  try {
    TempFile temp(path);  // exclusive, never a planted link; removed unless committed
    temp.close();
    const std::string& tmp = temp.path();
    const std::string where = "'" + tmp + "'";
    {
      h5::File f = h5::File::create(tmp);
      const hid_t root = f.id();
      h5::write_attr_string(root, "format", kCheckpointFormat, where);
      h5::write_attr_int(root, "format_version", kCheckpointVersion, where);
      h5::write_attr_string(root, "model_config", cfg.to_json().dump(), where);
      if (!extras.task_config.is_null()) h5::write_attr_string(root, "task_config", extras.task_config.dump(), where);
      h5::write_attr_string(root, "vocab", json(vocab).dump(), where);
      h5::write_attr_string(root, "created_by", program_id(), where);
      h5::Handle weights = h5::create_group(root, "weights", where);
      for (const auto& [name, p] : model.state_dict()) {
        at::Tensor t = p.detach().to(at::kCPU, at::kFloat).contiguous();
        h5::Handle ds = h5::write_float(weights.get(), name, t.data_ptr<float>(), t.sizes().vec(), where);
        if (p.scalar_type() != at::kFloat) {
          std::string dt = p.scalar_type() == at::kBFloat16 ? "bfloat16"
                         : p.scalar_type() == at::kHalf     ? "float16"
                         : p.scalar_type() == at::kDouble   ? "float64"
                                                            : c10::toString(p.scalar_type());
          h5::write_attr_string(ds.get(), "dtype", dt, where);
        }
      }
      write_group(root, "training", extras.training, where);
      write_group(root, "optimizer", extras.optimizer, where);
      if (!extras.train_config.is_null()) h5::write_attr_string(root, "train_config", extras.train_config.dump(), where);
      f.flush();
    }
    h5::seal(tmp);
    temp.commit();
  } catch (const h5::Error& e) {
    throw CheckpointError("cannot save '" + path + "': " + e.what());
  } catch (const FileError& e) {
    throw CheckpointError(e.what());
  }
}

}  // namespace mechscope
