#include "ktf/cycle.h"

#include <chrono>
#include <iomanip>
#include <sstream>

#include "ktf/config.h"
#include "ktf/data.h"
#include "ktf/network.h"
#include "memory_guard.h"

namespace ktf {
namespace {

/// A dataset's stream whose errors name the dataset, optionally cut to `limit` batches an epoch.
class GuardedStream : public BatchStream {
 public:
  GuardedStream(std::shared_ptr<BatchStream> inner, std::vector<std::string> path, int64_t limit)
      : inner_(std::move(inner)), path_(std::move(path)), limit_(limit) {}
  void start_epoch(int64_t epoch) override {
    served_ = 0;
    with_context(path_, [&] { inner_->start_epoch(epoch); });
  }
  std::optional<Batch> next() override {
    if (limit_ >= 0 && served_ >= limit_) return std::nullopt;
    ++served_;
    return with_context(path_, [&] { return inner_->next(); });
  }
  int64_t num_batches() const override {
    int64_t n = inner_->num_batches();
    return limit_ < 0 ? n : n < 0 ? limit_ : std::min(n, limit_);
  }
  int64_t num_examples() const override { return limit_ < 0 ? inner_->num_examples() : -1; }
  void save_state(State& state) override {
    with_context(path_, [&] { inner_->save_state(state); });
  }
  void load_state(const State& state) override {
    with_context(path_, [&] { inner_->load_state(state); });
  }

 private:
  std::shared_ptr<BatchStream> inner_;
  std::vector<std::string> path_;
  int64_t limit_;
  int64_t served_ = 0;
};

/// A distributed rank's part of a stream that does not shard itself (a plugin's own stream): its
/// batches r, r + count, ... of every epoch. Training takes as many batches on every rank (the
/// first floor(batches / count) * count), so it needs the stream's num_batches().
class BatchShardStream : public BatchStream {
 public:
  BatchShardStream(std::shared_ptr<BatchStream> inner, DataShard shard, bool equal)
      : inner_(std::move(inner)), shard_(shard), equal_(equal) {}
  void start_epoch(int64_t epoch) override {
    seen_ = 0;
    inner_->start_epoch(epoch);
  }
  std::optional<Batch> next() override {
    const int64_t total = inner_->num_batches();
    for (;;) {
      if (equal_ && seen_ >= total / shard_.count * shard_.count) return std::nullopt;
      auto batch = inner_->next();
      if (!batch) return batch;
      if (seen_++ % shard_.count == shard_.index) return batch;
    }
  }
  int64_t num_batches() const override {
    const int64_t n = inner_->num_batches();
    return n < 0 ? -1 : shard_size(n, shard_, equal_);
  }
  int64_t num_examples() const override { return -1; }
  /// The inner stream's state, with the batches this split has passed over beside it: a stream
  /// resumed by a job of another number of ranks (from an epoch end) reads the same state whether
  /// it is split or not.
  void save_state(State& state) override {
    inner_->save_state(state);
    state.set(kSeen, seen_);
  }
  void load_state(const State& state) override {
    seen_ = state.has(kSeen) ? state.at(kSeen).as_int() : 0;
    inner_->load_state(state);
  }

 private:
  static constexpr const char* kSeen = "ktf.shard.batches_seen";
  std::shared_ptr<BatchStream> inner_;
  DataShard shard_;
  bool equal_;
  int64_t seen_ = 0;
};

/// `s` as this process reads it in a distributed run: as it is when it shards itself
/// (ShardedStream), else split by batch.
std::shared_ptr<BatchStream> shard(std::shared_ptr<BatchStream> s, bool training,
                                   const std::vector<std::string>& path) {
  const DataShard part = data_shard();
  if (!s || !part.sharded() || dynamic_cast<ShardedStream*>(s.get())) return s;
  if (training && s->num_batches() < 0)
    throw Error(
        "distributed training: the training stream does not know its number of batches, so its "
        "batches cannot be split evenly among " +
            std::to_string(part.count) +
            " ranks (derive the dataset from ktf::IndexedDataset, or have its stream implement "
            "ktf::ShardedStream and read data_shard())",
        path);
  return std::make_shared<BatchShardStream>(std::move(s), part, training);
}

std::shared_ptr<BatchStream> guard(std::shared_ptr<BatchStream> s, std::vector<std::string> path,
                                   int64_t limit) {
  if (!s) return s;
  return std::make_shared<GuardedStream>(std::move(s), std::move(path), limit);
}

std::string seconds_text(std::chrono::steady_clock::time_point start) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(3)
      << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out.str();
}

}  // namespace

