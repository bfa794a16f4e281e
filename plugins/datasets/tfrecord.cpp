// ktf.datasets.from_tfrecord: streams tf.train.Example records from TFRecord shards (plain or
// GZIP) through a bounded shuffle buffer, decoding the input and label features of each batch
// straight into the batch tensors.
#include <ktf/components.h>
#include <ktf/example.h>
#include <ktf/image.h>
#include <ktf/registry.h>
#include <ktf/tfrecord.h>

#include <cstring>
#include <filesystem>
#include <mutex>
#include <random>

#include <ktf/data.h>
#include "datasets.h"
#include "io.h"

namespace ktf::datasets {
namespace {

// ---- feature spec
// ----------------------------------------------------------------------------------

struct FeatureSpec {
  std::string key;
  torch::ScalarType dtype = torch::kUInt8;
  std::string dtype_name;
  std::vector<int64_t> shape;
  std::string encoding;
  int64_t numel() const {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
};

FeatureSpec parse_feature_spec(const std::string& key, const Json& j) {
  const std::string where = "features › " + key;
  KTF_CHECK(j.is_object(), where, ": expected {dtype, shape, encoding}, got ", describe_value(j));
  for (const auto& [k, v] : j.as_object())
    KTF_CHECK(k == "dtype" || k == "shape" || k == "encoding", where, ": unknown key '", k,
              "' (expected dtype, shape, encoding)");
  FeatureSpec s;
  s.key = key;
  const Json* dtype = j.find("dtype");
  KTF_CHECK(dtype && dtype->is_string(), where, ": dtype is required (uint8, float32 or int64)");
  s.dtype_name = dtype->as_string();
  if (s.dtype_name == "uint8") {
    s.dtype = torch::kUInt8;
  } else if (s.dtype_name == "float32") {
    s.dtype = torch::kFloat32;
  } else if (s.dtype_name == "int64") {
    s.dtype = torch::kInt64;
  } else {
    throw Error(where + ": dtype must be uint8, float32 or int64, got '" + s.dtype_name + "'");
  }
  if (const Json* shape = j.find("shape")) {
    KTF_CHECK(shape->is_array(), where, ": shape must be a list of sizes, got ",
              describe_value(*shape));
    for (const auto& d : shape->as_array()) {
      KTF_CHECK(d.is_int() && d.as_int() >= 1, where, ": shape sizes must be integers >= 1, got ",
                describe_value(d));
      s.shape.push_back(d.as_int());
    }
  }
  const Json* enc = j.find("encoding");
  s.encoding = enc && enc->is_string()      ? enc->as_string()
               : s.dtype == torch::kInt64   ? "int64"
               : s.dtype == torch::kFloat32 ? "float"
                                            : "raw";
  if (s.encoding == "png" || s.encoding == "jpeg") {
    KTF_CHECK(s.dtype == torch::kUInt8 && s.shape.size() == 3, where, ": encoding '", s.encoding,
              "' needs dtype uint8 and shape [height, width, channels]");
    KTF_CHECK(s.encoding == "png" ? (s.shape[2] >= 1 && s.shape[2] <= 4)
                                  : (s.shape[2] == 1 || s.shape[2] == 3),
              where, ": ", s.encoding, " images cannot have ", s.shape[2], " channels");
  } else if (s.encoding == "int64") {
    // int64_list values, stored as the spec's dtype
  } else if (s.encoding == "float") {
    KTF_CHECK(s.dtype == torch::kFloat32, where, ": encoding 'float' needs dtype float32");
  } else {
    KTF_CHECK(s.encoding == "raw", where,
              ": encoding must be raw, png, jpeg, int64 or float, got '", s.encoding, "'");
  }
  return s;
}

/// Decodes feature `spec` of one parsed example into `dst` (spec.numel() elements of spec.dtype).
void decode_feature(const std::map<std::string, Feature>& example, const FeatureSpec& spec,
                    void* dst, const std::string& context) {
  auto it = example.find(spec.key);
  if (it == example.end()) {
    std::string keys;
    for (const auto& [k, v] : example) keys += (keys.empty() ? "" : ", ") + k;
    throw Error(context + ": feature '" + spec.key + "' absent (the record has: " + keys + ")");
  }
  const Feature& f = it->second;
  auto expect_kind = [&](Feature::Kind kind) {
    if (f.kind == Feature::None)
      throw Error(context + ": feature '" + spec.key + "' is empty (a missing value), expected " +
                  feature_kind_name(kind) + " (encoding '" + spec.encoding + "')");
    if (f.kind != kind)
      throw Error(context + ": feature '" + spec.key + "' is " + feature_kind_name(f.kind) +
                  ", expected " + feature_kind_name(kind) + " (encoding '" + spec.encoding + "')");
  };
  auto expect_count = [&](size_t n) {
    if (n != static_cast<size_t>(spec.numel()))
      throw Error(context + ": feature '" + spec.key + "' has " + std::to_string(n) +
                  " values, expected " + std::to_string(spec.numel()) + " (shape " +
                  c10::str(c10::IntArrayRef(spec.shape)) + ")");
  };
  int64_t n = spec.numel();
  if (spec.encoding == "int64") {
    expect_kind(Feature::Int64);
    expect_count(f.ints.size());
    if (spec.dtype == torch::kInt64) {
      std::memcpy(dst, f.ints.data(), n * sizeof(int64_t));
    } else if (spec.dtype == torch::kFloat32) {
      for (int64_t i = 0; i < n; ++i) static_cast<float*>(dst)[i] = static_cast<float>(f.ints[i]);
    } else {
      for (int64_t i = 0; i < n; ++i)
        static_cast<uint8_t*>(dst)[i] = static_cast<uint8_t>(f.ints[i]);
    }
  } else if (spec.encoding == "float") {
    expect_kind(Feature::Float);
    expect_count(f.floats.size());
    std::memcpy(dst, f.floats.data(), n * sizeof(float));
  } else {
    expect_kind(Feature::Bytes);
    if (f.bytes.size() != 1)
      throw Error(context + ": feature '" + spec.key + "' has " + std::to_string(f.bytes.size()) +
                  " bytes values, expected 1");
    const std::string& bytes = f.bytes[0];
    if (spec.encoding == "raw") {
      size_t expected = static_cast<size_t>(n) * torch::elementSize(spec.dtype);
      if (bytes.size() != expected)
        throw Error(context + ": feature '" + spec.key + "' has " + std::to_string(bytes.size()) +
                    " bytes, expected " + std::to_string(expected) + " (" + spec.dtype_name + " " +
                    c10::str(c10::IntArrayRef(spec.shape)) + ")");
      std::memcpy(dst, bytes.data(), expected);
    } else {
      const std::string what = context + ": feature '" + spec.key + "'";
      auto img = spec.encoding == "png" ? decode_png(bytes, what, static_cast<int>(spec.shape[2]))
                                        : decode_jpeg(bytes, what, static_cast<int>(spec.shape[2]));
      if (img.size(0) != spec.shape[0] || img.size(1) != spec.shape[1])
        throw Error(what + ": image is " + std::to_string(img.size(0)) + "x" +
                    std::to_string(img.size(1)) + ", expected " + std::to_string(spec.shape[0]) +
                    "x" + std::to_string(spec.shape[1]) + " (the spec's shape)");
      std::memcpy(dst, img.data_ptr(), static_cast<size_t>(n));
    }
  }
}

// ---- record sources
// --------------------------------------------------------------------------------

struct Record {
  std::string data;
  int32_t file = 0;
  int64_t index = 0;
};

/// Reads records from `files`, `cycle` files at a time, one record from each in turn (as
/// tf.data's interleave with block_length 1).
class InterleavedSource {
 public:
  InterleavedSource(std::vector<std::string> files, int64_t cycle)
      : files_(std::move(files)),
        cycle_(cycle <= 0 ? static_cast<int64_t>(files_.size()) : cycle) {}

