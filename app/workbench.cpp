// Workbench: the engine behind the panels (see workbench.h). Torch and core live only here.
#include "app/workbench.h"

#include <algorithm>

#include <cmath>
#include <limits>
#include <numeric>
#include <map>
#include <mutex>
#include <thread>
#include <stdexcept>
#include <tuple>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "core/analysis/analysis.h"
#include "core/interventions/interventions.h"
#include "core/interventions/verify.h"
#include "core/io/checkpoint.h"
#include "core/io/tokens.h"
#include "core/model/generate.h"
#include "core/model/model.h"
#include "core/plugin/plugin.h"
#include "core/session/session.h"
#include "core/text/tokenizer.h"
#include "core/util/json.h"
#include "core/util/strings.h"

#include "app/render.h"

namespace mechscope::app {

using nlohmann::json;
namespace {
const double kNaN = std::numeric_limits<double>::quiet_NaN();

// An attention map's run in its title, its record, and its colour bar's title.
const char* run_suffix(MapRun r) {
  static const char* k[] = {"", ", with the ablations", ", ablated minus clean"};
  return k[static_cast<int>(r)];
}
const char* run_name(MapRun r) {
  static const char* k[] = {"clean", "ablated", "difference"};
  return k[static_cast<int>(r)];
}
std::string map_value_title(MapRun r, bool implicit) {
  return std::string(r == MapRun::Difference ? "change in " : "") + (implicit ? "implicit attention" : "attention");
}
json map_figure(int layer, const std::string& mixer, json head, bool normalise, MapRun r) {
  return {{"view", "attention"}, {"layer", layer},      {"mixer", mixer},
          {"head", std::move(head)}, {"normalise", normalise}, {"map", run_name(r)}};
}
// The head count of a layer's mixer; -1 when the layer has no such mixer.
int64_t heads_in(const LanguageModel& model, int64_t layer, const std::string& mixer) {
  for (const auto& [m, n] : model.heads_of_layer(layer))
    if (m == mixer) return n;
  return -1;
}
}  // namespace

struct Workbench::Impl {
  // `mu` serialises engine work (held by every long call); `small` guards the fields the UI thread reads
  // (model list, current model, verify strings, ablation, input size) and is held only briefly, so the
  // window never waits for a running sweep.
  mutable std::recursive_mutex mu;
  mutable std::recursive_mutex small;
  Session s;                         // models, input, ablation (core/session)
  std::atomic<std::thread::id> ui_thread{};  // guard_thread's: engine calls from it throw
  std::vector<std::string> verify;   // per model: "" until verified
  // views' caches
  std::unique_ptr<HeadScores> scores;
  std::unique_ptr<DlaResult> dla;  // direct logit attribution of the batch (the head cards')
  Batch patch_corrupt;
  std::unique_ptr<PatchResult> patch;
  std::string patch_role;  // the role the last sweep corrupted ("" for the task's default)
  json input_src;          // how the input was made (Workbench::input_state)

