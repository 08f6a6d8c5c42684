// `embeddings`: PCA, cosine similarity and locality of embedding rows (the task's position tokens, a learned position
// table, or chosen ids), and the locality over training from the checkpoint's snapshots (spec §5).
#include <algorithm>

#include <ATen/ATen.h>

#include "core/analysis/analysis.h"
#include "core/io/tokens.h"
#include "core/model/model.h"
#include "core/session/analyses/builtin.h"

namespace mechscope::builtin {

using nlohmann::json;

namespace {

// The rows analysed and their ids: the ids asked for, else the task's position tokens or the position table.
at::Tensor chosen_rows(const AnalysisContext& ctx, std::vector<int64_t>& ids) {
  const json& asked = ctx.options.at("ids");
  if (!asked.empty()) {
    for (const auto& v : asked) ids.push_back(v.is_string() ? std::stoll(v.get<std::string>()) : v.get<int64_t>());
    at::Tensor idx = at::tensor(ids, at::kLong);
    const int64_t rows = ctx.model.config().padded_vocab_size();
    if (idx.min().item<int64_t>() < 0 || idx.max().item<int64_t>() >= rows)
      throw std::invalid_argument("--ids: ids must be in [0, " + std::to_string(rows) + ")");
    return ctx.model.embedding_matrix().detach().index_select(0, idx);
  }
  at::Tensor rows = probe_rows(ctx.model, ctx.task, &ids);
  if (!rows.defined())
    throw std::runtime_error("embeddings: the task has no position tokens and the model no learned position table; "
                             "choose rows with --ids");
  return rows;
}

void over_training(const AnalysisContext& ctx, int64_t k, ResultsFile& rf, std::ostream& out) {
  const auto* training = ctx.training;
  if (!training || !training->count("embedding_snapshots"))
    throw std::runtime_error("--over-training: the checkpoint keeps no embedding snapshots in /training");
  at::Tensor S = training->at("embedding_snapshots");  // [snapshots, rows, d]
  at::Tensor steps = training->count("embedding_snapshot_steps") ? training->at("embedding_snapshot_steps")
                                                                 : at::arange(S.size(0), at::kLong);
  std::vector<double> loc;
  std::vector<std::string> step_labels;
  for (int64_t i = 0; i < S.size(0); ++i) {
    loc.push_back(locality_score(S[i], k));
    step_labels.push_back(std::to_string(steps[i].item<int64_t>()));
    out << "step " << step_labels.back() << ": locality " << fmt("%.3f", loc.back()) << "\n";
  }
  rf.tensors.push_back({"embeddings/locality_over_training", at::tensor(loc, at::kDouble).to(at::kFloat), {"step"},
                        json{{"step", step_labels}}});
}

ResultsFile run(const AnalysisContext& ctx) {
  const int64_t k = ctx.options.at("k").get<int64_t>(), components = ctx.options.at("components").get<int64_t>();
  ResultsFile rf = start_results("embeddings");
  std::vector<int64_t> ids;
  const at::Tensor rows = chosen_rows(ctx, ids);
  EmbeddingGeometry geo = embedding_geometry(rows, components, k);
  std::vector<std::string> row_labels;
  for (auto id : ids) row_labels.push_back(ctx.task || !ctx.vocab.empty() ? token_string(id, ctx.vocab) : std::to_string(id));
  if (ctx.options.at("ids").empty() && !ctx.task) row_labels.clear();
  if (row_labels.size() != static_cast<size_t>(rows.size(0))) {
    row_labels.clear();
    for (int64_t i = 0; i < rows.size(0); ++i) row_labels.push_back("pos" + std::to_string(i));
  }
  std::vector<std::string> comp_labels;
  for (int64_t c = 0; c < geo.projection.size(1); ++c) comp_labels.push_back("PC" + std::to_string(c + 1));
  rf.tensors.push_back({"embeddings/projection", geo.projection, {"row", "component"},
                        json{{"row", row_labels}, {"component", comp_labels}}});
  rf.tensors.push_back({"embeddings/explained", geo.explained, {"component"}, json{{"component", comp_labels}}});
  rf.tensors.push_back({"embeddings/cosine", geo.cosine, {"row", "row2"}, json{{"row", row_labels}, {"row2", row_labels}}});
  rf.tensors.push_back({"embeddings/ids", at::tensor(ids, at::kLong), {"row"}, json{{"row", row_labels}}});
  rf.settings = {{"k", k}, {"components", components}, {"locality", geo.locality}};
  std::ostringstream out;
  out << rows.size(0) << " rows; locality (k = " << k << ") " << fmt("%.3f", geo.locality) << " (random ≈ "
      << fmt("%.3f", std::min(1.0, 2.0 * k / rows.size(0))) << "); explained variance";
  for (int64_t c = 0; c < geo.explained.size(0); ++c) out << " " << fmt("%.3f", geo.explained[c].item<double>());
  out << "\n";
  if (ctx.options.at("over_training").get<bool>()) over_training(ctx, k, rf, out);
  rf.summary = out.str();
  rf.csv.tensor = rf.tensors[0];
  return rf;
}

}  // namespace

AnalysisInfo embeddings_analysis() {
  AnalysisInfo a{"embeddings", "PCA, cosine similarity and locality of position-token embeddings (spec §5)", "grid", false, run};
  a.input = AnalysisInput::None;
  a.options = {{"ids", json::array(), "token ids whose rows to analyse (default: the task's position tokens)"},
               {"k", 5, "neighbours for the locality score"},
               {"components", 3, "PCA components"},
               {"over_training", false, "the locality of each snapshot kept during training"}};
  return a;
}

}  // namespace mechscope::builtin
