// Categorical cross-entropy on class indices, as tf.keras.losses.SparseCategoricalCrossentropy.
#include <ktf/components.h>
#include <ktf/registry.h>

#include "losses.h"

namespace ktf::losses {
namespace {

struct CrossEntropyOptions {
  bool from_logits = true;            ///< outputs are logits (true) or probabilities (false)
  double label_smoothing = 0.0;       ///< mix of the one-hot target with the uniform distribution
  std::vector<double> class_weights;  ///< per-class weights; empty = all 1
};

class CrossEntropy : public Loss {
 public:
  explicit CrossEntropy(const CrossEntropyOptions& o) : o_(o) {
    KTF_CHECK(o.label_smoothing >= 0 && o.label_smoothing < 1,
              "label_smoothing must be in [0, 1), got ", o.label_smoothing);
    for (size_t i = 0; i < o.class_weights.size(); ++i)
      KTF_CHECK(o.class_weights[i] >= 0, "class_weights[", i, "] must be >= 0, got ",
                o.class_weights[i]);
    if (!o.class_weights.empty()) weights_ = torch::tensor(o.class_weights, torch::kFloat32);
  }

  torch::Tensor compute(const torch::Tensor& output, const torch::Tensor& target) override {
    KTF_CHECK(output.dim() == 2, "expected output [batch, classes], got ", output.sizes());
    KTF_CHECK(weights_.numel() == 0 || weights_.size(0) == output.size(1), "class_weights has ",
              weights_.numel(), " entries but the output has ", output.size(1), " classes");
    auto log_probs =
        o_.from_logits ? torch::log_softmax(output, 1) : torch::log(output.clamp_min(1e-7));
    auto options = torch::nn::functional::NLLLossFuncOptions();
    if (weights_.numel()) options.weight(weights_.to(log_probs.scalar_type()));
    // Class indices [N]; Keras-style [N, 1] targets are accepted too.
    auto target_long =
        (target.dim() == 2 && target.size(1) == 1 ? target.squeeze(1) : target).to(torch::kLong);
    KTF_CHECK(target_long.dim() == 1 && target_long.size(0) == output.size(0),
              "expected class-index targets [", output.size(0), "], got ", target.sizes());
    auto nll = torch::nn::functional::nll_loss(log_probs, target_long, options);
    if (o_.label_smoothing == 0) return nll;
    // Smoothing term as torch::nn::functional::cross_entropy computes it: the class-weighted sum
    // of -log p over classes, normalised like the NLL term (by the summed weights of the targets),
    // divided by the number of classes.
    torch::Tensor smooth;
    if (weights_.numel()) {
      auto w = weights_.to(log_probs.scalar_type());
      smooth = -(log_probs * w.unsqueeze(0)).sum() / w.index_select(0, target_long).sum();
    } else {
      smooth = -log_probs.sum(1).mean();
    }
    return (1 - o_.label_smoothing) * nll + (o_.label_smoothing / output.size(1)) * smooth;
  }

  void to(torch::Device device) override {
    if (weights_.defined()) weights_ = weights_.to(device);
  }

 private:
  CrossEntropyOptions o_;
  torch::Tensor weights_ = torch::empty({0});
};

}  // namespace

void register_cross_entropy(Registrar& r) {
  r.add(define<Loss, CrossEntropyOptions>(
            "ktf.losses.CrossEntropy",
            "cross-entropy between class-index targets and logits (or probabilities)")
            .alias("tf.keras.losses.SparseCategoricalCrossentropy")
            .alias("torch.nn.CrossEntropyLoss")
            .arg("from_logits", &CrossEntropyOptions::from_logits,
                 "outputs are logits (true) or probabilities (false)")
            .arg("label_smoothing", &CrossEntropyOptions::label_smoothing,
                 "weight of the uniform distribution mixed into the target, in [0, 1)")
            .min(0)
            .below(1)
            .arg("class_weights", &CrossEntropyOptions::class_weights,
                 "per-class weights; empty means all 1")
            .min(0)
            .example(Json::object({{"from_logits", true}}))
            .example_target({})
            .build([](const CrossEntropyOptions& o, BuildContext&) {
              return std::make_shared<CrossEntropy>(o);
            }));
}

}  // namespace ktf::losses
