// Per-epoch step decays: multiply the learning rate by gamma every step_size epochs, or at given
// epochs (torch.optim.lr_scheduler.StepLR / MultiStepLR stepped once per epoch).
#include <ktf/components.h>
#include <ktf/registry.h>

#include <cmath>

#include "optimizers.h"

namespace ktf::optimizers {
namespace {

struct StepDecayOptions {
  int64_t step_size = 1;  ///< epochs between decays
  double gamma = 0.1;     ///< multiplier applied at each decay
};

/// After k epochs the lr is base_lr * gamma^floor(k / step_size).
class StepDecay : public Schedule {
 public:
  StepDecay(const StepDecayOptions& o, BuildContext& ctx) : Schedule(ctx, "StepDecay"), o_(o) {
    KTF_CHECK(o.step_size >= 1, "step_size must be >= 1, got ", o.step_size);
    KTF_CHECK(o.gamma > 0, "gamma must be > 0, got ", o.gamma);
    set_factor(1.0);
  }
  void on_epoch_end(int64_t epoch, const Logs&) override {
    set_factor(std::pow(o_.gamma, static_cast<double>((epoch + 1) / o_.step_size)));
  }

 private:
  StepDecayOptions o_;
};

struct MultiStepDecayOptions {
  std::vector<int64_t> milestones;  ///< epoch counts after which the lr decays, increasing
  double gamma = 0.1;               ///< multiplier applied at each milestone
};

/// After k epochs the lr is base_lr * gamma^(number of milestones <= k).
class MultiStepDecay : public Schedule {
 public:
  MultiStepDecay(const MultiStepDecayOptions& o, BuildContext& ctx)
      : Schedule(ctx, "MultiStepDecay"), o_(o) {
    KTF_CHECK(!o.milestones.empty(), "milestones must not be empty");
    for (size_t i = 0; i < o.milestones.size(); ++i) {
      KTF_CHECK(o.milestones[i] >= 1, "milestones[", i, "] must be >= 1, got ", o.milestones[i]);
      KTF_CHECK(i == 0 || o.milestones[i] > o.milestones[i - 1],
                "milestones must be strictly increasing, got ", o.milestones[i - 1], " then ",
                o.milestones[i]);
    }
    KTF_CHECK(o.gamma > 0, "gamma must be > 0, got ", o.gamma);
    set_factor(1.0);
  }
  void on_epoch_end(int64_t epoch, const Logs&) override {
    int64_t passed = 0;
    for (int64_t m : o_.milestones) passed += m <= epoch + 1;
    set_factor(std::pow(o_.gamma, static_cast<double>(passed)));
  }

 private:
  MultiStepDecayOptions o_;
};

}  // namespace

void register_step_decay(Registrar& r) {
  r.add(define<LrSchedule, StepDecayOptions>(
            "ktf.optimizers.schedules.StepDecay",
            "per epoch: multiply the learning rate by gamma every step_size epochs")
            .alias("torch.optim.lr_scheduler.StepLR")
            .required("step_size", &StepDecayOptions::step_size, "epochs between decays, >= 1")
            .min(1)
            .arg("gamma", &StepDecayOptions::gamma,
                 "multiplier applied at each decay, > 0 (default 0.1)")
            .above(0)
            .example(Json::object({{"step_size", 2}, {"gamma", 0.5}}))
            .build([](const StepDecayOptions& o, BuildContext& ctx) {
              return std::make_shared<StepDecay>(o, ctx);
            }));
  r.add(define<LrSchedule, MultiStepDecayOptions>(
            "ktf.optimizers.schedules.MultiStepDecay",
            "per epoch: multiply the learning rate by gamma once each milestone epoch is done")
            .alias("torch.optim.lr_scheduler.MultiStepLR")
            .required("milestones", &MultiStepDecayOptions::milestones,
                      "epoch counts after which the lr decays, strictly increasing, >= 1")
            .non_empty()
            .min(1)
            .arg("gamma", &MultiStepDecayOptions::gamma,
                 "multiplier applied at each milestone, > 0 (default 0.1)")
            .above(0)
            .example(Json::object({{"milestones", Json::array({1, 3})}, {"gamma", 0.1}}))
            .build([](const MultiStepDecayOptions& o, BuildContext& ctx) {
              return std::make_shared<MultiStepDecay>(o, ctx);
            }));
}

}  // namespace ktf::optimizers
