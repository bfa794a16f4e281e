// Internal header of the train plugin: one registration function per component file, and the
// small protocols between this plugin's loops, steps, callbacks and metrics. None of this is SDK:
// components from other plugins only see the interfaces of ktf/components.h.
#pragma once

#include <ktf/registry.h>
#include <ktf/train.h>

#include <filesystem>
#include <optional>
#include <string>

namespace ktf::train {

void register_accuracy(Registrar& r);
void register_classification_metrics(Registrar& r);
void register_regression_metrics(Registrar& r);
void register_keras_train_loop(Registrar& r);
void register_custom_train_loop(Registrar& r);
void register_supervised_step(Registrar& r);
void register_progress_bar(Registrar& r);
void register_csv_logger(Registrar& r);
void register_json_logger(Registrar& r);
void register_model_checkpoint(Registrar& r);
void register_early_stopping(Registrar& r);
void register_terminate_on_nan(Registrar& r);
void register_learning_rate_logger(Registrar& r);
void register_tensorboard(Registrar& r);

/// A callback of this plugin. The loop asks it, batch by batch, whether it needs that batch's
/// logs: computing them reads the running loss and metrics back to the host (a device sync), so
/// the loop does it only at batches some callback asked for and passes empty logs otherwise.
class LoopCallback : public Callback {
 public:
  /// True when on_batch_end(ctx, batch, logs) needs `logs` filled at this batch.
  virtual bool wants_batch_logs(const TrainContext& /*ctx*/, int64_t /*batch*/) { return false; }
  /// Called by the loop before on_train_begin: planned batches per epoch (-1 when unknown) and
  /// the number of epochs.
  virtual void on_plan(int64_t /*steps_per_epoch*/, int64_t /*num_epochs*/) {}
  /// True for ktf.callbacks.ProgressBar (the loop then adds no default progress bar).
  virtual bool prints_progress() const { return false; }
};

/// A train step of this plugin: besides the loss it reports the batch output (for the train
/// metrics) and whether the call ran optimizer.step() (gradient accumulation skips some).
class ReportingStep : public TrainStep {
 public:
  /// Output of the last step(), detached; undefined when the step does not expose it.
  torch::Tensor last_output;
  /// Whether the last step() ran the optimizer.
  bool last_stepped = true;
  /// Applies gradients still accumulated at the end of an epoch; true when it stepped.
  virtual bool finish_epoch(TrainContext& /*ctx*/) { return false; }
};

/// The standard supervised step (ktf.train.steps.Supervised): forward, loss, backward, optional
/// gradient-norm clipping, optimizer step every `grad_accumulation` batches.
std::shared_ptr<ReportingStep> make_supervised_step(std::optional<double> clip_grad_norm,
                                                    int64_t grad_accumulation);

/// A metric that has more to say than its scalar (ConfusionMatrix): the loop writes report()
/// (a JSON value) per epoch and phase to <run_dir>/<report_file()>.
class ReportingMetric : public Metric {
 public:
  virtual std::string report_file() const = 0;
  virtual Json report() const = 0;
};

/// `path` made absolute against `run_dir` when relative.
std::filesystem::path resolve_run_path(const std::filesystem::path& run_dir,
                                       const std::string& path);

/// Keras's monitor modes: "min", "max", or "auto" (max for accuracy-like names, else min).
class Monitor {
 public:
  Monitor(std::string key, const std::string& mode);
  const std::string& key() const { return key_; }
  bool maximize() const { return maximize_; }
  /// True when `current`, less `min_delta` in the improving direction, beats `reference`.
  bool improved(double current, double reference, double min_delta = 0) const;
  /// The starting best value (+inf for min, -inf for max).
  double worst() const;

 private:
  std::string key_;
  bool maximize_ = false;
};

/// "%.17g"-style shortest text that parses back to the same double ("nan", "inf" otherwise).
std::string format_double(double value);

}  // namespace ktf::train
