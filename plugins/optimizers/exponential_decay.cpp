// Per-step exponential decay, as tf.keras.optimizers.schedules.ExponentialDecay.
#include <ktf/components.h>
#include <ktf/registry.h>

#include <cmath>
#include <optional>

#include "optimizers.h"

namespace ktf::optimizers {
namespace {

struct ExponentialDecayOptions {
  int64_t decay_steps = 1;                      ///< steps over which the lr decays by decay_rate
  double decay_rate = 0.96;                     ///< multiplier per decay_steps steps
  bool staircase = false;                       ///< decay in whole multiples of decay_steps
  std::optional<double> initial_learning_rate;  ///< lr at step 0; null: the optimizer's
};

/// The lr of step s (0-based) is initial * decay_rate^(s / decay_steps), with the exponent
/// floored when staircase: exactly Keras's ExponentialDecay, stepped after every batch.
class ExponentialDecay : public Schedule {
 public:
  ExponentialDecay(const ExponentialDecayOptions& o, BuildContext& ctx)
      : Schedule(ctx, "ExponentialDecay"), o_(o) {
    KTF_CHECK(o.decay_steps >= 1, "decay_steps must be >= 1, got ", o.decay_steps);
    KTF_CHECK(o.decay_rate > 0, "decay_rate must be > 0, got ", o.decay_rate);
    if (o.initial_learning_rate) {
      KTF_CHECK(*o.initial_learning_rate >= 0, "initial_learning_rate must be >= 0, got ",
                *o.initial_learning_rate);
      for (double& lr : base_lrs_) lr = *o.initial_learning_rate;
    }
    on_batch_end(0);
  }
  void on_batch_end(int64_t step) override {
    double p = static_cast<double>(step) / static_cast<double>(o_.decay_steps);
    if (o_.staircase) p = std::floor(p);
    set_factor(std::pow(o_.decay_rate, p));
  }

 private:
  ExponentialDecayOptions o_;
};

}  // namespace

void register_exponential_decay(Registrar& r) {
  r.add(define<LrSchedule, ExponentialDecayOptions>(
            "ktf.optimizers.schedules.ExponentialDecay",
            "per step: lr = initial * decay_rate^(step / decay_steps)")
            .alias("tf.keras.optimizers.schedules.ExponentialDecay")
            .required("decay_steps", &ExponentialDecayOptions::decay_steps,
                      "steps over which the lr is multiplied by decay_rate, >= 1")
            .min(1)
            .required("decay_rate", &ExponentialDecayOptions::decay_rate,
                      "multiplier per decay_steps steps, > 0")
            .above(0)
            .arg("staircase", &ExponentialDecayOptions::staircase,
                 "decay in whole multiples of decay_steps (default false)")
            .arg("initial_learning_rate", &ExponentialDecayOptions::initial_learning_rate,
                 "lr at step 0; null (default) takes the optimizer's learning_rate")
            .min(0)
            .example(Json::object({{"decay_steps", 2}, {"decay_rate", 0.5}}))
            .build([](const ExponentialDecayOptions& o, BuildContext& ctx) {
              return std::make_shared<ExponentialDecay>(o, ctx);
            }));
}

}  // namespace ktf::optimizers