  /// The engine lock for a call that computes (or waits for a running computation), refused on the guarded thread.
  std::unique_lock<std::recursive_mutex> engine(const char* call) {
    const std::thread::id ui = ui_thread.load();
    if (ui != std::thread::id() && std::this_thread::get_id() == ui)
      throw std::logic_error(std::string("Workbench::") + call +
                             " ran on the window's thread: it waits for the engine, so it must run as a job");
    return std::unique_lock<std::recursive_mutex>(mu);
  }
  OpenedModel& m() { return s.model(); }
  const OpenedModel& m() const { return s.model(); }
  LanguageModel& model() { return m().model(); }
  /// A loaded model (-1: the current one) that can read the current input.
  OpenedModel& at_index(int index) {
    if (index < 0) return m();
    if (index >= s.model_count()) throw std::out_of_range("no model " + std::to_string(index));
    OpenedModel& l = s.model(index);
    if (s.has_input() && l.ck.config.vocab_size != m().ck.config.vocab_size)
      throw std::invalid_argument("'" + l.name + "' reads a vocabulary of " + std::to_string(l.ck.config.vocab_size) +
                                  " tokens; the current input has " + std::to_string(m().ck.config.vocab_size));
    return l;
  }
  void need_batch() const {
    if (!s.has_input()) throw std::runtime_error("no input: draw examples from the task or type tokens");
  }
  void need_targets() const {
    need_batch();
    if (!s.has_targets()) throw std::runtime_error("the typed input has no answers; draw task examples for this view");
  }
  /// A figure's record (Grid::provenance): the session's provenance without the digest (completed at export),
  /// narrowed to what the figure depends on.
  std::string record(json figure, bool input, bool interventions, int index = -1) const {
    if (s.current() < 0) return json::object().dump();
    json p = s.provenance(false);
    if (index >= 0 && index != s.current()) p["checkpoint"] = s.model(index).ck.path;
    if (!input) {
      for (const char* k : {"task", "seed", "example", "examples"}) p.erase(k);
    } else if (!s.dataset().empty()) {
      p["dataset"] = s.dataset();
    } else if (s.has_input() && !s.has_targets()) {
      p["input"] = "typed";
    }
    const bool applied = interventions && !s.ablated().empty();
    if (!applied) {
      p.erase("ablated");
      p.erase("ablation");
    }
    p["run"] = applied ? "with the interventions" : "clean";
    p["figure"] = std::move(figure);
    return p.dump();
  }
  /// Runs `f`, a change of the current model (Session::set_current, add), and records what it did to the input:
  /// kept it, read the dataset again, drew from the new model's task, or cleared it.
  template <class F>
  void switching(F&& f) {
    const bool had = s.has_input() && s.current() >= 0;
    const int64_t vocab = had ? m().ck.config.vocab_size : -1;
    f();
    if (!s.dataset().empty()) input_src = {{"kind", "dataset"}, {"path", s.dataset()}, {"examples", s.batch().size()}};
    else if (!s.has_input()) input_src = nullptr;
    else if (!had || vocab != m().ck.config.vocab_size)
      input_src = {{"kind", "task"}, {"examples", s.batch().size()}, {"seed", s.seed()}, {"overrides", json::object()}};
  }
  /// Every head's map [T, L, L] as one grid of tiles (Workbench::kEveryHead), one empty row and column between
  /// tiles; `channels` > 0: each tile is a group of that many Mamba1 channels.
  Grid tiles(const at::Tensor& maps, const std::vector<std::string>& labels, int64_t channels, bool implicit, int layer,
             const std::string& mixer, bool normalise, MapRun run, int index) {
    const int T = static_cast<int>(maps.size(0)), L = static_cast<int>(maps.size(1));
    const int across = static_cast<int>(std::ceil(std::sqrt(static_cast<double>(T)))), down = (T + across - 1) / across;
    Grid g;
    g.cols = across * (L + 1) - 1;
    g.rows = down * (L + 1) - 1;
    g.values.assign(static_cast<size_t>(g.rows) * g.cols, kNaN);
    g.cell_labels.assign(g.values.size(), "");
    for (int i = 0; i < down * (L + 1) - 1; ++i) g.row_labels.push_back(i % (L + 1) < L ? labels[i % (L + 1)] : "");
    for (int i = 0; i < across * (L + 1) - 1; ++i) g.col_labels.push_back(i % (L + 1) < L ? labels[i % (L + 1)] : "");
    for (int t = 0; t < T; ++t) {
      const int r0 = (t / across) * (L + 1), c0 = (t % across) * (L + 1);
      const std::string name = channels > 0 ? "C" + std::to_string(t * channels) + "-" + std::to_string((t + 1) * channels - 1)
                                            : "H" + std::to_string(t);
      const double* src = maps[t].data_ptr<double>();
      for (int q = 0; q < L; ++q)
        for (int k = 0; k <= q; ++k) {  // the future stays empty
          const size_t at = static_cast<size_t>(r0 + q) * g.cols + c0 + k;
          g.values[at] = src[q * L + k];
          g.cell_labels[at] = name;
        }
    }
    const bool norm = normalise && run != MapRun::Difference;
    g.title = "L" + std::to_string(layer) + " " + mixer + ", every " + (channels > 0 ? "channel group" : "head") +
              " (left to right, top to bottom)" + (norm ? ", min-max normalised" : "") + run_suffix(run) +
              (run == MapRun::Clean && (index < 0 || index == s.current()) ? clean_note() : "");
    g.x_title = "key (attended) position, per tile";
    g.y_title = "query position, per tile";
    g.value_title = map_value_title(run, implicit);
    g.provenance = record(map_figure(layer, mixer, "every", norm, run), true, run != MapRun::Clean, index);
    return g;
  }
  /// Head scores of `model` on the batch, with the views' settings (repeated-sequence ids from 5, halves of 16, the
  /// input's seed).
  HeadScores compute_scores(LanguageModel& on, const Progress& progress) {
    SweepOptions o;
    o.progress = progress.report;
    o.cancel = progress.cancel;
    return mechscope::head_scores(on, s.batch(), 5, 16, s.seed(), o);
  }
  /// The current model's head scores, computed once per batch.
  const HeadScores& current_scores(const Progress& progress) {
    if (!scores) scores = std::make_unique<HeadScores>(compute_scores(model(), progress));
    return *scores;
  }
  /// A clean figure's title says so while ablations are active (they apply to the Outcome panel, not to it).
  std::string clean_note() const { return s.ablated().empty() ? "" : " (clean run)"; }
  /// The views' caches belong to one input and model.
  void invalidate() {
    scores.reset();
    dla.reset();
    patch.reset();
  }
  std::vector<std::pair<std::string, double>> top_at(const at::Tensor& logits_row, int k) const {
    at::Tensor p = at::softmax(logits_row.to(at::kFloat), -1);
    auto tk = p.topk(std::min<int64_t>(k, p.size(0)));
    std::vector<std::pair<std::string, double>> out;
    for (int64_t i = 0; i < std::get<0>(tk).size(0); ++i)
      out.push_back({token_string(std::get<1>(tk)[i].item<int64_t>(), m().labels()), std::get<0>(tk)[i].item<double>()});
    return out;
  }
};

Workbench::Workbench() : d(std::make_unique<Impl>()) {}
Workbench::~Workbench() = default;

int Workbench::open(const std::string& path, bool make_current) {
  auto m = OpenedModel::open(path);  // off the locks: the window stays responsive while a large model loads
  m->start_digest();                 // for the exports' provenance, beside the panels' work
  auto lock = d->engine(__func__);
  std::lock_guard<std::recursive_mutex> small(d->small);
  d->verify.push_back("");
  int index = -1;
  if (!make_current && d->s.current() >= 0) return d->s.add(std::move(m), false);  // the views stay valid
  d->invalidate();
  d->switching([&] { index = d->s.add(std::move(m)); });
  return index;
}

bool Workbench::reads_input(int index) const {
  std::lock_guard<std::recursive_mutex> small(d->small);
  if (index < 0 || index >= d->s.model_count() || d->s.current() < 0) return false;
  return d->s.model(index).ck.config.vocab_size == d->m().ck.config.vocab_size;
}

void Workbench::guard_thread(std::thread::id ui) { d->ui_thread = ui; }

int Workbench::model_count() const {
  std::lock_guard<std::recursive_mutex> small(d->small);
  return d->s.model_count();
}
int Workbench::current() const {
  std::lock_guard<std::recursive_mutex> small(d->small);
  return d->s.current();
}
bool Workbench::has_targets() const {
  std::lock_guard<std::recursive_mutex> small(d->small);
  return d->s.has_targets();
}

void Workbench::set_current(int index) {
  auto lock = d->engine(__func__);
  std::lock_guard<std::recursive_mutex> small(d->small);
  d->invalidate();
  d->switching([&] { d->s.set_current(index); });
}

ModelSummary Workbench::summary(int index) const {
  std::lock_guard<std::recursive_mutex> small(d->small);
  const OpenedModel& l = d->s.model(index);
  ModelSummary s;
  s.name = l.name;
  s.path = l.ck.path;
  const ModelConfig& c = l.ck.config;
  s.layers = static_cast<int>(c.n_layer);
  for (int64_t i = 0; i < c.n_layer; ++i) {  // the mixer, and what the block has in place of a plain MLP
    std::string kind = c.mixer_kind(i) == MixerKind::None ? "MLP only" : mixer_kind_name(c.mixer_kind(i));
    if (c.moe_layer(i)) kind += ", " + std::to_string(c.moe.num_experts) + " experts (top " + std::to_string(c.moe.top_k) + ")";
    s.layer_kinds.push_back(kind);
  }
  for (const auto& h : all_heads(l.model())) s.heads.push_back({h.label(), (int)h.layer, h.mixer, (int)h.head});
  s.architecture = std::to_string(c.n_layer) + " layers, d_model " + std::to_string(c.d_model) + ", vocab " +
                   std::to_string(c.vocab_size) + ", " + std::to_string(l.model().parameter_count()) + " parameters; " +
                   (c.has_mlp() ? c.mlp_description() : std::string("no MLP"));
  s.has_task = static_cast<bool>(l.task);
  s.task = l.task ? task_config_summary(l.ck.task_config) : "(no task: a bare model)";
  s.verify = d->verify[index < 0 ? d->s.current() : index];
  return s;
}

std::string Workbench::verify(int index) {
  auto lock = d->engine(__func__);
  OpenedModel& l = d->s.model(index);
  VerifyReport rep = verify_model(l.model(), l.task.get(), 8, 0, 1e-4);
  double worst = 0;
  for (const auto& c : rep.checks) worst = std::max(worst, c.diff / c.scale);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%s (largest relative difference %.1e over %zu checks)", rep.pass ? "PASS" : "FAIL",
                worst, rep.checks.size());
  std::lock_guard<std::recursive_mutex> small(d->small);
  std::string& v = d->verify[index < 0 ? d->s.current() : index];
  v = buf;
  return v;
}

