// A multi-layer perceptron: Flatten, hidden Linear (+BatchNorm) + activation (+Dropout) layers,
// and a Linear head producing logits.
#include "networks.h"

namespace ktf::networks {
namespace {

struct MLPOptions {
  int64_t num_outputs = 0;                ///< size of the output layer (required)
  std::vector<int64_t> hidden{256, 128};  ///< units of each hidden layer (default [256, 128])
  std::string activation = "relu";        ///< activation after each hidden layer
  double dropout = 0.0;                   ///< dropout rate after each hidden layer
  bool batchnorm = false;                 ///< BatchNorm1d after each hidden Linear
  std::optional<std::vector<int64_t>> input_shape;  ///< one example's shape; default: dataset's
};

class MLPImpl : public Network {
 public:
  MLPImpl(const MLPOptions& o, const std::vector<int64_t>& input_shape)
      : act_(activation(o.activation, "activation")), dropout_(o.dropout) {
    KTF_CHECK(o.num_outputs >= 1, "num_outputs must be >= 1, got ", o.num_outputs);
    KTF_CHECK(o.dropout >= 0 && o.dropout < 1, "dropout must be in [0, 1), got ", o.dropout);
    int64_t features = 1;
    for (int64_t d : input_shape) features *= d;
    for (size_t i = 0; i < o.hidden.size(); ++i) {
      KTF_CHECK(o.hidden[i] >= 1, "hidden[", i, "] must be >= 1, got ", o.hidden[i]);
      const std::string n = std::to_string(i + 1);
      dense_.push_back(register_module("dense" + n, torch::nn::Linear(features, o.hidden[i])));
      if (o.batchnorm)
        bn_.push_back(register_module("bn" + n, torch::nn::BatchNorm1d(o.hidden[i])));
      features = o.hidden[i];
    }
    head_ = register_module("head", torch::nn::Linear(features, o.num_outputs));
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = x.flatten(1);
    for (size_t i = 0; i < dense_.size(); ++i) {
      x = dense_[i](x);
      if (!bn_.empty()) x = bn_[i](x);
      x = act_(x);
      if (dropout_ > 0) x = torch::dropout(x, dropout_, is_training());
    }
    return head_(x);
  }

 private:
  std::function<torch::Tensor(const torch::Tensor&)> act_;
  double dropout_;
  std::vector<torch::nn::Linear> dense_;
  std::vector<torch::nn::BatchNorm1d> bn_;
  torch::nn::Linear head_{nullptr};
};
TORCH_MODULE(MLP);

}  // namespace

void register_mlp(Registrar& r) {
  r.add(define<Network, MLPOptions>("ktf.networks.MLP",
                                    "multi-layer perceptron on the flattened input")
            .required("num_outputs", &MLPOptions::num_outputs, "size of the output layer")
            .min(1)
            .arg("hidden", &MLPOptions::hidden, "units of each hidden layer (default [256, 128])")
            .min(1)
            .arg("activation", &MLPOptions::activation, "activation after each hidden layer",
                 activation_names())
            .arg("dropout", &MLPOptions::dropout, "dropout rate after each hidden layer, in [0, 1)")
            .min(0)
            .below(1)
            .arg("batchnorm", &MLPOptions::batchnorm, "BatchNorm1d after each hidden Linear")
            .arg("input_shape", &MLPOptions::input_shape,
                 "one example's shape, e.g. [1, 28, 28]; default: the dataset's")
            .non_empty()
            .min(1)
            .example(Json::object({{"num_outputs", 10}, {"hidden", Json::array({32, 16})}}),
                     {1, 28, 28})
            .build([](const MLPOptions& o, BuildContext& ctx) {
              return MLP(o, example_shape(o.input_shape, ctx)).ptr();
            }));
}

}  // namespace ktf::networks
