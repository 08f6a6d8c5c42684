// Grids: a manifest (a base command and axes) expanded into tasks, each task's results record, the status of a grid
// read from those records, and the collected table (docs/cluster.md). The executors that run the tasks (local
// processes, Slurm job arrays) live in the CLI (core/cli/grid.cpp); this part runs nothing and links no torch.
// Must not: start processes or talk to a scheduler.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mechscope::grid {

/// Where and how the tasks run: each task's CPUs (its thread count), and what a Slurm submission asks for.
struct Resources {
  int cpus = 1;              // threads per task (Slurm: --cpus-per-task)
  int jobs = 0;              // local executor: tasks at once (0: cores / cpus)
  std::string mem;           // Slurm --mem, e.g. "4G"
  std::string time;          // Slurm --time, e.g. "00:30:00"
  std::string partition;     // Slurm --partition
  std::string gres;          // Slurm --gres, e.g. "gpu:1"
  int throttle = 0;          // Slurm array "%N": at most N tasks at once (0: no limit)
  std::vector<std::string> sbatch;  // further sbatch options, e.g. "--account=abc"
  std::vector<std::string> setup;   // shell lines run before each task, e.g. "module load hdf5"
};

/// A parsed manifest. `axes` keeps the manifest's order; each axis is a key ("preset", "seed", "set.d_model",
/// "task_set.num_pairs", ...) and its values.
struct Manifest {
  std::string path;                      // the manifest file
  std::string name;                      // "name", default the file's stem
  std::string out;                       // the grid folder (absolute or relative to the manifest)
  std::vector<std::string> command;      // "command": e.g. ["train", "--task", "mqar", ...]
  std::vector<std::string> then;         // "then": a command run on a training's checkpoint (default ["eval"])
  std::vector<std::pair<std::string, std::vector<nlohmann::json>>> axes;
  int64_t shards = 1;                    // "shards": an analysis sweep split into this many array tasks
  Resources resources;
  std::string figure_x, figure_y, figure_series;  // "figure": {"x", "y", "series"} (default_figure where empty)
};

/// Reads a manifest: JSON (.json) or TOML (.toml). Unknown keys, empty axes, a command the grid cannot run and
/// output flags the grid chooses itself are refused by name.
Manifest read_manifest(const std::string& path);
/// The same from text already read (`path` names it in errors and anchors relative paths).
Manifest parse_manifest(const nlohmann::ordered_json& j, const std::string& path);

/// One task of a grid: its axis values, its content-hash id, and the command lines it runs (without the outputs,
/// which task_steps adds from the task's folder).
struct Task {
  std::string id;                 // 16 hex digits of the SHA-256 of the task's parameters
  std::string group;              // the id without the shard (equal to id when the grid is not sharded)
  nlohmann::ordered_json params;  // axis key -> value, in the manifest's order
  int64_t shard = -1;             // 0..shards-1, or -1
  std::vector<std::string> argv;  // the command with the axis flags
};

/// The axes' names, in the manifest's order (the collected table's columns after "task").
std::vector<std::string> axis_names(const Manifest& m);

/// An axis value as a table cell: a string as itself, a bundle as its label, anything else as its JSON.
template <typename Json>
std::string cell_text(const Json& v) {
  if (v.is_object() && v.contains("label")) return v["label"].template get<std::string>();
  return v.is_string() ? v.template get<std::string>() : v.dump();
}

/// The flags an axis value adds: "seed" 3 -> --seed 3; "set.d_model" 64 -> --set d_model=64; likewise task_set.,
/// train_set. and option.; "shard" -> --shard I/N.
std::vector<std::string> axis_flags(const std::string& key, const nlohmann::json& value, int64_t shards);
/// Every task of the grid: the product of the axes (the first axis varies slowest), then the shards.
std::vector<Task> expand(const Manifest& m);

/// The grid's folder (Manifest::out made absolute), and a task's folder in it.
std::string grid_folder(const Manifest& m);
std::string task_folder(const std::string& grid, const std::string& id);

/// The command lines a task runs, outputs included, given what its folder already holds: `command` is the task's
/// argv (Task::argv), `then` the manifest's. A training whose checkpoint exists resumes it (`train --resume`); one
/// that finished (its folder holds "trained") is not run again.
std::vector<std::vector<std::string>> task_steps(const std::vector<std::string>& command,
                                                 const std::vector<std::string>& then, const std::string& folder);

/// What a task's folder says about it.
enum class State { Missing, Queued, Running, Done, Failed };
const char* state_name(State s);

/// The record a task writes last (result.json): complete (with the SHA-256 of its table, the seal) or failed.
struct Record {
  bool present = false;
  bool complete = false;
  std::string error;         // why it failed, or why the record is not trusted
  nlohmann::json json;
};
/// Reads `folder`/result.json; a complete record whose result.csv no longer matches its seal is not complete.
Record read_record(const std::string& folder);

/// A collected table: columns in order, each cell a string ("" where a task's table had no such column).
struct Table {
  std::vector<std::string> columns;
  std::vector<std::vector<std::string>> rows;
};
/// Parses our CSV (RFC 4180 quoting); the first line is the header.
Table read_csv(const std::string& text, const std::string& where);
std::string write_csv(const Table& t);

/// The grid's table: a row per row of each done task's result.csv, with the task (group) id and the axis values in
/// front; shards of one task are joined in shard order into the table the unsharded run writes.
Table collect(const Manifest& m, const std::vector<Task>& tasks, const std::string& grid);

/// A collected table in HDF5 (format mechscope-grid-table, version 1): a dataset per column, numbers as float64
/// and text as int64 codes with a "labels" attribute, each with its "name"; the provenance as a root attribute.
/// Written atomically and sealed.
void write_table_h5(const std::string& path, const Table& t, const nlohmann::json& provenance);
struct TableFile {
  Table table;
  nlohmann::json provenance;
};
/// Reads one back (numbers as the shortest text that round-trips); refuses other files by name.
TableFile read_table_h5(const std::string& path);
/// Whether `path` is a collected grid table (an HDF5 file of that format); false for anything else.
bool is_grid_table(const std::string& path);

/// The grid's figure: `y` (a column) against `x` (a numeric axis), one line per value of `series` (an axis, or
/// several joined by commas for a line per combination, e.g. "model,set.d_model"; "" for one line), the mean over
/// the rows that share them (seeds, other axes).
struct Figure {
  std::string x, y, series;
};
struct Curves {
  std::vector<double> x;
  std::vector<std::pair<std::string, std::vector<double>>> series;  // NaN where a series has no row at an x
};
/// What the papers plot: accuracy (accuracy_mean, accuracy, ...) against the first numeric axis that varies, a line
/// per value of the first other axis that varies (seeds are averaged, not a series).
Figure default_figure(const Table& t, const std::vector<std::string>& axes);
Curves curves_of(const Table& t, const Figure& f);

}  // namespace mechscope::grid
