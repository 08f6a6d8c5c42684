// The workbench's job runner: every call into the Workbench runs here, on one worker thread, one at a time and in
// order; `done` runs back on the UI thread with the result, so the UI never waits on torch. Progress and cancel for
// the status bar. No torch here.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include <QFutureWatcher>
#include <QObject>
#include <QString>
#include <QThreadPool>
#include <QtConcurrent/QtConcurrentRun>

#include "app/workbench.h"

namespace mechscope::app {

class Jobs : public QObject {
  Q_OBJECT
 public:
  /// `on_error(what, message)` reports a failed job; `on_change()` runs when a job starts or ends (the status bar).
  Jobs(std::function<void(const QString&, const QString&)> on_error, std::function<void()> on_change,
       QObject* parent = nullptr);
  ~Jobs() override;

  /// Runs `work` in the job thread; then `done(result)` on the UI thread, or the error callback with its message.
  template <class R>
  void run(const QString& what, std::function<R(const Progress&)> work, std::function<void(const R&)> done);

  int running() const { return running_; }
  /// The running job's label (the oldest unfinished: jobs run in order; not the last one queued, which the status
  /// bar used to name) and progress (0..1).
  QString label() const { return states_.empty() ? QString() : states_.front()->what; }
  double progress() const { return states_.empty() ? 0 : states_.front()->progress.load(); }
  /// Seconds the running job has left, from its progress so far (elapsed x (1 - p) / p); -1 before it reported 2%.
  double eta_s() const;
  /// Asks every queued and running job to stop (a sweep stops at its next chunk).
  void cancelAll();
  /// Waits for the worker to finish everything queued.
  void waitForDone() { pool_.waitForDone(); }

 private:
  struct State {
    QString what;
    std::atomic<bool> cancel{false};
    std::atomic<double> progress{0};
    std::atomic<int64_t> started_ns{0};  // steady clock, when the worker began it (0: queued)
  };
  /// The worker side: runs `work` (which stores its result), setting `error` or `cancelled`.
  static void execute(const std::shared_ptr<State>& state, const std::function<void(const Progress&)>& work,
                      QString* error, bool* cancelled);
  void finished(const std::shared_ptr<State>& state);
  QThreadPool pool_;
  int running_ = 0;
  std::vector<std::shared_ptr<State>> states_;
  std::function<void(const QString&, const QString&)> on_error_;
  std::function<void()> on_change_;
};

template <class R>
void Jobs::run(const QString& what, std::function<R(const Progress&)> work, std::function<void(const R&)> done) {
  auto state = std::make_shared<State>();
  state->what = what;
  states_.push_back(state);
  ++running_;
  auto result = std::make_shared<std::optional<R>>();
  auto error = std::make_shared<QString>();
  auto cancelled = std::make_shared<bool>(false);
  auto* watcher = new QFutureWatcher<void>(this);
  connect(watcher, &QFutureWatcher<void>::finished, this, [=] {
    finished(state);
    if (*cancelled) on_error_(what, QString());  // an empty message: cancelled
    else if (!error->isEmpty()) on_error_(what, *error);
    else if (result->has_value()) done(**result);
    watcher->deleteLater();
    on_change_();
  });
  on_change_();
  watcher->setFuture(QtConcurrent::run(&pool_, [=] {
    execute(state, [&](const Progress& p) { *result = work(p); }, error.get(), cancelled.get());
  }));
}

}  // namespace mechscope::app
