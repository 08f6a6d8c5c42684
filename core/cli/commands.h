// The subcommands of mechscope-cli. Each takes its parsed options and returns an exit code;
// errors are thrown as exceptions and reported by main().
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mechscope::cli {

struct InitOptions {
  std::string preset;               // e.g. "mamba2"
  std::string config_path;          // JSON file with a model_config
  std::vector<std::string> sets;    // key=value overrides (dotted keys, JSON values)
  uint64_t seed = 0;
  std::string out;
  bool force = false;
};
int run_init(const InitOptions& o);

struct InfoOptions {
  std::string checkpoint;
  bool hooks = false;
  bool json = false;
  std::string dtype = "float32";  // --dtype: what the weights are held in (float32, bfloat16, float16, stored)
};
int run_info(const InfoOptions& o);

/// A sequence typed on the command line: vocabulary entries or ids (--tokens, --tokens-file), or text through the
/// model's tokenizer.json (--text, --text-file).
struct TypedInput {
  std::string tokens, tokens_file, text, text_file;
  int given() const {
    return (tokens.empty() ? 0 : 1) + (tokens_file.empty() ? 0 : 1) + (text.empty() ? 0 : 1) + (text_file.empty() ? 0 : 1);
  }
};
/// The ids of `in` for the model at `model` (its vocabulary, `rows` embedding rows; text through its tokenizer
/// (model_tokenizer, core/text/tokenizer.h), with the tokenizer's special tokens, e.g. BOS).
std::vector<int64_t> typed_input(const TypedInput& in, const std::string& model, const std::vector<std::string>& vocab,
                                 int64_t rows, const nlohmann::json& task_config = nullptr);

struct TokenizeOptions {
  std::string model;        // -c: a model folder (or file) with tokenizer.json beside it
  std::string tokenizer;    // --tokenizer: a tokenizer.json itself
  std::string text;         // --text
  std::string text_file;    // --text-file
  std::vector<int64_t> ids; // --decode: ids to text
  bool json = false;        // --json: ids, token strings and the bytes each covers
  bool no_special = false;  // --no-special: without the post-processor's special tokens (BOS)
  bool keep_special = false;  // --keep-special: decoding keeps special tokens
};
int run_tokenize(const TokenizeOptions& o);

struct GenerateOptions {
  std::string checkpoint;
  TypedInput input;             // the prompt: --tokens, --tokens-file, --text, --text-file
  int64_t max_new_tokens = 32;  // --max-new
  std::vector<int64_t> stop;    // --stop: ids that end the continuation
  std::string stop_text;        // --stop-text: text whose one token ends it (e.g. a newline)
  bool reference = false;       // --reference: re-run the full forward each step (no caches)
  bool json = false;
  std::string dtype = "float32";
};
/// Greedy continuation of a prompt with the caches (core/model/generate.h), printed as text and ids.
int run_generate(const GenerateOptions& o);

struct ScoreOptionsCli {
  std::string checkpoint;
  std::string dataset;          // --dataset FILE.jsonl
  std::string by = "logprob";   // --by logprob | first-token | choice | generation
  int64_t examples = 0;         // -n: the first lines (0: all)
  int64_t max_new_tokens = 50;  // --max-new (generation)
  std::string csv;              // --csv: a row per line
  bool json = false;
  bool force = false;
  std::string dtype = "float32";
};
/// Scores a model on a prompt dataset line by line (core/text/scoring.h).
int run_score(const ScoreOptionsCli& o);

struct MakeDatasetOptions {
  std::string kind;           // kv-retrieval, phone-book
  std::string model;          // -c: a model with tokenizer.json beside it
  std::string tokenizer;      // --tokenizer: a tokenizer.json itself
  std::string out;            // --out FILE.jsonl
  int64_t examples = 100;     // -n
  uint64_t seed = 0;
  int64_t min_pairs = 10, max_pairs = 50, values = 100, queries = 1;
  int64_t min_entries = 8, max_entries = 30;
  bool force = false;
};
/// Writes a prompt dataset (JSONL, core/text/dataset.h) of a text task's examples: kv-retrieval (P4), phone-book (P2).
int run_make_dataset(const MakeDatasetOptions& o);

struct ConvertOptions {
  std::string source;               // foreign checkpoint: folder, config.json or weights file
  std::string out;                  // native checkpoint (.h5)
  std::string task;                 // optional task to attach, e.g. "mqar"
  std::vector<std::string> task_sets;
  bool force = false;
};
int run_convert(const ConvertOptions& o);

struct ForwardOptions {
  std::string checkpoint;
  TypedInput input;
  int64_t example = -1;             // draw example N (seed N) of the checkpoint's task instead of --tokens
  std::string out;
  std::vector<std::string> hooks;   // names or glob patterns
  int topk = 5;
  bool all_positions = false;
  std::string device = "cpu";
  std::string dtype = "float32";
  bool force = false;
};
int run_forward(const ForwardOptions& o);

struct BenchOptions {
  std::string checkpoint;
  std::string preset;
  int64_t batch = 32;
  int64_t seq = 256;
  int repeat = 10;
  uint64_t seed = 0;
  bool scan = false;      // --scan: the SSM scan kernels against their references, and training throughput
  bool train = false;     // --train: training steps (fwd+bwd+AdamW) on the checkpoint's task, examples/s
  std::string device = "cpu";  // --device for --scan: cpu or cuda (the CUDA kernels, in a CUDA build on a GPU)
  std::string dtype = "float32";  // --dtype: what a checkpoint's weights are held and computed in
  std::string dataset;            // --dataset: the sweeps run on this prompt dataset (an imported model has no task)
};
int run_bench(const BenchOptions& o);
int run_bench_scan(const BenchOptions& o);
int run_bench_train(const BenchOptions& o);

struct TrainOptions {
  InitOptions model;                 // --preset / --config / --set / --seed (init); --out
  std::string task;                  // task name, e.g. "mqar"
  std::vector<std::string> task_sets;// key=value task parameters
  std::string train_config;          // JSON file of TrainConfig keys (flags below override)
  std::vector<std::string> train_sets;
  std::string resume;                // checkpoint of an interrupted run
  bool quiet = false;
};
int run_train(const TrainOptions& o);

struct EvalOptions {
  std::string checkpoint;
  std::vector<std::string> task_sets;   // override task parameters (length, pairs, ...)
  std::vector<uint64_t> seeds = {0};
  int64_t examples = 512;
  std::vector<std::string> sweeps;      // key=v1,v2,...; several vary together (the i-th values at once)
  std::string csv;                      // write the sweep (or the single result) here
  bool force = false;                   // overwrite an existing --csv
  bool by_answer = false;               // also the accuracy of each example's 1st, 2nd, ... answer
};
int run_eval(const EvalOptions& o);

struct AnalyzeOptions {
  std::string checkpoint;
  std::string what;                      // attention | head-scores | ablation | knockout | patching | attribution | dla | embeddings | logit-lens
  std::vector<std::string> task_sets;
  int64_t examples = 64;
  uint64_t seed = 0;
  std::string out, csv;
  bool force = false;
  bool quiet = false;
  // attention
  TypedInput input;  // --tokens, --tokens-file, --text, --text-file: one sequence instead of the task's examples
  std::string dataset;  // --dataset: a JSONL prompt dataset instead of the task (core/text/dataset.h)
  int64_t example = -1;
  int64_t layer = -1;
  std::string mixer;
  int64_t head = -1;
  bool normalise = false;
  int64_t groups = 1;
  // head scores
  int64_t repeat_len = 16;
  // ablation / knockout
  std::string ablation = "zero";
  std::vector<std::string> heads;
  int64_t channel_group = 1;
  std::string shard;   // --shard I/N: part of an ablation sweep
  std::vector<std::string> edges;
  bool last_row = false;
  // patching / attribution
  std::string site = "resid_pre";
  std::string corrupt;
  bool plain = false;
  bool compare = false;
  std::string aligned_csv;               // the score aligned to each example's corruption, rows x anchors
  int64_t memory_mb = 1024;
  double keep_threshold = 0.01;
  // embeddings
  std::vector<std::string> ids;
  int64_t k = 5;
  int64_t components = 3;
  bool over_training = false;
  // plugin analyses
  std::vector<std::string> options;   // key=value
};
int run_analyze(const AnalyzeOptions& o);
/// Lists loaded and failed plugins and every registered task and analysis with its origin.
int run_plugins();

struct ReplayOptions {
  std::vector<std::string> workspaces;  // workspace JSON files saved by the workbench
  std::string out;                      // folder for the figures
};
/// Regenerates a workspace's figures by running the workbench binary beside this one headless
/// (`mechscope --replay OUT WS.json`, QT_QPA_PLATFORM=offscreen): drawing needs Qt, which core does not link.
int run_replay(const ReplayOptions& o);

struct VerifyOptions {
  std::string checkpoint;
  int64_t examples = 16;
  uint64_t seed = 0;
  double tolerance = 1e-4;
};
int run_verify(const VerifyOptions& o);

struct GridOptions {
  std::string manifest;              // the grid's manifest (.json or .toml)
  std::string folder;                // --folder: the grid's folder (default: the manifest's "out", beside it)
  std::string executor = "local";    // --executor local | slurm
  int jobs = 0;                      // --jobs: local tasks at once (0: the manifest's, else cores / cpus)
  bool dry_run = false;              // --dry-run: print the command lines of the tasks that would run
  std::string cli;                   // --cli: the mechscope-cli the Slurm tasks run (default: this one)
};
/// Runs the tasks of a grid that are not done (docs/cluster.md).
int run_grid(const GridOptions& o);
struct GridStatusOptions {
  std::string manifest;
  std::string folder;
  bool json = false;
  bool all = false;    // --all: list done tasks too
  bool wait = false;   // --wait: until nothing is queued or running
};
/// done / running / queued / failed / missing of every task, from the task folders and squeue; exit 1 unless all done.
int run_grid_status(const GridStatusOptions& o);
struct GridTaskOptions {
  std::string grid;    // the grid's folder
  std::string id;      // a task id
  std::string list;    // --list: a file of ids, the one at SLURM_ARRAY_TASK_ID
};
/// Runs one task's command lines and writes its record (what the executors start).
int run_grid_task(const GridTaskOptions& o);
struct CollectOptions {
  std::string manifest;
  std::string folder;
  std::string out;     // --out PREFIX: PREFIX.csv and PREFIX.h5 (default <grid folder>/collected)
  bool partial = false;
  bool force = false;
  std::string x, y, series;  // the figure's columns (default: the manifest's "figure", else default_figure)
  bool no_figure = false;
};
/// Merges the done tasks' tables into one CSV and HDF5 table, axes as columns, with provenance.
int run_collect(const CollectOptions& o);

int run_version();

}  // namespace mechscope::cli
