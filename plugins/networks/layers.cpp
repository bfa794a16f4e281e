// Layers for ktf.networks.Sequential, described in JSON one by one as in a Caffe prototxt.
//
// Each layer is a Network built for the shape of one example it receives (ctx.input_shape, set by
// Sequential to the previous layer's output), so input channels and features are never written in
// the config. Parameters and buffers carry PyTorch's names (weight, bias, running_mean, ...).
//
// Two spellings are registered where PyTorch and Keras name arguments differently:
// ktf.layers.Conv2d / Linear / BatchNorm2d / MaxPool2d / AvgPool2d take PyTorch's argument names
// and defaults; tf.keras.layers.Conv2D / Dense / BatchNormalization / MaxPooling2D /
// AveragePooling2D take Keras's, so a Keras layer list runs unchanged. Inputs are NCHW: Keras
// layers act on axis 1 (channels) where Keras defaults to the last axis of NHWC.
#include <cmath>
#include <limits>

#include "max_pool.h"
#include "networks.h"

namespace ktf::networks {
namespace {

using Act = std::function<torch::Tensor(const torch::Tensor&)>;

/// The activation for an optional name ("linear" and null mean none).
Act optional_activation(const std::optional<std::string>& name) {
  if (!name || *name == "linear") return nullptr;
  return activation(*name, "activation");
}

std::vector<std::string> activation_choices_with_linear() {
  auto names = activation_names();
  names.push_back("linear");
  return names;
}

void expect_rank(const std::vector<int64_t>& shape, std::initializer_list<size_t> ranks,
                 const char* what) {
  for (size_t r : ranks)
    if (shape.size() == r) return;
  throw Error(std::string("expects one example of shape ") + what + ", got " + shape_str(shape));
}

// ---- Conv2d -------------------------------------------------------------------------------------

struct ConvConfig {
  int64_t out_channels = 0;
  std::array<int64_t, 2> kernel{3, 3}, stride{1, 1}, dilation{1, 1};
  Padding padding;
  int64_t groups = 1;
  bool bias = true;
  Act act;
};

class Conv2dLayerImpl : public Network {
 public:
  Conv2dLayerImpl(const ConvConfig& c, const std::vector<int64_t>& input_shape) : c_(c) {
    expect_rank(input_shape, {3}, "[channels, height, width]");
    const int64_t in = input_shape[0];
    KTF_CHECK(c.out_channels >= 1, "the number of filters must be >= 1, got ", c.out_channels);
    KTF_CHECK(c.groups >= 1 && in % c.groups == 0 && c.out_channels % c.groups == 0, "groups (",
              c.groups, ") must divide the input channels (", in, ") and the filters (",
              c.out_channels, ")");
    weight_ = register_parameter(
        "weight", torch::empty({c.out_channels, in / c.groups, c.kernel[0], c.kernel[1]}));
    if (c.bias) bias_ = register_parameter("bias", torch::empty({c.out_channels}));
    torch_default_init(weight_, bias_);
  }

  torch::Tensor forward(torch::Tensor x) override {
    std::array<int64_t, 2> pad = c_.padding.size;
    if (c_.padding.same) {
      auto [top, bottom] = same_padding(x.size(2), c_.kernel[0], c_.stride[0], c_.dilation[0]);
      auto [left, right] = same_padding(x.size(3), c_.kernel[1], c_.stride[1], c_.dilation[1]);
      if (top == bottom && left == right) {
        pad = {top, left};
      } else {
        x = torch::constant_pad_nd(x, {left, right, top, bottom}, 0);
        pad = {0, 0};
      }
    }
    auto y = torch::conv2d(x, weight_, bias_, c_.stride, pad, c_.dilation, c_.groups);
    return c_.act ? c_.act(y) : y;
  }