  std::optional<Record> next() {
    for (;;) {
      while (static_cast<int64_t>(open_.size()) < cycle_ && next_file_ < files_.size()) {
        open_.push_back({std::make_unique<TFRecordReader>(files_[next_file_]),
                         static_cast<int32_t>(next_file_)});
        ++next_file_;
      }
      if (open_.empty()) return std::nullopt;
      if (slot_ >= open_.size()) slot_ = 0;
      auto& [reader, file] = open_[slot_];
      Record r;
      r.file = file;
      r.index = reader->records_read();
      if (reader->read(r.data)) {
        ++slot_;
        return r;
      }
      // This file is done: the next unopened file takes its slot (or the slot closes).
      if (next_file_ < files_.size()) {
        open_[slot_] = {std::make_unique<TFRecordReader>(files_[next_file_]),
                        static_cast<int32_t>(next_file_)};
        ++next_file_;
      } else {
        open_.erase(open_.begin() + static_cast<std::ptrdiff_t>(slot_));
      }
    }
  }
  const std::string& file(int32_t i) const { return files_[i]; }

 private:
  std::vector<std::string> files_;
  int64_t cycle_;
  size_t next_file_ = 0;
  size_t slot_ = 0;
  std::vector<std::pair<std::unique_ptr<TFRecordReader>, int32_t>> open_;
};

/// A bounded shuffle buffer. When the whole epoch fits in the buffer, the order is exactly
/// epoch_order(count, true, seed, epoch) over the records in reading order, as the in-memory
/// readers shuffle.
class Shuffler {
 public:
  Shuffler(InterleavedSource source, bool shuffle, int64_t capacity, uint64_t seed, int64_t epoch)
      : source_(std::move(source)),
        shuffle_(shuffle),
        capacity_(capacity),
        seed_(seed),
        epoch_(epoch),
        rng_(order_seed(seed, epoch) ^ 0x2545f4914f6cdd1dull) {}

