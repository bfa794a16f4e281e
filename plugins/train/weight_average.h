// The train loops' weight averaging: `ema` (an exponential moving average of the weights, updated
// after every optimizer step, as Marian's exponential smoothing and MMEngine's EMAHook) and `swa`
// (stochastic weight averaging: the mean of the weights at the end of each epoch from start_epoch
// on, as torch.optim.swa_utils.AveragedModel). Validation, the epoch-end callbacks
// (ModelCheckpoint, EarlyStopping) and the cycle's saved weights use the averages; training goes on
// with the raw weights, which the cycle also keeps (weights/cycle-<k>.raw.pt). The averages are the
// loop's state in every checkpoint.
#pragma once

#include <ktf/registry.h>
#include <ktf/train.h>

#include <optional>
#include <string>
#include <vector>

namespace ktf::train {

class WeightAverage {
 public:
  /// From the loop's `ema` and `swa` arguments; nullopt when neither is given. Throws ktf::Error
  /// (a config error) naming the bad key or value.
  static std::optional<WeightAverage> from_options(const std::optional<JsonObject>& ema,
                                                   const std::optional<JsonObject>& swa);

  /// "ema (decay 0.999)" or "swa (from epoch 3)".
  std::string describe() const;
  /// At the start of the loop's run(), after ctx.restore(): averages from the model's weights
  /// unless a checkpoint gave them; a run resumed inside validation gets its raw weights back.
  void begin(Network& model);
  /// EMA: after an optimizer step (global_step is the step's number).
  void after_step(Network& model, int64_t global_step);
  /// SWA: after the training pass of `epoch` (0-based).
  void after_epoch(Network& model, int64_t epoch);
  /// The averages differ from the raw weights: EMA always, SWA once it averaged an epoch.
  bool ready() const;
  /// Puts the averages into the model, keeping the raw weights; swap_out() puts them back.
  void swap_in(Network& model);
  void swap_out(Network& model);
  /// At the end of the cycle: the raw weights go to `raw_path` (when not empty) and the model
  /// keeps the averages. Once per cycle (a cycle resumed after it ran does nothing).
  void finish(Network& model, const std::filesystem::path& raw_path);

  void save_state(State& s) const;
  void load_state(const State& s);

 private:
  std::vector<torch::Tensor> targets(Network& model) const;
  bool ema_ = true;
  double decay_ = 0.999;
  bool warmup_ = false;
  int64_t start_step_ = 0;
  int64_t start_epoch_ = 1;
  std::vector<torch::Tensor> average_, raw_;
  int64_t updates_ = 0;  ///< EMA updates or SWA epochs averaged
  bool finished_ = false;
};

}  // namespace ktf::train