 private:
  ConvConfig c_;
  torch::Tensor weight_, bias_;
};
TORCH_MODULE(Conv2dLayer);

struct Conv2dOptions {
  int64_t out_channels = 0;               ///< number of filters (required)
  Size2 kernel_size = 3;                  ///< kernel size: integer or [h, w] (default 3)
  Size2 stride = 1;                       ///< stride: integer or [h, w] (default 1)
  PaddingArg padding = Size2(0);          ///< "same", "valid", integer or [h, w] (default 0)
  Size2 dilation = 1;                     ///< dilation: integer or [h, w] (default 1)
  int64_t groups = 1;                     ///< blocked connections from input to output channels
  bool bias = true;                       ///< learn an additive bias
  std::optional<std::string> activation;  ///< activation applied to the output (default none)
};

struct KerasConv2DOptions {
  int64_t filters = 0;                    ///< number of filters (required)
  Size2 kernel_size = 3;                  ///< kernel size: integer or [h, w] (required)
  Size2 strides = 1;                      ///< strides: integer or [h, w] (default 1)
  std::string padding = "valid";          ///< "valid" or "same" (default "valid")
  Size2 dilation_rate = 1;                ///< dilation: integer or [h, w] (default 1)
  int64_t groups = 1;                     ///< blocked connections from input to output channels
  bool use_bias = true;                   ///< learn an additive bias
  std::optional<std::string> activation;  ///< activation applied to the output (default none)
};

// ---- Linear -------------------------------------------------------------------------------------

class LinearLayerImpl : public Network {
 public:
  LinearLayerImpl(int64_t out_features, bool bias, Act act, const std::vector<int64_t>& input_shape)
      : act_(std::move(act)) {
    KTF_CHECK(!input_shape.empty(), "expects one example with at least one dimension, got []");
    KTF_CHECK(out_features >= 1, "the number of units must be >= 1, got ", out_features);
    weight_ = register_parameter("weight", torch::empty({out_features, input_shape.back()}));
    if (bias) bias_ = register_parameter("bias", torch::empty({out_features}));
    torch_default_init(weight_, bias_);
  }
  torch::Tensor forward(torch::Tensor x) override {
    auto y = torch::linear(x, weight_, bias_);
    return act_ ? act_(y) : y;
  }

 private:
  Act act_;
  torch::Tensor weight_, bias_;
};
TORCH_MODULE(LinearLayer);

struct LinearOptions {
  int64_t out_features = 0;  ///< output features (required); input features are inferred
  bool bias = true;          ///< learn an additive bias
  std::optional<std::string> activation;  ///< activation applied to the output (default none)
};

struct KerasDenseOptions {
  int64_t units = 0;  ///< output features (required); input features are inferred
  std::optional<std::string> activation;  ///< activation applied to the output (default none)
  bool use_bias = true;                   ///< learn an additive bias
};

// ---- BatchNorm ----------------------------------------------------------------------------------

class BatchNormLayerImpl : public Network {
 public:
  BatchNormLayerImpl(int64_t features, double momentum, double eps, bool scale, bool center)
      : momentum_(momentum), eps_(eps) {
    KTF_CHECK(momentum > 0 && momentum <= 1,
              "momentum (PyTorch convention: weight of the new batch) must be in (0, 1], got ",
              momentum);
    KTF_CHECK(eps > 0, "eps must be > 0, got ", eps);
    if (scale) weight_ = register_parameter("weight", torch::ones({features}));
    if (center) bias_ = register_parameter("bias", torch::zeros({features}));
    running_mean_ = register_buffer("running_mean", torch::zeros({features}));
    running_var_ = register_buffer("running_var", torch::ones({features}));
    num_batches_tracked_ = register_buffer("num_batches_tracked", torch::zeros({}, torch::kLong));
  }
  torch::Tensor forward(torch::Tensor x) override {
    if (is_training()) num_batches_tracked_.add_(1);
    namespace F = torch::nn::functional;
    return F::batch_norm(x, running_mean_, running_var_,
                         F::BatchNormFuncOptions()
                             .weight(weight_)
                             .bias(bias_)
                             .training(is_training())
                             .momentum(momentum_)
                             .eps(eps_));
  }

