// The one-cycle policy (Smith & Topin), torch.optim.lr_scheduler.OneCycleLR's learning rates.
#include <ktf/components.h>
#include <ktf/registry.h>

#include <algorithm>
#include <cmath>
#include <optional>

#include "optimizers.h"

namespace ktf::optimizers {
namespace {

struct OneCycleOptions {
  std::optional<double> max_lr;            ///< peak lr; null: the optimizer's learning_rate
  std::optional<int64_t> total_steps;      ///< length of the cycle in steps
  std::optional<int64_t> epochs;           ///< with steps_per_epoch, instead of total_steps
  std::optional<int64_t> steps_per_epoch;  ///< with epochs, instead of total_steps
  double pct_start = 0.3;                  ///< fraction of the cycle spent increasing the lr
  double div_factor = 25.0;                ///< initial lr = max_lr / div_factor
  double final_div_factor = 1e4;           ///< final lr = initial lr / final_div_factor
};

/// Two cosine phases over T steps, as OneCycleLR with anneal_strategy "cos" and three_phase
/// false: from max_lr / div_factor up to max_lr at step pct_start * T - 1, then down to
/// max_lr / (div_factor * final_div_factor) at step T - 1 (kept afterwards). Momentum is not
/// cycled (OneCycleLR's cycle_momentum).
class OneCycle : public Schedule {
 public:
  OneCycle(const OneCycleOptions& o, BuildContext& ctx)
      : Schedule(ctx, "OneCycle"),
        o_(o),
        total_(schedule_length(o.total_steps, o.epochs, o.steps_per_epoch, ctx.steps_per_epoch)) {
    KTF_CHECK(o.pct_start > 0 && o.pct_start < 1, "pct_start must be in (0, 1), got ", o.pct_start);
    KTF_CHECK(o.div_factor > 0, "div_factor must be > 0, got ", o.div_factor);
    KTF_CHECK(o.final_div_factor > 0, "final_div_factor must be > 0, got ", o.final_div_factor);
    if (o.max_lr) {
      KTF_CHECK(*o.max_lr >= 0, "max_lr must be >= 0, got ", *o.max_lr);
      for (double& lr : base_lrs_) lr = *o.max_lr;
    }
    on_batch_end(0);
  }

  void on_batch_end(int64_t step) override {
    const double s = static_cast<double>(std::min(step, total_ - 1));
    const double up_end = o_.pct_start * static_cast<double>(total_) - 1;
    const double down_end = static_cast<double>(total_) - 1;
    set_each([&](double max_lr) {
      const double initial = max_lr / o_.div_factor;
      const double final_lr = initial / o_.final_div_factor;
      if (s <= up_end) return anneal(initial, max_lr, up_end > 0 ? s / up_end : 1.0);
      return anneal(max_lr, final_lr, (s - up_end) / (down_end - up_end));
    });
  }

 private:
  static double anneal(double start, double end, double pct) {
    return end + (start - end) / 2 * (std::cos(std::acos(-1.0) * pct) + 1);
  }

  OneCycleOptions o_;
  int64_t total_;
};

}  // namespace

void register_one_cycle(Registrar& r) {
  r.add(define<LrSchedule, OneCycleOptions>(
            "ktf.optimizers.schedules.OneCycle",
            "per step: one-cycle policy, cosine up to max_lr then down (OneCycleLR's lr)")
            .arg("max_lr", &OneCycleOptions::max_lr,
                 "peak lr; null (default) takes the optimizer's learning_rate")
            .min(0)
            .arg("total_steps", &OneCycleOptions::total_steps,
                 "length of the cycle in steps; or give epochs and steps_per_epoch")
            .min(1)
            .arg("epochs", &OneCycleOptions::epochs,
                 "with steps_per_epoch, the length as epochs (instead of total_steps)")
            .min(1)
            .arg("steps_per_epoch", &OneCycleOptions::steps_per_epoch,
                 "with epochs: optimizer steps per epoch; default the dataset's batches per epoch")
            .min(1)
            .arg("pct_start", &OneCycleOptions::pct_start,
                 "fraction of the cycle spent increasing the lr, in (0, 1) (default 0.3)")
            .above(0)
            .below(1)
            .arg("div_factor", &OneCycleOptions::div_factor,
                 "initial lr = max_lr / div_factor, > 0 (default 25)")
            .above(0)
            .arg("final_div_factor", &OneCycleOptions::final_div_factor,
                 "final lr = initial lr / final_div_factor, > 0 (default 1e4)")
            .above(0)
            .example(Json::object({{"max_lr", 0.1}, {"total_steps", 10}}))
            .build([](const OneCycleOptions& o, BuildContext& ctx) {
              return std::make_shared<OneCycle>(o, ctx);
            }));
}

}  // namespace ktf::optimizers
