// The job runner (see jobs.h).
#include "app/jobs.h"

#include <algorithm>
#include <chrono>

#include "core/engine/memory.h"
#include "core/engine/runtime.h"

namespace mechscope::app {

Jobs::Jobs(std::function<void(const QString&, const QString&)> on_error, std::function<void()> on_change, QObject* parent)
    : QObject(parent), on_error_(std::move(on_error)), on_change_(std::move(on_change)) {
  pool_.setMaxThreadCount(1);  // one engine, one job at a time, in order
  pool_.setExpiryTimeout(-1);
}

Jobs::~Jobs() {
  cancelAll();
  pool_.waitForDone();
}

void Jobs::cancelAll() {
  for (auto& s : states_) s->cancel = true;
}

void Jobs::execute(const std::shared_ptr<State>& state, const std::function<void(const Progress&)>& work, QString* error,
                   bool* cancelled) {
  init_thread();
  state->started_ns = std::chrono::steady_clock::now().time_since_epoch() / std::chrono::nanoseconds(1);
  if (state->cancel) {
    *cancelled = true;
    return;
  }
  Progress p;
  p.report = [state](double f, const std::string&) { state->progress = f; };
  p.cancel = &state->cancel;
  try {
    work(p);
  } catch (const std::exception& e) {
    if (state->cancel) *cancelled = true;
    else *error = QString::fromStdString(describe_error(e));
  }
}

double Jobs::eta_s() const {
  if (states_.empty()) return -1;
  const State& s = *states_.front();
  const double p = s.progress.load();
  const int64_t t0 = s.started_ns.load();
  if (t0 == 0 || p < 0.02 || p >= 1) return -1;
  const double elapsed = (std::chrono::steady_clock::now().time_since_epoch() / std::chrono::nanoseconds(1) - t0) / 1e9;
  return elapsed * (1 - p) / p;
}

void Jobs::finished(const std::shared_ptr<State>& state) {
  --running_;
  states_.erase(std::remove(states_.begin(), states_.end(), state), states_.end());
}

}  // namespace mechscope::app
