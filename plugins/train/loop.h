// The epoch machinery shared by ktf.train.KerasTrainLoop and ktf.train.CustomTrainLoop: freezing,
// epochs of train steps, validation, logs, callbacks and stopping, on the SDK's training protocol
// (ktf/train.h). The two loops differ only in the TrainStep they run.
#pragma once

#include <ktf/registry.h>
#include <ktf/train.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "train.h"
#include "weight_average.h"

namespace ktf::train {

/// Arguments of both loops (each registers the ones it takes).
struct LoopOptions {
  int64_t num_epochs = 1;                     ///< epochs to train
  std::optional<int64_t> steps_per_epoch;     ///< batches per epoch; null = the whole train split
  std::optional<int64_t> num_valid_steps;     ///< validation batches; null = the whole split
  int64_t valid_freq = 1;                     ///< validate every N epochs (and after the last)
  std::vector<Ref<Callback>> callbacks;       ///< Keras-style callbacks
  std::vector<std::string> freeze_submodels;  ///< submodules to freeze, "@"-scoped
  int64_t verbose = 1;                        ///< 0 silent, 1 progress bar, 2 one line per epoch
  std::string precision = "fp32";             ///< fp32 | bf16 | fp16 (TrainContext::precision)
  std::optional<bool> loss_scaling;           ///< dynamic loss scaling; null = with fp16 only
  std::optional<bool> cuda_graphs;            ///< TrainContext::cuda_graphs; null = automatic
  std::optional<double> clip_grad_norm;       ///< KerasTrainLoop: clip the global gradient norm
  int64_t grad_accumulation = 1;              ///< KerasTrainLoop: batches per optimizer step
  Ref<TrainStep> train_step;                  ///< CustomTrainLoop: the step; null = Supervised
  std::optional<JsonObject> ema;              ///< {"decay", "warmup", "start_step"} (WeightAverage)
  std::optional<JsonObject> swa;              ///< {"start_epoch"} (WeightAverage)
};

/// Adds the arguments both loops share to `d`.
template <class Options>
Definition<TrainLoop, Options>& common_loop_args(Definition<TrainLoop, Options>& d) {
  return d.template arg<int64_t>("num_epochs", &Options::num_epochs, "epochs to train")
      .min(0)
      .template arg<std::optional<int64_t>>("steps_per_epoch", &Options::steps_per_epoch,
                                            "batches per epoch; null = the whole train split")
      .min(1)
      .template arg<std::optional<int64_t>>("num_valid_steps", &Options::num_valid_steps,
                                            "validation batches per validation; null = all")
      .min(0)
      .template arg<int64_t>("valid_freq", &Options::valid_freq,
                             "validate every N epochs (and always after the last epoch)")
      .min(1)
      .template arg<std::vector<Ref<Callback>>>("callbacks", &Options::callbacks,
                                                "Keras-style callbacks, run in order")
      .template arg<std::vector<std::string>>(
          "freeze_submodels", &Options::freeze_submodels,
          "submodules to freeze; nested names scoped with '@', e.g. base_model@layer1")
      .template arg<int64_t>("verbose", &Options::verbose,
                             "0 silent, 1 progress bar, 2 one line per epoch")
      .min(0)
      .max(2)
      .template arg<std::string>(
          "precision", &Options::precision,
          "fp32; bf16: the model under autocast to bfloat16 with fp32 weights, loss and "
          "metrics; fp16 (CUDA only): autocast to float16 with dynamic loss scaling "
          "(--precision overrides it)")
      .choices({"fp32", "bf16", "fp16"})
      .template arg<std::optional<bool>>(
          "loss_scaling", &Options::loss_scaling,
          "dynamic loss scaling (scale 2^16, halved after a step with Inf/NaN gradients, which "
          "is skipped, doubled after 2000 clean steps); null = on with fp16 only")
      .template arg<std::optional<bool>>(
          "cuda_graphs", &Options::cuda_graphs,
          "capture the train step in CUDA graphs and replay it (static-shape batches, the flat "
          "Adam/AdamW, no loss scaling, one process): null = automatically for the built-in "
          "step, true = also a plugin's step, false = never; the reason they are off is logged")
      .template arg<std::optional<JsonObject>>(
          "ema", &Options::ema,
          "exponential moving average of the weights after every optimizer step, {\"decay\": "
          "0.999, \"warmup\": false, \"start_step\": 0}: validation, epoch-end callbacks and "
          "the saved weights use it (raw weights: weights/cycle-<k>.raw.pt); null = off")
      .template arg<std::optional<JsonObject>>(
          "swa", &Options::swa,
          "stochastic weight averaging, {\"start_epoch\": 1}: the mean of the weights at the end "
          "of each epoch from start_epoch on, used as ema's average is; null = off");
}

class LoopRunner : public TrainLoop {
 public:
  /// Builds the callbacks with `ctx`; `step` runs each training batch.
  LoopRunner(const LoopOptions& options, BuildContext& ctx, std::shared_ptr<TrainStep> step);

