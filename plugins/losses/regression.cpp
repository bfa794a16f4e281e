// Element-wise regression losses: mean squared error, mean absolute error and Huber.
#include <ktf/components.h>
#include <ktf/registry.h>

#include "losses.h"

namespace ktf::losses {
namespace {

/// Mean over every element of (output - target)^2.
class MSE : public Loss {
 public:
  torch::Tensor compute(const torch::Tensor& output, const torch::Tensor& target) override {
    return torch::mse_loss(output, target_like(output, target, "MSE"));
  }
};

/// Mean over every element of |output - target|.
class L1 : public Loss {
 public:
  torch::Tensor compute(const torch::Tensor& output, const torch::Tensor& target) override {
    return torch::l1_loss(output, target_like(output, target, "L1"));
  }
};

struct HuberOptions {
  double delta = 1.0;  ///< where the loss turns from quadratic to linear
};

/// Mean over every element of 0.5 x^2 where |x| <= delta, else delta (|x| - 0.5 delta).
class Huber : public Loss {
 public:
  explicit Huber(const HuberOptions& o) : o_(o) {
    KTF_CHECK(o.delta > 0, "delta must be > 0, got ", o.delta);
  }
  torch::Tensor compute(const torch::Tensor& output, const torch::Tensor& target) override {
    return torch::huber_loss(output, target_like(output, target, "Huber"), at::Reduction::Mean,
                             o_.delta);
  }

 private:
  HuberOptions o_;
};

}  // namespace

void register_regression(Registrar& r) {
  r.add(define<Loss>("ktf.losses.MSE", "mean squared error over all elements")
            .alias("tf.keras.losses.MeanSquaredError")
            .alias("torch.nn.MSELoss")
            .example(Json::object())
            .example_target({3})
            .build([](const NoOptions&, BuildContext&) { return std::make_shared<MSE>(); }));
  r.add(define<Loss>("ktf.losses.L1", "mean absolute error over all elements")
            .alias("tf.keras.losses.MeanAbsoluteError")
            .alias("torch.nn.L1Loss")
            .example(Json::object())
            .example_target({3})
            .build([](const NoOptions&, BuildContext&) { return std::make_shared<L1>(); }));
  r.add(
      define<Loss, HuberOptions>("ktf.losses.Huber",
                                 "Huber loss: quadratic within delta of the target, linear beyond")
          .alias("tf.keras.losses.Huber")
          .alias("torch.nn.HuberLoss")
          .arg("delta", &HuberOptions::delta,
               "where the loss turns from quadratic to linear; > 0 (default 1)")
          .above(0)
          .example(Json::object({{"delta", 1.0}}))
          .example_target({3})
          .build([](const HuberOptions& o, BuildContext&) { return std::make_shared<Huber>(o); }));
}

}  // namespace ktf::losses
