// mechscope-cli: the command-line face of the engine (init, info, forward, train, eval, bench, version).
// Parses arguments with CLI11 and turns every exception into one clear "error:" line.
#include <iostream>

#include <CLI/CLI.hpp>

#include "core/cli/commands.h"
#include "core/engine/runtime.h"
#include "core/version.h"

using namespace mechscope::cli;

int main(int argc, char** argv) {
  mechscope::init_runtime();
  CLI::App app{"mechscope-cli: mechanistic interpretability of Transformers, Mamba and hybrids, from the command line.\n"
               "Run `mechscope-cli <command> --help` for a command's options."};
  app.require_subcommand(0, 1);
  bool version = false;
  app.add_flag("--version", version, "print the version, LibTorch, BLAS and thread count");

  InitOptions init;
  auto* c_init = app.add_subcommand("init", "create a randomly initialised model from a preset or a config, saved as a checkpoint");
  c_init->add_option("--preset", init.preset, "transformer | mamba1 | mamba2 | hybrid | parallel-hybrid");
  c_init->add_option("--config", init.config_path, "JSON file holding a model_config (SPEC §1)");
  c_init->add_option("--set", init.sets, "override a config key, e.g. --set d_model=64 --set attn_cfg.num_heads=2")
      ->take_all();
  c_init->add_option("--seed", init.seed, "seed of the initialisation")->capture_default_str();
  c_init->add_option("--out,-o", init.out, "checkpoint to write (.h5)")->required();
  c_init->add_flag("--force", init.force, "overwrite an existing file");

  InfoOptions info;
  auto* c_info = app.add_subcommand("info", "describe a checkpoint: architecture, parameters, layers, mixers, heads");
  c_info->add_option("checkpoint,--checkpoint", info.checkpoint, "checkpoint (.h5)")->required();
  c_info->add_flag("--hooks", info.hooks, "list every hook point of the model");
  c_info->add_flag("--json", info.json, "machine-readable output");

  ForwardOptions fwd;
  auto* c_fwd = app.add_subcommand("forward", "run the model on tokens; write logits (and hooks) to an HDF5 results file");
  c_fwd->add_option("--checkpoint,-c", fwd.checkpoint, "checkpoint (.h5)")->required();
  c_fwd->add_option("--tokens,-t", fwd.tokens, "ids or vocabulary strings, e.g. 5,9,2 or \"<bos> k3 v7\"");
  c_fwd->add_option("--tokens-file", fwd.tokens_file, "text file holding the tokens");
  c_fwd->add_option("--example", fwd.example, "use example N (seed N) of the checkpoint's task; prints targets too");
  c_fwd->add_option("--out,-o", fwd.out, "results file to write (.h5); omit to only print predictions");
  c_fwd->add_option("--hooks", fwd.hooks, "hook names or patterns to save, e.g. blocks.0.attn.hook_pattern, 'blocks.*.hook_resid_post', all")
      ->delimiter(',');
  c_fwd->add_option("--topk", fwd.topk, "predictions to print per position")->capture_default_str();
  c_fwd->add_flag("--all-positions", fwd.all_positions, "print predictions at every position, not only the last");
  c_fwd->add_option("--device", fwd.device, "cpu | cuda")->capture_default_str();
  c_fwd->add_option("--dtype", fwd.dtype, "float32 | bfloat16")->capture_default_str();
  c_fwd->add_flag("--force", fwd.force, "overwrite an existing output file");

  BenchOptions bench;
  auto* c_bench = app.add_subcommand("bench", "time a plain forward against a forward caching every hook");
  c_bench->add_option("--checkpoint,-c", bench.checkpoint, "checkpoint (.h5)");
  c_bench->add_option("--preset", bench.preset, "or a preset, randomly initialised");
  c_bench->add_option("--batch", bench.batch, "batch size")->capture_default_str();
  c_bench->add_option("--seq", bench.seq, "sequence length")->capture_default_str();
  c_bench->add_option("--repeat", bench.repeat, "timed repetitions (median reported)")->capture_default_str();
  c_bench->add_flag("--train", bench.train, "time training steps (fwd+bwd+AdamW) on the checkpoint's task, --batch examples each");
  c_bench->add_flag("--scan", bench.scan, "benchmark the SSM scan kernels against their references (and training steps)");

  TrainOptions train;
  auto* c_train = app.add_subcommand("train", "train a model on a task (AdamW, warmup+cosine, eval, early stop, checkpoints, resume)");
  c_train->add_option("--preset", train.model.preset, "model preset (vocab_size comes from the task)");
  c_train->add_option("--config", train.model.config_path, "JSON model_config");
  c_train->add_option("--set", train.model.sets, "model config override, e.g. --set d_model=64")->take_all();
  c_train->add_option("--task", train.task, "task: mqar | ar | position | ngram");
  c_train->add_option("--task-set", train.task_sets, "task parameter, e.g. --task-set num_pairs=8")->take_all();
  c_train->add_option("--train-config", train.train_config, "JSON file of training settings");
  c_train->add_option("--train-set", train.train_sets,
                      "training setting, e.g. --train-set steps=3000 --train-set lr=3e-3 (keys: steps batch lr warmup "
                      "weight_decay beta1 beta2 clip eval_every eval_examples target_accuracy efficiency_threshold "
                      "checkpoint_every seed eval_seed snapshot_rows)")->take_all();
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
  c_eval->add_option("--sweep", ev.sweep, "sweep a task parameter, e.g. --sweep num_pairs=4,8,16");
  c_eval->add_option("--csv", ev.csv, "write the results as CSV");

  auto* c_version = app.add_subcommand("version", "print the version, LibTorch, BLAS and thread count");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    if (version || c_version->parsed()) return run_version();
    if (c_init->parsed()) return run_init(init);
    if (c_info->parsed()) return run_info(info);
    if (c_fwd->parsed()) return run_forward(fwd);
    if (c_train->parsed()) return run_train(train);
    if (c_eval->parsed()) return run_eval(ev);
    if (c_bench->parsed()) return bench.scan ? run_bench_scan(bench) : bench.train ? run_bench_train(bench) : run_bench(bench);
    std::cout << app.help();
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
