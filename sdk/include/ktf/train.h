// ktf/train.h — the training protocol: what a train loop, train step or callback sees while a
// cycle runs, and the one service through which every train step applies its gradients.
//
// The engine builds a cycle's dataset, model, loss, metrics, optimizer and schedule, puts them in
// a TrainContext and hands it to the cycle's TrainLoop. A train step (built-in or a plugin's)
// computes the loss and hands it to ctx.backward_and_step(), which owns everything between the
// loss and the updated weights: gradient accumulation, the after-backward callback hook, gradient
// clipping, the optimizer step, the step counter, the per-step learning-rate schedule, the
// gradient all-reduce across ranks and fp16's loss scaling, so a plugin's step gets all of it
// unchanged:
//
//   ktf::StepResult MixupStep::step(ktf::TrainContext& ctx, ktf::Batch& batch) {
//     double lam = ...;
//     auto mixed = lam * batch.input + (1 - lam) * batch.input.roll(1, 0);
//     auto out = ctx.forward(mixed);
//     auto loss = lam * ctx.loss->compute(out, batch.target) +
//                 (1 - lam) * ctx.loss->compute(out, batch.target.roll(1, 0));
//     ctx.backward_and_step(loss);
//     return ktf::StepResult{loss.detach(), out.detach()}.add("lambda", lam);
//   }
//
// Checkpoints and resume: a loop calls ctx.restore() once, after on_train_begin and before its
// first epoch (when the cycle resumes, every component's state is loaded there), and
// ctx.safe_point() between batches: after each training batch's on_batch_end (SafePoint::Step),
// after each validation batch (SafePoint::Validation) and after on_epoch_end (SafePoint::EpochEnd).
// At a safe point the engine may write a checkpoint (every N steps or T minutes, at epoch ends,
// on SIGUSR1), stop the run after writing one (SIGINT, SIGTERM: it throws ktf::Interrupted, which
// the loop lets through) or stop it on a non-finite loss. A loop's position (epoch, batch, the
// running sums of the epoch) is its own state (Stateful): run() continues from what load_state()
// restored. See docs/reliability.md.
//
// Gradients' lifetime: backward_and_step() clears every gradient before the first backward of an
// optimizer step (of an accumulation group), so gradients never leak between steps. They are
// intact from the last backward of the group until the optimizer step: that is when
// Callback::on_after_backward runs. After the step their values are unspecified (released, or
// zeroed in an optimizer's own storage): read gradients in on_after_backward only.
#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ktf/components.h"
#include "ktf/registry.h"

namespace ktf {

class GradientSync;

/// How backward_and_step() turns losses into optimizer steps.
/// Where a loop is when it calls TrainContext::safe_point().
enum class SafePoint {
  Step,        ///< after a training batch's on_batch_end
  Validation,  ///< after a validation batch (only a signal checkpoints here)
  EpochEnd     ///< after on_epoch_end
};

/// Numeric precision of a cycle's forward passes (the train loops' "precision", --precision).
enum class Precision {
  FP32,  ///< everything in float32
  BF16,  ///< the model under libtorch's autocast to bfloat16; weights, loss and metrics in fp32
  FP16   ///< autocast to float16 (CUDA only), with dynamic loss scaling (GradScaler)
};
/// "fp32" -> FP32, "bf16" -> BF16, "fp16" -> FP16; anything else throws ktf::Error naming them.
Precision parse_precision(const std::string& name);
const char* precision_name(Precision precision);

/// Dynamic loss scaling's settings (the defaults are PyTorch's GradScaler's).
struct LossScaleOptions {
  double init_scale = 65536.0;     ///< the first scale (2^16)
  double growth_factor = 2.0;      ///< the scale is multiplied by this after growth_interval ...
  int64_t growth_interval = 2000;  ///< ... optimizer steps in a row with finite gradients
  double backoff_factor = 0.5;     ///< and by this after a step with an Inf or NaN gradient
};

/// Dynamic loss scaling for fp16 training, as PyTorch's torch.amp.GradScaler (which libtorch's C++
/// API lacks): backward runs on loss x scale, so that small fp16 gradients do not flush to zero;
/// the gradients are divided by the scale before anything reads them; a step whose gradients hold
/// an Inf or NaN (the scale was too large) is skipped and the scale backs off; after
/// growth_interval clean steps it grows. TrainContext::backward_and_step() applies it when
/// TrainContext::loss_scaler() is set (precision fp16, or a loop's loss_scaling: true), so plugin
/// train steps get it unchanged. Its state (scale, clean steps, skipped steps) is checkpointed.
class GradScaler : public Stateful {
 public:
  /// Throws ktf::Error when a factor or the interval is out of range.
  explicit GradScaler(LossScaleOptions options = {});
  /// loss x the current scale.
  torch::Tensor scale(const torch::Tensor& loss) const;
  /// Multiplies every gradient by factor / scale, in place, and returns whether all of them are
  /// finite (one read from the device, as PyTorch's GradScaler.step).
  bool unscale(const std::vector<torch::Tensor>& grads, double factor = 1.0);
  /// After an unscale: counts a clean step (growing the scale every growth_interval of them) or
  /// backs off and counts a skipped step.
  void update(bool finite);
  double current_scale() const { return scale_; }
  /// Clean steps since the scale last changed.
  int64_t growth_tracker() const { return growth_tracker_; }
  /// Optimizer steps skipped for Inf/NaN gradients since the scaler was made.
  int64_t skipped_steps() const { return skipped_; }
  const LossScaleOptions& options() const { return options_; }