// ---------------------------------------------------------------- input

void Workbench::draw(int n, uint64_t seed, const std::string& task_json) {
  auto lock = d->engine(__func__);
  json over;
  if (!task_json.empty()) {
    try {
      over = parse_json(task_json);
    } catch (const json::exception& e) {
      throw std::invalid_argument(std::string("task parameters are not valid JSON: ") + e.what());
    }
  }
  std::lock_guard<std::recursive_mutex> small(d->small);
  d->s.draw(n, seed, over);
  d->invalidate();
  json changed = json::object();  // the task parameters that differ from the model's own
  const json& base = d->m().task_config;
  for (const auto& [k, v] : d->s.task_config().items())
    if (!base.is_object() || !base.contains(k) || base.at(k) != v) changed[k] = v;
  d->input_src = {{"kind", "task"}, {"examples", n}, {"seed", seed}, {"overrides", changed}};
}

void Workbench::load_dataset(const std::string& path, int n) {
  auto lock = d->engine(__func__);
  std::lock_guard<std::recursive_mutex> small(d->small);
  d->s.load_dataset(path, n);
  d->invalidate();
  d->input_src = {{"kind", "dataset"}, {"path", path}, {"examples", n}};
}

std::string Workbench::dataset() const {
  std::lock_guard<std::recursive_mutex> small(d->small);
  return d->s.dataset();
}

void Workbench::set_tokens(const std::string& text) {
  auto lock = d->engine(__func__);
  std::lock_guard<std::recursive_mutex> small(d->small);
  d->s.set_tokens(text);
  d->invalidate();
  d->input_src = {{"kind", "tokens"}, {"text", text}};
}

void Workbench::set_text(const std::string& text) {
  auto lock = d->engine(__func__);
  std::lock_guard<std::recursive_mutex> small(d->small);
  d->s.set_text(text);
  d->invalidate();
  d->input_src = {{"kind", "text"}, {"text", text}};
}

void Workbench::edit_token(int position, const std::string& token) {
  auto lock = d->engine(__func__);
  d->need_batch();
  std::lock_guard<std::recursive_mutex> small(d->small);
  const int64_t e = d->s.example();
  d->s.edit_token(e, position, token);
  d->invalidate();
  if (d->input_src.is_object()) d->input_src["edits"].push_back({{"example", e}, {"position", position}, {"token", token}});
}

std::string Workbench::input_state() const {
  std::lock_guard<std::recursive_mutex> small(d->small);
  return d->s.has_input() ? d->input_src.dump() : "null";
}

void Workbench::restore_input(const std::string& state) {
  const json st = parse_json(state);
  if (st.is_null()) return;
  const std::string kind = st.is_object() ? st.value("kind", "") : "";
  auto text = [&](const char* key) {
    if (!st.contains(key) || !st.at(key).is_string())
      throw std::invalid_argument("the workspace's " + kind + " input has no \"" + key + "\" string");
    return st.at(key).get<std::string>();
  };
  const int n = st.is_object() && st.contains("examples") && st.at("examples").is_number_integer() ? st.at("examples").get<int>() : 64;
  if (kind == "task") {
    const json over = st.value("overrides", json::object());
    draw(n, st.value("seed", uint64_t{0}), over.empty() ? "" : over.dump());
  } else if (kind == "tokens") {
    set_tokens(text("text"));
  } else if (kind == "text") {
    set_text(text("text"));
  } else if (kind == "dataset") {
    load_dataset(text("path"), n);
  } else {
    throw std::invalid_argument("the workspace's input is of an unknown kind '" + kind +
                                "' (expected task, tokens, text or dataset)");
  }
  // The tokens edited by hand, in order (each on its example).
  const json edits = st.value("edits", json::array());
  if (!edits.is_array()) throw std::invalid_argument("the workspace's input \"edits\" is not a list");
  const int current = example();
  for (const auto& ed : edits) {
    if (!ed.is_object() || !ed.contains("example") || !ed.contains("position") || !ed.contains("token") ||
        !ed.at("example").is_number_integer() || !ed.at("position").is_number_integer() || !ed.at("token").is_string())
      throw std::invalid_argument("a workspace edit needs an integer example and position and a token string: " + ed.dump());
    set_example(ed.at("example").get<int>());
    edit_token(ed.at("position").get<int>(), ed.at("token").get<std::string>());
  }
  if (!edits.empty()) set_example(current);
}

std::string Workbench::token_hint() const {
  auto lock = d->engine(__func__);
  if (!d->s.has_input()) return "";
  const OpenedModel& m = d->m();
  at::Tensor ids = d->s.example_tokens(d->s.example())[0];
  std::vector<std::string> labels, numbers;
  for (int64_t j = 0; j < std::min<int64_t>(4, ids.size(0)); ++j) {
    const int64_t id = ids[j].item<int64_t>();
    numbers.push_back(std::to_string(id));
    const std::string label = token_string(id, m.labels());
    try {  // a label the field reads back as the same id (no spaces, not another token's name)
      const auto back = parse_tokens(label, m.ck.vocab, m.ck.config.padded_vocab_size());
      labels.push_back(back.size() == 1 && back[0] == id ? label : "");
    } catch (const std::exception&) {
      labels.push_back("");
    }
  }
  const bool all = std::none_of(labels.begin(), labels.end(), [](const std::string& l) { return l.empty(); });
  return join(all ? labels : numbers, " ");
}

