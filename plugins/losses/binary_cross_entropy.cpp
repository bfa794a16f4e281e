// Binary cross-entropy on 0/1 (or soft) targets, as tf.keras.losses.BinaryCrossentropy.
#include <ktf/components.h>
#include <ktf/registry.h>

#include "losses.h"

namespace ktf::losses {
namespace {

struct BinaryCrossEntropyOptions {
  bool from_logits = true;       ///< outputs are logits (true) or probabilities in [0, 1] (false)
  double label_smoothing = 0.0;  ///< targets become t * (1 - s) + 0.5 * s
};

/// Mean over every element of -(t log p + (1 - t) log(1 - p)). With from_logits the sigmoid is
/// fused into the loss (numerically stable, as torch.nn.BCEWithLogitsLoss); with probabilities
/// they are clipped to [1e-7, 1 - 1e-7] as Keras does.
class BinaryCrossEntropy : public Loss {
 public:
  explicit BinaryCrossEntropy(const BinaryCrossEntropyOptions& o) : o_(o) {
    KTF_CHECK(o.label_smoothing >= 0 && o.label_smoothing <= 1,
              "label_smoothing must be in [0, 1], got ", o.label_smoothing);
  }

  torch::Tensor compute(const torch::Tensor& output, const torch::Tensor& target) override {
    auto t = target_like(output, target, "BinaryCrossEntropy");
    if (o_.label_smoothing > 0) t = t * (1 - o_.label_smoothing) + 0.5 * o_.label_smoothing;
    if (o_.from_logits) return torch::binary_cross_entropy_with_logits(output, t);
    constexpr double eps = 1e-7;  // Keras backend.epsilon()
    auto p = output.clamp(eps, 1 - eps);
    return -(t * torch::log(p + eps) + (1 - t) * torch::log(1 - p + eps)).mean();
  }

 private:
  BinaryCrossEntropyOptions o_;
};

}  // namespace

void register_binary_cross_entropy(Registrar& r) {
  r.add(define<Loss, BinaryCrossEntropyOptions>(
            "ktf.losses.BinaryCrossEntropy",
            "binary cross-entropy between 0/1 targets and logits (or probabilities), mean over "
            "all elements")
            .alias("tf.keras.losses.BinaryCrossentropy")
            .alias("torch.nn.BCEWithLogitsLoss")
            .arg("from_logits", &BinaryCrossEntropyOptions::from_logits,
                 "outputs are logits (true, default) or probabilities in [0, 1] (false)")
            .arg("label_smoothing", &BinaryCrossEntropyOptions::label_smoothing,
                 "targets become t * (1 - s) + 0.5 * s; in [0, 1]")
            .min(0)
            .max(1)
            .example(Json::object({{"from_logits", true}}))
            .example_target({1})
            .build([](const BinaryCrossEntropyOptions& o, BuildContext&) {
              return std::make_shared<BinaryCrossEntropy>(o);
            }));
}

}  // namespace ktf::losses
