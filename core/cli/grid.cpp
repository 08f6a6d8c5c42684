// mechscope-cli grid | grid status | grid task | collect: a manifest's tasks run by the local executor (processes on
// this machine) or a Slurm job array, their state read from the task folders and squeue, and the collected table
// (docs/cluster.md). Each task runs its command lines as child processes of this binary, so that a crash or a kill
// of one step still leaves a record saying so.
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <pwd.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cmath>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "core/cli/cli_util.h"
#include "core/cli/commands.h"
#include "core/engine/runtime.h"
#include "core/grid/grid.h"
#include "core/io/hdf5.h"
#include "core/util/files.h"
#include "core/util/json.h"
#include "core/util/sha256.h"
#include "core/util/strings.h"
#include "core/version.h"

namespace mechscope::cli {

using nlohmann::json;
using nlohmann::ordered_json;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t kMaxSmallFile = 4ull << 20;
constexpr int kClaimedElsewhere = 3;  // `grid task`'s exit status when another process on this host runs the task
volatile sig_atomic_t g_signal = 0;
volatile pid_t g_child = 0;
extern "C" void on_grid_signal(int sig) {
  g_signal = sig;
  if (g_child > 0) ::kill(g_child, sig);
}

std::string self_path() { return fs::read_symlink("/proc/self/exe").string(); }

std::string now_iso() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string env_or(const char* name, const std::string& fallback = "") {
  const char* v = std::getenv(name);
  return v ? std::string(v) : fallback;
}

std::string params_text(const ordered_json& p) {
  std::string s;
  for (const auto& [k, v] : p.items()) s += (s.empty() ? "" : " ") + k + "=" + grid::cell_text(v);
  return s;
}

std::string last_line(const std::string& path) {
  std::string text;
  try {
    text = read_file_capped(path, 64ull << 20, "log");
  } catch (...) {
    return "";
  }
  for (;;) {  // the last line, past the option parser's closing hint (the error is the line before it)
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    const size_t nl = text.find_last_of("\r\n");
    std::string line = nl == std::string::npos ? text : text.substr(nl + 1);
    if (line.rfind("Run with --help", 0) != 0 || nl == std::string::npos) return line;
    text.resize(nl);
  }
}

// The CPUs this process may use: Slurm's allocation, else the affinity mask (not every core of the node).
int given_cpus() {
  const int slurm = std::atoi(env_or("SLURM_CPUS_PER_TASK", "0").c_str());
  if (slurm > 0) return slurm;
  cpu_set_t set;
  if (::sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return 1;
}

// Runs `exe` with `args`, stdout and stderr appended to `log` ("": this process's own), `env` added; returns the
// exit status (128 + signal when killed), or with `spawned` the child's pid at once. With `track`, the child is the
// one a signal to this process is forwarded to.
int run_program(const std::string& exe, const std::vector<std::string>& args, const std::string& log,
                const std::vector<std::pair<std::string, std::string>>& env, bool track, pid_t* spawned = nullptr) {
  std::cout.flush();
  std::cerr.flush();
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("cannot start a process: ") + std::strerror(errno));
  if (pid == 0) {
    const int fd = log.empty() ? -1 : ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) ::dup2(fd, 1), ::dup2(fd, 2), ::close(fd);
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    std::vector<std::string> all = {exe};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(exe.c_str(), argv.data());
    ::_exit(127);
  }
  if (spawned) {
    *spawned = pid;
    return 0;
  }
  if (track) g_child = pid;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (track) g_child = 0;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// This binary again (a task, a step of one, a parse check).
int run_self(const std::vector<std::string>& args, const std::string& log,
             const std::vector<std::pair<std::string, std::string>>& env, bool track, pid_t* spawned = nullptr) {
  return run_program(self_path(), args, log, env, track, spawned);
}

struct Submission {
  std::string job;
  std::vector<std::string> ids;
};

std::vector<Submission> read_submissions(const std::string& grid) {
  std::vector<Submission> out;
  const std::string path = grid + "/slurm/submissions.json";
  if (file_kind(path) == "missing") return out;
  const json j = parse_json(read_file_capped(path, 64ull << 20, "grid submissions"));
  for (const auto& s : j) out.push_back({s.at("job").get<std::string>(), s.at("ids").get<std::vector<std::string>>()});
  return out;
}

// Slurm's view: task id -> "PENDING" / "RUNNING" / ... for the array elements of this grid's submissions that
// squeue still lists. Empty without squeue or submissions. (squeue, not sacct: many clusters keep no accounting.)
std::map<std::string, std::string> slurm_states(const std::string& grid, bool* unavailable) {
  std::map<std::string, std::string> out;
  const auto subs = read_submissions(grid);
  if (subs.empty()) return out;
  const passwd* pw = ::getpwuid(::getuid());
  const std::string cmd = "squeue -h -r -o '%i|%T' -u '" + std::string(pw ? pw->pw_name : "root") + "' 2>/dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) {
    *unavailable = true;
    return out;
  }
  std::map<std::string, std::string> element;  // "job_index" -> state
  char line[512];
  while (std::fgets(line, sizeof line, p)) {
    std::string s = trim(line);
    const size_t bar = s.find('|');
    if (bar != std::string::npos) element[s.substr(0, bar)] = s.substr(bar + 1);
  }
  if (::pclose(p) != 0) *unavailable = true;
  for (const auto& sub : subs)
    for (size_t i = 0; i < sub.ids.size(); ++i) {
      auto it = element.find(sub.job + "_" + std::to_string(i));
      if (it != element.end()) out[sub.ids[i]] = it->second;
    }
  return out;
}

