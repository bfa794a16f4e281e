// Adagrad: per-parameter step sizes scaled by the accumulated squared gradients.
#include <ktf/components.h>
#include <ktf/registry.h>

#include "optimizers.h"

namespace ktf::optimizers {
namespace {

struct AdagradOptions {
  double learning_rate = 0.001;            ///< step size
  double initial_accumulator_value = 0.1;  ///< starting value of the accumulators, >= 0
  double epsilon = 1e-7;                   ///< added to the root of the accumulator
};

/// w -= lr * g / (sqrt(sum of g^2) + epsilon): the update of torch.optim.Adagrad and TF 2.x
/// Keras Adagrad, with Keras's defaults (torch: lr 0.01, accumulator 0, epsilon 1e-10).
std::shared_ptr<Optimizer> make_adagrad(const AdagradOptions& o, BuildContext& ctx) {
  KTF_CHECK(o.learning_rate >= 0, "learning_rate must be >= 0, got ", o.learning_rate);
  KTF_CHECK(o.initial_accumulator_value >= 0, "initial_accumulator_value must be >= 0, got ",
            o.initial_accumulator_value);
  KTF_CHECK(o.epsilon >= 0, "epsilon must be >= 0, got ", o.epsilon);
  const auto& params = trainable_parameters(ctx);
  return torch_call([&] {
    return std::make_shared<torch::optim::Adagrad>(
        params, torch::optim::AdagradOptions(o.learning_rate)
                    .initial_accumulator_value(o.initial_accumulator_value)
                    .eps(o.epsilon));
  });
}

}  // namespace

void register_adagrad(Registrar& r) {
  r.add(define<Optimizer, AdagradOptions>(
            "ktf.optimizers.Adagrad",
            "Adagrad: step sizes scaled by the accumulated squared gradients")
            .alias("tf.keras.optimizers.Adagrad")
            .alias("torch.optim.Adagrad")
            .arg("learning_rate", &AdagradOptions::learning_rate, "step size, >= 0 (default 0.001)")
            .min(0)
            .arg("initial_accumulator_value", &AdagradOptions::initial_accumulator_value,
                 "starting value of the accumulators, >= 0 (default 0.1 as Keras; torch uses 0)")
            .min(0)
            .arg("epsilon", &AdagradOptions::epsilon,
                 "added to the root of the accumulator, >= 0 (default 1e-7 as Keras; torch uses "
                 "1e-10)")
            .min(0)
            .example(Json::object({{"learning_rate", 0.1}}))
            .build(make_adagrad));
}

}  // namespace ktf::optimizers
