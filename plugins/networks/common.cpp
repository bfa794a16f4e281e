// Helpers shared by the networks plugin's component files.
#include <cmath>
#include <sstream>

#include "networks.h"

namespace ktf::networks {

const std::vector<std::string>& activation_names() {
  static const std::vector<std::string> names{"relu",    "relu6", "gelu", "tanh",
                                              "sigmoid", "silu",  "elu",  "leaky_relu"};
  return names;
}

std::function<torch::Tensor(const torch::Tensor&)> activation(const std::string& name,
                                                              const std::string& arg) {
  if (name == "relu") return [](const torch::Tensor& x) { return torch::relu(x); };
  if (name == "relu6")
    return [](const torch::Tensor& x) {
      // libtorch 1.13 has no bfloat16 CPU kernel for hardtanh's backward: bf16 (autocast) runs it
      // in fp32, with the same values (clamping is exact) and hardtanh's own gradient at 0 and 6.
      if (x.scalar_type() == torch::kBFloat16)
        return torch::hardtanh(x.to(torch::kFloat), 0, 6).to(torch::kBFloat16);
      return torch::hardtanh(x, 0, 6);
    };
  if (name == "gelu") return [](const torch::Tensor& x) { return torch::gelu(x); };
  if (name == "tanh") return [](const torch::Tensor& x) { return torch::tanh(x); };
  if (name == "sigmoid") return [](const torch::Tensor& x) { return torch::sigmoid(x); };
  if (name == "silu") return [](const torch::Tensor& x) { return torch::silu(x); };
  if (name == "elu") return [](const torch::Tensor& x) { return torch::elu(x); };
  if (name == "leaky_relu") return [](const torch::Tensor& x) { return torch::leaky_relu(x); };
  std::string known;
  for (const auto& n : activation_names()) known += (known.empty() ? "'" : ", '") + n + "'";
  throw Error(arg + " must be one of " + known + ", got '" + name + "'");
}

int64_t make_divisible(double value, int64_t divisor) {
  int64_t rounded =
      std::max<int64_t>(divisor, static_cast<int64_t>(value + divisor / 2.0) / divisor * divisor);
  if (rounded < 0.9 * value) rounded += divisor;
  return rounded;
}

std::array<int64_t, 2> int_pair(const Size2& value, const std::string& arg, int64_t min) {
  KTF_CHECK(value.h >= min && value.w >= min, arg, " must be >= ", min, ", got ",
            ArgTraits<Size2>::to_json(value).dump());
  return {value.h, value.w};
}

Padding parse_padding(const PaddingArg& value, const std::string& arg) {
  Padding p;
  if (const auto* s = std::get_if<std::string>(&value)) {
    KTF_CHECK(*s == "same" || *s == "valid", arg,
              " must be \"same\", \"valid\", an integer or [height, width], got '", *s, "'");
    p.same = *s == "same";
    return p;
  }
  p.size = int_pair(std::get<Size2>(value), arg, 0);
  return p;
}

std::pair<int64_t, int64_t> same_padding(int64_t in, int64_t kernel, int64_t stride,
                                         int64_t dilation) {
  int64_t out = (in + stride - 1) / stride;
  int64_t total = std::max<int64_t>((out - 1) * stride + (kernel - 1) * dilation + 1 - in, 0);
  return {total / 2, total - total / 2};
}

void torch_default_init(torch::Tensor& weight, torch::Tensor& bias) {
  torch::NoGradGuard no_grad;
  torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias.defined()) {
    int64_t fan_in = weight.size(1);
    for (int64_t d = 2; d < weight.dim(); ++d) fan_in *= weight.size(d);
    double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
    bias.uniform_(-bound, bound);
  }
}

void init_conv_bn(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& m : module.modules(/*include_self=*/false)) {
    if (auto* conv = m->as<torch::nn::Conv2d>()) {
      torch::nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
      if (conv->bias.defined()) conv->bias.zero_();
    } else if (auto* bn = m->as<torch::nn::BatchNorm2d>()) {
      bn->weight.fill_(1);
      bn->bias.zero_();
    }
  }
}

}  // namespace ktf::networks