std::pair<size_t, size_t> carry_weights(torch::nn::Module& from, torch::nn::Module& to) {
  torch::NoGradGuard no_grad;
  auto src_params = from.named_parameters(true);
  auto src_buffers = from.named_buffers(true);
  size_t copied = 0, total = 0;
  auto copy_matching = [&](auto dst_items, auto& src) {
    for (auto& item : dst_items) {
      ++total;
      if (const torch::Tensor* s = src.find(item.key())) {
        if (s->sizes() == item.value().sizes()) {
          item.value().copy_(*s);
          ++copied;
        }
      }
    }
  };
  copy_matching(to.named_parameters(true), src_params);
  copy_matching(to.named_buffers(true), src_buffers);
  return {copied, total};
}

std::vector<std::string> Cycle::path(const std::string& key) const {
  const Json* v = config.find(key);
  std::vector<std::string> p{label, key};
  if (v && v->is_object() && v->size() == 1) p.push_back(v->as_object().front().first);
  return p;
}

TrainContext Cycle::train_context(int64_t batch_limit) const {
  TrainContext tc;
  tc.cycle = index;
  tc.model = model;
  tc.model_path = model_path;
  tc.dataset = dataset;
  tc.train_data =
      guard(shard(dataset->train(), true, path("datasets")), path("datasets"), batch_limit);
  tc.valid_data =
      guard(shard(dataset->valid(), false, path("datasets")), path("datasets"), batch_limit);
  tc.loss = loss;
  tc.metrics = metrics;
  tc.optimizer = optimizer;
  tc.lr_schedule = lr_schedule;
  tc.extras = extras;
  tc.builder = builder.get();
  tc.input_format = input_format;
  tc.dry_run = batch_limit >= 0;
  return tc;
}

CycleBuilder::CycleBuilder(const Registry& registry, BuildSettings settings)
    : registry_(registry), settings_(std::move(settings)) {
  detail::install_memory_guard();
}

void CycleBuilder::log(const std::string& line) const {
  if (!settings_.quiet && settings_.log) settings_.log(line);
}

std::shared_ptr<void> CycleBuilder::build_component(Cycle& cycle, const std::string& key, Kind kind,
                                                    const Json& component,
                                                    const std::string& index) {
  auto [name, args] = split_component(component);
  std::vector<std::string> path{cycle.label, key};
  if (!index.empty()) path.push_back(index);
  path.push_back(name);
  return cycle.builder->build_any(kind, name, args, path);
}

void CycleBuilder::build_model(Cycle& cycle) {
  const Json& config = cycle.config.at("model");
  cycle.model_path = cycle.path("model");
  if (!model_ || config != model_config_) {
    auto fresh =
        std::static_pointer_cast<Network>(build_component(cycle, "model", Kind::Network, config));
    if (model_) {
      auto [copied, total] = carry_weights(*model_, *fresh);
      log(cycle.label + ": model config changed; carried over " + std::to_string(copied) + " of " +
          std::to_string(total) + " tensors (matched by name and shape)");
    }
    model_ = fresh;
    model_config_ = config;
  } else if (cycle.index > 0) {
    log(cycle.label + ": model carried over from cycle " + std::to_string(cycle.index) +
        " with its trained weights");
  }
  cycle.model = model_;
  // A model that cannot run on the dataset's examples is reported now, naming both shapes.
  cycle.output_shape = with_context(cycle.model_path, [&] {
    try {
      return infer_output_shape(*cycle.model, cycle.dataset->input_shape());
    } catch (const Error& e) {
      throw Error("the model does not fit the dataset's examples of shape " +
                      shape_str(cycle.dataset->input_shape()) + " (from " +
                      cycle.path("datasets").back() + "): " + e.message(),
                  e.path(), e.exit_code());
    }
  });
  cycle.model->to(settings_.device);
  cycle.input_format = choose_memory_format(*cycle.model, settings_.memory_format);
  if (cycle.input_format == torch::MemoryFormat::ChannelsLast && cycle.index == 0)
    log(cycle.label + ": 4-D inputs and weights are channels_last (NHWC)");
}

