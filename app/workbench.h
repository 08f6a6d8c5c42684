// The engine as the workbench sees it: loaded models, the current batch, the current interventions, and
// every view's data as plain numbers and strings. No Qt and no torch in this header (the widgets include it;
// torch stays in workbench.cpp). Methods are synchronous and may take long: the window calls them from its
// job thread, one at a time. Errors are exceptions with a message for the user.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/session/progress.h"

namespace mechscope::app {

/// A two-dimensional result: values row-major [rows x cols], NaN where there is nothing.
struct Grid {
  int rows = 0, cols = 0;
  std::vector<double> values;
  std::vector<std::string> row_labels, col_labels;
  std::string title;
  /// Optional, row-major: what each cell is (a head grid's "L1.attn.H0"; "" where no head).
  std::vector<std::string> cell_labels;
  /// The axes' and the colour scale's titles ("" : none).
  std::string x_title, y_title, value_title;
  /// What the figure was computed from, as JSON (Workbench::provenance completes it for exported files): the
  /// model, the input, the figure's own settings, and the interventions only where they applied.
  std::string provenance;
  double at(int r, int c) const { return values[static_cast<size_t>(r) * cols + c]; }
  std::string cell_label(int r, int c) const {
    const size_t i = static_cast<size_t>(r) * cols + c;
    return i < cell_labels.size() ? cell_labels[i] : std::string();
  }
};

/// An analysis run in the workbench: every result tensor of one to three dimensions as a grid (a 3-D one's first
/// slice; the inputs left out), in the results' order, and the summary the CLI prints.
struct AnalysisRun {
  std::vector<Grid> grids;
  std::string summary;
};

/// A greedy continuation of the current example (Workbench::generate).
struct Generation {
  int prompt_tokens = 0;            ///< the prompt it continued: the example through its last query, else all of it
  std::vector<std::string> tokens;  ///< the new tokens' labels
  std::string text;                 ///< decoded by the tokenizer (without one, or for ids it lacks: the labels joined by spaces)
};

struct HeadInfo {
  std::string label;  ///< "L1.attn.H0"
  int layer = 0;
  std::string mixer;  ///< "attn" | "ssm"
  int head = 0;
};

struct Outcome {
  double accuracy = 0, prob = 0, logit_diff = 0;  ///< over the batch's labelled positions
  int examples = 0;
  /// Top predictions at the current example's last labelled position: (token, probability).
  std::vector<std::pair<std::string, double>> top;
  std::string target;  ///< that position's answer
  std::vector<double> example_loss;  ///< current example: cross-entropy per position (NaN: no target)
  std::vector<int> wrong_examples;   ///< examples with at least one wrong labelled answer
};

/// One head at a glance (the Heads panel's card): its scores, where it looks on the current example, what ablating
/// it alone costs, and its direct logit attribution.
struct HeadCard {
  std::string head;                                       ///< "L1.attn.H0"
  std::vector<std::pair<std::string, double>> scores;     ///< gather, aggregate, causal, induction, prev_token (NaN: undefined)
  std::vector<std::pair<std::string, double>> attended;   ///< the current example's answer-predicting row: top 3 keys ("12:k5")
  std::string map;                                        ///< "attention" or "implicit attention" (signed: |value| ranks)
  double dla = 0, answer_logit = 0;  ///< mean over the batch's labelled positions: this head's share of the answer logit
};

struct Embedding {
  std::vector<double> x, y;          ///< the chosen components per row
  std::vector<std::string> labels;   ///< row token labels
  double locality = 0;
  std::vector<double> explained;
  Grid cosine;
  std::vector<int64_t> snapshot_steps;  ///< training snapshots available (empty: none)
  std::string provenance;               ///< the PCA figure's record (Grid::provenance)
};

struct ModelSummary {
  std::string name, path, architecture, task;
  int layers = 0;
  std::vector<std::string> layer_kinds;  ///< "attention", "mamba2", "MLP only", "attention, 8 experts (top 2)", ...
  std::vector<HeadInfo> heads;
  bool has_task = false;
  std::string verify;  ///< "" until verified; else "PASS ..." or "FAIL ..."
};

using mechscope::Progress;  // core/session/progress.h

/// Which run an attention map shows: the clean one, the one under the current ablations, or their difference.
enum class MapRun { Clean, Ablated, Difference };

class Workbench {
 public:
  Workbench();
  ~Workbench();
  Workbench(const Workbench&) = delete;
  Workbench& operator=(const Workbench&) = delete;

