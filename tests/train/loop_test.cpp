// KerasTrainLoop / CustomTrainLoop: convergence, logs, freezing, stopping.
#include <ktf/components.h>

#include "train_fixtures.h"

namespace ktf::test {
namespace {

TEST(Loop, KerasTrainLoopLearnsSeparableData) {
  Harness h("keras_converges");
  h.add_metric(Json::parse(R"({"ktf.metrics.SparseCategoricalAccuracy": {}})"));
  auto loop = h.loop(Json::parse(R"({"ktf.train.KerasTrainLoop": {"num_epochs": 6}})"));
  Logs logs = loop->run(h.ctx);
  std::vector<std::string> keys;
  for (const auto& [k, v] : logs) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"loss", "accuracy", "val_loss", "val_accuracy", "lr"}));
  auto epochs = h.epochs();
  ASSERT_EQ(epochs.size(), 6u);
  // metrics.jsonl records are the logs plus the training pass's timing.
  const Logs& recorded = epochs.back().logs;
  ASSERT_EQ(recorded.size(), logs.size() + 4);
  EXPECT_EQ(Logs(recorded.begin(), recorded.begin() + static_cast<long>(logs.size())), logs);
  EXPECT_EQ(log_value(recorded, "train_samples"), 256);
  EXPECT_EQ(log_value(recorded, "train_steps"), 8);
  EXPECT_GT(log_value(recorded, "train_seconds"), 0);
  EXPECT_NEAR(log_value(recorded, "samples_per_second"), 256 / log_value(recorded, "train_seconds"),
              1e-6);
  EXPECT_GT(log_value(epochs.front().logs, "first_step_after_start"), 0);
  EXPECT_LT(log_value(logs, "loss"), 0.5 * log_value(epochs.front().logs, "loss"));
  EXPECT_GT(log_value(logs, "accuracy"), 0.95);
  EXPECT_GT(log_value(logs, "val_accuracy"), 0.95);
  EXPECT_DOUBLE_EQ(log_value(logs, "lr"), 0.1);
  EXPECT_EQ(h.ctx.global_step, 6 * 8);  // 256 examples / 32 per batch
}

TEST(Loop, StepsPerEpochValidStepsAndValidFreq) {
  Harness h("keras_limits");
  auto loop = h.loop(Json::parse(R"({"ktf.train.KerasTrainLoop": {
      "num_epochs": 5, "steps_per_epoch": 3, "num_valid_steps": 1, "valid_freq": 2}})"));
  loop->run(h.ctx);
  EXPECT_EQ(h.ctx.global_step, 15);
  auto epochs = h.epochs();
  ASSERT_EQ(epochs.size(), 5u);
  // Validation after epochs 2 and 4 (valid_freq) and 5 (the last).
  std::vector<bool> validated;
  for (const auto& e : epochs) validated.push_back(find_log(e.logs, "val_loss").has_value());
  EXPECT_EQ(validated, (std::vector<bool>{false, true, false, true, true}));
}

TEST(Loop, GradAccumulationStepsEveryNBatches) {
  Harness h("keras_accumulation");
  auto loop = h.loop(Json::parse(
      R"({"ktf.train.KerasTrainLoop": {"num_epochs": 2, "steps_per_epoch": 7, "grad_accumulation": 3,
          "clip_grad_norm": 1.0}})"));
  loop->run(h.ctx);
  // 7 batches per epoch: steps after batches 3 and 6, and the leftover batch at the epoch's end.
  EXPECT_EQ(h.ctx.global_step, 2 * 3);
  for (const auto& p : h.model->parameters()) EXPECT_FALSE(p.grad().defined());
}

TEST(Loop, ClipGradNormBoundsTheUpdate) {
  // With plain SGD (lr 1, no momentum) one step moves the parameters by exactly the clipped
  // gradient, whose global norm must then be <= clip_grad_norm.
  Harness h("keras_clip");
  auto loop = build<TrainLoop>(Json::parse(R"({"ktf.train.KerasTrainLoop": {
      "num_epochs": 1, "steps_per_epoch": 1, "clip_grad_norm": 0.01, "verbose": 0}})"),
                               &h.builder);
  loop->prepare(h.ctx);
  h.ctx.optimizer =
      std::make_shared<torch::optim::SGD>(h.model->parameters(), torch::optim::SGDOptions(1.0));
  std::vector<torch::Tensor> before;
  for (auto& p : h.model->parameters()) before.push_back(p.detach().clone());
  loop->run(h.ctx);
  double sq = 0;
  auto params = h.model->parameters();
  for (size_t i = 0; i < params.size(); ++i)
    sq += (params[i].detach() - before[i]).pow(2).sum().item<double>();
  EXPECT_NEAR(std::sqrt(sq), 0.01, 1e-4);
}

