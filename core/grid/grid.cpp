// Grids: manifests, their tasks and ids, task records and the collected table (grid.h, docs/cluster.md).
#include "core/grid/grid.h"

#include <algorithm>
#include <filesystem>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>

#define TOML_SHARED_LIB 1  // Debian's libtomlplusplus.so (CMakeLists.txt)
#include <toml++/toml.h>

#include "core/util/files.h"
#include "core/util/json.h"
#include "core/util/sha256.h"
#include "core/util/strings.h"

namespace mechscope::grid {

using nlohmann::json;
using nlohmann::ordered_json;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t kMaxManifestBytes = 4ull << 20;
constexpr uint64_t kMaxRecordBytes = 4ull << 20;
constexpr uint64_t kMaxTableBytes = 256ull << 20;
constexpr size_t kMaxTasks = 100000;

const std::set<std::string> kCommands = {"train", "eval", "analyze", "score"};
// Flags whose values the grid chooses for every task (its outputs, resuming, progress).
const std::set<std::string> kGridFlags = {"--out", "-o", "--csv", "--force", "--resume", "--quiet", "--aligned-csv",
                                          "--shard"};
const char* const kPrefixes[][2] = {{"set.", "--set"}, {"task_set.", "--task-set"}, {"train_set.", "--train-set"},
                                    {"option.", "--option"}};

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

[[noreturn]] void bad(const std::string& path, const std::string& msg) {
  throw std::invalid_argument(path + ": " + msg);
}

std::vector<std::string> string_list(const ordered_json& j, const std::string& key, const std::string& path) {
  if (!j.is_array()) bad(path, "\"" + key + "\" must be a list of strings");
  std::vector<std::string> out;
  for (const auto& v : j) {
    if (!v.is_string()) bad(path, "\"" + key + "\" must be a list of strings; found " + v.dump());
    out.push_back(v.get<std::string>());
  }
  return out;
}

// A command line: a list of words, or one string split at spaces (a value with a space, or quotes, needs the list).
std::vector<std::string> command_words(const ordered_json& j, const std::string& key, const std::string& path) {
  if (!j.is_string()) return string_list(j, key, path);
  const std::string text = j.get<std::string>();
  if (text.find_first_of("\"'\\") != std::string::npos)
    bad(path, "\"" + key + "\": quotes and backslashes are not read in a one-string command; write it as a list of "
              "words, e.g. [\"train\", \"--task\", \"mqar\"]");
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

void check_command(const std::vector<std::string>& cmd, const std::string& key, const std::string& path) {
  if (cmd.empty()) bad(path, "\"" + key + "\" is empty; it starts with train, eval, analyze or score");
  if (!kCommands.count(cmd[0]))
    bad(path, "\"" + key + "\": '" + cmd[0] + "' cannot run in a grid (train, eval, analyze or score)");
  for (const auto& a : cmd) {
    const std::string flag = a.substr(0, a.find('='));
    if (kGridFlags.count(flag))
      bad(path, "\"" + key + "\": " + flag + " is chosen by the grid for each task (its outputs are in the grid's "
                "folder); remove it");
  }
}

Resources parse_resources(const ordered_json& r, const std::string& path) {
  if (!r.is_object()) bad(path, "\"resources\" must be an object");
  Resources res;
  for (const auto& [k, v] : r.items()) {
    auto need_int = [&](int lo, int hi) {
      if (!v.is_number_integer() || v.get<int64_t>() < lo || v.get<int64_t>() > hi)
        bad(path, "resources." + k + " must be an integer in " + std::to_string(lo) + ".." + std::to_string(hi));
      return v.get<int>();
    };
    auto need_str = [&] {
      if (!v.is_string()) bad(path, "resources." + k + " must be a string");
      return v.get<std::string>();
    };
    if (k == "cpus") res.cpus = need_int(1, 4096);
    else if (k == "jobs") res.jobs = need_int(0, 4096);
    else if (k == "throttle") res.throttle = need_int(0, 100000);
    else if (k == "mem") res.mem = need_str();
    else if (k == "time") res.time = need_str();
    else if (k == "partition") res.partition = need_str();
    else if (k == "gres") res.gres = need_str();
    else if (k == "sbatch") res.sbatch = string_list(v, "resources.sbatch", path);
    else if (k == "setup") res.setup = string_list(v, "resources.setup", path);
    else bad(path, "unknown key resources." + k + " (cpus, jobs, mem, time, partition, gres, throttle, sbatch, setup)");
  }
  for (const std::string* s : {&res.mem, &res.time, &res.partition, &res.gres})
    if (s->find_first_of("\n\r\"'`$\\ ") != std::string::npos)
      bad(path, "resources: '" + *s + "' holds a character a batch script cannot take");
  for (const auto& s : res.sbatch)
    if (s.rfind("--", 0) != 0 || s.find_first_of("\n\r") != std::string::npos)
      bad(path, "resources.sbatch: '" + s + "' is not one sbatch option (--name=value)");
  return res;
}

void check_key(const std::string& key, const std::string& path) {
  static const std::regex name(R"(^[a-z][a-z0-9_-]*(\.[A-Za-z0-9_][A-Za-z0-9_.]*)?$)");
  if (!std::regex_match(key, name)) bad(path, "axis '" + key + "' is not a flag name (e.g. seed, preset, set.d_model)");
  if (key.find('.') != std::string::npos) {
    bool known = false;
    for (const auto& p : kPrefixes) known = known || key.rfind(p[0], 0) == 0;
    if (!known) bad(path, "axis '" + key + "': a dotted axis starts with set., task_set., train_set. or option.");
  } else if (kGridFlags.count("--" + key) || key == "o") {
    bad(path, "axis '" + key + "' is chosen by the grid" + (key == "shard" ? " (give \"shards\": N)" : ""));
  }
}

bool scalar(const ordered_json& v) { return v.is_primitive() && !v.is_null(); }

// An axis: a flag name and its values, each a string, number or boolean, or a bundle of flags set together (an
// object of flag name -> value, with an optional "label" for the table), e.g. one model family's settings.
void check_axis(const std::string& key, const ordered_json& values, const std::string& path) {
  const bool bundle_axis = !values.empty() && values.is_array() && values[0].is_object();
  if (!bundle_axis) check_key(key, path);
  if (!values.is_array() || values.empty()) bad(path, "axis '" + key + "' must be a non-empty list of values");
  std::set<std::string> seen;
  for (const auto& v : values) {
    if (v.is_object() != bundle_axis) bad(path, "axis '" + key + "' mixes bundles (objects) and single values");
    if (v.is_object()) {
      if (v.empty()) bad(path, "axis '" + key + "': an empty bundle");
      for (const auto& [k, x] : v.items()) {
        if (k == "label") {
          if (!x.is_string() || x.get<std::string>().empty()) bad(path, "axis '" + key + "': a bundle's label is a string");
          continue;
        }
        check_key(k, path);
        if (!scalar(x)) bad(path, "axis '" + key + "': " + k + " = " + x.dump() + " is not a string, number or boolean");
      }
    } else if (!scalar(v)) {
      bad(path, "axis '" + key + "': " + v.dump() + " is not a string, number or boolean");
    }
    const std::string shown = v.is_object() && v.contains("label") ? v["label"].dump() : v.dump();
    if (!seen.insert(shown).second) bad(path, "axis '" + key + "' lists " + shown + " twice");
  }
}

std::string hash_of(const Manifest& m, const ordered_json& params, int64_t shard) {
  json canon = {{"command", m.command}, {"then", m.then}, {"params", json::parse(params.dump())}};  // keys sorted
  if (shard >= 0) canon["shard"] = std::to_string(shard) + "/" + std::to_string(m.shards);
  return sha256_hex(canon.dump()).substr(0, 16);
}

}  // namespace

Manifest parse_manifest(const ordered_json& j, const std::string& path) {
  if (!j.is_object()) bad(path, "a manifest is an object with \"command\" and \"axes\"");
  Manifest m;
  m.path = path;
  m.name = fs::path(path).stem().string();
  bool has_then = false;
  for (const auto& [k, v] : j.items()) {
    if (k == "name") {
      if (!v.is_string() || !std::regex_match(v.get<std::string>(), std::regex("^[A-Za-z0-9_.-]{1,64}$")))
        bad(path, "\"name\" must be 1-64 letters, digits, '.', '_' or '-'");
      m.name = v.get<std::string>();
    } else if (k == "out") {
      if (!v.is_string() || v.get<std::string>().empty()) bad(path, "\"out\" must be a folder name");
      m.out = v.get<std::string>();
    } else if (k == "command") {
      m.command = command_words(v, "command", path);
    } else if (k == "then") {
      m.then = command_words(v, "then", path);
      has_then = true;
    } else if (k == "axes") {
      if (!v.is_object()) bad(path, "\"axes\" must be an object of flag name -> list of values");
      for (const auto& [ak, av] : v.items()) {
        check_axis(ak, av, path);
        std::vector<json> values;
        for (const auto& x : av) values.push_back(json::parse(x.dump()));  // a bundle's flags in key order
        m.axes.emplace_back(ak, std::move(values));
      }
    } else if (k == "shards") {
      if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > 4096)
        bad(path, "\"shards\" must be an integer in 1..4096");
      m.shards = v.get<int64_t>();
    } else if (k == "resources") {
      m.resources = parse_resources(v, path);
    } else if (k == "figure") {
      if (!v.is_object()) bad(path, "\"figure\" must be an object with x, y and series");
      for (const auto& [fk, fv] : v.items()) {
        if (!fv.is_string()) bad(path, "figure." + fk + " must be a column name");
        if (fk == "x") m.figure_x = fv.get<std::string>();
        else if (fk == "y") m.figure_y = fv.get<std::string>();
        else if (fk == "series") m.figure_series = fv.get<std::string>();
        else bad(path, "unknown key figure." + fk + " (x, y, series)");
      }
    } else {
      bad(path, "unknown key \"" + k + "\" (name, out, command, then, axes, shards, resources, figure)");
    }
  }
  check_command(m.command, "command", path);
  if (m.command[0] == "train") {
    if (!has_then) m.then = {"eval"};
    check_command(m.then, "then", path);
    if (m.then[0] == "train") bad(path, "\"then\" runs on the trained checkpoint: eval, analyze or score");
    for (const auto& a : m.then)
      if (a == "-c" || a == "--checkpoint") bad(path, "\"then\": the grid passes the trained checkpoint; remove " + a);
  } else if (has_then) {
    bad(path, "\"then\" follows a training only; this grid's command is " + m.command[0]);
  }
  if (m.shards > 1 && !(m.command.size() > 1 && m.command[0] == "analyze" && m.command[1] == "ablation"))
    bad(path, "\"shards\": only an `analyze ablation` sweep splits into shards");
  if (m.out.empty()) m.out = m.name + ".grid";
  return m;
}