bool Workbench::has_tokenizer() const {
  auto lock = d->engine(__func__);
  return d->s.model_count() > 0 && d->m().tokenizer() != nullptr;
}

int Workbench::example_count() const {
  std::lock_guard<std::recursive_mutex> small(d->small);
  return static_cast<int>(d->s.batch().size());
}
int Workbench::example() const {
  std::lock_guard<std::recursive_mutex> small(d->small);
  return static_cast<int>(d->s.example());
}
void Workbench::set_example(int i) {
  auto lock = d->engine(__func__);
  std::lock_guard<std::recursive_mutex> small(d->small);
  d->s.set_example(i);
}

std::vector<std::string> Workbench::tokens(int e) const {
  auto lock = d->engine(__func__);
  d->need_batch();
  if (e < 0) e = static_cast<int>(d->s.example());
  std::vector<std::string> out;
  at::Tensor t = d->s.example_tokens(e)[0];
  for (int64_t j = 0; j < t.size(0); ++j) {
    std::string label = token_string(t[j].item<int64_t>(), d->m().labels());
    // A token of spaces only is drawn as open boxes (U+2423), one per space: a blank label reads as no token.
    if (!label.empty() && label.find_first_not_of(' ') == std::string::npos) {
      const size_t n = label.size();
      label.clear();
      for (size_t i = 0; i < n; ++i) label += "\u2423";
    }
    out.push_back(label);
  }
  return out;
}

Generation Workbench::generate(int max_new, const std::string& stop_text) {
  auto lock = d->engine(__func__);
  d->need_batch();
  if (max_new < 1 || max_new > 4096) throw std::invalid_argument("generate: choose 1..4096 new tokens");
  OpenedModel& m = d->m();
  const int64_t e = d->s.example();
  at::Tensor row = d->s.example_tokens(e);  // [1, len]
  // The prompt: through the example's last query (a task's or a dataset's answer follows it), else all of it.
  const Batch& b = d->s.batch();
  int64_t end = row.size(1);
  for (int64_t j = row.size(1) - 1; j >= 0; --j)
    if (b.roles[e][j].item<int8_t>() == static_cast<int8_t>(Role::Query)) {
      end = j + 1;
      break;
    }
  GenerationOptions o;
  o.max_new_tokens = max_new;
  if (!stop_text.empty()) {
    if (!m.tokenizer()) throw std::invalid_argument("generate: a stop text needs the model's tokenizer");
    const std::vector<int64_t> ids = m.tokenizer()->encode(stop_text, false);
    if (ids.size() != 1)
      throw std::invalid_argument("generate: the stop text is " + std::to_string(ids.size()) + " tokens; it must be one");
    o.stop = ids;
  }
  at::NoGradGuard no_grad;
  const at::Tensor out = greedy_generate(m.model(), row.narrow(1, 0, end).contiguous(), o)[0];
  Generation g;
  g.prompt_tokens = static_cast<int>(end);
  std::vector<int64_t> ids;
  for (int64_t j = 0; j < out.size(0) && out[j].item<int64_t>() >= 0; ++j) ids.push_back(out[j].item<int64_t>());
  for (int64_t id : ids) g.tokens.push_back(token_string(id, m.labels()));
  try {
    if (m.tokenizer()) g.text = m.tokenizer()->decode(ids);
  } catch (const std::exception&) {  // an id the tokenizer lacks (a model with more rows): the labels instead
    g.text.clear();
  }
  if (g.text.empty())
    for (const auto& t : g.tokens) g.text += (g.text.empty() ? "" : " ") + t;
  return g;
}

std::vector<std::string> Workbench::roles(int e) const {
  auto lock = d->engine(__func__);
  d->need_batch();
  if (e < 0) e = static_cast<int>(d->s.example());
  std::vector<std::string> out;
  const Batch& b = d->s.batch();
  const int64_t len = b.lengths[e].item<int64_t>();
  for (int64_t j = 0; j < len; ++j)
    out.push_back(d->s.has_targets() ? role_name(static_cast<Role>(b.roles[e][j].item<int8_t>())) : "");
  return out;
}

std::vector<std::string> Workbench::targets(int e) const {
  auto lock = d->engine(__func__);
  d->need_batch();
  if (e < 0) e = static_cast<int>(d->s.example());
  std::vector<std::string> out;
  const Batch& b = d->s.batch();
  const int64_t len = b.lengths[e].item<int64_t>();
  for (int64_t j = 0; j < len; ++j) {
    const int64_t t = b.targets[e][j].item<int64_t>();
    out.push_back(t < 0 ? "" : token_string(t, d->m().labels()));
  }
  return out;
}

std::string Workbench::task_summary() const {
  std::lock_guard<std::recursive_mutex> small(d->small);
  return d->s.task_config().is_null() ? "" : task_config_summary(d->s.task_config());
}

std::string Workbench::task_json() const {
  std::lock_guard<std::recursive_mutex> small(d->small);
  return d->s.task_config().is_null() ? "" : d->s.task_config().dump();
}
int Workbench::seq_len() const { return d->s.has_input() ? static_cast<int>(d->s.batch().tokens.size(1)) : 0; }

// ---------------------------------------------------------------- interventions

void Workbench::set_ablation(const std::vector<std::string>& heads, const std::string& kind) {
  auto lock = d->engine(__func__);
  std::vector<HeadRef> parsed;
  for (const auto& h : heads) parsed.push_back(parse_head(h, d->model()));
  AblationKind k = parse_ablation(kind);
  std::lock_guard<std::recursive_mutex> small(d->small);
  d->s.set_ablation(parsed, k);
}

std::vector<std::string> Workbench::ablated() const {
  std::lock_guard<std::recursive_mutex> small(d->small);
  std::vector<std::string> out;
  for (const auto& h : d->s.ablated()) out.push_back(h.label());
  return out;
}
std::string Workbench::ablation_kind() const {
  std::lock_guard<std::recursive_mutex> small(d->small);
  return ablation_name(d->s.ablation_kind());
}