struct TaskState {
  grid::State state = grid::State::Missing;
  std::string detail;
};

TaskState task_state(const std::string& folder, const std::string& id, const std::map<std::string, std::string>& slurm) {
  const grid::Record rec = grid::read_record(folder);
  const std::string running = folder + "/running.json";
  if (file_kind(running) == "") {
    json r;
    try {
      r = parse_json(read_file_capped(running, kMaxSmallFile, "task marker"));
    } catch (...) {
    }
    const bool here = r.value("host", "") == host_name();  // its process can be seen from here
    const pid_t pid = r.value("pid", 0);
    if (slurm.count(id) || (here && pid > 0 && ::kill(pid, 0) == 0)) {
      const std::string last = last_line(folder + "/log.txt");  // a training's latest evaluation, e.g. "step 500/4000 ..."
      return {grid::State::Running, "on " + r.value("host", "?") + " since " + r.value("started", "?") +
                                        (last.rfind("step ", 0) == 0 ? "; " + last : "")};
    }
    if (!rec.present)
      return {grid::State::Failed, "stopped without a record (killed, or out of time or memory?) on " + r.value("host", "?")};
  }
  if (rec.complete) return {grid::State::Done, ""};
  auto q = slurm.find(id);
  if (q != slurm.end()) return {q->second == "PENDING" ? grid::State::Queued : grid::State::Running, q->second};
  if (rec.present) return {grid::State::Failed, rec.error};
  return {grid::State::Missing, ""};
}

struct Plan {
  grid::Manifest m;
  std::string folder;
  std::vector<grid::Task> tasks;
  std::vector<TaskState> states;
  bool slurm_unavailable = false;
};

Plan plan_of(const std::string& manifest, const std::string& folder) {
  Plan p{grid::read_manifest(manifest), "", {}, {}, false};
  if (!folder.empty()) p.m.out = fs::absolute(folder).string();  // --folder: the grid's folder elsewhere
  p.folder = grid::grid_folder(p.m);
  p.tasks = grid::expand(p.m);
  const auto slurm = slurm_states(p.folder, &p.slurm_unavailable);
  for (const auto& t : p.tasks) p.states.push_back(task_state(grid::task_folder(p.folder, t.id), t.id, slurm));
  return p;
}

// Writes each task's description (what `grid task` runs) and the manifest's copy into the grid's folder.
void prepare(const Plan& p, const std::vector<size_t>& todo) {
  fs::create_directories(p.folder + "/tasks");
  write_file_atomically(p.folder + "/manifest" + fs::path(p.m.path).extension().string(),
                        read_file_capped(p.m.path, kMaxSmallFile, "grid manifest"));
  for (size_t i : todo) {
    const grid::Task& t = p.tasks[i];
    const std::string folder = grid::task_folder(p.folder, t.id);
    fs::create_directories(folder);
    ordered_json j = {{"id", t.id},           {"group", t.group}, {"grid", p.m.name}, {"params", t.params},
                      {"shard", t.shard},     {"shards", p.m.shards}, {"command", t.argv}, {"then", p.m.then}};
    write_file_atomically(folder + "/task.json", j.dump(2) + "\n");
  }
}

