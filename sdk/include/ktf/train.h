// ktf/train.h — what a train loop, train step or callback sees while a cycle runs.
//
// The Environment builds a cycle's dataset, model, loss, metrics, optimizer and schedule, puts
// them in a TrainContext and hands it to the cycle's TrainLoop:
//
//   ktf::Logs MyLoop::run(ktf::TrainContext& ctx) {
//     auto& data = *ctx.train_data;
//     data.start_epoch(0);
//     while (auto batch = data.next()) {
//       auto loss = ctx.loss->compute(ctx.model->forward(batch->input), batch->target);
//       ...
//     }
//   }
#pragma once

#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ktf/components.h"
#include "ktf/registry.h"

namespace ktf {

class TrainContext {
 public:
  int cycle = 0;       ///< 0-based index of the running cycle
  int num_cycles = 1;  ///< cycles in the run
  torch::Device device = torch::kCPU;
  uint64_t seed = 0;
  bool quiet = false;
  std::filesystem::path run_dir;

  std::shared_ptr<Network> model;
  std::shared_ptr<Dataset> dataset;
  std::shared_ptr<BatchStream> train_data;
  std::shared_ptr<BatchStream> valid_data;  ///< may be null
  std::shared_ptr<Loss> loss;
  std::shared_ptr<Optimizer> optimizer;
  std::shared_ptr<LrSchedule> lr_schedule;  ///< may be null
  std::vector<std::shared_ptr<Metric>> metrics;
  /// Components of plugin-declared cycle keys, by key.
  std::map<std::string, std::vector<std::shared_ptr<void>>> extras;
  /// Builds nested components (callbacks, train steps) with the cycle's context.
  BuildContext* builder = nullptr;

  /// Set by a callback (EarlyStopping, TerminateOnNaN) to end the cycle after the current batch.
  bool stop_training = false;
  int64_t epoch = 0;        ///< current epoch within the cycle
  int64_t global_step = 0;  ///< optimizer steps since the cycle began
  /// Epochs and optimizer steps of the run's earlier cycles, so that logs which span the run
  /// (TensorBoard) can number epochs and steps continuously across cycles.
  int64_t epochs_before = 0;
  int64_t steps_before = 0;
  /// Memory format the model's 4-D inputs should have (see choose_memory_format); loops pass
  /// every batch input through to_device().
  torch::MemoryFormat input_format = torch::MemoryFormat::Contiguous;

  /// Prints a line (unless quiet) and appends it to the run's log.txt.
  void log(const std::string& line) const;
  /// On a terminal rewrites one progress line; elsewhere prints only final lines.
  void progress(const std::string& line, bool final) const;
  /// True when stdout is a terminal.
  bool is_tty() const;
  /// Appends {"cycle","epoch","phase",...logs} to metrics.jsonl.
  void record(const std::string& phase, int64_t epoch, const Logs& logs) const;
  /// True once SIGINT/SIGTERM was received: loops stop after the current batch.
  static bool interrupted();
  /// Saves model, optimizer and position to run_dir/checkpoints/ atomically.
  void save_checkpoint(const std::string& tag) const;

  /// Set by the Environment: appends a line to log.txt.
  std::function<void(const std::string&)> log_sink;
  std::function<void(const std::string&, int64_t, const Logs&)> record_sink;
};

/// Sets or clears the interrupt flag (used by the signal handler and tests).
void request_interrupt(bool value = true);

/// Seconds since this process started (from /proc; -1 where unavailable). Used to report the
/// start-up time to the first training step.
double seconds_since_process_start();

/// Number of parameters (elements) of a module; `trainable_only` counts requires_grad ones.
int64_t count_parameters(torch::nn::Module& module, bool trainable_only = false);

/// A batch tensor on `device` (copied without blocking when it is elsewhere), and a 4-D one in
/// `format`: inputs go in TrainContext::input_format, targets in the default.
torch::Tensor to_device(const torch::Tensor& x, torch::Device device,
                        torch::MemoryFormat format = torch::MemoryFormat::Contiguous);

/// Converts a model's 4-D parameters and buffers to the memory format `mode` names and returns
/// it: "contiguous" (NCHW, the default) or "channels_last" (NHWC, which oneDNN's convolutions and
/// libtorch's pooling may prefer). Values are unchanged; only strides differ. Throws ktf::Error for
/// another mode. (Measured on the 2-core development machine, NHWC made the benchmark CNN slower,
/// 17.2 against 14.8 ms per step, and ResNet-18 no faster within noise: see docs/benchmarks.md.)
torch::MemoryFormat choose_memory_format(Network& model, const std::string& mode);

}  // namespace ktf
