// ktf.layers.* / tf.keras.layers.* and ktf.networks.Sequential: inferred input sizes, Keras
// "same" padding, batch-norm statistics against libtorch's own modules, errors naming the layer.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "test_util.h"

namespace ktf::test {
namespace {

TEST(Sequential, InfersInputChannelsAndFeatures) {
  auto net = make_network(R"({"ktf.networks.Sequential": {"layers": [
      {"ktf.layers.Conv2d": {"out_channels": 8, "kernel_size": 3, "padding": "same"}},
      {"ktf.layers.BatchNorm2d": {}},
      {"ktf.layers.ReLU": {}},
      {"ktf.layers.MaxPool2d": {"kernel_size": 2}},
      {"ktf.layers.Flatten": {}},
      {"ktf.layers.Dropout": {"rate": 0.3}},
      {"ktf.layers.Linear": {"out_features": 10}}]}})",
                          {1, 28, 28});
  auto params = net->named_parameters();
  EXPECT_EQ(params["0.weight"].sizes(), (c10::IntArrayRef{8, 1, 3, 3}));
  EXPECT_EQ(params["1.weight"].sizes(), (c10::IntArrayRef{8}));
  EXPECT_EQ(params["6.weight"].sizes(), (c10::IntArrayRef{10, 8 * 14 * 14}));
  EXPECT_EQ(count_parameters(*net), (8 * 9 + 8) + 16 + (8 * 14 * 14 * 10 + 10));
  EXPECT_TRUE(net->named_buffers().contains("1.running_mean"));
  EXPECT_EQ(output_shape(*net, {3, 1, 28, 28}), (std::vector<int64_t>{3, 10}));
  EXPECT_TRUE(net->is_training());  // the build-time shape pass leaves the mode as it was
}

TEST(Sequential, NamesLayersForFreezing) {
  auto net = make_network(R"({"ktf.networks.Sequential": {
      "names": ["features", "act", "classifier"],
      "layers": [{"tf.keras.layers.Dense": {"units": 6}}, {"ktf.layers.Tanh": {}},
                 {"tf.keras.layers.Dense": {"units": 2, "use_bias": false}}]}})",
                          {4});
  auto children = net->named_children();
  EXPECT_TRUE(children.contains("features"));
  EXPECT_TRUE(children.contains("classifier"));
  EXPECT_EQ(count_parameters(*net), 4 * 6 + 6 + 6 * 2);
  EXPECT_CONTAINS(build_error(R"({"ktf.networks.Sequential": {"names": ["a.b"],
                                  "layers": [{"ktf.layers.ReLU": {}}]}})",
                              {4}),
                  "names: 'a.b' is not a valid submodule name");
}

TEST(Sequential, KerasLayerListRunsUnchanged) {
  auto net = make_network(R"({"ktf.networks.Sequential": {"layers": [
      {"tf.keras.layers.Conv2D": {"filters": 4, "kernel_size": 3, "strides": 2,
                                  "padding": "same", "activation": "relu"}},
      {"tf.keras.layers.BatchNormalization": {}},
      {"tf.keras.layers.MaxPooling2D": {"pool_size": 3, "strides": 2, "padding": "same"}},
      {"tf.keras.layers.Conv2D": {"filters": 6, "kernel_size": [3, 1]}},
      {"tf.keras.layers.ReLU": {}},
      {"tf.keras.layers.GlobalAveragePooling2D": {}},
      {"tf.keras.layers.Dropout": {"rate": 0.5}},
      {"tf.keras.layers.Dense": {"units": 10, "activation": "linear"}}]}})",
                          {3, 28, 28});
  // 28 -(conv s2 same)-> 14 -(pool 3 s2 same)-> 7 -(conv 3x1 valid)-> 5x7, 6 channels.
  EXPECT_EQ(net->named_parameters()["3.weight"].sizes(), (c10::IntArrayRef{6, 4, 3, 1}));
  EXPECT_EQ(net->named_parameters()["7.weight"].sizes(), (c10::IntArrayRef{10, 6}));
  EXPECT_EQ(output_shape(*net, {2, 3, 28, 28}), (std::vector<int64_t>{2, 10}));
}

