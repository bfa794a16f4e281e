#include "ktf/data.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <dlfcn.h>

#include <cmath>

#include "batch_kernel.h"
#include "cuda_support.h"

namespace ktf {
namespace {

// splitmix64: a well-mixed 64-bit function of its input.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

uint64_t order_seed(uint64_t seed, int64_t epoch) {
  return mix(mix(seed) ^ static_cast<uint64_t>(epoch));
}

uint64_t batch_seed(uint64_t seed, int64_t epoch, int64_t batch) {
  return mix(order_seed(seed, epoch) ^ mix(0x5bd1e995ull + static_cast<uint64_t>(batch)));
}

torch::Generator make_generator(uint64_t seed) { return at::detail::createCPUGenerator(seed); }

namespace {
DataShard g_shard;
torch::Device g_batch_device = torch::kCPU;
}  // namespace

torch::Device batch_device() { return g_batch_device; }
void set_batch_device(torch::Device device) { g_batch_device = device; }

ShardedStream::~ShardedStream() = default;
InputFiles::~InputFiles() = default;
ReferenceNames::~ReferenceNames() = default;

DataShard data_shard() { return g_shard; }
void set_data_shard(DataShard shard) {
  KTF_CHECK_RUNTIME(shard.count >= 1 && shard.index >= 0 && shard.index < shard.count,
                    "data shard ", shard.index, " of ", shard.count);
  g_shard = shard;
}

int64_t shard_size(int64_t n, const DataShard& shard, bool equal) {
  if (!shard.sharded()) return n;
  if (equal) return n / shard.count;
  return n > shard.index ? (n - shard.index + shard.count - 1) / shard.count : 0;
}

torch::Tensor shard_order(const torch::Tensor& order, const DataShard& shard, bool equal) {
  if (!shard.sharded()) return order;
  const int64_t n = order.size(0);
  const int64_t end = equal ? n / shard.count * shard.count : n;
  if (shard.index >= end) return order.slice(0, 0, 0);
  return order.slice(0, shard.index, end, shard.count).contiguous();
}

torch::Tensor epoch_order(int64_t n, bool shuffle, uint64_t seed, int64_t epoch) {
  if (!shuffle) return torch::arange(n, torch::kLong);
  auto gen = make_generator(order_seed(seed, epoch));
  return torch::randperm(n, gen, torch::kLong);
}

// ---- PipelineConfig
// ------------------------------------------------------------------------------

int64_t auto_prefetch(const torch::Device& device) {
  // A background thread pays off only when it gets a core of its own: on a machine whose cores
  // all run libtorch's intra-op threads it preempts them, and handing each batch over costs more
  // than preparing it (measured on 2 cores: the MLP benchmark's step took 0.9 ms inline and
  // 1.0-1.9 ms with the thread). A GPU step leaves the CPU idle, so the thread overlaps it.
  const auto cores = static_cast<int64_t>(std::thread::hardware_concurrency());
  return device.is_cuda() || cores > at::get_num_threads() ? 2 : 0;
}

PipelineConfig PipelineConfig::from(const PipelineOptions& o, BuildContext& ctx) {
  KTF_CHECK(o.batch_size >= 1, "batch_size must be >= 1, got ", o.batch_size);
  KTF_CHECK(o.valid_batch_size >= 0, "valid_batch_size must be >= 0, got ", o.valid_batch_size);
  KTF_CHECK(!o.prefetch || *o.prefetch >= 0, "prefetch must be >= 0 or null, got ",
            o.prefetch.value_or(0));
  KTF_CHECK(o.dtype == "float32" || o.dtype == "uint8", "dtype must be float32 or uint8, got '",
            o.dtype, "'");
  bool to_float = o.dtype == "float32";
  KTF_CHECK(to_float || !o.scale, "scale must be false with dtype uint8 (raw pixels)");
  KTF_CHECK(to_float || (o.mean.empty() && o.std.empty()),
            "mean/std normalisation needs dtype float32");
  KTF_CHECK(o.pad_to.empty() || (o.pad_to.size() == 2 && o.pad_to[0] > 0 && o.pad_to[1] > 0),
            "pad_to must be [height, width] with positive values");
  KTF_CHECK(
      o.resize_to.empty() || (o.resize_to.size() == 2 && o.resize_to[0] > 0 && o.resize_to[1] > 0),
      "resize_to must be [height, width] with positive values");
  for (double s : o.std) KTF_CHECK(s > 0, "std values must be > 0, got ", s);
  PipelineConfig c;
  c.batch_size = o.batch_size;
  c.valid_batch_size = o.valid_batch_size ? o.valid_batch_size : o.batch_size;
  c.shuffle = o.shuffle;
  c.seed = o.seed ? static_cast<uint64_t>(*o.seed) : ctx.seed;
  c.drop_last = o.drop_last;
  c.prefetch = o.prefetch ? *o.prefetch : auto_prefetch(ctx.device);
  c.scale = o.scale;
  c.to_float = to_float;
  c.mean = o.mean;
  c.std = o.std;
  c.force_rgb = o.force_rgb;
  c.pad_to = o.pad_to;
  c.resize_to = o.resize_to;
  for (const auto& t : o.transforms) c.transforms.push_back(ctx.build(t));
  return c;
}

PipelineConfig PipelineConfig::for_validation() const {
  PipelineConfig c = *this;
  c.batch_size = valid_batch_size;
  c.shuffle = false;
  c.drop_last = false;
  c.transforms.clear();
  return c;
}

PipelineConfig PipelineConfig::without_transforms() const {
  PipelineConfig c = *this;
  c.transforms.clear();
  return c;
}

PipelineConfig PipelineConfig::raw() const {
  PipelineConfig c = for_validation();
  c.batch_size = batch_size;
  c.prefetch = 0;
  c.scale = false;
  c.to_float = false;
  c.mean.clear();
  c.std.clear();
  c.force_rgb = false;
  c.pad_to.clear();
  c.resize_to.clear();
  return c;
}

namespace {

torch::Tensor channel_values(const std::vector<double>& v, int64_t channels, const char* name) {
  KTF_CHECK(v.size() == 1 || static_cast<int64_t>(v.size()) == channels, name, " has ", v.size(),
            " values but the data has ", channels, " channels");
  return torch::tensor(v, torch::kFloat32);
}

}  // namespace

torch::Tensor PipelineConfig::preprocess(torch::Tensor x) const {
  const bool integral = !torch::isFloatingType(x.scalar_type());
  const bool image = x.dim() == 4;
  const bool reshapes = image && (!pad_to.empty() || !resize_to.empty() || force_rgb);
  if (to_float && !reshapes && mean.size() <= 1 && std.size() <= 1) {
    // The common case in one affine map, x * a + b, in two in-place ops on the converted copy
    // (the general path below takes five and allocates per batch).
    // ((x * s) - m) / d = x * (s / d) - m / d
    const double sc = scale && integral ? 1.0 / 255.0 : 1.0;
    const double m = mean.empty() ? 0.0 : mean[0], d = std.empty() ? 1.0 : std[0];
    const double a = sc / d, b = -m / d;
    if (x.scalar_type() == torch::kByte && x.is_cpu() && x.is_contiguous())
      return detail::affine_uint8_to_float(x, a, b);  // one pass (batch_kernel.cpp)
    auto y = x.to(torch::kFloat32);
    const bool fresh = !y.is_same(x);  // a copy we may modify in place
    if (a != 1.0) y = fresh ? y.mul_(a) : y.mul(a);
    if (b != 0.0) y = fresh || a != 1.0 ? y.add_(b) : y.add(b);
    return y.contiguous();
  }
  if (to_float) {
    x = x.to(torch::kFloat32);
    if (scale && integral) x = x.mul_(1.0f / 255.0f);
  }
  if (image && !pad_to.empty()) {
    int64_t dh = pad_to[0] - x.size(2), dw = pad_to[1] - x.size(3);
    KTF_CHECK(dh >= 0 && dw >= 0, "pad_to [", pad_to[0], ", ", pad_to[1],
              "] is smaller than the images (", x.size(2), "x", x.size(3), ")");
    x = torch::constant_pad_nd(x, {dw / 2, dw - dw / 2, dh / 2, dh - dh / 2}, 0);
  }
  if (image && !resize_to.empty() && (x.size(2) != resize_to[0] || x.size(3) != resize_to[1])) {
    namespace F = torch::nn::functional;
    auto dtype = x.scalar_type();
    auto y = F::interpolate(x.to(torch::kFloat32), F::InterpolateFuncOptions()
                                                       .size(std::vector<int64_t>(resize_to))
                                                       .mode(torch::kBilinear)
                                                       .align_corners(false));
    x = torch::isFloatingType(dtype) ? y : y.round_().clamp_(0, 255).to(dtype);
  }
  if (image && force_rgb && x.size(1) == 1) x = x.expand({-1, 3, -1, -1}).contiguous();
  if (!mean.empty() || !std.empty()) {
    int64_t channels = x.dim() >= 2 ? x.size(1) : 1;
    std::vector<int64_t> shape(x.dim(), 1);
    if (x.dim() >= 2) shape[1] = -1;
    if (!mean.empty()) x = x - channel_values(mean, channels, "mean").view(shape);
    if (!std.empty()) x = x / channel_values(std, channels, "std").view(shape);
  }
  return x.contiguous();
}

Batch PipelineConfig::finish(Batch raw, int64_t epoch, int64_t batch_index) const {
  raw.input = preprocess(std::move(raw.input));
  if (!transforms.empty()) {
    auto gen = make_generator(batch_seed(seed, epoch, batch_index));
    for (const auto& t : transforms) raw = t->apply(std::move(raw), gen);
  }
  return raw;
}

std::vector<int64_t> PipelineConfig::output_shape(const torch::Tensor& raw_example) const {
  auto x = preprocess(raw_example);
  std::vector<int64_t> shape(x.sizes().begin() + 1, x.sizes().end());
  if (!transforms.empty()) {
    Batch b{x, torch::zeros({x.size(0)}, torch::kLong)};
    auto gen = make_generator(0);
    for (const auto& t : transforms) b = t->apply(std::move(b), gen);
    std::vector<int64_t> after(b.input.sizes().begin() + 1, b.input.sizes().end());
    KTF_CHECK(after == shape, "transforms change the input shape from ", x.sizes().slice(1), " to ",
              b.input.sizes().slice(1), "; the validation data (not transformed) would not match");
  }
  return shape;
}

// ---- errors
// ----------------------------------------------------------------------------------------

void rethrow_as_ktf_error(const std::string& context) {
  try {
    throw;
  } catch (const Error&) {
    throw;
  } catch (const c10::Error& e) {
    throw Error(context + ": " + e.what_without_backtrace());
  }
}

// ---- PrefetchStream
// --------------------------------------------------------------------------------

namespace {

/// Makes libtorch's CPU ops on the calling (prefetch) thread run on that thread alone. libtorch's
/// intra-op pool is per calling thread under OpenMP: without this, every batch op the prefetch
/// thread runs starts a second team of spinning threads that competes with the training step's
/// team for the same cores (measured: the MLP benchmark's step took twice as long).
void use_one_intra_op_thread() {
  at::internal::lazy_init_num_threads();  // else libtorch re-applies the global count later
  using SetThreads = void (*)(int);
  static const auto omp_set =
      reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"));
  if (omp_set) omp_set(1);
}

}  // namespace

PrefetchStream::~PrefetchStream() { stop(); }

void PrefetchStream::stop() {
  if (thread_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  queue_.clear();
  cursor_.reset();
  stop_ = false;
}

void PrefetchStream::launch(int64_t epoch, int64_t position) {
  stop();
  epoch_ = epoch;
  position_ = position;
  started_ = true;
  finished_ = false;
  std::unique_ptr<Cursor> cursor = open(epoch, position);
  if (prefetch_ == 0) {
    cursor_ = std::move(cursor);
    return;
  }
  device_ = batch_device();
  thread_ = std::thread([this, cursor = std::move(cursor)]() mutable {
    use_one_intra_op_thread();
    for (;;) {
      Item item;
      try {
        item.batch = cursor->next();
        if (item.batch && device_.is_cuda())
          item.copied = detail::copy_batch_async(*item.batch, device_);
      } catch (...) {
        try {
          rethrow_as_ktf_error("data pipeline");
        } catch (...) {
          item.error = std::current_exception();
        }
      }
      bool end = !item.batch;
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stop_ || static_cast<int64_t>(queue_.size()) < prefetch_; });
      if (stop_) return;
      queue_.push_back(std::move(item));
      lock.unlock();
      cv_.notify_all();
      if (end) return;
    }
  });
}

void PrefetchStream::start_epoch(int64_t epoch) { launch(epoch, 0); }

std::optional<Batch> PrefetchStream::next() {
  if (!started_) launch(epoch_, position_);
  if (finished_) return std::nullopt;
  Item item;
  if (prefetch_ == 0) {
    try {
      item.batch = cursor_->next();
    } catch (...) {
      rethrow_as_ktf_error("data pipeline");
    }
  } else {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return !queue_.empty(); });
    item = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    cv_.notify_all();
  }
  if (item.error) {
    finished_ = true;
    std::rethrow_exception(item.error);
  }
  if (!item.batch) {
    finished_ = true;
    return std::nullopt;
  }
  if (item.copied) detail::wait_for_copy(item.copied, *item.batch);
  ++position_;
  return item.batch;
}