  std::optional<Record> next() {
    if (!shuffle_) return source_.next();
    while (!done_ && static_cast<int64_t>(buffer_.size()) < capacity_) {
      auto r = source_.next();
      if (!r) {
        done_ = true;
        break;
      }
      buffer_.push_back(std::move(*r));
    }
    if (!done_) {
      auto r = source_.next();
      if (r) {
        size_t j = static_cast<size_t>(rng_() % buffer_.size());
        std::swap(buffer_[j], *r);
        return r;
      }
      done_ = true;
    }
    if (!order_.defined())
      order_ = epoch_order(static_cast<int64_t>(buffer_.size()), true, seed_, epoch_);
    if (pos_ >= order_.size(0)) return std::nullopt;
    return std::move(buffer_[order_[pos_++].item<int64_t>()]);
  }
  const InterleavedSource& source() const { return source_; }

 private:
  InterleavedSource source_;
  bool shuffle_;
  int64_t capacity_;
  uint64_t seed_;
  int64_t epoch_;
  std::mt19937_64 rng_;
  std::vector<Record> buffer_;
  bool done_ = false;
  torch::Tensor order_;
  int64_t pos_ = 0;
};

// ---- the dataset
// -----------------------------------------------------------------------------------

struct Layout {
  FeatureSpec input, label;
  bool channels_last = true;
  int64_t shuffle_buffer = 10000;
  int64_t interleave = 0;
  bool shuffle_files = false;
  bool shard_by_file = false;  ///< distributed: each rank reads whole files, else every n-th record
  int64_t num_classes = -1;    ///< > 0: every scalar int64 label is checked to be a class index
};

/// Raw (undecoded-to-float) input of `n` examples from a [n, numel] buffer.
torch::Tensor shape_input(torch::Tensor flat, const Layout& l) {
  std::vector<int64_t> shape{flat.size(0)};
  shape.insert(shape.end(), l.input.shape.begin(), l.input.shape.end());
  auto x = flat.view(shape);
  if (l.input.shape.size() == 3 && l.channels_last) return x.permute({0, 3, 1, 2}).contiguous();
  if (l.input.shape.size() == 2) return x.unsqueeze(1);
  return x;
}

/// What a distributed rank reads of a split: its shard (data_shard()), by record or by file.
struct ShardPlan {
  DataShard shard;
  bool equal = false;                     ///< training: every rank reads as many records
  std::map<std::string, int64_t> counts;  ///< records per file (by-file training plans only)
};

class TFRecordCursor : public Cursor {
 public:
  TFRecordCursor(const std::vector<std::string>& files, const Layout& layout,
                 const PipelineConfig& config, int64_t epoch, int64_t position,
                 const ShardPlan& plan, int64_t total)
      : layout_(layout),
        config_(config),
        epoch_(epoch),
        batch_(position),
        shard_(plan.shard),
        shuffler_(
            InterleavedSource(assigned(ordered(files, layout, config, epoch), layout, plan, limit_),
                              layout.interleave),
            config.shuffle, std::max<int64_t>(1, layout.shuffle_buffer), config.seed, epoch) {
    if (shard_.sharded() && !layout.shard_by_file) {
      stride_ = shard_.count;
      if (plan.equal) limit_ = total / shard_.count;
    }
    for (int64_t i = 0; i < position * config_.batch_size; ++i)
      if (!next_record()) break;
  }

