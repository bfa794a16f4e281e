// KerasTrainLoop / CustomTrainLoop: convergence, logs, freezing, stopping.
#include <ktf/components.h>

#include <chrono>
#include <cmath>
#include <thread>

#include "train_fixtures.h"

namespace ktf::test {
namespace {

/// A data pipeline that takes `delay` to produce each batch.
class SlowStream : public BatchStream {
 public:
  SlowStream(std::shared_ptr<BatchStream> inner, std::chrono::milliseconds delay)
      : inner_(std::move(inner)), delay_(delay) {}
  void start_epoch(int64_t epoch) override { inner_->start_epoch(epoch); }
  std::optional<Batch> next() override {
    std::this_thread::sleep_for(delay_);
    return inner_->next();
  }
  int64_t num_batches() const override { return inner_->num_batches(); }
  int64_t num_examples() const override { return inner_->num_examples(); }

 private:
  std::shared_ptr<BatchStream> inner_;
  std::chrono::milliseconds delay_;
};

const char* const kStepParts[] = {"data", "forward", "backward", "optimizer", "callbacks", "other"};

TEST(StepTimes, EachEpochRecordBreaksTheTrainingTimeDownIntoPartsThatAddUp) {
  Harness h("step_times");
  h.ctx.quiet = false;  // the epoch lines go to the log sink
  auto loop =
      h.loop(Json::parse(R"({"ktf.train.KerasTrainLoop": {"num_epochs": 2, "verbose": 2}})"));
  loop->run(h.ctx);
  auto epochs = h.epochs();
  ASSERT_EQ(epochs.size(), 2u);
  for (const auto& e : epochs) {
    double sum = 0;
    for (const char* part : kStepParts) {
      auto v = find_log(e.logs, std::string("time_") + part);
      ASSERT_TRUE(v.has_value()) << part;
      EXPECT_GE(*v, 0) << part;
      sum += *v;
    }
    const double seconds = log_value(e.logs, "train_seconds");
    EXPECT_NEAR(sum, seconds, 1e-9 + 1e-9 * seconds);
    // 8 batches, each a forward, a backward and an SGD step of the toy network.
    EXPECT_GT(log_value(e.logs, "time_forward"), 0);
    EXPECT_GT(log_value(e.logs, "time_backward"), 0);
    EXPECT_GT(log_value(e.logs, "time_optimizer"), 0);
  }
  EXPECT_EQ(h.ctx.step_times.steps, 8);
  auto lines = split_lines(h.log);
  ASSERT_EQ(lines.size(), 2u) << h.log;
  for (const auto& line : lines) {
    EXPECT_NE(line.find(" - step: data "), std::string::npos) << line;
    for (const char* part :
         {" · forward ", " · backward ", " · optimizer ", " · callbacks ", " · other "})
      EXPECT_NE(line.find(part), std::string::npos) << part << " in " << line;
    EXPECT_EQ(line.find("input-bound"), std::string::npos) << line;  // the data is in memory
  }
}

TEST(StepTimes, ASlowDataPipelineIsReportedAsInputBound) {
  Harness h("step_times_slow");
  h.ctx.quiet = false;
  h.ctx.train_data =
      std::make_shared<SlowStream>(separable(256, 32, 1), std::chrono::milliseconds(100));
  auto loop =
      h.loop(Json::parse(R"({"ktf.train.KerasTrainLoop": {"num_epochs": 1, "verbose": 2}})"));
  loop->run(h.ctx);
  auto epochs = h.epochs();
  ASSERT_EQ(epochs.size(), 1u);
  // 8 batches of 100 ms waiting against a few milliseconds of the toy network's work (and the
  // first step's set-up, which a loaded machine stretches).
  EXPECT_GE(log_value(epochs[0].logs, "time_data"), 0.79);
  EXPECT_GT(log_value(epochs[0].logs, "time_data"),
            0.5 * log_value(epochs[0].logs, "train_seconds"));
  // The wait that found the end of the data belongs to no step: the parts stay within the pass.
  EXPECT_LE(log_value(epochs[0].logs, "time_data"), log_value(epochs[0].logs, "train_seconds"));
  EXPECT_LE(h.ctx.step_times.data, h.ctx.step_times.total);
  EXPECT_TRUE(h.ctx.step_times.input_bound());
  EXPECT_NE(h.log.find("(input-bound)"), std::string::npos) << h.log;
}

TEST(StepTimes, PartsAreScaledToTheWholePassAndEmptyWithoutTimedSteps) {
  StepTimes t;
  EXPECT_TRUE(t.parts(1.0).empty());
  EXPECT_EQ(t.summary(), "");
  EXPECT_FALSE(t.input_bound());
  t.data = 1, t.forward = 2, t.backward = 3, t.optimizer = 1, t.callbacks = 0.5, t.total = 10;
  t.steps = 4;  // on CUDA one step in 16 is timed: the parts scale to the pass's seconds
  auto parts = t.parts(20.0);
  ASSERT_EQ(parts.size(), 6u);
  EXPECT_EQ(parts[0], (std::pair<std::string, double>("data", 2.0)));
  EXPECT_EQ(parts[5], (std::pair<std::string, double>("other", 5.0)));
  EXPECT_EQ(t.summary(),
            "data 10% · forward 20% · backward 30% · optimizer 10% · callbacks 5% · other 25%");
  t.data = 2.5;
  EXPECT_TRUE(t.input_bound());
  EXPECT_EQ(t.summary().substr(t.summary().size() - 14), " (input-bound)");
}

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
  // metrics.jsonl records are the logs plus the training pass's timing and its breakdown.
  const Logs& recorded = epochs.back().logs;
  ASSERT_EQ(recorded.size(), logs.size() + 4 + 6);
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

// A train step registered in-process: counts its calls, steps through the SDK's service, exposes
// no output.
struct CountingStep : TrainStep {
  int64_t calls = 0;
  StepResult step(TrainContext& ctx, Batch& batch) override {
    ++calls;
    auto loss = ctx.loss->compute(ctx.forward(batch.input), batch.target);
    ctx.backward_and_step(loss);
    return {loss.detach(), {}, {}};
  }
};
std::shared_ptr<CountingStep> g_counting_step;

/// Registers an in-process component of kind Base once per process (after the plugins).
template <class Base, class F>
void register_once(const std::string& name, F make) {
  plugins();
  if (Registry::global().find(KindOf<Base>::value, name)) return;
  register_component(
      define<Base>(name, "an in-test component").build([make](const NoOptions&, BuildContext&) {
        return make();
      }));
}

void register_counting_step() {
  register_once<TrainStep>("test.train.CountingStep", [] {
    g_counting_step = std::make_shared<CountingStep>();
    return g_counting_step;
  });
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

TEST(Loop, RestoresOnceThenCallsASafePointAfterEveryStepValidationBatchAndEpoch) {
  Harness h("safe_points");
  auto loop = h.loop(Json::parse(R"({"ktf.train.KerasTrainLoop": {"num_epochs": 2}})"));
  std::string trace;
  h.ctx.restore_hook = [&] { trace += "R"; };
  h.ctx.safe_point_hook = [&](SafePoint p) {
    trace += p == SafePoint::Step ? "s" : p == SafePoint::Validation ? "v" : "E";
  };
  loop->run(h.ctx);
  const int64_t train = h.ctx.train_data->num_batches(), valid = h.ctx.valid_data->num_batches();
  std::string epoch = std::string(train, 's') + std::string(valid, 'v') + "E";
  EXPECT_EQ(trace, "R" + epoch + epoch);
}

TEST(Loop, AnEngineStopAtASafePointLeavesTheLoopAtOnce) {
  Harness h("safe_point_stop");
  auto loop = h.loop(Json::parse(R"({"ktf.train.KerasTrainLoop": {"num_epochs": 3}})"));
  h.ctx.safe_point_hook = [&](SafePoint) {
    if (h.ctx.global_step == 1) throw Error("stop", {}, kExitInterrupted);
  };
  EXPECT_THROW(loop->run(h.ctx), Error);
  EXPECT_EQ(h.ctx.global_step, 1);
  EXPECT_TRUE(h.epochs().empty());
}

TEST(Loop, BadArgumentsNameTheArgument) {
  Harness h("bad_args");
  try {
    build<TrainLoop>(Json::parse(R"({"ktf.train.KerasTrainLoop": {"grad_accumulation": 0}})"),
                     &h.builder);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(
                  "ktf.train.KerasTrainLoop \u203a grad_accumulation: must be >= 1, got 0"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(build<TrainLoop>(Json::parse(R"({"ktf.train.KerasTrainLoop": {"valid_freq": 0}})"),
                                &h.builder),
               Error);
}

// ---- the SDK's training protocol -------------------------------------------------------------

/// Records the global gradient norm seen in on_after_backward, and the hooks' order.
struct GradientProbe : Callback {
  std::vector<double> norms;
  std::string hooks;
  void on_batch_begin(TrainContext&, int64_t) override { hooks += "b"; }
  void on_after_backward(TrainContext& ctx, int64_t) override {
    hooks += "g";
    double sq = 0;
    int64_t with_grad = 0;
    for (const auto& p : ctx.model->parameters()) {
      if (!p.requires_grad()) continue;
      if (p.grad().defined()) {
        sq += p.grad().pow(2).sum().item<double>();
        ++with_grad;
      }
    }
    // Every trainable parameter has its gradient here, whatever the optimizer.
    EXPECT_EQ(with_grad, static_cast<int64_t>(ctx.model->parameters().size()));
    norms.push_back(std::sqrt(sq));
  }
  void on_batch_end(TrainContext&, int64_t, const Logs&) override { hooks += "e"; }
};
std::shared_ptr<GradientProbe> g_probe;

void register_probe() {
  register_once<Callback>("test.callbacks.GradientProbe", [] {
    g_probe = std::make_shared<GradientProbe>();
    return g_probe;
  });
}

TEST(Protocol, AfterBackwardSeesIntactGradientsWithPlainSgdAndFlatAdam) {
  register_probe();
  for (const char* optimizer : {"sgd", "flat_adam"}) {
    SCOPED_TRACE(optimizer);
    Harness h(std::string("probe_") + optimizer);
    auto loop = h.loop(Json::parse(R"({"ktf.train.KerasTrainLoop": {"num_epochs": 1,
        "grad_accumulation": 3, "callbacks": [{"test.callbacks.GradientProbe": {}}]}})"));
    if (std::string(optimizer) == "flat_adam") {
      h.builder.parameters = h.model->parameters();
      h.ctx.optimizer = build<Optimizer>(
          Json::parse(R"({"ktf.optimizers.Adam": {"learning_rate": 0.01, "fused": true}})"),
          &h.builder);
      ASSERT_TRUE(dynamic_cast<FlatGradients*>(h.ctx.optimizer.get()));
    }
    loop->run(h.ctx);
    // 8 batches, 3 per step: steps after batches 3 and 6, and the partial group at the epoch end.
    ASSERT_EQ(g_probe->norms.size(), 3u);
    EXPECT_EQ(h.ctx.global_step, 3);
    for (double n : g_probe->norms) EXPECT_TRUE(std::isfinite(n) && n > 0) << n;
    EXPECT_EQ(g_probe->hooks, "bebebgebebebgebebeg");
  }
}

TEST(Protocol, AccumulationAveragesAGroupAndRescalesAPartialOne) {
  // Three losses, accumulation 2, plain SGD: w1 = w0 - lr (g1 + g2) / 2 at w0, then the partial
  // group's gradient in full: w2 = w1 - lr g3(w1).
  torch::manual_seed(3);
  auto lin = torch::nn::Linear(torch::nn::LinearOptions(3, 1).bias(false));
  auto xs = torch::randn({3, 4, 3}), ys = torch::randn({3, 4, 1});
  auto loss_of = [&](torch::nn::Linear& m, int64_t i) {
    return (m->forward(xs[i]) - ys[i]).pow(2).mean();
  };
  auto w0 = lin->weight.detach().clone();
  const double lr = 0.1;
  torch::Tensor expected;
  {
    auto ref = torch::nn::Linear(torch::nn::LinearOptions(3, 1).bias(false));
    {
      torch::NoGradGuard no_grad;
      ref->weight.copy_(w0);
    }
    auto g = [&](int64_t i) {
      ref->zero_grad();
      loss_of(ref, i).backward();
      return ref->weight.grad().clone();
    };
    auto g12 = (g(0) + g(1)) / 2;
    {
      torch::NoGradGuard no_grad;
      ref->weight.sub_(lr * g12);
    }
    auto g3 = g(2);
    expected = ref->weight.detach() - lr * g3;
  }
  TrainContext ctx;
  ctx.optimizer =
      std::make_shared<torch::optim::SGD>(lin->parameters(), torch::optim::SGDOptions(lr));
  StepSettings settings{2, std::nullopt};
  EXPECT_FALSE(ctx.backward_and_step(loss_of(lin, 0), settings));
  EXPECT_EQ(ctx.pending_backwards(), 1);
  EXPECT_TRUE(ctx.backward_and_step(loss_of(lin, 1), settings));
  EXPECT_FALSE(ctx.backward_and_step(loss_of(lin, 2), settings));
  EXPECT_TRUE(ctx.finish_accumulation());
  EXPECT_FALSE(ctx.finish_accumulation());
  EXPECT_EQ(ctx.global_step, 2);
  EXPECT_TRUE(torch::allclose(lin->weight.detach(), expected, 1e-6, 1e-7))
      << lin->weight << expected;
}

/// A step that reports the batch's index as a value and the batch size as another.
struct ValueStep : TrainStep {
  StepResult step(TrainContext& ctx, Batch& batch) override {
    auto out = ctx.forward(batch.input);
    auto loss = ctx.loss->compute(out, batch.target);
    ctx.backward_and_step(loss);
    return StepResult{loss.detach(), out.detach(), {}}
        .add("index", static_cast<double>(ctx.batch))
        .add("size", torch::tensor(static_cast<double>(batch.input.size(0))));
  }
};

TEST(Protocol, AStepsNamedValuesAreLoggedAsTheirEpochMean) {
  register_once<TrainStep>("test.train.ValueStep", [] { return std::make_shared<ValueStep>(); });
  Harness h("values");
  h.add_metric(Json::parse(R"({"ktf.metrics.SparseCategoricalAccuracy": {}})"));
  auto loop = h.loop(Json::parse(R"({"ktf.train.CustomTrainLoop": {
      "num_epochs": 1, "verbose": 0, "train_step": {"test.train.ValueStep": {}}}})"));
  Logs logs = loop->run(h.ctx);
  EXPECT_DOUBLE_EQ(log_value(logs, "index"), 3.5);  // mean of 0..7
  EXPECT_DOUBLE_EQ(log_value(logs, "size"), 32);
  EXPECT_TRUE(find_log(logs, "accuracy").has_value());  // the step returned its outputs
  EXPECT_DOUBLE_EQ(log_value(h.epochs().back().logs, "index"), 3.5);
}

/// A loss that fails inside libtorch on its second call.
struct FailingLoss : Loss {
  int calls = 0;
  torch::Tensor compute(const torch::Tensor& out, const torch::Tensor&) override {
    if (++calls == 2) return out.index_select(1, torch::tensor({5}));  // out of bounds
    return out.pow(2).mean();
  }
};

TEST(Protocol, AnErrorInsideAComponentNamesIt) {
  register_once<Loss>("test.losses.Failing", [] { return std::make_shared<FailingLoss>(); });
  Harness h("component_error");
  h.ctx.loss = build<Loss>(Json::parse(R"({"test.losses.Failing": {}})"), &h.builder);
  auto loop =
      h.loop(Json::parse(R"({"ktf.train.KerasTrainLoop": {"num_epochs": 1, "verbose": 0}})"));
  try {
    loop->run(h.ctx);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.exit_code(), kExitRuntime);
    EXPECT_EQ(e.path(), std::vector<std::string>{"test.losses.Failing"});
    EXPECT_NE(e.message().find("out of"), std::string::npos) << e.message();
  }
}

TEST(Protocol, EveryOptimizerStepAdvancesThePerStepSchedule) {
  Harness h("schedule_steps");
  auto loop =
      h.loop(Json::parse(R"({"ktf.train.KerasTrainLoop": {"num_epochs": 1, "verbose": 0}})"));
  h.builder.optimizer = h.ctx.optimizer;
  h.ctx.lr_schedule = build<LrSchedule>(
      Json::parse(R"({"ktf.optimizers.schedules.ExponentialDecay": {"decay_steps": 1,
          "decay_rate": 0.5}})"),
      &h.builder);
  loop->run(h.ctx);
  EXPECT_EQ(h.ctx.global_step, 8);
  EXPECT_DOUBLE_EQ(h.ctx.optimizer->param_groups()[0].options().get_lr(), 0.1 * std::pow(0.5, 8));
}