// The first task's command lines parse before anything runs (MECHSCOPE_PARSE_ONLY: main() stops after parsing), so
// a misspelt flag is one error now, not a failed task per grid point. The parser's output goes to `tmp` (the grid's
// folder; a dry run, which creates nothing there, uses the system's temporary folder).
void preflight(const Plan& p, const std::vector<size_t>& todo, const std::string& tmp) {
  if (todo.empty()) return;
  const grid::Task& t = p.tasks[todo.front()];
  std::remove(tmp.c_str());
  for (const auto& step : grid::task_steps(t.argv, p.m.then, p.folder + "/preflight")) {
    if (run_self(step, tmp, {{"MECHSCOPE_PARSE_ONLY", "1"}}, false) != 0) {
      const std::string why = last_line(tmp);
      std::remove(tmp.c_str());
      throw std::invalid_argument(p.m.path + ": the command line `" + join(step, " ") + "` is refused: " + why);
    }
  }
  std::remove(tmp.c_str());
}

std::vector<size_t> to_run(const Plan& p, bool print) {
  std::vector<size_t> todo;
  int done = 0, busy = 0;
  for (size_t i = 0; i < p.tasks.size(); ++i) {
    const grid::State s = p.states[i].state;
    if (s == grid::State::Done) ++done;
    else if (s == grid::State::Running || s == grid::State::Queued) ++busy;
    else todo.push_back(i);
  }
  if (print)
    std::cout << "grid " << p.m.name << ": " << p.tasks.size() << " tasks in " << p.folder << "; " << done
              << " done, " << busy << " queued or running, " << todo.size() << " to run\n";
  return todo;
}

int run_local(const Plan& p, const std::vector<size_t>& todo, int jobs) {
  const int cpus = p.m.resources.cpus;
  if (jobs <= 0) jobs = p.m.resources.jobs > 0 ? p.m.resources.jobs : std::max(1, given_cpus() / cpus);
  std::cout << "local: " << jobs << " at a time, " << cpus << " thread" << (cpus > 1 ? "s" : "") << " each\n";
  std::map<pid_t, size_t> live;
  size_t next = 0, finished = 0;
  int failed = 0, elsewhere = 0;
  const auto t0 = std::chrono::steady_clock::now();
  std::map<pid_t, std::chrono::steady_clock::time_point> started;
  while (next < todo.size() || !live.empty()) {
    while (next < todo.size() && static_cast<int>(live.size()) < jobs) {
      if (grid::read_record(grid::task_folder(p.folder, p.tasks[todo[next]].id)).complete) {  // another runner did it
        std::cout << "[" << ++finished << "/" << todo.size() << "] done elsewhere " << p.tasks[todo[next++]].id << std::endl;
        ++elsewhere;
        continue;
      }
      pid_t pid = 0;
      run_self({"grid", "task", p.folder, p.tasks[todo[next]].id}, "/dev/null",
               {{"MECHSCOPE_NUM_THREADS", std::to_string(cpus)}}, false, &pid);
      live[pid] = todo[next++];
      started[pid] = std::chrono::steady_clock::now();
    }
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      break;
    }
    auto it = live.find(pid);
    if (it == live.end()) continue;
    const grid::Task& t = p.tasks[it->second];
    if (WIFEXITED(status) && WEXITSTATUS(status) == kClaimedElsewhere) {
      std::cout << "[" << ++finished << "/" << todo.size() << "] left   " << t.id << "  (another grid process on this "
                << "host runs it)" << std::endl;
      ++elsewhere;
      live.erase(it);
      continue;
    }
    const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    failed += ok ? 0 : 1;
    std::cout << "[" << ++finished << "/" << todo.size() << "] " << (ok ? "done   " : "FAILED ") << t.id << "  "
              << params_text(t.params) << (t.shard >= 0 ? " shard=" + std::to_string(t.shard) : "") << "  "
              << fmt("%.1f", seconds_since(started[pid])) << " s";
    if (!ok) {
      const grid::Record r = grid::read_record(grid::task_folder(p.folder, t.id));
      std::cout << "\n    " << (r.present ? r.error : WIFSIGNALED(status) ? "killed by signal " + std::to_string(WTERMSIG(status)) + " before writing its record" : "stopped without writing its record");
    }
    std::cout << std::endl;
    live.erase(it);
  }
  std::cout << todo.size() - failed - elsewhere << " of " << todo.size() << " tasks finished in "
            << fmt("%.1f", seconds_since(t0)) << " s";
  if (elsewhere) std::cout << "; " << elsewhere << " left to another grid process";
  if (failed) std::cout << "; " << failed << " failed (their log.txt says why; the same command runs them again)";
  std::cout << "\n";
  return failed ? 1 : 0;
}