Cycle CycleBuilder::build(const Json& cycles, size_t index, BuildStage stage) {
  detail::BuildingScope building;  // a tensor too large for this machine is the config's fault
  Cycle cycle;
  cycle.index = static_cast<int>(index);
  cycle.label = "cycle " + std::to_string(index + 1);
  cycle.config = cycles.as_array().at(index);
  cycle.builder = std::make_shared<BuildContext>(registry_);
  BuildContext& ctx = *cycle.builder;
  ctx.device = settings_.device;
  ctx.seed = settings_.seed + index;
  ctx.run_dir = settings_.run_dir;

  // 1. dataset (cached by configuration)
  const Json& data_config = cycle.config.at("datasets");
  auto& cached = datasets_[data_config.dump()];
  if (!cached.dataset) {
    auto start = std::chrono::steady_clock::now();
    cached.dataset = std::static_pointer_cast<Dataset>(
        build_component(cycle, "datasets", Kind::Dataset, data_config));
    cached.seconds = seconds_text(start);
  }
  if (!settings_.quiet && !cached.announced) {
    log(cycle.label + ": dataset built in " + cached.seconds + " s");
    cached.announced = true;
  }
  cycle.dataset = cached.dataset;
  ctx.input_shape = cycle.dataset->input_shape();
  ctx.num_classes = cycle.dataset->num_classes();
  if (stage == BuildStage::Data) return cycle;

  // 2. model, 3. loss and metrics
  build_model(cycle);
  cycle.loss = std::static_pointer_cast<Loss>(
      build_component(cycle, "loss", Kind::Loss, cycle.config.at("loss")));
  cycle.loss->to(settings_.device);
  const auto& metrics = cycle.config.at("metrics").as_array();
  for (size_t m = 0; m < metrics.size(); ++m)
    cycle.metrics.push_back(std::static_pointer_cast<Metric>(build_component(
        cycle, "metrics", Kind::Metric, metrics[m], "[" + std::to_string(m) + "]")));
  if (stage == BuildStage::Evaluation) return cycle;

  // 4. train loop and plugin-declared cycle keys
  cycle.loop = std::static_pointer_cast<TrainLoop>(
      build_component(cycle, "train_loop", Kind::TrainLoop, cycle.config.at("train_loop")));
  for (const auto& key : registry_.cycle_keys()) {
    const Json* v = cycle.config.find(key.name);
    if (!v || v->is_null()) continue;
    auto& built = cycle.extras[key.name];
    if (key.is_list) {
      for (size_t m = 0; m < v->size(); ++m)
        built.push_back(build_component(cycle, key.name, key.kind, v->as_array()[m],
                                        "[" + std::to_string(m) + "]"));
    } else {
      built.push_back(build_component(cycle, key.name, key.kind, *v));
    }
  }

  // 5. freezing decides which parameters the optimizer gets
  {
    TrainContext tc = cycle.train_context();
    tc.quiet = true;  // its lines go to settings_.log, which prints them
    if (!settings_.quiet) tc.log_sink = settings_.log;
    with_context(cycle.path("train_loop"), [&] { cycle.loop->prepare(tc); });
  }

  // 6. optimizer over the trainable parameters, 7. schedule
  for (auto& p : cycle.model->parameters())
    if (p.requires_grad()) ctx.parameters.push_back(p);
  cycle.optimizer = std::static_pointer_cast<Optimizer>(
      build_component(cycle, "optimizer", Kind::Optimizer, cycle.config.at("optimizer")));
  ctx.optimizer = cycle.optimizer;
  auto train = cycle.dataset->train();
  ctx.steps_per_epoch = train ? train->num_batches() : -1;
  if (!cycle.config.at("lr_schedule").is_null())
    cycle.lr_schedule = std::static_pointer_cast<LrSchedule>(
        build_component(cycle, "lr_schedule", Kind::LrSchedule, cycle.config.at("lr_schedule")));
  return cycle;
}

std::shared_ptr<Dataset> build_cycle_dataset(const Json& config,
                                             const std::vector<std::string>& overrides,
                                             const Registry& registry, int cycle) {
  Json raw = config;
  for (const auto& o : overrides) apply_override(raw, o);
  Json cycles = resolve_config(raw, registry);
  const int n = static_cast<int>(cycles.size());
  if (cycle < 1 || cycle > n)
    throw Error("--cycle " + std::to_string(cycle) + ": the config has " + std::to_string(n) +
                " cycle(s)");
  CycleBuilder builder(registry, {});
  return builder.build(cycles, static_cast<size_t>(cycle - 1), BuildStage::Data).dataset;
}

}  // namespace ktf
