// Tasks (spec §3): seeded, deterministic generators of token sequences in which every position has a role,
// with next-token targets (-100 where there is no loss) and clean/corrupted pairs for patching.
// Must not: know about models or training.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

namespace mechscope {

/// Role of a position (spec §3). Stored as int8 in Batch::roles.
enum class Role : int8_t { Pad = 0, Bos, Eos, Sep, Key, Value, Symbol, Position, Query, Answer, Filler };
const char* role_name(Role r);
const std::vector<std::string>& role_names();

/// A batch of examples, right-padded with <pad> (id 0).
struct Batch {
  at::Tensor tokens;   ///< [batch, L] int64
  at::Tensor targets;  ///< [batch, L] int64: the token to predict at each position, -100 where no loss
  at::Tensor roles;    ///< [batch, L] int8 (Role)
  at::Tensor lengths;  ///< [batch] int64: real length of each example
  /// [batch, L, W] int64: given wrong answers at a labelled position (-1: none); undefined for tasks without them.
  /// Where given, the logit difference is the answer's logit minus the best of them (else minus the best other token).
  at::Tensor wrong;
  /// The wrong answers are the other candidates of a multiple choice (a prompt dataset's "choices", the kv-text
  /// task): an example is correct when its answer's logit is above all of theirs, not when it is the argmax of the
  /// vocabulary.
  bool multiple_choice = false;
  /// Of a corrupted batch whose prompts differ in token count from the clean ones (a dataset's "aligned" lines):
  /// [batch, clean width] int64, the position in this batch's row of each position of the clean row (-1: none).
  /// Undefined: position p is p (same lengths). Patching reads it; its readout is this batch's own last labelled
  /// position.
  at::Tensor aligned;
  /// [batch] int64: the position each example is read at by patching and the other one-readout-per-example
  /// measures (Readout::last_labelled), a labelled one. Undefined: the last labelled position. A prompt dataset sets
  /// its prompt's last token, where the answer's first token is predicted (a multi-token answer's last token, given
  /// the earlier ones, says little).
  at::Tensor readout;
  int64_t size() const { return tokens.defined() ? tokens.size(0) : 0; }
  /// Examples [start, start + n) (views, not copies).
  Batch narrow(int64_t start, int64_t n) const {
    return {tokens.narrow(0, start, n), targets.narrow(0, start, n), roles.narrow(0, start, n), lengths.narrow(0, start, n),
            wrong.defined() ? wrong.narrow(0, start, n) : wrong, multiple_choice,
            aligned.defined() ? aligned.narrow(0, start, n) : aligned, readout.defined() ? readout.narrow(0, start, n) : readout};
  }
};

class Task {
 public:
  virtual ~Task() = default;
  /// {"task": NAME, ...every parameter, defaults filled in}.
  virtual nlohmann::json config() const = 0;
  /// Token strings; the index is the id.
  virtual const std::vector<std::string>& vocab() const = 0;
  /// `n` examples, a pure function of (config, n, seed).
  virtual Batch sample(int64_t n, uint64_t seed) const = 0;
  /// Roles this task can corrupt (the first is the default): e.g. {"key", "value", "query"}.
  virtual std::vector<std::string> corruptible_roles() const = 0;
  /// Clean/corrupted pair: replaces one token of `role` in each example by another token of the same kind that
  /// does not occur in the example (spec §3). Same shapes and roles as `clean`.
  virtual Batch corrupt(const Batch& clean, uint64_t seed, const std::string& role = "") const = 0;
  /// "position" (accuracy over labelled positions, MQAR) or "example" (all labelled positions right).
  virtual std::string accuracy_unit() const { return "example"; }
  /// Token ids whose embedding rows the PCA view shows (position tokens, else empty).
  virtual std::vector<int64_t> embedding_probe_ids() const { return {}; }
};

/// Builds a task from its config ({"task": "mqar", "num_pairs": 8, ...}) through the task registry (built-ins
/// and plugins alike, core/plugin); unknown tasks or keys are errors naming the key and the known ones.
std::unique_ptr<Task> make_task(const nlohmann::json& config);
/// Every registered task name (built-ins, then plugins).
std::vector<std::string> task_names();
/// The tasks of core itself (the registry registers them first).
std::vector<std::string> builtin_task_names();
std::unique_ptr<Task> make_builtin_task(const nlohmann::json& config);

/// The seed of example i of a sample drawn with `seed`: examples are pure functions of it, so that the first k of a
/// sample of n are a sample of k.
uint64_t example_seed(uint64_t seed, int64_t i);

/// A task config for people to read: the JSON, a tokenizer it carries (a text task's "tokenizer" object, kilobytes
/// to megabytes) shown as its vocabulary size and SHA-256 prefix; a prompt dataset as "dataset FILE (N lines, sha256
/// PREFIX)".
std::string task_config_summary(const nlohmann::json& config);

/// Accuracy of logits [batch, L, rows] against a batch's targets, in the task's unit.
double task_accuracy(const Task& task, const at::Tensor& logits, const Batch& batch);

}  // namespace mechscope
