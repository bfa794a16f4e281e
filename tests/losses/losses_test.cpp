// The losses plugin: exact values against hand computation and libtorch's functional losses,
// gradients, shape handling, batch-hard triplet mining and argument errors.
#include <gtest/gtest.h>
#include <ktf/components.h>
#include <ktf/error.h>

#include <cmath>

#include "expect_error.h"
#include "plugins_fixture.h"

namespace {

using ktf::Json;
namespace F = torch::nn::functional;

std::shared_ptr<ktf::Loss> make(const std::string& name, Json args = Json::object()) {
  return ktf::test::build<ktf::Loss>(Json::object({{name, std::move(args)}}));
}

double value(ktf::Loss& loss, const torch::Tensor& out, const torch::Tensor& target) {
  auto v = loss.compute(out, target);
  EXPECT_EQ(v.dim(), 0);
  return v.item<double>();
}

using ktf::test::error_of;

// ---- cross-entropy --------------------------------------------------------------------------

TEST(CrossEntropy, TwoEqualLogitsGiveLog2) {
  auto loss = make("ktf.losses.CrossEntropy");
  EXPECT_NEAR(value(*loss, torch::zeros({1, 2}), torch::tensor({0})), std::log(2.0), 1e-6);
}

TEST(CrossEntropy, MatchesTorchWithLabelSmoothing) {
  torch::manual_seed(1);
  auto logits = torch::randn({8, 5}, torch::kDouble);
  auto target = torch::randint(0, 5, {8});
  auto loss = make("ktf.losses.CrossEntropy", Json::object({{"label_smoothing", 0.2}}));
  double expected =
      F::cross_entropy(logits, target, F::CrossEntropyFuncOptions().label_smoothing(0.2))
          .item<double>();
  EXPECT_NEAR(value(*loss, logits, target), expected, 1e-12);
}

TEST(CrossEntropy, MatchesTorchWithClassWeightsAndSmoothing) {
  torch::manual_seed(2);
  auto logits = torch::randn({10, 3}, torch::kDouble);
  auto target = torch::randint(0, 3, {10});
  std::vector<double> w{0.5, 2.0, 1.5};
  auto weights = torch::tensor(w, torch::kDouble);
  for (double smoothing : {0.0, 0.1}) {
    auto loss = make("ktf.losses.CrossEntropy",
                     Json::object({{"label_smoothing", smoothing},
                                   {"class_weights", Json::array({0.5, 2.0, 1.5})}}));
    double expected =
        F::cross_entropy(logits, target,
                         F::CrossEntropyFuncOptions().weight(weights).label_smoothing(smoothing))
            .item<double>();
    EXPECT_NEAR(value(*loss, logits, target), expected, 1e-6) << "label_smoothing " << smoothing;
  }
}

TEST(CrossEntropy, ProbabilitiesAndKerasStyleTargets) {
  torch::manual_seed(3);
  auto logits = torch::randn({6, 4}, torch::kDouble);
  auto target = torch::randint(0, 4, {6});
  auto expected = F::cross_entropy(logits, target).item<double>();
  auto probs =
      make("tf.keras.losses.SparseCategoricalCrossentropy", Json::object({{"from_logits", false}}));
  EXPECT_NEAR(value(*probs, torch::softmax(logits, 1), target), expected, 1e-9);
  auto from_logits = make("ktf.losses.CrossEntropy");
  EXPECT_NEAR(value(*from_logits, logits, target.unsqueeze(1)), expected, 1e-9);  // [N, 1]
  EXPECT_CONTAINS(error_of([&] { from_logits->compute(logits, torch::zeros({5}, torch::kLong)); }),
                  "expected class-index targets [6]");
}

TEST(CrossEntropy, BadArguments) {
  EXPECT_CONTAINS(error_of([] {
                    make("ktf.losses.CrossEntropy", Json::object({{"label_smoothing", 1.5}}));
                  }),
                  "label_smoothing: must be in [0, 1), got 1.5");
  EXPECT_CONTAINS(error_of([] {
                    make("ktf.losses.CrossEntropy",
                         Json::object({{"class_weights", Json::array({1.0, -1.0})}}));
                  }),
                  "class_weights › [1]: must be >= 0, got -1");
  auto loss =
      make("ktf.losses.CrossEntropy", Json::object({{"class_weights", Json::array({1.0, 2.0})}}));
  EXPECT_CONTAINS(error_of([&] {
                    loss->compute(torch::zeros({2, 3}), torch::tensor({0, 1}));
                  }),
                  "class_weights has 2 entries but the output has 3 classes");
}

// ---- binary cross-entropy -------------------------------------------------------------------

TEST(BinaryCrossEntropy, HandValues) {
  auto logits = make("ktf.losses.BinaryCrossEntropy");
  EXPECT_NEAR(value(*logits, torch::zeros({2, 1}), torch::tensor({{1.0}, {0.0}})), std::log(2.0),
              1e-6);
  // Probabilities 0.8 and 0.25 for targets 1 and 0: -(log 0.8 + log 0.75) / 2.
  auto probs = make("tf.keras.losses.BinaryCrossentropy", Json::object({{"from_logits", false}}));
  EXPECT_NEAR(value(*probs, torch::tensor({0.8, 0.25}, torch::kDouble), torch::tensor({1.0, 0.0})),
              -(std::log(0.8 + 1e-7) + std::log(0.75 + 1e-7)) / 2, 1e-9);
  // Label smoothing 0.2 turns target 1 into 0.9: -(0.9 log s(x) + 0.1 log(1 - s(x))) at x = 2.
  auto smooth = make("ktf.losses.BinaryCrossEntropy", Json::object({{"label_smoothing", 0.2}}));
  double s = 1 / (1 + std::exp(-2.0));
  EXPECT_NEAR(value(*smooth, torch::tensor({2.0}, torch::kDouble), torch::tensor({1.0})),
              -(0.9 * std::log(s) + 0.1 * std::log(1 - s)), 1e-9);
}

TEST(BinaryCrossEntropy, MatchesTorchWithLogitsAndIsStable) {
  torch::manual_seed(4);
  auto x = torch::randn({5, 3}, torch::kDouble) * 4;
  auto t = torch::randint(0, 2, {5, 3}).to(torch::kDouble);
  auto loss = make("torch.nn.BCEWithLogitsLoss");
  EXPECT_NEAR(value(*loss, x, t), F::binary_cross_entropy_with_logits(x, t).item<double>(), 1e-12);
  // A logit of 100 on a wrong label: 100 exactly, not inf.
  EXPECT_NEAR(value(*loss, torch::tensor({100.0}), torch::tensor({0.0})), 100.0, 1e-3);
}

TEST(BinaryCrossEntropy, ShapeMismatchAndBadArgument) {
  auto loss = make("ktf.losses.BinaryCrossEntropy");
  EXPECT_CONTAINS(
      error_of([&] {
        loss->compute(torch::zeros({4, 2}), torch::zeros({4}));
      }),
      "BinaryCrossEntropy: the target shape [4] does not match the output shape [4, 2]");
  EXPECT_CONTAINS(
      error_of([] {
        make("ktf.losses.BinaryCrossEntropy", Json::object({{"label_smoothing", -0.1}}));
      }),
      "label_smoothing: must be in [0, 1], got -0.1");
}

// ---- regression losses ----------------------------------------------------------------------

TEST(Regression, HandValues) {
  auto out = torch::tensor({1.0, 2.0, 3.0}, torch::kDouble);
  auto target = torch::tensor({1.0, 0.0, 5.0}, torch::kDouble);  // errors 0, 2, -2
  EXPECT_NEAR(value(*make("ktf.losses.MSE"), out, target), 8.0 / 3, 1e-12);
  EXPECT_NEAR(value(*make("ktf.losses.L1"), out, target), 4.0 / 3, 1e-12);
  // Huber delta 1: 0, 1 * (2 - 0.5), 1.5 -> mean 1; delta 3: 0.5 * 4 twice -> mean 4/3.
  EXPECT_NEAR(value(*make("ktf.losses.Huber"), out, target), 1.0, 1e-12);
  EXPECT_NEAR(value(*make("tf.keras.losses.Huber", Json::object({{"delta", 3.0}})), out, target),
              4.0 / 3, 1e-12);
}

TEST(Regression, AliasesAndTorchAgree) {
  torch::manual_seed(5);
  auto out = torch::randn({4, 3}, torch::kDouble), target = torch::randn({4, 3}, torch::kDouble);
  EXPECT_NEAR(value(*make("tf.keras.losses.MeanSquaredError"), out, target),
              F::mse_loss(out, target).item<double>(), 1e-12);
  EXPECT_NEAR(value(*make("torch.nn.L1Loss"), out, target), F::l1_loss(out, target).item<double>(),
              1e-12);
  EXPECT_NEAR(value(*make("torch.nn.HuberLoss", Json::object({{"delta", 0.5}})), out, target),
              F::huber_loss(out, target, F::HuberLossFuncOptions().delta(0.5)).item<double>(),
              1e-12);
}

TEST(Regression, TargetOfShapeNAgainstOutputNx1) {
  auto out = torch::tensor({{1.0}, {2.0}});
  EXPECT_NEAR(value(*make("ktf.losses.MSE"), out, torch::tensor({0.0, 0.0})), 2.5, 1e-6);
  EXPECT_NEAR(value(*make("ktf.losses.MSE"), out.squeeze(1), torch::tensor({{0.0}, {0.0}})), 2.5,
              1e-6);
  EXPECT_CONTAINS(error_of([&] {
                    make("ktf.losses.L1")->compute(torch::zeros({2, 3}), torch::zeros({3, 2}));
                  }),
                  "L1: the target shape [3, 2] does not match the output shape [2, 3]");
  EXPECT_CONTAINS(error_of([] {
                    make("ktf.losses.Huber", Json::object({{"delta", 0.0}}));
                  }),
                  "delta: must be > 0, got 0");
}

TEST(Losses, EveryLossHasGradients) {
  torch::manual_seed(6);
  struct Case {
    const char* name;
    torch::Tensor target;
  };
  std::vector<Case> cases{{"ktf.losses.CrossEntropy", torch::tensor({0, 1, 2, 0})},
                          {"ktf.losses.BinaryCrossEntropy", torch::rand({4, 3})},
                          {"ktf.losses.MSE", torch::randn({4, 3})},
                          {"ktf.losses.L1", torch::randn({4, 3})},
                          {"ktf.losses.Huber", torch::randn({4, 3})},
                          {"ktf.losses.TripletMargin", torch::tensor({0, 1, 0, 1})}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto out = torch::randn({4, 3}).requires_grad_(true);
    auto loss = make(c.name)->compute(out, c.target);
    loss.backward();
    ASSERT_TRUE(out.grad().defined());
    EXPECT_TRUE(torch::isfinite(out.grad()).all().item<bool>());
    EXPECT_GT(out.grad().abs().sum().item<double>(), 0);
  }
}

// ---- batch-hard triplet ---------------------------------------------------------------------

// Embeddings a=(0,0) b=(3,0) [label 0], c=(0,4) d=(1,0) [label 1], e=(10,10) [label 2, no
// positive: left out]. Euclidean distances: ab 3, ac 4, ad 1, bc 5, bd 2, cd sqrt(17).
//   a: hardest positive b (3), hardest negative d (1)       -> 3 - 1 + m
//   b: hardest positive a (3), hardest negative d (2)       -> 3 - 2 + m
//   c: hardest positive d (sqrt 17), hardest negative a (4) -> sqrt(17) - 4 + m
//   d: hardest positive c (sqrt 17), hardest negative a (1) -> sqrt(17) - 1 + m
torch::Tensor hand_batch() {
  return torch::tensor({{0.0, 0.0}, {3.0, 0.0}, {0.0, 4.0}, {1.0, 0.0}, {10.0, 10.0}},
                       torch::kDouble);
}
torch::Tensor hand_labels() { return torch::tensor({0, 0, 1, 1, 2}); }

TEST(TripletMargin, BatchHardEuclideanHandValue) {
  auto loss = make("ktf.losses.TripletMargin", Json::object({{"margin", 1.0}}));
  double r17 = std::sqrt(17.0);
  double expected = ((3 - 1 + 1.0) + (3 - 2 + 1.0) + (r17 - 4 + 1.0) + (r17 - 1 + 1.0)) / 4;
  EXPECT_NEAR(value(*loss, hand_batch(), hand_labels()), expected, 1e-9);
  // margin 0: c's term is max(sqrt(17) - 4, 0) = 0.123...; still four anchors.
  auto no_margin = make("ktf.losses.TripletMargin", Json::object({{"margin", 0.0}}));
  EXPECT_NEAR(value(*no_margin, hand_batch(), hand_labels()), (2 + 1 + (r17 - 4) + (r17 - 1)) / 4,
              1e-9);
}

TEST(TripletMargin, SquaredSoftAndCosine) {
  auto squared =
      make("ktf.losses.TripletMargin", Json::object({{"margin", 1.0}, {"distance", "squared"}}));
  EXPECT_NEAR(value(*squared, hand_batch(), hand_labels()), (9.0 + 6 + 2 + 17) / 4, 1e-9);

  auto soft = make("ktf.losses.TripletMargin", Json::object({{"soft", true}}));
  auto sp = [](double x) { return std::log1p(std::exp(x)); };
  double r17 = std::sqrt(17.0);
  EXPECT_NEAR(value(*soft, hand_batch(), hand_labels()),
              (sp(2) + sp(1) + sp(r17 - 4) + sp(r17 - 1)) / 4, 1e-9);

  // a=(1,0) b=(0,1) [0], c=(1,1) d=(-1,0) [1]; cosine distances with r = 1/sqrt(2):
  // ab 1, ac 1-r, ad 2, bc 1-r, bd 1, cd 1+r. Terms (margin 0.5): a r+.5, b r+.5, c 2r+.5, d r+.5.
  auto cosine =
      make("ktf.losses.TripletMargin", Json::object({{"margin", 0.5}, {"distance", "cosine"}}));
  auto x = torch::tensor({{1.0, 0.0}, {0.0, 1.0}, {1.0, 1.0}, {-1.0, 0.0}}, torch::kDouble);
  double r = 1 / std::sqrt(2.0);
  EXPECT_NEAR(value(*cosine, x, torch::tensor({0, 0, 1, 1})), (5 * r + 2) / 4, 1e-9);
}

TEST(TripletMargin, EasyBatchIsZeroAndDuplicatesKeepGradientsFinite) {
  auto loss = make("ktf.losses.TripletMargin", Json::object({{"margin", 0.5}}));
  auto far = torch::tensor({{0.0, 0.0}, {0.1, 0.0}, {10.0, 0.0}, {10.1, 0.0}});
  EXPECT_NEAR(value(*loss, far, torch::tensor({0, 0, 1, 1})), 0.0, 1e-9);
  // Identical positives: distance 0, where sqrt has an infinite derivative.
  auto dup = torch::tensor({{1.0, 2.0}, {1.0, 2.0}, {1.2, 2.0}}).requires_grad_(true);
  auto l = loss->compute(dup, torch::tensor({0, 0, 1}));
  l.backward();
  EXPECT_TRUE(torch::isfinite(dup.grad()).all().item<bool>()) << dup.grad();
}

TEST(TripletMargin, NoUsableAnchorIsAClearError) {
  auto loss = make("ktf.losses.TripletMargin");
  std::string distinct = error_of([&] {
    loss->compute(torch::randn({3, 4}), torch::tensor({0, 1, 2}));
  });
  EXPECT_CONTAINS(distinct, "no anchor in the batch has both a positive");
  EXPECT_CONTAINS(distinct, "3 distinct value(s)");
  EXPECT_CONTAINS(error_of([&] {
                    loss->compute(torch::randn({3, 4}), torch::tensor({5, 5, 5}));
                  }),
                  "1 distinct value(s)");
  EXPECT_CONTAINS(error_of([&] {
                    loss->compute(torch::randn({3, 4}), torch::tensor({0, 1}));
                  }),
                  "expected labels [3], got [2]");
}

TEST(TripletMargin, BadArguments) {
  EXPECT_CONTAINS(error_of([] {
                    make("ktf.losses.TripletMargin", Json::object({{"margin", -1.0}}));
                  }),
                  "margin: must be >= 0, got -1");
  EXPECT_CONTAINS(error_of([] {
                    make("ktf.losses.TripletMargin", Json::object({{"distance", "manhattan"}}));
                  }),
                  "distance");
}

}  // namespace