Manifest read_manifest(const std::string& path) {
  const std::string text = read_file_capped(path, kMaxManifestBytes, "grid manifest");
  ordered_json j;
  if (ends_with(path, ".toml")) {
    try {
      toml::table t = toml::parse(text, path);
      std::ostringstream s;
      s << toml::json_formatter{t};
      j = ordered_json::parse(s.str());
    } catch (const toml::parse_error& e) {
      const auto& at = e.source().begin;
      bad(path, "TOML error at line " + std::to_string(at.line) + ", column " + std::to_string(at.column) + ": " +
                    std::string(e.description()));
    }
  } else if (ends_with(path, ".json")) {
    if (json_nesting_depth(text, kMaxJsonDepth + 1) > kMaxJsonDepth)
      bad(path, "JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    try {
      j = ordered_json::parse(text);
    } catch (const std::exception& e) {
      bad(path, std::string("not valid JSON: ") + e.what());
    }
  } else {
    bad(path, "a grid manifest is a .json or .toml file");
  }
  return parse_manifest(j, path);
}

std::vector<std::string> axis_flags(const std::string& key, const json& value, int64_t shards) {
  if (value.is_object()) {  // a bundle: every flag it sets, in its order
    std::vector<std::string> out;
    for (const auto& [k, v] : value.items())
      if (k != "label")
        for (auto& f : axis_flags(k, v, shards)) out.push_back(f);
    return out;
  }
  if (key == "shard") return {"--shard", cell_text(value) + "/" + std::to_string(shards)};
  for (const auto& p : kPrefixes)
    if (key.rfind(p[0], 0) == 0) return {p[1], key.substr(std::string(p[0]).size()) + "=" + cell_text(value)};
  std::string flag = "--" + key;
  std::replace(flag.begin(), flag.end(), '_', '-');
  if (value.is_boolean()) return value.get<bool>() ? std::vector<std::string>{flag} : std::vector<std::string>{};
  return {flag, cell_text(value)};
}

