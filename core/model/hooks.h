// Hook points (spec §2, TransformerLens grammar): named places in the forward pass where a caller may
// read (cache) or replace an activation. A plain forward passes no context and pays nothing.
// Must not: own model state, or know about specific modules.
#pragma once

#include <functional>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include <ATen/core/Tensor.h>

namespace mechscope {

/// fn(value, hook_name) -> replacement; returning an undefined tensor leaves the value unchanged.
/// A replacement must have the value's shape.
using HookFn = std::function<at::Tensor(const at::Tensor& value, const std::string& name)>;

struct Hook {
  std::string name;  ///< exact hook name, e.g. "blocks.1.attn.hook_z"
  HookFn fn;
};

/// Hook name -> activation, in name order.
using ActivationCache = std::map<std::string, at::Tensor>;

/// What to cache: explicit names, glob patterns ("blocks.*.attn.hook_pattern"), or everything.
struct HookSelection {
  std::vector<std::string> names;     ///< exact names or glob patterns
  bool all = false;                   ///< every hook point
  bool include_expensive = false;     ///< with `all`: also SSM states and implicit attention patterns
  static HookSelection everything(bool include_expensive = false) {
    HookSelection s;
    s.all = true;
    s.include_expensive = include_expensive;
    return s;
  }
  static HookSelection of(std::vector<std::string> names) {
    HookSelection s;
    s.names = std::move(names);
    return s;
  }
};

/// True for hooks that cost extra computation and are produced only when asked for
/// (`*.ssm.hook_state`, `*.ssm.hook_pattern`).
bool is_expensive_hook(const std::string& name);

/// Per-forward hook state: which names to cache, which functions to call. Built by the model's
/// run_with_cache / run_with_hooks after the names were validated.
class HookContext {
 public:
  /// Cache every name in `names` (already resolved to exact hook names).
  void cache(const std::set<std::string>& names) { cache_names_.insert(names.begin(), names.end()); }
  void add_hook(const std::string& name, HookFn fn) { fns_[name].push_back(std::move(fn)); }
  /// Whether anything (a function or the cache) wants this hook's value.
  bool wants(const std::string& name) const { return cache_names_.count(name) || fns_.count(name); }
  bool has_hooks(const std::string& name) const { return fns_.count(name) > 0; }
  /// Applies the hook functions registered for `name` (in order), then caches the result if asked.
  at::Tensor run(const std::string& name, at::Tensor value);
  /// Replaces a cached value (e.g. SSM states recomputed after a replacement carried forward); no-op if not cached.
  void recache(const std::string& name, const at::Tensor& value) {
    if (cache_names_.count(name)) cache_[name] = value;
  }
  ActivationCache& cached() { return cache_; }
  /// The names this context caches.
  const std::set<std::string>& cache_names() const { return cache_names_; }
  /// True when no hook function is registered: the context only reads. A forward may then run its examples in
  /// parts, each with a context of its own, and merge the caches along the batch (run_example_parts); hook
  /// functions see the whole batch, as they may mix examples (a resample ablation draws from other rows).
  bool cache_only() const { return fns_.empty(); }

 private:
  std::set<std::string> cache_names_;
  std::unordered_map<std::string, std::vector<HookFn>> fns_;
  ActivationCache cache_;
};

/// The hook point itself: identity unless a context wants this name.
inline at::Tensor hook_point(HookContext* ctx, const std::string& name, at::Tensor value) {
  if (!ctx) return value;
  return ctx->run(name, std::move(value));
}

/// "blocks.{layer}." — the prefix of a layer's hook names.
std::string layer_prefix(int64_t layer);

/// Axis names of a hook's tensor, batch first (spec §2), e.g. {"batch", "pos", "head", "d_head"} for attn.hook_z.
std::vector<std::string> hook_axes(const std::string& name);

/// Resolves names and glob patterns against the model's hook names. Throws std::invalid_argument for
/// an unknown name (listing the closest valid names) or a pattern that matches nothing.
std::set<std::string> resolve_hook_names(const std::vector<std::string>& requested,
                                         const std::vector<std::string>& valid);

}  // namespace mechscope