void PrefetchStream::save_state(State& state) {
  state.set("epoch", epoch_);
  state.set("position", position_);
  state.set("finished", finished_);
}

void PrefetchStream::load_state(const State& state) {
  launch(state.at("epoch").as_int(), state.at("position").as_int());
  if (state.has("finished") && state.at("finished").as_bool()) finished_ = true;
}

// ---- TensorDataset -----------------------------------------------------------------------------

namespace {

class IndexCursor : public Cursor {
 public:
  IndexCursor(IndexedDataset& data, const std::string& split, int64_t size,
              const PipelineConfig& config, int64_t epoch, int64_t position, DataShard shard,
              bool equal)
      : data_(data),
        split_(split),
        config_(config),
        epoch_(epoch),
        batch_(position),
        shard_(shard) {
    order_ = shard_order(epoch_order(size, config_.shuffle, config_.seed, epoch), shard, equal);
    size_ = order_.size(0);
  }

  std::optional<Batch> next() override {
    int64_t bs = config_.batch_size;
    int64_t begin = batch_ * bs;
    if (begin >= size_) return std::nullopt;
    int64_t end = std::min(size_, begin + bs);
    if (config_.drop_last && end - begin < bs) return std::nullopt;
    Batch b = data_.fetch(split_, order_.slice(0, begin, end));
    KTF_CHECK(b.input.defined() && b.target.defined() && b.input.size(0) == end - begin &&
                  b.target.size(0) == end - begin,
              "fetch(", split_, ") returned ", b.input.defined() ? b.input.size(0) : 0,
              " examples for ", end - begin, " indices");
    // A shard's batch b is part b * count + index of the epoch: its own augmentation seed.
    const int64_t part = batch_++ * shard_.count + shard_.index;
    return config_.finish(std::move(b), epoch_, part);
  }

