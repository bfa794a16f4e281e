#include "guarded.h"

#include "ktf/components.h"
#include "ktf/train.h"

namespace ktf::detail {
namespace {

using Path = std::vector<std::string>;

/// The wrapped component and its path; guard(fn) runs fn with the path added to its errors.
template <class Base>
class Guarded : public Base {
 public:
  Guarded(std::shared_ptr<Base> inner, Path path)
      : inner_(std::move(inner)), path_(std::move(path)) {}

 protected:
  template <class F>
  decltype(auto) guard(F&& fn) const {
    return with_context(path_, std::forward<F>(fn));
  }
  std::shared_ptr<Base> inner_;
  Path path_;
};

/// A guarded component with checkpoint state (every kind but Transform).
template <class Base>
class GuardedStateful : public Guarded<Base> {
 public:
  using Guarded<Base>::Guarded;
  void save_state(State& state) override {
    this->guard([&] { this->inner_->save_state(state); });
  }
  void load_state(const State& state) override {
    this->guard([&] { this->inner_->load_state(state); });
  }
};

class GuardedLoss : public GuardedStateful<Loss> {
 public:
  using GuardedStateful::GuardedStateful;
  torch::Tensor compute(const torch::Tensor& output, const torch::Tensor& target) override {
    return guard([&] { return inner_->compute(output, target); });
  }
  void to(torch::Device device) override { inner_->to(device); }
};

class GuardedMetric : public GuardedStateful<Metric> {
 public:
  using GuardedStateful::GuardedStateful;
  std::string name() const override { return inner_->name(); }
  void reset() override {
    guard([&] { inner_->reset(); });
  }
  void update(const torch::Tensor& output, const torch::Tensor& target) override {
    guard([&] { inner_->update(output, target); });
  }
  double compute() override {
    return guard([&] { return inner_->compute(); });
  }
  std::string report_file() const override { return inner_->report_file(); }
  Json report() const override {
    return guard([&] { return inner_->report(); });
  }
};

class GuardedCallback : public GuardedStateful<Callback> {
 public:
  using GuardedStateful::GuardedStateful;
  void on_train_begin(TrainContext& ctx) override {
    guard([&] { inner_->on_train_begin(ctx); });
  }
  void on_epoch_begin(TrainContext& ctx, int64_t epoch) override {
    guard([&] { inner_->on_epoch_begin(ctx, epoch); });
  }
  void on_batch_begin(TrainContext& ctx, int64_t batch) override {
    guard([&] { inner_->on_batch_begin(ctx, batch); });
  }
  void on_after_backward(TrainContext& ctx, int64_t batch) override {
    guard([&] { inner_->on_after_backward(ctx, batch); });
  }
  void on_batch_end(TrainContext& ctx, int64_t batch, const Logs& logs) override {
    guard([&] { inner_->on_batch_end(ctx, batch, logs); });
  }
  void on_epoch_end(TrainContext& ctx, int64_t epoch, const Logs& logs) override {
    guard([&] { inner_->on_epoch_end(ctx, epoch, logs); });
  }
  void on_train_end(TrainContext& ctx, const Logs& logs) override {
    guard([&] { inner_->on_train_end(ctx, logs); });
  }
  bool wants_batch_logs(const TrainContext& ctx, int64_t batch) override {
    return inner_->wants_batch_logs(ctx, batch);
  }
  bool shows_progress() const override { return inner_->shows_progress(); }
};

class GuardedStep : public GuardedStateful<TrainStep> {
 public:
  using GuardedStateful::GuardedStateful;
  StepResult step(TrainContext& ctx, Batch& batch) override {
    return guard([&] { return inner_->step(ctx, batch); });
  }
};

class GuardedSchedule : public GuardedStateful<LrSchedule> {
 public:
  using GuardedStateful::GuardedStateful;
  void on_batch_end(int64_t step) override {
    guard([&] { inner_->on_batch_end(step); });
  }
  void on_epoch_end(int64_t epoch, const Logs& logs) override {
    guard([&] { inner_->on_epoch_end(epoch, logs); });
  }
};

class GuardedTransform : public Guarded<Transform> {
 public:
  using Guarded::Guarded;
  Batch apply(Batch batch, torch::Generator& gen) override {
    return guard([&] { return inner_->apply(std::move(batch), gen); });
  }
};

template <class Guard, class Base>
std::shared_ptr<void> wrap(std::shared_ptr<void> made, const Path& path) {
  if (!made) return made;
  return std::make_shared<Guard>(std::static_pointer_cast<Base>(made), path);
}

}  // namespace

std::shared_ptr<void> guard_component(Kind kind, std::shared_ptr<void> made, const Path& path) {
  switch (kind) {
    case Kind::Loss:
      return wrap<GuardedLoss, Loss>(made, path);
    case Kind::Metric:
      return wrap<GuardedMetric, Metric>(made, path);
    case Kind::Callback:
      return wrap<GuardedCallback, Callback>(made, path);
    case Kind::TrainStep:
      return wrap<GuardedStep, TrainStep>(made, path);
    case Kind::LrSchedule:
      return wrap<GuardedSchedule, LrSchedule>(made, path);
    case Kind::Transform:
      return wrap<GuardedTransform, Transform>(made, path);
    case Kind::Dataset:
    case Kind::Network:
    case Kind::Optimizer:
    case Kind::TrainLoop:
      return made;
  }
  return made;
}

}  // namespace ktf::detail