TEST(Loop, ConfusionMatrixFileHoldsEachEpoch) {
  Harness h("keras_confusion");
  h.add_metric(Json::parse(R"({"ktf.metrics.ConfusionMatrix": {"filename": "cm.jsonl"}})"));
  auto loop = h.loop(Json::parse(R"({"ktf.train.KerasTrainLoop": {"num_epochs": 2}})"));
  Logs logs = loop->run(h.ctx);
  auto lines = split_lines(read_text(std::filesystem::path(h.run_dir) / "cm.jsonl"));
  ASSERT_EQ(lines.size(), 4u);  // train and validation, two epochs
  Json last = Json::parse(lines.back());
  EXPECT_EQ(last.at("epoch").as_int(), 2);
  EXPECT_EQ(last.at("phase").as_string(), "validation");
  const auto& rows = last.at("value").as_array();
  ASSERT_EQ(rows.size(), 2u);
  int64_t total = 0, diagonal = 0;
  for (size_t i = 0; i < 2; ++i)
    for (size_t j = 0; j < 2; ++j) {
      total += rows[i].as_array()[j].as_int();
      if (i == j) diagonal += rows[i].as_array()[j].as_int();
    }
  EXPECT_EQ(total, 128);  // the validation split
  EXPECT_DOUBLE_EQ(log_value(logs, "val_confusion_accuracy"), diagonal / 128.0);
}

// A train step registered in-process: counts its calls, plain SGD update, exposes no output.
struct CountingStep : TrainStep {
  int64_t calls = 0;
  torch::Tensor step(TrainContext& ctx, Batch& batch) override {
    ++calls;
    ctx.optimizer->zero_grad();
    auto loss = ctx.loss->compute(ctx.model->forward(batch.input), batch.target);
    loss.backward();
    ctx.optimizer->step();
    return loss.detach();
  }
};
std::shared_ptr<CountingStep> g_counting_step;

void register_counting_step() {
  static bool done = false;
  if (done) return;
  done = true;
  plugins();
  register_component(define<TrainStep>("test.train.CountingStep", "counts calls")
                         .build([](const NoOptions&, BuildContext&) {
                           g_counting_step = std::make_shared<CountingStep>();
                           return g_counting_step;
                         }));
}

TEST(Loop, CustomTrainLoopRunsTheGivenStep) {
  register_counting_step();
  Harness h("custom_step");
  h.add_metric(Json::parse(R"({"ktf.metrics.SparseCategoricalAccuracy": {}})"));
  auto loop = h.loop(Json::parse(R"({"ktf.train.CustomTrainLoop": {
      "num_epochs": 3, "train_step": {"test.train.CountingStep": {}}}})"));
  Logs logs = loop->run(h.ctx);
  ASSERT_TRUE(g_counting_step);
  EXPECT_EQ(g_counting_step->calls, 3 * 8);
  EXPECT_EQ(h.ctx.global_step, 3 * 8);  // a foreign step counts as one optimizer step per call
  // The step exposes no outputs: train metrics are absent, validation metrics present.
  EXPECT_FALSE(find_log(logs, "accuracy").has_value());
  EXPECT_GT(log_value(logs, "val_accuracy"), 0.9);
  EXPECT_EQ(h.epochs().size(), 3u);
}

TEST(Loop, CustomTrainLoopDefaultsToSupervisedStep) {
  Harness h("custom_default");
  h.add_metric(Json::parse(R"({"ktf.metrics.SparseCategoricalAccuracy": {}})"));
  auto loop = h.loop(Json::parse(R"({"ktf.train.CustomTrainLoop": {"num_epochs": 6}})"));
  Logs logs = loop->run(h.ctx);
  EXPECT_GT(log_value(logs, "accuracy"), 0.95);
}

