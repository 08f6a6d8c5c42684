// The session shared by the CLI and the workbench (see session.h).
#include "core/session/session.h"
#include "core/text/tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <future>
#include <mutex>
#include <stdexcept>

#include <ATen/ATen.h>

#include "core/io/import.h"
#include "core/io/tokens.h"
#include "core/model/model.h"
#include "core/text/dataset.h"
#include "core/util/digest_cache.h"
#include "core/util/sha256.h"
#include "core/util/strings.h"

namespace mechscope {

using nlohmann::json;

std::string checkpoint_digest(const std::string& path) {
  std::error_code ec;
  // Large files' digests come from the cache of unchanged files (core/util/digest_cache.h): a multi-gigabyte
  // model is read once for provenance, not by every command.
  if (!std::filesystem::is_directory(path, ec)) return sha256_file_cached(path);
  std::vector<std::string> parts;
  for (const auto& e : std::filesystem::directory_iterator(path, ec))
    if (e.is_regular_file()) parts.push_back(e.path().filename().string() + ":" + sha256_file_cached(e.path().string()));
  if (ec || !std::filesystem::exists(path))  // a folder gone since it was opened has no digest, not that of nothing
    throw std::runtime_error("cannot digest '" + path + "' for provenance: " +
                             (ec ? ec.message() : std::string("it no longer exists")));
  std::sort(parts.begin(), parts.end());
  return sha256_hex(join(parts, "\n"));
}

std::unique_ptr<Task> make_task_for(const json& task_config, const json& overrides, int64_t vocab_size, json* merged) {
  json cfg = task_config;
  if (!overrides.is_null()) {
    if (!overrides.is_object()) throw std::invalid_argument("task parameters: expected a JSON object, found " + overrides.dump());
    cfg.merge_patch(overrides);
  }
  auto task = make_task(cfg);
  if (static_cast<int64_t>(task->vocab().size()) != vocab_size)
    throw std::invalid_argument("task " + cfg.dump() + " has a vocabulary of " + std::to_string(task->vocab().size()) +
                                " tokens; the model reads " + std::to_string(vocab_size));
  if (merged) *merged = cfg;
  return task;
}

Batch typed_batch(const std::vector<int64_t>& ids) {
  at::Tensor t = at::tensor(ids, at::kLong).unsqueeze(0);
  return Batch{t, at::full_like(t, -100), at::zeros_like(t).to(at::kChar), at::full({1}, t.size(1), at::kLong)};
}

// ---------------------------------------------------------------- OpenedModel

std::unique_ptr<OpenedModel> OpenedModel::open(const std::string& path, const json& task_overrides, bool need_task,
                                               const std::string& dtype) {
  auto m = std::make_unique<OpenedModel>();
  m->ck = open_checkpoint(path, dtype);
  m->ck.model->eval();
  const bool overrides = task_overrides.is_object() && !task_overrides.empty();
  if (m->ck.task_config.is_null()) {
    if (need_task || overrides)
      throw std::runtime_error("'" + path + "' has no task_config (a bare model); this analysis needs a task");
  } else {
    m->task = make_task_for(m->ck.task_config, task_overrides, m->ck.config.vocab_size, &m->task_config);
  }
  m->path_ = path;
  const auto slash = path.find_last_of('/');
  m->name = slash == std::string::npos ? path : path.substr(slash + 1);
  if (m->name.size() > 3 && m->name.substr(m->name.size() - 3) == ".h5") m->name.resize(m->name.size() - 3);
  return m;
}

struct OpenedModel::Text {
  std::once_flag once;
  std::unique_ptr<Tokenizer> tokenizer;
  std::string error;
  std::vector<std::string> labels;
};

namespace {

void make_text(OpenedModel::Text& t, const OpenedModel& m, const std::string& path) {
  try {  // a model opens without a tokenizer it cannot read; typing text then says why
    t.tokenizer = model_tokenizer(path, m.ck.task_config, false);
  } catch (const std::exception& e) {
    t.error = e.what();
  }
  const int64_t rows = m.ck.config.padded_vocab_size();
  for (int64_t id = 0; id < rows; ++id) {
    std::string label;
    if (t.tokenizer && id < t.tokenizer->vocab_size()) {
      try {
        label = token_label(*t.tokenizer, id);
      } catch (const std::exception&) {  // an id the tokenizer leaves out
      }
    }
    t.labels.push_back(!label.empty() ? label : token_string(id, m.ck.vocab));
  }
}

}  // namespace

const Tokenizer* OpenedModel::tokenizer() const {
  std::call_once(text_->once, [this] { make_text(*text_, *this, path_); });
  return text_->tokenizer.get();
}
std::string OpenedModel::tokenizer_error() const {
  tokenizer();
  return text_->error;
}
const std::vector<std::string>& OpenedModel::labels() const {
  tokenizer();
  return text_->labels;
}

struct OpenedModel::Digest {
  std::mutex mu;
  std::future<std::string> running;
  std::string value;
};

OpenedModel::OpenedModel() : digest_(std::make_unique<Digest>()) { text_ = std::make_shared<Text>(); }
OpenedModel::~OpenedModel() = default;  // a running digest is waited for (std::async's future)

void OpenedModel::start_digest() const {
  std::lock_guard<std::mutex> lock(digest_->mu);
  if (!digest_->value.empty() || digest_->running.valid()) return;
  digest_->running = std::async(std::launch::async, [path = ck.path] { return checkpoint_digest(path); });
}

const std::string& OpenedModel::digest() const {
  std::lock_guard<std::mutex> lock(digest_->mu);
  if (digest_->value.empty())
    digest_->value = digest_->running.valid() ? digest_->running.get() : checkpoint_digest(ck.path);
  return digest_->value;
}

json OpenedModel::provenance() const {
  json p = {{"checkpoint", ck.path}, {"checkpoint_sha256", digest()}, {"program", program_id()}};
  if (!task_config.is_null()) p["task"] = task_config;
  return p;
}

// ---------------------------------------------------------------- Session: models

int Session::open(const std::string& path) { return add(OpenedModel::open(path)); }

int Session::add(std::unique_ptr<OpenedModel> m, bool make_current) {
  for (const auto& other : models_)  // the same name twice: tell them apart
    if (other->name == m->name) m->name += " (" + std::to_string(models_.size() + 1) + ")";
  models_.push_back(std::move(m));
  const int index = static_cast<int>(models_.size()) - 1;
  if (make_current || cur_ < 0) set_current(index);
  return index;
}

void Session::set_current(int index) {
  if (index < 0 || index >= model_count()) throw std::out_of_range("no model " + std::to_string(index));
  const bool same_vocab = cur_ >= 0 && batch_.size() > 0 &&
                          models_[cur_]->ck.config.vocab_size == models_[index]->ck.config.vocab_size;
  cur_ = index;
  invalidate();
  ablated_.clear();
  if (dataset_task_) {  // the same prompts through this model's tokenizer
    try {
      load_dataset(dataset(), std::max<int64_t>(batch_.size(), 1));
      return;
    } catch (const std::exception&) {  // not this model's: its task's examples instead
      dataset_task_.reset();
      batch_ = Batch{};
    }
  }
  if (!same_vocab) {
    batch_ = Batch{};
    if (model().task) draw(64, seed_);
  }
}

OpenedModel& Session::model(int index) {
  if (index < 0) {
    if (cur_ < 0) throw std::runtime_error("no model is open (File > Open, or drop a checkpoint on the window)");
    return *models_[cur_];
  }
  if (index >= model_count()) throw std::out_of_range("no model " + std::to_string(index));
  return *models_[index];
}

const OpenedModel& Session::model(int index) const { return const_cast<Session*>(this)->model(index); }

// ---------------------------------------------------------------- Session: input

void Session::draw(int64_t n, uint64_t seed, const json& overrides) {
  OpenedModel& m = model();
  if (!m.task) throw std::runtime_error("'" + m.name + "' has no task; type tokens instead");
  if (n < 1 || n > 65536) throw std::invalid_argument("examples: choose 1..65536");
  json cfg;
  auto task = make_task_for(m.task_config, overrides, m.ck.config.vocab_size, &cfg);
  batch_ = task->sample(n, seed);
  m.task = std::move(task);
  task_cfg_ = cfg;
  dataset_task_.reset();
  has_targets_ = true;
  seed_ = seed;
  example_ = 0;
  invalidate();
}

void Session::set_tokens(const std::string& text) {
  OpenedModel& m = model();
  auto ids = parse_tokens(text, m.ck.vocab, m.ck.config.padded_vocab_size());
  if (ids.empty()) throw std::invalid_argument("no tokens given");
  set_input(ids);
}

void Session::load_dataset(const std::string& path, int64_t n) {
  OpenedModel& m = model();
  if (n < 1 || n > 65536) throw std::invalid_argument("examples: choose 1..65536");
  auto task = make_dataset_task(path, m.tokenizer(), m.ck.vocab);
  Batch b = task->sample(n, 0);
  m.model().check_tokens(b.tokens);
  batch_ = std::move(b);
  task_cfg_ = task->config();
  dataset_task_ = std::move(task);
  has_targets_ = true;
  seed_ = 0;
  example_ = 0;
  invalidate();
}

Task* Session::input_task() { return dataset_task_ ? dataset_task_.get() : model().task.get(); }

std::string Session::dataset() const { return dataset_task_ ? dataset_task_->config().at("file").get<std::string>() : ""; }

void Session::set_input(const std::vector<int64_t>& ids) {
  Batch b = typed_batch(ids);
  model().model().check_tokens(b.tokens);
  dataset_task_.reset();
  batch_ = std::move(b);
  has_targets_ = false;
  example_ = 0;
  invalidate();
}

void Session::set_text(const std::string& text) {
  OpenedModel& m = model();
  if (!m.tokenizer())
    throw std::invalid_argument(m.tokenizer_error().empty() ? "'" + m.name + "' has no tokenizer.json: type tokens instead"
                                                            : "the model's tokenizer cannot be read: " + m.tokenizer_error());
  set_input(encode_prompt(*m.tokenizer(), text, m.ck.config.padded_vocab_size()));
}

void Session::set_example(int64_t e) {
  if (e < 0 || e >= batch_.size()) throw std::out_of_range("example " + std::to_string(e));
  example_ = e;
}

void Session::edit_token(int64_t e, int64_t position, const std::string& token) {
  if (e < 0 || e >= batch_.size()) throw std::out_of_range("example " + std::to_string(e));
  const int64_t len = batch_.lengths[e].item<int64_t>();
  if (position < 0 || position >= len)
    throw std::out_of_range("position " + std::to_string(position) + ": example " + std::to_string(e) + " has " +
                            std::to_string(len) + " tokens");
  OpenedModel& m = model();
  const auto ids = parse_tokens(token, m.ck.vocab, m.ck.config.padded_vocab_size());
  if (ids.size() != 1)
    throw std::invalid_argument("'" + token + "' is " + std::to_string(ids.size()) + " tokens; give one (an id or a vocabulary string)");
  batch_.tokens = batch_.tokens.clone();  // the tensor other holders (a patching sweep's batch) share stays as it was
  batch_.tokens[e][position] = ids[0];
  invalidate();
}

at::Tensor Session::example_tokens(int64_t e) const {
  const int64_t len = batch_.lengths[e].item<int64_t>();
  return batch_.tokens.narrow(0, e, 1).narrow(1, 0, len);
}

int64_t Session::last_labelled(int64_t e) const {
  if (!has_targets_) return batch_.lengths[e].item<int64_t>() - 1;
  if (batch_.readout.defined()) return batch_.readout[e].item<int64_t>();  // a dataset's answer start
  at::Tensor t = batch_.targets[e];
  for (int64_t j = t.size(0) - 1; j >= 0; --j)
    if (t[j].item<int64_t>() != -100) return j;
  return batch_.lengths[e].item<int64_t>() - 1;
}

// ---------------------------------------------------------------- Session: interventions

void Session::invalidate() {
  clean_cache_.clear();
  ablator_.reset();
}

void Session::set_ablation(const std::vector<HeadRef>& heads, AblationKind kind) {
  if (kind != kind_) ablator_.reset();
  kind_ = kind;
  ablated_ = heads;
}

Ablator& Session::ablator() {
  if (!ablator_) {
    Batch ref;
    if (kind_ != AblationKind::Zero) {
      if (!input_task()) throw std::runtime_error("mean and resample ablation need the model's task (or a dataset)");
      ref = input_task()->sample(std::max<int64_t>(batch_.size(), 32), seed_ + 1000003);
    }
    ablator_ = std::make_unique<Ablator>(model().model(), kind_, ref);
  }
  return *ablator_;
}

const ActivationCache& Session::clean_cache() {
  if (clean_cache_.empty()) {
    if (!has_input()) throw std::runtime_error("no input: draw examples from the task or type tokens");
    at::NoGradGuard no_grad;
    LanguageModel& lm = model().model();
    clean_cache_ = lm.run_with_cache(batch_.tokens, HookSelection::of(ablation_cache_names(lm))).second;
  }
  return clean_cache_;
}

// ---------------------------------------------------------------- Session: analyses

ResultsFile Session::run_analysis(const std::string& name, const json& options, const Progress& progress) {
  const RegisteredAnalysis& a = require_analysis(name);
  OpenedModel& m = model();
  Batch input;
  if (a.info.input != AnalysisInput::None) {
    if (!has_input()) throw std::runtime_error("no input: draw examples from the task or type tokens");
    if (a.info.needs_task && !has_targets_) throw std::runtime_error(name + " needs task examples; draw some");
    input = a.info.input == AnalysisInput::Sequence ? batch_.narrow(example_, 1) : batch_;
  }
  AnalysisContext ctx{m.model(), input_task(), input, m.ck.vocab, options, seed_, progress.report, progress.cancel,
                      &m.ck.training};
  return mechscope::run_analysis(a, ctx);
}

json Session::provenance(bool digest) const {
  json p = json::object();
  if (cur_ >= 0) {
    const OpenedModel& m = model();
    p["checkpoint"] = m.ck.path;
    if (digest) p["checkpoint_sha256"] = m.digest();
    if (!task_cfg_.is_null()) p["task"] = task_cfg_;
    p["seed"] = seed_;
    p["example"] = example_;
    p["examples"] = batch_.size();
    std::vector<std::string> heads;
    for (const auto& h : ablated_) heads.push_back(h.label());
    p["ablated"] = heads;
    p["ablation"] = ablation_name(kind_);
  }
  p["program"] = program_id();
  return p;
}

}  // namespace mechscope