std::string sbatch_script(const Plan& p, const std::string& list, const std::string& cli, size_t n) {
  const grid::Resources& r = p.m.resources;
  std::ostringstream s;
  s << "#!/bin/bash\n# written by mechscope-cli grid for " << fs::absolute(p.m.path).string() << "\n";
  s << "#SBATCH --job-name=mechscope-" << p.m.name << "\n";
  s << "#SBATCH --array=0-" << n - 1 << (r.throttle > 0 ? "%" + std::to_string(r.throttle) : "") << "\n";
  s << "#SBATCH --cpus-per-task=" << r.cpus << "\n#SBATCH --ntasks=1\n";
  s << "#SBATCH --output=" << p.folder << "/slurm/%A_%a.out\n";
  if (!r.mem.empty()) s << "#SBATCH --mem=" << r.mem << "\n";
  if (!r.time.empty()) s << "#SBATCH --time=" << r.time << "\n";
  if (!r.partition.empty()) s << "#SBATCH --partition=" << r.partition << "\n";
  if (!r.gres.empty()) s << "#SBATCH --gres=" << r.gres << "\n";
  for (const auto& o : r.sbatch) s << "#SBATCH " << o << "\n";
  s << "set -e\n";
  for (const auto& line : r.setup) s << line << "\n";
  s << "exec '" << cli << "' grid task '" << p.folder << "' --list '" << list << "'\n";
  return s.str();
}

int submit_slurm(const Plan& p, const std::vector<size_t>& todo, const std::string& cli_override) {
  if (todo.empty()) return 0;
  const std::string cli = cli_override.empty() ? self_path() : fs::absolute(cli_override).string();
  for (const std::string& s : {p.folder, cli})
    if (s.find_first_of("'\n") != std::string::npos) throw std::invalid_argument("grid: a path with ' cannot go into a batch script: " + s);
  fs::create_directories(p.folder + "/slurm");
  const std::string stamp = std::to_string(std::time(nullptr)) + "-" + std::to_string(::getpid());
  const std::string list = p.folder + "/slurm/" + stamp + ".tasks", script = p.folder + "/slurm/" + stamp + ".sh";
  std::vector<std::string> ids;
  std::string lines;
  for (size_t i : todo) ids.push_back(p.tasks[i].id), lines += p.tasks[i].id + "\n";
  write_file_atomically(list, lines);
  write_file_atomically(script, sbatch_script(p, list, cli, ids.size()));
  FILE* pipe = ::popen(("sbatch --parsable '" + script + "' 2>&1").c_str(), "r");
  if (!pipe) throw std::runtime_error("grid: cannot run sbatch");
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, pipe)) out += buf;
  const int rc = ::pclose(pipe);
  out = trim(out);
  if (rc != 0 || out.empty() || !std::isdigit(static_cast<unsigned char>(out[0])))
    throw std::runtime_error("grid: sbatch refused the job array (" + script + "): " + out);
  const std::string job = out.substr(0, out.find(';'));
  json subs = json::array();
  const std::string sub_path = p.folder + "/slurm/submissions.json";
  if (file_kind(sub_path) == "") subs = parse_json(read_file_capped(sub_path, 64ull << 20, "grid submissions"));
  subs.push_back({{"job", job}, {"ids", ids}, {"script", script}, {"submitted", now_iso()}});
  write_file_atomically(sub_path, subs.dump(1) + "\n");
  std::cout << "submitted Slurm job " << job << ": an array of " << ids.size() << " tasks (" << script
            << "); `mechscope-cli grid status " << p.m.path << "` follows them\n";
  return 0;
}

