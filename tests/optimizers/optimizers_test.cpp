// The optimizers: exact first steps against hand computation, convergence on a least-squares
// problem, Keras defaults, and argument errors.
#include <gtest/gtest.h>
#include <ktf/components.h>
#include <ktf/error.h>

#include <cmath>
#include <sstream>

#include "expect_error.h"
#include "plugins_fixture.h"

namespace {

using ktf::Json;

std::shared_ptr<ktf::Optimizer> make(const std::string& name, Json args,
                                     std::vector<torch::Tensor> params) {
  ktf::BuildContext ctx(ktf::test::plugins());
  ctx.parameters = std::move(params);
  return ktf::test::build<ktf::Optimizer>(Json::object({{name, std::move(args)}}), &ctx);
}

using ktf::test::error_of;

/// One step on loss = 0.5 * |w|^2 (gradient w).
void step_half_square(ktf::Optimizer& opt, const torch::Tensor& w) {
  opt.zero_grad();
  (0.5 * w.pow(2).sum()).backward();
  opt.step();
}

void expect_values(const torch::Tensor& w, std::vector<double> expected, double tol = 1e-12) {
  ASSERT_EQ(w.numel(), static_cast<int64_t>(expected.size()));
  for (size_t i = 0; i < expected.size(); ++i)
    EXPECT_NEAR(w[i].item<double>(), expected[i], tol) << "element " << i;
}

torch::Tensor param(std::vector<double> v) {
  return torch::tensor(v, torch::kDouble).requires_grad_(true);
}

TEST(SGD, MomentumFirstTwoSteps) {
  // g1 = w0: buf = g1, w1 = w0 - 0.1 g1 = 0.9 w0.
  // g2 = w1: buf = 0.9 w0 + 0.9 w0 = 1.8 w0, w2 = 0.9 w0 - 0.18 w0 = 0.72 w0.
  auto w = param({1.0, -2.0});
  auto opt =
      make("ktf.optimizers.SGD", Json::object({{"learning_rate", 0.1}, {"momentum", 0.9}}), {w});
  step_half_square(*opt, w);
  expect_values(w, {0.9, -1.8});
  step_half_square(*opt, w);
  expect_values(w, {0.72, -1.44});
}

TEST(SGD, NesterovFirstTwoSteps) {
  // Keras form: v1 = -lr g1 = -0.1 w0; w1 = w0 + m v1 - lr g1 = 0.81 w0.
  // v2 = m v1 - lr g2 = -0.171 w0; w2 = w1 + m v2 - lr g2 = 0.5751 w0.
  auto w = param({1.0, -2.0});
  auto opt =
      make("tf.keras.optimizers.SGD",
           Json::object({{"learning_rate", 0.1}, {"momentum", 0.9}, {"nesterov", true}}), {w});
  step_half_square(*opt, w);
  expect_values(w, {0.81, -1.62});
  step_half_square(*opt, w);
  expect_values(w, {0.5751, -1.1502});
}

TEST(SGD, WeightDecayIsAddedToTheGradient) {
  auto w = param({2.0});
  auto opt =
      make("torch.optim.SGD", Json::object({{"learning_rate", 0.1}, {"weight_decay", 0.5}}), {w});
  step_half_square(*opt, w);  // g = w + 0.5 w = 3 -> w = 2 - 0.3
  expect_values(w, {1.7});
}

TEST(Adam, FirstStepIsLearningRateTimesSignOfGradient) {
  auto w = param({0.5, 0.5, 0.5});
  auto opt = make("tf.keras.optimizers.Adam", Json::object({{"learning_rate", 0.01}}), {w});
  opt->zero_grad();
  (w * torch::tensor({3.0, -0.5, 0.01}, torch::kDouble)).sum().backward();
  opt->step();
  // m_hat = g, v_hat = g^2: step = lr * g / (|g| + 1e-7).
  auto step = [](double g) { return 0.01 * g / (std::abs(g) + 1e-7); };
  expect_values(w, {0.5 - step(3.0), 0.5 - step(-0.5), 0.5 - step(0.01)}, 1e-12);
  // ... which is lr * sign(g) up to epsilon / |g|.
  expect_values(w, {0.49, 0.51, 0.49}, 1e-6);
  auto& options = static_cast<torch::optim::AdamOptions&>(opt->param_groups()[0].options());
  EXPECT_EQ(options.eps(), 1e-7);  // Keras default, not torch's 1e-8
  EXPECT_EQ(std::get<0>(options.betas()), 0.9);
  EXPECT_EQ(std::get<1>(options.betas()), 0.999);
}

TEST(Adam, WeightDecayIsL2WhileAdamWDecouplesIt) {
  // Zero loss gradient. Adam's L2 makes the gradient 0.5 w: the first step is lr * sign(w).
  auto a = param({2.0, -1.0});
  auto adam = make("ktf.optimizers.Adam",
                   Json::object({{"learning_rate", 0.1}, {"weight_decay", 0.5}}), {a});
  adam->zero_grad();
  (a * 0).sum().backward();
  adam->step();
  expect_values(a, {1.9, -0.9}, 1e-6);
  // AdamW shrinks the weights by lr * weight_decay; the Adam part of a zero gradient is 0.
  auto b = param({2.0, -1.0});
  auto adamw =
      make("torch.optim.AdamW", Json::object({{"learning_rate", 0.1}, {"weight_decay", 0.5}}), {b});
  adamw->zero_grad();
  (b * 0).sum().backward();
  adamw->step();
  expect_values(b, {2.0 * 0.95, -1.0 * 0.95});
  auto keras_adamw = make("ktf.optimizers.AdamW", Json::object(), {param({1.0})});
  auto& defaults =
      static_cast<torch::optim::AdamWOptions&>(keras_adamw->param_groups()[0].options());
  EXPECT_EQ(defaults.weight_decay(), 0.004);  // Keras default, not torch's 0.01
}

/// Parameters of several shapes (one of them channels_last) and a copy of them; with `large`, one
/// more of 60 000 elements (so the fused CPU update splits across threads).
std::vector<torch::Tensor> shapes_params(int64_t seed, torch::Dtype dtype = torch::kDouble,
                                         bool large = false) {
  torch::manual_seed(seed);
  std::vector<torch::Tensor> out{
      torch::randn({4, 3, 3, 3}, dtype), torch::randn({4}, dtype), torch::randn({5, 7}, dtype),
      torch::randn({2, 3, 2, 2}, dtype).contiguous(torch::MemoryFormat::ChannelsLast)};
  if (large) out.push_back(torch::randn({300, 200}, dtype));
  for (auto& t : out) t.requires_grad_(true);
  return out;
}
std::vector<torch::Tensor> copies(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> out;
  for (const auto& p : params) out.push_back(p.detach().clone().requires_grad_(true));
  return out;
}
/// A loss whose gradient differs per element and per step.
torch::Tensor wobbly_loss(const std::vector<torch::Tensor>& params, int step) {
  torch::Tensor loss = torch::zeros({}, params.front().options().requires_grad(false));
  for (size_t i = 0; i < params.size(); ++i)
    loss = loss + (params[i].pow(2) * (0.3 + 0.1 * static_cast<double>(i + step))).sum() +
           params[i].sin().sum();
  return loss;
}

/// Six steps of the flat Adam / AdamW (its fused CPU loop) against libtorch's own, per variant.
void expect_flat_adam_matches_torch(torch::Dtype dtype, bool large, double tolerance) {
  torch::set_num_threads(2);
  for (const auto& [name, args] : std::vector<std::pair<std::string, Json>>{
           {"ktf.optimizers.Adam", Json::object({{"learning_rate", 0.05}, {"fused", true}})},
           {"ktf.optimizers.Adam", Json::object({{"learning_rate", 0.05},
                                                 {"weight_decay", 0.1},
                                                 {"amsgrad", true},
                                                 {"fused", true}})},
           {"ktf.optimizers.AdamW",
            Json::object({{"learning_rate", 0.05}, {"weight_decay", 0.2}, {"fused", true}})}}) {
    SCOPED_TRACE(name + " " + args.dump());
    auto flat_params = shapes_params(3, dtype, large);
    auto ref_params = copies(flat_params);
    auto flat = make(name, args, flat_params);
    ASSERT_TRUE(dynamic_cast<ktf::FlatGradients*>(flat.get()));
    const bool decoupled = name == "ktf.optimizers.AdamW";
    const auto& a = args;
    auto lr = a.at("learning_rate").as_number();
    auto wd = a.find("weight_decay") ? a.at("weight_decay").as_number() : 0.0;
    bool ams = a.find("amsgrad") && a.at("amsgrad").as_bool();
    std::shared_ptr<torch::optim::Optimizer> ref;
    if (decoupled)
      ref = std::make_shared<torch::optim::AdamW>(
          ref_params, torch::optim::AdamWOptions(lr).eps(1e-7).weight_decay(wd).amsgrad(ams));
    else
      ref = std::make_shared<torch::optim::Adam>(
          ref_params, torch::optim::AdamOptions(lr).eps(1e-7).weight_decay(wd).amsgrad(ams));
    for (int step = 0; step < 6; ++step) {
      dynamic_cast<ktf::FlatGradients*>(flat.get())->zero_gradients();
      wobbly_loss(flat_params, step).backward();
      for (auto& p : ref_params) p.mutable_grad() = torch::Tensor();
      wobbly_loss(ref_params, step).backward();
      // Gradients computed on the flat layout's views agree with the separate tensors' to
      // rounding (elementwise kernels may round an element differently, vectorised or in a
      // scalar tail). Both optimizers then get the same gradients, bit for bit: Adam amplifies
      // such a difference where a gradient is near zero, and what is compared is the update.
      for (size_t i = 0; i < ref_params.size(); ++i) {
        EXPECT_TRUE(torch::allclose(flat_params[i].grad(), ref_params[i].grad(), 1e-5, 1e-5))
            << "gradient " << i << " at step " << step;
        ref_params[i].mutable_grad() = flat_params[i].grad().detach().clone();
      }
      flat->step();
      ref->step();
    }
    for (size_t i = 0; i < flat_params.size(); ++i) {
      EXPECT_TRUE(torch::allclose(flat_params[i], ref_params[i], tolerance, tolerance))
          << i << ": largest difference "
          << (flat_params[i] - ref_params[i]).abs().max().item<double>() << " of "
          << flat_params[i].numel();
      EXPECT_EQ(flat_params[i].strides(), ref_params[i].strides()) << i;  // layout kept
      // Every parameter moved: 6 steps of lr 0.05 with gradients that are never all zero.
      EXPECT_GT((flat_params[i] - shapes_params(3, dtype, large)[i]).abs().min().item<double>(),
                0.0)
          << i;
    }
  }
}

TEST(Adam, FlatBuffersGiveTorchsUpdateElementForElement) {
  expect_flat_adam_matches_torch(torch::kDouble, false, 1e-12);
}

TEST(Adam, FusedFloatUpdateMatchesTorchToRounding) {
  // float32, as models train: the same arithmetic in one pass, so equal to a few ulp.
  expect_flat_adam_matches_torch(torch::kFloat, true, 1e-5);
}

TEST(Adam, FlatBuffersSurviveReplacedParametersAndGradientsAndSaveTheirState) {
  auto params = shapes_params(5);
  auto ref_params = copies(params);
  auto opt = make("ktf.optimizers.Adam", Json::object({{"learning_rate", 0.1}}), params);
  auto ref =
      std::make_shared<torch::optim::Adam>(ref_params, torch::optim::AdamOptions(0.1).eps(1e-7));
  auto both = [&](int step) {
    wobbly_loss(params, step).backward();
    opt->step();
    wobbly_loss(ref_params, step).backward();
    ref->step();
  };
  opt->zero_grad();  // libtorch's own zero_grad (to none on 2.x, in place on 1.13)
  ref->zero_grad();
  both(0);
  {
    // As torch::load does: the parameter is re-pointed at new storage with new values.
    torch::NoGradGuard no_grad;
    auto replacement = params[2].detach().clone() + 1.0;
    params[2].set_(replacement);
    ref_params[2].add_(1.0);
  }
  for (auto& p : params) p.mutable_grad() = torch::Tensor();  // set_to_none by someone else
  for (auto& p : ref_params) p.mutable_grad() = torch::Tensor();
  both(1);
  for (size_t i = 0; i < params.size(); ++i)
    EXPECT_TRUE(torch::allclose(params[i], ref_params[i], 1e-12, 1e-12)) << i;

  // Saved state restores the moments: a restored optimizer continues identically.
  std::stringstream saved;
  {
    torch::serialize::OutputArchive archive;
    opt->save(archive);
    archive.save_to(saved);
  }
  auto again = copies(params);
  auto restored = make("ktf.optimizers.Adam", Json::object({{"learning_rate", 0.1}}), again);
  {
    torch::serialize::InputArchive archive;
    archive.load_from(saved);
    restored->load(archive);
  }
  dynamic_cast<ktf::FlatGradients*>(opt.get())->zero_gradients();
  dynamic_cast<ktf::FlatGradients*>(restored.get())->zero_gradients();
  wobbly_loss(params, 2).backward();
  opt->step();
  wobbly_loss(again, 2).backward();
  restored->step();
  for (size_t i = 0; i < params.size(); ++i)
    EXPECT_TRUE(torch::allclose(params[i], again[i], 1e-12, 1e-12)) << i;

  // Destroying the optimizer gives each parameter its own storage again.
  auto before = params[1].detach().clone();
  opt.reset();
  EXPECT_EQ(params[1].storage().nbytes(), static_cast<size_t>(params[1].numel()) * sizeof(double));
  EXPECT_TRUE(torch::equal(params[1], before));
}

TEST(RMSprop, FirstStepPutsEpsilonOutsideTheRoot) {
  auto w = param({2.0, -0.001});
  auto opt = make("tf.keras.optimizers.RMSprop", Json::object({{"learning_rate", 0.01}}), {w});
  step_half_square(*opt, w);
  // ms = (1 - rho) g^2 = 0.1 g^2; w -= lr g / (sqrt(ms) + 1e-7).
  auto expected = [](double g) { return g - 0.01 * g / (std::sqrt(0.1 * g * g) + 1e-7); };
  expect_values(w, {expected(2.0), expected(-0.001)});
}

TEST(Adagrad, FirstStepWithKerasDefaults) {
  auto w = param({2.0, -0.5});
  auto opt = make("ktf.optimizers.Adagrad", Json::object({{"learning_rate", 0.1}}), {w});
  step_half_square(*opt, w);
  // accumulator = 0.1 + g^2; w -= lr g / (sqrt(accumulator) + 1e-7).
  auto expected = [](double g) { return g - 0.1 * g / (std::sqrt(0.1 + g * g) + 1e-7); };
  expect_values(w, {expected(2.0), expected(-0.5)});
}

/// Least squares: min_w mean((A w - b)^2) with b = A w*, from w = 0.
struct LeastSquares {
  torch::Tensor a, b, w_star;
  LeastSquares() {
    auto gen = torch::make_generator<torch::CPUGeneratorImpl>(7);
    a = torch::randn({32, 4}, gen, torch::kDouble);
    w_star = torch::tensor({1.0, -2.0, 0.5, 3.0}, torch::kDouble);
    b = torch::mv(a, w_star);
  }
  torch::Tensor loss(const torch::Tensor& w) const { return (torch::mv(a, w) - b).pow(2).mean(); }
};

TEST(Optimizers, EachChangesParametersAndSolvesLeastSquares) {
  struct Case {
    const char* name;
    Json args;
    int steps;
  };
  std::vector<Case> cases{
      {"ktf.optimizers.SGD", Json::object({{"learning_rate", 0.05}, {"momentum", 0.9}}), 300},
      {"ktf.optimizers.SGD", Json::object({{"learning_rate", 0.1}}), 300},
      {"ktf.optimizers.Adam", Json::object({{"learning_rate", 0.05}}), 600},
      {"ktf.optimizers.AdamW", Json::object({{"learning_rate", 0.05}, {"weight_decay", 0.0}}), 600},
      {"ktf.optimizers.RMSprop", Json::object({{"learning_rate", 0.01}, {"centered", true}}), 800},
      {"ktf.optimizers.RMSprop", Json::object({{"learning_rate", 0.005}, {"momentum", 0.5}}), 800},
      {"ktf.optimizers.Adagrad", Json::object({{"learning_rate", 0.5}}), 600},
  };
  LeastSquares problem;
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(c.name) + " " + c.args.dump());
    auto w = torch::zeros({4}, torch::kDouble).requires_grad_(true);
    auto opt = make(c.name, c.args, {w});
    double initial = problem.loss(w).item<double>();
    for (int i = 0; i < c.steps; ++i) {
      opt->zero_grad();
      problem.loss(w).backward();
      opt->step();
      if (i == 0) {
        EXPECT_FALSE(torch::equal(w, torch::zeros({4}, torch::kDouble)));
      }
    }
    double final_loss = problem.loss(w).item<double>();
    EXPECT_LT(final_loss, 1e-4 * initial) << "initial " << initial << " final " << final_loss;
    EXPECT_TRUE(torch::allclose(w.detach(), problem.w_star, 1e-2, 1e-2)) << w;
  }
}