  /// Calls that take the engine (compute, or wait for a running job) made from thread `ui` throw std::logic_error
  /// naming the call (std::thread::id(): none, the default). The window guards its own thread when
  /// MECHSCOPE_GUARD_UI_THREAD is set, as the widget tests do: a view computed on the window's thread would freeze it
  /// while a long job runs, and fails a test instead.
  void guard_thread(std::thread::id ui);

  // ---- models
  /// Loads a checkpoint and makes it current (with `make_current` false and a model already current: loads it
  /// behind, the input and ablations untouched); returns its index. Throws with the loader's message.
  int open(const std::string& path, bool make_current = true);
  int model_count() const;
  /// Whether a loaded model reads the current input (the same vocabulary), as Compare needs.
  bool reads_input(int index) const;
  int current() const;
  /// Whether the current examples have answers (task examples, a dataset: yes; typed tokens or text: no). Head
  /// scores, patching and Compare need them.
  bool has_targets() const;
  void set_current(int index);
  ModelSummary summary(int index = -1) const;
  /// Fast paths vs reference paths (mechscope-cli verify); the result is kept in the summary.
  std::string verify(int index = -1);

  // ---- input
  /// Draws `n` examples of the current model's task (parameters overridden by `task_json`, may be "").
  void draw(int n, uint64_t seed, const std::string& task_json = "");
  /// Greedy continuation of the current example's prompt (through its last query; all of a typed input), with the
  /// KV and SSM state caches (core/model/generate.h), up to `max_new` tokens or the one token of `stop_text` ("":
  /// none). The current ablations do not apply.
  Generation generate(int max_new, const std::string& stop_text);
  /// The first `n` lines of a prompt dataset (.jsonl, docs/text.md) as the examples, through the current model's
  /// tokenizer; patching corrupts them with the lines' corrupted prompts. Throws naming the line.
  void load_dataset(const std::string& path, int n);
  /// The dataset the examples come from ("" when they were drawn or typed).
  std::string dataset() const;
  /// Replaces the input with one typed sequence (ids or vocabulary strings); no targets.
  void set_tokens(const std::string& text);
  /// The input as one example: text through the current model's tokenizer (docs/text.md); throws saying why when
  /// it has none.
  void set_text(const std::string& text);
  /// How the current input was made, as JSON (a workspace keeps it): {"kind": "task", "examples", "seed",
  /// "overrides" (the task parameters changed from the model's)}, {"kind": "tokens" | "text", "text"},
  /// {"kind": "dataset", "path", "examples"}; "null" without input.
  std::string input_state() const;
  /// Makes the input again from input_state(); throws saying why (an unknown kind, a dataset gone).
  void restore_input(const std::string& state);
  /// Replaces one token of the current example (Session::edit_token); the input's record keeps the edit, so a
  /// workspace restores it.
  void edit_token(int position, const std::string& token);
  /// A few of the current example's tokens as the typed-tokens field would take them (labels that read back as the
  /// same ids, else the ids), e.g. "k3 v7 k3"; "" without input.
  std::string token_hint() const;
  /// Whether the current model has a tokenizer (its token labels are then text).
  bool has_tokenizer() const;
  int example_count() const;
  int example() const;
  void set_example(int i);
  std::vector<std::string> tokens(int example = -1) const;
  std::vector<std::string> roles(int example = -1) const;
  std::vector<std::string> targets(int example = -1) const;
  /// The task config for people to read (a carried tokenizer shown by its size and digest: task_config_summary).
  std::string task_summary() const;
  std::string task_json() const;
  int seq_len() const;

  // ---- interventions
  void set_ablation(const std::vector<std::string>& heads, const std::string& kind);
  std::vector<std::string> ablated() const;
  std::string ablation_kind() const;
  /// Outcome without (before) and with (after) the current ablations, on the current batch.
  Outcome outcome(bool with_ablation);

