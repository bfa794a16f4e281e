// Adam and AdamW (decoupled weight decay).
#include <ktf/components.h>
#include <ktf/registry.h>

#include "optimizers.h"

namespace ktf::optimizers {
namespace {

/// Adam's and AdamW's arguments; they differ only in weight_decay's meaning and default.
template <bool Decoupled>
struct AdamOptionsT {
  double learning_rate = 0.001;  ///< step size
  double beta_1 = 0.9;           ///< decay rate of the first-moment estimate, in [0, 1)
  double beta_2 = 0.999;         ///< decay rate of the second-moment estimate, in [0, 1)
  double epsilon = 1e-7;         ///< added to the denominator (Keras default; torch uses 1e-8)
  /// Adam: L2 penalty on the gradient (default 0); AdamW: decoupled decay (default 0.004 as
  /// Keras; torch uses 0.01)
  double weight_decay = Decoupled ? 0.004 : 0.0;
  bool amsgrad = false;  ///< use the AMSGrad variant
};
using AdamOptions = AdamOptionsT<false>;
using AdamWOptions = AdamOptionsT<true>;

template <bool Decoupled>
void check(const AdamOptionsT<Decoupled>& o) {
  KTF_CHECK(o.learning_rate >= 0, "learning_rate must be >= 0, got ", o.learning_rate);
  KTF_CHECK(o.beta_1 >= 0 && o.beta_1 < 1, "beta_1 must be in [0, 1), got ", o.beta_1);
  KTF_CHECK(o.beta_2 >= 0 && o.beta_2 < 1, "beta_2 must be in [0, 1), got ", o.beta_2);
  KTF_CHECK(o.epsilon >= 0, "epsilon must be >= 0, got ", o.epsilon);
  KTF_CHECK(o.weight_decay >= 0, "weight_decay must be >= 0, got ", o.weight_decay);
}

std::shared_ptr<Optimizer> make_adam(const AdamOptions& o, BuildContext& ctx) {
  check(o);
  const auto& params = trainable_parameters(ctx);
  return torch_call([&] {
    return std::make_shared<torch::optim::Adam>(params, torch::optim::AdamOptions(o.learning_rate)
                                                            .betas({o.beta_1, o.beta_2})
                                                            .eps(o.epsilon)
                                                            .weight_decay(o.weight_decay)
                                                            .amsgrad(o.amsgrad));
  });
}

std::shared_ptr<Optimizer> make_adamw(const AdamWOptions& o, BuildContext& ctx) {
  check(o);
  const auto& params = trainable_parameters(ctx);
  return torch_call([&] {
    return std::make_shared<torch::optim::AdamW>(params, torch::optim::AdamWOptions(o.learning_rate)
                                                             .betas({o.beta_1, o.beta_2})
                                                             .eps(o.epsilon)
                                                             .weight_decay(o.weight_decay)
                                                             .amsgrad(o.amsgrad));
  });
}

/// The arguments Adam and AdamW share; only weight_decay's meaning differs.
template <class Options>
Definition<Optimizer, Options> adam_args(Definition<Optimizer, Options> d,
                                         const std::string& weight_decay_doc) {
  return d.arg("learning_rate", &Options::learning_rate, "step size, >= 0 (default 0.001)")
      .arg("beta_1", &Options::beta_1,
           "decay rate of the first-moment estimate, in [0, 1) (default 0.9)")
      .arg("beta_2", &Options::beta_2,
           "decay rate of the second-moment estimate, in [0, 1) (default 0.999)")
      .arg("epsilon", &Options::epsilon,
           "added to the denominator for stability, >= 0 (default 1e-7 as Keras; torch uses 1e-8)")
      .arg("weight_decay", &Options::weight_decay, weight_decay_doc)
      .arg("amsgrad", &Options::amsgrad, "use the AMSGrad variant (default false)");
}

}  // namespace

void register_adam(Registrar& r) {
  r.add(adam_args(define<Optimizer, AdamOptions>("ktf.optimizers.Adam",
                                                 "Adam: adaptive moment estimation (Kingma & Ba)")
                      .alias("tf.keras.optimizers.Adam")
                      .alias("torch.optim.Adam"),
                  "L2 penalty added to the gradient as in torch.optim.Adam, >= 0 (default 0); for "
                  "decoupled decay (Keras >= 2.11 semantics) use ktf.optimizers.AdamW")
            .example(Json::object({{"learning_rate", 0.001}}))
            .build(make_adam));
  r.add(adam_args(define<Optimizer, AdamWOptions>(
                      "ktf.optimizers.AdamW",
                      "AdamW: Adam with decoupled weight decay (Loshchilov & Hutter)")
                      .alias("tf.keras.optimizers.AdamW")
                      .alias("torch.optim.AdamW"),
                  "decoupled decay: w -= learning_rate * weight_decay * w each step, >= 0 "
                  "(default 0.004 as Keras; torch uses 0.01)")
            .example(Json::object({{"learning_rate", 0.001}, {"weight_decay", 0.01}}))
            .build(make_adamw));
}

}  // namespace ktf::optimizers