std::vector<Task> expand(const Manifest& m) {
  size_t total = static_cast<size_t>(m.shards);
  for (const auto& [k, vs] : m.axes) {
    total *= vs.size();
    if (total > kMaxTasks) bad(m.path, "the grid has more than " + std::to_string(kMaxTasks) + " tasks");
  }
  std::vector<Task> tasks;
  std::vector<size_t> at(m.axes.size(), 0);
  for (size_t n = 0; n < total / m.shards; ++n) {
    Task base;
    base.params = ordered_json::object();
    base.argv = m.command;
    for (size_t a = 0; a < m.axes.size(); ++a) {
      const json& v = m.axes[a].second[at[a]];
      base.params[m.axes[a].first] = v;
      for (auto& f : axis_flags(m.axes[a].first, v, m.shards)) base.argv.push_back(f);
    }
    base.group = hash_of(m, base.params, -1);
    for (int64_t s = 0; s < m.shards; ++s) {
      Task t = base;
      if (m.shards > 1) {
        t.shard = s;
        for (auto& f : axis_flags("shard", s, m.shards)) t.argv.push_back(f);
        t.id = hash_of(m, t.params, s);
      } else {
        t.id = t.group;
      }
      tasks.push_back(std::move(t));
    }
    for (size_t a = m.axes.size(); a-- > 0;) {  // odometer: the last axis varies fastest
      if (++at[a] < m.axes[a].second.size()) break;
      at[a] = 0;
    }
  }
  std::set<std::string> ids;
  for (const auto& t : tasks)
    if (!ids.insert(t.id).second) bad(m.path, "two tasks have the same parameters (id " + t.id + ")");
  return tasks;
}