 private:
  IndexedDataset& data_;
  std::string split_;
  int64_t size_ = 0;
  const PipelineConfig& config_;
  int64_t epoch_;
  int64_t batch_;
  DataShard shard_;
  torch::Tensor order_;
};

class IndexStream : public PrefetchStream, public ShardedStream {
 public:
  IndexStream(std::shared_ptr<IndexedDataset> keep, IndexedDataset& data, std::string split,
              PipelineConfig config, DataShard shard)
      : PrefetchStream(config.prefetch),
        keep_(std::move(keep)),
        data_(data),
        split_(std::move(split)),
        full_size_(data.split_size(split_)),
        shard_(shard),
        equal_(split_ == "train"),
        size_(shard_size(full_size_, shard_, equal_)),
        config_(std::move(config)) {}
  ~IndexStream() override { stop(); }

  int64_t num_examples() const override {
    return config_.drop_last ? size_ / config_.batch_size * config_.batch_size : size_;
  }
  int64_t num_batches() const override {
    int64_t bs = config_.batch_size;
    return config_.drop_last ? size_ / bs : (size_ + bs - 1) / bs;
  }

 protected:
  std::unique_ptr<Cursor> open(int64_t epoch, int64_t position) override {
    return std::make_unique<IndexCursor>(data_, split_, full_size_, config_, epoch, position,
                                         shard_, equal_);
  }

