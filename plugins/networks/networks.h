// Registration functions of the networks plugin, one per component file, and the helpers the
// component files share (activations, padding, initialisation). Input-shape helpers are the
// SDK's (ktf/network.h).
#pragma once

#include <ktf/components.h>
#include <ktf/network.h>
#include <ktf/registry.h>

#include <array>
#include <functional>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace ktf::networks {

void register_layers(Registrar& r);        // ktf.layers.* and their tf.keras.layers.* forms
void register_sequential(Registrar& r);    // ktf.networks.Sequential
void register_mlp(Registrar& r);           // ktf.networks.MLP
void register_resnet(Registrar& r);        // ktf.networks.ResNet and its blocks
void register_mobilenet_v2(Registrar& r);  // ktf.networks.MobileNetV2 and InvertedResidual
void register_heads(Registrar& r);         // ktf.models.OneHeadNet, ktf.models.MultiHeadNet

/// Names accepted by activation(): relu, relu6, gelu, tanh, sigmoid, silu, elu, leaky_relu.
const std::vector<std::string>& activation_names();
/// The element-wise activation called `name`; throws ktf::Error naming `arg` when unknown.
std::function<torch::Tensor(const torch::Tensor&)> activation(const std::string& name,
                                                              const std::string& arg);

/// `round(value / divisor) * divisor`, at least `divisor`, and never more than 10% below `value`
/// (the channel rounding of MobileNet, Keras and torchvision alike).
int64_t make_divisible(double value, int64_t divisor = 8);

/// A size argument (kernel, stride, dilation) as {h, w}; throws ktf::Error naming `arg` when a
/// value is below `min` (the spec's .min() checks it first).
std::array<int64_t, 2> int_pair(const Size2& value, const std::string& arg, int64_t min = 1);

/// A padding argument: "same", "valid", an integer or [h, w] (declare it with
/// .choices({"same", "valid"}).min(0)).
using PaddingArg = std::variant<std::string, Size2>;

/// Padding given as "valid", "same", an integer or [h, w].
struct Padding {
  bool same = false;
  std::array<int64_t, 2> size{0, 0};  ///< explicit padding when !same
};
Padding parse_padding(const PaddingArg& value, const std::string& arg);

/// Keras "same" padding for one spatial dimension: (before, after), extra on the after side.
std::pair<int64_t, int64_t> same_padding(int64_t in, int64_t kernel, int64_t stride,
                                         int64_t dilation = 1);

/// PyTorch's default initialisation of a conv/linear weight and bias (kaiming-uniform, a=sqrt(5)).
void torch_default_init(torch::Tensor& weight, torch::Tensor& bias);

/// He-normal (fan_out, relu) for every Conv2d, ones/zeros for every BatchNorm, as torchvision
/// initialises ResNet and MobileNetV2 (submodules only: callable from a constructor).
void init_conv_bn(torch::nn::Module& module);

}  // namespace ktf::networks
