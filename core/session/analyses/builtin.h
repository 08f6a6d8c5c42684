// What core's own analyses share (internal to core/session/analyses): their registration entries, reading their
// options, sweep options from a context, labels, and the report lines several of them print. Each analysis lives in
// its own file here and is listed once in builtin.cpp. Must not: print (reports go into ResultsFile::summary).
#pragma once

#include <sstream>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "core/interventions/interventions.h"
#include "core/io/results.h"
#include "core/plugin/plugin.h"
#include "core/util/strings.h"

namespace mechscope::builtin {

// One entry per analysis (defined in its file).
AnalysisInfo attention_analysis();
AnalysisInfo head_scores_analysis();
AnalysisInfo ablation_analysis();
AnalysisInfo knockout_analysis();
AnalysisInfo patching_analysis();
AnalysisInfo attribution_analysis();
AnalysisInfo dla_analysis();
AnalysisInfo embeddings_analysis();
AnalysisInfo logit_lens_analysis();
AnalysisInfo ga_discovery_analysis();

/// A results file for analysis `name`: kind = name, empty settings.
ResultsFile start_results(const std::string& name);
/// The results group of an analysis: its name with '-' as '_' ("head-scores" -> "head_scores").
std::string group_of(const std::string& name);
/// The task a context must have (throws naming the analysis otherwise).
const Task& task_of(const AnalysisContext& ctx, const std::string& name);
/// Sweep options from a context's options (plain, memory_mb, keep_threshold where declared) and its progress and
/// cancel.
SweepOptions sweep_options(const AnalysisContext& ctx);
std::vector<std::string> head_labels(const std::vector<HeadRef>& heads);
std::vector<std::string> token_labels(const at::Tensor& ids, const std::vector<std::string>& vocab);
/// Position labels "3:k17" of a token sequence.
std::vector<std::string> position_labels(const at::Tensor& ids, const std::vector<std::string>& vocab);
/// "accuracy 0.953, answer probability 0.912, logit difference 4.210, KL to unablated 0.0123" after `label`.
void print_outcome(std::ostream& out, const std::string& label, const MetricTable& m, int64_t i = 0);
/// Runs the batch without and with `hooks` (metrics at every labelled position, KL to the run without), reports
/// both, and records them as <group>/before and <group>/after [metric] and as the CSV table.
void before_after(LanguageModel& model, const Batch& batch, const std::vector<Hook>& hooks,
                  const std::string& after_label, const std::string& group, ResultsFile& rf, std::ostream& out);

}  // namespace mechscope::builtin