TEST(Sequential, ALayerThatCannotRunNamesItsPosition) {
  auto error = build_error(R"({"ktf.networks.Sequential": {"layers": [
      {"ktf.layers.MaxPool2d": {"kernel_size": 4}},
      {"ktf.layers.Conv2d": {"out_channels": 2, "kernel_size": 5}}]}})",
                           {1, 8, 8});
  EXPECT_CONTAINS(error,
                  "layers › [1] › ktf.layers.Conv2d: cannot run on an input of shape [1, 2, 2]");
  EXPECT_CONTAINS(build_error(R"({"ktf.networks.Sequential": {"layers": []}})", {4}),
                  "ktf.networks.Sequential › layers: must not be empty");
  EXPECT_CONTAINS(build_error(R"({"ktf.networks.Sequential": {"layers": [
                                  {"ktf.layers.Conv2d": {"out_channels": 2}}]}})",
                              {784}),
                  "expects one example of shape [channels, height, width], got [784]");
}

TEST(Layers, KerasSamePaddingPutsTheExtraRowAtTheBottom) {
  auto conv = make_network(R"({"tf.keras.layers.Conv2D": {"filters": 2, "kernel_size": 3,
                               "strides": 2, "padding": "same"}})",
                           {1, 6, 6});
  auto params = conv->named_parameters();
  torch::NoGradGuard no_grad;
  auto x = torch::randn({1, 1, 6, 6});
  // TensorFlow: total padding 1 per dimension, 0 before and 1 after.
  auto expected =
      torch::conv2d(torch::constant_pad_nd(x, {0, 1, 0, 1}), params["weight"], params["bias"], 2);
  auto y = conv->forward(x);
  EXPECT_EQ(y.sizes(), (c10::IntArrayRef{1, 2, 3, 3}));
  EXPECT_TRUE(torch::allclose(y, expected));
}

TEST(Layers, SamePoolingIgnoresThePadding) {
  torch::NoGradGuard no_grad;
  auto avg = make_network(R"({"tf.keras.layers.AveragePooling2D": {"pool_size": 2,
                              "padding": "same"}})",
                          {1, 5, 5});
  auto y = avg->forward(torch::full({1, 1, 5, 5}, 3.0));
  EXPECT_EQ(y.sizes(), (c10::IntArrayRef{1, 1, 3, 3}));
  EXPECT_TRUE(torch::allclose(y, torch::full({1, 1, 3, 3}, 3.0)));
  auto max = make_network(R"({"tf.keras.layers.MaxPooling2D": {"pool_size": 2,
                              "padding": "same"}})",
                          {1, 5, 5});
  EXPECT_TRUE(
      torch::equal(max->forward(torch::full({1, 1, 5, 5}, -2.0)), torch::full({1, 1, 3, 3}, -2.0)));
  auto global = make_network(R"({"ktf.layers.GlobalMaxPool2d": {"keepdims": true}})", {2, 3, 3});
  auto x = torch::arange(18, torch::kFloat).reshape({1, 2, 3, 3});
  EXPECT_TRUE(torch::equal(global->forward(x), torch::tensor({8.0f, 17.0f}).reshape({1, 2, 1, 1})));
}

/// MaxPool2d's own kernel for non-overlapping windows against torch::max_pool2d: values, the
/// gradient (which element of each window receives it), uncovered edge rows and columns.
void expect_max_pool_matches_libtorch(const std::string& layer, std::vector<int64_t> shape,
                                      std::array<int64_t, 2> kernel,
                                      torch::Dtype dtype = torch::kFloat) {
  SCOPED_TRACE(layer + " on " + c10::str(c10::IntArrayRef(shape)) + " " +
               c10::toString(c10::ScalarType(dtype)));
  auto net = make_network(layer, {shape.begin() + 1, shape.end()});
  auto x = torch::randn(shape).to(dtype).requires_grad_();
  auto y = net->forward(x);
  auto x_ref = x.detach().clone().requires_grad_();
  auto y_ref = torch::max_pool2d(x_ref, kernel, kernel);
  ASSERT_EQ(y.sizes(), y_ref.sizes());
  EXPECT_EQ(y.scalar_type(), dtype);
  EXPECT_TRUE(torch::equal(y, y_ref));
  auto g = (torch::rand(y.sizes()) + 0.5).to(dtype);  // no zeros, so the count below is exact
  y.backward(g);
  y_ref.backward(g);
  EXPECT_TRUE(torch::equal(x.grad(), x_ref.grad()));
  // Each window passes its gradient to exactly one element; nothing else gets any.
  EXPECT_EQ(x.grad().ne(0).sum().item<int64_t>(), g.numel());
}

