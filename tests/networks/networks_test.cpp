// Networks of the ktf_networks plugin: MLP, ResNet, MobileNetV2 — output shapes, exact parameter
// counts against torchvision/Keras, convergence, argument errors; and every network component of
// the plugin built from its spec's example and run forward and backward.
#include <gtest/gtest.h>

#include "test_util.h"

namespace ktf::test {
namespace {

// ---- every component from its example
// --------------------------------------------------------------

TEST(NetworksPlugin, EveryComponentBuildsFromItsExampleAndTrains) {
  int built = 0;
  for (const ComponentDef* def : plugins().list(Kind::Network)) {
    if (def->spec.plugin != "ktf_networks") continue;
    SCOPED_TRACE(def->spec.name);
    ASSERT_FALSE(def->spec.example_input.empty());
    auto net = make_network(Json::object({{def->spec.name, def->spec.example}}).dump(),
                            def->spec.example_input);
    std::vector<int64_t> batch{2};
    batch.insert(batch.end(), def->spec.example_input.begin(), def->spec.example_input.end());
    auto x = torch::randn(batch, torch::requires_grad());
    auto y = net->forward(x);
    EXPECT_EQ(y.size(0), 2);
    y.pow(2).sum().backward();
    ASSERT_TRUE(x.grad().defined());
    for (const auto& p : net->parameters()) EXPECT_TRUE(p.grad().defined());
    ++built;
  }
  EXPECT_GE(built, 30);
}

// ---- MLP
// -----------------------------------------------------------------------------------------

TEST(MLP, DefaultHiddenLayersHaveTheExactParameterCount) {
  auto net = make_network(R"({"ktf.networks.MLP": {"num_outputs": 10}})", {1, 28, 28});
  // 784*256+256 + 256*128+128 + 128*10+10
  EXPECT_EQ(count_parameters(*net), 235146);
  EXPECT_EQ(output_shape(*net, {4, 1, 28, 28}), (std::vector<int64_t>{4, 10}));
}

TEST(MLP, BatchNormAndDropoutLayersAreAddedPerHiddenLayer) {
  auto net = make_network(R"({"ktf.networks.MLP": {"num_outputs": 3, "hidden": [32, 16],
                              "batchnorm": true, "dropout": 0.5, "activation": "gelu"}})",
                          {20});
  EXPECT_EQ(count_parameters(*net), (20 * 32 + 32 + 64) + (32 * 16 + 16 + 32) + (16 * 3 + 3));
  auto params = net->named_parameters();
  EXPECT_TRUE(params.contains("dense1.weight"));
  EXPECT_TRUE(params.contains("bn2.weight"));
  EXPECT_TRUE(params.contains("head.bias"));
  net->eval();  // dropout off: deterministic
  torch::NoGradGuard no_grad;
  auto x = torch::randn({5, 20});
  EXPECT_TRUE(torch::equal(net->forward(x), net->forward(x)));
}

TEST(MLP, InputShapeArgumentOverridesTheDatasetShape) {
  auto net = make_network(R"({"ktf.networks.MLP": {"num_outputs": 2, "hidden": [],
                              "input_shape": [3, 4]}})",
                          {1, 28, 28});
  EXPECT_EQ(count_parameters(*net), 12 * 2 + 2);
}

TEST(MLP, LearnsASeparableTwoClassProblem) {
  torch::manual_seed(0);
  auto w = torch::randn({10});
  auto make_data = [&](int64_t n) {
    auto x = torch::randn({n, 10});
    return std::make_pair(x, (x.matmul(w) > 0).to(torch::kLong));
  };
  auto [x, y] = make_data(1024);
  auto [x_test, y_test] = make_data(1024);
  auto net = make_network(R"({"ktf.networks.MLP": {"num_outputs": 2, "hidden": [32]}})", {10});
  torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(0.01));
  for (int step = 0; step < 300; ++step) {
    opt.zero_grad();
    auto loss = torch::nn::functional::cross_entropy(net->forward(x), y);
    loss.backward();
    opt.step();
  }
  torch::NoGradGuard no_grad;
  double accuracy =
      (net->forward(x_test).argmax(1) == y_test).to(torch::kFloat).mean().item<double>();
  EXPECT_GT(accuracy, 0.95);
}

TEST(MLP, BadArgumentsNameTheArgument) {
  EXPECT_CONTAINS(build_error(R"({"ktf.networks.MLP": {"num_outputs": 0}})", {4}),
                  "ktf.networks.MLP › num_outputs: must be >= 1, got 0");
  EXPECT_CONTAINS(build_error(R"({"ktf.networks.MLP": {"num_outputs": 2, "dropout": 1.0}})", {4}),
                  "ktf.networks.MLP › dropout: must be in [0, 1), got 1");
  EXPECT_CONTAINS(
      build_error(R"({"ktf.networks.MLP": {"num_outputs": 2, "hidden": [8, -1]}})", {4}),
      "ktf.networks.MLP › hidden › [1]: must be >= 1, got -1");
  EXPECT_CONTAINS(
      build_error(R"({"ktf.networks.MLP": {"num_outputs": 2, "activation": "swish"}})", {4}),
      "ktf.networks.MLP › activation: 'swish' is not one of");
  EXPECT_CONTAINS(build_error(R"({"ktf.networks.MLP": {"num_outputs": 2}})", {}),
                  "the input shape is unknown");
}

