// Implementations of the mechscope-cli subcommands.
#include "core/cli/commands.h"
#include "core/cli/cli_util.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "core/engine/memory.h"
#include "core/engine/runtime.h"
#include "core/io/checkpoint.h"
#include "core/io/import.h"
#include "core/io/results.h"
#include "core/io/tokens.h"
#include "core/util/files.h"
#include "core/util/json.h"
#include "core/model/model.h"
#include "core/model/scan.h"
#include "core/tasks/task.h"
#include "core/train/trainer.h"

#include <csignal>
#include <unistd.h>
#include "core/session/session.h"
#include "core/util/sha256.h"
#include "core/util/strings.h"
#include "kernels/binding/scan_ops.h"

#include <torch/cuda.h>
#include <torch/optim/adamw.h>

namespace mechscope::cli {
using nlohmann::json;

// Helpers shared with the other command files (cli_util.h).

bool file_exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0;
}

void refuse_overwrite(const std::string& path, bool force, const std::vector<std::string>& inputs) {
  static OutputClaim claims;  // released (its locks removed) when the command ends
  try {
    claims.claim(path, force, inputs);
  } catch (const FileError& e) {
    throw std::runtime_error(e.what());
  }
}

std::string with_commas(int64_t n) {
  std::string s = std::to_string(n), out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i && (s.size() - i) % 3 == 0) out += ',';
    out += s[i];
  }
  return out;
}

// "a.b=3" -> {"a": {"b": 3}}; a value that is not JSON is taken as a string.
json parse_set(const std::string& kv) {
  auto eq = kv.find('=');
  if (eq == std::string::npos || eq == 0)
    throw std::invalid_argument("--set '" + kv + "': expected key=value, e.g. --set d_model=64");
  std::string key = kv.substr(0, eq), value = kv.substr(eq + 1);
  json v;
  try {
    v = parse_json(value);
  } catch (const json::exception&) {
    v = value;
  }
  auto parts = split(key, '.');
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) v = json{{*it, v}};
  return v;
}

// Recursive merge that keeps nulls (so that a later merge_patch can delete keys with them).
void deep_merge(json& into, const json& from) {
  if (!into.is_object() || !from.is_object()) {
    into = from;
    return;
  }
  for (const auto& item : from.items()) {
    if (into.contains(item.key()) && into[item.key()].is_object() && item.value().is_object())
      deep_merge(into[item.key()], item.value());
    else
      into[item.key()] = item.value();
  }
}

json read_json_file(const std::string& path) {
  const std::string text = read_file_capped(path, 16u << 20, "config file", /*allow_pipe=*/true);
  try {
    return parse_json(text);
  } catch (const json::exception& e) {
    throw std::runtime_error("config file '" + path + "' is not valid JSON: " + e.what());
  } catch (const JsonDepthError& e) {
    throw std::runtime_error("config file '" + path + "': " + e.what());
  }
}

// A layer's MLP where the blocks differ in it: "experts" (a mixture), "dense", "none" (blocks without one).
std::string layer_mlp(const ModelConfig& c, int64_t i) {
  return c.moe_layer(i) ? "experts" : c.layer_has_mlp(i) ? "dense" : "none";
}

// "mamba2     8 SSM heads (headdim 32, ...)": the mixer's kind, padded, and its own description; then the layer's MLP
// where the layers differ in it ("; MLP: 4 experts (top 2)", "; no MLP").
std::string describe_layer(const LanguageModel& model, int64_t i) {
  const ModelConfig& c = model.config();
  std::string kind = mixer_kind_name(model.block(i).kind);
  kind.resize(std::max<size_t>(kind.size() + 2, 11), ' ');
  std::string mlp;
  const bool uniform = c.moe.num_experts == 0 && c.mlp_layer_idx.empty();
  if (!uniform && c.moe_layer(i))
    mlp = "; MLP: " + std::to_string(c.moe.num_experts) + " experts (top " + std::to_string(c.moe.top_k) + ")";
  else if (!uniform && c.mixer_kind(i) != MixerKind::None)
    mlp = c.layer_has_mlp(i) ? "; MLP: dense" : "; no MLP";
  const auto& shared = model.block(i).shared;
  return kind + model.block(i).mixer().describe() + mlp + (shared ? "; fed by a " + shared->describe() : "");
}