  std::optional<Batch> next() override {
    int64_t bs = config_.batch_size;
    auto input = torch::empty({bs, layout_.input.numel()}, layout_.input.dtype);
    auto target = torch::empty({bs, layout_.label.numel()}, layout_.label.dtype);
    auto* in = static_cast<char*>(input.data_ptr());
    auto* tg = static_cast<char*>(target.data_ptr());
    size_t in_row = layout_.input.numel() * torch::elementSize(layout_.input.dtype);
    size_t tg_row = layout_.label.numel() * torch::elementSize(layout_.label.dtype);
    int64_t n = 0;
    for (; n < bs; ++n) {
      auto r = next_record();
      if (!r) break;
      std::string context = "TFRecord file '" + shuffler_.source().file(r->file) + "': record " +
                            std::to_string(r->index);
      auto example = parse_example(r->data, context);
      decode_feature(example, layout_.input, in + n * in_row, context);
      decode_feature(example, layout_.label, tg + n * tg_row, context);
      if (layout_.num_classes > 0 && layout_.label.dtype == torch::kLong &&
          layout_.label.numel() == 1) {
        int64_t label;
        std::memcpy(&label, tg + n * tg_row, sizeof label);
        if (label < 0 || label >= layout_.num_classes)
          throw Error(context + ": label " + std::to_string(label) +
                      not_a_class_index(label, layout_.num_classes));
      }
    }
    if (n == 0 || (n < bs && config_.drop_last)) return std::nullopt;
    Batch b;
    b.input = shape_input(input.slice(0, 0, n), layout_);
    b.target = target.slice(0, 0, n);
    if (layout_.label.shape.empty())
      b.target = b.target.view({n});
    else
      b.target = b.target.view(label_shape(n));
    const int64_t part = batch_++ * shard_.count + shard_.index;  // its augmentation seed
    return config_.finish(std::move(b), epoch_, part);
  }

 private:
  /// The next record of this rank's shard: every stride_-th of the epoch's order from the shard
  /// index (by record), or the next of its own files (by file), at most limit_ of them.
  std::optional<Record> next_record() {
    if (limit_ >= 0 && taken_ >= limit_) return std::nullopt;
    for (;;) {
      auto r = shuffler_.next();
      if (!r) return r;
      const int64_t i = seen_++;
      if (stride_ > 1 && i % stride_ != shard_.index) continue;
      ++taken_;
      return r;
    }
  }

  /// By file: the files of the epoch's order at positions index, index + count, ...; for training
  /// also the record limit every rank can meet (the fewest records any rank's files hold).
  static std::vector<std::string> assigned(std::vector<std::string> files, const Layout& layout,
                                           const ShardPlan& plan, int64_t& limit) {
    if (!plan.shard.sharded() || !layout.shard_by_file) return files;
    std::vector<std::string> mine;
    std::vector<int64_t> records(static_cast<size_t>(plan.shard.count), 0);
    for (size_t i = 0; i < files.size(); ++i) {
      const auto rank = static_cast<int64_t>(i) % plan.shard.count;
      if (rank == plan.shard.index) mine.push_back(files[i]);
      auto it = plan.counts.find(files[i]);
      records[static_cast<size_t>(rank)] += it == plan.counts.end() ? 0 : it->second;
    }
    if (plan.equal) limit = *std::min_element(records.begin(), records.end());
    return mine;
  }

  std::vector<int64_t> label_shape(int64_t n) const {
    std::vector<int64_t> s{n};
    s.insert(s.end(), layout_.label.shape.begin(), layout_.label.shape.end());
    return s;
  }
  static std::vector<std::string> ordered(std::vector<std::string> files, const Layout& layout,
                                          const PipelineConfig& config, int64_t epoch) {
    if (config.shuffle && layout.shuffle_files) {
      auto perm = epoch_order(static_cast<int64_t>(files.size()), true, config.seed + 1, epoch);
      std::vector<std::string> out;
      for (int64_t i = 0; i < perm.size(0); ++i) out.push_back(files[perm[i].item<int64_t>()]);
      return out;
    }
    return files;
  }

