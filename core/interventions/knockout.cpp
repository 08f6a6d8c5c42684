// Attention knockout (see knockout.h).
#include "core/interventions/knockout.h"

#include <limits>

#include <ATen/ATen.h>

#include "core/model/model.h"

namespace mechscope {

std::vector<Hook> knockout_hooks(const LanguageModel& model, const std::vector<Knockout>& knockouts,
                                 const Readout& readout) {
  std::vector<Hook> out;
  for (const auto& ko : knockouts) {
    std::string name;
    int64_t H = 0;
    if (ko.layer >= 0 && ko.layer < model.n_layers())
      for (const auto& g : model.head_groups(ko.layer))
        if (!g.scores_hook.empty()) {
          name = g.scores_hook;
          H = g.heads;
        }
    if (name.empty()) throw std::invalid_argument("knockout: layer " + std::to_string(ko.layer) + " has no attention");
    for (int64_t h : ko.heads)
      if (h < 0 || h >= H)
        throw std::invalid_argument("knockout: layer " + std::to_string(ko.layer) + " has heads 0.." +
                                    std::to_string(H - 1) + ", not " + std::to_string(h));
    out.push_back({name, [ko, readout](const at::Tensor& scores, const std::string&) {
                     // scores [b, H, q, k]
                     const int64_t Lq = scores.size(2), Lk = scores.size(3);
                     at::Tensor block = at::zeros({scores.size(0), Lq, Lk}, scores.options().dtype(at::kBool));
                     for (const auto& [q, k] : ko.edges) {
                       if (q < 0 || q >= Lq || k < 0 || k >= Lk)
                         throw std::invalid_argument("knockout: edge (" + std::to_string(q) + ", " + std::to_string(k) +
                                                     ") is outside the " + std::to_string(Lq) + "-position sequence");
                       if (k < q) block.select(1, q).select(1, k).fill_(true);
                     }
                     if (ko.last_row) {
                       at::Tensor ex = readout.example, pos = readout.position;
                       for (int64_t i = 0; i < ex.size(0); ++i) {
                         const int64_t e = ex[i].item<int64_t>(), q = pos[i].item<int64_t>();
                         if (e < block.size(0) && q > 0) block[e][q].narrow(0, 0, q).fill_(true);
                       }
                     }
                     at::Tensor mask = block.unsqueeze(1).expand_as(scores);
                     if (!ko.heads.empty()) {
                       at::Tensor sel = at::zeros({scores.size(1)}, scores.options().dtype(at::kBool));
                       for (int64_t h : ko.heads) sel[h] = true;
                       mask = mask.logical_and(sel.view({1, -1, 1, 1}));
                     }
                     return scores.masked_fill(mask, -std::numeric_limits<double>::infinity());
                   }});
  }
  return out;
}

}  // namespace mechscope
