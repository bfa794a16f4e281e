// A network described layer by layer in the config, as a Caffe prototxt or a Keras Sequential:
//
//   {"ktf.networks.Sequential": {"layers": [
//       {"ktf.layers.Conv2d": {"out_channels": 32, "kernel_size": 3, "padding": "same"}},
//       {"ktf.layers.ReLU": {}},
//       {"ktf.layers.MaxPool2d": {"kernel_size": 2}},
//       {"ktf.layers.Flatten": {}},
//       {"ktf.layers.Linear": {"out_features": 10}}]}}
//
// Each layer is built for the shape the previous one produces (one zero example is run through it
// at build time), so input channels and features are never written. Layers are submodules named
// "0", "1", ... (or by `names`), so "base_model@3" freezes the fourth layer of a base model.
#include <set>

#include "networks.h"

namespace ktf::networks {
namespace {

struct SequentialOptions {
  std::vector<Ref<Network>> layers;  ///< the layers, applied in order (required)
  std::vector<std::string> names;    ///< submodule name of each layer; default "0", "1", ...
  std::optional<std::vector<int64_t>> input_shape;  ///< one example's shape; default: dataset's
};

class SequentialImpl : public Network {
 public:
  SequentialImpl(const SequentialOptions& o, BuildContext& ctx) {
    KTF_CHECK(!o.layers.empty(), "layers must list at least one layer");
    KTF_CHECK(o.names.empty() || o.names.size() == o.layers.size(), "names has ", o.names.size(),
              " entries but layers has ", o.layers.size());
    std::set<std::string> seen;
    for (const auto& n : o.names) {
      KTF_CHECK(!n.empty() && n.find_first_of(".@") == std::string::npos, "names: '", n,
                "' is not a valid submodule name (non-empty, no '.' or '@')");
      KTF_CHECK(seen.insert(n).second, "names: '", n, "' is given twice");
    }
    auto shape = example_shape(o.input_shape, ctx);
    InputShapeScope scope(ctx);
    for (size_t i = 0; i < o.layers.size(); ++i) {
      const auto& ref = o.layers[i];
      KTF_CHECK(!ref.empty(), "layers[", i, "] is null");
      ctx.input_shape = shape;
      auto layer = ctx.build(ref);
      try {
        shape = infer_output_shape(*layer, shape);
      } catch (const Error& e) {
        throw e.path().empty() ? e.with_prefix(ref.path) : e;
      }
      layers_.push_back(
          register_module(o.names.empty() ? std::to_string(i) : o.names[i], std::move(layer)));
    }
  }

  torch::Tensor forward(torch::Tensor x) override {
    for (auto& layer : layers_) x = layer->forward(x);
    return x;
  }

 private:
  std::vector<std::shared_ptr<Network>> layers_;
};
TORCH_MODULE(Sequential);

}  // namespace

void register_sequential(Registrar& r) {
  r.add(define<Network, SequentialOptions>(
            "ktf.networks.Sequential",
            "layers applied in order; each is built for the previous layer's output shape")
            .required("layers", &SequentialOptions::layers,
                      "the layers (network components, e.g. ktf.layers.Conv2d), in order")
            .non_empty()
            .arg("names", &SequentialOptions::names,
                 "submodule name of each layer (for freezing); default \"0\", \"1\", ...")
            .arg("input_shape", &SequentialOptions::input_shape,
                 "one example's shape, e.g. [1, 28, 28]; default: the dataset's")
            .non_empty()
            .min(1)
            .example(Json::object(
                         {{"layers",
                           Json::array({Json::object({{"ktf.layers.Conv2d",
                                                       Json::object({{"out_channels", 4},
                                                                     {"kernel_size", 3},
                                                                     {"padding", "same"}})}}),
                                        Json::object({{"ktf.layers.ReLU", Json::object()}}),
                                        Json::object({{"ktf.layers.MaxPool2d", Json::object()}}),
                                        Json::object({{"ktf.layers.Flatten", Json::object()}}),
                                        Json::object({{"ktf.layers.Linear",
                                                       Json::object({{"out_features", 10}})}})})}}),
                     {1, 28, 28})
            .build([](const SequentialOptions& o, BuildContext& ctx) {
              return Sequential(o, ctx).ptr();
            }));
}

}  // namespace ktf::networks