Outcome Workbench::outcome(bool with_ablation) {
  auto lock = d->engine(__func__);
  d->need_batch();
  at::NoGradGuard no_grad;
  LanguageModel& model = d->model();
  // The clean run is cached once per batch; an ablation recomputes only the layers from the first ablated head
  // on (ablated_readout_resid), and only the rows the panel shows are computed in the last block and unembedded.
  const std::vector<HeadRef> heads = with_ablation ? d->s.ablated() : std::vector<HeadRef>{};
  const Batch& batch = d->s.batch();
  Outcome o;
  o.examples = static_cast<int>(batch.size());
  const int e = static_cast<int>(d->s.example()), q = static_cast<int>(d->s.last_labelled(e));
  const int64_t len = batch.lengths[e].item<int64_t>();
  // The layers after the ablated one run at the labelled rows for the batch and in full for the shown example.
  Readout r = d->s.has_targets() ? Readout::all_labelled(d->s.batch()) : Readout{};
  at::Tensor rows, slot;
  if (d->s.has_targets()) std::tie(rows, slot) = readout_rows(r, batch.size());
  else rows = at::zeros({batch.size(), 1}, at::kLong);
  ReadoutResid rr = ablated_readout_resid(model, batch.tokens, d->s.clean_cache(), d->s.ablator(), heads, rows, e);
  at::Tensor ex_logits = model.unembed(rr.example_full.narrow(0, 0, len));  // [len, V]
  o.top = d->top_at(ex_logits[q], 5);
  if (d->s.has_targets()) {
    ExampleMetrics m = example_metrics(model.unembed(rr.at_rows.index({r.example, slot})), r);
    o.accuracy = m.correct.mean().item<double>();
    o.prob = m.prob.mean().item<double>();
    o.logit_diff = m.logit_diff.mean().item<double>();
    const int64_t t = batch.targets[e][q].item<int64_t>();
    o.target = t >= 0 ? token_string(t, d->m().labels()) : "";
    at::Tensor tg = batch.targets[e];
    at::Tensor lp = at::log_softmax(ex_logits.to(at::kFloat), -1);
    for (int64_t j = 0; j < len; ++j) {
      const int64_t y = tg[j].item<int64_t>();
      o.example_loss.push_back(y < 0 ? kNaN : -lp[j][y].item<double>());
    }
    at::Tensor wrong = m.correct.lt(1.0 - 1e-9);
    for (int64_t i = 0; i < wrong.size(0); ++i)
      if (wrong[i].item<bool>()) o.wrong_examples.push_back(static_cast<int>(i));
  } else {
    o.accuracy = o.prob = o.logit_diff = kNaN;
  }
  return o;
}

// ---------------------------------------------------------------- views

std::vector<std::pair<std::string, int>> Workbench::mixers(int layer, int index) const {
  auto lock = d->engine(__func__);
  std::vector<std::pair<std::string, int>> out;
  const OpenedModel& l = d->s.model(index);
  if (layer < 0 || layer >= l.model().n_layers()) return out;
  for (const auto& [m, H] : l.model().heads_of_layer(layer)) out.push_back({m, static_cast<int>(H)});
  return out;
}

Grid Workbench::attention(int layer, const std::string& mixer, int head, bool normalise, int index, MapRun run) {
  auto lock = d->engine(__func__);
  d->need_batch();
  const bool other = index >= 0 && index != d->s.current();
  LanguageModel& model = d->at_index(index).model();
  if (layer < 0 || layer >= model.n_layers()) throw std::out_of_range("layer " + std::to_string(layer));
  const int64_t H = heads_in(model, layer, mixer);
  if (H < 0) throw std::invalid_argument("layer " + std::to_string(layer) + " has no " + mixer + " mixer");
  if (run != MapRun::Clean && (other || d->s.ablated().empty()))
    throw std::invalid_argument(other ? "the ablations belong to the current model: another model's map is clean"
                                      : "no ablation is active: click heads in the Heads panel first");
  // Mamba1: a channel, or the channel average (head < 0); others: a head, or the head average.
  const HeadGroup group = model.head_group(layer, mixer);
  const bool mamba1 = group.channels;
  const int64_t e = d->s.example();
  const at::Tensor ids = d->s.example_tokens(e);
  const bool every = head == kEveryHead;
  const int64_t groups = mamba1 ? (every ? std::gcd<int64_t>(H, 16) : H) : 1;  // Mamba1 tiles: channel groups
  auto pattern_of = [&](const std::vector<Hook>& hooks) {
    AttentionMap map = attention_map(model, ids, layer, mixer, groups, hooks);
    if (every) return map.pattern[0];  // [tiles, L, L]
    return head < 0 ? map.pattern[0].mean(0) : map.pattern[0][std::min<int64_t>(head, H - 1)];
  };
  // The example alone, ablated as it is in the batch the Outcome panel reads (its reference row: first_row).
  auto ablated = [&] { return pattern_of(d->s.ablator().hooks(d->s.ablated(), e)); };
  at::Tensor p;
  if (run == MapRun::Difference) {
    p = ablated() - pattern_of({});
  } else {
    p = run == MapRun::Ablated ? ablated() : pattern_of({});
    if (normalise) p = normalise_map(p);
  }
  p = p.to(at::kDouble).contiguous();
  if (every)
    return d->tiles(p, tokens(static_cast<int>(e)), mamba1 ? H / p.size(0) : 0, group.scores_hook.empty(), layer, mixer,
                    normalise, run, index);
  Grid g;
  g.rows = g.cols = static_cast<int>(p.size(0));
  g.values.assign(p.data_ptr<double>(), p.data_ptr<double>() + p.numel());
  const int64_t L = p.size(0);
  for (int64_t q = 0; q < L; ++q)
    for (int64_t k = q + 1; k < L; ++k) g.values[q * L + k] = kNaN;  // the future: nothing
  g.row_labels = g.col_labels = tokens(static_cast<int>(e));
  const bool implicit = group.scores_hook.empty();
  const bool norm = normalise && run != MapRun::Difference;
  g.title = "L" + std::to_string(layer) + " " + mixer + (head < 0 ? " (mean over heads)" : " H" + std::to_string(head)) +
            (implicit ? ", implicit attention" : "") + (norm ? ", min-max normalised" : "") +
            run_suffix(run) + (run == MapRun::Clean && !other ? d->clean_note() : "");
  g.x_title = "key (attended) position";
  g.y_title = "query position";
  g.value_title = map_value_title(run, implicit) + (norm ? " (normalised)" : "");
  g.provenance = d->record(map_figure(layer, mixer, head < 0 ? json("mean") : json(head), norm, run), true,
                           run != MapRun::Clean, index);
  return g;
}