  void save_state(State& state) override;
  void load_state(const State& state) override;

 private:
  LossScaleOptions options_;
  double scale_;
  int64_t growth_tracker_ = 0;
  int64_t skipped_ = 0;
};

/// Where a training pass's time went, in seconds (TrainContext::step_times), so that "is it
/// input-bound?" is answered without a profiler. The train loops time waiting for the next batch
/// (the data pipeline, and the copy to the device) and the callbacks' batch hooks with the
/// metrics' updates; forward() times the model's training forward passes and backward_and_step()
/// the backward passes (with a distributed job's gradient all-reduce) and the optimizer step
/// (with unscaling and clipping; its on_after_backward hooks count as callbacks). `total` is the
/// wall time of the timed steps: what the parts leave of it is the train step's own work (the
/// loss, a forward it runs without forward(), CUDA graph replays). On a CUDA device kernels run
/// asynchronously: the loops time one step in 16 and set `synchronize` for it, and every part
/// then waits for the device before its clock stops.
struct StepTimes {
  double data = 0, forward = 0, backward = 0, optimizer = 0, callbacks = 0;
  double total = 0;          ///< wall time of the timed steps
  int64_t steps = 0;         ///< steps timed
  bool active = false;       ///< the running step is timed
  bool synchronize = false;  ///< wait for the device before each clock reading (CUDA)
  /// total minus the parts (never negative).
  double other() const;
  /// {"data", ...}, {"forward", ...}, backward, optimizer, callbacks, other: the parts scaled to
  /// add up to `seconds` (the whole pass's time; on CUDA only some steps are timed). Empty when
  /// no step was timed.
  std::vector<std::pair<std::string, double>> parts(double seconds) const;
  /// "data 2% · forward 38% · backward 47% · optimizer 11% · callbacks 1% · other 1%", with
  /// " (input-bound)" after it when input_bound(); empty when no step was timed.
  std::string summary() const;
  /// The steps waited for data at least a fifth of their time: the data pipeline holds training
  /// back (more reader threads, a smaller augmentation, data on a faster disk).
  bool input_bound() const;
  /// A loop calls start_step() before it fetches the batch of step `index` (on a CUDA device only
  /// every 16th step is timed) and end_step() after the step's callbacks.
  void start_step(torch::Device device, int64_t index);
  void end_step(torch::Device device);
  std::chrono::steady_clock::time_point step_started{};
};

/// Waits for the work queued on `device` (a CUDA device); a no-op on the CPU.
void synchronize_device(torch::Device device);

/// Adds the time from its construction to its destruction to one part of `times` (e.g.
/// &StepTimes::callbacks) when the running step is timed and `on` holds, waiting for the device
/// first when the step asks for it. A loop of a plugin's own times its parts with it.
class TimedPart {
 public:
  TimedPart(StepTimes& times, double StepTimes::*part, torch::Device device, bool on = true);
  ~TimedPart();
  TimedPart(const TimedPart&) = delete;
  TimedPart& operator=(const TimedPart&) = delete;