  /// Makes every parameter trainable, then freezes `freeze_submodels`.
  void prepare(TrainContext& ctx) override;
  Logs run(TrainContext& ctx) override;
  /// The loop's position (phase, epoch, the training pass's running sums, the epoch's logs), the
  /// train step's state and the lengths of the metric report files.
  void save_state(State& state) override;
  void load_state(const State& state) override;

 private:
  struct Pass {
    torch::Tensor loss_sum;  ///< sum of batch loss x batch size (double, on the device)
    int64_t examples = 0;
    int64_t batches = 0;
    bool have_outputs = true;  ///< metrics were updated (the step returned its outputs)
    /// Sums of the step's named values (double, on the device) and how many batches gave each.
    std::vector<std::pair<std::string, std::pair<torch::Tensor, int64_t>>> values;
    /// Adds a batch's scalar loss weighted by its size: one in-place op, no host sync.
    void add_loss(const torch::Tensor& loss, int64_t n);
    void add_values(const std::vector<std::pair<std::string, torch::Tensor>>& step_values);
  };
  /// Wall time, examples and batches of the last training pass (written to metrics.jsonl).
  struct Timing {
    double seconds = 0;
    int64_t examples = 0;
    int64_t batches = 0;
  };
  /// Where the loop is: an epoch's training batches, its validation, or the epoch is done.
  enum class Phase { Train, Validate, Done };
  Phase phase_ = Phase::Done;
  int64_t epoch_ = -1;
  bool resumed_ = false;       ///< load_state() ran: run() continues from phase_ and epoch_
  Pass pass_;                  ///< the running training pass
  Logs logs_;                  ///< the epoch's logs once its training pass is done
  double seconds_before_ = 0;  ///< training seconds of this epoch before a resume
  std::chrono::steady_clock::time_point pass_started_ = std::chrono::steady_clock::now();
  /// The metrics' report files (relative to the run directory) and, after a resume, the lengths
  /// they had at the checkpoint.
  std::vector<std::string> report_files_;
  std::filesystem::path run_dir_;
  std::vector<std::pair<std::string, int64_t>> report_restore_;
  /// The RNGs when validation started: validation leaves them as it found them, and a run resumed
  /// during validation starts it again from them.
  State rng_before_validation_;
  void restore_report_files(TrainContext& ctx);
  Timing last_timing_;
  double first_step_ = -1;  ///< seconds from process start to the run's first step, once
  void train_epoch(TrainContext& ctx, int64_t epoch, Logs& logs, bool resume);
  void validate(TrainContext& ctx, int64_t epoch, Logs& logs, bool resumed);
  void add_metric_logs(TrainContext& ctx, int64_t epoch, const std::string& phase,
                       const std::string& prefix, Logs& logs);
  Logs running_logs(const Pass& pass);
  /// The pass summed over the ranks of a distributed run (the pass itself when alone).
  static Pass job_pass(const TrainContext& ctx, const Pass& pass);

  LoopOptions options_;
  std::shared_ptr<TrainStep> step_;
  std::vector<std::shared_ptr<Callback>> callbacks_;
  std::vector<std::shared_ptr<torch::nn::Module>> frozen_norms_;
  std::optional<WeightAverage> average_;  ///< ema or swa
};

/// The progress bar KerasTrainLoop adds for verbose 1 and 2 (ktf.callbacks.ProgressBar).
std::shared_ptr<Callback> make_progress_bar(int64_t verbose, double interval);

}  // namespace ktf::train
