// MyCustomModel: two conv blocks of features and a head that is itself a component of the config
// (by default a ktf.networks.MLP from the in-tree networks plugin). The network is written as a
// libtorch module (MyCustomModelImpl + TORCH_MODULE); the head is built for the features' shape.
#include <ktf/components.h>
#include <ktf/network.h>
#include <ktf/registry.h>

#include "my_plugin.h"

namespace my_plugin {
namespace {

struct MyCustomModelOptions {
  int64_t width = 16;     ///< filters of the first conv block (the second has twice as many)
  double dropout = 0.25;  ///< dropout on the features, before the head
  /// the head, built for the features' shape
  ktf::Ref<ktf::Network> head = ktf::Ref<ktf::Network>::to(
      "ktf.networks.MLP",
      ktf::Json::object({{"num_outputs", 10}, {"hidden", ktf::Json::array({64})}}));
};

class MyCustomModelImpl : public ktf::Network {
 public:
  MyCustomModelImpl(const MyCustomModelOptions& o, ktf::BuildContext& ctx) {
    const auto& input = ctx.input_shape;
    KTF_CHECK(input.size() == 3, "MyCustomModel needs image input [C, H, W], got ",
              ktf::shape_str(input));
    conv1 = register_module(
        "conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(input[0], o.width, 3).padding(1)));
    conv2 = register_module(
        "conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(o.width, 2 * o.width, 3).padding(1)));
    dropout = register_module("dropout", torch::nn::Dropout(o.dropout));
    // The head is built for what the features produce; InputShapeScope restores ctx.input_shape
    // for whatever the caller builds next.
    ktf::InputShapeScope scope(ctx);
    ctx.input_shape = {2 * o.width, input[1] / 4, input[2] / 4};
    head = register_module("head", ctx.build(o.head));
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = torch::max_pool2d(torch::relu(conv1(x)), 2);
    x = torch::max_pool2d(torch::relu(conv2(x)), 2);
    return head->forward(dropout(x));
  }

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::Dropout dropout{nullptr};
  std::shared_ptr<ktf::Network> head;
};
TORCH_MODULE(MyCustomModel);

}  // namespace

void register_my_custom_model(ktf::Registrar& r) {
  r.add(ktf::define<ktf::Network, MyCustomModelOptions>(
            "MyCustomModel", "the user's own small CNN: conv features and a configurable head")
            .arg("width", &MyCustomModelOptions::width, "filters of the first conv block")
            .min(1)
            .arg("dropout", &MyCustomModelOptions::dropout, "dropout rate before the head")
            .min(0)
            .below(1)
            .arg("head", &MyCustomModelOptions::head, "the head network, built for the features")
            .example(ktf::Json::object({{"width", 8}}), {1, 28, 28})
            .build([](const MyCustomModelOptions& o, ktf::BuildContext& ctx) {
              return MyCustomModel(o, ctx).ptr();
            }));
}

}  // namespace my_plugin