std::map<std::string, torch::Tensor> snapshot(torch::nn::Module& m) {
  std::map<std::string, torch::Tensor> s;
  for (const auto& p : m.named_parameters()) s[p.key()] = p.value().detach().clone();
  for (const auto& b : m.named_buffers()) s[b.key()] = b.value().detach().clone();
  return s;
}

TEST(Freeze, ScopedNameFreezesExactlyThatSubmodule) {
  Harness h("freeze_resample");
  auto before = snapshot(*h.model);
  auto loop = h.loop(Json::parse(R"({"ktf.train.KerasTrainLoop": {
      "num_epochs": 2, "freeze_submodels": ["base_model@layer1@resample"]}})"));
  EXPECT_NE(h.log.find("freeze_submodels: froze base_model@layer1@resample (72)"),
            std::string::npos)
      << h.log;
  EXPECT_NE(h.log.find("72 of 130 parameters frozen, 58 trainable"), std::string::npos) << h.log;
  loop->run(h.ctx);
  auto after = snapshot(*h.model);
  for (const auto& [name, value] : before) {
    bool frozen = name.rfind("base_model.layer1.resample.", 0) == 0;
    if (name.find("num_batches_tracked") != std::string::npos) continue;
    EXPECT_EQ(torch::equal(value, after[name]), frozen) << name;
  }
}

TEST(Freeze, FrozenBatchNormKeepsItsStatistics) {
  Harness h("freeze_block");
  auto before = snapshot(*h.model);
  auto loop = h.loop(Json::parse(R"({"ktf.train.KerasTrainLoop": {
      "num_epochs": 2, "freeze_submodels": ["base_model@layer1"]}})"));
  loop->run(h.ctx);
  auto after = snapshot(*h.model);
  for (const auto& [name, value] : before) {
    bool frozen = name.rfind("base_model.layer1.", 0) == 0;
    EXPECT_EQ(torch::equal(value, after[name]), frozen) << name;
  }
  EXPECT_TRUE(torch::equal(before["base_model.layer1.bn.running_mean"],
                           after["base_model.layer1.bn.running_mean"]));
}

TEST(Freeze, PrepareUnfreezesWhatALaterCycleNoLongerFreezes) {
  Harness h("freeze_then_not");
  h.loop(Json::parse(R"({"ktf.train.KerasTrainLoop": {"freeze_submodels": ["base_model"]}})"));
  EXPECT_EQ(count_parameters(*h.model, true), 18);  // head only
  h.loop(Json::parse(R"({"ktf.train.KerasTrainLoop": {}})"));
  EXPECT_EQ(count_parameters(*h.model, true), count_parameters(*h.model));
}

TEST(Freeze, UnknownNameListsClosestModules) {
  Harness h("freeze_unknown");
  try {
    h.loop(
        Json::parse(R"({"ktf.train.KerasTrainLoop": {"freeze_submodels": ["base_model@layr1"]}})"));
    FAIL() << "no error";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("freeze_submodels: 'base_model@layr1' matches no submodule of the model"),
              std::string::npos)
        << m;
    EXPECT_NE(m.find("closest: 'base_model@layer1'"), std::string::npos) << m;
    EXPECT_EQ(e.exit_code(), kExitConfig);
  }
}

TEST(Loop, StopsAfterTheCurrentBatchWhenInterrupted) {
  Harness h("interrupted");
  auto loop = h.loop(Json::parse(R"({"ktf.train.KerasTrainLoop": {"num_epochs": 3}})"));
  request_interrupt(true);
  loop->run(h.ctx);
  request_interrupt(false);
  EXPECT_EQ(h.ctx.global_step, 1);
  EXPECT_EQ(h.epochs().size(), 1u);
}

TEST(Loop, BadArgumentsNameTheArgument) {
  Harness h("bad_args");
  try {
    build<TrainLoop>(Json::parse(R"({"ktf.train.KerasTrainLoop": {"grad_accumulation": 0}})"),
                     &h.builder);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("grad_accumulation must be >= 1, got 0"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(build<TrainLoop>(Json::parse(R"({"ktf.train.KerasTrainLoop": {"valid_freq": 0}})"),
                                &h.builder),
               Error);
}

}  // namespace
}  // namespace ktf::test
