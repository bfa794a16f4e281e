// ktf/components.h — the C++ interfaces behind each kind of component.
//
// A plugin implements one of these and registers a factory for it (registry.h). The names are the
// ones a Keras or PyTorch user already has:
//
//   Dataset      -> a train and a validation BatchStream (the original tool's (train, valid) tuple)
//   Network      -> a torch::nn::Module with forward(Tensor) -> Tensor (FooImpl + TORCH_MODULE)
//   Loss         -> (output, target) -> scalar Tensor
//   Optimizer    -> torch::optim::Optimizer, built over the model's trainable parameters
//   LrSchedule   -> adjusts the optimizer's learning rates per batch or per epoch
//   Metric       -> reset / update / compute
//   Callback     -> Keras-style hooks around epochs and batches, and after backward
//   TrainLoop    -> runs a cycle (ktf.train.KerasTrainLoop)
//   TrainStep    -> one batch's optimisation, returning a StepResult (see ktf/train.h)
//   Transform    -> augmentation applied to a whole batch
//
// The training protocol (what a train step returns, the backward/step service, when each callback
// hook runs and how long gradients live) is described in ktf/train.h. Every interface but Dataset,
// Network, Optimizer and Transform derives from ktf::Stateful (ktf/state.h): a component with state
// of its own saves and restores it for checkpoints; stateless ones need do nothing.
//
// Example network:
//
//   struct TinyImpl : ktf::Network {
//     explicit TinyImpl(const TinyOptions& o)
//         : fc(register_module("fc", torch::nn::Linear(784, o.num_outputs))) {}
//     torch::Tensor forward(torch::Tensor x) override { return fc(x.flatten(1)); }
//     torch::nn::Linear fc;
//   };
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ktf/spec.h"
#include "ktf/state.h"

namespace ktf {

class TrainContext;

/// A batch: inputs [N, ...] and targets [N, ...] (class indices for classification).
struct Batch {
  torch::Tensor input;
  torch::Tensor target;
};

/// A value in Logs: a number that remembers whether it is an integer (counts stay integers in
/// metrics.jsonl and CSV logs), and reads as a double everywhere else.
class LogValue {
 public:
  LogValue(double value = 0) : value_(value) {}
  LogValue(float value) : value_(value) {}
  LogValue(int value) : value_(value), is_int_(true) {}
  LogValue(long value) : value_(static_cast<double>(value)), is_int_(true) {}
  LogValue(long long value) : value_(static_cast<double>(value)), is_int_(true) {}
  operator double() const { return value_; }
  double value() const { return value_; }
  bool is_int() const { return is_int_; }
  /// An integer Json for integers, else a number.
  Json to_json() const;

 private:
  double value_;
  bool is_int_ = false;
};

/// Ordered name -> value logs, as Keras passes to callbacks ("loss", "accuracy", "val_loss"...).
using Logs = std::vector<std::pair<std::string, LogValue>>;
/// Value of `key` in `logs`, or nullopt.
std::optional<double> find_log(const Logs& logs, const std::string& key);
void set_log(Logs& logs, const std::string& key, LogValue value);

/// One pass over a split, batch by batch. Streams are restarted by start_epoch().
class BatchStream : public Stateful {
 public:
  virtual ~BatchStream() = default;
  /// Restarts the stream for `epoch` (shuffling is a function of the seed and the epoch).
  virtual void start_epoch(int64_t epoch) = 0;
  /// The next batch, or nullopt at the end of the epoch.
  virtual std::optional<Batch> next() = 0;
  /// Batches per epoch, or -1 when unknown (streaming sources).
  virtual int64_t num_batches() const = 0;
  /// Examples per epoch, or -1 when unknown.
  virtual int64_t num_examples() const = 0;
  // save_state / load_state (Stateful): the position within the data order, so that a stream
  // loaded with a saved state yields the batches the saved one would have yielded next.
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual std::shared_ptr<BatchStream> train() = 0;
  /// The validation stream, or nullptr when the dataset has none.
  virtual std::shared_ptr<BatchStream> valid() = 0;
  /// One example's input shape, e.g. {1, 28, 28}; networks are built for it.
  virtual std::vector<int64_t> input_shape() const = 0;
  /// Number of classes for classification data, or -1.
  virtual int64_t num_classes() const { return -1; }
  /// Class names when known (for viewers and reports).
  virtual std::vector<std::string> class_names() const { return {}; }
};

/// Optional capability of a Dataset whose training batches are augmented: the same training
/// stream (same order and preprocessing) without the transforms. The viewer (--view) shows the
/// raw examples from it; datasets without it are shown as train() yields them.
class Augmentable {
 public:
  virtual ~Augmentable() = default;
  virtual std::shared_ptr<BatchStream> train_unaugmented() = 0;
};

/// Optional capability of a Dataset: its examples as stored, for converters (--convert). A split
/// ("train" or "valid") is streamed in stored order, without shuffling, transforms, scaling or
/// normalisation: uint8 images stay uint8 [N, C, H, W]; targets as the dataset gives them.
/// Returns nullptr when the dataset has no such split. The SDK's dataset base implements it.
class RawExamples {
 public:
  virtual ~RawExamples() = default;
  virtual std::shared_ptr<BatchStream> raw_split(const std::string& split) = 0;
};

class Network : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(torch::Tensor input) = 0;
};

