// Dynamic loss scaling (ktf::GradScaler) and its place in the backward/step service, on the CPU:
// scaling and unscaling, the skip-and-back-off of a step whose gradients overflow, growth after
// clean steps, its checkpoint state, bitwise-equal training where nothing overflows; and the
// CUDA-only options (fp16, CUDA graphs) refusing or stepping aside on the CPU.
#include <gtest/gtest.h>
#include <ktf/train.h>

#include "train_fixtures.h"

namespace ktf::test {
namespace {

TEST(GradScaler, ScalesTheLossAndUnscalesGradientsReportingNonFinite) {
  GradScaler scaler(LossScaleOptions{1024.0, 2.0, 2000, 0.5});
  EXPECT_EQ(scaler.scale(torch::tensor(2.0f)).item<float>(), 2048.0f);
  std::vector<torch::Tensor> grads{torch::tensor({1024.0f, -2048.0f}), torch::tensor({512.0f})};
  EXPECT_TRUE(scaler.unscale(grads));
  EXPECT_TRUE(torch::equal(grads[0], torch::tensor({1.0f, -2.0f})));
  EXPECT_EQ(grads[1].item<float>(), 0.5f);
  // The factor folds in a partial accumulation group's rescale.
  std::vector<torch::Tensor> more{torch::tensor({1024.0f})};
  EXPECT_TRUE(scaler.unscale(more, 3.0));
  EXPECT_EQ(more[0].item<float>(), 3.0f);
  for (float bad : {std::numeric_limits<float>::infinity(), std::nanf("")}) {
    std::vector<torch::Tensor> g{torch::tensor({1.0f}), torch::tensor({bad, 1.0f})};
    EXPECT_FALSE(scaler.unscale(g)) << bad;
  }
  std::vector<torch::Tensor> none;
  EXPECT_TRUE(scaler.unscale(none));
}

TEST(GradScaler, BacksOffAfterAnOverflowAndGrowsAfterCleanSteps) {
  GradScaler scaler(LossScaleOptions{256.0, 2.0, 3, 0.25});
  scaler.update(true);
  scaler.update(true);
  EXPECT_EQ(scaler.current_scale(), 256.0);
  EXPECT_EQ(scaler.growth_tracker(), 2);
  scaler.update(true);  // the third clean step in a row
  EXPECT_EQ(scaler.current_scale(), 512.0);
  EXPECT_EQ(scaler.growth_tracker(), 0);
  scaler.update(true);
  scaler.update(false);  // an overflow resets the run of clean steps
  EXPECT_EQ(scaler.current_scale(), 128.0);
  EXPECT_EQ(scaler.growth_tracker(), 0);
  EXPECT_EQ(scaler.skipped_steps(), 1);
  // It never grows past what fp32 holds.
  GradScaler big(LossScaleOptions{3e38, 2.0, 1, 0.5});
  big.update(true);
  EXPECT_EQ(big.current_scale(), 3e38);
}

TEST(GradScaler, StateRoundTripsAndBadOptionsAreRefused) {
  GradScaler a(LossScaleOptions{64.0, 2.0, 2, 0.5});
  a.update(false);
  a.update(true);
  State s;
  a.save_state(s);
  GradScaler b;
  b.load_state(s);
  EXPECT_EQ(b.current_scale(), 32.0);
  EXPECT_EQ(b.growth_tracker(), 1);
  EXPECT_EQ(b.skipped_steps(), 1);
  auto message = [](LossScaleOptions o) {
    try {
      GradScaler bad(o);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message({0.0, 2.0, 2000, 0.5}).find("init_scale must be a finite number > 0"),
            std::string::npos);
  EXPECT_NE(message({65536.0, 1.0, 2000, 0.5}).find("growth_factor must be > 1, got 1"),
            std::string::npos);
  EXPECT_NE(message({65536.0, 2.0, 0, 0.5}).find("growth_interval must be >= 1, got 0"),
            std::string::npos);
  EXPECT_NE(message({65536.0, 2.0, 2000, 1.0}).find("backoff_factor must be in (0, 1)"),
            std::string::npos);
}

/// Sees the gradients where the SDK promises them intact.
struct GradientProbe : Callback {
  torch::Tensor param;
  std::vector<float> seen;
  void on_after_backward(TrainContext&, int64_t) override {
    seen.push_back(param.grad().item<float>());
  }
};

TEST(LossScaling, AnOverflowingStepIsSkippedAndTheScaleBacksOffUntilItFits) {
  // d(loss)/dw = 1e35: times 65536 ... 4096 that overflows fp32 (max 3.4e38), times 2048 it fits.
  auto w = torch::full({1}, 0.5f).requires_grad_(true);
  TrainContext ctx;
  ctx.optimizer = std::make_shared<torch::optim::SGD>(std::vector<torch::Tensor>{w},
                                                      torch::optim::SGDOptions(1e-36));
  ctx.use_precision("fp32", /*loss_scaling=*/true);
  ASSERT_NE(ctx.loss_scaler(), nullptr);
  auto probe = std::make_shared<GradientProbe>();
  probe->param = w;
  ctx.callbacks = {probe};
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(ctx.backward_and_step(w.sum() * 1e35));
    EXPECT_EQ(w.item<float>(), 0.5f) << "step " << i << " changed the weight";
  }
  EXPECT_EQ(ctx.loss_scaler()->skipped_steps(), 5);
  EXPECT_EQ(ctx.loss_scaler()->current_scale(), 2048.0);
  EXPECT_TRUE(ctx.backward_and_step(w.sum() * 1e35));
  EXPECT_NEAR(w.item<float>(), 0.4f, 1e-6);  // 0.5 - 1e-36 * 1e35
  EXPECT_EQ(ctx.global_step, 6);             // skipped steps count as steps (as PyTorch's loops)
  ASSERT_EQ(probe->seen.size(), 6u);
  EXPECT_TRUE(std::isinf(probe->seen[0]));
  EXPECT_FLOAT_EQ(probe->seen[5], 1e35f);  // on_after_backward sees the unscaled gradient
}

TEST(LossScaling, TrainingWithoutOverflowIsBitwiseThatWithoutScaling) {
  // Scales are powers of two: multiplying and dividing by one loses nothing in fp32.
  auto train = [](bool scaling, std::optional<int64_t> accumulation) {
    torch::manual_seed(3);
    auto model = std::make_shared<ToyNet>();
    TrainContext ctx;
    ctx.model = model;
    ctx.optimizer = std::make_shared<torch::optim::SGD>(
        model->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
    ctx.use_precision("fp32", scaling);
    ctx.step_settings = StepSettings{accumulation.value_or(1), 1.0};
    auto gen = at::detail::createCPUGenerator(7);
    for (int i = 0; i < 7; ++i) {
      auto x = torch::randn({16, 2}, gen);
      auto y = (x.select(1, 0) > 0).to(torch::kLong);
      ctx.backward_and_step(torch::nn::functional::cross_entropy(ctx.forward(x), y));
    }
    ctx.finish_accumulation();
    return model->parameters();
  };
  for (std::optional<int64_t> acc : {std::optional<int64_t>{}, std::optional<int64_t>{3}}) {
    auto plain = train(false, acc), scaled = train(true, acc);
    ASSERT_EQ(plain.size(), scaled.size());
    for (size_t i = 0; i < plain.size(); ++i)
      EXPECT_TRUE(torch::equal(plain[i], scaled[i])) << "parameter " << i;
  }
}

TEST(LossScaling, Fp16NeedsCudaAndCudaGraphsStepAsideOnTheCpu) {
  TrainContext ctx;
  try {
    ctx.use_precision("fp16");
    ADD_FAILURE() << "fp16 on the CPU was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.exit_code(), kExitConfig);
    EXPECT_NE(std::string(e.what()).find("precision fp16 needs a CUDA device (--device cuda), "
                                         "this cycle runs on cpu; on a CPU use bf16"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(ctx.loss_scaler(), nullptr);
  ctx.use_precision("bf16");
  EXPECT_EQ(ctx.loss_scaler(), nullptr);  // loss scaling is fp16's unless asked for
  EXPECT_THROW(parse_precision("fp8"), Error);
  EXPECT_STREQ(precision_name(parse_precision("fp16")), "fp16");

  std::string log;
  ctx.quiet = true;
  ctx.log_sink = [&](const std::string& line) { log += line + "\n"; };
  int calls = 0;
  TrainContext::StepBody body = [&](const Batch&) {
    ++calls;
    return std::make_pair(torch::tensor(1.0f), torch::Tensor());
  };
  Batch batch{torch::zeros({2, 2}), torch::zeros({2})};
  EXPECT_FALSE(ctx.run_graphed(batch, body, true));  // automatic: silent off a GPU
  EXPECT_EQ(log, "");
  TrainContext asked;
  asked.quiet = true;
  asked.log_sink = ctx.log_sink;
  asked.cuda_graphs = true;
  EXPECT_FALSE(asked.run_graphed(batch, body, false));
  EXPECT_FALSE(asked.run_graphed(batch, body, false));
  EXPECT_EQ(calls, 0);  // the caller runs the step itself
  // Said once, with the reason.
  EXPECT_EQ(log, "cuda graphs: off: the cycle runs on cpu\n");
}

TEST(LossScaling, KerasLoopRecordsTheScaleAndSkippedSteps) {
  Harness h("loss_scaling_loop");
  auto loop = h.loop(Json::parse(
      R"({"ktf.train.KerasTrainLoop": {"num_epochs": 2, "verbose": 0, "loss_scaling": true}})"));
  loop->run(h.ctx);
  auto epochs = h.epochs();
  ASSERT_EQ(epochs.size(), 2u);
  EXPECT_EQ(log_value(epochs[1].logs, "loss_scale"), 65536.0);
  EXPECT_EQ(log_value(epochs[1].logs, "skipped_steps"), 0.0);
}

}  // namespace
}  // namespace ktf::test
