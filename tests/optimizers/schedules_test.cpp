// The learning-rate schedules: exact lr sequences, per parameter group, and argument errors.
#include <gtest/gtest.h>
#include <ktf/components.h>
#include <ktf/error.h>

#include <cmath>

#include "expect_error.h"
#include "plugins_fixture.h"

namespace {

using ktf::Json;

/// An SGD optimizer (lr 0.1 unless given) and a schedule built over it, as the Environment does.
struct Scheduled {
  torch::Tensor w = torch::zeros({2}, torch::kDouble).requires_grad_(true);
  std::shared_ptr<ktf::Optimizer> optimizer;
  std::shared_ptr<ktf::LrSchedule> schedule;

  Scheduled(const std::string& name, Json args, double lr = 0.1, int64_t steps_per_epoch = -1) {
    optimizer = std::make_shared<torch::optim::SGD>(std::vector<torch::Tensor>{w},
                                                    torch::optim::SGDOptions(lr));
    ktf::BuildContext ctx(ktf::test::plugins());
    ctx.optimizer = optimizer;
    ctx.steps_per_epoch = steps_per_epoch;
    schedule = ktf::test::build<ktf::LrSchedule>(Json::object({{name, std::move(args)}}), &ctx);
  }
  double lr(size_t group = 0) const { return optimizer->param_groups()[group].options().get_lr(); }
  /// The lr of steps 0..n-1, as a train loop sees them: step s runs, then on_batch_end(s + 1).
  std::vector<double> step_lrs(int n) {
    std::vector<double> out;
    for (int s = 0; s < n; ++s) {
      out.push_back(lr());
      schedule->on_batch_end(s + 1);
    }
    return out;
  }
  /// The lr of epochs 0..n-1: epoch e runs, then on_epoch_end(e, logs).
  std::vector<double> epoch_lrs(int n) {
    std::vector<double> out;
    for (int e = 0; e < n; ++e) {
      out.push_back(lr());
      schedule->on_epoch_end(e, {{"loss", 1.0}});
    }
    return out;
  }
};

using ktf::test::error_of;

void expect_sequence(const std::vector<double>& got, const std::vector<double>& expected,
                     double tol = 1e-12) {
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], expected[i], tol) << "index " << i;
}

TEST(StepDecay, HalvesEveryTwoEpochs) {
  Scheduled s("ktf.optimizers.schedules.StepDecay",
              Json::object({{"step_size", 2}, {"gamma", 0.5}}));
  expect_sequence(s.epoch_lrs(6), {0.1, 0.1, 0.05, 0.05, 0.025, 0.025});
}

TEST(StepDecay, EveryParameterGroupFromItsOwnBase) {
  auto a = torch::zeros({1}, torch::kDouble).requires_grad_(true);
  auto b = torch::zeros({1}, torch::kDouble).requires_grad_(true);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::vector<torch::Tensor>{a},
                      std::make_unique<torch::optim::SGDOptions>(1.0));
  groups.emplace_back(std::vector<torch::Tensor>{b},
                      std::make_unique<torch::optim::SGDOptions>(0.01));
  auto opt = std::make_shared<torch::optim::SGD>(groups, torch::optim::SGDOptions(1.0));
  ktf::BuildContext ctx(ktf::test::plugins());
  ctx.optimizer = opt;
  auto schedule = ktf::test::build<ktf::LrSchedule>(
      Json::object({{"torch.optim.lr_scheduler.StepLR", Json::object({{"step_size", 1}})}}), &ctx);
  schedule->on_epoch_end(0, {});
  EXPECT_NEAR(opt->param_groups()[0].options().get_lr(), 0.1, 1e-15);
  EXPECT_NEAR(opt->param_groups()[1].options().get_lr(), 0.001, 1e-15);
}

TEST(MultiStepDecay, DecaysAfterEachMilestone) {
  Scheduled s("ktf.optimizers.schedules.MultiStepDecay",
              Json::object({{"milestones", Json::array({1, 3})}, {"gamma", 0.1}}));
  expect_sequence(s.epoch_lrs(5), {0.1, 0.01, 0.01, 0.001, 0.001}, 1e-15);
  EXPECT_CONTAINS(error_of([] {
                    Scheduled("ktf.optimizers.schedules.MultiStepDecay",
                              Json::object({{"milestones", Json::array({3, 3})}}));
                  }),
                  "milestones must be strictly increasing, got 3 then 3");
}

