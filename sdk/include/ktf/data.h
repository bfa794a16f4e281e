// ktf/data.h — the batch pipeline every dataset can use, built-in or from a plugin.
//
// - PipelineOptions: the arguments every dataset takes (batch size, shuffling, scaling,
//   normalisation, padding/resizing, transforms, prefetch), bound to the spec by
//   add_pipeline_args(). A dataset's options struct derives from it.
// - PipelineConfig: the validated options; preprocess() turns a raw batch (uint8 or float,
//   [N, C, H, W] or [N, F]) into the model's input, on the whole batch at once.
// - IndexedDataset: the base for a dataset whose examples can be fetched by index. Implement
//   split_size() and fetch(); the base gives batching by index, per-epoch shuffling, prefetch,
//   transforms, a saveable data order, the unaugmented view (--view) and the raw examples
//   (--convert). A plugin dataset in a few lines:
//
//     struct WavesOptions : ktf::PipelineOptions { int64_t num_examples = 1000; };
//     class Waves : public ktf::IndexedDataset {
//      public:
//       Waves(const WavesOptions& o, ktf::BuildContext& ctx)
//           : IndexedDataset(ktf::PipelineConfig::from(o, ctx)), x_(...), y_(...) { init(); }
//       int64_t split_size(const std::string& split) const override {
//         return split == "train" ? x_.size(0) : 0;
//       }
//       ktf::Batch fetch(const std::string&, const torch::Tensor& idx) override {
//         return {x_.index_select(0, idx), y_.index_select(0, idx)};
//       }
//       int64_t num_classes() const override { return 2; }
//     };
//     ...
//     auto def = ktf::define<ktf::Dataset, WavesOptions>("my.datasets.Waves", "...");
//     ktf::add_pipeline_args(def).arg("num_examples", &WavesOptions::num_examples, "...").min(1);
//
// - TensorDataset: decoded data held in contiguous tensors (an IndexedDataset over index_select).
// - PrefetchStream: a BatchStream over a Cursor (the batches of one epoch), run on a background
//   thread with a bounded queue; exceptions reach next(); restarts stop and join the thread. For
//   streaming sources that cannot fetch by index (TFRecord files).
//
// Determinism: the order of epoch e is a function of (seed, e) only, and the randomness of the
// transforms of batch b of epoch e is a function of (seed, e, b) only. So two runs with the same
// seed give identical batches, and a stream loaded with a saved state (load_state) continues with
// identical batches.
#pragma once

#include "ktf/components.h"
#include "ktf/registry.h"

#include <condition_variable>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace ktf {

/// Arguments common to every dataset. A reader's options struct derives from it.
struct PipelineOptions {
  int64_t batch_size = 64;       ///< examples per training batch
  int64_t valid_batch_size = 0;  ///< examples per validation batch; 0 = batch_size
  bool shuffle = true;           ///< reshuffle the training data every epoch
  std::optional<int64_t> seed;   ///< shuffling/augmentation seed; null = the run's seed
  bool drop_last = false;        ///< drop the last incomplete training batch
  /// batches prepared ahead on a background thread; 0 = on the training thread; null = auto
  /// (2 when a core is free for the thread or the model trains on a GPU, else 0)
  std::optional<int64_t> prefetch;
  bool scale = true;               ///< divide uint8 data by 255 (to [0, 1])
  std::string dtype = "float32";   ///< input dtype: float32, or uint8 (raw pixels, scale false)
  std::vector<double> mean;        ///< per-channel mean subtracted after scaling; empty = none
  std::vector<double> std;         ///< per-channel std divided after the mean; empty = none
  bool force_rgb = false;          ///< repeat a single channel to 3 channels
  std::vector<int64_t> pad_to;     ///< [H, W]: zero-pad images (centred) to this size
  std::vector<int64_t> resize_to;  ///< [H, W]: resize images (bilinear) to this size
  std::vector<Ref<Transform>> transforms;  ///< augmentation applied to training batches only
};