 private:
  StepTimes& times_;
  double StepTimes::*part_;
  torch::Device device_;
  bool on_;
  std::chrono::steady_clock::time_point start_;
};

struct StepSettings {
  int64_t accumulation = 1;              ///< batches whose gradients are summed per step (>= 1)
  std::optional<double> clip_grad_norm;  ///< clip the global L2 gradient norm; null = off
};

class TrainContext {
 public:
  int cycle = 0;       ///< 0-based index of the running cycle
  int num_cycles = 1;  ///< cycles in the run
  torch::Device device = torch::kCPU;
  uint64_t seed = 0;
  bool quiet = false;
  /// --dry-run: the engine gives the loop one batch per split; a loop runs one epoch only.
  bool dry_run = false;
  std::filesystem::path run_dir;

  std::shared_ptr<Network> model;
  std::shared_ptr<Dataset> dataset;
  std::shared_ptr<BatchStream> train_data;
  std::shared_ptr<BatchStream> valid_data;  ///< may be null
  std::shared_ptr<Loss> loss;
  std::shared_ptr<Optimizer> optimizer;
  std::shared_ptr<LrSchedule> lr_schedule;  ///< may be null
  std::vector<std::shared_ptr<Metric>> metrics;
  /// The loop's callbacks, set by the loop before on_train_begin; backward_and_step() calls their
  /// on_after_backward.
  std::vector<std::shared_ptr<Callback>> callbacks;
  /// Components of plugin-declared cycle keys, by key.
  std::map<std::string, std::vector<std::shared_ptr<void>>> extras;
  /// Builds nested components (callbacks, train steps) with the cycle's context.
  BuildContext* builder = nullptr;
  /// Config path of the model ("cycle 1 › model › ktf.networks.MLP"), named by forward()'s errors.
  std::vector<std::string> model_path;

  /// Set by a callback (EarlyStopping, TerminateOnNaN) to end the cycle after the current batch.
  bool stop_training = false;
  int64_t epoch = 0;             ///< current epoch within the cycle
  int64_t batch = 0;             ///< index of the current batch within the epoch
  int64_t global_step = 0;       ///< optimizer steps since the cycle began
  int64_t num_epochs = 0;        ///< epochs the loop plans to run (set before on_train_begin)
  int64_t steps_per_epoch = -1;  ///< batches per epoch the loop plans, -1 when unknown
  /// Epochs and optimizer steps of the run's earlier cycles, so that logs which span the run
  /// (TensorBoard) can number epochs and steps continuously across cycles.
  int64_t epochs_before = 0;
  int64_t steps_before = 0;
  /// True while a resumed cycle starts: on_train_begin runs before the checkpoint's state is
  /// loaded (restore()), so a callback that opens a log file appends to it instead of emptying it
  /// (RunLog::open(path, !ctx.resuming)). False on a fresh cycle and after restore().
  bool resuming = false;
  /// When the run first started (Unix seconds; kept by resumed runs): a stable name part for
  /// files a run keeps appending to (TensorBoard event files).
  int64_t run_started = 0;
  /// Stop on a NaN or Inf loss (the cycle's checkpoint.stop_on_nonfinite). On the CPU the loss
  /// is checked before backward; on a GPU the check is read at the next safe point.
  bool stop_on_nonfinite = true;
  /// Memory format the model's 4-D inputs should have (see choose_memory_format); loops pass
  /// every batch input through to_device().
  torch::MemoryFormat input_format = torch::MemoryFormat::Contiguous;
  /// What backward_and_step(loss) does; the train loop sets it from its arguments.
  StepSettings step_settings;
  /// The running training pass's step-time breakdown; the loops reset it at each epoch.
  StepTimes step_times;
  /// Precision of forward(). BF16 runs the model under libtorch's autocast (matrix products and
  /// convolutions in bfloat16 on the CPU, the ops autocast keeps in fp32 in fp32), keeps the
  /// weights (the optimizer's master copy) in fp32 and returns the output as fp32, so a loss,
  /// softmax and metrics compute in fp32. Gradients reach the fp32 weights through autocast's
  /// casts, so backward_and_step() and the optimizers are unchanged. The engine sets it from
  /// --precision; a loop applies its own "precision" argument with use_precision().
  Precision precision = Precision::FP32;
  /// True when --precision set `precision`: it then wins over the loop's argument.
  bool precision_from_command_line = false;
  /// A distributed run (ktf/distributed.h): this process's rank and the job's number of ranks
  /// (0 and 1 when it runs alone). Every rank runs the same loop on its shard of the data; only
  /// rank 0 (is_main()) writes the run directory and prints: on the other ranks `run_dir` is a
  /// scratch directory removed at exit and `quiet` is set.
  int rank = 0;
  int world_size = 1;
  bool is_main() const { return rank == 0; }
  /// Sums each tensor across ranks, in place; a no-op alone. Collective: every rank calls it at
  /// the same point (a loop's epoch end). Loops sum their running loss and counts with it.
  void all_reduce_sum(std::vector<torch::Tensor>& tensors) const;
  /// Makes `metric` hold the job's sums: its saved state is summed across ranks (State::add:
  /// numbers and tensors added up) and loaded back, so compute() gives the global figure. A no-op
  /// alone. Collective, as all_reduce_sum.
  void all_reduce_metric(Metric& metric) const;
  /// Copies rank 0's model buffers (BatchNorm's running statistics) to every rank; a no-op
  /// alone. forward() does it before every training forward; loops call it before validation, so
  /// that every rank validates rank 0's model. Collective, as all_reduce_sum.
  void broadcast_buffers();
  /// A loop's "precision" argument ("fp32", "bf16" or "fp16"), unless --precision was given.
  /// Warns once per process, naming what is missing, when bf16 runs on a CPU without bf16
  /// instructions; fp16 needs a CUDA device (ktf::Error, exit code 2, elsewhere). Loss scaling
  /// follows: `loss_scaling` true or false turns it on or off, null (the default) turns it on for
  /// fp16 only.
  void use_precision(const std::string& name, std::optional<bool> loss_scaling = std::nullopt,
                     const LossScaleOptions& scaling = {});
  /// The loss scaler backward_and_step() applies; null when loss scaling is off.
  GradScaler* loss_scaler() const { return scaler_.get(); }

