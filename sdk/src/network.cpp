#include "ktf/network.h"

#include <sstream>

namespace ktf {

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
  // On the network's device (a model already moved to a GPU).
  torch::Device device = torch::kCPU;
  for (const auto& p : net.parameters()) {
    device = p.device();
    break;
  }
  torch::Tensor out;
  try {
    out = net.forward(torch::zeros(batch_shape, torch::device(device)));
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

}  // namespace ktf