// ---- ResNet
// ---------------------------------------------------------------------------------------

int64_t conv_bn(int64_t in, int64_t out, int64_t k) { return k * k * in * out + 2 * out; }

/// Parameter count of torchvision's ResNet structure, from its definition.
int64_t resnet_parameters(int depth, int64_t in_channels, bool small_input, int64_t classes) {
  std::vector<int64_t> blocks = depth == 18   ? std::vector<int64_t>{2, 2, 2, 2}
                                : depth == 34 ? std::vector<int64_t>{3, 4, 6, 3}
                                              : std::vector<int64_t>{3, 4, 6, 3};
  const bool bottleneck = depth >= 50;
  int64_t n = conv_bn(in_channels, 64, small_input ? 3 : 7), channels = 64;
  const int64_t widths[] = {64, 128, 256, 512};
  for (int s = 0; s < 4; ++s) {
    for (int64_t b = 0; b < blocks[s]; ++b) {
      const int64_t w = widths[s], out = bottleneck ? 4 * w : w;
      n += bottleneck ? conv_bn(channels, w, 1) + conv_bn(w, w, 3) + conv_bn(w, out, 1)
                      : conv_bn(channels, w, 3) + conv_bn(w, w, 3);
      if ((s > 0 && b == 0) || channels != out) n += conv_bn(channels, out, 1);
      channels = out;
    }
  }
  return n + (classes > 0 ? channels * classes + classes : 0);
}

TEST(ResNet, ParameterCountsMatchTorchvision) {
  // torchvision.models.resnet18/34/50(): 11,689,512 / 21,797,672 / 25,557,032 parameters.
  ASSERT_EQ(resnet_parameters(18, 3, false, 1000), 11689512);
  ASSERT_EQ(resnet_parameters(34, 3, false, 1000), 21797672);
  ASSERT_EQ(resnet_parameters(50, 3, false, 1000), 25557032);
  for (int depth : {18, 34, 50}) {
    SCOPED_TRACE(depth);
    auto net = make_network(R"({"ktf.networks.ResNet": {"depth": )" + std::to_string(depth) +
                                R"(, "num_outputs": 1000}})",
                            {3, 224, 224});
    EXPECT_EQ(count_parameters(*net), resnet_parameters(depth, 3, false, 1000));
  }
}

TEST(ResNet, SmallInputResNet18On28x28) {
  auto net = make_network(R"({"ktf.networks.ResNet": {"depth": 18, "small_input": true}})",
                          {1, 28, 28}, /*num_classes=*/10);
  EXPECT_EQ(count_parameters(*net), resnet_parameters(18, 1, true, 10));
  EXPECT_EQ(count_parameters(*net), 11172810);
  auto children = net->named_children();
  for (const auto& [stage, blocks] : std::vector<std::pair<std::string, size_t>>{
           {"layer1", 2}, {"layer2", 2}, {"layer3", 2}, {"layer4", 2}})
    EXPECT_EQ(children[stage]->children().size(), blocks) << stage;
  EXPECT_EQ(net->named_parameters()["conv1.weight"].sizes(), (c10::IntArrayRef{64, 1, 3, 3}));
  EXPECT_TRUE(net->named_parameters().contains("layer2.0.downsample.0.weight"));
  EXPECT_EQ(output_shape(*net, {2, 1, 28, 28}), (std::vector<int64_t>{2, 10}));
}

TEST(ResNet, WithoutTopOutputsPooledFeatures) {
  auto net = make_network(
      R"({"ktf.networks.ResNet": {"depth": 50, "include_top": false, "small_input": true}})",
      {3, 8, 8});
  EXPECT_EQ(count_parameters(*net), resnet_parameters(50, 3, true, 0));
  EXPECT_EQ(net->named_children()["layer3"]->children().size(), 6u);
  EXPECT_EQ(output_shape(*net, {2, 3, 8, 8}), (std::vector<int64_t>{2, 2048}));
}

TEST(ResNet, BlocksAreComponentsWithInferredInputChannels) {
  auto basic = make_network(
      R"({"ktf.networks.components.BasicBlock": {"out_channels": 16, "stride": 2}})", {8, 8, 8});
  EXPECT_EQ(count_parameters(*basic), conv_bn(8, 16, 3) + conv_bn(16, 16, 3) + conv_bn(8, 16, 1));
  EXPECT_EQ(output_shape(*basic, {2, 8, 8, 8}), (std::vector<int64_t>{2, 16, 4, 4}));
  auto bottleneck =
      make_network(R"({"ktf.networks.components.Bottleneck": {"out_channels": 32}})", {32, 5, 5});
  EXPECT_EQ(count_parameters(*bottleneck),
            conv_bn(32, 8, 1) + conv_bn(8, 8, 3) + conv_bn(8, 32, 1));  // identity shortcut
  EXPECT_EQ(output_shape(*bottleneck, {2, 32, 5, 5}), (std::vector<int64_t>{2, 32, 5, 5}));
}

