// Focal loss (Lin et al. 2017): cross-entropy scaled by (1 - p_t)^gamma, so easy examples count
// less. A custom loss shipped by the user's plugin.
#include <ktf/components.h>
#include <ktf/registry.h>

#include "my_plugin.h"

namespace my_plugin {
namespace {

struct FocalLossOptions {
  double gamma = 2.0;  ///< focusing parameter; 0 gives plain cross-entropy
};

class FocalLoss : public ktf::Loss {
 public:
  explicit FocalLoss(const FocalLossOptions& o) : gamma_(o.gamma) {
    KTF_CHECK(o.gamma >= 0, "gamma must be >= 0, got ", o.gamma);
  }
  torch::Tensor compute(const torch::Tensor& output, const torch::Tensor& target) override {
    auto log_p =
        torch::log_softmax(output, 1).gather(1, target.to(torch::kLong).unsqueeze(1)).squeeze(1);
    auto p = log_p.exp();
    return (-(1 - p).pow(gamma_) * log_p).mean();
  }

 private:
  double gamma_;
};

}  // namespace

void register_focal_loss(ktf::Registrar& r) {
  r.add(ktf::define<ktf::Loss, FocalLossOptions>("my.losses.FocalLoss",
                                                 "cross-entropy down-weighting easy examples")
            .arg("gamma", &FocalLossOptions::gamma, "focusing parameter; 0 gives cross-entropy")
            .min(0)
            .example(ktf::Json::object({{"gamma", 2.0}}))
            .example_target({})
            .build([](const FocalLossOptions& o, ktf::BuildContext&) {
              return std::make_shared<FocalLoss>(o);
            }));
}

}  // namespace my_plugin
