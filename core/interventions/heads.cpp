// Heads: labels, parsing, groups (see heads.h).
#include "core/interventions/heads.h"

#include <algorithm>
#include <regex>
#include <stdexcept>
#include <tuple>

#include "core/model/model.h"
#include "core/util/strings.h"

namespace mechscope {

namespace {

// The head groups' scopes this model has ("attn", "ssm"), in first-seen order.
std::vector<std::string> model_scopes(const LanguageModel& model) {
  std::vector<std::string> out;
  for (int64_t l = 0; l < model.n_layers(); ++l)
    for (const auto& g : model.head_groups(l))
      if (std::find(out.begin(), out.end(), g.scope) == out.end()) out.push_back(g.scope);
  return out;
}

}  // namespace

std::string HeadRef::label() const { return "L" + std::to_string(layer) + "." + mixer + ".H" + std::to_string(head); }

std::vector<HeadRef> all_heads(const LanguageModel& model) {
  std::vector<HeadRef> out;
  for (int64_t l = 0; l < model.n_layers(); ++l)
    for (const auto& [mixer, H] : model.heads_of_layer(l))
      for (int64_t h = 0; h < H; ++h) out.push_back({l, mixer, h});
  return out;
}

HeadRef parse_head(const std::string& text, const LanguageModel& model) {
  static const std::regex full(R"(^L?(\d+)\.([a-z_]+)\.H?(\d+)$)"), shortform(R"(^L?(\d+)[.H](\d+)$)");
  std::smatch m;
  HeadRef h;
  if (std::regex_match(text, m, full)) {
    h = {std::stoll(m[1]), m[2], std::stoll(m[3])};
  } else if (std::regex_match(text, m, shortform)) {
    h.layer = std::stoll(m[1]);
    h.head = std::stoll(m[2]);
    if (h.layer >= model.n_layers()) throw std::invalid_argument("head '" + text + "': no layer " + m[1].str());
    auto mixers = model.heads_of_layer(h.layer);
    if (mixers.size() != 1) {
      std::vector<std::string> forms;
      for (const auto& [scope, H] : mixers) forms.push_back("L" + m[1].str() + "." + scope + ".H" + m[2].str());
      throw std::invalid_argument("head '" + text + "': layer " + m[1].str() + " has heads of " +
                                  std::to_string(mixers.size()) + " kinds; write " + join(forms, " or "));
    }
    h.mixer = mixers[0].first;
  } else {
    throw std::invalid_argument("head '" + text + "': expected L<layer>.<mixer>.H<head> with a mixer of this model (" +
                                join(model_scopes(model), ", ") + "), e.g. " + all_heads(model).front().label());
  }
  if (h.layer < 0 || h.layer >= model.n_layers())
    throw std::invalid_argument("head '" + text + "': the model has layers 0.." + std::to_string(model.n_layers() - 1));
  for (const auto& [mixer, H] : model.heads_of_layer(h.layer))
    if (mixer == h.mixer) {
      if (h.head < 0 || h.head >= H)
        throw std::invalid_argument("head '" + text + "': layer " + std::to_string(h.layer) + " " + mixer + " has " +
                                    std::to_string(H) + " heads (0.." + std::to_string(H - 1) + ")");
      return h;
    }
  throw std::invalid_argument("head '" + text + "': layer " + std::to_string(h.layer) + " has no " + h.mixer + " mixer");
}

std::vector<HeadRef> parse_heads(const std::string& text, const LanguageModel& model) {
  static const std::regex range(R"(^(L?\d+\.[a-z_]+\.H?)(\d+)-(\d+)$)");
  std::smatch m;
  if (!std::regex_match(text, m, range)) return {parse_head(text, model)};
  const int64_t first = std::stoll(m[2]), last = std::stoll(m[3]);
  if (last < first) throw std::invalid_argument("heads '" + text + "': the range ends before it starts");
  HeadRef a = parse_head(m[1].str() + m[2].str(), model);
  parse_head(m[1].str() + m[3].str(), model);  // checks the end of the range
  std::vector<HeadRef> out;
  for (int64_t h = first; h <= last; ++h) out.push_back({a.layer, a.mixer, h});
  return out;
}

std::string group_label(const std::vector<HeadRef>& heads) {
  if (heads.empty()) return "none";
  std::vector<HeadRef> g = heads;
  std::sort(g.begin(), g.end(), [](const HeadRef& a, const HeadRef& b) {
    return std::tie(a.layer, a.mixer, a.head) < std::tie(b.layer, b.mixer, b.head);
  });
  std::string out;
  for (size_t i = 0; i < g.size();) {  // runs of consecutive heads of one mixer: L0.ssm.H0-15
    size_t j = i + 1;
    while (j < g.size() && g[j].layer == g[i].layer && g[j].mixer == g[i].mixer && g[j].head == g[j - 1].head + 1) ++j;
    out += (out.empty() ? "" : "+") + g[i].label() + (j - i > 1 ? "-" + std::to_string(g[j - 1].head) : "");
    i = j;
  }
  return out;
}

std::vector<std::vector<HeadRef>> channel_groups(const LanguageModel& model, int64_t size) {
  if (size < 1) throw std::invalid_argument("channel groups: the size must be at least 1, got " + std::to_string(size));
  std::vector<std::vector<HeadRef>> out;
  for (int64_t l = 0; l < model.n_layers(); ++l)
    for (const auto& group : model.head_groups(l)) {
      const int64_t g = group.channels ? size : 1, H = group.heads;
      for (int64_t h0 = 0; h0 < H; h0 += g) {
        out.emplace_back();
        for (int64_t h = h0; h < std::min(H, h0 + g); ++h) out.back().push_back({l, group.scope, h});
      }
    }
  return out;
}

std::string head_hook_name(const LanguageModel& model, const HeadRef& h) { return model.head_group(h.layer, h.mixer).hook; }

}  // namespace mechscope
