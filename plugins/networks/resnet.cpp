// ResNet (He et al. 2015) with torchvision's structure and parameter names (conv1, bn1, layer1..4,
// fc; blocks conv1/bn1/conv2/bn2[/conv3/bn3]/downsample), built from two reusable blocks that are
// also registered on their own: ktf.networks.components.BasicBlock and .Bottleneck.
//
// small_input replaces the ImageNet stem (7x7 stride-2 conv + 3x3 stride-2 max pool) with a 3x3
// stride-1 conv and no pool, the usual choice for 28x28 and 32x32 images. Input channels come from
// the input shape. Without the top the network outputs the globally averaged features [N, C].
#include "networks.h"

namespace ktf::networks {
namespace {

torch::nn::Conv2d conv3x3(int64_t in, int64_t out, int64_t stride) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false));
}
torch::nn::Conv2d conv1x1(int64_t in, int64_t out, int64_t stride) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1).stride(stride).bias(false));
}

void check_block_args(int64_t in, int64_t out, int64_t stride) {
  KTF_CHECK(in >= 1, "in_channels must be >= 1, got ", in);
  KTF_CHECK(out >= 1, "out_channels must be >= 1, got ", out);
  KTF_CHECK(stride >= 1, "stride must be >= 1, got ", stride);
}

/// Two 3x3 convs with a residual connection; a 1x1 conv projects the shortcut when the shape
/// changes.
class BasicBlockImpl : public Network {
 public:
  BasicBlockImpl(int64_t in, int64_t out, int64_t stride) {
    check_block_args(in, out, stride);
    conv1_ = register_module("conv1", conv3x3(in, out, stride));
    bn1_ = register_module("bn1", torch::nn::BatchNorm2d(out));
    conv2_ = register_module("conv2", conv3x3(out, out, 1));
    bn2_ = register_module("bn2", torch::nn::BatchNorm2d(out));
    if (stride != 1 || in != out)
      downsample_ = register_module(
          "downsample",
          torch::nn::Sequential(conv1x1(in, out, stride), torch::nn::BatchNorm2d(out)));
    init_conv_bn(*this);
  }
  torch::Tensor forward(torch::Tensor x) override {
    auto y = torch::relu(bn1_(conv1_(x)));
    y = bn2_(conv2_(y));
    return torch::relu(y + (downsample_ ? downsample_->forward(x) : x));
  }

 private:
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr}, bn2_{nullptr};
  torch::nn::Sequential downsample_{nullptr};
};
TORCH_MODULE(BasicBlock);

/// 1x1 reduce to `width`, 3x3 (strided) at `width`, 1x1 expand to `out` (torchvision's v1.5: the
/// stride is on the 3x3 conv).
class BottleneckImpl : public Network {
 public:
  BottleneckImpl(int64_t in, int64_t out, int64_t stride, int64_t width) {
    check_block_args(in, out, stride);
    KTF_CHECK(width >= 1, "width must be >= 1, got ", width);
    conv1_ = register_module("conv1", conv1x1(in, width, 1));
    bn1_ = register_module("bn1", torch::nn::BatchNorm2d(width));
    conv2_ = register_module("conv2", conv3x3(width, width, stride));
    bn2_ = register_module("bn2", torch::nn::BatchNorm2d(width));
    conv3_ = register_module("conv3", conv1x1(width, out, 1));
    bn3_ = register_module("bn3", torch::nn::BatchNorm2d(out));
    if (stride != 1 || in != out)
      downsample_ = register_module(
          "downsample",
          torch::nn::Sequential(conv1x1(in, out, stride), torch::nn::BatchNorm2d(out)));
    init_conv_bn(*this);
  }
  torch::Tensor forward(torch::Tensor x) override {
    auto y = torch::relu(bn1_(conv1_(x)));
    y = torch::relu(bn2_(conv2_(y)));
    y = bn3_(conv3_(y));
    return torch::relu(y + (downsample_ ? downsample_->forward(x) : x));
  }

 private:
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, conv3_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr}, bn2_{nullptr}, bn3_{nullptr};
  torch::nn::Sequential downsample_{nullptr};
};
TORCH_MODULE(Bottleneck);