/// Keeps a copy of the model's first parameter's gradient at every on_after_backward.
struct GradientCopy : Callback {
  std::vector<torch::Tensor> grads;
  void on_after_backward(TrainContext& ctx, int64_t) override {
    grads.push_back(ctx.model->parameters()[0].grad().clone());
  }
};

TEST(Protocol, EachStepSeesOnlyItsOwnGradientsWithAnOptimizersOwnStorage) {
  // The flat Adam keeps gradients in its own buffer, which the step does not release: the
  // service must clear it before the next backward, or step 2 would see step 1's gradient too.
  plugins();
  torch::manual_seed(5);
  struct Line : Network {
    Line()
        : fc(register_module("fc", torch::nn::Linear(torch::nn::LinearOptions(3, 1).bias(false)))) {
    }
    torch::Tensor forward(torch::Tensor x) override { return fc(x); }
    torch::nn::Linear fc;
  };
  auto model = std::make_shared<Line>();
  BuildContext builder(plugins());
  builder.parameters = model->parameters();
  TrainContext ctx;
  ctx.model = model;
  ctx.optimizer = build<Optimizer>(
      Json::parse(R"({"ktf.optimizers.Adam": {"learning_rate": 0.1, "fused": true}})"), &builder);
  ASSERT_TRUE(dynamic_cast<FlatGradients*>(ctx.optimizer.get()));
  auto probe = std::make_shared<GradientCopy>();
  ctx.callbacks = {probe};
  auto x = torch::randn({3, 8, 3}), y = torch::randn({3, 8, 1});
  for (int64_t i = 0; i < 3; ++i) {
    // The gradient of this loss alone, at the current weights.
    auto w = model->fc->weight.detach().clone().requires_grad_();
    auto expected = torch::autograd::grad({(x[i].mm(w.t()) - y[i]).pow(2).mean()}, {w})[0];
    ctx.backward_and_step((ctx.forward(x[i]) - y[i]).pow(2).mean());
    ASSERT_EQ(probe->grads.size(), static_cast<size_t>(i + 1));
    EXPECT_TRUE(torch::allclose(probe->grads.back(), expected, 1e-6, 1e-7)) << "step " << i;
  }
}