  const Layout& layout_;
  const PipelineConfig& config_;
  int64_t epoch_;
  int64_t batch_;
  DataShard shard_;
  int64_t limit_ = -1;  ///< records this rank reads this epoch; -1 = all of its shard
  int64_t stride_ = 1;
  int64_t seen_ = 0, taken_ = 0;
  Shuffler shuffler_;
};

class TFRecordStream : public PrefetchStream, public ShardedStream {
 public:
  /// `shard`: the part of the split this process reads; `equal`: every rank the same number of
  /// records (training).
  TFRecordStream(std::vector<std::string> files, std::shared_ptr<const Layout> layout,
                 PipelineConfig config, DataShard shard = {}, bool equal = false)
      : PrefetchStream(config.prefetch),
        files_(std::move(files)),
        layout_(std::move(layout)),
        config_(std::move(config)),
        shard_(shard),
        equal_(equal) {
    KTF_CHECK(!shard_.sharded() || !layout_->shard_by_file ||
                  static_cast<int64_t>(files_.size()) >= shard_.count,
              "shard_by file: ", files_.size(), " file(s) cannot be split among ", shard_.count,
              " ranks (use shard_by record, or write at least one file per rank)");
  }
  ~TFRecordStream() override { stop(); }

  /// Counted once, on first use, by reading the files (records are CRC-checked). By file with
  /// shuffle_files, a rank's share changes every epoch: unknown (-1).
  int64_t num_examples() const override {
    int64_t n = examples();
    return n < 0 ? -1 : config_.drop_last ? n / config_.batch_size * config_.batch_size : n;
  }
  int64_t num_batches() const override {
    int64_t n = examples(), bs = config_.batch_size;
    return n < 0 ? -1 : config_.drop_last ? n / bs : (n + bs - 1) / bs;
  }

 protected:
  std::unique_ptr<Cursor> open(int64_t epoch, int64_t position) override {
    ShardPlan plan{shard_, equal_, {}};
    if (shard_.sharded() && layout_->shard_by_file && equal_) plan.counts = counts();
    return std::make_unique<TFRecordCursor>(files_, *layout_, config_, epoch, position, plan,
                                            shard_.sharded() ? total() : 0);
  }

 private:
  /// Records this process reads an epoch (-1 = varies by epoch).
  int64_t examples() const {
    if (!shard_.sharded()) return total();
    if (!layout_->shard_by_file) return shard_size(total(), shard_, equal_);
    if (layout_->shuffle_files && config_.shuffle) return -1;
    const auto c = counts();
    std::vector<int64_t> records(static_cast<size_t>(shard_.count), 0);
    for (size_t i = 0; i < files_.size(); ++i)
      records[i % static_cast<size_t>(shard_.count)] += c.at(files_[i]);
    return equal_ ? *std::min_element(records.begin(), records.end())
                  : records[static_cast<size_t>(shard_.index)];
  }
  int64_t total() const {
    int64_t n = 0;
    for (const auto& [file, c] : counts()) n += c;
    return n;
  }
  std::map<std::string, int64_t> counts() const {
    std::lock_guard<std::mutex> lock(count_mutex_);
    if (counts_.empty()) {
      std::string record;
      for (const auto& f : files_) {
        TFRecordReader reader(f);
        int64_t n = 0;
        while (reader.read(record)) ++n;
        counts_[f] += n;
      }
    }
    return counts_;
  }

  std::vector<std::string> files_;
  std::shared_ptr<const Layout> layout_;
  PipelineConfig config_;
  DataShard shard_;
  bool equal_;
  mutable std::mutex count_mutex_;
  mutable std::map<std::string, int64_t> counts_;
};

class TFRecordDataset : public Dataset, public Augmentable, public RawExamples, public InputFiles {
 public:
  TFRecordDataset(std::vector<std::string> train_files, std::vector<std::string> valid_files,
                  std::shared_ptr<const Layout> layout, PipelineConfig config, int64_t num_classes,
                  std::vector<std::string> class_names)
      : train_files_(std::move(train_files)),
        valid_files_(std::move(valid_files)),
        layout_(std::move(layout)),
        config_(std::move(config)),
        num_classes_(num_classes),
        class_names_(std::move(class_names)) {
    input_shape_ = config_.output_shape(
        shape_input(torch::zeros({1, layout_->input.numel()}, layout_->input.dtype), *layout_));
  }

