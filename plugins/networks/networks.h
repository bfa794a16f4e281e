// Registration functions of the networks plugin, one per component file, and the helpers the
// component files share (input shapes, dummy forwards, activations, int-or-pair arguments).
#pragma once

#include <ktf/components.h>
#include <ktf/registry.h>

#include <array>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace ktf::networks {

void register_layers(Registrar& r);        // ktf.layers.* and their tf.keras.layers.* forms
void register_sequential(Registrar& r);    // ktf.networks.Sequential
void register_mlp(Registrar& r);           // ktf.networks.MLP
void register_resnet(Registrar& r);        // ktf.networks.ResNet and its blocks
void register_mobilenet_v2(Registrar& r);  // ktf.networks.MobileNetV2 and InvertedResidual
void register_heads(Registrar& r);         // ktf.models.OneHeadNet, ktf.models.MultiHeadNet

/// "[1, 28, 28]".
std::string shape_str(const std::vector<int64_t>& shape);

/// One example's input shape (no batch dimension): `given` when set (validated), else
/// ctx.input_shape. Throws ktf::Error when neither is known.
std::vector<int64_t> example_shape(const std::optional<std::vector<int64_t>>& given,
                                   const BuildContext& ctx);

/// The shape (no batch dimension) `net` produces for one example of `input_shape`: runs a forward
/// pass on a zero batch of one, without gradients and in eval mode (the mode is restored).
/// A libtorch error (input too small for a kernel, wrong rank...) becomes a ktf::Error.
std::vector<int64_t> infer_output_shape(Network& net, const std::vector<int64_t>& input_shape);

/// Names accepted by activation(): relu, relu6, gelu, tanh, sigmoid, silu, elu, leaky_relu.
const std::vector<std::string>& activation_names();
/// The element-wise activation called `name`; throws ktf::Error naming `arg` when unknown.
std::function<torch::Tensor(const torch::Tensor&)> activation(const std::string& name,
                                                              const std::string& arg);

/// `round(value / divisor) * divisor`, at least `divisor`, and never more than 10% below `value`
/// (the channel rounding of MobileNet, Keras and torchvision alike).
int64_t make_divisible(double value, int64_t divisor = 8);

/// An argument given as an integer or as [h, w]; throws ktf::Error naming `arg` otherwise or when
/// a value is below `min`.
std::array<int64_t, 2> int_pair(const Json& value, const std::string& arg, int64_t min = 1);

/// Padding given as "valid", "same", an integer or [h, w].
struct Padding {
  bool same = false;
  std::array<int64_t, 2> size{0, 0};  ///< explicit padding when !same
};
Padding parse_padding(const Json& value, const std::string& arg);

/// Keras "same" padding for one spatial dimension: (before, after), extra on the after side.
std::pair<int64_t, int64_t> same_padding(int64_t in, int64_t kernel, int64_t stride,
                                         int64_t dilation = 1);

/// PyTorch's default initialisation of a conv/linear weight and bias (kaiming-uniform, a=sqrt(5)).
void torch_default_init(torch::Tensor& weight, torch::Tensor& bias);

/// He-normal (fan_out, relu) for every Conv2d, ones/zeros for every BatchNorm, as torchvision
/// initialises ResNet and MobileNetV2 (submodules only: callable from a constructor).
void init_conv_bn(torch::nn::Module& module);

}  // namespace ktf::networks