void print_status(const Plan& p, bool list_all) {
  std::map<grid::State, int> count;
  for (const auto& s : p.states) ++count[s.state];
  std::cout << "grid " << p.m.name << " (" << p.folder << "): " << p.tasks.size() << " tasks";
  for (auto s : {grid::State::Done, grid::State::Running, grid::State::Queued, grid::State::Failed, grid::State::Missing})
    if (count[s]) std::cout << ", " << count[s] << " " << grid::state_name(s);
  std::cout << "\n";
  if (p.slurm_unavailable) std::cout << "note: squeue did not answer; queued and running Slurm tasks show as missing\n";
  for (size_t i = 0; i < p.tasks.size(); ++i) {
    const TaskState& s = p.states[i];
    if (!list_all && s.state == grid::State::Done) continue;
    const grid::Task& t = p.tasks[i];
    std::cout << "  " << grid::state_name(s.state) << std::string(9 - std::strlen(grid::state_name(s.state)), ' ')
              << t.id << "  " << params_text(t.params) << (t.shard >= 0 ? " shard=" + std::to_string(t.shard) : "")
              << (s.detail.empty() ? "" : "  (" + s.detail + ")") << "\n";
  }
}

// The task `grid task` was asked to run: an id, or (in a Slurm array) line SLURM_ARRAY_TASK_ID of a list.
std::string chosen_task(const GridTaskOptions& o) {
  std::string id = o.id;
  if (!o.list.empty()) {
    const std::string idx = env_or("SLURM_ARRAY_TASK_ID");
    if (idx.empty() || idx.find_first_not_of("0123456789") != std::string::npos)
      throw std::invalid_argument("grid task --list: SLURM_ARRAY_TASK_ID is not set to an index (this runs in a Slurm array)");
    std::vector<std::string> ids;
    for (const auto& l : split(read_file_capped(o.list, 64ull << 20, "task list"), '\n'))
      if (!trim(l).empty()) ids.push_back(trim(l));
    const size_t i = std::stoul(idx);
    if (i >= ids.size())
      throw std::invalid_argument("grid task: index " + idx + " is past the " + std::to_string(ids.size()) + " tasks of " + o.list);
    id = ids[i];
  }
  if (id.size() != 16 || id.find_first_not_of("0123456789abcdef") != std::string::npos)
    throw std::invalid_argument("grid task: '" + id + "' is not a task id (16 hex digits)");
  return id;
}

// One runner per task on a host: a second `grid` on the same machine (two terminals on one manifest) leaves a task
// the first has started. A claim whose process is gone is stale, and so is one from another host, whose processes
// cannot be seen from here (a node that was killed must not block the retry).
bool claim_task(const std::string& folder) {
  for (int attempt = 0; attempt < 3; ++attempt) {
    LockOwner owner;
    if (take_lock(folder + "/claim", folder, true, &owner)) return true;
    if (owner.pid > 0) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // being written this instant
  }
  return false;
}

json slurm_ids() {
  json j = json::object();
  const std::string job = env_or("SLURM_ARRAY_JOB_ID", env_or("SLURM_JOB_ID"));
  if (!job.empty()) j["slurm_job"] = job;
  if (!env_or("SLURM_ARRAY_TASK_ID").empty()) j["slurm_array_task"] = env_or("SLURM_ARRAY_TASK_ID");
  return j;
}

void append_log(const std::string& log, const std::string& line) {
  std::ofstream f(log, std::ios::app);
  f << line << "\n";
}

}  // namespace

int run_grid(const GridOptions& o) {
  if (o.executor != "local" && o.executor != "slurm")
    throw std::invalid_argument("grid: --executor is local or slurm, not '" + o.executor + "'");
  Plan p = plan_of(o.manifest, o.folder);
  const std::vector<size_t> todo = to_run(p, true);
  if (o.dry_run) {
    preflight(p, todo,
              (fs::temp_directory_path() / ("mechscope-preflight-" + std::to_string(getpid()) + ".log")).string());
    for (size_t i : todo)
      for (const auto& step : grid::task_steps(p.tasks[i].argv, p.m.then, grid::task_folder(p.folder, p.tasks[i].id)))
        std::cout << p.tasks[i].id << "  mechscope-cli " << join(step, " ") << "\n";
    return 0;
  }
  prepare(p, todo);
  preflight(p, todo, p.folder + "/preflight.log");
  if (o.executor == "slurm") return submit_slurm(p, todo, o.cli);
  return todo.empty() ? 0 : run_local(p, todo, o.jobs);
}

