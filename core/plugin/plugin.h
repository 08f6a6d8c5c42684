// The MechScope plugin SDK (API version 2): the one header a plugin includes. A plugin is a shared library that
// exports two C symbols (write them with MECHSCOPE_PLUGIN below):
//   int mechscope_plugin_api_version();                       -> MECHSCOPE_PLUGIN_API_VERSION it was built with
//   void mechscope_plugin_register(mechscope::PluginHost&);   -> adds tasks and analyses; may throw
// Core loads plugins with dlopen (from the install's lib/mechscope/plugins and $MECHSCOPE_PLUGIN_PATH), so the
// CLI and the GUI see the same ones. Tasks and analyses go into the same registries the built-ins use.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/io/results.h"
#include "core/tasks/task.h"

// The version changes whenever a type a plugin can reach through the SDK's headers changes its layout or a
// signature (2: HeadSweepResult gained per-row labels for head groups; 3: the model's mixers became one interface,
// core/model/mixer.h, with LayerPrefix holding hook tensors by name and head_hook_name taking the model).
#define MECHSCOPE_PLUGIN_API_VERSION 3

namespace mechscope {

class LanguageModel;

/// What an analysis gets: the model, its task (may be null for a bare model), the examples drawn from it (see
/// AnalysisInfo::input), and the user's options (`mechscope-cli analyze NAME --option key=value`, or the flags of
/// a built-in analysis, with the analysis's declared defaults filled in).
struct AnalysisContext {
  LanguageModel& model;
  const Task* task;
  const Batch& batch;
  const std::vector<std::string>& vocab;
  nlohmann::json options;
  uint64_t seed = 0;                                             ///< the examples' seed (corruptions use seed + 1)
  std::function<void(double fraction, const std::string& what)> progress;  ///< optional
  const std::atomic<bool>* cancel = nullptr;                     ///< optional: stop when set (throw Cancelled)
  const std::map<std::string, at::Tensor>* training = nullptr;   ///< the checkpoint's /training history, if any
};

/// What a front-end prepares before calling an analysis.
enum class AnalysisInput {
  Examples,  ///< `examples` task examples drawn with `seed` (or the typed tokens as one example)
  Sequence,  ///< one sequence: the typed tokens, or task example `example` (default: `seed`) at its own length
  None       ///< nothing: the analysis reads the model (and task) only
};

/// An option an analysis reads from AnalysisContext::options: its name, its default (used when absent) and one line
/// for listings. An analysis that declares options refuses any other key by name.
struct AnalysisOption {
  std::string name;
  nlohmann::json default_value;
  std::string description;
};

struct AnalysisInfo {
  std::string name;          ///< e.g. "attention-rollout"
  std::string description;   ///< one line for `mechscope-cli plugins` and the GUI
  std::string result_kind;   ///< "grid" (2-D tensors), "vector" (1-D) or "table": how the GUI should draw it
  bool needs_task = true;    ///< false: runs on typed tokens too
  std::function<ResultsFile(const AnalysisContext&)> run;
  AnalysisInput input = AnalysisInput::Examples;
  std::vector<AnalysisOption> options;  ///< empty: any options (passed through unchecked)
};

using TaskFactory = std::function<std::unique_ptr<Task>(const nlohmann::json& config)>;

struct TaskInfo {
  std::string name, description;
  TaskFactory make;
};

/// The registries, as a plugin's register function sees them.
class PluginHost {
 public:
  virtual ~PluginHost() = default;
  /// Names must be new (a built-in or another plugin's name is an error).
  virtual void add_task(TaskInfo info) = 0;
  virtual void add_analysis(AnalysisInfo info) = 0;
  /// Shown by `mechscope-cli plugins`.
  virtual void set_description(const std::string& name, const std::string& version, const std::string& about) = 0;
};

// ---- used by core, the CLI and the GUI

struct RegisteredTask {
  TaskInfo info;
  std::string origin;  ///< "built-in" or the plugin's file
};
struct RegisteredAnalysis {
  AnalysisInfo info;
  std::string origin;  ///< "built-in" or the plugin's file
};
struct PluginStatus {
  std::string path;
  bool loaded = false;
  std::string name, version, about;
  std::string error;                   ///< why it was skipped
  std::vector<std::string> provides;   ///< "task mqar", "analysis attention-rollout"
  bool panels_only = false;            ///< a Qt panel plugin without core entry points: the workbench loads it
};

/// Loads every plugin found (once per process; later calls return the first result): the folder
/// <executable>/../lib/mechscope/plugins, then each entry of $MECHSCOPE_PLUGIN_PATH (folders or .so files,
/// ':'-separated). A plugin with another API version, without the symbols, or whose register function throws is
/// skipped with its reason, and none of its registrations stay.
const std::vector<PluginStatus>& load_plugins();
/// Loads one file now (tests); returns its status (also added to the list load_plugins reports).
PluginStatus load_plugin(const std::string& path);
std::vector<RegisteredTask> registered_tasks();
std::vector<RegisteredAnalysis> registered_analyses();
/// The analysis named, or null.
const RegisteredAnalysis* find_analysis(const std::string& name);
/// The analysis named; throws std::invalid_argument listing every registered analysis (with close matches).
const RegisteredAnalysis& require_analysis(const std::string& name);
/// Runs a registered analysis: fills in its declared option defaults, refuses options it does not declare (by
/// name), and calls it.
ResultsFile run_analysis(const RegisteredAnalysis& analysis, const AnalysisContext& context);
/// Core's own analyses (attention, head-scores, ablation, knockout, patching, attribution, dla, embeddings,
/// logit-lens), registered first, as the built-in tasks are (core/session/analyses/).
void register_builtin_analyses(PluginHost& host);

}  // namespace mechscope

/// Defines the two entry points: MECHSCOPE_PLUGIN { host.add_task(...); }
#define MECHSCOPE_PLUGIN                                                                                     \
  extern "C" __attribute__((visibility("default"))) int mechscope_plugin_api_version() {                     \
    return MECHSCOPE_PLUGIN_API_VERSION;                                                                     \
  }                                                                                                          \
  static void mechscope_plugin_register_impl(mechscope::PluginHost& host);                                  \
  extern "C" __attribute__((visibility("default"))) void mechscope_plugin_register(mechscope::PluginHost& host) { \
    mechscope_plugin_register_impl(host);                                                                    \
  }                                                                                                          \
  static void mechscope_plugin_register_impl(mechscope::PluginHost& host)