TEST(Layers, MaxPoolKernelMatchesLibtorch) {
  torch::manual_seed(3);
  expect_max_pool_matches_libtorch(R"({"ktf.layers.MaxPool2d": {"kernel_size": 2}})",
                                   {4, 3, 26, 26}, {2, 2});
  // Odd sizes: the last row and column belong to no window.
  expect_max_pool_matches_libtorch(R"({"ktf.layers.MaxPool2d": {"kernel_size": 2}})", {2, 5, 11, 7},
                                   {2, 2});
  expect_max_pool_matches_libtorch(R"({"ktf.layers.MaxPool2d": {"kernel_size": 3}})", {2, 2, 10, 8},
                                   {3, 3});
  expect_max_pool_matches_libtorch(R"({"tf.keras.layers.MaxPooling2D": {"pool_size": [2, 3]}})",
                                   {3, 4, 9, 13}, {2, 3});
  // Large enough to be split across threads.
  expect_max_pool_matches_libtorch(R"({"ktf.layers.MaxPool2d": {"kernel_size": 2}})",
                                   {64, 32, 26, 26}, {2, 2});
  // bfloat16 (under --precision bf16) goes through the same kernel, with libtorch's results.
  expect_max_pool_matches_libtorch(R"({"ktf.layers.MaxPool2d": {"kernel_size": 2}})",
                                   {8, 16, 26, 26}, {2, 2}, torch::kBFloat16);
  expect_max_pool_matches_libtorch(R"({"ktf.layers.MaxPool2d": {"kernel_size": 2}})", {2, 5, 11, 7},
                                   {2, 2}, torch::kBFloat16);
}

TEST(Layers, MaxPoolKernelTiesNaNAndSecondOrder) {
  auto net = make_network(R"({"ktf.layers.MaxPool2d": {"kernel_size": 2}})", {1, 2, 4});
  // Ties go to the first maximum in row-major order, as in libtorch; NaN wins its window.
  auto x = torch::tensor({1.f, 1.f, 0.f, NAN, 1.f, 1.f, 5.f, 2.f}).reshape({1, 1, 2, 4});
  x.requires_grad_();
  auto y = net->forward(x);
  EXPECT_EQ(y[0][0][0][0].item<float>(), 1.f);
  EXPECT_TRUE(std::isnan(y[0][0][0][1].item<float>()));
  y.sum().backward();
  EXPECT_TRUE(torch::equal(
      x.grad(), torch::tensor({1.f, 0.f, 0.f, 1.f, 0.f, 0.f, 0.f, 0.f}).reshape({1, 1, 2, 4})));

  // Under create_graph the gradient is itself differentiable (a gradient penalty through a pool).
  auto z = torch::randn({2, 3, 6, 6}, torch::requires_grad());
  auto z_ref = z.detach().clone().requires_grad_();
  auto penalty = [](const torch::Tensor& in, const torch::Tensor& out) {
    auto g = torch::autograd::grad({(out * out).sum()}, {in}, {}, true, true)[0];
    return (g * g).sum();
  };
  penalty(z, net->forward(z)).backward();
  penalty(z_ref, torch::max_pool2d(z_ref, 2, 2)).backward();
  EXPECT_TRUE(torch::allclose(z.grad(), z_ref.grad()));
}

TEST(Layers, MaxPoolKernelVectorPathTiesAndNaNMatchLibtorch) {
  // 8 output columns per row: the 2x2 windows go through the 4-at-a-time vector path. Every
  // window position holds a tie or a NaN somewhere: values and gradients equal libtorch's.
  auto net = make_network(R"({"ktf.layers.MaxPool2d": {"kernel_size": 2}})", {3, 4, 16});
  auto x = torch::randint(0, 3, {2, 3, 4, 16}).to(torch::kFloat);  // many ties
  x.index_put_({0, 0, 0, torch::indexing::Slice(0, 16, 3)}, NAN);  // NaN in every position
  x.index_put_({1, 2, 3, torch::indexing::Slice(1, 16, 5)}, NAN);
  x.index_put_({1, 1}, 7.0f);  // whole windows of equal values
  x.requires_grad_();
  auto x_ref = x.detach().clone().requires_grad_();
  auto y = net->forward(x);
  auto y_ref = torch::max_pool2d(x_ref, 2, 2);
  ASSERT_EQ(y.sizes(), y_ref.sizes());
  EXPECT_TRUE(torch::equal(y.isnan(), y_ref.isnan()));
  EXPECT_TRUE(torch::equal(y.nan_to_num(-1), y_ref.nan_to_num(-1)));
  EXPECT_GT(y.isnan().sum().item<int64_t>(), 4);
  auto g = torch::rand(y.sizes()) + 0.5;
  y.backward(g);
  y_ref.backward(g);
  EXPECT_TRUE(torch::equal(x.grad(), x_ref.grad()));
}

