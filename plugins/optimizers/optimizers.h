// Registration functions of the optimizers plugin, one per component file, and the helpers the
// optimizers and learning-rate schedules share.
//
// Optimizers take Keras argument names and defaults (learning_rate, beta_1, epsilon=1e-7, ...),
// since configs come from the Keras-based original tool; the update rules are libtorch's.
//
// Schedules and the train loop agree on two calls (ktf::LrSchedule):
//   on_batch_end(step)        after every optimizer step; `step` = steps done since the cycle began
//                             (1 after the first step). Per-step schedules then set the lr of the
//                             step with 0-based index `step`; at construction they set step 0's.
//   on_epoch_end(epoch, logs) after every epoch; `epoch` is 0-based as in Keras, so epoch + 1
//                             epochs are done. Per-epoch schedules then set the next epoch's lr.
#pragma once

#include <ktf/components.h>
#include <ktf/error.h>
#include <ktf/registry.h>

#include <memory>
#include <string>
#include <vector>

namespace ktf::optimizers {
void register_sgd(Registrar& r);
void register_adam(Registrar& r);  // Adam, AdamW
void register_rmsprop(Registrar& r);
void register_adagrad(Registrar& r);
void register_step_decay(Registrar& r);  // StepDecay, MultiStepDecay
void register_exponential_decay(Registrar& r);
void register_cosine_decay(Registrar& r);
void register_one_cycle(Registrar& r);
void register_reduce_on_plateau(Registrar& r);

/// The parameters an optimizer is built over; a ktf::Error when there are none.
inline const std::vector<torch::Tensor>& trainable_parameters(const BuildContext& ctx) {
  KTF_CHECK(!ctx.parameters.empty(),
            "no trainable parameters: the model has none, or all of them are frozen");
  return ctx.parameters;
}

/// Runs a libtorch constructor, turning a c10::Error (an argument it rejected) into ktf::Error.
template <class F>
auto torch_call(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const c10::Error& e) {
    throw Error(e.what_without_backtrace());
  }
}

/// Base of the learning-rate schedules: remembers each parameter group's learning rate at
/// construction (the "base" lr) and sets new ones on every group.
class Schedule : public LrSchedule {
 public:
  Schedule(BuildContext& ctx, const std::string& name) : optimizer_(ctx.optimizer) {
    KTF_CHECK(optimizer_, name, ": no optimizer to schedule");
    for (auto& group : optimizer_->param_groups()) base_lrs_.push_back(group.options().get_lr());
  }

  /// The base learning rates and the ones the optimizer has now (a schedule may have lowered
  /// them), and what a derived schedule adds (save_extra).
  void save_state(State& state) override {
    Json::Array base, now;
    for (double lr : base_lrs_) base.emplace_back(lr);
    for (auto& group : optimizer_->param_groups()) now.emplace_back(group.options().get_lr());
    state.set("base_lrs", Json(std::move(base)));
    state.set("lrs", Json(std::move(now)));
    save_extra(state.child("extra"));
  }
  void load_state(const State& state) override {
    const auto& base = state.at("base_lrs").as_array();
    const auto& now = state.at("lrs").as_array();
    auto& groups = optimizer_->param_groups();
    KTF_CHECK(base.size() == base_lrs_.size() && now.size() == groups.size(),
              "the schedule's saved state has ", base.size(), " parameter groups, the optimizer ",
              groups.size());
    for (size_t i = 0; i < base.size(); ++i) base_lrs_[i] = base[i].as_number();
    for (size_t i = 0; i < now.size(); ++i) groups[i].options().set_lr(now[i].as_number());
    load_extra(state.child("extra"));
  }

 protected:
  /// Sets every group's lr to its base lr times `factor`.
  void set_factor(double factor) {
    auto& groups = optimizer_->param_groups();
    for (size_t i = 0; i < groups.size(); ++i) groups[i].options().set_lr(base_lrs_[i] * factor);
  }
  /// Sets every group's lr to f(base lr of the group).
  template <class F>
  void set_each(F&& f) {
    auto& groups = optimizer_->param_groups();
    for (size_t i = 0; i < groups.size(); ++i) groups[i].options().set_lr(f(base_lrs_[i]));
  }
  virtual void save_extra(State& /*state*/) const {}
  virtual void load_extra(const State& /*state*/) {}

  std::shared_ptr<Optimizer> optimizer_;
  std::vector<double> base_lrs_;
};

/// Total steps of a per-step schedule: `total_steps`, or `epochs` * `steps_per_epoch`, where
/// steps_per_epoch defaults to the dataset's batches per epoch (`dataset_steps_per_epoch`, -1 when
/// unknown); exactly one of the two forms must be given.
int64_t schedule_length(const std::optional<int64_t>& total_steps,
                        const std::optional<int64_t>& epochs,
                        const std::optional<int64_t>& steps_per_epoch,
                        int64_t dataset_steps_per_epoch);

}  // namespace ktf::optimizers