 private:
  double momentum_, eps_;
  torch::Tensor weight_, bias_, running_mean_, running_var_, num_batches_tracked_;
};
TORCH_MODULE(BatchNormLayer);

struct BatchNormOptions {
  double momentum = 0.1;  ///< weight of the batch statistics in the running ones (PyTorch)
  double eps = 1e-5;      ///< added to the variance
  bool affine = true;     ///< learn a scale and a shift
};

struct KerasBatchNormalizationOptions {
  double momentum = 0.99;  ///< weight of the old running statistics (Keras convention)
  double epsilon = 1e-3;   ///< added to the variance
  bool center = true;      ///< learn a shift (beta)
  bool scale = true;       ///< learn a scale (gamma)
};

// ---- activations, dropout, flatten
// ----------------------------------------------------------------

class FunctionLayerImpl : public Network {
 public:
  explicit FunctionLayerImpl(Act f) : f_(std::move(f)) {}
  torch::Tensor forward(torch::Tensor x) override { return f_(x); }

 private:
  Act f_;
};
TORCH_MODULE(FunctionLayer);

struct LeakyReLUOptions {
  double negative_slope = 0.01;  ///< slope for negative inputs
};

struct ActivationOptions {
  std::string activation = "relu";  ///< the activation's name
};

class DropoutLayerImpl : public Network {
 public:
  explicit DropoutLayerImpl(double rate) : rate_(rate) {
    KTF_CHECK(rate >= 0 && rate < 1, "rate must be in [0, 1), got ", rate);
  }
  torch::Tensor forward(torch::Tensor x) override {
    return rate_ > 0 ? torch::dropout(x, rate_, is_training()) : x;
  }

 private:
  double rate_;
};
TORCH_MODULE(DropoutLayer);

struct DropoutOptions {
  double rate = 0.5;  ///< fraction of the inputs zeroed while training
};

// ---- pooling ------------------------------------------------------------------------------------

struct PoolConfig {
  bool max = true;
  std::array<int64_t, 2> kernel{2, 2}, stride{2, 2};
  Padding padding;
};

class Pool2dLayerImpl : public Network {
 public:
  Pool2dLayerImpl(const PoolConfig& c, const std::vector<int64_t>& input_shape) : c_(c) {
    expect_rank(input_shape, {3}, "[channels, height, width]");
    KTF_CHECK(c.padding.same ||
                  (2 * c.padding.size[0] <= c.kernel[0] && 2 * c.padding.size[1] <= c.kernel[1]),
              "padding must be at most half the kernel size, got padding [", c.padding.size[0],
              ", ", c.padding.size[1], "] for kernel [", c.kernel[0], ", ", c.kernel[1], "]");
  }

  torch::Tensor forward(torch::Tensor x) override {
    if (!c_.padding.same) {
      if (c_.max) {
        if (c_.padding.size == std::array<int64_t, 2>{0, 0})
          return max_pool2d(x, c_.kernel, c_.stride);
        return torch::max_pool2d(x, c_.kernel, c_.stride, c_.padding.size);
      }
      return torch::avg_pool2d(x, c_.kernel, c_.stride, c_.padding.size);
    }
    // Keras "same": the extra row/column goes to the bottom/right; padding never wins a max and
    // is left out of an average.
    auto [top, bottom] = same_padding(x.size(2), c_.kernel[0], c_.stride[0]);
    auto [left, right] = same_padding(x.size(3), c_.kernel[1], c_.stride[1]);
    std::vector<int64_t> pad{left, right, top, bottom};
    if (c_.max) {
      x = torch::constant_pad_nd(x, pad, -std::numeric_limits<double>::infinity());
      return max_pool2d(x, c_.kernel, c_.stride);
    }
    auto ones = torch::ones({1, 1, x.size(2), x.size(3)}, x.options());
    auto sums = torch::avg_pool2d(torch::constant_pad_nd(x, pad, 0), c_.kernel, c_.stride);
    auto counts = torch::avg_pool2d(torch::constant_pad_nd(ones, pad, 0), c_.kernel, c_.stride);
    return sums / counts;
  }