/// Reports a loss of 2 for every batch.
struct ConstantLossStep : TrainStep {
  StepResult step(TrainContext& ctx, Batch& batch) override {
    ctx.backward_and_step(ctx.loss->compute(ctx.forward(batch.input), batch.target));
    return StepResult(torch::tensor(2.0));
  }
};

TEST(Protocol, TheEpochLossIsTheMeanOverExamples) {
  register_once<TrainStep>("test.train.ConstantLossStep",
                           [] { return std::make_shared<ConstantLossStep>(); });
  Harness h("constant_loss");
  auto loop = h.loop(Json::parse(R"({"ktf.train.CustomTrainLoop": {
      "num_epochs": 1, "verbose": 0, "train_step": {"test.train.ConstantLossStep": {}}}})"));
  Logs logs = loop->run(h.ctx);
  EXPECT_DOUBLE_EQ(log_value(logs, "loss"), 2.0);
}

}  // namespace
}  // namespace ktf::test

namespace ktf::test {
namespace {

/// A linear model whose forward records the dtype its matrix product ran in.
struct DtypeProbe : Network {
  DtypeProbe() { fc = register_module("fc", torch::nn::Linear(16, 4)); }
  torch::Tensor forward(torch::Tensor x) override {
    auto y = fc(x);
    seen = y.scalar_type();
    return y;
  }
  torch::nn::Linear fc{nullptr};
  torch::ScalarType seen = torch::kFloat;
};

TEST(Precision, Bf16ForwardRunsUnderAutocastWithFp32WeightsOutputAndGradients) {
  torch::manual_seed(3);
  auto model = std::make_shared<DtypeProbe>();
  auto reference = std::make_shared<DtypeProbe>();
  {
    torch::NoGradGuard no_grad;
    reference->fc->weight.copy_(model->fc->weight);
    reference->fc->bias.copy_(model->fc->bias);
  }
  const auto x = torch::randn({32, 16});
  const auto target = torch::randint(0, 4, {32});
  TrainContext ctx, ref;
  ctx.model = model;
  ref.model = reference;
  ctx.use_precision("bf16");
  EXPECT_EQ(ctx.precision, Precision::BF16);
  for (TrainContext* c : {&ctx, &ref})
    c->optimizer =
        std::make_shared<torch::optim::SGD>(c->model->parameters(), torch::optim::SGDOptions(0.5));
  for (int step = 0; step < 3; ++step) {
    auto out = ctx.forward(x);
    auto out_ref = ref.forward(x);
    EXPECT_EQ(model->seen, torch::kBFloat16) << "the matrix product ran in bf16";
    EXPECT_EQ(reference->seen, torch::kFloat);
    EXPECT_EQ(out.scalar_type(), torch::kFloat) << "forward() hands the loss fp32";
    // bf16 keeps 8 bits of mantissa: close to fp32, not equal.
    EXPECT_TRUE(torch::allclose(out, out_ref, 3e-2, 3e-2)) << step;
    EXPECT_FALSE(torch::equal(out, out_ref));
    // After an optimizer step the next forward uses the new weights: autocast's cache of bf16
    // weight copies is cleared at the end of each forward (a stale copy would repeat `out`).
    auto loss = torch::nn::functional::cross_entropy(out, target);
    ctx.backward_and_step(loss);
    ref.backward_and_step(torch::nn::functional::cross_entropy(out_ref, target));
    EXPECT_EQ(model->fc->weight.scalar_type(), torch::kFloat);
    EXPECT_TRUE(torch::allclose(model->fc->weight, reference->fc->weight, 2e-2, 2e-2)) << step;
  }
  // Outside forward() autocast is off again.
  EXPECT_EQ(model->fc(x).scalar_type(), torch::kFloat);
}

TEST(Precision, CommandLineWinsAndBadNamesAreRejected) {
  TrainContext ctx;
  ctx.precision = Precision::BF16;
  ctx.precision_from_command_line = true;
  ctx.use_precision("fp32");
  EXPECT_EQ(ctx.precision, Precision::BF16);
  TrainContext plain;
  plain.use_precision("fp32");
  EXPECT_EQ(plain.precision, Precision::FP32);
  try {
    plain.use_precision("fp8");
    FAIL() << "fp8 accepted";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "precision 'fp8': expected fp32, bf16 or fp16");
  }
  EXPECT_STREQ(precision_name(Precision::BF16), "bf16");
}

TEST(Precision, TheLoopsPrecisionArgumentReachesTheContext) {
  Harness h("precision_arg");
  auto loop = h.loop(Json::parse(
      R"({"ktf.train.KerasTrainLoop": {"num_epochs": 1, "verbose": 0, "precision": "bf16"}})"));
  Logs logs = loop->run(h.ctx);
  EXPECT_EQ(h.ctx.precision, Precision::BF16);
  EXPECT_TRUE(std::isfinite(log_value(logs, "loss")));
}

}  // namespace
}  // namespace ktf::test