struct ResNetOptions {
  int64_t depth = 18;                  ///< 18, 34 (basic blocks), 50, 101 or 152 (bottlenecks)
  bool small_input = false;            ///< 3x3 stride-1 stem without max pool (28x28, 32x32)
  bool include_top = true;             ///< end with a Linear classifier; else pooled features
  std::optional<int64_t> num_outputs;  ///< outputs of the top; default: the dataset's classes
  std::optional<std::vector<int64_t>> input_shape;  ///< one example's [C, H, W]; default: dataset's
};

class ResNetImpl : public Network, public ReferenceNames {
 public:
  ResNetImpl(const ResNetOptions& o, int64_t in_channels, int64_t num_outputs)
      : small_input_(o.small_input),
        depth_(o.depth),
        in_channels_(in_channels),
        num_outputs_(o.include_top ? num_outputs : 0) {
    std::vector<int64_t> blocks;
    switch (o.depth) {
      case 18:
        blocks = {2, 2, 2, 2};
        break;
      case 34:
      case 50:
        blocks = {3, 4, 6, 3};
        break;
      case 101:
        blocks = {3, 4, 23, 3};
        break;
      case 152:
        blocks = {3, 8, 36, 3};
        break;
      default:
        throw Error("depth must be one of 18, 34, 50, 101, 152, got " + std::to_string(o.depth));
    }
    const bool bottleneck = o.depth >= 50;
    conv1_ = register_module(
        "conv1",
        o.small_input
            ? conv3x3(in_channels, 64, 1)
            : torch::nn::Conv2d(
                  torch::nn::Conv2dOptions(in_channels, 64, 7).stride(2).padding(3).bias(false)));
    bn1_ = register_module("bn1", torch::nn::BatchNorm2d(64));
    int64_t channels = 64;
    const int64_t widths[] = {64, 128, 256, 512};
    for (int s = 0; s < 4; ++s) {
      torch::nn::Sequential stage;
      for (int64_t b = 0; b < blocks[s]; ++b) {
        const int64_t stride = (s > 0 && b == 0) ? 2 : 1;
        const int64_t out = bottleneck ? widths[s] * 4 : widths[s];
        if (bottleneck)
          stage->push_back(Bottleneck(channels, out, stride, widths[s]));
        else
          stage->push_back(BasicBlock(channels, out, stride));
        channels = out;
      }
      stages_.push_back(register_module("layer" + std::to_string(s + 1), stage));
    }
    if (o.include_top) fc_ = register_module("fc", torch::nn::Linear(channels, num_outputs));
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = torch::relu(bn1_(conv1_(x)));
    if (!small_input_) x = torch::max_pool2d(x, 3, 2, 1);
    for (auto& stage : stages_) x = stage->forward(x);
    x = x.mean({2, 3});
    return fc_ ? fc_(x) : x;
  }

  /// torchvision's resnet<depth> has these very names; what differs from it is said.
  std::string reference() const override {
    const std::string c = std::to_string(in_channels_);
    std::string r = "torchvision.models.resnet" + std::to_string(depth_) +
                    "(num_classes=" + std::to_string(num_outputs_ > 0 ? num_outputs_ : 1000) + ")";
    if (small_input_)
      r += " with model.conv1 = torch.nn.Conv2d(" + c +
           ", 64, 3, 1, 1, bias=False) and model.maxpool = torch.nn.Identity()";
    else if (in_channels_ != 3)
      r += " with model.conv1 = torch.nn.Conv2d(" + c + ", 64, 7, 2, 3, bias=False)";
    if (num_outputs_ == 0)
      r += std::string(small_input_ || in_channels_ != 3 ? "," : " with") +
           " model.fc = torch.nn.Identity()";
    return r;
  }
  std::string reference_name(const std::string& name) const override { return name; }

 private:
  bool small_input_;
  int64_t depth_, in_channels_, num_outputs_;
  torch::nn::Conv2d conv1_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr};
  std::vector<torch::nn::Sequential> stages_;
  torch::nn::Linear fc_{nullptr};
};
TORCH_MODULE(ResNet);

