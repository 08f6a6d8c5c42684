// Task and analysis registries and the plugin loader (see plugin.h).
#include "core/plugin/plugin.h"

#include "core/engine/runtime.h"

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <map>
#include <filesystem>
#include <mutex>
#include <set>
#include <stdexcept>

#include "core/text/kv_retrieval.h"
#include "core/util/strings.h"

namespace mechscope {

namespace {

class StagingHost : public PluginHost {
 public:
  void add_task(TaskInfo info) override {
    if (info.name.empty() || !info.make) throw std::invalid_argument("add_task: a task needs a name and a factory");
    tasks.push_back(std::move(info));
  }
  void add_analysis(AnalysisInfo info) override {
    if (info.name.empty() || !info.run) throw std::invalid_argument("add_analysis: an analysis needs a name and a function");
    if (info.result_kind != "grid" && info.result_kind != "vector" && info.result_kind != "table")
      throw std::invalid_argument("add_analysis '" + info.name + "': result_kind must be grid, vector or table");
    analyses.push_back(std::move(info));
  }
  void set_description(const std::string& n, const std::string& v, const std::string& a) override {
    name = n;
    version = v;
    about = a;
  }
  std::vector<TaskInfo> tasks;
  std::vector<AnalysisInfo> analyses;
  std::string name, version, about;
};

struct Registry {
  std::recursive_mutex mu;
  std::vector<RegisteredTask> tasks;
  std::deque<RegisteredAnalysis> analyses;  // deque: find_analysis hands out stable pointers
  std::vector<PluginStatus> statuses;
  bool scanned = false;

  Registry() {
    static const std::map<std::string, std::string> about = {
        {"mqar", "multi-query associative recall (zoology)"},
        {"ar", "single-query associative recall (tinylang)"},
        {"position", "position retrieval from a permutation (retrievit)"},
        {"ngram", "n-gram retrieval (retrievit)"},
        {"copy", "copy a string (P2)"},
        {"lookup", "n-gram lookup in a string (P2)"},
        {"atr", "associative tree recall: a terminal's parent head in a random PCFG (tinylang)"}};
    for (const auto& n : builtin_task_names())
      tasks.push_back({TaskInfo{n, about.count(n) ? about.at(n) : "", [](const nlohmann::json& c) { return make_builtin_task(c); }},
                       "built-in"});
    tasks.push_back({TaskInfo{"kv-text", "P4's key-value retrieval prompt as text, through a tokenizer.json (docs/text.md)",
                              [](const nlohmann::json& c) { return make_kv_text_task(c); }},
                     "built-in"});
    StagingHost host;  // the built-in analyses pass the checks a plugin's do
    register_builtin_analyses(host);
    for (auto& a : host.analyses) analyses.push_back({std::move(a), "built-in"});
  }
};

Registry& reg() {
  static Registry r;
  return r;
}

}  // namespace

PluginStatus load_plugin(const std::string& path) {
  Registry& r = reg();
  std::lock_guard<std::recursive_mutex> lock(r.mu);
  PluginStatus st;
  st.path = path;
  auto fail = [&](const std::string& why) {
    st.error = why;
    r.statuses.push_back(st);
    return st;
  };
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) return fail(std::string("cannot load: ") + ::dlerror());
  using VersionFn = int (*)();
  using RegisterFn = void (*)(PluginHost&);
  auto version = reinterpret_cast<VersionFn>(::dlsym(handle, "mechscope_plugin_api_version"));
  auto registerer = reinterpret_cast<RegisterFn>(::dlsym(handle, "mechscope_plugin_register"));
  if (!version && !registerer &&
      (::dlsym(handle, "qt_plugin_query_metadata_v2") || ::dlsym(handle, "qt_plugin_query_metadata"))) {
    // A GUI panel plugin only (app/panel_plugin.h): nothing for core; the workbench loads its panel.
    st.panels_only = true;
    st.name = std::filesystem::path(path).stem().string();
    r.statuses.push_back(st);
    return st;
  }
  if (!version || !registerer) {
    ::dlclose(handle);
    return fail("not a MechScope plugin: it lacks the symbol " +
                std::string(!version ? "mechscope_plugin_api_version" : "mechscope_plugin_register") +
                " (define the entry points with MECHSCOPE_PLUGIN from core/plugin/plugin.h)");
  }
  const int v = version();
  if (v != MECHSCOPE_PLUGIN_API_VERSION) {
    ::dlclose(handle);
    return fail("built against plugin API version " + std::to_string(v) + "; this MechScope provides version " +
                std::to_string(MECHSCOPE_PLUGIN_API_VERSION) + ": rebuild it against this SDK");
  }
  StagingHost host;
  try {
    registerer(host);
  } catch (const std::exception& e) {
    return fail(std::string("its register function threw: ") + e.what());  // nothing it added is kept
  } catch (...) {
    return fail("its register function threw a non-standard exception");
  }
  // Names must be new, among themselves and against everything registered.
  std::set<std::string> task_names_seen, analysis_names_seen;
  for (const auto& t : r.tasks) task_names_seen.insert(t.info.name);
  for (const auto& a : r.analyses) analysis_names_seen.insert(a.info.name);
  for (const auto& t : host.tasks)
    if (!task_names_seen.insert(t.name).second) return fail("task '" + t.name + "' is already registered");
  for (const auto& a : host.analyses)
    if (!analysis_names_seen.insert(a.name).second) return fail("analysis '" + a.name + "' is already registered");
  for (auto& t : host.tasks) {
    st.provides.push_back("task " + t.name);
    r.tasks.push_back({std::move(t), path});
  }
  for (auto& a : host.analyses) {
    st.provides.push_back("analysis " + a.name);
    r.analyses.push_back({std::move(a), path});
  }
  st.loaded = true;
  st.name = host.name.empty() ? std::filesystem::path(path).stem().string() : host.name;
  st.version = host.version;
  st.about = host.about;
  r.statuses.push_back(st);
  return st;  // the library stays loaded for the life of the process
}

