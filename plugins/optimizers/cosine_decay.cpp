// Per-step cosine decay with optional linear warm-up.
#include <ktf/components.h>
#include <ktf/registry.h>

#include <cmath>
#include <optional>

#include "optimizers.h"

namespace ktf::optimizers {
namespace {

struct CosineDecayOptions {
  int64_t warmup_steps = 0;                ///< steps of linear warm-up before the decay
  std::optional<int64_t> total_steps;      ///< length of warm-up plus decay, in steps
  std::optional<int64_t> epochs;           ///< with steps_per_epoch, instead of total_steps
  std::optional<int64_t> steps_per_epoch;  ///< with epochs, instead of total_steps
  double min_lr = 0.0;                     ///< lr at the end of the decay
};

/// With W = warmup_steps and T = total steps, the lr of step s (0-based) is
///   base * (s + 1) / W                                           for s < W,
///   min_lr + (base - min_lr) * (1 + cos(pi * (s - W) / (T - W))) / 2   for W <= s < T,
///   min_lr                                                       for s >= T.
/// Without warm-up this is torch's CosineAnnealingLR with T_max = T, stepped every batch.
class CosineDecay : public Schedule {
 public:
  CosineDecay(const CosineDecayOptions& o, BuildContext& ctx)
      : Schedule(ctx, "CosineDecay"),
        o_(o),
        total_(schedule_length(o.total_steps, o.epochs, o.steps_per_epoch, ctx.steps_per_epoch)) {
    KTF_CHECK(o.warmup_steps >= 0, "warmup_steps must be >= 0, got ", o.warmup_steps);
    KTF_CHECK(o.warmup_steps < total_, "warmup_steps (", o.warmup_steps,
              ") must be less than the total steps (", total_, ")");
    KTF_CHECK(o.min_lr >= 0, "min_lr must be >= 0, got ", o.min_lr);
    on_batch_end(0);
  }
  void on_batch_end(int64_t step) override {
    const double s = static_cast<double>(step), w = static_cast<double>(o_.warmup_steps);
    const double t = static_cast<double>(total_);
    set_each([&](double base) {
      if (step < o_.warmup_steps) return base * (s + 1) / w;
      if (step >= total_) return o_.min_lr;
      const double pi = std::acos(-1.0);
      return o_.min_lr + (base - o_.min_lr) * (1 + std::cos(pi * (s - w) / (t - w))) / 2;
    });
  }

 private:
  CosineDecayOptions o_;
  int64_t total_;
};

}  // namespace

void register_cosine_decay(Registrar& r) {
  r.add(define<LrSchedule, CosineDecayOptions>(
            "ktf.optimizers.schedules.CosineDecay",
            "per step: linear warm-up to the optimizer's lr, then cosine decay to min_lr")
            .arg("warmup_steps", &CosineDecayOptions::warmup_steps,
                 "steps of linear warm-up: step s uses lr * (s + 1) / warmup_steps (default 0)")
            .min(0)
            .arg("total_steps", &CosineDecayOptions::total_steps,
                 "warm-up plus decay length in steps; or give epochs and steps_per_epoch")
            .min(1)
            .arg("epochs", &CosineDecayOptions::epochs,
                 "with steps_per_epoch, the length as epochs (instead of total_steps)")
            .min(1)
            .arg("steps_per_epoch", &CosineDecayOptions::steps_per_epoch,
                 "with epochs: optimizer steps per epoch; default the dataset's batches per epoch")
            .min(1)
            .arg("min_lr", &CosineDecayOptions::min_lr,
                 "lr at the end of the decay and after it, >= 0 (default 0)")
            .min(0)
            .example(Json::object({{"warmup_steps", 1}, {"total_steps", 5}}))
            .build([](const CosineDecayOptions& o, BuildContext& ctx) {
              return std::make_shared<CosineDecay>(o, ctx);
            }));
}

}  // namespace ktf::optimizers