 private:
  std::shared_ptr<IndexedDataset> keep_;  // may be null for a dataset not owned by a shared_ptr
  IndexedDataset& data_;
  std::string split_;
  int64_t full_size_;
  DataShard shard_;
  bool equal_;
  int64_t size_;
  PipelineConfig config_;
};

}  // namespace

void IndexedDataset::init() {
  KTF_CHECK(split_size("train") > 0, "the training split is empty");
  auto first = fetch("train", torch::zeros({1}, torch::kLong));
  input_shape_ = config_.output_shape(first.input);
}

std::shared_ptr<BatchStream> IndexedDataset::stream(const std::string& split, PipelineConfig config,
                                                    DataShard shard) {
  if (split_size(split) <= 0) return nullptr;
  return std::make_shared<IndexStream>(weak_from_this().lock(), *this, split, std::move(config),
                                       shard);
}

std::shared_ptr<BatchStream> IndexedDataset::train() {
  return stream("train", config_, data_shard());
}
std::shared_ptr<BatchStream> IndexedDataset::valid() {
  return stream("valid", config_.for_validation(), data_shard());
}
std::shared_ptr<BatchStream> IndexedDataset::train_unaugmented() {
  return stream("train", config_.without_transforms(), data_shard());
}
std::shared_ptr<BatchStream> IndexedDataset::raw_split(const std::string& split) {
  KTF_CHECK(split == "train" || split == "valid", "raw_split: unknown split '", split,
            "' (train or valid)");
  return stream(split, config_.raw(), DataShard{});  // examples as stored: every one
}