  // ---- views
  /// `head` for attention(): every head of the layer side by side (small multiples), tiles left to right, top to
  /// bottom, each cell labelled with its head ("H3"); a Mamba1 layer's channels in 16 groups ("C0-15", ...).
  static constexpr int kEveryHead = -2;
  /// Attention (or implicit attention) of a layer's mixer and head (-1: the mean over heads) on the current example.
  /// `model` < 0: the current one; another loaded model reads the same input (Compare panel), always clean.
  /// `run`: Ablated and Difference need active ablations (the current model's); a difference is not normalised.
  Grid attention(int layer, const std::string& mixer, int head, bool normalise, int model = -1,
                 MapRun run = MapRun::Clean);
  /// The mixers of a layer ("attn", "ssm") and their head counts.
  std::vector<std::pair<std::string, int>> mixers(int layer, int model = -1) const;
  /// The mixer whose map best shows a layer's mixing: its softmax attention if it has one, else its first.
  std::string map_mixer(int layer, int model = -1) const;
  /// Head scores (gather, aggregate, causal, induction, prev_token) over the batch: rows = layer.mixer,
  /// cols = heads (NaN beyond a mixer's count), each cell labelled with its head (Grid::cell_labels). Computed once
  /// per batch and model.
  Grid head_scores(const std::string& score, const Progress& progress = {}, int model = -1);
  /// Activation patching sweep on the batch and its corruption: rows x positions of the normalised score.
  Grid patching(const std::string& site, const std::string& role, const Progress& progress = {});
  /// A head's card (HeadCard) on the current batch and example; throws for an unknown head or an input without
  /// answers.
  HeadCard head_card(const std::string& head, const Progress& progress = {});
  /// top_aggregate_reading() of the current model's head scores; empty before they are computed.
  std::string head_scores_reading();
  /// The last patching sweep's score aligned to each example's corrupted token and readout: rows x anchors
  /// (PatchResult::aligned; "corrupted+1" is the value token of a corrupted key). Throws before any sweep.
  Grid patching_aligned();
  /// The last patching sweep's grid again (rows x positions), as patching() returned it.
  Grid patching_grid();
  /// The outcome of one patch (row of the last patching grid, position): answer probability etc.
  Outcome patch_cell(int row, int pos);
  Embedding embeddings(int pc_x, int pc_y, int snapshot = -1, int model = -1);

  struct CompareRow {
    std::string model;
    double accuracy = 0, prob = 0;
    std::string note;  ///< why a model was not compared
  };
  /// Every loaded model on the current examples (those that read the same vocabulary).
  std::vector<CompareRow> compare();

  /// Analyses that plugins registered: (name, description).
  static std::vector<std::pair<std::string, std::string>> plugin_analyses();
  /// Runs a registered analysis (core's or a plugin's) on the current model and input (options: JSON object, may be
  /// ""): its grids and summary.
  AnalysisRun run_analysis(const std::string& name, const std::string& options_json);
  /// run_analysis' first grid (what a plugin panel draws).
  Grid run_plugin_analysis(const std::string& name, const std::string& options_json);
  /// Plugins: one line each, loaded or failed and why; then the tasks and analyses they add.
  static std::vector<std::string> plugin_report();

  /// Provenance for an exported file: a figure's record (Grid::provenance, PlotView::setRecord) completed with its
  /// checkpoint's digest and the program; "" : the current model and input, without interventions.
  std::string provenance(const std::string& record = "") const;

  // ---- what core offers (the panels list these instead of keeping copies)
  static std::vector<std::string> head_score_names();   ///< gather, aggregate, causal, induction, prev_token
  static std::vector<std::string> ablation_kinds();     ///< zero, mean, resample
  static std::vector<std::string> patch_sites();        ///< resid_pre, ..., state
  static std::vector<std::string> presets();            ///< the model presets
  /// The roles the current task can corrupt (its default first); empty without a task.
  std::vector<std::string> corruptible_roles() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> d;
};

}  // namespace mechscope::app