/// Binds the PipelineOptions fields of `O` (which derives from PipelineOptions) to `def`.
template <class O>
Definition<Dataset, O>& add_pipeline_args(Definition<Dataset, O>& def) {
  return def.template arg<int64_t>("batch_size", &O::batch_size, "examples per training batch")
      .min(1)
      .template arg<int64_t>("valid_batch_size", &O::valid_batch_size,
                             "examples per validation batch; 0 = batch_size")
      .min(0)
      .template arg<bool>("shuffle", &O::shuffle, "reshuffle the training data every epoch")
      .template arg<std::optional<int64_t>>("seed", &O::seed,
                                            "shuffling/augmentation seed; null = the run's seed")
      .min(0)
      .template arg<bool>("drop_last", &O::drop_last, "drop the last incomplete training batch")
      .template arg<std::optional<int64_t>>(
          "prefetch", &O::prefetch,
          "batches prepared ahead on a background thread; 0 = on the training thread; null = "
          "auto: 2 when a core is free beyond the intra-op threads or training runs on a GPU, "
          "else 0")
      .min(0)
      .template arg<bool>("scale", &O::scale, "divide uint8 data by 255 (to [0, 1])")
      .template arg<std::string>("dtype", &O::dtype,
                                 "input dtype: float32, or uint8 for raw pixels (scale false)",
                                 {"float32", "uint8"})
      .template arg<std::vector<double>>("mean", &O::mean,
                                         "per-channel mean subtracted after scaling; [] = none")
      .template arg<std::vector<double>>("std", &O::std,
                                         "per-channel std divided after the mean; [] = none")
      .above(0)
      .template arg<bool>("force_rgb", &O::force_rgb, "repeat a single channel to 3 channels (RGB)")
      .template arg<std::vector<int64_t>>("pad_to", &O::pad_to,
                                          "[H, W]: zero-pad images (centred) to this size")
      .min(1)
      .sizes({0, 2})
      .template arg<std::vector<int64_t>>("resize_to", &O::resize_to,
                                          "[H, W]: resize images (bilinear) to this size")
      .min(1)
      .sizes({0, 2})
      .template arg<std::vector<Ref<Transform>>>(
          "transforms", &O::transforms, "augmentation components applied to training batches");
}

/// The same for a definition being written in one expression:
///   r.add(ktf::add_pipeline_args(ktf::define<ktf::Dataset, O>(name,
///   summary)).arg(...).build(...));
template <class O>
Definition<Dataset, O> add_pipeline_args(Definition<Dataset, O>&& def) {
  add_pipeline_args(def);
  return std::move(def);
}

/// Seed of the shuffling order of `epoch` and of the transforms of batch `batch` of `epoch`.
uint64_t order_seed(uint64_t seed, int64_t epoch);
uint64_t batch_seed(uint64_t seed, int64_t epoch, int64_t batch);
/// A CPU generator seeded with `seed`.
torch::Generator make_generator(uint64_t seed);
/// The permutation of epoch `epoch` for `n` examples (identity when !shuffle).
torch::Tensor epoch_order(int64_t n, bool shuffle, uint64_t seed, int64_t epoch);

/// The part of every epoch's data order this process reads: in a distributed run, shard `index`
/// (the rank) of `count` (the ranks). The engine sets it before datasets make their streams.
struct DataShard {
  int64_t index = 0;
  int64_t count = 1;
  bool sharded() const { return count > 1; }
};
DataShard data_shard();
void set_data_shard(DataShard shard);

/// The device the training step runs on, set by the engine before datasets make their streams
/// (the CPU elsewhere). On a CUDA device a PrefetchStream's thread pins each batch in page-locked
/// memory and copies it to the GPU without blocking, on a CUDA stream of its own, so the copy of
/// the next batch overlaps the current step; next() makes the step's stream wait for it.
torch::Device batch_device();
void set_batch_device(torch::Device device);

/// The positions of an epoch's `order` that `shard` reads: every count-th from `index` (as
/// PyTorch's DistributedSampler). `equal`: training, where every shard must yield the same number
/// of batches, uses the first floor(n / count) * count positions only (at most count - 1 examples
/// an epoch are left out, different ones each shuffled epoch); validation reads every example once.
/// Per-rank batch b of every shard together is the global batch of positions
/// [b * count * B, (b + 1) * count * B): one rank with batch count * B reads the same examples.
torch::Tensor shard_order(const torch::Tensor& order, const DataShard& shard, bool equal);
/// Examples of a split of `n` a shard reads (shard_order's length).
int64_t shard_size(int64_t n, const DataShard& shard, bool equal);

