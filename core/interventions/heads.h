// Heads (spec §1 "Heads"): references to one head of one layer's head group ("L1.attn.H0"), their parsing from
// text, the labels of head sets and Mamba1 channel groups. Must not: run models.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "core/model/hooks.h"
#include "core/tasks/task.h"

namespace mechscope {

class LanguageModel;

/// A head: an attention head ("attn"), a Mamba2 head or a Mamba1 channel ("ssm") of one layer; `mixer` is the
/// scope of the layer's head group (HeadGroup::scope, core/model/mixer.h).
struct HeadRef {
  int64_t layer = 0;
  std::string mixer;  ///< "attn" or "ssm"
  int64_t head = 0;
  std::string label() const;  ///< "L1.attn.H0"
  bool operator==(const HeadRef& o) const { return layer == o.layer && mixer == o.mixer && head == o.head; }
};
/// Every head of the model, layer by layer (attention before SSM in a parallel layer).
std::vector<HeadRef> all_heads(const LanguageModel& model);
/// Parses "L1.attn.H0", "1.attn.0" or "1.0" (the layer's only mixer); checks it against the model.
HeadRef parse_head(const std::string& text, const LanguageModel& model);
/// parse_head, or a range of one layer's heads "L0.ssm.H0-15" (a Mamba1 channel group).
std::vector<HeadRef> parse_heads(const std::string& text, const LanguageModel& model);
/// "L1.attn.H0" for one head; a set in layer order, runs of consecutive heads of one mixer as "L0.ssm.H0-15",
/// joined by '+'.
std::string group_label(const std::vector<HeadRef>& group);
/// Every layer's Mamba1 channels in groups of `size` consecutive channels (the last of a layer may be smaller);
/// attention and Mamba2 heads stay one per group. size 1: every head alone.
std::vector<std::vector<HeadRef>> channel_groups(const LanguageModel& model, int64_t size);
/// The hook whose per-head slice ablation replaces: blocks.{l}.attn.hook_z or blocks.{l}.ssm.hook_head_out.
std::string head_hook_name(const LanguageModel& model, const HeadRef& head);

}  // namespace mechscope