std::vector<std::string> axis_names(const Manifest& m) {
  std::vector<std::string> names;
  for (const auto& [k, v] : m.axes) names.push_back(k);
  return names;
}

std::string grid_folder(const Manifest& m) {
  fs::path out(m.out);
  if (out.is_relative()) out = fs::absolute(fs::path(m.path)).parent_path() / out;
  return out.lexically_normal().string();
}

std::string task_folder(const std::string& grid, const std::string& id) { return grid + "/tasks/" + id; }

std::vector<std::vector<std::string>> task_steps(const std::vector<std::string>& command,
                                                 const std::vector<std::string>& then, const std::string& folder) {
  const std::string csv = folder + "/result.csv", h5 = folder + "/result.h5";
  auto outputs = [&](std::vector<std::string> cmd) {
    for (const std::string& a : {std::string("--csv"), csv, std::string("--force")}) cmd.push_back(a);
    if (cmd[0] == "analyze")
      for (const std::string& a : {std::string("--out"), h5, std::string("--quiet")}) cmd.push_back(a);
    return cmd;
  };
  if (command.empty()) throw std::invalid_argument("a task without a command");
  if (command[0] != "train") return {outputs(command)};
  const std::string model = folder + "/model.h5";
  std::vector<std::vector<std::string>> steps;
  if (!fs::exists(folder + "/trained")) {
    std::vector<std::string> train = command;
    if (fs::exists(model)) {
      train = {"train", "--resume", model};  // a killed training continues from its last checkpoint
    } else {
      train.push_back("--out");
      train.push_back(model);
    }
    steps.push_back(train);
  }
  std::vector<std::string> evaluate = then;
  evaluate.push_back("-c");
  evaluate.push_back(model);
  steps.push_back(outputs(evaluate));
  return steps;
}

const char* state_name(State s) {
  switch (s) {
    case State::Missing: return "missing";
    case State::Queued: return "queued";
    case State::Running: return "running";
    case State::Done: return "done";
    case State::Failed: return "failed";
  }
  return "?";
}

