// ktf.models.OneHeadNet / MultiHeadNet (the original tool's containers) and saving/loading
// network state.
#include <gtest/gtest.h>

#include <filesystem>

#include "multi_head.h"
#include "test_util.h"

namespace ktf::test {
namespace {

TEST(OneHeadNet, OnMobileNetV2At40x40x3AsTheOriginalAffnistConfig) {
  auto net = make_network(R"({"ktf.models.OneHeadNet": {
      "base_model": {"tf.keras.applications.MobileNetV2": {
          "include_top": false, "input_shape": [40, 40, 3], "pooling": "avg"}},
      "num_outputs": 10, "dropout": 0.4}})",
                          {3, 40, 40}, 10);
  auto children = net->named_children();
  ASSERT_TRUE(children.contains("base_model"));
  ASSERT_TRUE(children.contains("head"));
  EXPECT_EQ(net->named_parameters()["head.weight"].sizes(), (c10::IntArrayRef{10, 1280}));
  EXPECT_TRUE(net->named_parameters().contains("base_model.features.0.0.weight"));
  EXPECT_EQ(output_shape(*net, {4, 3, 40, 40}), (std::vector<int64_t>{4, 10}));
}

TEST(OneHeadNet, WithoutBaseModelUsesTheCompactCnnAsTheOriginalMinimalConfig) {
  // The original README's first config: {"ktf.models.OneHeadNet": {"num_outputs": 10}}.
  auto net = make_network(R"({"ktf.models.OneHeadNet": {"num_outputs": 10}})", {1, 28, 28}, 10);
  auto params = net->named_parameters();
  EXPECT_EQ(params["base_model.0.weight"].sizes(), (c10::IntArrayRef{32, 1, 3, 3}));
  EXPECT_EQ(params["base_model.10.weight"].sizes(), (c10::IntArrayRef{64, 64, 3, 3}));
  EXPECT_EQ(params["head.weight"].sizes(), (c10::IntArrayRef{10, 64}));
  EXPECT_EQ(output_shape(*net, {3, 1, 28, 28}), (std::vector<int64_t>{3, 10}));
  EXPECT_EQ(output_shape(*net, {2, 1, 4, 4}), (std::vector<int64_t>{2, 10}));
  EXPECT_CONTAINS(
      build_error(R"({"ktf.models.OneHeadNet": {"num_outputs": 3, "base_model": null}})",
                  {1, 8, 8}),
      "ktf.models.OneHeadNet › base_model: expected a component {\"<name>\": {<arguments>}}, got "
      "null");
}

TEST(OneHeadNet, PoolsAFeatureMapBase) {
  for (const char* pooling : {"avg", "max"}) {
    auto net = make_network(std::string(R"({"ktf.models.OneHeadNet": {
        "base_model": {"ktf.networks.MobileNetV2": {"include_top": false, "alpha": 0.35}},
        "num_outputs": 3, "pooling": ")") +
                                pooling + R"("}})",
                            {1, 24, 24});
    EXPECT_EQ(output_shape(*net, {2, 1, 24, 24}), (std::vector<int64_t>{2, 3})) << pooling;
  }
  EXPECT_CONTAINS(build_error(R"({"ktf.models.OneHeadNet": {"num_outputs": 3,
                                  "base_model": {"ktf.layers.ReLU": {}}}})",
                              {3, 4}),
                  "base_model outputs [3, 4] per example; expected [features] or [channels, "
                  "height, width]");
}

TEST(OneHeadNet, BaseErrorsCarryTheirPath) {
  auto error = build_error(R"({"ktf.models.OneHeadNet": {"num_outputs": 3,
      "base_model": {"ktf.networks.MobileNetV2": {"alpha": -1}}}})",
                           {3, 32, 32});
  EXPECT_CONTAINS(error, "ktf.models.OneHeadNet › base_model › ktf.networks.MobileNetV2");
  EXPECT_CONTAINS(error, "ktf.networks.MobileNetV2 › alpha: must be > 0, got -1");
}

TEST(MultiHeadNet, ConcatenatesTheHeadsAlongDim1) {
  auto net = make_network(R"({"ktf.models.MultiHeadNet": {
      "base_model": {"ktf.networks.MLP": {"num_outputs": 16, "hidden": [8]}},
      "heads": [10, 4, 1]}})",
                          {1, 6, 6});
  EXPECT_EQ(ktf::networks::head_sizes(*net), (std::vector<int64_t>{10, 4, 1}));
  net->eval();
  torch::NoGradGuard no_grad;
  auto x = torch::randn({5, 1, 6, 6});
  auto out = net->forward(x);
  ASSERT_EQ(out.sizes(), (c10::IntArrayRef{5, 15}));
  auto children = net->named_children();
  auto base = std::dynamic_pointer_cast<Network>(children["base_model"]);
  ASSERT_TRUE(base);
  auto features = base->forward(x);
  auto heads = children["heads"]->children();
  auto parts = ktf::networks::split_heads(out, ktf::networks::head_sizes(*net));
  ASSERT_EQ(parts.size(), 3u);
  for (size_t i = 0; i < parts.size(); ++i) {
    auto* linear = heads[i]->as<torch::nn::Linear>();
    ASSERT_NE(linear, nullptr);
    EXPECT_TRUE(torch::allclose(parts[i], linear->forward(features))) << "head " << i;
  }
  EXPECT_CONTAINS(build_error(R"({"ktf.models.MultiHeadNet": {"heads": [],
                                  "base_model": {"ktf.layers.Flatten": {}}}})",
                              {4}),
                  "ktf.models.MultiHeadNet › heads: must not be empty");
}

TEST(Networks, SavedStateLoadsIntoAFreshNetworkWithIdenticalOutputs) {
  const std::string config = R"({"ktf.models.OneHeadNet": {
      "base_model": {"ktf.networks.ResNet": {"depth": 18, "small_input": true,
                                             "include_top": false}},
      "num_outputs": 5}})";
  auto net = make_network(config, {1, 12, 12});
  // One training step so that weights and BatchNorm statistics differ from a fresh network's.
  torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(0.1));
  net->forward(torch::randn({4, 1, 12, 12})).pow(2).mean().backward();
  opt.step();
  auto path = std::filesystem::path(scratch_dir("networks_save_load")) / "model.pt";
  torch::save(std::static_pointer_cast<torch::nn::Module>(net), path.string());

  auto fresh = make_network(config, {1, 12, 12});
  auto loaded = std::static_pointer_cast<torch::nn::Module>(fresh);
  torch::load(loaded, path.string());
  net->eval();
  fresh->eval();
  torch::NoGradGuard no_grad;
  auto x = torch::randn({3, 1, 12, 12});
  EXPECT_TRUE(torch::equal(net->forward(x), fresh->forward(x)));
  EXPECT_TRUE(torch::equal(net->named_buffers()["base_model.bn1.running_mean"],
                           fresh->named_buffers()["base_model.bn1.running_mean"]));
}

}  // namespace
}  // namespace ktf::test