 private:
  PoolConfig c_;
};
TORCH_MODULE(Pool2dLayer);

struct PoolOptions {
  Size2 kernel_size = 2;          ///< window size: integer or [h, w] (default 2)
  std::optional<Size2> stride;    ///< stride: integer or [h, w]; null means kernel_size
  PaddingArg padding = Size2(0);  ///< "same", "valid", integer or [h, w] (default 0)
};

struct KerasPoolOptions {
  Size2 pool_size = 2;            ///< window size: integer or [h, w] (default 2)
  std::optional<Size2> strides;   ///< stride: integer or [h, w]; null means pool_size
  std::string padding = "valid";  ///< "valid" or "same"
};

PoolConfig pool_config(bool max, const Size2& kernel, const char* kernel_arg,
                       const std::optional<Size2>& stride, const char* stride_arg,
                       const PaddingArg& padding, const char* padding_arg) {
  PoolConfig c;
  c.max = max;
  c.kernel = int_pair(kernel, kernel_arg);
  c.stride = stride ? int_pair(*stride, stride_arg) : c.kernel;
  c.padding = parse_padding(padding, padding_arg);
  return c;
}

class GlobalPool2dLayerImpl : public Network {
 public:
  GlobalPool2dLayerImpl(bool max, bool keepdims, const std::vector<int64_t>& input_shape)
      : max_(max), keepdims_(keepdims) {
    expect_rank(input_shape, {3}, "[channels, height, width]");
  }
  torch::Tensor forward(torch::Tensor x) override {
    if (max_) return std::get<0>(x.flatten(2).max(2)).reshape(out_shape(x));
    return x.mean({2, 3}, keepdims_);
  }