Record read_record(const std::string& folder) {
  Record r;
  const std::string path = folder + "/result.json";
  if (file_kind(path) == "missing") return r;
  r.present = true;
  try {
    r.json = parse_json(read_file_capped(path, kMaxRecordBytes, "task record"));
  } catch (const std::exception& e) {
    r.error = std::string("unreadable record: ") + e.what();
    return r;
  }
  if (!r.json.is_object() || r.json.value("format", "") != "mechscope-grid-task") {
    r.error = "result.json is not a MechScope task record";
    return r;
  }
  const std::string status = r.json.value("status", "");
  if (status != "complete") {
    r.error = r.json.value("error", "failed");
    return r;
  }
  const std::string sealed = r.json.value("sha256", "");
  const std::string csv = folder + "/result.csv";
  if (file_kind(csv) != "" || sha256_file(csv) != sealed) {
    r.error = "result.csv does not match the record's seal (changed or removed after the task finished)";
    return r;
  }
  r.complete = true;
  return r;
}

Table read_csv(const std::string& text, const std::string& where) {
  Table t;
  std::vector<std::vector<std::string>> lines;
  std::vector<std::string> row;
  std::string cell;
  bool quoted = false, any = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') cell += '"', ++i;
      else if (c == '"') quoted = false;
      else cell += c;
    } else if (c == '"') {
      quoted = any = true;
    } else if (c == ',') {
      row.push_back(cell), cell.clear(), any = true;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      if (any || !cell.empty()) row.push_back(cell), lines.push_back(row);
      row.clear(), cell.clear(), any = false;
    } else {
      cell += c, any = true;
    }
  }
  if (quoted) throw std::runtime_error(where + ": an unterminated quoted cell");
  if (any || !cell.empty()) row.push_back(cell), lines.push_back(row);
  if (lines.empty()) throw std::runtime_error(where + ": no header line");
  t.columns = lines[0];
  for (size_t i = 1; i < lines.size(); ++i) {
    if (lines[i].size() != t.columns.size())
      throw std::runtime_error(where + ": line " + std::to_string(i + 1) + " has " + std::to_string(lines[i].size()) +
                               " cells, the header " + std::to_string(t.columns.size()));
    t.rows.push_back(lines[i]);
  }
  return t;
}

std::string write_csv(const Table& t) {
  std::ostringstream s;
  for (size_t c = 0; c < t.columns.size(); ++c) s << (c ? "," : "") << csv_quote(t.columns[c]);
  s << "\n";
  for (const auto& r : t.rows) {
    for (size_t c = 0; c < r.size(); ++c) s << (c ? "," : "") << csv_quote(r[c]);
    s << "\n";
  }
  return s.str();
}

Table collect(const Manifest& m, const std::vector<Task>& tasks, const std::string& grid) {
  Table out;
  out.columns.push_back("task");
  for (const auto& [k, v] : m.axes) out.columns.push_back(k);
  const size_t fixed = out.columns.size();
  for (size_t i = 0; i < tasks.size(); i += m.shards) {
    std::vector<Table> parts;
    for (int64_t s = 0; s < m.shards; ++s) {
      const std::string folder = task_folder(grid, tasks[i + s].id);
      if (!read_record(folder).complete) break;
      parts.push_back(read_csv(read_file_capped(folder + "/result.csv", kMaxTableBytes, "task table"),
                               folder + "/result.csv"));
    }
    if (parts.size() != static_cast<size_t>(m.shards)) continue;  // not done: the caller reports it
    const Task& t = tasks[i];
    for (const auto& part : parts) {
      std::vector<size_t> where;
      for (const auto& c : part.columns) {
        auto it = std::find(out.columns.begin() + fixed, out.columns.end(), c);
        if (it == out.columns.end()) {
          out.columns.push_back(c);
          for (auto& r : out.rows) r.push_back("");
          it = out.columns.end() - 1;
        }
        where.push_back(static_cast<size_t>(it - out.columns.begin()));
      }
      for (const auto& pr : part.rows) {
        std::vector<std::string> row(out.columns.size());
        row[0] = t.group;
        size_t a = 1;
        for (const auto& [k, v] : t.params.items()) row[a++] = cell_text(v);
        for (size_t c = 0; c < pr.size(); ++c) row[where[c]] = pr[c];
        out.rows.push_back(std::move(row));
      }
    }
  }
  return out;
}

}  // namespace mechscope::grid
