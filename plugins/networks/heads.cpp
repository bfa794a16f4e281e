// Model containers: a base network (any network component, e.g. MobileNetV2 without its top)
// followed by Linear heads, as the original tool's ktf.models.OneHeadNet and MultiHeadNet.
//
// The base is the submodule "base_model" and the heads are "head" (OneHeadNet) or "heads.0",
// "heads.1", ... (MultiHeadNet), so "freeze_submodels": ["base_model"] freezes the base. A base
// output [N, C, H, W] is pooled ("avg" or "max") to [N, C]; an output [N, F] is used as is. The
// number of base features is found by running one zero example through the base at build time.
//
// MultiHeadNet returns the heads' outputs concatenated along dimension 1, in the order of
// `heads`; multi_head.h's split_heads() cuts them apart.
//
// base_model may be left out, as in the original tool's minimal config
// ({"ktf.models.OneHeadNet": {"num_outputs": 10}}): the default base is a compact VGG-style CNN
// (two blocks of two 3x3 conv + BatchNorm + ReLU, 32 then 64 filters, each block ending in 2x2
// max pooling) that fits any input of at least 4x4 pixels; `--describe ktf.models.OneHeadNet`
// prints it.
#include "multi_head.h"
#include "networks.h"

namespace ktf::networks {
namespace {

/// The compact CNN used when a config gives no base_model (see the file comment).
Ref<Network> default_base() {
  auto conv = [](int64_t filters) {
    return Json::object(
        {{"ktf.layers.Conv2d",
          Json::object({{"out_channels", filters}, {"padding", 1}, {"bias", false}})}});
  };
  auto bn = Json::object({{"ktf.layers.BatchNorm2d", Json::object()}});
  auto relu = Json::object({{"ktf.layers.ReLU", Json::object()}});
  auto pool = Json::object({{"ktf.layers.MaxPool2d", Json::object()}});
  Json::Array layers;
  for (int64_t filters : {32, 64}) {
    for (int i = 0; i < 2; ++i) layers.insert(layers.end(), {conv(filters), bn, relu});
    layers.push_back(pool);
  }
  Ref<Network> ref;
  ref.name = "ktf.networks.Sequential";
  ref.args = Json::object({{"layers", Json(std::move(layers))}});
  return ref;
}

struct HeadOptions {
  Ref<Network> base_model = default_base();  ///< the base network (default: a compact CNN)
  int64_t num_outputs = 0;                   ///< OneHeadNet: outputs of the head (required)
  std::vector<int64_t> heads;                ///< MultiHeadNet: output size of each head (required)
  double dropout = 0.0;                      ///< dropout between the base and the head(s)
  std::string pooling = "avg";               ///< pooling of a 4-D base output: "avg" or "max"
  std::optional<std::vector<int64_t>> input_shape;  ///< one example's shape; default: dataset's
};

/// The base network and the pooling/dropout in front of the heads.
class HeadNetBase : public Network {
 protected:
  /// Builds and registers the base; returns its number of output features.
  int64_t build_base(const HeadOptions& o, BuildContext& ctx) {
    KTF_CHECK(o.dropout >= 0 && o.dropout < 1, "dropout must be in [0, 1), got ", o.dropout);
    KTF_CHECK(o.pooling == "avg" || o.pooling == "max", "pooling must be \"avg\" or \"max\", got '",
              o.pooling, "'");
    KTF_CHECK(!o.base_model.empty(), "base_model must be a network component, not null");
    dropout_ = o.dropout;
    max_pool_ = o.pooling == "max";
    auto shape = example_shape(o.input_shape, ctx);
    auto saved = ctx.input_shape;
    ctx.input_shape = shape;
    std::shared_ptr<Network> base;
    try {
      base = ctx.build(o.base_model);
    } catch (...) {
      ctx.input_shape = saved;
      throw;
    }
    ctx.input_shape = saved;
    base_ = register_module("base_model", base);
    std::vector<int64_t> out;
    try {
      out = infer_output_shape(*base_, shape);
    } catch (const Error& e) {
      throw e.path().empty() ? e.with_prefix(o.base_model.path) : e;
    }
    KTF_CHECK(out.size() == 1 || out.size() == 3, "base_model outputs ", shape_str(out),
              " per example; expected [features] or [channels, height, width]");
    return out[0];
  }

  /// Base output, pooled to [N, F], with dropout applied.
  torch::Tensor features(torch::Tensor x) {
    x = base_->forward(x);
    if (x.dim() == 4) x = max_pool_ ? x.amax({2, 3}) : x.mean({2, 3});
    if (dropout_ > 0) x = torch::dropout(x, dropout_, is_training());
    return x;
  }

