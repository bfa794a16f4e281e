// Exact values of the train plugin's metrics on hand-made tensors.
#include <gtest/gtest.h>
#include <ktf/components.h>

#include <plugins_fixture.h>

namespace ktf::test {
namespace {

std::shared_ptr<Metric> metric(const Json& component, int64_t num_classes = -1) {
  BuildContext ctx(plugins());
  ctx.num_classes = num_classes;
  return build<Metric>(component, &ctx);
}

/// Logits whose argmax is `pred`, for `classes` classes.
torch::Tensor logits_for(const std::vector<int64_t>& pred, int64_t classes) {
  auto out = torch::zeros({static_cast<int64_t>(pred.size()), classes});
  for (size_t i = 0; i < pred.size(); ++i) out[i][pred[i]] = 1.0;
  return out;
}

TEST(Metrics, SparseCategoricalAccuracyAccumulatesBatches) {
  auto m = metric(Json::parse(R"({"tf.keras.metrics.SparseCategoricalAccuracy": {}})"));
  EXPECT_EQ(m->name(), "accuracy");
  m->reset();
  auto out = torch::tensor({{0.1, 0.9}, {0.8, 0.2}, {0.3, 0.7}, {0.6, 0.4}});
  m->update(out, torch::tensor({1, 0, 0, 0}));
  EXPECT_DOUBLE_EQ(m->compute(), 0.75);
  m->update(torch::tensor({{1.0, 0.0}}), torch::tensor({{1}}));  // [N, 1] targets accepted
  EXPECT_DOUBLE_EQ(m->compute(), 0.6);
  m->reset();
  EXPECT_DOUBLE_EQ(m->compute(), 0.0);
  m->update(out, torch::tensor({1, 0, 1, 0}));
  EXPECT_DOUBLE_EQ(m->compute(), 1.0);
}

TEST(Metrics, AccuracyRejectsMismatchedTargets) {
  auto m = metric(Json::parse(R"({"ktf.metrics.SparseCategoricalAccuracy": {}})"));
  try {
    m->update(torch::zeros({4, 3}), torch::zeros({3}));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("expected 4 class-index targets"), std::string::npos)
        << e.what();
  }
}

TEST(Metrics, TopKAccuracy) {
  auto m = metric(Json::parse(R"({"tf.keras.metrics.SparseTopKCategoricalAccuracy": {"k": 2}})"));
  EXPECT_EQ(m->name(), "top_2_accuracy");
  m->reset();
  // Rankings: row 0: 3 > 1 > 0 > 2; row 1: 0 > 2 > 1 > 3; row 2: 2 > 3 > 1 > 0.
  auto out = torch::tensor({{0.2, 0.3, 0.1, 0.4}, {0.9, 0.02, 0.05, 0.03}, {0.0, 0.1, 0.6, 0.3}});
  m->update(out, torch::tensor({1, 1, 3}));  // in top 2: yes, no, yes
  EXPECT_DOUBLE_EQ(m->compute(), 2.0 / 3.0);
  auto top5 = metric(Json::parse(R"({"ktf.metrics.TopKAccuracy": {"k": 5}})"));
  EXPECT_THROW(top5->update(out, torch::tensor({1, 1, 3})), Error);  // only 4 classes
}

// targets [0, 0, 1, 1, 2, 2], predictions [0, 1, 1, 1, 2, 0]:
// per class tp = [1, 2, 1], predicted = [2, 3, 1], actual = [2, 2, 2].
struct ClassCase : testing::Test {
  torch::Tensor out = logits_for({0, 1, 1, 1, 2, 0}, 3);
  torch::Tensor target = torch::tensor({0, 0, 1, 1, 2, 2});
};

TEST_F(ClassCase, MacroPrecisionRecallF1) {
  auto p = metric(Json::parse(R"({"ktf.metrics.Precision": {}})"), 3);
  auto r = metric(Json::parse(R"({"ktf.metrics.Recall": {}})"), 3);
  auto f = metric(Json::parse(R"({"ktf.metrics.F1": {"name": "macro_f1"}})"), 3);
  EXPECT_EQ(p->name(), "precision");
  EXPECT_EQ(r->name(), "recall");
  EXPECT_EQ(f->name(), "macro_f1");
  for (auto& m : {p, r, f}) {
    m->reset();
    m->update(out.slice(0, 0, 4), target.slice(0, 0, 4));  // two batches
    m->update(out.slice(0, 4), target.slice(0, 4));
  }
  EXPECT_NEAR(p->compute(), (0.5 + 2.0 / 3.0 + 1.0) / 3.0, 1e-12);
  EXPECT_NEAR(r->compute(), (0.5 + 1.0 + 0.5) / 3.0, 1e-12);
  EXPECT_NEAR(f->compute(), (0.5 + 0.8 + 2.0 / 3.0) / 3.0, 1e-12);
}

TEST_F(ClassCase, AbsentClassCountsAsZero) {
  auto p = metric(Json::parse(R"({"ktf.metrics.Precision": {"num_classes": 4}})"));
  p->update(logits_for({0, 1, 1, 1, 2, 0}, 4), target);
  EXPECT_NEAR(p->compute(), (0.5 + 2.0 / 3.0 + 1.0 + 0.0) / 4.0, 1e-12);
}

TEST_F(ClassCase, ConfusionMatrixComputesOverallAccuracy) {
  auto m = metric(Json::parse(R"({"ktf.metrics.ConfusionMatrix": {}})"), 3);
  EXPECT_EQ(m->name(), "confusion_accuracy");
  m->update(out, target);
  EXPECT_DOUBLE_EQ(m->compute(), 4.0 / 6.0);
  // (The matrix itself is written by the loop: see Loop.ConfusionMatrixFileHoldsEachEpoch.)
  m->reset();
  m->update(logits_for({2, 2}, 3), torch::tensor({2, 1}));
  EXPECT_DOUBLE_EQ(m->compute(), 0.5);
}

TEST(Metrics, ClassMetricsNeedNumClasses) {
  try {
    metric(Json::parse(R"({"ktf.metrics.F1": {}})"), -1);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("num_classes is not given"), std::string::npos)
        << e.what();
  }
  auto p = metric(Json::parse(R"({"ktf.metrics.Precision": {}})"), 3);
  EXPECT_THROW(p->update(torch::zeros({2, 5}), torch::tensor({0, 1})), Error);
}

TEST(Metrics, MaeAndMse) {
  auto mae = metric(Json::parse(R"({"tf.keras.metrics.MeanAbsoluteError": {}})"));
  auto mse = metric(Json::parse(R"({"tf.keras.metrics.MeanSquaredError": {}})"));
  EXPECT_EQ(mae->name(), "mae");
  EXPECT_EQ(mse->name(), "mse");
  for (auto& m : {mae, mse}) {
    m->reset();
    m->update(torch::tensor({{1.0f}, {2.0f}}), torch::tensor({1.5f, 2.0f}));  // [N,1] vs [N]
    m->update(torch::tensor({{3.0f}, {4.0f}}), torch::tensor({2.0f, 6.0f}));
  }
  EXPECT_DOUBLE_EQ(mae->compute(), (0.5 + 0 + 1 + 2) / 4.0);
  EXPECT_DOUBLE_EQ(mse->compute(), (0.25 + 0 + 1 + 4) / 4.0);
  EXPECT_THROW(mae->update(torch::zeros({2, 2}), torch::zeros({3})), Error);
}

}  // namespace
}  // namespace ktf::test