/// Optional capability of a Network that has an equivalent in another library under other
/// parameter names (ktf.networks.ResNet and MobileNetV2: torchvision's): `ktf-host
/// --export-weights` writes a plain state_dict under those names, which that library's model
/// loads with load_state_dict(strict=True).
class ReferenceNames {
 public:
  virtual ~ReferenceNames();  // defined in libktf_sdk: one typeinfo for every plugin's dynamic_cast
  /// The equivalent, as its user writes it, e.g. "torchvision.models.resnet18(num_classes=10)",
  /// with what differs from its defaults (a changed stem, other input channels).
  virtual std::string reference() const = 0;
  /// The equivalent's name of this network's state_dict entry `name` (a parameter or buffer, as
  /// named_parameters() / named_buffers() name it).
  virtual std::string reference_name(const std::string& name) const = 0;
};

class Loss : public Stateful {
 public:
  virtual ~Loss() = default;
  /// A scalar loss for a batch. `output` is the network output, `target` the batch target.
  virtual torch::Tensor compute(const torch::Tensor& output, const torch::Tensor& target) = 0;
  /// Moves internal tensors (class weights...) to the training device.
  virtual void to(torch::Device /*device*/) {}
};

using Optimizer = torch::optim::Optimizer;

/// Implemented by an optimizer that keeps its parameters' gradients in storage of its own (e.g.
/// one flat buffer, so that its update is a few whole-buffer ops instead of a few per parameter).
/// A train step then calls zero_gradients() where it would set every .grad to none, and backward
/// accumulates into that storage.
class FlatGradients {
 public:
  virtual ~FlatGradients() = default;
  /// Zeroes every gradient in place (one op), keeping each .grad a view of the optimizer's storage.
  virtual void zero_gradients() = 0;
};

/// Implemented by an optimizer whose step() can be captured in a CUDA graph and replayed
/// (TrainContext's cuda_graphs): once capturable, step() reads its step count and learning rate
/// from device tensors and never from or to the host, so a replay advances them as an eager step
/// would. ktf's flat Adam and AdamW implement it on CUDA.
class CapturableOptimizer {
 public:
  virtual ~CapturableOptimizer() = default;
  /// Moves the step count and learning rate to device tensors; false when this instance cannot
  /// (parameters on the CPU, no flat buffers), with nothing changed.
  virtual bool make_capturable() = 0;
  /// Before each replay: copies the learning rate the options hold now (the schedule's) into the
  /// device tensor the captured step reads (one device op, no host sync).
  virtual void before_replay() = 0;
};

class LrSchedule : public Stateful {
 public:
  virtual ~LrSchedule() = default;
  /// Called after every optimizer step; `step` counts steps since the cycle began.
  virtual void on_batch_end(int64_t /*step*/) {}
  /// Called after every epoch with that epoch's logs (for reduce-on-plateau).
  virtual void on_epoch_end(int64_t /*epoch*/, const Logs& /*logs*/) {}
};

class Metric : public Stateful {
 public:
  virtual ~Metric() = default;
  /// The log key, e.g. "accuracy" (validation logs prefix it with "val_").
  virtual std::string name() const = 0;
  virtual void reset() = 0;
  /// Accumulates a batch. Implementations keep sums as tensors: no host sync per batch.
  virtual void update(const torch::Tensor& output, const torch::Tensor& target) = 0;
  virtual double compute() = 0;
  /// Metrics with more to say than a scalar (a confusion matrix): a file name relative to the run
  /// directory; the train loop appends {"cycle", "epoch", "phase", "metric", "value": report()}
  /// to it after every epoch and phase. "" (the default) writes nothing.
  virtual std::string report_file() const { return ""; }
  virtual Json report() const { return Json(); }
};