  std::shared_ptr<BatchStream> train() override {
    return std::make_shared<TFRecordStream>(train_files_, layout_, config_, data_shard(), true);
  }
  std::shared_ptr<BatchStream> train_unaugmented() override {
    return std::make_shared<TFRecordStream>(train_files_, layout_, config_.without_transforms(),
                                            data_shard(), true);
  }
  std::shared_ptr<BatchStream> valid() override {
    if (valid_files_.empty()) return nullptr;
    return std::make_shared<TFRecordStream>(valid_files_, layout_, config_.for_validation(),
                                            data_shard(), false);
  }
  std::shared_ptr<BatchStream> raw_split(const std::string& split) override {
    const auto& files = split == "train" ? train_files_ : valid_files_;
    if (files.empty() || (split != "train" && split != "valid")) return nullptr;
    return std::make_shared<TFRecordStream>(files, layout_, config_.raw());
  }
  std::vector<int64_t> input_shape() const override { return input_shape_; }
  int64_t num_classes() const override { return num_classes_; }
  std::vector<std::string> class_names() const override { return class_names_; }

  std::string input_format() const override { return "TFRecord"; }
  PipelineConfig input_pipeline() const override { return config_.for_validation(); }
  /// Every record's input feature (the label is not read: it need not be there).
  torch::Tensor read_inputs(const std::string& path) override {
    const FeatureSpec& spec = layout_->input;
    const size_t row = static_cast<size_t>(spec.numel()) * torch::elementSize(spec.dtype);
    std::vector<char> data;
    TFRecordReader reader(path);
    std::string record;
    int64_t n = 0;
    for (; reader.read(record); ++n) {
      const std::string context = "TFRecord file '" + path + "': record " + std::to_string(n);
      data.resize(data.size() + row);
      decode_feature(parse_example(record, context), spec, data.data() + n * row, context);
    }
    KTF_CHECK(n > 0, "TFRecord file '", path, "' holds no record");
    auto flat = torch::empty({n, spec.numel()}, spec.dtype);
    std::memcpy(flat.data_ptr(), data.data(), data.size());
    return shape_input(flat, *layout_);
  }

