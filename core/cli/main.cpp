// mechscope-cli: the command-line face of the engine (init, info, forward, train, eval, analyze, verify, bench, version).
// Parses arguments with CLI11 and turns every exception into one clear "error:" line.
#include <iostream>

#include <CLI/CLI.hpp>

#include "core/cli/commands.h"
#include "core/engine/memory.h"
#include "core/engine/runtime.h"
#include "core/plugin/plugin.h"
#include "core/version.h"

using namespace mechscope::cli;

namespace {
const char* const kDtypeHelp =
    "what the weights are held and computed in: float32, bfloat16, float16, or stored (an imported model's own "
    "dtype: a bfloat16 model in half the memory of float32)";
}  // namespace

int main(int argc, char** argv) {
  mechscope::select_blas_core();
  mechscope::init_runtime();
  for (const auto& p : mechscope::load_plugins())  // a broken plugin is reported and skipped
    if (!p.loaded) std::cerr << "warning: plugin " << p.path << " skipped: " << p.error << "\n";
  CLI::App app{"mechscope-cli: mechanistic interpretability of Transformers, Mamba and hybrids, from the command line.\n"
               "Run `mechscope-cli <command> --help` for a command's options."};
  app.require_subcommand(0, 1);
  bool version = false;
  app.add_flag("--version", version, "print the version, LibTorch, BLAS and thread count");

  InitOptions init;
  auto* c_init = app.add_subcommand("init", "create a randomly initialised model from a preset or a config, saved as a checkpoint");
  c_init->add_option("--preset", init.preset, "transformer | mamba1 | mamba2 | hybrid | parallel-hybrid");
  c_init->add_option("--config", init.config_path, "JSON file holding a model_config (docs/spec.md §1)");
  c_init->add_option("--set", init.sets, "override a config key, e.g. --set d_model=64 --set attn_cfg.num_heads=2")
      ->take_all();
  c_init->add_option("--seed", init.seed, "seed of the initialisation")->capture_default_str();
  c_init->add_option("--out,-o", init.out, "checkpoint to write (.h5)")->required();
  c_init->add_flag("--force", init.force, "overwrite an existing file");

  InfoOptions info;
  auto* c_info = app.add_subcommand("info", "describe a checkpoint: architecture, parameters, layers, mixers, heads");
  c_info->add_option("checkpoint,--checkpoint,-c", info.checkpoint, "checkpoint (.h5)")->required();
  c_info->add_flag("--hooks", info.hooks, "list every hook point of the model");
  c_info->add_flag("--json", info.json, "machine-readable output");
  c_info->add_option("--dtype", info.dtype, kDtypeHelp)->capture_default_str();

  TokenizeOptions tz;
  auto* c_tok = app.add_subcommand("tokenize", "text to token ids (and back) through a model's tokenizer.json, as the "
                                   "tokenizers package does");
  c_tok->add_option("--checkpoint,-c", tz.model, "a model folder with tokenizer.json (or its config.json)");
  c_tok->add_option("--tokenizer", tz.tokenizer, "a tokenizer.json");
  c_tok->add_option("--text", tz.text, "the text to encode");
  c_tok->add_option("--text-file", tz.text_file, "a UTF-8 file to encode");
  c_tok->add_option("--decode", tz.ids, "ids to decode (comma-separated)")->delimiter(',');
  c_tok->add_flag("--json", tz.json, "ids, token strings and the input bytes each token covers");
  c_tok->add_flag("--no-special", tz.no_special, "without the special tokens the tokenizer adds (e.g. BOS)");
  c_tok->add_flag("--keep-special", tz.keep_special, "with --decode: keep special tokens in the text");

  GenerateOptions gen;
  auto* c_gen = app.add_subcommand("generate", "greedy continuation of a prompt, with attention's key-value cache and "
                                   "the SSM state cache (docs/text.md)");
  c_gen->add_option("--checkpoint,-c", gen.checkpoint, "checkpoint (.h5) or model folder")->required();
  c_gen->add_option("--tokens,-t", gen.input.tokens, "the prompt as ids or vocabulary strings");
  c_gen->add_option("--tokens-file", gen.input.tokens_file, "text file holding the prompt's tokens");
  c_gen->add_option("--text", gen.input.text, "the prompt as text, through the model's tokenizer");
  c_gen->add_option("--text-file", gen.input.text_file, "a UTF-8 file holding the prompt");
  c_gen->add_option("--max-new", gen.max_new_tokens, "most tokens to generate")->capture_default_str();
  c_gen->add_option("--stop", gen.stop, "ids that end the continuation (kept)")->delimiter(',');
  c_gen->add_option("--stop-text", gen.stop_text, "text of one token that ends the continuation, e.g. $'\\n'");
  c_gen->add_flag("--reference", gen.reference, "re-run the full forward at every step instead of the caches");
  c_gen->add_flag("--json", gen.json, "prompt and continuation ids and text as JSON");
  c_gen->add_option("--dtype", gen.dtype, kDtypeHelp)->capture_default_str();

  MakeDatasetOptions mk;
  auto* c_mk = app.add_subcommand("make-dataset", "write a prompt dataset (JSONL) of the papers' text tasks: kv-retrieval "
                                  "(P4's dictionary prompt, multiple choice), phone-book (P2, greedy generation)");
  c_mk->add_option("kind", mk.kind, "kv-retrieval or phone-book")->required();
  c_mk->add_option("--checkpoint,-c", mk.model, "a model folder with tokenizer.json");
  c_mk->add_option("--tokenizer", mk.tokenizer, "a tokenizer.json");
  c_mk->add_option("--out,-o", mk.out, "the dataset file to write (.jsonl)")->required();
  c_mk->add_option("--examples,-n", mk.examples, "lines to write")->capture_default_str();
  c_mk->add_option("--seed", mk.seed, "seed of the first line (line i uses seed + i)")->capture_default_str();
  c_mk->add_option("--min-pairs", mk.min_pairs, "fewest key-value pairs per prompt")->capture_default_str();
  c_mk->add_option("--max-pairs", mk.max_pairs, "most key-value pairs per prompt")->capture_default_str();
  c_mk->add_option("--values", mk.values, "values are the numbers 0..values-1")->capture_default_str();
  c_mk->add_option("--queries", mk.queries, "kv-retrieval: queries per prompt, those before the last answered in it "
                   "(P4: 1)")->capture_default_str();
  c_mk->add_option("--min-entries", mk.min_entries, "phone-book: fewest entries per prompt")->capture_default_str();
  c_mk->add_option("--max-entries", mk.max_entries, "phone-book: most entries per prompt")->capture_default_str();

  ScoreOptionsCli sc;
  auto* c_sc = app.add_subcommand("score", "score a model on a prompt dataset line by line: the answer's log-probability, "
                                  "a multiple choice, or greedy generation's exact match (docs/text.md)");
  c_sc->add_option("--checkpoint,-c", sc.checkpoint, "checkpoint (.h5) or model folder")->required();
  c_sc->add_option("--dataset", sc.dataset, "prompt dataset (.jsonl)")->required();
  c_sc->add_option("--by", sc.by, "logprob, first-token, choice or generation")->capture_default_str();
  c_sc->add_option("--examples,-n", sc.examples, "score the first N lines (default: all)");
  c_sc->add_option("--max-new", sc.max_new_tokens, "generation: most tokens per line")->capture_default_str();
  c_sc->add_option("--csv", sc.csv, "a row per line: line, logprob, correct, chosen, generated");
  c_sc->add_flag("--json", sc.json, "the summary and every line as JSON");
  c_sc->add_flag("--force", sc.force, "overwrite --csv");
  c_sc->add_option("--dtype", sc.dtype, kDtypeHelp)->capture_default_str();
  c_mk->add_flag("--force", mk.force, "overwrite --out");

  ReplayOptions rep;
  auto* c_rep = app.add_subcommand("replay", "regenerate the figures of a saved workbench workspace (PNG, PDF, SVG, CSV), "
                                   "headless, through the workbench binary `mechscope` beside this one");
  c_rep->add_option("workspace", rep.workspaces, "workspace JSON file(s) saved by File > Save workspace")->required();
  c_rep->add_option("--out,-o", rep.out, "folder for the figures")->required();

  ConvertOptions conv;
  auto* c_conv = app.add_subcommand("convert", "import a mamba_ssm or Hugging Face (Mamba, Mamba2, Llama) checkpoint "
                                    "and write it as a MechScope checkpoint (docs/import.md)");
  c_conv->add_option("source", conv.source, "folder with config.json and model.safetensors / pytorch_model.bin "
                     "(or one of those files)")->required();
  c_conv->add_option("--out,-o", conv.out, "checkpoint to write (.h5)")->required();
  c_conv->add_option("--task", conv.task, "attach a task the model was trained on (its vocabulary must match)");
  c_conv->add_option("--task-set", conv.task_sets, "task parameter, e.g. --task-set num_pairs=8")->take_all();
  c_conv->add_flag("--force", conv.force, "overwrite an existing file");

  ForwardOptions fwd;
  auto* c_fwd = app.add_subcommand("forward", "run the model on tokens; write logits (and hooks) to an HDF5 results file");
  c_fwd->add_option("--checkpoint,-c", fwd.checkpoint, "checkpoint (.h5)")->required();
  c_fwd->add_option("--tokens,-t", fwd.input.tokens, "ids or vocabulary strings, e.g. 5,9,2 or \"<bos> k3 v7\"");
  c_fwd->add_option("--tokens-file", fwd.input.tokens_file, "text file holding the tokens");
  c_fwd->add_option("--text", fwd.input.text, "text, through the model's tokenizer.json (docs/text.md)");
  c_fwd->add_option("--text-file", fwd.input.text_file, "a UTF-8 file of text, through the model's tokenizer.json");
  c_fwd->add_option("--example", fwd.example, "use example N (seed N) of the checkpoint's task; prints targets too");
  c_fwd->add_option("--out,-o", fwd.out, "results file to write (.h5); omit to only print predictions");
  c_fwd->add_option("--hooks", fwd.hooks, "hook names or patterns to save, e.g. blocks.0.attn.hook_pattern, 'blocks.*.hook_resid_post', all")
      ->delimiter(',');
  c_fwd->add_option("--topk", fwd.topk, "predictions to print per position")->capture_default_str();
  c_fwd->add_flag("--all-positions", fwd.all_positions, "print predictions at every position, not only the last");
  c_fwd->add_option("--device", fwd.device, "cpu | cuda")->capture_default_str();
  c_fwd->add_option("--dtype", fwd.dtype, kDtypeHelp)->capture_default_str();
  c_fwd->add_flag("--force", fwd.force, "overwrite an existing output file");

  BenchOptions bench;
  auto* c_bench = app.add_subcommand("bench", "time a plain forward against a forward caching every hook");
  c_bench->add_option("--checkpoint,-c", bench.checkpoint, "checkpoint (.h5)");
  c_bench->add_option("--preset", bench.preset, "or a preset, randomly initialised");
  c_bench->add_option("--batch", bench.batch, "batch size")->capture_default_str();
  c_bench->add_option("--seq", bench.seq, "sequence length")->capture_default_str();
  c_bench->add_option("--repeat", bench.repeat, "timed repetitions (median reported)")->capture_default_str();
  c_bench->add_option("--dtype", bench.dtype, kDtypeHelp)->capture_default_str();
  c_bench->add_option("--dataset", bench.dataset,
                      "a JSONL prompt dataset (docs/text.md): the intervention sweeps run on its first --batch lines "
                      "(an imported model has no task of its own)");
  c_bench->add_flag("--train", bench.train, "time training steps (fwd+bwd+AdamW) on the checkpoint's task, --batch examples each");
  c_bench->add_flag("--scan", bench.scan, "benchmark the SSM scan kernels against their references (and training steps)");
  c_bench->add_option("--device", bench.device, "with --scan: cpu, or cuda (GPU kernels at mamba-130m widths)")
      ->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();

  TrainOptions train;
  auto* c_train = app.add_subcommand("train", "train a model on a task (AdamW, warmup+cosine, eval, early stop, checkpoints, resume)");
  c_train->add_option("--preset", train.model.preset, "model preset (vocab_size comes from the task)");
  c_train->add_option("--config", train.model.config_path, "JSON model_config");
  c_train->add_option("--set", train.model.sets, "model config override, e.g. --set d_model=64")->take_all();
  c_train->add_option("--task", train.task, "task: mqar | ar | position | ngram | copy | lookup | atr | kv-text, or a plugin's (`mechscope-cli plugins` lists them)");
  c_train->add_option("--task-set", train.task_sets, "task parameter, e.g. --task-set num_pairs=8")->take_all();
  c_train->add_option("--train-config", train.train_config, "JSON file of training settings");
  c_train->add_option("--train-set", train.train_sets,
                      "training setting, e.g. --train-set steps=3000 --train-set lr=3e-3 (keys: steps batch lr warmup "
                      "weight_decay beta1 beta2 clip eval_every eval_examples target_accuracy efficiency_threshold "
                      "checkpoint_every seed eval_seed snapshot_rows loss)")->take_all();
  c_train->add_option("--seed", train.model.seed, "model initialisation seed")->capture_default_str();
  c_train->add_option("--out,-o", train.model.out, "checkpoint written during and after training");
  c_train->add_option("--resume", train.resume, "continue an interrupted run from its checkpoint");
  c_train->add_flag("--force", train.model.force, "overwrite an existing checkpoint when starting a new run");
  c_train->add_flag("--quiet", train.quiet, "no progress line");

  EvalOptions ev;
  auto* c_eval = app.add_subcommand("eval", "accuracy of a checkpoint on its task (or changed task parameters), over seeds");
  c_eval->add_option("--checkpoint,-c", ev.checkpoint, "checkpoint (.h5)")->required();
  c_eval->add_option("--task-set", ev.task_sets, "override a task parameter, e.g. --task-set seq_len=256")->take_all();
  c_eval->add_option("--seed,--seeds", ev.seeds, "one or more seeds (mean and 95% interval over them)")->delimiter(',');
  c_eval->add_option("--examples", ev.examples, "examples per seed")->capture_default_str();
  c_eval->add_option("--sweep", ev.sweeps,
                     "sweep a task parameter, e.g. --sweep num_pairs=4,8,16; given again, the parameters vary "
                     "together (--sweep num_pairs=4,8 --sweep min_pairs=4,8: exactly 4 pairs, then exactly 8)");
  c_eval->add_option("--csv", ev.csv, "write the results as CSV");
  c_eval->add_flag("--force", ev.force, "overwrite an existing --csv file");
  c_eval->add_flag("--by-answer", ev.by_answer,
                   "also the accuracy of each example's first, second, ... answered position (an MQAR example's "
                   "queries in order): where a model's accuracy comes from");

  AnalyzeOptions an;
  auto* c_an = app.add_subcommand("analyze", "run an analysis or intervention sweep on a checkpoint and its task; write "
                                             "an HDF5 results file and/or CSV");
  c_an->add_option("what", an.what, "attention | head-scores | ablation | knockout | patching | attribution | dla | "
                                    "embeddings | logit-lens, or an analysis a plugin adds (mechscope-cli plugins)")->required();
  c_an->add_option("--checkpoint,-c", an.checkpoint, "checkpoint (.h5)")->required();
  c_an->add_option("--task-set", an.task_sets, "override a task parameter, e.g. --task-set num_pairs=8")->take_all();
  c_an->add_option("--examples,-n", an.examples, "examples drawn from the task")->capture_default_str();
  c_an->add_option("--seed", an.seed, "seed of the examples (corruptions use seed + 1)")->capture_default_str();
  c_an->add_option("--out,-o", an.out, "results file to write (.h5)");
  c_an->add_option("--csv", an.csv, "CSV of the main one- or two-dimensional result");
  c_an->add_option("--aligned-csv", an.aligned_csv,
                   "patching / attribution: CSV of the score aligned to each example's corrupted token and readout "
                   "(rows x anchors)");
  c_an->add_flag("--force", an.force, "overwrite existing output files");
  c_an->add_flag("--quiet", an.quiet, "no progress line");
  c_an->add_option("--tokens,-t", an.input.tokens, "ids or vocabulary strings instead of the task's examples");
  c_an->add_option("--tokens-file", an.input.tokens_file, "a file holding the tokens");
  c_an->add_option("--dataset", an.dataset, "a JSONL prompt dataset (clean, corrupted, answer per line) instead of the "
                   "task (docs/text.md)");
  c_an->add_option("--text", an.input.text, "text, through the model's tokenizer.json, instead of the task's examples");
  c_an->add_option("--text-file", an.input.text_file, "a UTF-8 file of text, through the model's tokenizer.json");
  c_an->add_option("--example", an.example, "attention: task example N (default: --seed)");
  c_an->add_option("--layer", an.layer, "attention / knockout: the layer");
  c_an->add_option("--mixer", an.mixer, "attention: attn or ssm (both by default)");
  c_an->add_option("--head", an.head, "attention: the head written to --csv");
  c_an->add_flag("--normalise", an.normalise, "attention: min-max normalise each map");
  c_an->add_option("--groups", an.groups, "attention: Mamba1 channel groups (1 = channel average)")->capture_default_str();
  c_an->add_option("--repeat-len", an.repeat_len, "head-scores: length of each half of the repeated sequences")->capture_default_str();
  c_an->add_option("--ablation", an.ablation, "ablation: zero | mean | resample")->capture_default_str();
  c_an->add_option("--heads", an.heads, "ablation: ablate these heads together (L1.attn.H0,..., or a range "
                                        "L0.ssm.H0-15) instead of a sweep; knockout: head indices of the layer")->delimiter(',');
  c_an->add_option("--shard", an.shard, "ablation sweep: part I/N of the heads (0-based), for a grid's array tasks; "
                   "the parts' tables in order make the whole sweep's");
  c_an->add_option("--channel-group", an.channel_group, "ablation sweep: Mamba1 channels in groups of this many "
                                                        "consecutive channels, each group ablated together")->capture_default_str();
  c_an->add_option("--edge", an.edges, "knockout: a query:key edge to block (repeatable)")->take_all();
  c_an->add_flag("--last-row", an.last_row, "knockout: block every edge from the answer position to earlier keys");
  c_an->add_option("--site", an.site, "patching / attribution: resid_pre | resid_mid | resid_post | mixer_in | mixer_out | "
                                      "mlp_in | mlp_out | heads | conv_out | state")->capture_default_str();
  c_an->add_option("--corrupt", an.corrupt, "patching / attribution: the role corrupted (key, value, query; task default)");
  c_an->add_flag("--plain", an.plain, "sweeps: one forward per intervention (the baseline) instead of batched");
  c_an->add_flag("--compare", an.compare, "attribution: also run exact patching and report the correlation");
  c_an->add_option("--keep-threshold", an.keep_threshold, "patching: keep examples with p(y|clean) - p(y|corrupted) "
                                                          "above this (docs/spec.md §4; -1 keeps every example)")->capture_default_str();
  c_an->add_option("--memory-mb", an.memory_mb, "sweeps: memory (MiB) for the stacked variants, on top of the clean run's cache (which grows with --examples and is checked against free memory separately)")->capture_default_str();
  c_an->add_option("--ids", an.ids, "embeddings: token ids whose rows to analyse (default: the task's position tokens)")
      ->delimiter(',');
  c_an->add_option("--k", an.k, "embeddings: neighbours for the locality score")->capture_default_str();
  c_an->add_option("--components", an.components, "embeddings: PCA components")->capture_default_str();
  c_an->add_flag("--over-training", an.over_training, "embeddings: locality of each snapshot kept during training");
  c_an->add_option("--option", an.options, "plugin analyses: key=value (repeatable), e.g. --option example=2")->take_all();
  auto* c_plugins = app.add_subcommand("plugins", "list the plugins that loaded, those that did not and why, and every "
                                                  "task and analysis with where it comes from");

  VerifyOptions ver;
  auto* c_ver = app.add_subcommand("verify", "check the fast paths of a checkpoint against the plain reference paths "
                                             "(scan kernels, cache, batched sweeps); exit 1 if any differs");
  c_ver->add_option("checkpoint,--checkpoint,-c", ver.checkpoint, "checkpoint (.h5)")->required();
  c_ver->add_option("--examples", ver.examples, "examples")->capture_default_str();
  c_ver->add_option("--seed", ver.seed, "seed")->capture_default_str();
  c_ver->add_option("--tolerance", ver.tolerance, "relative tolerance")->capture_default_str();

  auto* c_version = app.add_subcommand("version", "print the version, LibTorch, BLAS and thread count");

  GridOptions grid;
  auto* c_grid = app.add_subcommand("grid", "run a grid of trainings or analyses from a manifest (JSON or TOML): here, "
                                    "or as a Slurm job array; run again to retry what failed (docs/cluster.md)");
  c_grid->require_subcommand(0, 1);
  c_grid->add_option("manifest", grid.manifest, "the grid's manifest (.json or .toml)");
  c_grid->add_option("--executor", grid.executor, "local (processes on this machine) or slurm (sbatch --array)")
      ->capture_default_str();
  c_grid->add_option("--folder", grid.folder, "the grid's folder (default: the manifest's \"out\", else NAME.grid beside the manifest)");
  c_grid->add_option("--jobs,-j", grid.jobs, "local: tasks at once (default: the manifest's, else cores / cpus)");
  c_grid->add_flag("--dry-run", grid.dry_run, "print the command lines of the tasks that would run");
  c_grid->add_option("--cli", grid.cli, "slurm: the mechscope-cli the tasks run (default: this one; it must be on a "
                     "file system the nodes share)");
  GridStatusOptions gstat;
  auto* c_gstat = c_grid->add_subcommand("status", "done / running / queued / failed / missing of every task, from the "
                                         "task folders and squeue; exit 1 unless every task is done");
  c_gstat->add_option("manifest", gstat.manifest, "the grid's manifest")->required();
  c_gstat->add_option("--folder", gstat.folder, "the grid's folder (default: the manifest's \"out\", else NAME.grid beside the manifest)");
  c_gstat->add_flag("--json", gstat.json, "every task's state as JSON");
  c_gstat->add_flag("--all", gstat.all, "list done tasks too");
  c_gstat->add_flag("--wait", gstat.wait, "wait until nothing is queued or running");
  GridTaskOptions gtask;
  auto* c_gtask = c_grid->add_subcommand("task", "run one task of a prepared grid and write its record (what the "
                                         "executors start; not needed by hand)");
  c_gtask->add_option("folder", gtask.grid, "the grid's folder")->required();
  c_gtask->add_option("id", gtask.id, "the task's id");
  c_gtask->add_option("--list", gtask.list, "a file of task ids: run the one at line $SLURM_ARRAY_TASK_ID");

  CollectOptions col;
  auto* c_col = app.add_subcommand("collect", "merge a grid's task tables into one CSV and HDF5 table (axes as "
                                   "columns, with provenance)");
  c_col->add_option("manifest", col.manifest, "the grid's manifest")->required();
  c_col->add_option("--out,-o", col.out, "PREFIX: writes PREFIX.csv and PREFIX.h5 (default: the grid folder's "
                    "collected.csv and collected.h5)");
  c_col->add_option("--folder", col.folder, "the grid's folder (default: the manifest's \"out\", else NAME.grid beside the manifest)");
  c_col->add_flag("--partial", col.partial, "collect the done tasks even when others are not");
  c_col->add_flag("--force", col.force, "overwrite --out's files");
  c_col->add_option("--x", col.x, "the figure's x: an axis (default: the manifest's figure.x, else the first numeric "
                    "axis that varies)");
  c_col->add_option("--y", col.y, "the figure's y: a column (default: accuracy)");
  c_col->add_option("--series", col.series, "the figure's lines: an axis ('-': one line)");
  c_col->add_flag("--no-figure", col.no_figure, "write the table only (PREFIX.png and PREFIX.svg otherwise, drawn by "
                  "the workbench binary)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (std::getenv("MECHSCOPE_PARSE_ONLY")) return 0;  // `grid` checks its tasks' command lines this way
  try {
    if (version || c_version->parsed()) return run_version();
    if (c_init->parsed()) return run_init(init);
    if (c_info->parsed()) return run_info(info);
    if (c_tok->parsed()) return run_tokenize(tz);
    if (c_mk->parsed()) return run_make_dataset(mk);
    if (c_gen->parsed()) return run_generate(gen);
    if (c_sc->parsed()) return run_score(sc);
    if (c_conv->parsed()) return run_convert(conv);
    if (c_rep->parsed()) return run_replay(rep);
    if (c_fwd->parsed()) return run_forward(fwd);
    if (c_train->parsed()) return run_train(train);
    if (c_eval->parsed()) return run_eval(ev);
    if (c_an->parsed()) return run_analyze(an);
    if (c_ver->parsed()) return run_verify(ver);
    if (c_plugins->parsed()) return run_plugins();
    if (c_gstat->parsed()) return run_grid_status(gstat);
    if (c_gtask->parsed()) return run_grid_task(gtask);
    if (c_grid->parsed()) {
      if (grid.manifest.empty()) throw std::invalid_argument("grid: give a manifest (docs/cluster.md)");
      return run_grid(grid);
    }
    if (c_col->parsed()) return run_collect(col);
    if (c_bench->parsed()) return bench.scan ? run_bench_scan(bench) : bench.train ? run_bench_train(bench) : run_bench(bench);
    std::cout << app.help();
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "error: " << mechscope::describe_error(e) << "\n";
    return 1;
  }
}
