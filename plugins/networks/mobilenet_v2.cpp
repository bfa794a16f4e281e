// MobileNetV2 (Sandler et al. 2018) with Keras's arguments (tf.keras.applications.MobileNetV2)
// and torchvision's layer structure: features (stem conv, 17 inverted residual blocks, 1x1 conv to
// 1280 channels) and an optional Linear classifier. With alpha = 1 and 1000 classes it has
// 3,504,872 parameters, as torchvision's mobilenet_v2 and Keras's trainable count.
//
// input_shape is given as Keras does, [height, width, channels]; the network itself takes NCHW
// batches like every ktf network. Strided convs are padded, so any input of 1x1 or more works; the
// original tool's affNIST config (40x40x3) ends with a 2x2 feature map. Pretrained weights cannot
// be downloaded: `weights` accepts null only.
#include <sstream>

#include "networks.h"

namespace ktf::networks {
namespace {

/// Conv2d (no bias), BatchNorm2d, ReLU6 as submodules "0", "1", "2" (torchvision's ConvBNReLU).
class ConvBNReLU6Impl : public torch::nn::SequentialImpl {
 public:
  ConvBNReLU6Impl(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t groups = 1) {
    push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel)
                                    .stride(stride)
                                    .padding((kernel - 1) / 2)
                                    .groups(groups)
                                    .bias(false)));
    push_back(torch::nn::BatchNorm2d(out));
    // activation("relu6"): torch::nn::ReLU6, with a backward that also runs in bf16 (autocast).
    push_back(torch::nn::Functional(activation("relu6", "activation")));
  }
  torch::Tensor forward(torch::Tensor x) { return SequentialImpl::forward(x); }
};
TORCH_MODULE(ConvBNReLU6);

/// Expand (1x1, unless expand_ratio is 1), depthwise 3x3 (strided), project (1x1, linear); a
/// residual connection when the stride is 1 and the channels are unchanged.
class InvertedResidualImpl : public Network {
 public:
  InvertedResidualImpl(int64_t in, int64_t out, int64_t stride, double expand_ratio)
      : residual_(stride == 1 && in == out) {
    KTF_CHECK(in >= 1, "in_channels must be >= 1, got ", in);
    KTF_CHECK(out >= 1, "out_channels must be >= 1, got ", out);
    KTF_CHECK(stride == 1 || stride == 2, "stride must be 1 or 2, got ", stride);
    KTF_CHECK(expand_ratio >= 1, "expand_ratio must be >= 1, got ", expand_ratio);
    const int64_t hidden = std::llround(static_cast<double>(in) * expand_ratio);
    torch::nn::Sequential conv;
    if (hidden != in) conv->push_back(ConvBNReLU6(in, hidden, 1, 1));
    conv->push_back(ConvBNReLU6(hidden, hidden, 3, stride, hidden));
    conv->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(hidden, out, 1).bias(false)));
    conv->push_back(torch::nn::BatchNorm2d(out));
    conv_ = register_module("conv", conv);
    init_conv_bn(*this);
  }
  torch::Tensor forward(torch::Tensor x) override {
    return residual_ ? x + conv_->forward(x) : conv_->forward(x);
  }

 private:
  bool residual_;
  torch::nn::Sequential conv_{nullptr};
};
TORCH_MODULE(InvertedResidual);

struct MobileNetV2Options {
  std::optional<std::vector<int64_t>> input_shape;  ///< [H, W, C] as Keras; default: dataset's
  double alpha = 1.0;                  ///< width multiplier (channels rounded to multiples of 8)
  bool include_top = true;             ///< end with pooling and a Linear classifier
  std::optional<std::string> weights;  ///< only null: pretrained weights cannot be downloaded
  std::optional<std::string> pooling;  ///< without top: "avg", "max" or null (feature map)
  std::optional<int64_t> classes;      ///< outputs of the top; default: dataset's classes, 1000
  std::optional<int64_t> num_outputs;  ///< same as classes
  double dropout = 0.0;                ///< dropout before the classifier
  std::optional<std::string> classifier_activation;  ///< null (logits) or "softmax"
};

