// mechscope-cli analyze | plugins | verify, and the intervention part of bench. `analyze` runs any registered analysis
// (core's own, core/session/analyses/, and plugins') on a checkpoint and its task: it prepares the input the analysis
// asks for, passes the flags it declares as options, and writes its results file (HDF5), CSV and report.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cmath>
#include <functional>
#include <iostream>
#include <numeric>
#include <sstream>

#include <ATen/ATen.h>

#include "core/analysis/analysis.h"
#include "core/cli/cli_util.h"
#include "core/cli/commands.h"
#include "core/interventions/interventions.h"
#include "core/interventions/verify.h"
#include "core/io/checkpoint.h"
#include "core/io/results.h"
#include "core/io/tokens.h"
#include "core/text/dataset.h"
#include "core/text/tokenizer.h"
#include "core/model/model.h"
#include "core/plugin/plugin.h"
#include "core/session/session.h"
#include "core/util/strings.h"
#include "kernels/binding/scan_ops.h"

namespace mechscope::cli {

using nlohmann::json;

namespace {

std::atomic<bool> g_cancel{false};
extern "C" void on_analyze_sigint(int) { g_cancel.store(true); }

// The command line's flags as the options of core's analyses (each takes the ones it declares).
json flag_options(const AnalyzeOptions& o) {
  return {{"layer", o.layer}, {"mixer", o.mixer}, {"head", o.head}, {"normalise", o.normalise}, {"groups", o.groups},
          {"repeat_len", o.repeat_len}, {"ablation", o.ablation}, {"heads", o.heads},
          {"channel_group", o.channel_group}, {"shard", o.shard}, {"edges", o.edges}, {"last_row", o.last_row}, {"site", o.site},
          {"corrupt", o.corrupt}, {"plain", o.plain}, {"compare", o.compare}, {"memory_mb", o.memory_mb},
          {"keep_threshold", o.keep_threshold}, {"ids", o.ids}, {"k", o.k}, {"components", o.components},
          {"over_training", o.over_training}};
}

// The options an analysis gets: the flags it declares, then --option key=value on top.
json analysis_options(const AnalyzeOptions& o, const RegisteredAnalysis& a) {
  json options = json::object();
  const json flags = flag_options(o);
  for (const auto& opt : a.info.options)
    if (flags.contains(opt.name)) options[opt.name] = flags[opt.name];
  options.merge_patch(sets_to_json(o.options));
  return options;
}

// The input an analysis asked for (AnalysisInput): task examples, one sequence, or nothing.
Batch analysis_input(const AnalyzeOptions& o, const RegisteredAnalysis& a, const OpenedModel& m) {
  const int64_t rows = m.ck.config.padded_vocab_size();
  if (o.input.given() > 1) throw std::invalid_argument(o.what + ": give one of --tokens, --tokens-file, --text or --text-file");
  if (a.info.input == AnalysisInput::None) return {};
  if (o.input.given() == 1) return typed_batch(typed_input(o.input, o.checkpoint, m.ck.vocab, rows, m.ck.task_config));
  if (!m.task)
    throw std::runtime_error(o.what + ": the checkpoint has no task; give --tokens, --tokens-file, --text or --text-file");
  if (a.info.input == AnalysisInput::Sequence) return m.task->sample(1, o.example >= 0 ? o.example : o.seed);
  return m.task->sample(o.examples, o.seed);
}

std::function<void(double, const std::string&)> progress_printer(const AnalyzeOptions& o) {
  if (o.quiet || !::isatty(2)) return {};
  return [](double f, const std::string& what) {
    std::cerr << "\r" << fmt("%5.1f", 100 * f) << "%  " << what << "            " << std::flush;
    if (f >= 1) std::cerr << "\r" << std::string(70, ' ') << "\r" << std::flush;
  };
}

// What --csv writes: the analysis's own export, or (an analysis that names none) its first 1-D or 2-D tensor.
CsvExport csv_of(const ResultsFile& rf, const std::string& what) {
  if (!rf.csv.empty() || !rf.csv.unavailable.empty()) return rf.csv;
  CsvExport c;
  for (const auto& t : rf.tensors)
    if (t.value.dim() == 1 || t.value.dim() == 2) {
      c.tensor = t;
      return c;
    }
  c.unavailable = "--csv: " + what + " returned no one- or two-dimensional tensor";
  return c;
}

}  // namespace

int run_plugins() {
  const auto& statuses = load_plugins();
  if (statuses.empty()) std::cout << "no plugins found (looked in <install>/lib/mechscope/plugins and $MECHSCOPE_PLUGIN_PATH)\n";
  for (const auto& p : statuses) {
    if (p.loaded) {
      std::cout << "loaded  " << p.name << (p.version.empty() ? "" : " " + p.version) << "  " << p.path << "\n";
      if (!p.about.empty()) std::cout << "        " << p.about << "\n";
      for (const auto& x : p.provides) std::cout << "        provides " << x << "\n";
    } else if (p.panels_only) {
      std::cout << "panels  " << p.path << "\n        GUI panels only: the workbench (mechscope) loads them\n";
    } else {
      std::cout << "FAILED  " << p.path << "\n        " << p.error << "\n";
    }
  }
  std::cout << "tasks:\n";
  for (const auto& t : registered_tasks())
    std::cout << "  " << t.info.name << "  (" << t.origin << ")" << (t.info.description.empty() ? "" : "  " + t.info.description) << "\n";
  std::cout << "analyses:\n";
  for (const auto& a : registered_analyses())
    std::cout << "  " << a.info.name << "  (" << a.origin << ", " << a.info.result_kind << ")  " << a.info.description << "\n";
  return 0;
}

int run_analyze(const AnalyzeOptions& o) {
  const RegisteredAnalysis* found = find_analysis(o.what);
  if (!found) {
    try {
      require_analysis(o.what);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(std::string("analyze: ") + e.what());
    }
  }
  const RegisteredAnalysis& a = *found;
  if (o.examples <= 0 || o.examples > 100000) throw std::invalid_argument("analyze: --examples must be in 1..100000");
  const bool has_aligned = o.what == "patching" || o.what == "attribution" || a.origin != "built-in";
  if (!o.aligned_csv.empty() && !has_aligned)
    throw std::invalid_argument("--aligned-csv: only patching and attribution have aligned scores");
  if (o.out.empty() && o.csv.empty() && o.aligned_csv.empty() && o.what != "ablation" && o.what != "knockout")
    std::cerr << "note: no --out or --csv given; printing a summary only\n";
  const std::vector<std::string> inputs = {o.checkpoint, o.input.tokens_file, o.input.text_file, o.dataset};
  if (!o.dataset.empty() && (o.input.given() > 0 || !o.task_sets.empty()))
    throw std::invalid_argument("analyze: --dataset replaces the task; it takes no --tokens, --text or --task-set");
  const std::string outs[] = {o.out, o.csv, o.aligned_csv};
  for (size_t i = 0; i < 3; ++i) {
    if (outs[i].empty()) continue;
    for (size_t j = 0; j < i; ++j)
      if (outs[j] == outs[i]) throw std::invalid_argument("analyze: '" + outs[i] + "' is given for two outputs");
    refuse_overwrite(outs[i], o.force, inputs);
  }
  auto m = OpenedModel::open(o.checkpoint, sets_to_json(o.task_sets), a.info.needs_task && o.dataset.empty());
  m->start_digest();  // for the results' provenance, beside the analysis
  if (!o.dataset.empty()) use_dataset(*m, o.checkpoint, o.dataset);
  for (const auto& w : m->ck.warnings) std::cerr << "warning: " << w << "\n";
  const Batch batch = analysis_input(o, a, *m);
  const json options = analysis_options(o, a);
  g_cancel = false;
  auto previous = std::signal(SIGINT, on_analyze_sigint);
  struct Restore {
    decltype(previous) p;
    ~Restore() { std::signal(SIGINT, p); }
  } restore{previous};

  ResultsFile rf;
  try {
    rf = run_analysis(a, AnalysisContext{m->model(), m->task.get(), batch, m->ck.vocab, options, o.seed,
                                         progress_printer(o), &g_cancel, &m->ck.training});
  } catch (const Cancelled&) {
    std::cerr << "\ninterrupted: nothing written\n";
    return 130;
  }
  if (rf.kind.empty()) rf.kind = o.what;
  json provenance = m->provenance();
  provenance["seed"] = o.seed;
  provenance["examples"] = batch.size();
  provenance["analysis"] = o.what;
  provenance["options"] = options;
  if (a.origin != "built-in") provenance["plugin"] = a.origin;
  if (rf.provenance.is_object()) provenance.update(rf.provenance);
  rf.provenance = provenance;
  if (a.info.input == AnalysisInput::Examples) {  // the inputs, so that a result can be recomputed elsewhere
    rf.tensors.push_back({"inputs/tokens", batch.tokens, {"example", "pos"}, json()});
    rf.tensors.push_back({"inputs/targets", batch.targets, {"example", "pos"}, json()});
    rf.tensors.push_back({"inputs/lengths", batch.lengths, {"example"}, json()});
  }
  if (!rf.summary.empty()) {
    std::cout << rf.summary;
  } else {
    std::cout << o.what << " (" << a.origin << "):";
    for (const auto& t : rf.tensors) std::cout << " " << t.name << " " << shape_str(t.value.sizes());
    std::cout << "\n";
  }
  const CsvExport csv = o.csv.empty() ? CsvExport{} : csv_of(rf, o.what);
  if (!o.csv.empty() && csv.empty()) throw std::invalid_argument(csv.unavailable);
  const ResultTensor* aligned = nullptr;
  for (const auto& t : rf.tensors)
    if (t.name.size() > 14 && t.name.compare(t.name.size() - 14, 14, "/aligned_score") == 0) aligned = &t;
  if (!o.aligned_csv.empty() && !aligned)
    throw std::invalid_argument("--aligned-csv: " + o.what + " has no aligned scores; only patching and attribution have them");
  if (!o.out.empty()) {
    write_results(o.out, rf);
    std::cout << "wrote " << o.out << " (" << rf.tensors.size() << " tensor(s))\n";
  }
  if (!o.csv.empty()) {
    write_csv(o.csv, csv);
    std::cout << "wrote " << o.csv << "\n";
  }
  if (!o.aligned_csv.empty()) {
    write_csv(o.aligned_csv, *aligned);
    std::cout << "wrote " << o.aligned_csv << "\n";
  }
  return 0;
}

void use_dataset(OpenedModel& m, const std::string& checkpoint, const std::string& dataset) {
  const std::unique_ptr<Tokenizer> tok = model_tokenizer(checkpoint, m.ck.task_config, false);
  m.task = make_dataset_task(dataset, tok.get(), m.ck.vocab);
  m.task_config = m.task->config();
}

// ---------------------------------------------------------------- verify

int run_verify(const VerifyOptions& o) {
  if (o.examples <= 0 || o.examples > 4096) throw std::invalid_argument("verify: --examples must be in 1..4096");
  auto m = OpenedModel::open(o.checkpoint);
  for (const auto& w : m->ck.warnings) std::cerr << "warning: " << w << "\n";
  VerifyReport rep = verify_model(m->model(), m->task.get(), o.examples, o.seed, o.tolerance);
  for (const auto& ch : rep.checks)
    std::cout << (ch.pass ? "ok    " : "FAIL  ") << ch.what << ": max difference " << fmt("%.2e", ch.diff) << "\n";
  std::cout << rep.summary << "\n";
  return rep.pass ? 0 : 1;
}

// ---------------------------------------------------------------- bench: interventions

namespace {

// Median seconds of `repeat` interleaved rounds of a and b (drift on a shared machine hits both alike). When a run
// is short (under a quarter second), each timed run follows an untimed one of the same kind: on the 2-core
// development VM a short sweep timed right after the other kind ran up to 1.3x slower than after its own kind
// (docs/benchmarks.md, "Warm-up"), which biased whichever came second.
std::pair<double, double> median_pair(int repeat, const std::function<void()>& a, const std::function<void()>& b) {
  using clock = std::chrono::steady_clock;
  auto seconds = [](const std::function<void()>& f) {
    auto t0 = clock::now();
    f();
    return std::chrono::duration<double>(clock::now() - t0).count();
  };
  std::vector<double> ta, tb;
  bool warm = false;
  for (int i = 0; i < std::max(1, repeat); ++i) {
    if (warm) a();
    ta.push_back(seconds(a));
    if (warm) b();
    tb.push_back(seconds(b));
    if (i == 0) warm = ta[0] < 0.25 && tb[0] < 0.25;
  }
  std::sort(ta.begin(), ta.end());
  std::sort(tb.begin(), tb.end());
  return {ta[ta.size() / 2], tb[tb.size() / 2]};
}

std::string secs_str(double s) { return s < 1 ? fmt("%.1f ms", s * 1e3) : fmt("%.2f s", s); }

}  // namespace

void bench_interventions(LanguageModel& model, const Task& task, int64_t examples, uint64_t seed, int repeat) {
  Batch batch = task.sample(examples, seed);
  Readout r = Readout::all_labelled(batch);
  Ablator zero(model, AblationKind::Zero);
  SweepOptions plain;
  plain.batched = false;
  auto heads = all_heads(model);
  const int ablation_repeat = heads.size() > 32 ? std::min(repeat, 3) : repeat;
  auto [naive, batched] = median_pair(
      ablation_repeat, [&] { head_ablation_sweep(model, batch.tokens, r, zero, heads, plain); },
      [&] { head_ablation_sweep(model, batch.tokens, r, zero, heads, {}); });
  std::cout << "head-ablation sweep (" << heads.size() << " heads, " << examples << " examples): naive "
            << secs_str(naive) << ", batched " << secs_str(batched) << ", " << fmt("%.1f", naive / batched) << "x\n";
  Batch corrupted = task.corrupt(batch, seed + 1);
  SweepOptions keep_all;
  try {  // spec §4's filter when some example reacts to the corruption, else every example (timing only)
    SweepOptions probe;
    probe.memory_budget_mb = 1;
    attribution_patching(model, batch, corrupted, "resid_pre", probe);
  } catch (const std::invalid_argument&) {
    keep_all.keep_threshold = -1;
  }
  SweepOptions plain_all = keep_all;
  plain_all.batched = false;
  PatchResult exact;
  auto [pn, pb] = median_pair(
      std::min(repeat, 3), [&] { activation_patching(model, batch, corrupted, "resid_pre", plain_all); },
      [&] { exact = activation_patching(model, batch, corrupted, "resid_pre", keep_all); });
  std::cout << "residual patching sweep (" << model.n_layers() << " layers x " << exact.positions << " positions): naive "
            << secs_str(pn) << ", batched " << secs_str(pb) << ", " << fmt("%.1f", pn / pb) << "x\n";
  PatchResult attr;
  auto [pa, unused] = median_pair(
      repeat, [&] { attr = attribution_patching(model, batch, corrupted, "resid_pre", keep_all); }, [] {});
  std::cout << "attribution patching (same grid, one forward + backward): " << secs_str(pa) << ", "
            << fmt("%.1f", pb / pa) << "x faster than batched exact; correlation with exact "
            << fmt("%.3f", score_correlation(attr.score, exact.score)) << "\n";
}

}  // namespace mechscope::cli