TEST(ResNet, BadArgumentsNameTheArgument) {
  EXPECT_CONTAINS(
      build_error(R"({"ktf.networks.ResNet": {"depth": 19, "num_outputs": 10}})", {3, 32, 32}),
      "depth must be one of 18, 34, 50, 101, 152, got 19");
  EXPECT_CONTAINS(build_error(R"({"ktf.networks.ResNet": {"depth": 18}})", {3, 32, 32}),
                  "num_outputs is required");
  EXPECT_CONTAINS(build_error(R"({"ktf.networks.ResNet": {"num_outputs": 10}})", {784}),
                  "expects one example of shape [channels, height, width], got [784]");
}

// ---- MobileNetV2
// -----------------------------------------------------------------------------------

TEST(MobileNetV2, ParameterCountMatchesKerasAndTorchvision) {
  // torchvision mobilenet_v2(): 3,504,872 parameters; Keras MobileNetV2(alpha=1.0): 3,538,984
  // weights, of which 34,112 are BatchNorm moving statistics (buffers here).
  auto net = make_network(R"({"tf.keras.applications.MobileNetV2": {
      "input_shape": [224, 224, 3], "alpha": 1.0, "classes": 1000, "weights": null}})",
                          {});
  EXPECT_EQ(count_parameters(*net), 3504872);
  int64_t statistics = 0;
  for (const auto& b : net->named_buffers())
    if (b.key().find("running_") != std::string::npos) statistics += b.value().numel();
  EXPECT_EQ(statistics, 34112);
  EXPECT_EQ(net->named_children()["features"]->children().size(), 19u);
}

TEST(MobileNetV2, ShapesAt40x40x3) {
  const std::vector<int64_t> in{3, 40, 40};
  auto features = make_network(R"({"ktf.networks.MobileNetV2": {"include_top": false}})", in);
  EXPECT_EQ(output_shape(*features, {2, 3, 40, 40}), (std::vector<int64_t>{2, 1280, 2, 2}));
  auto pooled = make_network(
      R"({"ktf.networks.MobileNetV2": {"include_top": false, "pooling": "max", "alpha": 1.4}})",
      in);
  EXPECT_EQ(output_shape(*pooled, {2, 3, 40, 40}), (std::vector<int64_t>{2, 1792}));
  auto top = make_network(R"({"ktf.networks.MobileNetV2": {"alpha": 0.5}})", in, 10);
  EXPECT_EQ(output_shape(*top, {2, 3, 40, 40}), (std::vector<int64_t>{2, 10}));
  auto softmax = make_network(
      R"({"ktf.networks.MobileNetV2": {"alpha": 0.35, "classes": 4,
          "classifier_activation": "softmax"}})",
      {1, 32, 32});
  softmax->eval();
  torch::NoGradGuard no_grad;
  auto probs = softmax->forward(torch::randn({3, 1, 32, 32}));
  EXPECT_TRUE(torch::allclose(probs.sum(1), torch::ones({3})));
}

TEST(MobileNetV2, InvertedResidualComponent) {
  auto block = make_network(R"({"ktf.networks.components.InvertedResidual": {"out_channels": 8}})",
                            {8, 5, 5});
  // expand 8->48, depthwise 48, project 48->8 (+ BatchNorm scale and shift each).
  EXPECT_EQ(count_parameters(*block), (8 * 48 + 96) + (9 * 48 + 96) + (48 * 8 + 16));
  block->eval();
  torch::NoGradGuard no_grad;
  // The residual connection: zeroing the last BatchNorm makes the block the identity.
  for (auto& p : block->named_parameters())
    if (p.key() == "conv.3.weight" || p.key() == "conv.3.bias") p.value().zero_();
  auto x = torch::randn({2, 8, 5, 5});
  EXPECT_TRUE(torch::allclose(block->forward(x), x));
}

TEST(MobileNetV2, BadArgumentsNameTheArgument) {
  EXPECT_CONTAINS(build_error(R"({"ktf.networks.MobileNetV2": {"alpha": 0}})", {3, 40, 40}),
                  "ktf.networks.MobileNetV2 › alpha: must be > 0, got 0");
  EXPECT_CONTAINS(
      build_error(R"({"ktf.networks.MobileNetV2": {"weights": "imagenet"}})", {3, 40, 40}),
      "weights: pretrained weights cannot be downloaded");
  EXPECT_CONTAINS(
      build_error(R"({"ktf.networks.MobileNetV2": {"weights": "imagenet"}})", {3, 40, 40}),
      "got string \"imagenet\"");
  EXPECT_CONTAINS(
      build_error(R"({"ktf.networks.MobileNetV2": {"input_shape": [40, 40, 3]}})", {1, 40, 40}),
      "has 3 channels but the dataset's examples have shape [1, 40, 40]");
  EXPECT_CONTAINS(build_error(R"({"ktf.networks.MobileNetV2": {"pooling": "mean"}})", {3, 40, 40}),
                  "pooling: 'mean' is not one of 'avg', 'max'");
}

}  // namespace
}  // namespace ktf::test