namespace ktf::test {
namespace {

std::vector<torch::Tensor> copies(const std::vector<torch::Tensor>& tensors) {
  std::vector<torch::Tensor> out;
  for (const auto& t : tensors) out.push_back(t.detach().clone());
  return out;
}

bool all_close(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!torch::allclose(a[i], b[i], 1e-5, 1e-6)) return false;
  return true;
}

/// The model's parameters at the hooks the weight averages change.
struct WeightProbe : Callback {
  std::vector<torch::Tensor> at_train_begin;
  std::vector<std::vector<torch::Tensor>> after_batch, at_epoch_begin, at_epoch_end;
  void on_train_begin(TrainContext& ctx) override {
    at_train_begin = copies(ctx.model->parameters());
  }
  void on_epoch_begin(TrainContext& ctx, int64_t) override {
    at_epoch_begin.push_back(copies(ctx.model->parameters()));
  }
  void on_batch_end(TrainContext& ctx, int64_t, const Logs&) override {
    after_batch.push_back(copies(ctx.model->parameters()));
  }
  void on_epoch_end(TrainContext& ctx, int64_t, const Logs&) override {
    at_epoch_end.push_back(copies(ctx.model->parameters()));
  }
};
std::shared_ptr<WeightProbe> g_weights;

void register_weight_probe() {
  register_once<Callback>("test.callbacks.WeightProbe", [] {
    g_weights = std::make_shared<WeightProbe>();
    return g_weights;
  });
}

/// The mean validation loss of the model as it is (eval mode), as the loop computes val_loss.
double validation_loss(Harness& h) {
  torch::NoGradGuard no_grad;
  h.model->eval();
  double sum = 0;
  int64_t n = 0;
  h.ctx.valid_data->start_epoch(0);
  while (auto b = h.ctx.valid_data->next()) {
    sum += h.ctx.loss->compute(h.model->forward(b->input), b->target).item<double>() *
           static_cast<double>(b->input.size(0));
    n += b->input.size(0);
  }
  return sum / static_cast<double>(n);
}

TEST(WeightAverage, EmaValidatesAndEndsWithTheAverageAndKeepsTheRawWeights) {
  register_weight_probe();
  Harness h("ema");
  auto loop = h.loop(Json::parse(R"({"ktf.train.KerasTrainLoop": {"num_epochs": 2,
      "ema": {"decay": 0.5}, "callbacks": [{"test.callbacks.WeightProbe": {}}]}})"));
  const Logs logs = loop->run(h.ctx);
  auto& probe = *g_weights;
  ASSERT_EQ(probe.after_batch.size(), 16u);  // 8 batches an epoch, one SGD step each
  // The average: the initial weights, then average = 0.5 average + 0.5 weights after each step.
  std::vector<torch::Tensor> average = copies(probe.at_train_begin);
  for (size_t step = 0; step < 16; ++step) {
    for (size_t i = 0; i < average.size(); ++i)
      average[i] = 0.5 * average[i] + 0.5 * probe.after_batch[step][i];
    if (step % 8 == 7) {  // the epoch's end: its callbacks see the average
      EXPECT_TRUE(all_close(probe.at_epoch_end[step / 8], average)) << "epoch " << step / 8 + 1;
      EXPECT_FALSE(all_close(probe.at_epoch_end[step / 8], probe.after_batch[step]));
    }
  }
  // Training went on from the raw weights; the cycle ends with the average.
  EXPECT_TRUE(all_close(probe.at_epoch_begin[1], probe.after_batch[7]));
  EXPECT_TRUE(all_close(copies(h.model->parameters()), average));
  // val_loss is the average's, and the raw weights are kept in weights/cycle-1.raw.pt.
  EXPECT_NEAR(validation_loss(h), log_value(logs, "val_loss"), 1e-6);
  const auto raw_path = std::filesystem::path(h.run_dir) / "weights" / "cycle-1.raw.pt";
  ASSERT_TRUE(std::filesystem::exists(raw_path));
  auto raw = std::make_shared<ToyNet>();
  torch::load(raw, raw_path.string());
  EXPECT_TRUE(all_close(copies(raw->parameters()), probe.after_batch.back()));
  EXPECT_NE(h.log.find("train loop: ema (decay 0.5) of the weights"), std::string::npos) << h.log;
}

