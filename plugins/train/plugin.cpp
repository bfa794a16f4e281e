// The train plugin: train loops and steps, metrics and callbacks.
#include <ktf/plugin.h>

#include "train.h"

namespace {
void register_all(ktf::Registrar& r) {
  using namespace ktf::train;
  register_keras_train_loop(r);
  register_custom_train_loop(r);
  register_supervised_step(r);
  register_accuracy(r);
  register_classification_metrics(r);
  register_regression_metrics(r);
  register_progress_bar(r);
  register_csv_logger(r);
  register_json_logger(r);
  register_model_checkpoint(r);
  register_early_stopping(r);
  register_terminate_on_nan(r);
  register_learning_rate_logger(r);
  register_tensorboard(r);
  register_profiler(r);
  r.add_cycle_default("train_loop",
                      ktf::Json::object({{"ktf.train.KerasTrainLoop", ktf::Json::object()}}));
}
}  // namespace

KTF_PLUGIN("ktf_train", KTF_SDK_VERSION,
           "Train loops and steps, metrics, callbacks (progress, loggers, checkpoints, early "
           "stopping, TensorBoard)",
           register_all)