/// Keras-style hooks, called by every train loop in this order for each epoch:
///   on_epoch_begin, then per batch: on_batch_begin, on_after_backward (once per optimizer step,
///   gradients intact), on_batch_end; then validation, then on_epoch_end.
/// on_train_begin / on_train_end frame the cycle. See ktf/train.h for what each hook may read.
class Callback : public Stateful {
 public:
  virtual ~Callback() = default;
  virtual void on_train_begin(TrainContext& /*ctx*/) {}
  virtual void on_epoch_begin(TrainContext& /*ctx*/, int64_t /*epoch*/) {}
  virtual void on_batch_begin(TrainContext& /*ctx*/, int64_t /*batch*/) {}
  /// After the backward pass(es) of an optimizer step and before clipping and the step itself:
  /// every trainable parameter's .grad() holds the gradient the optimizer is about to apply.
  virtual void on_after_backward(TrainContext& /*ctx*/, int64_t /*batch*/) {}
  virtual void on_batch_end(TrainContext& /*ctx*/, int64_t /*batch*/, const Logs& /*logs*/) {}
  virtual void on_epoch_end(TrainContext& /*ctx*/, int64_t /*epoch*/, const Logs& /*logs*/) {}
  virtual void on_train_end(TrainContext& /*ctx*/, const Logs& /*logs*/) {}
  /// True when on_batch_end(ctx, batch, logs) needs `logs` filled at this batch. Filling them
  /// reads the running loss and metrics back to the host (a device sync), so loops do it only at
  /// batches some callback asks for and pass empty logs otherwise.
  virtual bool wants_batch_logs(const TrainContext& /*ctx*/, int64_t /*batch*/) { return false; }
  /// True for a callback that prints progress (the loop then adds no default progress bar).
  virtual bool shows_progress() const { return false; }
};

class TrainLoop : public Stateful {
 public:
  virtual ~TrainLoop() = default;
  /// Applies what must hold before the first step (freezing). Also used by --dry-run.
  virtual void prepare(TrainContext& /*ctx*/) {}
  /// Trains one cycle. Returns the final logs.
  virtual Logs run(TrainContext& ctx) = 0;
};

/// What a train step returns for a batch; the loop logs it. Tensors are not read back to the host
/// per batch: the loop accumulates them on the device.
struct StepResult {
  torch::Tensor loss;    ///< the batch loss, a scalar (detached)
  torch::Tensor output;  ///< the batch output for the train metrics; undefined = no train metrics
  /// Named extra values ("lambda" of mixup), scalars; the epoch logs carry their mean over batches.
  std::vector<std::pair<std::string, torch::Tensor>> values;

  StepResult() = default;
  StepResult(torch::Tensor batch_loss, torch::Tensor batch_output = {},
             std::vector<std::pair<std::string, torch::Tensor>> named_values = {})
      : loss(std::move(batch_loss)),
        output(std::move(batch_output)),
        values(std::move(named_values)) {}

  StepResult& add(const std::string& name, const torch::Tensor& value);
  StepResult& add(const std::string& name, double value);
};

class TrainStep : public Stateful {
 public:
  virtual ~TrainStep() = default;
  /// One batch: forward, loss, and ctx.backward_and_step(loss) (see ktf/train.h).
  virtual StepResult step(TrainContext& ctx, Batch& batch) = 0;
};

class Transform {
 public:
  virtual ~Transform() = default;
  /// Transforms a whole batch. Randomness comes from `gen` only, so runs are repeatable.
  virtual Batch apply(Batch batch, torch::Generator& gen) = 0;
};

/// Maps an interface to its kind: KindOf<Loss>::value == Kind::Loss.
template <class Base>
struct KindOf;
template <>
struct KindOf<Dataset> {
  static constexpr Kind value = Kind::Dataset;
};
template <>
struct KindOf<Network> {
  static constexpr Kind value = Kind::Network;
};
template <>
struct KindOf<Loss> {
  static constexpr Kind value = Kind::Loss;
};
template <>
struct KindOf<Optimizer> {
  static constexpr Kind value = Kind::Optimizer;
};
template <>
struct KindOf<LrSchedule> {
  static constexpr Kind value = Kind::LrSchedule;
};
template <>
struct KindOf<Metric> {
  static constexpr Kind value = Kind::Metric;
};
template <>
struct KindOf<Callback> {
  static constexpr Kind value = Kind::Callback;
};
template <>
struct KindOf<TrainLoop> {
  static constexpr Kind value = Kind::TrainLoop;
};
template <>
struct KindOf<TrainStep> {
  static constexpr Kind value = Kind::TrainStep;
};
template <>
struct KindOf<Transform> {
  static constexpr Kind value = Kind::Transform;
};

}  // namespace ktf