TEST(WeightAverage, EmaWarmupAndStartStep) {
  register_weight_probe();
  Harness h("ema_warmup");
  auto loop = h.loop(Json::parse(R"({"ktf.train.KerasTrainLoop": {"num_epochs": 1,
      "ema": {"decay": 0.9, "warmup": true, "start_step": 3},
      "callbacks": [{"test.callbacks.WeightProbe": {}}]}})"));
  loop->run(h.ctx);
  auto& probe = *g_weights;
  ASSERT_EQ(probe.after_batch.size(), 8u);
  // Steps 1-3 copy the weights; then update n uses decay min(0.9, (1 + n) / (10 + n)).
  std::vector<torch::Tensor> average = copies(probe.after_batch[2]);
  for (size_t step = 3; step < 8; ++step) {
    const double n = static_cast<double>(step - 2);
    const double decay = std::min(0.9, (1 + n) / (10 + n));
    for (size_t i = 0; i < average.size(); ++i)
      average[i] = decay * average[i] + (1 - decay) * probe.after_batch[step][i];
  }
  EXPECT_TRUE(all_close(copies(h.model->parameters()), average));
}

TEST(WeightAverage, SwaIsTheMeanOfTheEpochEndsFromItsStartEpoch) {
  register_weight_probe();
  Harness h("swa");
  auto loop = h.loop(Json::parse(R"({"ktf.train.KerasTrainLoop": {"num_epochs": 3,
      "swa": {"start_epoch": 2}, "callbacks": [{"test.callbacks.WeightProbe": {}}]}})"));
  loop->run(h.ctx);
  auto& probe = *g_weights;
  ASSERT_EQ(probe.after_batch.size(), 24u);
  // Epoch 1 averages nothing yet: its callbacks see the raw weights.
  EXPECT_TRUE(all_close(probe.at_epoch_end[0], probe.after_batch[7]));
  std::vector<torch::Tensor> mean;
  for (size_t i = 0; i < probe.after_batch[15].size(); ++i)
    mean.push_back((probe.after_batch[15][i] + probe.after_batch[23][i]) / 2);
  EXPECT_TRUE(all_close(probe.at_epoch_end[1], probe.after_batch[15]));  // the mean of one
  EXPECT_TRUE(all_close(probe.at_epoch_end[2], mean));
  EXPECT_TRUE(all_close(copies(h.model->parameters()), mean));
}

TEST(WeightAverage, BadOptionsNameTheKeyOrValue) {
  for (const auto& [args, message] : std::vector<std::pair<std::string, std::string>>{
           {R"("ema": {"decay": 1.5})", "ema › decay: must be in (0, 1), got number 1.5"},
           {R"("ema": {"decy": 0.9})",
            "ema: unknown key 'decy' (it takes decay, warmup, start_step)"},
           {R"("ema": {"warmup": 1})", "ema › warmup: expected a boolean, got integer 1"},
           {R"("swa": {"start_epoch": 0})", "swa › start_epoch: must be >= 1, got 0"},
           {R"("ema": {}, "swa": {})", "ema and swa cannot both be set"}}) {
    Harness h("ema_bad");
    try {
      h.loop(Json::parse(R"({"ktf.train.KerasTrainLoop": {)" + args + "}}"));
      ADD_FAILURE() << args << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
      EXPECT_EQ(e.exit_code(), kExitConfig) << args;
    }
  }
}

}  // namespace
}  // namespace ktf::test