/// Implemented by a stream that reads only its shard of the data (data_shard()): the streams of
/// IndexedDataset and of the TFRecord reader. In a distributed run the engine splits any other
/// training stream by batch (rank r takes batches r, r + count, ...), which needs its
/// num_batches().
class ShardedStream {
 public:
  virtual ~ShardedStream();  // defined in libktf_sdk: one typeinfo for every plugin's dynamic_cast
};

/// prefetch's automatic value on `device`: 2 when a core is free for a background thread (more
/// hardware threads than libtorch's intra-op threads) or the model trains on a GPU, else 0.
int64_t auto_prefetch(const torch::Device& device);

/// Everything a stream needs to turn raw examples into batches.
struct PipelineConfig {
  int64_t batch_size = 64;
  int64_t valid_batch_size = 64;
  bool shuffle = true;
  uint64_t seed = 0;
  bool drop_last = false;
  int64_t prefetch = 2;
  bool scale = true;
  bool to_float = true;
  std::vector<double> mean, std;
  bool force_rgb = false;
  std::vector<int64_t> pad_to, resize_to;
  std::vector<std::shared_ptr<Transform>> transforms;

  /// Validates `o` (errors name the argument) and builds the transforms with `ctx`.
  static PipelineConfig from(const PipelineOptions& o, BuildContext& ctx);
  /// The same pipeline for the validation split: no shuffling, no transforms, no drop_last.
  PipelineConfig for_validation() const;
  /// The same pipeline without the transforms (viewer's raw examples).
  PipelineConfig without_transforms() const;
  /// Examples as stored (RawExamples): in order, no transforms, scaling, normalisation, resizing
  /// or dtype conversion, no prefetch thread.
  PipelineConfig raw() const;
  /// Converts a raw batch input (uint8 or float; [N, C, H, W] images or [N, ...] features).
  torch::Tensor preprocess(torch::Tensor input) const;
  /// preprocess + the transforms seeded for (epoch, batch).
  Batch finish(Batch raw, int64_t epoch, int64_t batch_index) const;
  /// Input shape of one example after preprocessing and transforms, from one raw example
  /// [1, ...]. Throws if the transforms change the shape (validation data would not match).
  std::vector<int64_t> output_shape(const torch::Tensor& raw_example) const;
};

/// The batches of one epoch, produced in order. Used only by one thread at a time.
class Cursor {
 public:
  virtual ~Cursor() = default;
  virtual std::optional<Batch> next() = 0;
};

/// A BatchStream over Cursors, with an optional prefetch thread.
class PrefetchStream : public BatchStream {
 public:
  explicit PrefetchStream(int64_t prefetch) : prefetch_(prefetch) {}
  ~PrefetchStream() override;

  void start_epoch(int64_t epoch) override;
  std::optional<Batch> next() override;
  /// The epoch and the batches served: a stream loaded with it goes on from there.
  void save_state(State& state) override;
  void load_state(const State& state) override;

 protected:
  /// The batches of `epoch` from batch index `position` on.
  virtual std::unique_ptr<Cursor> open(int64_t epoch, int64_t position) = 0;
  /// Must be called by the most derived destructor (the thread uses the derived object).
  void stop();

 private:
  void launch(int64_t epoch, int64_t position);

  struct Item {
    std::optional<Batch> batch;  ///< nullopt with no error = end of epoch
    std::exception_ptr error;
    std::shared_ptr<void> copied;  ///< CUDA: the event recorded after the batch's copy
  };
  torch::Device device_ = torch::kCPU;  ///< batch_device() when the epoch's thread started
  int64_t prefetch_;
  int64_t epoch_ = 0;
  int64_t position_ = 0;
  bool started_ = false;
  bool finished_ = false;
  std::unique_ptr<Cursor> cursor_;  // synchronous mode
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  bool stop_ = false;
};

/// Rethrows the current exception as ktf::Error when it is a c10::Error (bad input data).
[[noreturn]] void rethrow_as_ktf_error(const std::string& context);