 private:
  std::vector<std::string> train_files_, valid_files_;
  std::shared_ptr<const Layout> layout_;
  PipelineConfig config_;
  int64_t num_classes_;
  std::vector<std::string> class_names_;
  std::vector<int64_t> input_shape_;
};

struct FromTFRecordOptions : PipelineOptions {
  std::vector<std::string> files;             ///< TFRecord files or globs of the training split
  std::vector<std::string> validation_files;  ///< TFRecord files or globs of the validation split
  /// feature spec {key: {dtype, shape, encoding}}, a features.json path, or null
  std::optional<std::variant<std::string, JsonObject>> features;
  std::string image_key = "image";  ///< key of the input feature
  std::string label_key = "label";  ///< key of the label feature
  int64_t shuffle_buffer = 10000;   ///< records held for shuffling
  int64_t interleave = 0;           ///< files read in turn, one record each; 0 = all
  bool shuffle_files = false;       ///< also shuffle the order of the files every epoch
  bool channels_last = true;        ///< 3-D inputs are stored [H, W, C] (TensorFlow's layout)
  std::string shard_by = "record";  ///< distributed: each rank reads every n-th record, or files
  int64_t num_classes = 0;          ///< number of classes; 0 = from features.json, else unknown
};

std::shared_ptr<Dataset> make_from_tfrecord(const FromTFRecordOptions& o, BuildContext& ctx) {
  KTF_CHECK(!o.files.empty(), "files must list at least one TFRecord file or glob");
  KTF_CHECK(o.shuffle_buffer >= 1, "shuffle_buffer must be >= 1, got ", o.shuffle_buffer);
  KTF_CHECK(o.interleave >= 0, "interleave must be >= 0, got ", o.interleave);
  auto train_files = expand_globs(o.files, "files");
  std::vector<std::string> valid_files;
  if (!o.validation_files.empty())
    valid_files = expand_globs(o.validation_files, "validation_files");
  Json features, info;
  std::string info_path;
  const auto* given = o.features ? std::get_if<JsonObject>(&*o.features) : nullptr;
  if (given) {
    features = given->value;
  } else {
    std::string path =
        o.features
            ? std::get<std::string>(*o.features)
            : (std::filesystem::path(train_files[0]).parent_path() / "features.json").string();
    KTF_CHECK(std::filesystem::exists(path), "features: no spec given and '", path,
              "' not found (write one, or give features {key: {dtype, shape, encoding}})");
    info = Json::parse_file(path);
    info_path = path;
    const Json* f = info.find("features");
    KTF_CHECK(f && f->is_object(), "features file '", path, "' has no \"features\" object");
    features = *f;
  }
  KTF_CHECK(features.is_object(),
            "features must be an object {key: {dtype, shape, encoding}}, got ",
            describe_value(features));
  auto layout = std::make_shared<Layout>();
  const Json* in = features.find(o.image_key);
  KTF_CHECK(in, "image_key '", o.image_key, "' is not in the feature spec");
  const Json* lb = features.find(o.label_key);
  KTF_CHECK(lb, "label_key '", o.label_key, "' is not in the feature spec");
  for (const auto& [key, value] : features.as_object()) parse_feature_spec(key, value);
  layout->input = parse_feature_spec(o.image_key, *in);
  layout->label = parse_feature_spec(o.label_key, *lb);
  layout->channels_last = o.channels_last;
  layout->shuffle_buffer = o.shuffle_buffer;
  layout->interleave = o.interleave;
  layout->shuffle_files = o.shuffle_files;
  layout->shard_by_file = o.shard_by == "file";
  auto config = PipelineConfig::from(o, ctx);
  int64_t num_classes = o.num_classes > 0 ? o.num_classes : -1;
  std::vector<std::string> names;
  if (const Json* nc = info.find("num_classes"); nc && o.num_classes == 0) {
    KTF_CHECK(nc->is_int() && (nc->as_int() > 0 || nc->as_int() == -1), "features file '",
              info_path, "': num_classes must be a positive integer (or -1: not classes), got ",
              describe_value(*nc));
    num_classes = nc->as_int();
  }
  layout->num_classes = num_classes;
  if (const Json* cn = info.find("class_names"); cn && cn->is_array())
    for (const auto& n : cn->as_array())
      if (n.is_string()) names.push_back(n.as_string());
  return std::make_shared<TFRecordDataset>(std::move(train_files), std::move(valid_files), layout,
                                           std::move(config), num_classes, std::move(names));
}

}  // namespace

void register_tfrecord(Registrar& r) {
  auto def = define<Dataset, FromTFRecordOptions>(
      "ktf.datasets.from_tfrecord",
      "streams tf.train.Example records from TFRecord shards (plain or GZIP)");
  def.required("files", &FromTFRecordOptions::files,
               "TFRecord files or globs of the training split")
      .non_empty()
      .arg("validation_files", &FromTFRecordOptions::validation_files,
           "TFRecord files or globs of the validation split; [] = none")
      .arg("features", &FromTFRecordOptions::features,
           "{key: {dtype, shape, encoding}}, a features.json path, or null = the features.json "
           "beside the first file")
      .arg("image_key", &FromTFRecordOptions::image_key, "key of the input feature")
      .arg("label_key", &FromTFRecordOptions::label_key, "key of the label feature")
      .arg("shuffle_buffer", &FromTFRecordOptions::shuffle_buffer,
           "records held in memory for shuffling")
      .min(1)
      .arg("interleave", &FromTFRecordOptions::interleave,
           "files read in turn, one record from each; 0 = all files")
      .min(0)
      .arg("shuffle_files", &FromTFRecordOptions::shuffle_files,
           "also shuffle the order of the files every epoch")
      .arg("channels_last", &FromTFRecordOptions::channels_last,
           "3-D inputs are stored [H, W, C] and become [C, H, W]")
      .arg("shard_by", &FromTFRecordOptions::shard_by,
           "distributed training: each rank reads every n-th record of the epoch's order "
           "(record), or only its own files (file: less reading, as many files as ranks at "
           "least; ranks read as many records as the rank with the fewest)",
           {"record", "file"})
      .arg("num_classes", &FromTFRecordOptions::num_classes,
           "number of classes; 0 = from features.json, else unknown")
      .min(0);
  add_pipeline_args(def).example(Json::object(
      {{"files", Json::array({std::string(kTestdataDir) + "/tfrecord/train-*.tfrecord"})},
       {"validation_files",
        Json::array({std::string(kTestdataDir) + "/tfrecord/valid-*.tfrecord"})},
       {"batch_size", 4}}));
  r.add(def.build(make_from_tfrecord));
}

}  // namespace ktf::datasets