int run_grid_status(const GridStatusOptions& o) {
  Plan p = plan_of(o.manifest, o.folder);
  if (o.json) {
    json j = {{"grid", p.m.name}, {"folder", p.folder}, {"tasks", json::array()}};
    for (size_t i = 0; i < p.tasks.size(); ++i)
      j["tasks"].push_back({{"id", p.tasks[i].id}, {"params", json::parse(p.tasks[i].params.dump())},
                            {"shard", p.tasks[i].shard}, {"state", grid::state_name(p.states[i].state)},
                            {"detail", p.states[i].detail}});
    std::cout << j.dump(1) << "\n";
  } else {
    print_status(p, o.all);
  }
  if (o.wait) {
    for (;;) {
      bool busy = false;
      for (const auto& s : p.states) busy = busy || s.state == grid::State::Running || s.state == grid::State::Queued;
      if (!busy) break;
      std::this_thread::sleep_for(std::chrono::seconds(2));
      p = plan_of(o.manifest, o.folder);
    }
    print_status(p, false);
  }
  for (const auto& s : p.states)
    if (s.state != grid::State::Done) return 1;
  return 0;
}

namespace {

// The grid's figure, drawn by the workbench binary beside this one (`mechscope --render TABLE`, offscreen): the CLI
// links no Qt. Without the workbench the table is still written, and this says how to draw it later.
void grid_figure(const grid::Manifest& m, const grid::Table& t, const std::string& table, const std::string& prefix,
                 const CollectOptions& o) {
  const std::string gui = executable_dir() + "/mechscope";
  const grid::Figure d = grid::default_figure(t, grid::axis_names(m));
  if ((o.x.empty() && m.figure_x.empty() && d.x.empty()) || (o.y.empty() && m.figure_y.empty() && d.y.empty())) {
    std::cout << "note: no figure: no numeric axis varies or no numeric column to plot (choose them with --x and --y)\n";
    return;
  }
  if (::access(gui.c_str(), X_OK) != 0) {
    std::cout << "note: no figure: the workbench '" << gui << "' is not installed (it draws the grid's figure)\n";
    return;
  }
  const std::string x = o.x.empty() ? m.figure_x : o.x, y = o.y.empty() ? m.figure_y : o.y,
                    series = o.series.empty() ? m.figure_series : o.series;
  for (const std::string ext : {".png", ".svg"}) {
    std::vector<std::string> args = {"--render", table, "--out", prefix + ext};
    for (auto [flag, v] : {std::pair{"--x", x}, {"--y", y}, {"--series", series}})
      if (!v.empty()) args.insert(args.end(), {flag, v});
    if (run_program(gui, args, "", {{"QT_QPA_PLATFORM", "offscreen"}}, false) != 0)
      throw std::runtime_error("collect: the table is written, but its figure failed (" + gui + " " + join(args, " ") + ")");
  }
}

}  // namespace

