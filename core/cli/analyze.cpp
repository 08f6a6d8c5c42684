// mechscope-cli analyze | verify, and the intervention part of bench: every analysis and sweep of core/analysis
// and core/interventions on a checkpoint and its task, written as a results file (HDF5) and CSV.
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
#include "core/io/import.h"
#include "core/io/results.h"
#include "core/io/tokens.h"
#include "core/model/model.h"
#include "core/plugin/plugin.h"
#include "core/util/sha256.h"
#include "core/util/strings.h"
#include "kernels/binding/scan_ops.h"

namespace mechscope::cli {

using nlohmann::json;

namespace {

std::atomic<bool> g_cancel{false};
extern "C" void on_analyze_sigint(int) { g_cancel.store(true); }

const std::vector<std::string> kAnalyses = {"attention", "head-scores", "ablation", "knockout", "patching",
                                            "attribution", "dla", "embeddings", "logit-lens"};

struct Loaded {
  Checkpoint ck;
  std::unique_ptr<Task> task;
  json task_config;
};

Loaded load(const std::string& path, const std::vector<std::string>& task_sets, bool need_task) {
  Loaded l;
  l.ck = open_checkpoint(path);
  for (const auto& w : l.ck.warnings) std::cerr << "warning: " << w << "\n";
  l.ck.model->eval();
  if (l.ck.task_config.is_null()) {
    if (need_task || !task_sets.empty())
      throw std::runtime_error("'" + path + "' has no task_config (a bare model); this analysis needs a task");
    return l;
  }
  l.task_config = l.ck.task_config;
  deep_merge(l.task_config, sets_to_json(task_sets));
  l.task = make_task(l.task_config);
  if (static_cast<int64_t>(l.task->vocab().size()) != l.ck.config.vocab_size)
    throw std::invalid_argument("task " + l.task_config.dump() + " has a vocabulary of " +
                                std::to_string(l.task->vocab().size()) + " tokens; the model has " +
                                std::to_string(l.ck.config.vocab_size));
  return l;
}

SweepOptions sweep_options(const AnalyzeOptions& o) {
  SweepOptions s;
  s.batched = !o.plain;
  s.memory_budget_mb = o.memory_mb;
  s.keep_threshold = o.keep_threshold;
  s.cancel = &g_cancel;
  if (!o.quiet && ::isatty(2)) {
    s.progress = [](double f, const std::string& what) {
      std::cerr << "\r" << fmt("%5.1f", 100 * f) << "%  " << what << "            " << std::flush;
      if (f >= 1) std::cerr << "\r" << std::string(70, ' ') << "\r" << std::flush;
    };
  }
  return s;
}

std::vector<std::string> head_labels(const std::vector<HeadRef>& heads) {
  std::vector<std::string> out;
  for (const auto& h : heads) out.push_back(h.label());
  return out;
}

std::vector<std::string> token_labels(const at::Tensor& ids, const std::vector<std::string>& vocab) {
  std::vector<std::string> out;
  for (int64_t j = 0; j < ids.size(0); ++j) out.push_back(token_string(ids[j].item<int64_t>(), vocab));
  return out;
}

// Position labels "3:k17" from example 0.
std::vector<std::string> position_labels(const at::Tensor& ids, const std::vector<std::string>& vocab) {
  auto toks = token_labels(ids, vocab);
  for (size_t j = 0; j < toks.size(); ++j) toks[j] = std::to_string(j) + ":" + toks[j];
  return toks;
}

void print_outcome(const std::string& label, const MetricTable& m, int64_t i = 0) {
  std::cout << label << "accuracy " << fmt("%.3f", m.accuracy[i].item<double>()) << ", answer probability "
            << fmt("%.3f", m.prob[i].item<double>()) << ", logit difference " << fmt("%.3f", m.logit_diff[i].item<double>());
  if (m.kl.defined()) std::cout << ", KL to unablated " << fmt("%.4f", m.kl[i].item<double>());
  std::cout << "\n";
}

// The patching score aligned to each example's corrupted token and readout (PatchResult::aligned), as a table:
// every row up to 16, else the 16 with the highest aligned score (all of them go to the results file).
void print_aligned(const PatchResult& res) {
  const auto& anchors = aligned_anchors();
  const int64_t rows = res.aligned.size(0);
  std::vector<int64_t> shown(rows);
  for (int64_t r = 0; r < rows; ++r) shown[r] = r;
  if (rows > 16) {
    at::Tensor best = std::get<0>(res.aligned.nan_to_num(-1e30).max(1));
    std::sort(shown.begin(), shown.end(), [&](int64_t a, int64_t b) {
      return best[a].item<double>() > best[b].item<double>();
    });
    shown.resize(16);
    std::sort(shown.begin(), shown.end());
  }
  size_t width = 4;
  for (int64_t r : shown) width = std::max(width, res.rows[r].size());
  std::cout << "score aligned to each example's corrupted token and readout (" << res.aligned_examples
            << " examples" << (rows > 16 ? "; the 16 rows with the highest scores" : "") << "):\n"
            << std::string(width + 2, ' ');
  for (const auto& a : anchors) std::cout << std::string(12 - std::min<size_t>(12, a.size()), ' ') << a;
  std::cout << "\n";
  for (int64_t r : shown) {
    std::cout << "  " << res.rows[r] << std::string(width - res.rows[r].size(), ' ');
    for (size_t a = 0; a < anchors.size(); ++a) {
      double v = res.aligned[r][a].item<double>();
      if (std::abs(v) < 5e-4) v = 0;  // no "-0.000"
      std::cout << (std::isfinite(v) ? fmt("%12.3f", v) : std::string(11, ' ') + "-");
    }
    std::cout << "\n";
  }
}

// Runs the batch without and with `hooks` (metrics at every labelled position, KL to the run without), prints
// both, and records them as <group>/before and <group>/after [metric] and as the CSV table.
void before_after(LanguageModel& model, const Batch& batch, const std::vector<Hook>& hooks, const std::string& after_label,
                  const std::string& group, ResultsFile& rf, const std::string& csv, std::function<void()>& write_csv_fn) {
  at::NoGradGuard no_grad;
  Readout r = Readout::all_labelled(batch);
  at::Tensor base = gather_readout(model.forward(batch.tokens), r).unsqueeze(0);
  at::Tensor hooked = gather_readout(model.run_with_hooks(batch.tokens, hooks), r).unsqueeze(0);
  auto table = [&](const at::Tensor& logits) {
    ExampleMetrics m = example_metrics(logits, r, base);
    return MetricTable{m.prob.mean(-1), m.logit_diff.mean(-1), m.correct.mean(-1), m.kl.mean(-1)};
  };
  const MetricTable before = table(base), after = table(hooked);
  print_outcome("before: ", before);
  print_outcome(after_label + ": ", after);
  const std::vector<std::string> names = {"prob", "logit_diff", "accuracy", "kl"};
  auto vec = [](const MetricTable& m) { return at::stack({m.prob, m.logit_diff, m.accuracy, m.kl}).to(at::kFloat); };
  rf.tensors.push_back({group + "/before", vec(before), {"metric"}, json{{"metric", names}}});
  rf.tensors.push_back({group + "/after", vec(after), {"metric"}, json{{"metric", names}}});
  write_csv_fn = [csv, names, b = vec(before), a = vec(after)] {
    write_csv_table(csv, "metric", names, {{"before", b}, {"after", a}});
  };
}

}  // namespace

namespace {

// An analysis a plugin registered: the same inputs, outputs and provenance as the built-in ones.
int run_plugin_analysis(const AnalyzeOptions& o, const RegisteredAnalysis& a) {
  if (!o.out.empty()) refuse_overwrite(o.out, o.force);
  if (!o.csv.empty()) refuse_overwrite(o.csv, o.force);
  Loaded l = load(o.checkpoint, o.task_sets, a.info.needs_task);
  Batch batch;
  if (!o.tokens.empty()) {
    auto ids = parse_tokens(o.tokens, l.ck.vocab, l.ck.config.padded_vocab_size());
    at::Tensor t = at::tensor(ids, at::kLong).unsqueeze(0);
    batch = Batch{t, at::full_like(t, -100), at::zeros_like(t).to(at::kChar), at::full({1}, t.size(1), at::kLong)};
  } else if (l.task) {
    batch = l.task->sample(o.examples, o.seed);
  } else {
    throw std::runtime_error(o.what + ": the checkpoint has no task; give --tokens");
  }
  json options = sets_to_json(o.options);
  ResultsFile rf = a.info.run(AnalysisContext{*l.ck.model, l.task.get(), batch, l.ck.vocab, options});
  if (rf.kind.empty()) rf.kind = o.what;
  rf.provenance = {{"checkpoint", l.ck.path}, {"checkpoint_sha256", sha256_file(l.ck.path)}, {"program", program_id()},
                   {"seed", o.seed}, {"examples", batch.size()}, {"analysis", o.what}, {"plugin", a.origin},
                   {"options", options}};
  if (!l.task_config.is_null()) rf.provenance["task"] = l.task_config;
  std::cout << o.what << " (" << a.origin << "):";
  for (const auto& t : rf.tensors) std::cout << " " << t.name << " " << shape_str(t.value.sizes());
  std::cout << "\n";
  if (!o.out.empty()) {
    write_results(o.out, rf);
    std::cout << "wrote " << o.out << "\n";
  }
  if (!o.csv.empty()) {
    for (const auto& t : rf.tensors)
      if (t.value.dim() == 1 || t.value.dim() == 2) {
        write_csv(o.csv, t);
        std::cout << "wrote " << o.csv << " (" << t.name << ")\n";
        return 0;
      }
    throw std::invalid_argument("--csv: " + o.what + " returned no one- or two-dimensional tensor");
  }
  return 0;
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
  for (const auto& a : kAnalyses) std::cout << "  " << a << "  (built-in)\n";
  for (const auto& a : registered_analyses())
    std::cout << "  " << a.info.name << "  (" << a.origin << ", " << a.info.result_kind << ")  " << a.info.description << "\n";
  return 0;
}

int run_analyze(const AnalyzeOptions& o) {
  if (std::find(kAnalyses.begin(), kAnalyses.end(), o.what) == kAnalyses.end()) {
    if (const RegisteredAnalysis* a = find_analysis(o.what)) return run_plugin_analysis(o, *a);
    std::vector<std::string> all = kAnalyses;
    for (const auto& a : registered_analyses()) all.push_back(a.info.name);
    throw std::invalid_argument("analyze: unknown analysis '" + o.what + "'; expected one of " + join(all, ", ") +
                                closest_matches_hint(o.what, all));
  }
  if (o.examples <= 0 || o.examples > 100000) throw std::invalid_argument("analyze: --examples must be in 1..100000");
  if (!o.aligned_csv.empty() && o.what != "patching" && o.what != "attribution")
    throw std::invalid_argument("--aligned-csv: only patching and attribution have aligned scores");
  if (o.out.empty() && o.csv.empty() && o.aligned_csv.empty() && o.what != "ablation" && o.what != "knockout")
    std::cerr << "note: no --out or --csv given; printing a summary only\n";
  if (!o.out.empty()) refuse_overwrite(o.out, o.force);
  if (!o.csv.empty()) refuse_overwrite(o.csv, o.force);
  if (!o.aligned_csv.empty()) refuse_overwrite(o.aligned_csv, o.force);
  const bool needs_task = o.what != "attention" && o.what != "embeddings";
  Loaded l = load(o.checkpoint, o.task_sets, needs_task);
  LanguageModel& model = *l.ck.model;
  const auto& vocab = l.ck.vocab;
  g_cancel = false;
  auto previous = std::signal(SIGINT, on_analyze_sigint);
  struct Restore {
    decltype(previous) p;
    ~Restore() { std::signal(SIGINT, p); }
  } restore{previous};

  ResultsFile rf;
  rf.kind = o.what;
  rf.provenance = {{"checkpoint", l.ck.path}, {"checkpoint_sha256", sha256_file(l.ck.path)}, {"program", program_id()},
                   {"seed", o.seed}, {"examples", o.examples}};
  if (!l.task_config.is_null()) rf.provenance["task"] = l.task_config;
  rf.settings = json::object();
  std::function<void()> write_csv_fn;  // set by the analysis when it has a one- or two-dimensional result
  std::function<void()> write_aligned_fn;  // patching and attribution: the aligned table (--aligned-csv)
  const std::string g = [&] {
    std::string s = o.what;
    std::replace(s.begin(), s.end(), '-', '_');
    return s;
  }();

  Batch batch;
  at::Tensor corrupted_tokens;
  if (l.task && o.what != "attention" && o.what != "embeddings") batch = l.task->sample(o.examples, o.seed);
  SweepOptions sw = sweep_options(o);

  try {
    if (o.what == "attention") {
      at::Tensor tokens;
      if (!o.tokens.empty() || !o.tokens_file.empty()) {
        const int64_t rows = l.ck.config.padded_vocab_size();
        auto ids = o.tokens.empty() ? read_token_file(o.tokens_file, vocab, rows) : parse_tokens(o.tokens, vocab, rows);
        tokens = at::tensor(ids, at::kLong).unsqueeze(0);
      } else {
        if (!l.task) throw std::runtime_error("attention: the checkpoint has no task; give --tokens or --tokens-file");
        Batch b = l.task->sample(1, o.example >= 0 ? o.example : o.seed);
        tokens = b.tokens.narrow(1, 0, b.lengths[0].item<int64_t>());
      }
      auto labels = token_labels(tokens[0], vocab);
      rf.provenance["tokens"] = labels;
      std::vector<AttentionMap> maps;
      if (o.layer >= 0) {
        auto mixers = model.heads_of_layer(o.layer < model.n_layers() ? o.layer : 0);
        if (o.layer >= model.n_layers())
          throw std::invalid_argument("--layer " + std::to_string(o.layer) + ": the model has layers 0.." +
                                      std::to_string(model.n_layers() - 1));
        for (const auto& [mixer, H] : mixers)
          if (o.mixer.empty() || o.mixer == mixer) maps.push_back(attention_map(model, tokens, o.layer, mixer, o.groups));
        if (maps.empty()) throw std::invalid_argument("--mixer " + o.mixer + ": layer " + std::to_string(o.layer) + " has no such mixer");
      } else {
        maps = attention_maps(model, tokens);
      }
      rf.settings = {{"normalised", o.normalise}, {"mamba1_groups", o.groups}};
      for (const auto& m : maps) {
        at::Tensor p = m.pattern[0];
        if (o.normalise) p = normalise_map(p);
        const std::string name = g + "/L" + std::to_string(m.layer) + "." + m.mixer;
        rf.tensors.push_back({name, p, {"head", "q_pos", "k_pos"}, json{{"q_pos", labels}, {"k_pos", labels}}});
        std::cout << "L" << m.layer << " " << m.mixer << ": " << p.size(0) << " head(s) x " << p.size(1) << " x "
                  << p.size(2) << "\n";
      }
      if (!o.csv.empty()) {
        if (maps.size() != 1 || o.head < 0)
          throw std::invalid_argument("--csv with attention: choose one map with --layer, --mixer and --head");
        if (o.head >= rf.tensors[0].value.size(0))
          throw std::invalid_argument("--head " + std::to_string(o.head) + ": the map has " +
                                      std::to_string(rf.tensors[0].value.size(0)) + " heads");
        ResultTensor one{rf.tensors[0].name, rf.tensors[0].value[o.head], {"q_pos", "k_pos"}, rf.tensors[0].labels};
        write_csv_fn = [one, &o] { write_csv(o.csv, one); };
      }
    } else if (o.what == "head-scores") {
      HeadScores s = head_scores(model, batch, 5, o.repeat_len, o.seed, sw);
      auto labels = head_labels(s.heads);
      std::vector<std::pair<std::string, at::Tensor>> cols;
      for (const auto& n : head_score_names()) {
        rf.tensors.push_back({g + "/" + n, head_score(s, n), {"head"}, json{{"head", labels}}});
        cols.push_back({n, head_score(s, n)});
      }
      rf.settings = {{"repeat_len", o.repeat_len}};
      std::cout << "head            gather  aggregate  causal  induction  prev_token\n";
      for (size_t i = 0; i < labels.size() && i < 64; ++i)
        std::cout << labels[i] << std::string(std::max<int64_t>(1, 16 - (int64_t)labels[i].size()), ' ')
                  << fmt("%6.3f", s.gather[i].item<double>()) << "  " << fmt("%9.3f", s.aggregate[i].item<double>())
                  << "  " << fmt("%6.3f", s.causal[i].item<double>()) << "  " << fmt("%9.3f", s.induction[i].item<double>())
                  << "  " << fmt("%10.3f", s.prev_token[i].item<double>()) << "\n";
      if (labels.size() > 64) std::cout << "... " << labels.size() - 64 << " more heads in the results file\n";
      // The reading in one line: is the top aggregate head also the most causal one?
      const std::string reading = top_aggregate_reading(s);
      if (!reading.empty()) std::cout << reading << "\n";
      write_csv_fn = [&o, labels, cols] { write_csv_table(o.csv, "head", labels, cols); };
    } else if (o.what == "ablation") {
      AblationKind kind = parse_ablation(o.ablation);
      Batch reference = l.task->sample(std::max<int64_t>(o.examples, 32), o.seed + 1000003);
      Ablator ab(model, kind, reference);
      Readout r = Readout::all_labelled(batch);
      rf.settings = {{"ablation", o.ablation}, {"reference_seed", o.seed + 1000003}};
      if (!o.heads.empty()) {
        std::vector<HeadRef> heads;
        for (const auto& h : o.heads)
          for (const auto& one : parse_heads(h, model)) heads.push_back(one);
        rf.settings["heads"] = head_labels(heads);
        before_after(model, batch, ab.hooks(heads),
                     "after " + std::string(ablation_name(kind)) + "-ablating " + group_label(heads), g, rf, o.csv,
                     write_csv_fn);
      } else {
        auto t0 = std::chrono::steady_clock::now();
        if (o.channel_group < 1) throw std::invalid_argument("--channel-group must be at least 1");
        if (o.channel_group > 1) rf.settings["channel_group"] = o.channel_group;
        HeadSweepResult res = head_group_sweep(model, batch.tokens, r, ab, channel_groups(model, o.channel_group), sw);
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const std::vector<std::string>& labels = res.labels;
        std::vector<std::pair<std::string, at::Tensor>> cols = {
            {"prob", res.ablated.prob}, {"logit_diff", res.ablated.logit_diff},
            {"accuracy", res.ablated.accuracy}, {"kl", res.ablated.kl}};
        for (const auto& [n, t] : cols) rf.tensors.push_back({g + "/" + n, t, {"head"}, json{{"head", labels}}});
        rf.settings["base"] = {{"prob", res.base.prob.item<double>()}, {"logit_diff", res.base.logit_diff.item<double>()},
                               {"accuracy", res.base.accuracy.item<double>()}};
        print_outcome("unablated: ", res.base);
        at::Tensor drop = res.base.accuracy - res.ablated.accuracy;
        at::Tensor order = drop.argsort(0, true);
        std::cout << res.heads.size() << (o.channel_group > 1 ? " heads and channel groups " : " heads ")
                  << ablation_name(kind) << "-ablated one at a time in "
                  << fmt("%.2f", secs) << " s; largest accuracy drops:\n";
        for (int64_t i = 0; i < std::min<int64_t>(8, order.size(0)); ++i) {
          const int64_t h = order[i].item<int64_t>();
          std::cout << "  " << labels[h] << "  accuracy " << fmt("%.3f", res.ablated.accuracy[h].item<double>())
                    << " (" << fmt("%+.3f", -drop[h].item<double>()) << "), probability "
                    << fmt("%.3f", res.ablated.prob[h].item<double>()) << "\n";
        }
        write_csv_fn = [&o, labels, cols] { write_csv_table(o.csv, "head", labels, cols); };
      }
    } else if (o.what == "knockout") {
      if (o.layer < 0) throw std::invalid_argument("knockout: give --layer");
      Knockout ko;
      ko.layer = o.layer;
      for (const auto& h : o.heads) ko.heads.push_back(std::stoll(h));
      for (const auto& e : o.edges) {
        auto parts = split(e, ':');
        if (parts.size() != 2) throw std::invalid_argument("--edge '" + e + "': expected query:key, e.g. 12:3");
        ko.edges.push_back({std::stoll(parts[0]), std::stoll(parts[1])});
      }
      ko.last_row = o.last_row;
      if (ko.edges.empty() && !ko.last_row) throw std::invalid_argument("knockout: give --edge q:k (repeatable) or --last-row");
      rf.settings = {{"layer", o.layer}, {"heads", o.heads}, {"edges", o.edges}, {"last_row", o.last_row}};
      before_after(model, batch, knockout_hooks(model, {ko}, Readout::all_labelled(batch)), "after knockout", g, rf, o.csv,
                   write_csv_fn);
    } else if (o.what == "patching" || o.what == "attribution") {
      Batch corrupted = l.task->corrupt(batch, o.seed + 1, o.corrupt);
      corrupted_tokens = corrupted.tokens;
      rf.settings = {{"site", o.site}, {"corrupt", o.corrupt.empty() ? l.task->corruptible_roles()[0] : o.corrupt},
                     {"batched", !o.plain}};
      auto t0 = std::chrono::steady_clock::now();
      PatchResult res = o.what == "patching" ? activation_patching(model, batch, corrupted, o.site, sw)
                                             : attribution_patching(model, batch, corrupted, o.site, sw);
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      auto pos = position_labels(batch.tokens[0], vocab);
      json labels = {{"row", res.rows}, {"pos", pos}};
      rf.tensors.push_back({g + "/score", res.score, {"row", "pos"}, labels});
      if (o.what == "patching")
        for (const auto& [n, t] : std::vector<std::pair<std::string, at::Tensor>>{
                 {"prob", res.prob}, {"logit_diff", res.logit_diff}, {"accuracy", res.accuracy}, {"kl", res.kl}})
          rf.tensors.push_back({g + "/" + n, t, {"row", "pos"}, labels});
      rf.settings["kept_examples"] = res.kept_examples;
      rf.settings["clean_prob"] = res.clean_prob;
      rf.settings["corrupted_prob"] = res.corrupted_prob;
      std::cout << o.what << " at " << o.site << ": " << res.kept_examples << " of " << res.total_examples
                << " examples kept (p(y|clean) " << fmt("%.3f", res.clean_prob) << ", p(y|corrupted) "
                << fmt("%.3f", res.corrupted_prob) << "), " << res.rows.size() << " x " << res.positions << " cells in "
                << fmt("%.2f", secs) << " s\n";
      rf.tensors.push_back({g + "/aligned_score", res.aligned, {"row", "anchor"},
                            json{{"row", res.rows}, {"anchor", aligned_anchors()}}});
      write_aligned_fn = [&o, aligned = rf.tensors.back()] { write_csv(o.aligned_csv, aligned); };
      rf.settings["aligned_examples"] = res.aligned_examples;
      print_aligned(res);
      if (o.what == "attribution" && o.compare) {
        PatchResult exact = activation_patching(model, batch, corrupted, o.site, sw);
        const double corr = score_correlation(res.score, exact.score);
        rf.tensors.push_back({g + "/exact_score", exact.score, {"row", "pos"}, labels});
        rf.settings["correlation_with_exact"] = corr;
        std::cout << "correlation with exact patching: " << fmt("%.3f", corr) << "\n";
      }
      // The strongest cells.
      at::Tensor flat = res.score.flatten().nan_to_num(-1e30);
      at::Tensor order = flat.argsort(0, true);
      std::cout << "highest normalised scores (absolute positions; tokens of example 0):\n";
      for (int64_t i = 0; i < std::min<int64_t>(5, order.size(0)); ++i) {
        const int64_t c = order[i].item<int64_t>(), row = c / res.positions, p = c % res.positions;
        if (!std::isfinite(res.score[row][p].item<double>())) break;
        std::cout << "  " << res.rows[row] << " @ " << pos[p] << "  " << fmt("%.3f", res.score[row][p].item<double>()) << "\n";
      }
      ResultTensor grid = rf.tensors[0];
      write_csv_fn = [&o, grid] { write_csv(o.csv, grid); };
    } else if (o.what == "dla") {
      DlaResult d = direct_logit_attribution(model, batch.tokens, Readout::all_labelled(batch));
      rf.tensors.push_back({g + "/value", d.value, {"component"}, json{{"component", d.components}}});
      rf.settings["answer_logit"] = d.answer_logit;
      at::Tensor order = d.value.abs().argsort(0, true);
      std::cout << "mean answer logit " << fmt("%.3f", d.answer_logit) << " = sum of " << d.components.size()
                << " components; largest:\n";
      for (int64_t i = 0; i < std::min<int64_t>(8, order.size(0)); ++i) {
        const int64_t c = order[i].item<int64_t>();
        std::cout << "  " << d.components[c] << "  " << fmt("%+.3f", d.value[c].item<double>()) << "\n";
      }
      ResultTensor t = rf.tensors[0];
      write_csv_fn = [&o, t] { write_csv(o.csv, t); };
    } else if (o.what == "embeddings") {
      std::vector<int64_t> ids;
      at::Tensor rows;
      if (!o.ids.empty()) {
        for (const auto& s : o.ids) ids.push_back(std::stoll(s));
        at::Tensor idx = at::tensor(ids, at::kLong);
        if (idx.min().item<int64_t>() < 0 || idx.max().item<int64_t>() >= l.ck.config.padded_vocab_size())
          throw std::invalid_argument("--ids: ids must be in [0, " + std::to_string(l.ck.config.padded_vocab_size()) + ")");
        rows = model.embedding_matrix().detach().index_select(0, idx);
      } else {
        rows = probe_rows(model, l.task.get(), &ids);
        if (!rows.defined())
          throw std::runtime_error("embeddings: the task has no position tokens and the model no learned position "
                                   "table; choose rows with --ids");
      }
      EmbeddingGeometry geo = embedding_geometry(rows, o.components, o.k);
      std::vector<std::string> row_labels;
      for (auto id : ids) row_labels.push_back(l.task || !l.ck.vocab.empty() ? token_string(id, vocab) : std::to_string(id));
      if (o.ids.empty() && !l.task) row_labels.clear();
      if (row_labels.size() != static_cast<size_t>(rows.size(0))) {
        row_labels.clear();
        for (int64_t i = 0; i < rows.size(0); ++i) row_labels.push_back("pos" + std::to_string(i));
      }
      std::vector<std::string> comp_labels;
      for (int64_t c = 0; c < geo.projection.size(1); ++c) comp_labels.push_back("PC" + std::to_string(c + 1));
      rf.tensors.push_back({g + "/projection", geo.projection, {"row", "component"}, json{{"row", row_labels}, {"component", comp_labels}}});
      rf.tensors.push_back({g + "/explained", geo.explained, {"component"}, json{{"component", comp_labels}}});
      rf.tensors.push_back({g + "/cosine", geo.cosine, {"row", "row2"}, json{{"row", row_labels}, {"row2", row_labels}}});
      rf.tensors.push_back({g + "/ids", at::tensor(ids, at::kLong), {"row"}, json{{"row", row_labels}}});
      rf.settings = {{"k", o.k}, {"components", o.components}, {"locality", geo.locality}};
      std::cout << rows.size(0) << " rows; locality (k = " << o.k << ") " << fmt("%.3f", geo.locality) << " (random ≈ "
                << fmt("%.3f", std::min(1.0, 2.0 * o.k / rows.size(0))) << "); explained variance";
      for (int64_t c = 0; c < geo.explained.size(0); ++c) std::cout << " " << fmt("%.3f", geo.explained[c].item<double>());
      std::cout << "\n";
      // Over training, from the snapshots kept in the checkpoint's history.
      auto snaps = l.ck.training.find("embedding_snapshots");
      if (o.over_training) {
        if (snaps == l.ck.training.end())
          throw std::runtime_error("--over-training: '" + o.checkpoint + "' keeps no embedding snapshots in /training");
        at::Tensor S = snaps->second;  // [snapshots, rows, d]
        at::Tensor steps = l.ck.training.count("embedding_snapshot_steps") ? l.ck.training.at("embedding_snapshot_steps")
                                                                          : at::arange(S.size(0), at::kLong);
        std::vector<double> loc;
        std::vector<std::string> step_labels;
        for (int64_t i = 0; i < S.size(0); ++i) {
          loc.push_back(locality_score(S[i], o.k));
          step_labels.push_back(std::to_string(steps[i].item<int64_t>()));
          std::cout << "step " << step_labels.back() << ": locality " << fmt("%.3f", loc.back()) << "\n";
        }
        rf.tensors.push_back({g + "/locality_over_training", at::tensor(loc, at::kDouble).to(at::kFloat), {"step"},
                              json{{"step", step_labels}}});
      }
      ResultTensor proj = rf.tensors[0];
      write_csv_fn = [&o, proj] { write_csv(o.csv, proj); };
    } else if (o.what == "logit-lens") {
      LogitLens lens = logit_lens(model, batch);
      rf.tensors.push_back({g + "/prob", lens.prob, {"stage"}, json{{"stage", lens.stages}}});
      rf.tensors.push_back({g + "/accuracy", lens.accuracy, {"stage"}, json{{"stage", lens.stages}}});
      auto pos = position_labels(batch.tokens[0], vocab);
      rf.tensors.push_back({g + "/example_prob", lens.example_prob, {"stage", "pos"}, json{{"stage", lens.stages}, {"pos", pos}}});
      rf.tensors.push_back({g + "/example_top", lens.example_top, {"stage", "pos"}, json{{"stage", lens.stages}, {"pos", pos}}});
      for (size_t i = 0; i < lens.stages.size(); ++i)
        std::cout << lens.stages[i] << ": answer probability " << fmt("%.3f", lens.prob[i].item<double>()) << ", accuracy "
                  << fmt("%.3f", lens.accuracy[i].item<double>()) << "\n";
      auto stages = lens.stages;
      std::vector<std::pair<std::string, at::Tensor>> cols = {{"prob", lens.prob}, {"accuracy", lens.accuracy}};
      write_csv_fn = [&o, stages, cols] { write_csv_table(o.csv, "stage", stages, cols); };
    }
  } catch (const Cancelled&) {
    std::cerr << "\ninterrupted: nothing written\n";
    return 130;
  }
  if (batch.size() > 0) {  // the inputs, so that a result can be recomputed elsewhere
    rf.tensors.push_back({"inputs/tokens", batch.tokens, {"example", "pos"}, json()});
    rf.tensors.push_back({"inputs/targets", batch.targets, {"example", "pos"}, json()});
    rf.tensors.push_back({"inputs/lengths", batch.lengths, {"example"}, json()});
    if (corrupted_tokens.defined())
      rf.tensors.push_back({"inputs/corrupted_tokens", corrupted_tokens, {"example", "pos"}, json()});
  }
  if (!o.out.empty()) {
    write_results(o.out, rf);
    std::cout << "wrote " << o.out << " (" << rf.tensors.size() << " tensor(s))\n";
  }
  if (!o.csv.empty()) {
    if (!write_csv_fn) throw std::invalid_argument("--csv: this analysis has no one- or two-dimensional result");
    write_csv_fn();
    std::cout << "wrote " << o.csv << "\n";
  }
  if (!o.aligned_csv.empty()) {
    write_aligned_fn();
    std::cout << "wrote " << o.aligned_csv << "\n";
  }
  return 0;
}

// ---------------------------------------------------------------- verify

int run_verify(const VerifyOptions& o) {
  if (o.examples <= 0 || o.examples > 4096) throw std::invalid_argument("verify: --examples must be in 1..4096");
  Loaded l = load(o.checkpoint, {}, false);
  VerifyReport rep = verify_model(*l.ck.model, l.task.get(), o.examples, o.seed, o.tolerance);
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
  try {  // SPEC §4's filter when some example reacts to the corruption, else every example (timing only)
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
