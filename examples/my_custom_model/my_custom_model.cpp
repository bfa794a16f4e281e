// MyCustomModel: two conv blocks and a dense head, the user's own network, written as a libtorch
// module (MyCustomModelImpl + TORCH_MODULE) and registered for configs under "MyCustomModel".
#include <ktf/components.h>
#include <ktf/registry.h>

#include "my_plugin.h"

namespace my_plugin {
namespace {

struct MyCustomModelOptions {
  int64_t num_outputs = 10;  ///< classes
  int64_t width = 16;        ///< filters of the first conv block (the second has twice as many)
  double dropout = 0.25;     ///< dropout before the head
};

class MyCustomModelImpl : public ktf::Network {
 public:
  MyCustomModelImpl(const MyCustomModelOptions& o, const std::vector<int64_t>& input_shape) {
    KTF_CHECK(o.num_outputs > 0, "num_outputs must be > 0, got ", o.num_outputs);
    KTF_CHECK(o.width > 0, "width must be > 0, got ", o.width);
    KTF_CHECK(o.dropout >= 0 && o.dropout < 1, "dropout must be in [0, 1), got ", o.dropout);
    KTF_CHECK(input_shape.size() == 3, "MyCustomModel needs image input [C, H, W], got ",
              input_shape.size(), " dimensions");
    const int64_t c = input_shape[0], h = input_shape[1] / 4, w = input_shape[2] / 4;
    conv1 = register_module("conv1",
                            torch::nn::Conv2d(torch::nn::Conv2dOptions(c, o.width, 3).padding(1)));
    conv2 = register_module(
        "conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(o.width, 2 * o.width, 3).padding(1)));
    dropout = register_module("dropout", torch::nn::Dropout(o.dropout));
    head = register_module("head", torch::nn::Linear(2 * o.width * h * w, o.num_outputs));
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = torch::max_pool2d(torch::relu(conv1(x)), 2);
    x = torch::max_pool2d(torch::relu(conv2(x)), 2);
    return head(dropout(x.flatten(1)));
  }

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::Dropout dropout{nullptr};
  torch::nn::Linear head{nullptr};
};
TORCH_MODULE(MyCustomModel);

}  // namespace

void register_my_custom_model(ktf::Registrar& r) {
  r.add(ktf::define<ktf::Network, MyCustomModelOptions>("MyCustomModel",
                                                        "the user's own small CNN classifier")
            .arg("num_outputs", &MyCustomModelOptions::num_outputs, "number of classes")
            .arg("width", &MyCustomModelOptions::width, "filters of the first conv block")
            .arg("dropout", &MyCustomModelOptions::dropout, "dropout rate before the head")
            .example(ktf::Json::object({{"num_outputs", 10}}), {1, 28, 28})
            .build([](const MyCustomModelOptions& o, ktf::BuildContext& ctx) {
              return MyCustomModel(o, ctx.input_shape).ptr();
            }));
}

}  // namespace my_plugin