/// Channels of a [C, H, W] example shape.
int64_t channels_of(const std::vector<int64_t>& shape) {
  KTF_CHECK(shape.size() == 3, "expects one example of shape [channels, height, width], got ",
            shape_str(shape));
  return shape[0];
}

struct BlockOptions {
  std::optional<int64_t> in_channels;  ///< input channels; default: from the input shape
  int64_t out_channels = 0;            ///< output channels (required)
  int64_t stride = 1;                  ///< stride of the block (2 halves height and width)
  std::optional<int64_t> width;        ///< Bottleneck only: inner channels; default out / 4
};

int64_t block_in_channels(const BlockOptions& o, const BuildContext& ctx) {
  return o.in_channels ? *o.in_channels : channels_of(example_shape(std::nullopt, ctx));
}

}  // namespace

void register_resnet(Registrar& r) {
  r.add(define<Network, BlockOptions>(
            "ktf.networks.components.BasicBlock",
            "ResNet basic block: two 3x3 convs with batch norm and a residual connection")
            .arg("in_channels", &BlockOptions::in_channels,
                 "input channels; default: from the input shape")
            .min(1)
            .required("out_channels", &BlockOptions::out_channels, "output channels")
            .min(1)
            .arg("stride", &BlockOptions::stride, "stride (2 halves height and width)")
            .min(1)
            .example(Json::object({{"out_channels", 16}, {"stride", 2}}), {8, 8, 8})
            .build([](const BlockOptions& o, BuildContext& ctx) {
              return BasicBlock(block_in_channels(o, ctx), o.out_channels, o.stride).ptr();
            }));
  r.add(define<Network, BlockOptions>(
            "ktf.networks.components.Bottleneck",
            "ResNet bottleneck block: 1x1 reduce, 3x3, 1x1 expand, with a residual connection")
            .arg("in_channels", &BlockOptions::in_channels,
                 "input channels; default: from the input shape")
            .min(1)
            .required("out_channels", &BlockOptions::out_channels, "output channels")
            .min(1)
            .arg("stride", &BlockOptions::stride, "stride of the 3x3 conv")
            .min(1)
            .arg("width", &BlockOptions::width, "inner channels; default out_channels / 4")
            .min(1)
            .example(Json::object({{"out_channels", 32}, {"stride", 2}}), {8, 8, 8})
            .build([](const BlockOptions& o, BuildContext& ctx) {
              const int64_t width = o.width ? *o.width : o.out_channels / 4;
              return Bottleneck(block_in_channels(o, ctx), o.out_channels, o.stride, width).ptr();
            }));
  r.add(define<Network, ResNetOptions>("ktf.networks.ResNet",
                                       "ResNet-18/34/50/101/152 (torchvision structure)")
            .arg("depth", &ResNetOptions::depth, "18, 34 (basic blocks), 50, 101 or 152")
            .arg("small_input", &ResNetOptions::small_input,
                 "3x3 stride-1 stem without max pool, for 28x28 or 32x32 images")
            .arg("include_top", &ResNetOptions::include_top,
                 "end with a Linear classifier; false outputs the pooled features [N, C]")
            .arg("num_outputs", &ResNetOptions::num_outputs,
                 "outputs of the top; default: the dataset's number of classes")
            .min(1)
            .arg("input_shape", &ResNetOptions::input_shape,
                 "one example's [C, H, W]; default: the dataset's")
            .sizes({3})
            .min(1)
            .example(Json::object({{"depth", 18}, {"small_input", true}, {"num_outputs", 10}}),
                     {1, 28, 28})
            .build([](const ResNetOptions& o, BuildContext& ctx) {
              const int64_t in = channels_of(example_shape(o.input_shape, ctx));
              int64_t outputs = -1;
              if (o.include_top) {
                outputs = o.num_outputs ? *o.num_outputs : ctx.num_classes;
                KTF_CHECK(o.num_outputs || outputs >= 1,
                          "num_outputs is required with include_top: the dataset does not give "
                          "its number of classes");
                KTF_CHECK(outputs >= 1, "num_outputs must be >= 1, got ", outputs);
              }
              return ResNet(o, in, outputs).ptr();
            }));
}

}  // namespace ktf::networks