const std::vector<PluginStatus>& load_plugins() {
  Registry& r = reg();
  std::lock_guard<std::recursive_mutex> lock(r.mu);
  if (r.scanned) return r.statuses;
  r.scanned = true;
  std::vector<std::string> entries = {executable_dir() + "/../lib/mechscope/plugins"};
  if (const char* env = std::getenv("MECHSCOPE_PLUGIN_PATH"))
    for (const auto& e : split(env, ':'))
      if (!e.empty()) entries.push_back(e);
  std::set<std::string> done;
  for (const auto& e : entries) {
    std::error_code ec;
    std::vector<std::string> files;
    if (std::filesystem::is_directory(e, ec)) {
      for (const auto& f : std::filesystem::directory_iterator(e, ec))
        if (f.path().extension() == ".so") files.push_back(f.path().string());
      std::sort(files.begin(), files.end());
    } else if (std::filesystem::exists(e, ec)) {
      files.push_back(e);
    } else if (e != entries.front()) {
      PluginStatus st;
      st.path = e;
      st.error = "no such file or folder (from MECHSCOPE_PLUGIN_PATH)";
      r.statuses.push_back(st);
    }
    for (const auto& f : files) {
      const std::string canon = std::filesystem::weakly_canonical(f, ec).string();
      if (done.insert(canon).second) load_plugin(f);
    }
  }
  return r.statuses;
}

std::vector<RegisteredTask> registered_tasks() {
  std::lock_guard<std::recursive_mutex> lock(reg().mu);
  return reg().tasks;
}

std::vector<RegisteredAnalysis> registered_analyses() {
  std::lock_guard<std::recursive_mutex> lock(reg().mu);
  return {reg().analyses.begin(), reg().analyses.end()};
}

const RegisteredAnalysis* find_analysis(const std::string& name) {
  std::lock_guard<std::recursive_mutex> lock(reg().mu);
  for (const auto& a : reg().analyses)
    if (a.info.name == name) return &a;  // entries are never removed
  return nullptr;
}

const RegisteredAnalysis& require_analysis(const std::string& name) {
  if (const RegisteredAnalysis* a = find_analysis(name)) return *a;
  std::vector<std::string> all;
  for (const auto& a : registered_analyses()) all.push_back(a.info.name);
  throw std::invalid_argument("unknown analysis '" + name + "'; expected one of " + join(all, ", ") +
                              closest_matches_hint(name, all));
}

ResultsFile run_analysis(const RegisteredAnalysis& a, const AnalysisContext& ctx) {
  if (a.info.options.empty()) return a.info.run(ctx);
  nlohmann::json opts = ctx.options.is_null() ? nlohmann::json::object() : ctx.options;
  if (!opts.is_object()) throw std::invalid_argument(a.info.name + ": options must be a JSON object, found " + opts.dump());
  std::vector<std::string> names;
  for (const auto& o : a.info.options) names.push_back(o.name);
  for (const auto& item : opts.items())
    if (std::find(names.begin(), names.end(), item.key()) == names.end())
      throw std::invalid_argument(a.info.name + ": unknown option '" + item.key() + "'; its options: " + join(names, ", ") +
                                  closest_matches_hint(item.key(), names));
  for (const auto& o : a.info.options)
    if (!opts.contains(o.name)) opts[o.name] = o.default_value;
  return a.info.run(AnalysisContext{ctx.model, ctx.task, ctx.batch, ctx.vocab, opts, ctx.seed, ctx.progress, ctx.cancel,
                                    ctx.training});
}

std::vector<std::string> task_names() {
  std::vector<std::string> out;
  for (const auto& t : registered_tasks()) out.push_back(t.info.name);
  return out;
}

std::unique_ptr<Task> make_task(const nlohmann::json& config) {
  if (!config.is_object() || !config.contains("task") || !config["task"].is_string())
    throw std::invalid_argument("task config: expected {\"task\": NAME, ...}; tasks: " + join(task_names(), ", "));
  const std::string name = config["task"].get<std::string>();
  TaskFactory make;
  {
    std::lock_guard<std::recursive_mutex> lock(reg().mu);
    for (const auto& t : reg().tasks)
      if (t.info.name == name) make = t.info.make;
  }
  if (!make) {
    auto names = task_names();
    throw std::invalid_argument("unknown task '" + name + "'; tasks: " + join(names, ", ") +
                                closest_matches_hint(name, names));
  }
  return make(config);
}

}  // namespace mechscope