 private:
  std::vector<int64_t> out_shape(const torch::Tensor& x) const {
    if (keepdims_) return {x.size(0), x.size(1), 1, 1};
    return {x.size(0), x.size(1)};
  }
  bool max_, keepdims_;
};
TORCH_MODULE(GlobalPool2dLayer);

struct GlobalPoolOptions {
  bool keepdims = false;  ///< keep the spatial dimensions as size 1 ([N, C, 1, 1])
};

// ---- registration helpers
// -------------------------------------------------------------------------

/// Registers a parameterless element-wise layer.
void add_function(Registrar& r, const std::string& name, const std::string& summary, Act f,
                  std::vector<std::string> aliases = {}) {
  auto def = define<Network>(name, summary);
  for (auto& a : aliases) def.alias(std::move(a));
  r.add(def.example(Json::object(), {4, 6, 6}).build([f](const NoOptions&, BuildContext&) {
    return FunctionLayer(f).ptr();
  }));
}

std::shared_ptr<Network> make_conv(ConvConfig c, const BuildContext& ctx) {
  return Conv2dLayer(c, example_shape(std::nullopt, ctx)).ptr();
}

}  // namespace

void register_layers(Registrar& r) {
  r.add(define<Network, Conv2dOptions>(
            "ktf.layers.Conv2d", "2-D convolution over NCHW input; input channels are inferred")
            .required("out_channels", &Conv2dOptions::out_channels, "number of filters")
            .min(1)
            .arg("kernel_size", &Conv2dOptions::kernel_size, "kernel size: integer or [h, w]")
            .min(1)
            .arg("stride", &Conv2dOptions::stride, "stride: integer or [h, w]")
            .min(1)
            .arg("padding", &Conv2dOptions::padding,
                 "\"same\" (Keras: output size ceil(input / stride)), \"valid\", integer or [h, w]")
            .choices({"same", "valid"})
            .min(0)
            .arg("dilation", &Conv2dOptions::dilation, "dilation: integer or [h, w]")
            .min(1)
            .arg("groups", &Conv2dOptions::groups,
                 "blocked connections from input to output channels")
            .min(1)
            .arg("bias", &Conv2dOptions::bias, "learn an additive bias")
            .arg("activation", &Conv2dOptions::activation,
                 "activation applied to the output; null for none",
                 activation_choices_with_linear())
            .example(Json::object({{"out_channels", 8}, {"kernel_size", 3}, {"padding", "same"}}),
                     {1, 28, 28})
            .build([](const Conv2dOptions& o, BuildContext& ctx) {
              ConvConfig c;
              c.out_channels = o.out_channels;
              c.kernel = int_pair(o.kernel_size, "kernel_size");
              c.stride = int_pair(o.stride, "stride");
              c.dilation = int_pair(o.dilation, "dilation");
              c.padding = parse_padding(o.padding, "padding");
              c.groups = o.groups;
              c.bias = o.bias;
              c.act = optional_activation(o.activation);
              return make_conv(c, ctx);
            }));

  r.add(
      define<Network, KerasConv2DOptions>(
          "tf.keras.layers.Conv2D",
          "2-D convolution with Keras's arguments, over NCHW input; input channels are inferred")
          .required("filters", &KerasConv2DOptions::filters, "number of filters")
          .min(1)
          .required("kernel_size", &KerasConv2DOptions::kernel_size,
                    "kernel size: integer or [h, w]")
          .min(1)
          .arg("strides", &KerasConv2DOptions::strides, "strides: integer or [h, w]")
          .min(1)
          .arg("padding", &KerasConv2DOptions::padding, "\"valid\" or \"same\"", {"valid", "same"})
          .arg("dilation_rate", &KerasConv2DOptions::dilation_rate, "dilation: integer or [h, w]")
          .min(1)
          .arg("groups", &KerasConv2DOptions::groups,
               "blocked connections from input to output channels")
          .min(1)
          .arg("use_bias", &KerasConv2DOptions::use_bias, "learn an additive bias")
          .arg("activation", &KerasConv2DOptions::activation,
               "activation applied to the output; null or \"linear\" for none",
               activation_choices_with_linear())
          .example(Json::object({{"filters", 8},
                                 {"kernel_size", 3},
                                 {"strides", 2},
                                 {"padding", "same"},
                                 {"activation", "relu"}}),
                   {1, 28, 28})
          .build([](const KerasConv2DOptions& o, BuildContext& ctx) {
            ConvConfig c;
            c.out_channels = o.filters;
            c.kernel = int_pair(o.kernel_size, "kernel_size");
            c.stride = int_pair(o.strides, "strides");
            c.dilation = int_pair(o.dilation_rate, "dilation_rate");
            c.padding = parse_padding(o.padding, "padding");
            c.groups = o.groups;
            c.bias = o.use_bias;
            c.act = optional_activation(o.activation);
            return make_conv(c, ctx);
          }));

  r.add(define<Network, LinearOptions>(
            "ktf.layers.Linear",
            "fully connected layer on the last dimension; input features are inferred")
            .required("out_features", &LinearOptions::out_features, "output features")
            .min(1)
            .arg("bias", &LinearOptions::bias, "learn an additive bias")
            .arg("activation", &LinearOptions::activation,
                 "activation applied to the output; null for none",
                 activation_choices_with_linear())
            .example(Json::object({{"out_features", 10}}), {64})
            .build([](const LinearOptions& o, BuildContext& ctx) {
              return LinearLayer(o.out_features, o.bias, optional_activation(o.activation),
                                 example_shape(std::nullopt, ctx))
                  .ptr();
            }));

  r.add(define<Network, KerasDenseOptions>(
            "tf.keras.layers.Dense",
            "fully connected layer with Keras's arguments; input features are inferred")
            .required("units", &KerasDenseOptions::units, "output features")
            .min(1)
            .arg("activation", &KerasDenseOptions::activation,
                 "activation applied to the output; null or \"linear\" for none",
                 activation_choices_with_linear())
            .arg("use_bias", &KerasDenseOptions::use_bias, "learn an additive bias")
            .example(Json::object({{"units", 10}, {"activation", "relu"}}), {64})
            .build([](const KerasDenseOptions& o, BuildContext& ctx) {
              return LinearLayer(o.units, o.use_bias, optional_activation(o.activation),
                                 example_shape(std::nullopt, ctx))
                  .ptr();
            }));

  auto add_batchnorm = [&r](const std::string& name, const std::string& summary,
                            std::initializer_list<size_t> ranks, const char* what,
                            std::vector<int64_t> example) {
    std::vector<size_t> rank_list(ranks);
    std::string shape_doc(what);
    r.add(define<Network, BatchNormOptions>(name, summary)
              .arg("momentum", &BatchNormOptions::momentum,
                   "weight of the batch statistics in the running ones (PyTorch convention)")
              .above(0)
              .max(1)
              .arg("eps", &BatchNormOptions::eps, "added to the variance")
              .above(0)
              .arg("affine", &BatchNormOptions::affine, "learn a scale and a shift")
              .example(Json::object(), std::move(example))
              .build([rank_list, shape_doc](const BatchNormOptions& o, BuildContext& ctx) {
                auto shape = example_shape(std::nullopt, ctx);
                bool ok = false;
                for (size_t rk : rank_list) ok = ok || shape.size() == rk;
                KTF_CHECK(ok, "expects one example of shape ", shape_doc, ", got ",
                          shape_str(shape));
                return BatchNormLayer(shape[0], o.momentum, o.eps, o.affine, o.affine).ptr();
              }));
  };
  add_batchnorm("ktf.layers.BatchNorm2d",
                "batch normalisation over the channels of NCHW input; channels are inferred", {3},
                "[channels, height, width]", {4, 6, 6});
  add_batchnorm("ktf.layers.BatchNorm1d",
                "batch normalisation over the features of [N, F] or [N, F, L] input; inferred",
                {1, 2}, "[features] or [features, length]", {16});

  r.add(define<Network, KerasBatchNormalizationOptions>(
            "tf.keras.layers.BatchNormalization",
            "batch normalisation with Keras's arguments, over axis 1 (channels of NCHW input)")
            .arg("momentum", &KerasBatchNormalizationOptions::momentum,
                 "weight of the old running statistics (Keras convention), in [0, 1)")
            .min(0)
            .below(1)
            .arg("epsilon", &KerasBatchNormalizationOptions::epsilon, "added to the variance")
            .above(0)
            .arg("center", &KerasBatchNormalizationOptions::center, "learn a shift (beta)")
            .arg("scale", &KerasBatchNormalizationOptions::scale, "learn a scale (gamma)")
            .example(Json::object(), {4, 6, 6})
            .build([](const KerasBatchNormalizationOptions& o, BuildContext& ctx) {
              KTF_CHECK(o.momentum >= 0 && o.momentum < 1, "momentum must be in [0, 1), got ",
                        o.momentum);
              auto shape = example_shape(std::nullopt, ctx);
              return BatchNormLayer(shape[0], 1.0 - o.momentum, o.epsilon, o.scale, o.center).ptr();
            }));

  add_function(r, "ktf.layers.ReLU", "rectified linear unit, max(x, 0)",
               activation("relu", "activation"), {"tf.keras.layers.ReLU"});
  add_function(r, "ktf.layers.ReLU6", "min(max(x, 0), 6)", activation("relu6", "activation"));
  add_function(r, "ktf.layers.GELU", "Gaussian error linear unit (exact erf form)",
               activation("gelu", "activation"));
  add_function(r, "ktf.layers.Tanh", "hyperbolic tangent", activation("tanh", "activation"));
  add_function(r, "ktf.layers.Sigmoid", "logistic sigmoid", activation("sigmoid", "activation"));
  add_function(r, "ktf.layers.SiLU", "x * sigmoid(x) (swish)", activation("silu", "activation"));
  add_function(r, "ktf.layers.Flatten", "flattens every dimension after the batch one",
               [](const torch::Tensor& x) { return x.flatten(1); }, {"tf.keras.layers.Flatten"});

  r.add(define<Network, LeakyReLUOptions>("ktf.layers.LeakyReLU",
                                          "max(x, 0) + negative_slope * min(x, 0)")
            .arg("negative_slope", &LeakyReLUOptions::negative_slope, "slope for negative inputs")
            .example(Json::object({{"negative_slope", 0.1}}), {4, 6, 6})
            .build([](const LeakyReLUOptions& o, BuildContext&) {
              double slope = o.negative_slope;
              return FunctionLayer(
                         [slope](const torch::Tensor& x) { return torch::leaky_relu(x, slope); })
                  .ptr();
            }));

  r.add(define<Network, ActivationOptions>("ktf.layers.Activation",
                                           "an element-wise activation chosen by name")
            .alias("tf.keras.layers.Activation")
            .required("activation", &ActivationOptions::activation, "the activation's name")
            .choices(activation_choices_with_linear())
            .example(Json::object({{"activation", "gelu"}}), {4, 6, 6})
            .build([](const ActivationOptions& o, BuildContext&) {
              if (o.activation == "linear")
                return FunctionLayer([](const torch::Tensor& x) { return x; }).ptr();
              return FunctionLayer(activation(o.activation, "activation")).ptr();
            }));

  r.add(define<Network, DropoutOptions>("ktf.layers.Dropout",
                                        "zeroes a fraction of the inputs while training")
            .alias("tf.keras.layers.Dropout")
            .arg("rate", &DropoutOptions::rate, "fraction of the inputs zeroed, in [0, 1)")
            .min(0)
            .below(1)
            .example(Json::object({{"rate", 0.25}}), {16})
            .build(
                [](const DropoutOptions& o, BuildContext&) { return DropoutLayer(o.rate).ptr(); }));

  for (bool max : {true, false}) {
    const std::string torch_name = max ? "ktf.layers.MaxPool2d" : "ktf.layers.AvgPool2d";
    const std::string keras_name =
        max ? "tf.keras.layers.MaxPooling2D" : "tf.keras.layers.AveragePooling2D";
    const std::string what = max ? "2-D max pooling" : "2-D average pooling";
    r.add(define<Network, PoolOptions>(torch_name, what + " over NCHW input")
              .arg("kernel_size", &PoolOptions::kernel_size, "window size: integer or [h, w]")
              .min(1)
              .arg("stride", &PoolOptions::stride,
                   "stride: integer or [h, w]; null means kernel_size")
              .min(1)
              .arg("padding", &PoolOptions::padding,
                   "\"same\", \"valid\", integer or [h, w] (at most half the window)")
              .choices({"same", "valid"})
              .min(0)
              .example(Json::object({{"kernel_size", 2}}), {4, 6, 6})
              .build([max](const PoolOptions& o, BuildContext& ctx) {
                return Pool2dLayer(pool_config(max, o.kernel_size, "kernel_size", o.stride,
                                               "stride", o.padding, "padding"),
                                   example_shape(std::nullopt, ctx))
                    .ptr();
              }));
    r.add(
        define<Network, KerasPoolOptions>(keras_name, what + " with Keras's arguments")
            .arg("pool_size", &KerasPoolOptions::pool_size, "window size: integer or [h, w]")
            .min(1)
            .arg("strides", &KerasPoolOptions::strides,
                 "stride: integer or [h, w]; null means pool_size")
            .min(1)
            .arg("padding", &KerasPoolOptions::padding, "\"valid\" or \"same\"", {"valid", "same"})
            .example(Json::object({{"pool_size", 3}, {"strides", 2}, {"padding", "same"}}),
                     {4, 7, 7})
            .build([max](const KerasPoolOptions& o, BuildContext& ctx) {
              return Pool2dLayer(pool_config(max, o.pool_size, "pool_size", o.strides, "strides",
                                             o.padding, "padding"),
                                 example_shape(std::nullopt, ctx))
                  .ptr();
            }));
    r.add(define<Network, GlobalPoolOptions>(
              max ? "ktf.layers.GlobalMaxPool2d" : "ktf.layers.GlobalAvgPool2d",
              std::string(max ? "maximum" : "mean") +
                  " over the spatial dimensions: [N, C, H, W] -> [N, C]")
              .alias(max ? "tf.keras.layers.GlobalMaxPooling2D"
                         : "tf.keras.layers.GlobalAveragePooling2D")
              .arg("keepdims", &GlobalPoolOptions::keepdims,
                   "keep the spatial dimensions as size 1 ([N, C, 1, 1])")
              .example(Json::object(), {4, 6, 6})
              .build([max](const GlobalPoolOptions& o, BuildContext& ctx) {
                return GlobalPool2dLayer(max, o.keepdims, example_shape(std::nullopt, ctx)).ptr();
              }));
  }
}

}  // namespace ktf::networks