 private:
  std::shared_ptr<Network> base_;
  double dropout_ = 0;
  bool max_pool_ = false;
};

class OneHeadNetImpl : public HeadNetBase {
 public:
  OneHeadNetImpl(const HeadOptions& o, BuildContext& ctx) {
    KTF_CHECK(o.num_outputs >= 1, "num_outputs must be >= 1, got ", o.num_outputs);
    const int64_t features = build_base(o, ctx);
    head_ = register_module("head", torch::nn::Linear(features, o.num_outputs));
  }
  torch::Tensor forward(torch::Tensor x) override { return head_(features(x)); }

 private:
  torch::nn::Linear head_{nullptr};
};
TORCH_MODULE(OneHeadNet);

class MultiHeadNetImpl : public HeadNetBase {
 public:
  MultiHeadNetImpl(const HeadOptions& o, BuildContext& ctx) : sizes_(o.heads) {
    KTF_CHECK(!o.heads.empty(), "heads must list at least one output size");
    for (size_t i = 0; i < o.heads.size(); ++i)
      KTF_CHECK(o.heads[i] >= 1, "heads[", i, "] must be >= 1, got ", o.heads[i]);
    const int64_t features = build_base(o, ctx);
    heads_ = register_module("heads", torch::nn::ModuleList());
    for (int64_t size : o.heads) {
      torch::nn::Linear head(features, size);
      heads_->push_back(head);
      linears_.push_back(head);
    }
  }
  /// The heads' outputs concatenated along dimension 1, in the order of `heads`.
  torch::Tensor forward(torch::Tensor x) override {
    return torch::cat(forward_heads(std::move(x)), 1);
  }
  /// One output per head.
  std::vector<torch::Tensor> forward_heads(torch::Tensor x) {
    auto f = features(std::move(x));
    std::vector<torch::Tensor> outs;
    for (auto& head : linears_) outs.push_back(head(f));
    return outs;
  }
  const std::vector<int64_t>& head_sizes() const { return sizes_; }

 private:
  std::vector<int64_t> sizes_;
  torch::nn::ModuleList heads_{nullptr};
  std::vector<torch::nn::Linear> linears_;
};
TORCH_MODULE(MultiHeadNet);

Json example_base() {
  return Json::object(
      {{"ktf.networks.Sequential",
        Json::object(
            {{"layers",
              Json::array({Json::object({{"ktf.layers.Conv2d",
                                          Json::object({{"out_channels", 8}, {"stride", 2}})}}),
                           Json::object({{"ktf.layers.ReLU", Json::object()}})})}})}});
}

}  // namespace

void register_heads(Registrar& r) {
  r.add(
      define<Network, HeadOptions>("ktf.models.OneHeadNet",
                                   "a base network followed by one Linear head")
          .arg("base_model", &HeadOptions::base_model,
               "the base network, e.g. MobileNetV2 without its top; default: a compact CNN "
               "(2 x [2 x (3x3 conv, BatchNorm, ReLU), 2x2 max pool], 32 then 64 filters)")
          .required("num_outputs", &HeadOptions::num_outputs, "outputs of the head")
          .min(1)
          .arg("dropout", &HeadOptions::dropout, "dropout between the base and the head")
          .min(0)
          .below(1)
          .arg("pooling", &HeadOptions::pooling,
               "pooling of a 4-D base output ([N, C, H, W] -> [N, C])", {"avg", "max"})
          .arg("input_shape", &HeadOptions::input_shape,
               "one example's shape, e.g. [3, 40, 40]; default: the dataset's")
          .non_empty()
          .min(1)
          .example(Json::object({{"base_model", example_base()}, {"num_outputs", 10}}), {3, 16, 16})
          .build([](const HeadOptions& o, BuildContext& ctx) { return OneHeadNet(o, ctx).ptr(); }));
  r.add(
      define<Network, HeadOptions>(
          "ktf.models.MultiHeadNet",
          "a base network followed by several Linear heads; outputs concatenated on dim 1")
          .arg("base_model", &HeadOptions::base_model,
               "the base network, e.g. MobileNetV2 without its top; default: a compact CNN "
               "(2 x [2 x (3x3 conv, BatchNorm, ReLU), 2x2 max pool], 32 then 64 filters)")
          .required("heads", &HeadOptions::heads,
                    "output size of each head; the output is their concatenation on dim 1")
          .non_empty()
          .min(1)
          .arg("dropout", &HeadOptions::dropout, "dropout between the base and the heads")
          .min(0)
          .below(1)
          .arg("pooling", &HeadOptions::pooling,
               "pooling of a 4-D base output ([N, C, H, W] -> [N, C])", {"avg", "max"})
          .arg("input_shape", &HeadOptions::input_shape,
               "one example's shape, e.g. [3, 40, 40]; default: the dataset's")
          .non_empty()
          .min(1)
          .example(Json::object({{"base_model", example_base()}, {"heads", Json::array({10, 4})}}),
                   {3, 16, 16})
          .build(
              [](const HeadOptions& o, BuildContext& ctx) { return MultiHeadNet(o, ctx).ptr(); }));
}

}  // namespace ktf::networks