int run_grid_task(const GridTaskOptions& o) {
  const std::string id = chosen_task(o);
  const std::string folder = grid::task_folder(fs::absolute(o.grid).lexically_normal().string(), id);
  const json task = parse_json(read_file_capped(folder + "/task.json", kMaxSmallFile, "task description"));
  if (env_or("MECHSCOPE_NUM_THREADS").empty()) ::setenv("MECHSCOPE_NUM_THREADS", std::to_string(given_cpus()).c_str(), 1);
  const std::string threads = env_or("MECHSCOPE_NUM_THREADS");
  if (!claim_task(folder)) {
    std::cerr << "grid task " << id << ": another process on this host is running it\n";
    return kClaimedElsewhere;
  }
  if (grid::read_record(folder).complete) {  // another runner finished it between our look and our claim
    std::remove((folder + "/claim").c_str());
    std::cerr << "grid task " << id << ": done by another process\n";
    return kClaimedElsewhere;
  }
  std::remove((folder + "/result.json").c_str());  // a failure being retried
  json rec = {{"format", "mechscope-grid-task"}, {"format_version", 1}, {"id", id}, {"grid", task.at("grid")},
              {"params", task.at("params")}, {"shard", task.at("shard")}, {"host", host_name()},
              {"threads", std::stoi(threads)}, {"started", now_iso()}, {"mechscope_version", kVersion},
              {"steps", json::array()}};
  rec.update(slurm_ids());
  json running = {{"host", host_name()}, {"pid", ::getpid()}, {"started", rec["started"]},
                  {"slurm_job", rec.value("slurm_job", "")}};
  write_file_atomically(folder + "/running.json", running.dump() + "\n");
  std::signal(SIGTERM, on_grid_signal);
  std::signal(SIGINT, on_grid_signal);
  const std::string log = folder + "/log.txt";
  std::string error;
  const auto steps = grid::task_steps(task.at("command").get<std::vector<std::string>>(),
                                      task.at("then").get<std::vector<std::string>>(), folder);
  for (size_t k = 0; k < steps.size() && error.empty(); ++k) {
    append_log(log, "== " + now_iso() + " on " + host_name() + ", " + threads + " threads: mechscope-cli " + join(steps[k], " "));
    const auto t0 = std::chrono::steady_clock::now();
    const int rc = run_self(steps[k], log, {}, true);
    rec["steps"].push_back({{"argv", steps[k]}, {"exit_code", rc}, {"wall_s", seconds_since(t0)}});
    if (g_signal) error = "stopped by signal " + std::to_string(g_signal) + " during `" + steps[k][0] + "`";
    else if (rc != 0) error = "`" + steps[k][0] + "` exited with " + std::to_string(rc) + ": " + last_line(log);
    else if (steps[k][0] == "train") write_file_atomically(folder + "/trained", now_iso() + "\n");
  }
  const std::string csv = folder + "/result.csv";
  if (error.empty() && file_kind(csv) != "") error = "the task wrote no result.csv";
  rec["finished"] = now_iso();
  rec["status"] = error.empty() ? "complete" : "failed";
  if (error.empty()) rec["sha256"] = sha256_file(csv);  // the seal: collect trusts the table only while it matches
  else rec["error"] = error;
  write_file_atomically(folder + "/result.json", rec.dump(1) + "\n");  // the record is the task's last write
  std::remove((folder + "/running.json").c_str());
  std::remove((folder + "/claim").c_str());
  if (!error.empty()) std::cerr << "grid task " << id << ": " << error << "\n";
  return error.empty() ? 0 : 1;
}

int run_collect(const CollectOptions& o) {
  Plan p = plan_of(o.manifest, o.folder);
  std::vector<std::string> open;
  for (size_t i = 0; i < p.tasks.size(); ++i)
    if (p.states[i].state != grid::State::Done)
      open.push_back(p.tasks[i].id + " (" + grid::state_name(p.states[i].state) + ")");
  if (!open.empty() && !o.partial)
    throw std::runtime_error("collect: " + std::to_string(open.size()) + " of " + std::to_string(p.tasks.size()) +
                             " tasks are not done: " + join(std::vector<std::string>(open.begin(), open.begin() + std::min<size_t>(open.size(), 5)), ", ") +
                             (open.size() > 5 ? ", ..." : "") + "; run the grid again, or give --partial");
  const std::string prefix = o.out.empty() ? p.folder + "/collected" : o.out;
  const std::string csv = prefix + ".csv", h5path = prefix + ".h5";
  refuse_overwrite(csv, o.force || o.out.empty());
  refuse_overwrite(h5path, o.force || o.out.empty());
  const grid::Table t = grid::collect(p.m, p.tasks, p.folder);
  json tasks = json::array();
  for (const auto& task : p.tasks) {
    const grid::Record r = grid::read_record(grid::task_folder(p.folder, task.id));
    if (!r.complete) continue;
    json e = {{"id", task.id}, {"host", r.json.value("host", "")}, {"threads", r.json.value("threads", 0)},
              {"finished", r.json.value("finished", "")}, {"sha256", r.json.value("sha256", "")}};
    if (r.json.contains("slurm_job")) e["slurm_job"] = r.json["slurm_job"];
    tasks.push_back(e);
  }
  const json provenance = {{"grid", p.m.name}, {"manifest", p.m.path}, {"axes", grid::axis_names(p.m)},
                           {"manifest_text", read_file_capped(p.m.path, kMaxSmallFile, "grid manifest")},
                           {"collected", now_iso()}, {"mechscope_version", kVersion}, {"tasks", tasks},
                           {"missing", open}};
  write_file_atomically(csv, grid::write_csv(t));
  grid::write_table_h5(h5path, t, provenance);
  std::cout << "collected " << t.rows.size() << " rows from " << tasks.size() << " of " << p.tasks.size()
            << " tasks into " << csv << " and " << h5path << "\n";
  if (!o.no_figure) grid_figure(p.m, t, h5path, prefix, o);
  return 0;
}

}  // namespace mechscope::cli