TEST(ExponentialDecay, KerasFormulaPerStep) {
  Scheduled smooth("ktf.optimizers.schedules.ExponentialDecay",
                   Json::object({{"decay_steps", 2}, {"decay_rate", 0.5}}));
  expect_sequence(smooth.step_lrs(4), {0.1, 0.1 * std::sqrt(0.5), 0.05, 0.05 * std::sqrt(0.5)});
  Scheduled stairs("tf.keras.optimizers.schedules.ExponentialDecay",
                   Json::object({{"decay_steps", 2},
                                 {"decay_rate", 0.5},
                                 {"staircase", true},
                                 {"initial_learning_rate", 1.0}}));
  expect_sequence(stairs.step_lrs(5), {1.0, 1.0, 0.5, 0.5, 0.25});
}

TEST(CosineDecay, LinearWarmupThenCosine) {
  Scheduled s("ktf.optimizers.schedules.CosineDecay",
              Json::object({{"warmup_steps", 2}, {"total_steps", 6}}));
  const double pi = std::acos(-1.0);
  expect_sequence(s.step_lrs(8), {0.05, 0.1, 0.1, 0.1 * (1 + std::cos(pi / 4)) / 2, 0.05,
                                  0.1 * (1 + std::cos(3 * pi / 4)) / 2, 0.0, 0.0});
}

TEST(CosineDecay, MinLrAndEpochsForm) {
  Scheduled s("ktf.optimizers.schedules.CosineDecay",
              Json::object({{"epochs", 2}, {"steps_per_epoch", 2}, {"min_lr", 0.01}}));
  const double pi = std::acos(-1.0);
  expect_sequence(s.step_lrs(6), {0.1, 0.01 + 0.09 * (1 + std::cos(pi / 4)) / 2, 0.055,
                                  0.01 + 0.09 * (1 + std::cos(3 * pi / 4)) / 2, 0.01, 0.01});
}

TEST(CosineDecay, EpochsUseTheDatasetsBatchesPerEpoch) {
  // 2 epochs of 2 batches: the same sequence as total_steps 4.
  Scheduled by_epochs("ktf.optimizers.schedules.CosineDecay", Json::object({{"epochs", 2}}), 0.1,
                      2);
  Scheduled by_steps("ktf.optimizers.schedules.CosineDecay", Json::object({{"total_steps", 4}}));
  EXPECT_EQ(by_epochs.step_lrs(5), by_steps.step_lrs(5));
}

TEST(CosineDecay, LengthMustBeGivenOnce) {
  const std::string name = "ktf.optimizers.schedules.CosineDecay";
  EXPECT_CONTAINS(error_of([&] { Scheduled(name, Json::object()); }),
                  "give total_steps, or epochs (and steps_per_epoch where the dataset's batches "
                  "per epoch are not known)");
  EXPECT_CONTAINS(error_of([&] {
                    Scheduled(name, Json::object({{"total_steps", 10}, {"epochs", 2}}));
                  }),
                  "not both");
  EXPECT_CONTAINS(error_of([&] {
                    Scheduled(name, Json::object({{"total_steps", 3}, {"warmup_steps", 3}}));
                  }),
                  "warmup_steps (3) must be less than the total steps (3)");
}

TEST(OneCycle, TorchOneCycleLrValues) {
  Scheduled s("ktf.optimizers.schedules.OneCycle",
              Json::object({{"max_lr", 1.0}, {"total_steps", 10}}));
  // initial 1/25 = 0.04, final 0.04 / 1e4; up phase ends at step 0.3 * 10 - 1 = 2.
  auto lrs = s.step_lrs(12);
  const double pi = std::acos(-1.0), initial = 0.04, final_lr = 0.04 / 1e4;
  auto down = [&](double pct) { return final_lr + (1 - final_lr) / 2 * (std::cos(pi * pct) + 1); };
  EXPECT_NEAR(lrs[0], initial, 1e-12);
  EXPECT_NEAR(lrs[1], 1 + (initial - 1) / 2 * (std::cos(pi / 2) + 1), 1e-12);  // 0.52
  EXPECT_NEAR(lrs[2], 1.0, 1e-12);
  EXPECT_NEAR(lrs[5], down(3.0 / 7), 1e-12);
  EXPECT_NEAR(lrs[9], final_lr, 1e-15);
  EXPECT_NEAR(lrs[11], final_lr, 1e-15);  // past the cycle: stays at the final lr
  for (int i = 3; i < 10; ++i) EXPECT_LT(lrs[i], lrs[i - 1]) << "step " << i;
}

