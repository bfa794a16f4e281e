// Internal header of the train plugin: one registration function per component file and the
// helpers its components share. The training protocol itself (step results, the backward/step
// service, callback hooks) is the SDK's (ktf/train.h), the same for every plugin.
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
void register_profiler(Registrar& r);

/// The standard supervised step (ktf.train.steps.Supervised): forward, loss, and the SDK's
/// backward_and_step(), with `settings` when given and else the loop's (TrainContext).
std::shared_ptr<TrainStep> make_supervised_step(std::optional<StepSettings> settings);

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