Grid Workbench::head_scores(const std::string& score, const Progress& progress, int index) {
  auto lock = d->engine(__func__);
  d->need_targets();
  LanguageModel& model = d->at_index(index).model();
  std::unique_ptr<HeadScores> other;  // another model's: not cached
  if (index >= 0 && index != d->s.current()) other = std::make_unique<HeadScores>(d->compute_scores(model, progress));
  const HeadScores& hs = other ? *other : d->current_scores(progress);
  at::Tensor v = mechscope::head_score(hs, score).to(at::kDouble);
  Grid g;
  std::vector<std::pair<int64_t, std::string>> groups;
  int64_t maxH = 0;
  for (int64_t l = 0; l < model.n_layers(); ++l)
    for (const auto& [m, H] : model.heads_of_layer(l)) {
      groups.push_back({l, m});
      maxH = std::max(maxH, H);
    }
  g.cell_labels.assign(groups.size() * static_cast<size_t>(maxH), "");
  g.rows = static_cast<int>(groups.size());
  g.cols = static_cast<int>(maxH);
  g.values.assign(static_cast<size_t>(g.rows) * g.cols, kNaN);
  for (const auto& [l, m] : groups) g.row_labels.push_back("L" + std::to_string(l) + " " + m);
  for (int64_t h = 0; h < maxH; ++h) g.col_labels.push_back("H" + std::to_string(h));
  const auto& heads = hs.heads;
  for (size_t i = 0; i < heads.size(); ++i) {
    int row = 0;
    for (size_t r = 0; r < groups.size(); ++r)
      if (groups[r].first == heads[i].layer && groups[r].second == heads[i].mixer) row = static_cast<int>(r);
    g.values[static_cast<size_t>(row) * g.cols + heads[i].head] = v[i].item<double>();
    g.cell_labels[static_cast<size_t>(row) * g.cols + heads[i].head] = heads[i].label();
  }
  g.title = score + " score per head" + (other ? "" : d->clean_note());
  g.x_title = "head";
  g.y_title = "layer and mixer";
  g.value_title = score + " score";
  g.provenance = d->record({{"view", "head scores"}, {"score", score}}, true, false, index);
  return g;
}

Grid Workbench::patching(const std::string& site, const std::string& role, const Progress& progress) {
  auto lock = d->engine(__func__);
  d->need_targets();
  OpenedModel& l = d->m();
  if (!d->s.input_task()) throw std::runtime_error("patching needs a task or a dataset to corrupt the examples");
  d->patch_corrupt = d->s.input_task()->corrupt(d->s.batch(), d->s.seed() + 1, role);
  SweepOptions o;
  o.progress = progress.report;
  o.cancel = progress.cancel;
  d->patch = std::make_unique<PatchResult>(activation_patching(l.model(), d->s.batch(), d->patch_corrupt, site, o));
  d->patch_role = role;
  return patching_grid();
}

Grid Workbench::patching_grid() {
  auto lock = d->engine(__func__);
  if (!d->patch) throw std::runtime_error("run a patching sweep first");
  const PatchResult& r = *d->patch;
  const std::string& site = r.site;
  const std::string& role = d->patch_role;
  auto toks = tokens(0);
  std::vector<std::string> pos;
  for (int64_t j = 0; j < r.positions; ++j) pos.push_back(std::to_string(j) + (j < (int64_t)toks.size() ? ":" + toks[j] : ""));
  Grid g = grid_of_result({"patching/score", r.score, {"row", "pos"}, {{"row", r.rows}, {"pos", pos}}}, 0);
  char buf[160];
  std::snprintf(buf, sizeof buf, "patching %s (corrupt %s): %lld of %lld examples kept, p clean %.3f, corrupted %.3f",
                site.c_str(), role.empty() ? "default" : role.c_str(), (long long)r.kept_examples,
                (long long)r.total_examples, r.clean_prob, r.corrupted_prob);
  g.title = buf + d->clean_note();
  g.x_title = "position (current example's tokens)";
  g.y_title = site == "heads" ? "head" : "layer";
  g.value_title = "restored fraction (0 corrupted, 1 clean)";
  g.provenance = d->record({{"view", "patching"}, {"site", site}, {"role", role.empty() ? json("default") : json(role)},
                            {"layout", "by position"}}, true, false);
  return g;
}

HeadCard Workbench::head_card(const std::string& label, const Progress& progress) {
  auto lock = d->engine(__func__);
  d->need_targets();
  LanguageModel& model = d->model();
  const HeadRef h = parse_head(label, model);
  HeadCard card;
  card.head = h.label();
  const HeadScores& scores = d->current_scores(progress);
  const auto& heads = scores.heads;
  const size_t i = std::find(heads.begin(), heads.end(), h) - heads.begin();
  if (i == heads.size()) throw std::invalid_argument(label + " has no head scores");
  for (const auto& name : mechscope::head_score_names())
    card.scores.push_back({name, mechscope::head_score(scores, name)[static_cast<int64_t>(i)].item<double>()});
  // Where it looks: the current example's answer-predicting row of its map, the three largest |weights|.
  const int64_t e = d->s.example(), q = d->s.last_labelled(e);
  const HeadGroup group = model.head_group(h.layer, h.mixer);
  AttentionMap map =
      attention_map(model, d->s.example_tokens(e), h.layer, h.mixer, group.channels ? heads_in(model, h.layer, h.mixer) : 1);
  at::Tensor row = map.pattern[0][h.head][q].to(at::kDouble);
  card.map = group.scores_hook.empty() ? "implicit attention" : "attention";
  const auto labels = tokens(static_cast<int>(e));
  auto top = row.abs().topk(std::min<int64_t>(3, q + 1));
  for (int64_t k = 0; k < std::get<1>(top).size(0); ++k) {
    const int64_t j = std::get<1>(top)[k].item<int64_t>();
    card.attended.push_back({std::to_string(j) + ":" + labels[static_cast<size_t>(j)], row[j].item<double>()});
  }
  if (!d->dla) {
    at::NoGradGuard no_grad;
    d->dla = std::make_unique<DlaResult>(
        direct_logit_attribution(model, d->s.batch().tokens, Readout::all_labelled(d->s.batch())));
  }
  const auto& comps = d->dla->components;
  const size_t c = std::find(comps.begin(), comps.end(), card.head) - comps.begin();
  card.dla = c < comps.size() ? d->dla->value[static_cast<int64_t>(c)].item<double>() : kNaN;
  card.answer_logit = d->dla->answer_logit;
  return card;
}

