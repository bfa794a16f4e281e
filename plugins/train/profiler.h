// The train plugin's profiler (ktf.callbacks.Profiler, and TensorBoard's profile_batch): the
// operators libtorch runs during a window of training batches, recorded through RecordFunction
// callbacks (libtorch 1.13 and 2.x alike, with or without Kineto), written as a Chrome trace in
// the format of PyTorch's profiler (Kineto's JSON) where TensorBoard's PyTorch profiler plugin
// (torch-tb-profiler) looks: <log_dir>/plugins/profile/cycle-<k>/<host>_<pid>.<ms>.pt.trace.json.
// Perfetto (ui.perfetto.dev) and chrome://tracing open the same file.
#pragma once

#include <ktf/train.h>

#include <filesystem>
#include <memory>
#include <string>

namespace ktf::train {

/// Batches `first` to `last` (1-based, counted over a cycle's training batches) of a cycle.
struct ProfileWindow {
  int64_t first = 0, last = -1;
  bool empty() const { return first <= 0 || last < first; }
};

/// Records its window's batches: call its hooks from a callback's.
class BatchProfiler {
 public:
  BatchProfiler(ProfileWindow window, std::filesystem::path log_dir);
  ~BatchProfiler();
  BatchProfiler(const BatchProfiler&) = delete;
  BatchProfiler& operator=(const BatchProfiler&) = delete;

  void on_epoch_begin(TrainContext& ctx);
  /// Recording pauses from an epoch's end to the next epoch's start (validation is not a step).
  void on_epoch_end(TrainContext& ctx);
  void on_batch_end(TrainContext& ctx);
  void on_train_end(TrainContext& ctx);
  /// Training batches of the cycle seen so far (a resumed cycle continues the count).
  int64_t batches_seen() const { return seen_; }
  void set_batches_seen(int64_t n) { seen_ = n; }

  /// The window's operators while it records (profiler.cpp); public for the RecordFunction
  /// callbacks, which are plain functions.
  struct Recording;

 private:
  void start(TrainContext& ctx);
  void finish(TrainContext& ctx);
  static void attach(Recording& r);
  static void detach(Recording& r);
  ProfileWindow window_;
  std::filesystem::path log_dir_;
  int64_t seen_ = 0;
  std::unique_ptr<Recording> recording_;
};

}  // namespace ktf::train
