// Helpers shared by the networks plugin's component files.
#include <cmath>
#include <sstream>

#include "networks.h"

namespace ktf::networks {

std::string shape_str(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << "]";
  return out.str();
}

std::vector<int64_t> example_shape(const std::optional<std::vector<int64_t>>& given,
                                   const BuildContext& ctx) {
  if (given) {
    bool positive = !given->empty();
    for (int64_t d : *given) positive = positive && d > 0;
    KTF_CHECK(positive, "input_shape must be a non-empty list of positive sizes, got ",
              shape_str(*given));
    return *given;
  }
  KTF_CHECK(!ctx.input_shape.empty(),
            "the input shape is unknown: give input_shape (one example's shape without the batch "
            "dimension, e.g. [1, 28, 28]) or build the network for a dataset");
  return ctx.input_shape;
}

namespace {
std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }
}  // namespace

std::vector<int64_t> infer_output_shape(Network& net, const std::vector<int64_t>& input_shape) {
  torch::NoGradGuard no_grad;
  const bool training = net.is_training();
  net.eval();
  std::vector<int64_t> batch_shape{1};
  batch_shape.insert(batch_shape.end(), input_shape.begin(), input_shape.end());
  torch::Tensor out;
  try {
    out = net.forward(torch::zeros(batch_shape));
  } catch (const c10::Error& e) {
    net.train(training);
    throw Error("cannot run on an input of shape " + shape_str(input_shape) + ": " +
                first_line(e.what_without_backtrace()));
  } catch (...) {
    net.train(training);
    throw;
  }
  net.train(training);
  auto shape = out.sizes().vec();
  shape.erase(shape.begin());
  return shape;
}

const std::vector<std::string>& activation_names() {
  static const std::vector<std::string> names{"relu",    "relu6", "gelu", "tanh",
                                              "sigmoid", "silu",  "elu",  "leaky_relu"};
  return names;
}

std::function<torch::Tensor(const torch::Tensor&)> activation(const std::string& name,
                                                              const std::string& arg) {
  if (name == "relu") return [](const torch::Tensor& x) { return torch::relu(x); };
  if (name == "relu6") return [](const torch::Tensor& x) { return torch::hardtanh(x, 0, 6); };
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

std::array<int64_t, 2> int_pair(const Json& value, const std::string& arg, int64_t min) {
  std::array<int64_t, 2> out{0, 0};
  auto integral = [](const Json& v) {
    return v.is_int() || (v.is_number() && v.as_number() == std::floor(v.as_number()));
  };
  if (integral(value)) {
    out = {static_cast<int64_t>(value.as_number()), static_cast<int64_t>(value.as_number())};
  } else if (value.is_array() && value.size() == 2 && integral(value.as_array()[0]) &&
             integral(value.as_array()[1])) {
    out = {static_cast<int64_t>(value.as_array()[0].as_number()),
           static_cast<int64_t>(value.as_array()[1].as_number())};
  } else {
    throw Error(arg + " must be an integer or a list [height, width], got " +
                describe_value(value));
  }
  KTF_CHECK(out[0] >= min && out[1] >= min, arg, " must be >= ", min, ", got ", value.dump());
  return out;
}

Padding parse_padding(const Json& value, const std::string& arg) {
  Padding p;
  if (value.is_string()) {
    const auto& s = value.as_string();
    KTF_CHECK(s == "same" || s == "valid", arg,
              " must be \"same\", \"valid\", an integer or [height, width], got '", s, "'");
    p.same = s == "same";
    return p;
  }
  try {
    p.size = int_pair(value, arg, 0);
  } catch (const Error&) {
    throw Error(arg + " must be \"same\", \"valid\", an integer or [height, width], got " +
                describe_value(value));
  }
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