class MobileNetV2Impl : public Network, public ReferenceNames {
 public:
  MobileNetV2Impl(const MobileNetV2Options& o, int64_t in_channels, int64_t classes)
      : alpha_(o.alpha),
        in_channels_(in_channels),
        classes_(classes),
        include_top_(o.include_top),
        pooling_(o.pooling.value_or("")),
        dropout_(o.dropout),
        softmax_(o.classifier_activation.value_or("") == "softmax") {
    KTF_CHECK(o.alpha > 0, "alpha must be > 0, got ", o.alpha);
    KTF_CHECK(o.dropout >= 0 && o.dropout < 1, "dropout must be in [0, 1), got ", o.dropout);
    KTF_CHECK(pooling_.empty() || pooling_ == "avg" || pooling_ == "max",
              "pooling must be \"avg\", \"max\" or null, got '", pooling_, "'");
    const std::string act = o.classifier_activation.value_or("");
    KTF_CHECK(act.empty() || act == "softmax" || act == "linear",
              "classifier_activation must be null, \"linear\" or \"softmax\", got '", act, "'");
    // t: expansion, c: output channels, n: repeats, s: stride of the first repeat.
    const int64_t settings[7][4] = {{1, 16, 1, 1}, {6, 24, 2, 2},  {6, 32, 3, 2}, {6, 64, 4, 2},
                                    {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
    int64_t channels = make_divisible(32 * o.alpha);
    torch::nn::Sequential features;
    features->push_back(ConvBNReLU6(in_channels, channels, 3, 2));
    for (const auto& s : settings) {
      // Keras truncates before rounding: _make_divisible(int(filters * alpha), 8).
      const int64_t out = make_divisible(static_cast<double>(static_cast<int64_t>(s[1] * o.alpha)));
      for (int64_t i = 0; i < s[2]; ++i) {
        features->push_back(
            InvertedResidual(channels, out, i == 0 ? s[3] : 1, static_cast<double>(s[0])));
        channels = out;
      }
    }
    out_channels_ = o.alpha > 1.0 ? make_divisible(1280 * o.alpha) : 1280;
    features->push_back(ConvBNReLU6(channels, out_channels_, 1, 1));
    features_ = register_module("features", features);
    init_conv_bn(*features_);
    if (include_top_) {
      classifier_ = register_module("classifier", torch::nn::Linear(out_channels_, classes));
      torch::NoGradGuard no_grad;
      torch::nn::init::normal_(classifier_->weight, 0, 0.01);
      classifier_->bias.zero_();
    }
  }

  /// torchvision's mobilenet_v2: the same names but its classifier's, a Sequential of Dropout
  /// and Linear (classifier.1). Its width_mult rounds channels from alpha * c; Keras (and ktf)
  /// from int(alpha * c): the same for alpha 1 and most others.
  std::string reference() const override {
    std::ostringstream r;
    r << "torchvision.models.mobilenet_v2(num_classes=" << (include_top_ ? classes_ : 1000);
    if (alpha_ != 1.0) r << ", width_mult=" << alpha_;
    r << ")";
    std::vector<std::string> changes;
    if (in_channels_ != 3)
      changes.push_back("model.features[0][0] = torch.nn.Conv2d(" + std::to_string(in_channels_) +
                        ", " + std::to_string(make_divisible(32 * alpha_)) +
                        ", 3, 2, 1, bias=False)");
    if (!include_top_) changes.push_back("model.classifier = torch.nn.Identity()");
    for (size_t i = 0; i < changes.size(); ++i) r << (i == 0 ? " with " : " and ") << changes[i];
    return r.str();
  }
  std::string reference_name(const std::string& name) const override {
    return name.rfind("classifier.", 0) == 0 ? "classifier.1." + name.substr(11) : name;
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = features_->forward(x);
    if (include_top_) {
      x = x.mean({2, 3});
      if (dropout_ > 0) x = torch::dropout(x, dropout_, is_training());
      x = classifier_(x);
      return softmax_ ? torch::softmax(x, 1) : x;
    }
    if (pooling_ == "avg") return x.mean({2, 3});
    if (pooling_ == "max") return x.amax({2, 3});
    return x;
  }

 private:
  double alpha_;
  int64_t in_channels_, classes_;
  bool include_top_;
  std::string pooling_;
  double dropout_;
  bool softmax_;
  int64_t out_channels_ = 0;
  torch::nn::Sequential features_{nullptr};
  torch::nn::Linear classifier_{nullptr};
};
TORCH_MODULE(MobileNetV2);

/// Input channels from a Keras [H, W, C] input_shape, checked against the dataset's [C, H, W].
int64_t input_channels(const MobileNetV2Options& o, const BuildContext& ctx) {
  if (o.input_shape) {
    const auto& s = *o.input_shape;
    KTF_CHECK(s.size() == 3 && s[0] > 0 && s[1] > 0 && s[2] > 0,
              "input_shape must be [height, width, channels] (Keras order), got ", shape_str(s));
    KTF_CHECK(ctx.input_shape.empty() || ctx.input_shape.size() != 3 || ctx.input_shape[0] == s[2],
              "input_shape ", shape_str(s), " (Keras order: height, width, channels) has ", s[2],
              " channels but the dataset's examples have shape ", shape_str(ctx.input_shape),
              " (channels first)");
    return s[2];
  }
  auto shape = example_shape(std::nullopt, ctx);
  KTF_CHECK(shape.size() == 3, "expects one example of shape [channels, height, width], got ",
            shape_str(shape));
  return shape[0];
}

int64_t num_classes(const MobileNetV2Options& o, const BuildContext& ctx) {
  KTF_CHECK(!o.classes || !o.num_outputs || *o.classes == *o.num_outputs, "classes (",
            o.classes.value_or(0), ") and num_outputs (", o.num_outputs.value_or(0),
            ") disagree: give one of them");
  int64_t classes = o.classes              ? *o.classes
                    : o.num_outputs        ? *o.num_outputs
                    : ctx.num_classes >= 1 ? ctx.num_classes
                                           : 1000;
  KTF_CHECK(classes >= 1, o.classes ? "classes" : "num_outputs", " must be >= 1, got ", classes);
  return classes;
}

struct InvertedResidualOptions {
  std::optional<int64_t> in_channels;  ///< input channels; default: from the input shape
  int64_t out_channels = 0;            ///< output channels (required)
  int64_t stride = 1;                  ///< stride of the depthwise conv: 1 or 2
  double expand_ratio = 6;             ///< hidden channels = in_channels * expand_ratio
};

}  // namespace

void register_mobilenet_v2(Registrar& r) {
  r.add(define<Network, InvertedResidualOptions>(
            "ktf.networks.components.InvertedResidual",
            "MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 linear projection, residual")
            .arg("in_channels", &InvertedResidualOptions::in_channels,
                 "input channels; default: from the input shape")
            .min(1)
            .required("out_channels", &InvertedResidualOptions::out_channels, "output channels")
            .min(1)
            .arg("stride", &InvertedResidualOptions::stride, "stride of the depthwise conv: 1 or 2")
            .min(1)
            .max(2)
            .arg("expand_ratio", &InvertedResidualOptions::expand_ratio,
                 "hidden channels = in_channels * expand_ratio (>= 1)")
            .min(1)
            .example(Json::object({{"out_channels", 16}, {"stride", 2}}), {8, 8, 8})
            .build([](const InvertedResidualOptions& o, BuildContext& ctx) {
              int64_t in = 0;
              if (o.in_channels) {
                in = *o.in_channels;
              } else {
                auto shape = example_shape(std::nullopt, ctx);
                KTF_CHECK(shape.size() == 3,
                          "expects one example of shape [channels, height, width], got ",
                          shape_str(shape));
                in = shape[0];
              }
              return InvertedResidual(in, o.out_channels, o.stride, o.expand_ratio).ptr();
            }));

  r.add(define<Network, MobileNetV2Options>(
            "ktf.networks.MobileNetV2",
            "MobileNetV2 with Keras's arguments (input_shape is [H, W, C]; inputs are NCHW)")
            .alias("tf.keras.applications.MobileNetV2")
            .arg("input_shape", &MobileNetV2Options::input_shape,
                 "[height, width, channels] as in Keras; default: the dataset's example shape")
            .sizes({3})
            .min(1)
            .arg("alpha", &MobileNetV2Options::alpha,
                 "width multiplier (> 0); channels are rounded to multiples of 8")
            .above(0)
            .arg("include_top", &MobileNetV2Options::include_top,
                 "end with global average pooling and a Linear classifier")
            .arg("weights", &MobileNetV2Options::weights,
                 "null only: pretrained weights cannot be downloaded")
            .arg("pooling", &MobileNetV2Options::pooling,
                 "without top: \"avg\" or \"max\" gives [N, C]; null the NCHW feature map",
                 {"avg", "max"})
            .arg("classes", &MobileNetV2Options::classes,
                 "outputs of the top; default: the dataset's classes, else 1000")
            .min(1)
            .arg("num_outputs", &MobileNetV2Options::num_outputs, "same as classes")
            .min(1)
            .arg("dropout", &MobileNetV2Options::dropout, "dropout before the classifier, [0, 1)")
            .min(0)
            .below(1)
            .arg("classifier_activation", &MobileNetV2Options::classifier_activation,
                 "null (logits, the default here) or \"softmax\" (Keras's default)",
                 {"softmax", "linear"})
            .example(Json::object({{"alpha", 0.35}, {"classes", 10}}), {3, 40, 40})
            .build([](const MobileNetV2Options& o, BuildContext& ctx) {
              KTF_CHECK(!o.weights,
                        "weights: pretrained weights cannot be downloaded in ktf; only null "
                        "(random initialisation) is supported, got ",
                        describe_value(Json(o.weights.value_or(""))),
                        ". To start from trained weights, train an earlier cycle (the model "
                        "carries over) or resume a run");
              KTF_CHECK(o.alpha > 0, "alpha must be > 0, got ", o.alpha);
              return MobileNetV2(o, input_channels(o, ctx), num_classes(o, ctx)).ptr();
            }));
}

}  // namespace ktf::networks