  /// The model's forward pass in `precision`; an error inside it names the model's config path.
  torch::Tensor forward(const torch::Tensor& input);

  /// CUDA graphs for the train step (a loop's cuda_graphs argument): null = automatic (the
  /// built-in Supervised step, on CUDA, where nothing below rules them out), true = also a
  /// plugin's step (its author vouches it is capturable), false = never.
  std::optional<bool> cuda_graphs;
  /// A train step's forward, loss and backward_and_step() on a batch: returns {loss, output}.
  using StepBody = std::function<std::pair<torch::Tensor, torch::Tensor>(const Batch&)>;
  /// Runs `body` on `batch` through CUDA graphs when they apply, and returns its {loss, output}
  /// (copies, valid after the next step); nullopt when they do not, and the step then calls
  /// body(batch) itself. The first three steps run eagerly on a side stream (warm-up), the fourth
  /// is captured: forward, loss and backward in one graph, gradient clipping and the optimizer
  /// step in a second; on_after_backward runs between the two, eagerly, at every step. Later steps
  /// copy the batch into the captured input and replay both graphs: a few launches instead of
  /// hundreds of kernels. They need a CUDA device, static shapes (a batch of another shape, such
  /// as a short last batch, runs eagerly), a capturable optimizer (ktf::CapturableOptimizer: the
  /// flat Adam and AdamW), one batch per optimizer step, no loss scaling and no distributed job;
  /// the reason they are off is logged once ("cuda graphs: off: ..."). The capture waits for a
  /// batch as large as the largest warm-up one (not a short last batch). A capture that fails
  /// (the step read the host) stops the run with ktf::Error (exit code 1) naming cuda_graphs:
  /// false as the way out. `built_in`: the caller is ktf's Supervised step.
  std::optional<std::pair<torch::Tensor, torch::Tensor>> run_graphed(const Batch& batch,
                                                                     const StepBody& body,
                                                                     bool built_in = false);

  /// The backward/step service. Runs backward on `loss` (divided by the accumulation count), and
  /// once `accumulation` batches have been accumulated: calls every callback's on_after_backward,
  /// clips, steps the optimizer, counts the step (global_step) and advances the per-step schedule.
  /// Returns true when it stepped the optimizer. In a distributed run the last backward of each
  /// group averages the gradients across ranks while it runs (c10d's Reducer, in buckets), so
  /// on_after_backward, clipping and the step see the job's gradients; the earlier backwards of
  /// a group accumulate locally, without communication. With a loss scaler (fp16), backward runs
  /// on the scaled loss and the gradients are unscaled before on_after_backward; a step whose
  /// gradients hold an Inf or NaN skips clipping and the optimizer (the scale backs off) but still
  /// counts as a step for global_step and the schedule, as PyTorch's GradScaler loops do.
  bool backward_and_step(const torch::Tensor& loss);
  bool backward_and_step(const torch::Tensor& loss, const StepSettings& settings);
  /// Applies gradients still accumulated at the end of an epoch (a partial group, rescaled to its
  /// mean). Returns true when it stepped. Loops call it after an epoch's last batch.
  bool finish_accumulation();
  /// Backward passes accumulated since the last optimizer step.
  int64_t pending_backwards() const { return pending_; }