std::pair<TensorSplit, TensorSplit> hold_out(const TensorSplit& all, double fraction,
                                             uint64_t seed) {
  int64_t n = all.size();
  int64_t nv = static_cast<int64_t>(std::llround(fraction * static_cast<double>(n)));
  KTF_CHECK(nv >= 1 && nv < n, "validation fraction ", fraction, " of ", n,
            " examples leaves an empty split");
  auto gen = make_generator(order_seed(seed, -1));
  auto perm = torch::randperm(n, gen, torch::kLong);
  auto valid_idx = std::get<0>(perm.slice(0, 0, nv).sort());
  auto train_idx = std::get<0>(perm.slice(0, nv).sort());
  TensorSplit train{all.input.index_select(0, train_idx), all.target.index_select(0, train_idx)};
  TensorSplit valid{all.input.index_select(0, valid_idx), all.target.index_select(0, valid_idx)};
  return {train, valid};
}

TensorDataset::TensorDataset(TensorSplit train, TensorSplit valid, PipelineConfig config,
                             int64_t num_classes, std::vector<std::string> class_names)
    : IndexedDataset(std::move(config)),
      train_(std::move(train)),
      valid_(std::move(valid)),
      num_classes_(num_classes),
      class_names_(std::move(class_names)) {
  KTF_CHECK(train_.size() > 0, "the training split is empty");
  train_.input = train_.input.contiguous();
  train_.target = train_.target.to(torch::kLong).contiguous();
  if (valid_.size()) {
    valid_.input = valid_.input.contiguous();
    valid_.target = valid_.target.to(torch::kLong).contiguous();
  }
  init();
}

int64_t TensorDataset::split_size(const std::string& split) const {
  return split == "train" ? train_.size() : split == "valid" ? valid_.size() : 0;
}

Batch TensorDataset::fetch(const std::string& split, const torch::Tensor& indices) {
  const TensorSplit& s = split == "train" ? train_ : valid_;
  // index_select copies: a batch never aliases the dataset's storage.
  return {s.input.index_select(0, indices), s.target.index_select(0, indices)};
}

double parse_validation(const Json& v, bool has_test) {
  if (v.is_null()) return has_test ? -1 : 0;
  if (v.is_string()) {
    if (v.as_string() == "none") return 0;
    KTF_CHECK(v.as_string() == "test" && has_test, "validation must be ",
              has_test ? "\"test\", " : "", "\"none\" or a fraction in (0, 1), got ",
              describe_value(v));
    return -1;
  }
  KTF_CHECK(v.is_number() && v.as_number() > 0 && v.as_number() < 1, "validation must be ",
            has_test ? "\"test\", " : "", "\"none\" or a fraction in (0, 1), got ",
            describe_value(v));
  return v.as_number();
}

int64_t count_classes(const torch::Tensor& labels) {
  if (!labels.numel()) return 0;
  auto l = labels.to(torch::kLong);
  KTF_CHECK(l.min().item<int64_t>() >= 0, "labels must be >= 0, got ", l.min().item<int64_t>());
  return l.max().item<int64_t>() + 1;
}

}  // namespace ktf