TEST(OneCycle, MaxLrDefaultsToTheOptimizers) {
  Scheduled s("ktf.optimizers.schedules.OneCycle",
              Json::object({{"epochs", 2}, {"steps_per_epoch", 5}, {"pct_start", 0.5}}), 0.2);
  auto lrs = s.step_lrs(10);
  EXPECT_NEAR(lrs[0], 0.2 / 25, 1e-15);
  EXPECT_NEAR(lrs[4], 0.2, 1e-15);
  EXPECT_CONTAINS(error_of([] {
                    Scheduled("ktf.optimizers.schedules.OneCycle",
                              Json::object({{"total_steps", 10}, {"pct_start", 1.0}}));
                  }),
                  "pct_start: must be in (0, 1), got 1");
}

TEST(ReduceOnPlateau, ReducesAfterPatienceAndRespectsMinLr) {
  Scheduled s("ktf.optimizers.schedules.ReduceOnPlateau",
              Json::object({{"patience", 2}, {"factor", 0.5}, {"min_lr", 0.02}}));
  std::vector<double> val_loss{1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.8, 0.9, 0.9, 0.9, 0.9};
  std::vector<double> lrs;
  for (size_t e = 0; e < val_loss.size(); ++e) {
    s.schedule->on_epoch_end(static_cast<int64_t>(e), {{"loss", 0.1}, {"val_loss", val_loss[e]}});
    lrs.push_back(s.lr());
  }
  // Waits: -, -, 1, 2 (halve), 1, 2 (halve), improved, 1, 2 (halve, floored at min_lr), 1, 2.
  expect_sequence(lrs, {0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.025, 0.02, 0.02, 0.02});
}

TEST(ReduceOnPlateau, CooldownAndMaxMode) {
  Scheduled s("ktf.optimizers.schedules.ReduceOnPlateau", Json::object({{"monitor", "val_accuracy"},
                                                                        {"patience", 1},
                                                                        {"cooldown", 2},
                                                                        {"factor", 0.1},
                                                                        {"min_delta", 0.0}}));
  // mode "auto" maximises a monitor containing "acc".
  std::vector<double> acc{0.5, 0.6, 0.6, 0.6, 0.6, 0.6};
  std::vector<double> lrs;
  for (size_t e = 0; e < acc.size(); ++e) {
    s.schedule->on_epoch_end(static_cast<int64_t>(e), {{"val_accuracy", acc[e]}});
    lrs.push_back(s.lr());
  }
  // Epoch 2 reduces; epochs 3 and 4 are the cooldown (counted as in Keras: the second cooldown
  // epoch already counts toward patience again), so epoch 4 reduces again.
  expect_sequence(lrs, {0.1, 0.1, 0.01, 0.01, 0.001, 0.001}, 1e-15);
}

TEST(ReduceOnPlateau, MissingMonitorIsAClearError) {
  Scheduled s("ktf.optimizers.schedules.ReduceOnPlateau", Json::object());
  EXPECT_CONTAINS(error_of([&] {
                    s.schedule->on_epoch_end(0, {{"loss", 1.0}, {"accuracy", 0.5}});
                  }),
                  "monitor 'val_loss' is not in the epoch logs (they have: loss, accuracy)");
  EXPECT_CONTAINS(
      error_of([] {
        Scheduled("ktf.optimizers.schedules.ReduceOnPlateau", Json::object({{"factor", 1.0}}));
      }),
      "factor: must be in (0, 1), got 1");
}

TEST(Schedules, NeedAnOptimizer) {
  ktf::BuildContext ctx(ktf::test::plugins());
  EXPECT_CONTAINS(error_of([&] {
                    ktf::test::build<ktf::LrSchedule>(
                        Json::object({{"ktf.optimizers.schedules.StepDecay",
                                       Json::object({{"step_size", 1}})}}),
                        &ctx);
                  }),
                  "StepDecay: no optimizer to schedule");
}

TEST(Schedules, StateRoundTrip) {
  Scheduled a("ktf.optimizers.schedules.ReduceOnPlateau", Json::object({{"patience", 2}}));
  a.schedule->on_epoch_end(0, {{"val_loss", 1.0}});
  a.schedule->on_epoch_end(1, {{"val_loss", 1.0}});  // wait 1
  Scheduled b("ktf.optimizers.schedules.ReduceOnPlateau", Json::object({{"patience", 2}}));
  ktf::State state;
  a.schedule->save_state(state);
  b.schedule->load_state(state);
  b.schedule->on_epoch_end(2, {{"val_loss", 1.0}});  // wait 2 -> reduce
  EXPECT_NEAR(b.lr(), 0.01, 1e-15);
}

}  // namespace