TEST(Optimizers, NoTrainableParametersIsAnError) {
  for (const char* name : {"ktf.optimizers.SGD", "ktf.optimizers.Adam", "ktf.optimizers.AdamW",
                           "ktf.optimizers.RMSprop", "ktf.optimizers.Adagrad"}) {
    EXPECT_CONTAINS(error_of([&] { make(name, Json::object(), {}); }), "no trainable parameters");
  }
}

TEST(Optimizers, BadArgumentsNameTheArgumentAndValue) {
  auto w = param({1.0});
  EXPECT_CONTAINS(error_of([&] {
                    make("ktf.optimizers.SGD", Json::object({{"learning_rate", -1.0}}), {w});
                  }),
                  "ktf.optimizers.SGD \u203a learning_rate: must be >= 0, got -1");
  EXPECT_CONTAINS(error_of([&] {
                    make("ktf.optimizers.SGD", Json::object({{"nesterov", true}}), {w});
                  }),
                  "nesterov needs momentum > 0 and dampening 0, got momentum 0");
  EXPECT_CONTAINS(error_of([&] {
                    make("ktf.optimizers.Adam", Json::object({{"beta_1", 1.0}}), {w});
                  }),
                  "beta_1: must be in [0, 1), got 1");
  EXPECT_CONTAINS(error_of([&] {
                    make("ktf.optimizers.AdamW", Json::object({{"epsilon", -1e-8}}), {w});
                  }),
                  "epsilon: must be >= 0, got -1e-08");
  EXPECT_CONTAINS(error_of([&] {
                    make("ktf.optimizers.RMSprop", Json::object({{"rho", 1.5}}), {w});
                  }),
                  "rho: must be in [0, 1), got 1.5");
  EXPECT_CONTAINS(
      error_of([&] {
        make("ktf.optimizers.Adagrad", Json::object({{"initial_accumulator_value", -1.0}}), {w});
      }),
      "initial_accumulator_value: must be >= 0, got -1");
  // One name per argument: torch's "lr" is not an alias of learning_rate.
  EXPECT_CONTAINS(error_of([&] {
                    make("torch.optim.Adam", Json::object({{"lr", 0.1}}), {w});
                  }),
                  "lr");
}

TEST(Optimizers, AliasesBuildLibtorchOptimizers) {
  auto w = param({1.0});
  EXPECT_TRUE(
      std::dynamic_pointer_cast<torch::optim::SGD>(make("torch.optim.SGD", Json::object(), {w})));
  EXPECT_TRUE(std::dynamic_pointer_cast<torch::optim::Adam>(
      make("tf.keras.optimizers.Adam", Json::object(), {w})));
  EXPECT_TRUE(std::dynamic_pointer_cast<torch::optim::AdamW>(
      make("tf.keras.optimizers.AdamW", Json::object(), {w})));
  EXPECT_TRUE(std::dynamic_pointer_cast<torch::optim::RMSprop>(
      make("torch.optim.RMSprop", Json::object(), {w})));
  EXPECT_TRUE(std::dynamic_pointer_cast<torch::optim::Adagrad>(
      make("tf.keras.optimizers.Adagrad", Json::object(), {w})));
  EXPECT_EQ(make("ktf.optimizers.SGD", Json::object(), {w})->param_groups()[0].options().get_lr(),
            0.01);
}

}  // namespace