std::string Workbench::head_scores_reading() {
  auto lock = d->engine(__func__);
  return d->scores ? top_aggregate_reading(*d->scores) : std::string();
}

Grid Workbench::patching_aligned() {
  auto lock = d->engine(__func__);
  if (!d->patch) throw std::runtime_error("run a patching sweep first");
  const PatchResult& r = *d->patch;
  Grid g = grid_of_result(
      {"patching/aligned_score", r.aligned, {"row", "anchor"}, {{"row", r.rows}, {"anchor", aligned_anchors()}}}, 0);
  char buf[200];
  std::snprintf(buf, sizeof buf, "patching %s, aligned to the corruption: %lld of %lld examples", r.site.c_str(),
                (long long)r.aligned_examples, (long long)r.total_examples);
  g.title = buf + d->clean_note();
  g.x_title = "position relative to each example's corrupted token";
  g.y_title = r.site == "heads" ? "head" : "layer";
  g.value_title = "restored fraction (0 corrupted, 1 clean)";
  g.provenance = d->record({{"view", "patching"}, {"site", r.site},
                            {"role", d->patch_role.empty() ? json("default") : json(d->patch_role)},
                            {"layout", "aligned to the corruption"}}, true, false);
  return g;
}

Outcome Workbench::patch_cell(int row, int pos) {
  auto lock = d->engine(__func__);
  if (!d->patch) throw std::runtime_error("run a patching sweep first");
  const PatchResult& r = *d->patch;
  if (row < 0 || row >= (int)r.rows.size() || pos < 0 || pos >= r.positions) throw std::out_of_range("no such cell");
  Outcome o;
  o.prob = r.prob[row][pos].item<double>();
  o.accuracy = r.accuracy[row][pos].item<double>();
  o.logit_diff = r.logit_diff[row][pos].item<double>();
  o.examples = static_cast<int>(r.kept_examples);
  // Top predictions of the current example with this one patch.
  LanguageModel& model = d->model();
  std::string hook;
  int64_t head = -1;
  if (r.site == "heads") {
    HeadRef h = parse_head(r.rows[row], model);
    hook = head_hook_name(model, h);
    head = h.head;
  } else {
    hook = site_hook_name(model, r.site, row);
  }
  if (hook.empty()) throw std::runtime_error(r.rows[row] + " has no " + r.site + " site");
  const Batch& batch = d->s.batch();
  const Batch& corrupted = d->patch_corrupt;
  at::Tensor logits = patch_one_cell(model, batch.tokens, corrupted.tokens, hook, pos, head, corrupted.aligned);
  const int e = static_cast<int>(d->s.example());
  // The patched run is the corrupted one: read it at its readout (another position for a prompt of another length).
  const Batch& read = corrupted.aligned.defined() ? corrupted : batch;
  const int q = corrupted.aligned.defined()
                    ? static_cast<int>(Readout::last_labelled(corrupted.narrow(e, 1)).position[0].item<int64_t>())
                    : static_cast<int>(d->s.last_labelled(e));
  o.top = d->top_at(logits[e][q], 5);
  const int64_t t = read.targets[e][q].item<int64_t>();
  o.target = t >= 0 ? token_string(t, d->m().labels()) : "";
  return o;
}

Embedding Workbench::embeddings(int pc_x, int pc_y, int snapshot, int index) {
  auto lock = d->engine(__func__);
  OpenedModel& l = d->s.model(index);
  LanguageModel& model = l.model();
  std::vector<int64_t> ids;
  at::Tensor rows;
  Embedding out;
  auto snaps = l.ck.training.find("embedding_snapshots");
  if (snaps != l.ck.training.end() && l.ck.training.count("embedding_snapshot_steps")) {
    at::Tensor st = l.ck.training.at("embedding_snapshot_steps");
    for (int64_t i = 0; i < st.size(0); ++i) out.snapshot_steps.push_back(st[i].item<int64_t>());
  }
  if (snapshot >= 0) {
    if (snaps == l.ck.training.end() || snapshot >= snaps->second.size(0))
      throw std::out_of_range("no embedding snapshot " + std::to_string(snapshot));
    rows = snaps->second[snapshot];
    at::Tensor sid = l.ck.training.at("embedding_snapshot_ids");
    for (int64_t i = 0; i < sid.size(0); ++i) ids.push_back(sid[i].item<int64_t>());
  } else {
    rows = probe_rows(model, l.task.get(), &ids);
    if (!rows.defined()) {  // no position tokens: the rows the training run followed, else the first 64 rows
      if (l.ck.training.count("embedding_snapshot_ids")) {
        at::Tensor sid = l.ck.training.at("embedding_snapshot_ids");
        for (int64_t i = 0; i < sid.size(0); ++i) ids.push_back(sid[i].item<int64_t>());
      } else {
        for (int64_t i = 5; i < std::min<int64_t>(69, l.ck.config.vocab_size); ++i) ids.push_back(i);
      }
      rows = model.embedding_matrix().detach().index_select(0, at::tensor(ids, at::kLong));
    }
  }
  const int comps = std::max(pc_x, pc_y) + 1;
  EmbeddingGeometry g = embedding_geometry(rows, std::max(comps, 2), 5);
  if (comps > g.projection.size(1)) throw std::invalid_argument("only " + std::to_string(g.projection.size(1)) + " components");
  for (int64_t i = 0; i < g.projection.size(0); ++i) {
    out.x.push_back(g.projection[i][pc_x].item<double>());
    out.y.push_back(g.projection[i][pc_y].item<double>());
  }
  for (auto id : ids) out.labels.push_back(token_string(id, l.labels()));
  if (out.labels.size() != out.x.size()) {
    out.labels.clear();
    for (size_t i = 0; i < out.x.size(); ++i) out.labels.push_back("row " + std::to_string(i));
  }
  out.locality = g.locality;
  for (int64_t c = 0; c < g.explained.size(0); ++c) out.explained.push_back(g.explained[c].item<double>());
  at::Tensor cs = g.cosine.to(at::kDouble).contiguous();
  out.cosine.rows = out.cosine.cols = static_cast<int>(cs.size(0));
  out.cosine.values.assign(cs.data_ptr<double>(), cs.data_ptr<double>() + cs.numel());
  out.cosine.row_labels = out.cosine.col_labels = out.labels;
  out.cosine.title = "cosine similarity of embedding rows";
  out.cosine.x_title = out.cosine.y_title = "embedding row";
  out.cosine.value_title = "cosine similarity";
  const json when = snapshot < 0 ? json("final") : json(snapshot);
  out.cosine.provenance = d->record({{"view", "embedding cosine"}, {"snapshot", when}}, false, false, index);
  out.provenance = d->record({{"view", "embedding PCA"}, {"components", {pc_x + 1, pc_y + 1}}, {"snapshot", when}}, false,
                             false, index);
  return out;
}

