// RMSprop: divides the gradient by a running root mean square of recent gradients.
#include <ktf/components.h>
#include <ktf/registry.h>

#include "optimizers.h"

namespace ktf::optimizers {
namespace {

struct RMSpropOptions {
  double learning_rate = 0.001;  ///< step size
  double rho = 0.9;              ///< decay rate of the mean square (torch's alpha)
  double momentum = 0.0;         ///< momentum factor, >= 0
  double epsilon = 1e-7;         ///< added to the root mean square (Keras default; torch 1e-8)
  bool centered = false;         ///< normalise by the estimated variance instead
};

/// The update is torch.optim.RMSprop's: w -= lr * g / (sqrt(ms) + epsilon), epsilon outside the
/// root. TF 2.x Keras RMSprop does the same without momentum; with momentum > 0 (and in every
/// case from Keras 2.11) Keras adds epsilon inside the root: sqrt(ms + epsilon). The two differ
/// only while the mean square is of the order of epsilon.
std::shared_ptr<Optimizer> make_rmsprop(const RMSpropOptions& o, BuildContext& ctx) {
  KTF_CHECK(o.learning_rate >= 0, "learning_rate must be >= 0, got ", o.learning_rate);
  KTF_CHECK(o.rho >= 0 && o.rho < 1, "rho must be in [0, 1), got ", o.rho);
  KTF_CHECK(o.momentum >= 0, "momentum must be >= 0, got ", o.momentum);
  KTF_CHECK(o.epsilon >= 0, "epsilon must be >= 0, got ", o.epsilon);
  const auto& params = trainable_parameters(ctx);
  return torch_call([&] {
    return std::make_shared<torch::optim::RMSprop>(params,
                                                   torch::optim::RMSpropOptions(o.learning_rate)
                                                       .alpha(o.rho)
                                                       .eps(o.epsilon)
                                                       .momentum(o.momentum)
                                                       .centered(o.centered));
  });
}

}  // namespace

void register_rmsprop(Registrar& r) {
  r.add(define<Optimizer, RMSpropOptions>(
            "ktf.optimizers.RMSprop",
            "RMSprop (torch update rule: epsilon added outside the square root)")
            .alias("tf.keras.optimizers.RMSprop")
            .alias("torch.optim.RMSprop")
            .arg("learning_rate", &RMSpropOptions::learning_rate, "step size, >= 0 (default 0.001)")
            .min(0)
            .arg("rho", &RMSpropOptions::rho,
                 "decay rate of the mean square (torch's alpha), in [0, 1) (default 0.9)")
            .min(0)
            .below(1)
            .arg("momentum", &RMSpropOptions::momentum, "momentum factor, >= 0 (default 0)")
            .min(0)
            .arg("epsilon", &RMSpropOptions::epsilon,
                 "added to the root mean square, >= 0 (default 1e-7 as Keras; torch uses 1e-8)")
            .min(0)
            .arg("centered", &RMSpropOptions::centered,
                 "normalise by the estimated variance of the gradient (default false)")
            .example(Json::object({{"learning_rate", 0.01}}))
            .build(make_rmsprop));
}

}  // namespace ktf::optimizers
