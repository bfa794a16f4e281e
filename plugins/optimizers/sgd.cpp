// Stochastic gradient descent with optional (Nesterov) momentum.
#include <ktf/components.h>
#include <ktf/registry.h>

#include "optimizers.h"

namespace ktf::optimizers {
namespace {

struct SGDOptions {
  double learning_rate = 0.01;  ///< step size
  double momentum = 0.0;        ///< momentum factor, >= 0
  bool nesterov = false;        ///< Nesterov momentum (needs momentum > 0 and dampening 0)
  double weight_decay = 0.0;    ///< L2 penalty added to the gradient, >= 0
  double dampening = 0.0;       ///< dampening of the momentum, in [0, 1]
};

std::shared_ptr<Optimizer> make_sgd(const SGDOptions& o, BuildContext& ctx) {
  KTF_CHECK(o.learning_rate >= 0, "learning_rate must be >= 0, got ", o.learning_rate);
  KTF_CHECK(o.momentum >= 0, "momentum must be >= 0, got ", o.momentum);
  KTF_CHECK(o.weight_decay >= 0, "weight_decay must be >= 0, got ", o.weight_decay);
  KTF_CHECK(o.dampening >= 0 && o.dampening <= 1, "dampening must be in [0, 1], got ", o.dampening);
  KTF_CHECK(!o.nesterov || (o.momentum > 0 && o.dampening == 0),
            "nesterov needs momentum > 0 and dampening 0, got momentum ", o.momentum,
            " and dampening ", o.dampening);
  const auto& params = trainable_parameters(ctx);
  return torch_call([&] {
    return std::make_shared<torch::optim::SGD>(params, torch::optim::SGDOptions(o.learning_rate)
                                                           .momentum(o.momentum)
                                                           .nesterov(o.nesterov)
                                                           .weight_decay(o.weight_decay)
                                                           .dampening(o.dampening));
  });
}

}  // namespace

void register_sgd(Registrar& r) {
  r.add(define<Optimizer, SGDOptions>(
            "ktf.optimizers.SGD",
            "stochastic gradient descent with optional momentum and Nesterov momentum")
            .alias("tf.keras.optimizers.SGD")
            .alias("torch.optim.SGD")
            .arg("learning_rate", &SGDOptions::learning_rate, "step size, >= 0 (default 0.01)")
            .min(0)
            .arg("momentum", &SGDOptions::momentum, "momentum factor, >= 0 (default 0)")
            .min(0)
            .arg("nesterov", &SGDOptions::nesterov,
                 "Nesterov momentum; needs momentum > 0 and dampening 0 (default false)")
            .arg("weight_decay", &SGDOptions::weight_decay,
                 "L2 penalty added to the gradient as in torch.optim.SGD, >= 0 (default 0)")
            .min(0)
            .arg("dampening", &SGDOptions::dampening,
                 "dampening of the momentum as in torch.optim.SGD, in [0, 1] (default 0)")
            .min(0)
            .max(1)
            .example(Json::object({{"learning_rate", 0.1}, {"momentum", 0.9}}))
            .build(make_sgd));
}

}  // namespace ktf::optimizers