  /// Prints a line (unless quiet) and appends it to the run's log.txt.
  void log(const std::string& line) const;
  /// On a terminal rewrites one progress line; elsewhere prints only final lines.
  void progress(const std::string& line, bool final) const;
  /// True when stdout is a terminal.
  bool is_tty() const;
  /// Appends {"cycle","epoch","phase",...logs} to metrics.jsonl; `epoch` is 0-based (as the
  /// hooks get it), the line counts cycles and epochs from 1.
  void record(const std::string& phase, int64_t epoch, const Logs& logs) const;
  /// True once SIGINT/SIGTERM was received: the next safe point checkpoints and stops.
  static bool interrupted();

  /// Loads the checkpoint's state into every component when this cycle resumes (a no-op on a
  /// fresh cycle). Loops call it once, after on_train_begin and before the first epoch.
  void restore();
  /// A point between batches where the engine may checkpoint or stop the run (see the top of
  /// this file). Throws ktf::Interrupted (exit code 130) after a signal's checkpoint.
  void safe_point(SafePoint where);
  /// Throws ktf::Error (exit code 1) when a loss seen by backward_and_step() was NaN or Inf
  /// (waits for the device). The engine calls it before every checkpoint.
  void check_finite();
  /// True once a non-finite loss stopped the run (check_finite or backward_and_step threw).
  bool saw_nonfinite_loss() const { return saw_nonfinite_; }

  /// Set by the engine: appends a line to log.txt.
  std::function<void(const std::string&)> log_sink;
  std::function<void(const std::string&, int64_t, const Logs&)> record_sink;
  std::function<void()> restore_hook;
  std::function<void(SafePoint)> safe_point_hook;

 private:
  void apply_gradients(const StepSettings& settings, double scale);
  void note_loss(const torch::Tensor& loss);
  void backward(const torch::Tensor& loss, bool sync);
  std::shared_ptr<GradientSync> sync_;  ///< the Reducer of a distributed run, made at first use
  std::shared_ptr<GradScaler> scaler_;  ///< loss scaling (fp16); null = off
  struct Graphs;
  std::shared_ptr<Graphs> graphs_;  ///< CUDA graph state (run_graphed), made at first use
  /// The optimizer in capturable mode (CUDA graphs): its learning rate is refreshed every step.
  CapturableOptimizer* capturable_ = nullptr;
  std::string graphs_off_reason(bool built_in);
  int64_t pending_ = 0;
  StepSettings active_;
  torch::Tensor nonfinite_;  ///< device flag: a loss was not finite (GPU, read at safe points)
  bool saw_nonfinite_ = false;
};

/// Sets or clears the interrupt flag (used by the signal handler and tests).
void request_interrupt(bool value = true);
/// Sets or clears the checkpoint request (SIGUSR1): the next safe point writes a checkpoint and
/// training goes on.
void request_checkpoint(bool value = true);
bool checkpoint_requested();

/// Seconds since this process started (from /proc; -1 where unavailable). Used to report the
/// start-up time to the first training step.
double seconds_since_process_start();

/// Number of parameters (elements) of a module; `trainable_only` counts requires_grad ones.
int64_t count_parameters(torch::nn::Module& module, bool trainable_only = false);

/// Sets every gradient of the optimizer's parameters to undefined (zero_grad with set_to_none, on
/// libtorch 1.13 and 2.x), or zeroes an optimizer's own gradient storage (ktf::FlatGradients).
void clear_gradients(Optimizer& optimizer);

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

/// Runs `fn`; an exception escaping it becomes a ktf::Error with `path` in front (exit code 1,
/// unless it already was a ktf::Error with a code of its own). Errors that already carry a path
/// pass unchanged, so the innermost component is the one named.
template <class F>
decltype(auto) with_context(const std::vector<std::string>& path, F&& fn);

namespace detail {
[[noreturn]] void rethrow_with_context(const std::vector<std::string>& path);
}

template <class F>
decltype(auto) with_context(const std::vector<std::string>& path, F&& fn) {
  try {
    return fn();
  } catch (...) {
    detail::rethrow_with_context(path);
  }
}

}  // namespace ktf