std::vector<Workbench::CompareRow> Workbench::compare() {
  auto lock = d->engine(__func__);
  d->need_targets();
  at::NoGradGuard no_grad;
  std::vector<CompareRow> out;
  const int64_t V = d->m().ck.config.vocab_size;
  const Batch& batch = d->s.batch();
  Readout r = Readout::all_labelled(batch);
  for (int i = 0; i < d->s.model_count(); ++i) {
    const OpenedModel& l = d->s.model(i);
    CompareRow row;
    row.model = l.name;
    if (l.ck.config.vocab_size != V) {
      row.note = "reads another vocabulary";
      row.accuracy = row.prob = kNaN;
    } else {
      ExampleMetrics m = example_metrics(gather_readout(l.model().forward(batch.tokens), r), r);
      row.accuracy = m.correct.mean().item<double>();
      row.prob = m.prob.mean().item<double>();
    }
    out.push_back(row);
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> Workbench::plugin_analyses() {
  load_plugins();  // once per process
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& a : registered_analyses()) out.push_back({a.info.name, a.info.description});
  return out;
}

AnalysisRun Workbench::run_analysis(const std::string& name, const std::string& options_json) {
  auto lock = d->engine(__func__);
  const RegisteredAnalysis& a = require_analysis(name);
  json options = json::object();
  if (!options_json.empty()) {
    try {
      options = parse_json(options_json);
    } catch (const json::exception& e) {
      throw std::invalid_argument(std::string("the options are not valid JSON: ") + e.what());
    }
  }
  // An analysis that declares no options gets the current example (what the plugins read); core's read the input the
  // session gives them.
  if (a.info.options.empty() && !options.contains("example")) options["example"] = d->s.example();
  ResultsFile rf = d->s.run_analysis(name, options);
  AnalysisRun run;
  run.summary = rf.summary;
  for (const auto& t : rf.tensors) {
    if (t.value.dim() < 1 || t.value.dim() > 3 || t.name.rfind("inputs/", 0) == 0) continue;
    Grid g = grid_of_result(t, 0);
    g.title = name + ": " + t.name + d->clean_note();
    g.provenance = d->record({{"view", "analysis"}, {"analysis", name}, {"result", t.name}, {"options", options}}, true, false);
    run.grids.push_back(std::move(g));
  }
  if (run.grids.empty()) throw std::runtime_error(name + " returned no tensor of one to three dimensions to draw");
  return run;
}

Grid Workbench::run_plugin_analysis(const std::string& name, const std::string& options_json) {
  return run_analysis(name, options_json).grids.front();
}

std::vector<std::string> Workbench::plugin_report() {
  std::vector<std::string> out;
  for (const auto& p : load_plugins()) {
    if (p.loaded) {
      std::string provides;
      for (const auto& x : p.provides) provides += (provides.empty() ? "" : ", ") + x;
      out.push_back("loaded: " + p.name + " " + p.version + " (" + p.path + "): " + provides);
    } else if (!p.panels_only) {
      out.push_back("FAILED: " + p.path + ": " + p.error);
    }
  }
  if (out.empty()) out.push_back("no plugins found (<install>/lib/mechscope/plugins, $MECHSCOPE_PLUGIN_PATH)");
  return out;
}

std::string Workbench::map_mixer(int layer, int index) const {
  auto lock = d->engine(__func__);
  const LanguageModel& model = d->s.model(index).model();
  if (layer < 0 || layer >= model.n_layers())
    throw std::invalid_argument("'" + d->s.model(index).name + "' has no layer " + std::to_string(layer));
  const auto groups = model.head_groups(layer);
  for (const auto& g : groups)
    if (!g.scores_hook.empty()) return g.scope;
  return groups.empty() ? std::string() : groups.front().scope;
}

std::vector<std::string> Workbench::head_score_names() { return mechscope::head_score_names(); }
std::vector<std::string> Workbench::ablation_kinds() { return ablation_names(); }
std::vector<std::string> Workbench::patch_sites() { return mechscope::patch_sites(); }
std::vector<std::string> Workbench::presets() { return ModelConfig::preset_names(); }

std::vector<std::string> Workbench::corruptible_roles() const {
  auto lock = d->engine(__func__);
  if (d->s.current() < 0 || !d->s.input_task()) return {};
  return d->s.input_task()->corruptible_roles();
}

std::string Workbench::provenance(const std::string& record) const {
  json p;
  const OpenedModel* from = nullptr;
  {
    std::lock_guard<std::recursive_mutex> small(d->small);
    p = record.empty() ? parse_json(d->record(json::object(), true, false)) : parse_json(record);
    const std::string path = p.value("checkpoint", "");
    for (int i = 0; i < d->s.model_count(); ++i)
      if (!path.empty() && d->s.model(i).ck.path == path) from = &d->s.model(i);  // models stay loaded
  }
  // The digest of the checkpoint the figure came from, off the lock: it waits while a large model's hash runs.
  if (from) p["checkpoint_sha256"] = from->digest();
  p["program"] = program_id();
  return p.dump();
}

}  // namespace mechscope::app
