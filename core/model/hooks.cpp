// HookContext and hook-name resolution.
#include "core/model/hooks.h"

#include <sstream>
#include <stdexcept>

#include <ATen/ATen.h>

#include "core/util/strings.h"

namespace mechscope {

static bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_expensive_hook(const std::string& name) {
  return ends_with(name, ".ssm.hook_state") || ends_with(name, ".ssm.hook_pattern");
}

static std::string shape_str(at::IntArrayRef s) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << "]";
  return o.str();
}

at::Tensor HookContext::run(const std::string& name, at::Tensor value) {
  auto it = fns_.find(name);
  if (it != fns_.end()) {
    for (const auto& fn : it->second) {
      at::Tensor out = fn(value, name);
      if (!out.defined()) continue;
      if (out.sizes() != value.sizes())
        throw std::invalid_argument("hook function on " + name + " returned shape " + shape_str(out.sizes()) +
                                    ", expected " + shape_str(value.sizes()));
      if (out.scalar_type() != value.scalar_type() || out.device() != value.device())
        out = out.to(value.device(), value.scalar_type());
      value = out;
    }
  }
  if (cache_names_.count(name)) cache_[name] = value;
  return value;
}

std::string layer_prefix(int64_t layer) { return "blocks." + std::to_string(layer) + "."; }

std::vector<std::string> hook_axes(const std::string& name) {
  auto last = name.substr(name.find_last_of('.') + 1);
  const bool attn = name.find(".attn.") != std::string::npos;
  const bool ssm = name.find(".ssm.") != std::string::npos;
  if (attn) {
    if (last == "hook_q" || last == "hook_z") return {"batch", "pos", "head", "d_head"};
    if (last == "hook_k" || last == "hook_v") return {"batch", "pos", "kv_head", "d_head"};
    return {"batch", "head", "q_pos", "k_pos"};  // hook_attn_scores, hook_pattern
  }
  if (ssm) {
    if (last == "hook_dt") return {"batch", "pos", "head"};
    if (last == "hook_B" || last == "hook_C") return {"batch", "pos", "group", "d_state"};
    if (last == "hook_conv_out") return {"batch", "pos", "channel"};
    if (last == "hook_state") return {"batch", "pos", "head", "d_head", "d_state"};
    if (last == "hook_pattern") return {"batch", "head", "q_pos", "k_pos"};
    return {"batch", "pos", "head", "d_head"};  // hook_x, hook_gate, hook_y, hook_head_out
  }
  if (last == "hook_mlp_router") return {"batch", "pos", "expert"};
  return {"batch", "pos", "d_model"};
}

std::set<std::string> resolve_hook_names(const std::vector<std::string>& requested,
                                         const std::vector<std::string>& valid) {
  std::set<std::string> valid_set(valid.begin(), valid.end());
  std::set<std::string> out;
  for (const auto& req : requested) {
    if (req.find_first_of("*?") != std::string::npos) {
      size_t before = out.size();
      bool any = false;
      for (const auto& v : valid)
        if (glob_match(req, v)) {
          out.insert(v);
          any = true;
        }
      if (!any)
        throw std::invalid_argument("hook pattern '" + req + "' matches no hook point of this model" +
                                    (before ? "" : "; list them with `mechscope-cli info --hooks`"));
      continue;
    }
    if (!valid_set.count(req)) {
      auto close = closest_matches(req, valid, 5);
      std::string msg = "unknown hook name '" + req + "'";
      if (!close.empty()) msg += "; closest: " + join(close, ", ");
      else msg += "; list the model's hook points with `mechscope-cli info --hooks`";
      throw std::invalid_argument(msg);
    }
    out.insert(req);
  }
  return out;
}

}  // namespace mechscope
