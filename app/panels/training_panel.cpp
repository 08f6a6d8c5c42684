// The Training panel (see training_panel.h).
#include "app/panels/training_panel.h"

#include <cmath>

#include <QComboBox>
#include <QDir>
#include <QFile>
#include <QFormLayout>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLabel>
#include <QLineEdit>
#include <QMessageBox>
#include <QPushButton>
#include <QSpinBox>
#include <QVBoxLayout>

#include "app/plotview.h"
#include "app/training.h"
#include "core/engine/memory.h"
#include "core/engine/runtime.h"

namespace mechscope::app {

TrainingPanel::TrainingPanel(PanelContext& ctx) : Panel(ctx) {
  preset_ = new QComboBox;
  for (const auto& p : Workbench::presets()) preset_->addItem(qs(p));
  model_ = new QLineEdit(R"({"d_model": 64, "n_layer": 2})");
  model_->setToolTip(QObject::tr("overrides of the preset (model_config keys, docs/spec.md §1), e.g. "
                                 "{\"attn_cfg\": {\"num_heads\": 1, \"head_dim\": 64}}"));
  task_ = new QLineEdit(R"({"task": "mqar", "vocab_size": 256, "seq_len": 64, "num_pairs": 16})");
  steps_ = new QSpinBox;
  steps_->setRange(1, 10000000);
  steps_->setValue(3000);
  batch_ = new QSpinBox;
  batch_->setRange(1, 4096);
  batch_->setValue(64);
  lr_ = new QLineEdit("1e-3");
  out_ = new QLineEdit(QDir::home().filePath("mechscope-run.h5"));
  start_ = new QPushButton(QObject::tr("Start"));
  stop_button_ = new QPushButton(QObject::tr("Stop (saves)"));
  stop_button_->setEnabled(false);
  label_ = new QLabel(QObject::tr("the run writes its checkpoint (with history and embedding snapshots) as it goes, and "
                                  "opens it here when it ends"));
  label_->setWordWrap(true);
  plot_ = ctx.plot("training");
  widget_ = new QWidget;
  auto* tl = new QVBoxLayout(widget_);
  auto* form = new QFormLayout;
  form->addRow(QObject::tr("model"), row({preset_, model_}));
  form->addRow(QObject::tr("task"), task_);
  form->addRow(QObject::tr("steps"), row({steps_, new QLabel(QObject::tr("batch")), batch_, new QLabel(QObject::tr("lr")), lr_}));
  form->addRow(QObject::tr("checkpoint"), row({out_, start_, stop_button_}));
  tl->addLayout(form);
  tl->addWidget(plot_, 1);
  tl->addWidget(label_);
  QObject::connect(start_, &QPushButton::clicked, widget_, [this] { start(); });
  QObject::connect(stop_button_, &QPushButton::clicked, widget_, [this] { stop(); });
}

TrainingPanel::~TrainingPanel() { close(); }

void TrainingPanel::close() {
  stop_ = true;  // a training run saves its checkpoint and stops
  if (thread_.joinable()) thread_.join();
}

void TrainingPanel::setSettings(const QString& preset, const QString& model_json, const QString& task_json, int steps,
                                int batch, const QString& out) {
  preset_->setCurrentText(preset);
  model_->setText(model_json);
  task_->setText(task_json);
  steps_->setValue(steps);
  batch_->setValue(batch);
  out_->setText(out);
}

bool TrainingPanel::start() {
  if (running_) return false;
  if (thread_.joinable()) thread_.join();
  TrainingRequest r;
  r.preset = preset_->currentText().toStdString();
  r.model_json = model_->text().toStdString();
  r.task_json = task_->text().toStdString();
  r.steps = steps_->value();
  r.batch = batch_->value();
  bool ok = false;
  r.lr = lr_->text().toDouble(&ok);
  if (!ok || r.lr <= 0) {
    ctx_.error(QObject::tr("training"), QObject::tr("the learning rate '%1' is not a positive number").arg(lr_->text()));
    return false;
  }
  r.out = out_->text().trimmed().toStdString();
  r.eval_every = std::max<int64_t>(10, r.steps / 60);
  if (QFile::exists(out_->text().trimmed()) && !quiet &&
      QMessageBox::question(widget_, QObject::tr("Training"), QObject::tr("%1 exists. Overwrite it?").arg(out_->text())) !=
          QMessageBox::Yes)
    return false;
  steps_x_.clear();
  loss_.clear();
  acc_.clear();
  // The curves' record: this run's settings (no input, no interventions: they do not touch training).
  QJsonObject figure{{"view", "training curves"}, {"preset", qs(r.preset)}, {"model", qs(r.model_json)},
                     {"task", qs(r.task_json)}, {"steps", static_cast<qint64>(r.steps)},
                     {"batch", static_cast<qint64>(r.batch)}, {"lr", r.lr}, {"seed", static_cast<qint64>(r.seed)}};
  record_ = QJsonDocument(QJsonObject{{"checkpoint", qs(r.out)}, {"run", "training"}, {"figure", figure}})
                .toJson(QJsonDocument::Compact).toStdString();
  stop_ = false;
  running_ = true;
  start_->setEnabled(false);
  stop_button_->setEnabled(true);
  label_->setText(QObject::tr("starting…"));
  thread_ = std::thread([this, r] {
    init_thread();
    std::string summary, error;
    try {
      summary = run_training(r, [this](const TrainingPoint& p) {
        QMetaObject::invokeMethod(widget_, [this, p] { point(p); }, Qt::QueuedConnection);
      }, &stop_);
    } catch (const std::exception& e) {
      error = describe_error(e);
    }
    QMetaObject::invokeMethod(widget_, [this, summary, error, out = r.out] { finished(summary, error, out); },
                              Qt::QueuedConnection);
  });
  return true;
}

void TrainingPanel::point(const TrainingPoint& p) {
  if (p.evaluated || steps_x_.empty() || p.step - steps_x_.back() >= 5) {
    steps_x_.push_back(static_cast<double>(p.step));
    loss_.push_back(p.loss);
    acc_.push_back(p.evaluated ? p.accuracy : NAN);
    plot_->showCurves(steps_x_, {{"loss", loss_}, {"eval accuracy", acc_}}, QObject::tr("step"), QObject::tr("training"));
    plot_->setRecord(record_);
  }
  label_->setText(QObject::tr("step %1 / %2   loss %3   accuracy %4   %5 examples/s   %6 s left")
                      .arg(p.step).arg(p.steps).arg(num(p.loss, 4)).arg(p.accuracy < 0 ? "—" : num(p.accuracy))
                      .arg(p.examples_per_s, 0, 'f', 0).arg(p.eta_s, 0, 'f', 0));
}

void TrainingPanel::finished(const std::string& summary, const std::string& error, const std::string& out) {
  running_ = false;
  start_->setEnabled(true);
  stop_button_->setEnabled(false);
  if (!error.empty()) {
    label_->setText(QObject::tr("failed: %1").arg(qs(error)));
    ctx_.error(QObject::tr("training"), qs(error));
    return;
  }
  label_->setText(qs(summary));
  ctx_.open(qs(out));  // its embedding snapshots can be scrubbed in the Embeddings panel
}

}  // namespace mechscope::app