TEST(Layers, BatchNormMatchesLibtorchAndKerasMomentum) {
  torch::manual_seed(1);
  auto x = torch::randn({8, 3, 4, 4}) * 2 + 1;
  auto ours = make_network(R"({"ktf.layers.BatchNorm2d": {}})", {3, 4, 4});
  torch::nn::BatchNorm2d reference(3);
  EXPECT_TRUE(torch::allclose(ours->forward(x), reference(x), 1e-5, 1e-5));
  auto buffers = ours->named_buffers();
  EXPECT_TRUE(torch::allclose(buffers["running_mean"], reference->running_mean));
  EXPECT_TRUE(torch::allclose(buffers["running_var"], reference->running_var));
  EXPECT_EQ(buffers["num_batches_tracked"].item<int64_t>(), 1);

  // Keras momentum 0.99 keeps 99% of the old statistics: running_mean = 0.01 * batch mean.
  auto keras = make_network(R"({"tf.keras.layers.BatchNormalization": {}})", {3, 4, 4});
  keras->forward(x);
  EXPECT_TRUE(torch::allclose(keras->named_buffers()["running_mean"], 0.01 * x.mean({0, 2, 3}),
                              1e-5, 1e-6));
  auto features = make_network(R"({"ktf.layers.BatchNorm1d": {"affine": false}})", {5});
  EXPECT_EQ(count_parameters(*features), 0);
  EXPECT_CONTAINS(build_error(R"({"ktf.layers.BatchNorm2d": {}})", {5}),
                  "expects one example of shape [channels, height, width], got [5]");
}

TEST(Layers, ActivationsComputeTheirFunction) {
  torch::NoGradGuard no_grad;
  auto x = torch::linspace(-3, 3, 13).reshape({1, 13});
  auto run = [&](const std::string& c) { return make_network(c, {13})->forward(x); };
  EXPECT_TRUE(torch::equal(run(R"({"ktf.layers.ReLU": {}})"), torch::relu(x)));
  EXPECT_TRUE(torch::equal(run(R"({"ktf.layers.Sigmoid": {}})"), torch::sigmoid(x)));
  EXPECT_TRUE(torch::equal(run(R"({"ktf.layers.LeakyReLU": {"negative_slope": 0.2}})"),
                           torch::leaky_relu(x, 0.2)));
  EXPECT_TRUE(torch::equal(run(R"({"tf.keras.layers.Activation": {"activation": "relu6"}})"),
                           torch::clamp(x, 0, 6)));
  EXPECT_TRUE(torch::equal(run(R"({"tf.keras.layers.Dense": {"units": 4, "activation": "tanh"}})")
                               .abs()
                               .le(1)
                               .all()
                               .expand({1}),
                           torch::tensor({true})));
}

TEST(Layers, BadArgumentsNameTheArgument) {
  EXPECT_CONTAINS(
      build_error(R"({"ktf.layers.Conv2d": {"out_channels": 4, "kernel_size": [3]}})", {1, 8, 8}),
      "ktf.layers.Conv2d › kernel_size: expected an integer or [h, w], got array [3]");
  EXPECT_CONTAINS(
      build_error(R"({"ktf.layers.Conv2d": {"out_channels": 4, "padding": "full"}})", {1, 8, 8}),
      "ktf.layers.Conv2d › padding: 'full' is not one of 'same', 'valid'");
  EXPECT_CONTAINS(
      build_error(R"({"ktf.layers.Conv2d": {"out_channels": 4, "groups": 3}})", {2, 8, 8}),
      "groups (3) must divide the input channels (2)");
  EXPECT_CONTAINS(build_error(R"({"tf.keras.layers.Dropout": {"rate": 1.5}})", {4}),
                  "tf.keras.layers.Dropout › rate: must be in [0, 1), got 1.5");
  EXPECT_CONTAINS(
      build_error(R"({"ktf.layers.MaxPool2d": {"kernel_size": 2, "padding": 2}})", {1, 8, 8}),
      "padding must be at most half the kernel size");
}

}  // namespace
}  // namespace ktf::test