std::string shape_str(at::IntArrayRef s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

json sets_to_json(const std::vector<std::string>& sets) {
  json j = json::object();
  for (const auto& s : sets) deep_merge(j, parse_set(s));
  return j;
}

int run_version() {
  std::cout << runtime_report();
  return 0;
}

// The model config of init/train: a preset or a config file, with --set overrides (and extra ones first).
static ModelConfig model_config_from(const InitOptions& o, const json& extra, const char* cmd) {
  if (o.preset.empty() == o.config_path.empty())
    throw std::invalid_argument(std::string(cmd) + ": give exactly one of --preset NAME (" +
                                join(ModelConfig::preset_names(), ", ") + ") or --config FILE.json");
  json overrides = extra;
  for (const auto& s : o.sets) deep_merge(overrides, parse_set(s));
  json j;
  if (!o.preset.empty()) {
    j = ModelConfig::preset_json(o.preset, overrides);
  } else {
    j = read_json_file(o.config_path);
    if (j.contains("model_config")) j = j["model_config"];
    j.merge_patch(overrides);
  }
  return ModelConfig::from_json(j);
}

int run_init(const InitOptions& o) {
  ModelConfig cfg = model_config_from(o, json::object(), "init");
  refuse_overwrite(o.out, o.force);
  LanguageModel model(cfg, o.seed);
  save_checkpoint(o.out, model, {});
  std::cout << "wrote " << o.out << ": " << cfg.architecture_name() << ", " << cfg.n_layer << " layers, d_model "
            << cfg.d_model << ", vocab " << cfg.vocab_size << ", " << with_commas(model.parameter_count())
            << " parameters, seed " << o.seed << "\n";
  return 0;
}

int run_info(const InfoOptions& o) {
  Checkpoint ck = open_checkpoint(o.checkpoint, o.dtype);
  const ModelConfig& c = ck.config;
  LanguageModel& model = *ck.model;
  // Shapes of every hook point on a 4-token input (batch 1).
  std::map<std::string, std::vector<int64_t>> shapes;
  if (o.hooks) {
    at::NoGradGuard no_grad;
    const int64_t L = c.pos_emb == "learned" ? std::min<int64_t>(4, c.max_seq_len) : 4;
    at::Tensor toks = at::zeros({1, L}, at::kLong);
    auto [logits, cache] = model.run_with_cache(toks, HookSelection::everything(true));
    for (auto& [n, t] : cache) shapes[n] = t.sizes().vec();
  }
  if (o.json) {
    json j;
    j["path"] = ck.path;
    j["created_by"] = ck.created_by;
    j["architecture"] = c.architecture_name();
    j["model_config"] = c.to_json();
    j["task_config"] = ck.task_config;
    j["parameters"] = model.parameter_count();
    j["dtype"] = dtype_name(model.dtype());
    j["vocab_size"] = c.vocab_size;
    j["vocab_rows"] = c.padded_vocab_size();
    json layers = json::array();
    for (int64_t i = 0; i < c.n_layer; ++i) {
      json heads = json::object();
      for (auto& [k, n] : model.heads_of_layer(i)) heads[k] = n;
      layers.push_back({{"index", i}, {"mixer", mixer_kind_name(c.mixer_kind(i))}, {"mlp", layer_mlp(c, i)}, {"heads", heads}});
    }
    j["layers"] = layers;
    j["warnings"] = ck.warnings;
    if (o.hooks) {
      json hooks = json::array();
      for (const auto& n : model.hook_names())
        hooks.push_back({{"name", n}, {"shape_at_pos4", shapes[n]}, {"axes", hook_axes(n)}, {"on_request", is_expensive_hook(n)}});
      j["hooks"] = hooks;
    }
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << "checkpoint   " << ck.path << (ck.created_by.empty() ? "" : "  (" + ck.created_by + ")") << "\n";
  std::cout << "model        " << c.architecture_name() << ": " << c.n_layer << " layers, d_model " << c.d_model
            << ", vocab " << c.vocab_size << " (" << c.padded_vocab_size() << " rows), "
            << with_commas(model.parameter_count()) << " parameters, held in " << dtype_name(model.dtype()) << "\n";
  std::cout << "blocks       " << (c.rms_norm ? "RMSNorm" : "LayerNorm") << " eps " << c.norm_epsilon << ", "
            << (c.has_mlp() ? c.mlp_description() : std::string("no MLP")) << (c.parallel_residual ? " (parallel residual)" : "")
            << ", "
            << (c.tie_embeddings ? "tied" : "untied") << " embeddings, position embedding: " << c.pos_emb
            << (c.pos_emb == "learned" ? " (" + std::to_string(c.max_seq_len) + " positions)" : "") << "\n";
  for (int64_t i = 0; i < c.n_layer; ++i) std::cout << "layer " << i << (i < 10 ? "      " : "     ") << describe_layer(model, i) << "\n";
  std::cout << "task         " << (ck.task_config.is_null() ? "none (bare model)" : task_config_summary(ck.task_config)) << "\n";
  if (!ck.training.empty()) {
    std::vector<std::string> names;
    for (auto& [n, t] : ck.training) names.push_back(n + " " + shape_str(t.sizes()));
    std::cout << "training     " << join(names, ", ") << "\n";
  }
  if (!ck.train_config.is_null()) std::cout << "settings     " << ck.train_config.dump() << "\n";
  for (const auto& w : ck.warnings) std::cout << "warning      " << w << "\n";
  if (o.hooks) {
    std::cout << "hook points (" << model.hook_names().size() << "; shapes for batch 1 x 4 tokens; * = computed only when asked):\n";
    for (const auto& n : model.hook_names())
      std::cout << "  " << (is_expensive_hook(n) ? "* " : "  ") << n << "  " << shape_str(shapes[n]) << "  "
                << join(hook_axes(n), ",") << "\n";
  }
  std::cout << runtime_report();
  return 0;
}

int run_replay(const ReplayOptions& o) {
  const std::string gui = executable_dir() + "/mechscope";
  if (::access(gui.c_str(), X_OK) != 0)
    throw std::runtime_error("replay draws with the workbench, but '" + gui + "' is missing: build with "
                             "MECHSCOPE_BUILD_APP=ON (Qt 6: packaging/install-deps.sh) or install the mechscope package");
  for (const auto& w : o.workspaces)
    if (!file_exists(w)) throw std::invalid_argument("replay: no workspace '" + w + "'");
  std::vector<std::string> args = {gui, "--replay", o.out};
  args.insert(args.end(), o.workspaces.begin(), o.workspaces.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  ::setenv("QT_QPA_PLATFORM", "offscreen", 1);  // no display needed
  std::cout.flush();
  ::execv(gui.c_str(), argv.data());
  throw std::runtime_error("cannot run '" + gui + "': " + std::strerror(errno));
}

int run_convert(const ConvertOptions& o) {
  refuse_overwrite(o.out, o.force, {o.source});
  if (is_native_checkpoint(o.source)) {
    // A native checkpoint is rewritten in the current layout (sealed, docs/robustness.md), losing nothing.
    if (!o.task.empty() || !o.task_sets.empty())
      throw std::invalid_argument("convert: --task applies to imported models; '" + o.source + "' is a MechScope checkpoint");
    Checkpoint ck = load_checkpoint(o.source);
    save_checkpoint(o.out, *ck.model, {ck.task_config, ck.vocab, ck.training, ck.optimizer, ck.train_config});
    std::cout << "rewrote " << o.source << " as " << o.out << " (current layout, sealed)\n";
    return 0;
  }
  ImportInfo info;
  Checkpoint ck = import_checkpoint(o.source, &info);
  CheckpointExtras extras;
  extras.vocab = ck.vocab;
  if (!o.task.empty()) {
    json tcfg = sets_to_json(o.task_sets);
    tcfg["task"] = o.task;
    auto task = make_task_for(tcfg, json(), ck.config.vocab_size);
    extras.task_config = task->config();
    extras.vocab = task->vocab();
  } else if (!o.task_sets.empty()) {
    throw std::invalid_argument("convert: --task-set needs --task");
  }
  save_checkpoint(o.out, *ck.model, extras);
  std::cout << "imported " << o.source << " as " << info.source_format << " (" << join(info.weight_files, ", ") << ")\n";
  std::cout << "model    " << ck.config.architecture_name() << ": " << ck.config.n_layer << " layers, d_model "
            << ck.config.d_model << ", vocab " << ck.config.vocab_size << ", " << with_commas(ck.model->parameter_count())
            << " parameters\n";
  std::map<std::string, int> dtypes;
  for (const auto& [n, d] : ck.weight_dtypes) ++dtypes[d];
  for (const auto& [d, n] : dtypes)
    std::cout << "dtype    " << n << " parameter(s) stored as " << d << " in the source, converted to float32\n";
  for (const auto& n : info.notes) std::cout << "note     " << n << "\n";
  for (const auto& w : ck.warnings) std::cout << "warning  " << w << "\n";
  std::cout << "wrote " << o.out << "\n";
  return 0;
}

int run_forward(const ForwardOptions& o) {
  if (o.input.given() + (o.example >= 0 ? 1 : 0) != 1)
    throw std::invalid_argument("forward: give exactly one of --tokens, --tokens-file, --text, --text-file or --example");
  if (o.topk < 0) throw std::invalid_argument("forward: --topk must be >= 0");
  if (!o.out.empty()) refuse_overwrite(o.out, o.force, {o.checkpoint, o.input.tokens_file, o.input.text_file});
  auto opened = OpenedModel::open(o.checkpoint, {}, false, o.dtype);
  if (!o.out.empty()) opened->start_digest();  // the results' provenance, hashed beside the forward
  const Checkpoint& ck = opened->ck;
  for (const auto& w : ck.warnings) std::cerr << "warning: " << w << "\n";
  LanguageModel& model = *ck.model;
  const int64_t rows = ck.config.padded_vocab_size();
  std::vector<int64_t> ids, targets;
  if (o.example >= 0) {
    if (!opened->task) throw std::runtime_error("--example: '" + o.checkpoint + "' has no task_config");
    Batch b = opened->task->sample(1, static_cast<uint64_t>(o.example));
    const int64_t len = b.lengths[0].item<int64_t>();
    for (int64_t j = 0; j < len; ++j) {
      ids.push_back(b.tokens[0][j].item<int64_t>());
      targets.push_back(b.targets[0][j].item<int64_t>());
    }
  } else {
    ids = typed_input(o.input, o.checkpoint, ck.vocab, rows, ck.task_config);
  }
  at::Device device(at::kCPU);
  if (o.device == "cuda") {
    if (!at::hasCUDA()) throw std::runtime_error("--device cuda: this build or machine has no CUDA device; use --device cpu");
    device = at::Device(at::kCUDA);
  } else if (o.device != "cpu") {
    throw std::invalid_argument("--device: expected cpu or cuda, found '" + o.device + "'");
  }
  model.to(device);

  HookSelection sel;
  for (const auto& h : o.hooks) {
    if (h == "all") sel.all = true;
    else if (!h.empty()) sel.names.push_back(h);
  }
  at::Tensor tokens = at::tensor(ids, at::kLong).unsqueeze(0).to(device);
  at::NoGradGuard no_grad;
  auto [logits_b, cache] = model.run_with_cache(tokens, sel);
  at::Tensor logits = logits_b.squeeze(0).to(at::kCPU, at::kFloat);  // [pos, vocab_rows]
  const int64_t L = logits.size(0);

  std::vector<std::string> tok_strings;
  for (auto id : ids) tok_strings.push_back(token_string(id, ck.vocab));
  if (o.topk > 0) {
    at::Tensor probs = at::softmax(logits, -1);
    const int64_t k = std::min<int64_t>(o.topk, probs.size(1));
    if (!targets.empty()) {
      std::string line;
      for (auto id : ids) line += token_string(id, ck.vocab) + " ";
      std::cout << "example " << o.example << ": " << line << "\n";
    }
    for (int64_t p = o.all_positions ? 0 : L - 1; p < L; ++p) {
      // With a task example, show the labelled positions (unless --all-positions).
      if (!targets.empty() && !o.all_positions) {
        if (p == L - 1) {
          for (int64_t q = 0; q < L; ++q) {
            if (targets[q] < 0) continue;
            auto top = probs[q].topk(k);
            at::Tensor v = std::get<0>(top), i = std::get<1>(top);
            std::cout << "pos " << q << " " << tok_strings[q] << " (target " << token_string(targets[q], ck.vocab) << ") ->";
            for (int64_t j = 0; j < k; ++j)
              std::cout << "  " << token_string(i[j].item<int64_t>(), ck.vocab) << " " << fmt("%.4f", v[j].item<double>());
            std::cout << "\n";
          }
        }
        continue;
      }
      auto top = probs[p].topk(k);
      at::Tensor v = std::get<0>(top), i = std::get<1>(top);
      std::cout << "pos " << p << " " << tok_strings[p] << " ->";
      for (int64_t j = 0; j < k; ++j)
        std::cout << "  " << token_string(i[j].item<int64_t>(), ck.vocab) << " " << fmt("%.4f", v[j].item<double>());
      std::cout << "\n";
    }
  }
  if (!o.out.empty()) {
    ResultsFile rf;
    rf.kind = "forward";
    rf.provenance = opened->provenance();  // the checkpoint's digest (a folder's: its files'), the program, the task
    rf.provenance.update({{"tokens", ids}, {"hooks", o.hooks}, {"device", o.device}, {"dtype", dtype_name(model.dtype())}});
    json pos_labels = tok_strings;
    rf.tensors.push_back({"logits", logits, {"pos", "vocab"}, json{{"pos", pos_labels}}});
    rf.tensors.push_back({"tokens", at::tensor(ids, at::kLong), {"pos"}, json{{"pos", pos_labels}}});
    for (auto& [name, t] : cache) {
      auto axes = hook_axes(name);
      axes.erase(axes.begin());  // one sequence: drop the batch axis
      rf.tensors.push_back({name, t.squeeze(0).to(at::kCPU, at::kFloat), axes, json()});
    }
    write_results(o.out, rf);
    std::cout << "wrote " << o.out << ": logits [" << L << ", " << logits.size(1) << "]";
    if (!cache.empty()) std::cout << " and " << cache.size() << " hook tensor(s)";
    std::cout << "\n";
  }
  return 0;
}

int run_bench(const BenchOptions& o) {
  if (o.checkpoint.empty() == o.preset.empty())
    throw std::invalid_argument("bench: give exactly one of --checkpoint or --preset");
  if (!o.dataset.empty() && o.checkpoint.empty()) throw std::invalid_argument("bench: --dataset needs --checkpoint");
  if (o.batch <= 0 || o.seq <= 0 || o.repeat <= 0) throw std::invalid_argument("bench: --batch, --seq and --repeat must be positive");
  std::shared_ptr<LanguageModel> model;
  std::string label;
  std::unique_ptr<OpenedModel> opened;
  if (!o.checkpoint.empty()) {
    opened = OpenedModel::open(o.checkpoint, {}, false, o.dtype);
    model = opened->ck.model;
    label = o.checkpoint;
    if (!o.dataset.empty()) use_dataset(*opened, o.checkpoint, o.dataset);
  } else {
    model = std::make_shared<LanguageModel>(ModelConfig::from_json(ModelConfig::preset_json(o.preset, json::object())), o.seed);
    if (o.dtype != "stored" && parse_load_dtype(o.dtype) != at::kFloat) model->to(parse_load_dtype(o.dtype));
    label = "preset " + o.preset;
  }
  const ModelConfig& c = model->config();
  int64_t seq = o.seq;
  if (c.pos_emb == "learned" && seq > c.max_seq_len) seq = c.max_seq_len;
  // From sizes alone, before the input is allocated: the tokens and the forward pass's peak.
  require_memory(static_cast<double>(o.batch) * static_cast<double>(seq) * 8.0 + model->estimate_forward_bytes(o.batch, seq),
                 "bench over " + std::to_string(o.batch) + " x " + std::to_string(seq) + " tokens",
                 "Use a smaller --batch or --seq.");
  at::manual_seed(o.seed);
  at::Tensor tokens = at::randint(c.vocab_size, {o.batch, seq}, at::kLong);
  at::NoGradGuard no_grad;
  model->eval();
  using clock = std::chrono::steady_clock;
  size_t n_hooks = 0;
  double cached_bytes = 0;
  auto plain_fn = [&] { model->forward(tokens); };
  auto cached_fn = [&] {
    auto [logits, cache] = model->run_with_cache(tokens, HookSelection::everything(false));
    n_hooks = cache.size();
    cached_bytes = 0;
    for (auto& [n, t] : cache) cached_bytes += static_cast<double>(t.numel()) * t.element_size();
  };
  // Interleaved repetitions (plain, cached, plain, ...) so that drift on a shared machine hits both alike.
  plain_fn();
  cached_fn();
  std::vector<double> tp, tc;
  for (int r = 0; r < o.repeat; ++r) {
    auto t0 = clock::now();
    plain_fn();
    auto t1 = clock::now();
    cached_fn();
    auto t2 = clock::now();
    tp.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    tc.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
  }
  std::sort(tp.begin(), tp.end());
  std::sort(tc.begin(), tc.end());
  const double plain = tp[tp.size() / 2], cached = tc[tc.size() / 2];
  RuntimeInfo ri = runtime_info();
  std::cout << "model: " << label << " (" << c.architecture_name() << ", " << c.n_layer << " layers, d_model " << c.d_model
            << "), batch " << o.batch << " x " << seq << " tokens, " << ri.threads << " threads, BLAS " << ri.blas << "\n";
  std::cout << "CPU: " << (cpu_model().empty() ? std::string("unknown") : cpu_model()) << ", LibTorch " << ri.torch_version
            << "\n";
  const double tokens_total = static_cast<double>(o.batch * seq);
  std::cout << "plain forward:        " << fmt("%8.2f", plain) << " ms  (" << fmt("%.0f", tokens_total / plain * 1e3)
            << " tokens/s)\n";
  std::cout << "forward + full cache: " << fmt("%8.2f", cached) << " ms  (" << fmt("%.2f", cached / plain) << "x plain; "
            << n_hooks << " hook points, " << format_bytes(cached_bytes)
            << " cached; SSM states and implicit patterns excluded)\n";
  if (opened && opened->task) bench_interventions(*model, *opened->task, o.batch, o.seed, o.repeat);
  return 0;
}

namespace {

// Median of `repeat` timed calls after one warm-up, in milliseconds.
template <typename F>
double time_ms(int repeat, F&& fn) {
  fn();
  std::vector<double> t;
  for (int r = 0; r < repeat; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

double bytes_of(const std::vector<at::Tensor>& ts) {
  double b = 0;
  for (const auto& t : ts) b += static_cast<double>(t.numel()) * t.element_size();
  return b;
}

void scan_line(const std::string& op, double ref_ms, double fast_ms, double elements, double bytes) {
  std::cout << op << ": reference " << fmt("%.2f", ref_ms) << " ms, fast " << fmt("%.2f", fast_ms) << " ms ("
            << fmt("%.3g", elements / (fast_ms * 1e-3)) << " elements/s, " << fmt("%.2f", bytes / (fast_ms * 1e-3) / 1e9)
            << " GB/s), " << fmt("%.1f", ref_ms / fast_ms) << "x\n";
}

// Gradient of sum(y * w) with respect to every input, for the fwd+bwd timings.
template <typename F>
void fwd_bwd(F&& op, std::vector<at::Tensor> inputs, const at::Tensor& w) {
  for (auto& t : inputs) t = t.detach().requires_grad_(true);
  at::Tensor y = op(inputs);
  (y * w).sum().backward();
}

}  // namespace

int run_bench_scan(const BenchOptions& o) {
  at::manual_seed(o.seed);
  const int64_t B = o.batch, L = o.seq;
  const bool gpu = o.device == "cuda";
  if (gpu && !kernels::cuda_scan_built())
    throw std::runtime_error("bench --scan --device cuda: this build has no CUDA kernels (configure against a CUDA LibTorch "
                             "with nvcc; kernels/README.md)");
  if (gpu && !torch::cuda::is_available())
    throw std::runtime_error("bench --scan --device cuda: no CUDA device is visible");
  const at::TensorOptions opt = at::TensorOptions().device(gpu ? at::Device(at::kCUDA) : at::Device(at::kCPU));
  // On the GPU every timed call ends with a device synchronisation.
  auto timed = [&](auto&& fn) {
    return time_ms(o.repeat, [&] {
      fn();
      if (gpu) torch::cuda::synchronize();
    });
  };
  std::cout << "scan kernels on " << (gpu ? "cuda" : "cpu") << ", batch " << B << " x " << L << " steps"
            << (gpu ? "" : ", " + std::to_string(at::get_num_threads()) + " threads") << " (median of " << o.repeat << ")\n";
  {
    // CPU: the mamba1 preset (d_model 128, expand 2, d_state 16); GPU: mamba-130m's widths (d_inner 1536).
    const int64_t D = gpu ? 1536 : 256, N = 16;
    at::Tensor x = at::randn({B, L, D}, opt), dt = at::softplus(at::randn({B, L, D}, opt) - 2), A = -at::exp(at::randn({D, N}, opt));
    at::Tensor Bm = at::randn({B, L, N}, opt), Cm = at::randn({B, L, N}, opt), Dk = at::randn({D}, opt), w = at::randn({B, L, D}, opt);
    auto fast = [](const std::vector<at::Tensor>& v) { return kernels::selective_scan(v[0], v[1], v[2], v[3], v[4], v[5]); };
    auto ref = [](const std::vector<at::Tensor>& v) { return mamba1_scan(v[0], v[1], v[2], v[3], v[4], v[5]); };
    std::vector<at::Tensor> in = {x, dt, A, Bm, Cm, Dk};
    const double elements = static_cast<double>(B * L * D * N);
    const double fwd_bytes = bytes_of(in) + bytes_of({x});
    {
      at::NoGradGuard ng;
      double r = timed([&] { ref(in); }), f = timed([&] { fast(in); });
      scan_line("mamba1 selective scan fwd (B=" + std::to_string(B) + " L=" + std::to_string(L) + " D=" + std::to_string(D) +
                    " N=16)",
                r, f, elements, fwd_bytes);
    }
    double r = timed([&] { fwd_bwd(ref, in, w); }), f = timed([&] { fwd_bwd(fast, in, w); });
    scan_line("mamba1 selective scan fwd+bwd", r, f, elements, 2 * fwd_bytes + 2 * bytes_of(in));
  }
  {
    // CPU: the mamba2 preset (d_ssm 256, headdim 32, d_state 32); GPU: mamba2-130m's (24 heads of 64, d_state 128).
    const int64_t H = gpu ? 24 : 8, P = gpu ? 64 : 32, G = 1, N = gpu ? 128 : 32;
    at::Tensor x = at::randn({B, L, H, P}, opt), dt = at::softplus(at::randn({B, L, H}, opt) - 2), A = -at::exp(at::randn({H}, opt));
    at::Tensor Bm = at::randn({B, L, G, N}, opt), Cm = at::randn({B, L, G, N}, opt), Dk = at::randn({H}, opt),
               w = at::randn({B, L, H, P}, opt);
    auto fast = [](const std::vector<at::Tensor>& v) { return kernels::ssd_scan(v[0], v[1], v[2], v[3], v[4], v[5]); };
    auto ref = [](const std::vector<at::Tensor>& v) { return mamba2_ssd(v[0], v[1], v[2], v[3], v[4], v[5], 64); };
    std::vector<at::Tensor> in = {x, dt, A, Bm, Cm, Dk};
    const double elements = static_cast<double>(B * L * H * P * N);
    const double fwd_bytes = bytes_of(in) + bytes_of({x});
    const std::string shape = "H=" + std::to_string(H) + " P=" + std::to_string(P) + " N=" + std::to_string(N);
    {
      at::NoGradGuard ng;
      double r = timed([&] { ref(in); }), f = timed([&] { fast(in); });
      scan_line("mamba2 ssd fwd (B=" + std::to_string(B) + " L=" + std::to_string(L) + " " + shape + "; ref = chunked SSD)",
                r, f, elements, fwd_bytes);
    }
    double r = timed([&] { fwd_bwd(ref, in, w); }), f = timed([&] { fwd_bwd(fast, in, w); });
    scan_line("mamba2 ssd fwd+bwd", r, f, elements, 2 * fwd_bytes + 2 * bytes_of(in));
  }
  if (gpu) return 0;  // training throughput below is the CPU demo configs'
  // Training steps (forward, cross-entropy on every position, backward, AdamW) of the Mamba demo configs.
  for (const std::string preset : {mixer_kind_name(MixerKind::Mamba1), mixer_kind_name(MixerKind::Mamba2)}) {  // presets named after their mixers
    const int64_t batch = 32, seq = 64;
    double eps[2];
    for (int fast = 0; fast < 2; ++fast) {
      kernels::set_fast_scan_enabled(fast == 1);
      // The MQAR demo configs (resources/make-demos.sh): d_model 64, 2 layers, MQAR's 256-token vocabulary.
      LanguageModel model(ModelConfig::from_json(ModelConfig::preset_json(preset, {{"d_model", 64}, {"vocab_size", 256}})),
                          o.seed);
      torch::optim::AdamW opt(model.parameters(), torch::optim::AdamWOptions(1e-3).weight_decay(0.0));
      at::Tensor toks = at::randint(model.config().vocab_size, {batch, seq}, at::kLong);
      const int steps = std::max(2, o.repeat / 2);
      double ms = time_ms(steps, [&] {
        opt.zero_grad();
        at::Tensor logits = model.forward(toks);
        at::Tensor loss = at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), toks.reshape({-1}));
        loss.backward();
        opt.step();
      });
      eps[fast] = batch / (ms * 1e-3);
    }
    kernels::set_fast_scan_enabled(true);
    std::cout << preset << " demo config training step (d_model 64, batch 32 x 64 tokens, fwd+bwd+AdamW): reference "
              << fmt("%.0f", eps[0])
              << " examples/s, fast " << fmt("%.0f", eps[1]) << " examples/s, " << fmt("%.1f", eps[1] / eps[0]) << "x\n";
  }
  return 0;
}

namespace {

std::atomic<bool> g_stop{false};
extern "C" void on_sigint(int) { g_stop.store(true); }


std::string duration_str(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  char buf[32];
  if (s < 60) std::snprintf(buf, sizeof buf, "%.0fs", s);
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%dm%02ds", int(s) / 60, int(s) % 60);
  else std::snprintf(buf, sizeof buf, "%dh%02dm", int(s) / 3600, (int(s) % 3600) / 60);
  return buf;
}

// Two-sided 95% Student-t quantiles for 1..30 degrees of freedom (then the normal 1.96).
double t95(int64_t dof) {
  static const double q[] = {12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
                             2.201,  2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
                             2.080,  2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042};
  return dof <= 0 ? 0.0 : dof <= 30 ? q[dof - 1] : 1.96;
}

}  // namespace

int run_train(const TrainOptions& o) {
  std::shared_ptr<LanguageModel> model;
  std::shared_ptr<Task> task;
  TrainConfig tc;
  std::string out = o.model.out;
  std::unique_ptr<Trainer> trainer;
  // The recorded initialisation seed is the model's (--seed), never a setting: refused for a new run and a resume.
  const json sets = sets_to_json(o.train_sets);
  if (sets.contains("init_seed"))
    throw std::invalid_argument("train: init_seed is recorded from --seed (the model's initialisation seed); "
                                "give --seed instead");
  if (!o.resume.empty()) {
    if (!o.model.preset.empty() || !o.model.config_path.empty() || !o.task.empty())
      throw std::invalid_argument("train --resume takes the model, task and settings from the checkpoint; "
                                  "drop --preset/--config/--task");
    // Continuing a file in place is what --resume does; another file is claimed like any output.
    if (out.empty() || same_file(out, o.resume)) refuse_overwrite(o.resume, true);
    else refuse_overwrite(out, o.model.force, {o.resume});
    Checkpoint ck = load_checkpoint(o.resume);
    if (ck.task_config.is_null() || ck.train_config.is_null())
      throw std::runtime_error("'" + o.resume + "' holds no training run to resume (no task_config / train_config)");
    json tj = ck.train_config;
    deep_merge(tj, sets);  // e.g. more steps
    tc = TrainConfig::from_json(tj);
    task = make_task(ck.task_config);
    model = ck.model;
    if (out.empty()) out = o.resume;
    trainer = std::make_unique<Trainer>(model, task, tc, out);
    trainer->resume(ck);
  } else {
    if (o.task.empty()) throw std::invalid_argument("train: give --task (" + join(task_names(), ", ") + ") or --resume");
    if (out.empty()) throw std::invalid_argument("train: give --out FILE.h5");
    refuse_overwrite(out, o.model.force, {o.model.config_path, o.train_config});
    json tcfg = sets_to_json(o.task_sets);
    tcfg["task"] = o.task;
    task = make_task(tcfg);
    json tj = o.train_config.empty() ? json::object() : read_json_file(o.train_config);
    if (tj.contains("init_seed"))
      throw std::invalid_argument("train: init_seed is recorded from --seed (the model's initialisation seed); "
                                  "drop it from " + o.train_config + " and give --seed instead");
    deep_merge(tj, sets);
    tc = TrainConfig::from_json(tj);
    tc.init_seed = static_cast<int64_t>(o.model.seed);
    json extra = {{"vocab_size", static_cast<int64_t>(task->vocab().size())}};
    ModelConfig mc = model_config_from(o.model, extra, "train");
    model = std::make_shared<LanguageModel>(mc, o.model.seed);
    trainer = std::make_unique<Trainer>(model, task, tc, out);
  }
  std::signal(SIGINT, on_sigint);
  std::signal(SIGTERM, on_sigint);
  const bool tty = isatty(STDERR_FILENO);
  std::cerr << "training " << model->config().architecture_name() << " (" << with_commas(model->parameter_count())
            << " parameters) on " << task_config_summary(task->config()) << "\n"
            << "settings " << tc.to_json().dump() << "\ncheckpoint " << out << " (Ctrl-C saves and stops)\n";
  TrainResult r = trainer->run(
      [&](const TrainProgress& p) {
        if (o.quiet) return;
        if (!tty && !p.evaluated) return;
        std::ostringstream line;
        line << "step " << p.step << "/" << p.steps << "  loss " << fmt("%.4f", p.loss) << "  acc "
             << (p.accuracy < 0 ? std::string("-") : fmt("%.4f", p.accuracy)) << "  " << fmt("%.0f", p.examples_per_s)
             << " ex/s  eta " << duration_str(p.eta_s);
        if (tty) std::cerr << "\r" << line.str() << "\033[K" << std::flush;
        else std::cerr << line.str() << "\n";
      },
      &g_stop);
  if (tty && !o.quiet) std::cerr << "\n";
  std::cout << (r.interrupted ? "interrupted" : r.early_stopped ? "reached the target accuracy" : "finished") << " at step "
            << r.step << "; accuracy " << (r.accuracy < 0 ? std::string("-") : fmt("%.4f", r.accuracy))
            << "; data efficiency " << trainer->history().data_efficiency << " examples; wrote " << out << "\n";
  return r.interrupted ? 130 : 0;
}

int run_eval(const EvalOptions& o) {
  if (o.examples <= 0) throw std::invalid_argument("eval: --examples must be positive");
  if (o.seeds.empty()) throw std::invalid_argument("eval: give at least one seed");
  if (!o.csv.empty()) refuse_overwrite(o.csv, o.force, {o.checkpoint});
  auto opened = OpenedModel::open(o.checkpoint);
  const Checkpoint& ck = opened->ck;
  if (ck.task_config.is_null())
    throw std::runtime_error("'" + o.checkpoint + "' has no task_config; it was not trained on a task");
  json base = ck.task_config;
  deep_merge(base, sets_to_json(o.task_sets));
  // The swept parameters (none: one point); point i sets each parameter to its i-th value.
  std::vector<std::string> keys;
  std::vector<std::vector<json>> columns;
  for (const auto& sweep : o.sweeps) {
    auto eq = sweep.find('=');
    if (eq == std::string::npos || eq == 0)
      throw std::invalid_argument("--sweep: expected key=v1,v2,..., e.g. num_pairs=4,8,16, found '" + sweep + "'");
    keys.push_back(sweep.substr(0, eq));
    if (std::count(keys.begin(), keys.end(), keys.back()) > 1)
      throw std::invalid_argument("--sweep: '" + keys.back() + "' is swept twice");
    std::vector<json> values;
    for (const auto& v : split(sweep.substr(eq + 1), ',')) {
      try {
        values.push_back(parse_json(v));
      } catch (const json::exception&) {
        values.push_back(v);
      }
    }
    if (!columns.empty() && values.size() != columns.front().size())
      throw std::invalid_argument("--sweep: parameters swept together need as many values each; " + keys.front() +
                                  " has " + std::to_string(columns.front().size()) + ", " + keys.back() + " " +
                                  std::to_string(values.size()));
    columns.push_back(std::move(values));
  }
  const size_t points = columns.empty() ? 1 : columns.front().size();
  const std::string key = join(keys, ",");  // the CSV's leading columns
  std::ostringstream csv;
  csv << (key.empty() ? "" : key + ",") << (o.by_answer ? "answer," : "") << "seeds,examples,accuracy_mean,ci95_low,ci95_high";
  for (auto s : o.seeds) csv << ",seed_" << s;
  csv << "\n";
  int failures = 0;
  for (size_t point = 0; point < points; ++point) {
    json tj = base;
    std::string label, cells;  // "num_pairs=4 min_pairs=4", "4,4"
    for (size_t k = 0; k < keys.size(); ++k) {
      tj[keys[k]] = columns[k][point];
      label += (k ? " " : "") + keys[k] + "=" + columns[k][point].dump();
      cells += (k ? "," : "") + columns[k][point].dump();
    }
    std::unique_ptr<Task> task;
    try {
      task = make_task_for(tj, json(), ck.config.vocab_size);
    } catch (const std::invalid_argument& e) {
      if (keys.empty()) throw;
      std::cout << label << "  skipped: " << e.what() << "\n";  // the rest of the sweep still runs
      ++failures;
      continue;
    }
    // The mean over seeds and its 95% interval; one CSV row (`answer` is "all" or the answer's order).
    auto report = [&](const std::vector<double>& accs, const std::string& answer, const std::string& line) {
      double mean = 0;
      for (double a : accs) mean += a;
      mean /= accs.size();
      double var = 0;
      for (double a : accs) var += (a - mean) * (a - mean);
      const int64_t n = static_cast<int64_t>(accs.size());
      const double half = n > 1 ? t95(n - 1) * std::sqrt(var / (n - 1)) / std::sqrt(double(n)) : 0.0;
      std::cout << line << fmt("%.3f", mean);
      if (n > 1) std::cout << " ± " << fmt("%.3f", half) << " (95% interval over " << n << " seeds)";
      csv << (key.empty() ? "" : cells + ",") << (o.by_answer ? answer + "," : "") << n << "," << o.examples << ","
          << mean << "," << mean - half << "," << mean + half;
      for (double a : accs) csv << "," << a;
      csv << "\n";
    };
    std::vector<double> accs;
    std::vector<std::vector<std::pair<int64_t, int64_t>>> per_seed(o.seeds.size());  // with --by-answer
    size_t orders = 0;
    for (size_t k = 0; k < o.seeds.size(); ++k) {
      accs.push_back(Trainer::evaluate(*ck.model, *task, o.examples, o.seeds[k], o.by_answer ? &per_seed[k] : nullptr));
      orders = std::max(orders, per_seed[k].size());
    }
    report(accs, "all", (label.empty() ? "" : label + "  ") + "accuracy ");
    std::cout << "\n";
    for (size_t k = 0; k < orders; ++k) {
      std::vector<double> a;  // the seeds whose examples have a (k+1)-th answer
      int64_t positions = 0;
      for (const auto& c : per_seed)
        if (k < c.size() && c[k].second > 0) {
          a.push_back(static_cast<double>(c[k].first) / c[k].second);
          positions += c[k].second;
        }
      report(a, std::to_string(k + 1), "  answer " + std::to_string(k + 1) + ": ");
      std::cout << "  (" << positions << " positions)\n";
    }
  }
  if (!o.csv.empty()) write_file_atomically(o.csv, csv.str());  // all or nothing, never through a planted link
  return failures ? 1 : 0;
}

int run_bench_train(const BenchOptions& o) {
  if (o.checkpoint.empty()) throw std::invalid_argument("bench --train: give --checkpoint (a model trained on a task)");
  auto opened = OpenedModel::open(o.checkpoint, json(), o.dataset.empty());
  if (!o.dataset.empty()) use_dataset(*opened, o.checkpoint, o.dataset);
  Task* task = opened->task.get();
  LanguageModel& model = opened->model();
  model.train();
  torch::optim::AdamW opt(model.parameters(), torch::optim::AdamWOptions(1e-4).weight_decay(0.0));
  Batch b = task->sample(o.batch, o.seed);  // data generation is not timed
  double ms = time_ms(o.repeat, [&] {
    opt.zero_grad();
    at::Tensor logits = model.forward(b.tokens);
    at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), b.targets.reshape({-1}), {}, at::Reduction::Mean, -100)
        .backward();
    opt.step();
  });
  std::cout << o.checkpoint << ": training step (batch " << o.batch << " x " << b.tokens.size(1)
            << " tokens, fwd+bwd+AdamW, " << at::get_num_threads() << " threads): " << fmt("%.2f", ms) << " ms, "
            << fmt("%.0f", o.batch / (ms * 1e-3)) << " examples/s\n";
  return 0;
}

}  // namespace mechscope::cli