/// Decoded examples held in memory: input [N, ...] (uint8 or float), target [N] int64.
struct TensorSplit {
  torch::Tensor input;
  torch::Tensor target;
  int64_t size() const { return input.defined() ? input.size(0) : 0; }
};

/// Splits off a held-out validation fraction: a fixed (seeded) random subset, both parts kept in
/// file order.
std::pair<TensorSplit, TensorSplit> hold_out(const TensorSplit& all, double fraction,
                                             uint64_t seed);

/// The base of a dataset whose raw examples can be fetched by index (see the top of this file).
/// Splits are "train" and "valid". fetch() may run on the prefetch thread, one call at a time per
/// stream; streams hold the dataset alive.
class IndexedDataset : public Dataset,
                       public Augmentable,
                       public RawExamples,
                       public std::enable_shared_from_this<IndexedDataset> {
 public:
  explicit IndexedDataset(PipelineConfig config) : config_(std::move(config)) {}

  /// Examples in `split`; 0 when the dataset has no such split ("train" must not be empty).
  virtual int64_t split_size(const std::string& split) const = 0;
  /// The raw examples of `split` at `indices` (int64 [B]): input [B, ...] (uint8 or float) and
  /// target [B, ...], as stored; the pipeline converts, normalises and augments them.
  virtual Batch fetch(const std::string& split, const torch::Tensor& indices) = 0;

  std::shared_ptr<BatchStream> train() override;
  std::shared_ptr<BatchStream> valid() override;
  std::shared_ptr<BatchStream> train_unaugmented() override;
  std::shared_ptr<BatchStream> raw_split(const std::string& split) override;
  std::vector<int64_t> input_shape() const override { return input_shape_; }

  const PipelineConfig& pipeline() const { return config_; }

 protected:
  /// Call at the end of the derived constructor: checks the train split and infers the input
  /// shape from its first example after preprocessing.
  void init();

 private:
  std::shared_ptr<BatchStream> stream(const std::string& split, PipelineConfig config,
                                      DataShard shard);
  PipelineConfig config_;
  std::vector<int64_t> input_shape_;
};

/// Optional capability of a Dataset: reads files of its own format that are not among its splits
/// as new inputs, for `ktf-host --predict` (ktf.datasets.csv: CSV files with its feature columns;
/// ktf.datasets.from_tfrecord: TFRecord files with its input feature). Labels in such files are
/// ignored and need not be there.
class InputFiles {
 public:
  virtual ~InputFiles();  // defined in libktf_sdk: one typeinfo for every plugin's dynamic_cast
  /// The format read_inputs reads, as users name it ("CSV", "TFRecord").
  virtual std::string input_format() const = 0;
  /// The examples of `path`, in file order, as raw inputs [N, ...]: what raw_split() yields for
  /// the dataset's own files. Bad content throws ktf::Error naming the file and the row or record.
  virtual torch::Tensor read_inputs(const std::string& path) = 0;
  /// What the dataset does to its validation split's raw inputs (PipelineConfig::for_validation).
  virtual PipelineConfig input_pipeline() const = 0;
};

/// A Dataset over in-memory splits.
class TensorDataset : public IndexedDataset {
 public:
  TensorDataset(TensorSplit train, TensorSplit valid, PipelineConfig config, int64_t num_classes,
                std::vector<std::string> class_names);

  int64_t split_size(const std::string& split) const override;
  Batch fetch(const std::string& split, const torch::Tensor& indices) override;
  int64_t num_classes() const override { return num_classes_; }
  std::vector<std::string> class_names() const override { return class_names_; }

  const TensorSplit& train_split() const { return train_; }
  const TensorSplit& valid_split() const { return valid_; }

 private:
  TensorSplit train_, valid_;
  int64_t num_classes_;
  std::vector<std::string> class_names_;
};

/// Parses the `validation` argument: "test" (or null for readers with a test split), "none",
/// or a fraction in (0, 1). Returns the fraction, 0 for "none", -1 for "test".
double parse_validation(const Json& v, bool has_test);

/// 1 + the largest label (labels must be >= 0).
int64_t count_classes(const torch::Tensor& labels);

}  // namespace ktf
