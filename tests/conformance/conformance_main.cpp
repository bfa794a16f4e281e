// ktf-conformance: loads one plugin .so and checks every component it registers.
//
//   ktf-conformance path/to/libmy_plugin.so [--with DEPENDENCY]... [--device cuda] [gtest flags]
//
// --with loads another plugin file, or every plugin of a directory (an installed ktf's
// lib/ktf/plugins), whose components the tested ones use (a head defaulting to ktf.networks.MLP,
// a train loop's callbacks): they are loaded first and are not themselves tested.
//
// Wired into ctest by ktf_add_plugin_tests(<target>). Each component gets its own test
// (<kind>/<name>): the spec is complete, its example validates and builds, bad parameters raise
// ktf::Error, and the component does its job on synthetic data (networks forward/backward and
// state round trip, losses a scalar with gradients, optimizers change parameters, datasets yield
// batches of the declared shape, metrics reset/update/compute, callbacks and train loops run two
// steps). --device runs networks, losses, metrics, optimizers, train steps and loops on that
// device (scripts/gpu/device_check.sh passes cuda).
#include <gtest/gtest.h>
#include <ktf/checkpoint.h>
#include <ktf/config.h>
#include <ktf/network.h>
#include <ktf/plugin.h>
#include <ktf/plugin_loader.h>
#include <ktf/process.h>
#include <ktf/train.h>

#include <filesystem>
#include <iostream>
#include <set>

namespace {

std::string g_plugin_path;
torch::Device g_device = torch::kCPU;  // --device
ktf::Registry g_registry;    // this plugin's components and those of its --with dependencies
ktf::LoadedPlugin g_plugin;  // the plugin under test (a copy: loading dependencies moves the list)
const ktf::LoadedPlugin* g_loaded = nullptr;

std::shared_ptr<void> build_example(const ktf::Spec& spec, ktf::BuildContext& ctx) {
  ktf::Json component = ktf::Json::object({{spec.name, spec.example}});
  ktf::Json resolved = ktf::resolve_component(component, spec.kind, g_registry, {});
  auto [name, args] = ktf::split_component(resolved);
  return ctx.build_any(spec.kind, name, args, {name});
}

ktf::BuildContext make_context(const ktf::Spec& spec) {
  ktf::BuildContext ctx(g_registry);
  ctx.device = g_device;
  ctx.input_shape =
      spec.example_input.empty() ? std::vector<int64_t>{1, 28, 28} : spec.example_input;
  ctx.num_classes = 10;
  ctx.run_dir =
      std::filesystem::temp_directory_path() / ("ktf-conformance-" + std::to_string(::getpid()));
  std::filesystem::create_directories(ctx.run_dir);
  return ctx;
}

std::vector<int64_t> with_batch(int64_t n, const std::vector<int64_t>& shape) {
  std::vector<int64_t> out{n};
  out.insert(out.end(), shape.begin(), shape.end());
  return out;
}

/// Output/target pair for a loss or metric: class indices when example_target is {}, otherwise
/// regression targets of that per-example shape.
std::pair<torch::Tensor, torch::Tensor> output_and_target(const ktf::Spec& spec, int64_t n) {
  if (spec.example_target.empty()) {
    return {torch::randn({n, 10}).to(g_device), (torch::arange(n) % 3).to(g_device)};
  }
  auto shape = with_batch(n, spec.example_target);
  return {torch::randn(shape).to(g_device), torch::rand(shape).to(g_device)};
}

// A tiny network and a synthetic stream used to drive callbacks, loops and steps.
struct TinyNet : ktf::Network {
  TinyNet() : fc(register_module("fc", torch::nn::Linear(784, 10))) {}
  torch::Tensor forward(torch::Tensor x) override { return fc(x.flatten(1)); }
  torch::nn::Linear fc;
};
struct TinyCE : ktf::Loss {
  torch::Tensor compute(const torch::Tensor& out, const torch::Tensor& target) override {
    return torch::nn::functional::cross_entropy(out, target);
  }
};
class TwoBatches : public ktf::BatchStream {
 public:
  void start_epoch(int64_t) override { i_ = 0; }
  std::optional<ktf::Batch> next() override {
    if (i_ >= 2) return std::nullopt;
    ++i_;
    return ktf::Batch{torch::randn({4, 1, 28, 28}), torch::randint(0, 10, {4})};
  }
  int64_t num_batches() const override { return 2; }
  int64_t num_examples() const override { return 8; }
  void save_state(ktf::State& s) override { s.set("i", i_); }
  void load_state(const ktf::State& s) override { i_ = s.at("i").as_int(); }

 private:
  int64_t i_ = 0;
};
class TinyData : public ktf::Dataset {
 public:
  std::shared_ptr<ktf::BatchStream> train() override { return std::make_shared<TwoBatches>(); }
  std::shared_ptr<ktf::BatchStream> valid() override { return std::make_shared<TwoBatches>(); }
  std::vector<int64_t> input_shape() const override { return {1, 28, 28}; }
  int64_t num_classes() const override { return 10; }
};

ktf::TrainContext make_train_context(ktf::BuildContext& ctx) {
  ktf::TrainContext tc;
  tc.quiet = true;
  tc.run_dir = ctx.run_dir;
  tc.device = g_device;
  tc.model = std::make_shared<TinyNet>();
  tc.model->to(g_device);
  tc.dataset = std::make_shared<TinyData>();
  tc.train_data = tc.dataset->train();
  tc.valid_data = tc.dataset->valid();
  tc.loss = std::make_shared<TinyCE>();
  tc.optimizer =
      std::make_shared<torch::optim::SGD>(tc.model->parameters(), torch::optim::SGDOptions(0.01));
  tc.builder = &ctx;
  return tc;
}

/// Saves `c`'s checkpoint state, reads it back through a checkpoint archive, loads it into
/// `fresh` (a new instance of the same config) and saves that: a state that round-trips gives the
/// same state again.
void expect_state_round_trips(ktf::Stateful& c, ktf::Stateful& fresh, const std::string& what) {
  ktf::State saved;
  c.save_state(saved);
  fresh.load_state(saved.round_trip());
  ktf::State again;
  fresh.save_state(again);
  EXPECT_TRUE(again == saved) << what
                              << ": a fresh instance loaded with the saved state saves a "
                                 "different state (save_state/load_state do not round-trip)";
}

/// A wrong-typed value for a parameter, or null when every JSON value is acceptable.
std::optional<ktf::Json> wrong_value(const ktf::Param& p) {
  switch (p.type) {
    case ktf::ParamType::Bool:
      return ktf::Json("not-a-bool");
    case ktf::ParamType::Int:
    case ktf::ParamType::Float:
    case ktf::ParamType::Size2:
      return ktf::Json("not-a-number");
    case ktf::ParamType::String:
    case ktf::ParamType::Object:
      return ktf::Json(12345);
    case ktf::ParamType::IntList:
    case ktf::ParamType::FloatList:
    case ktf::ParamType::StringList:
      return ktf::Json(ktf::Json::object({{"not", "a list"}}));
    case ktf::ParamType::Component:
      return ktf::Json(42);
    case ktf::ParamType::ComponentList:
      return ktf::Json("not-a-list");
    case ktf::ParamType::Union:
      // A value of a JSON type none of the alternatives takes.
      for (const ktf::Json& v : {ktf::Json(true), ktf::Json("x"), ktf::Json(1.5),
                                 ktf::Json::array(), ktf::Json::object()}) {
        bool taken = false;
        for (const auto& a : p.alternatives) taken |= ktf::json_matches(a.type, v);
        if (!taken) return v;
      }
      return std::nullopt;
    case ktf::ParamType::Any:
      return std::nullopt;
  }
  return std::nullopt;
}

/// Values just outside each declared bound or choice of `p` (its alternatives' too), each with
/// what it tests.
std::vector<std::pair<ktf::Json, std::string>> out_of_bounds(const ktf::Param& p) {
  std::vector<std::pair<ktf::Json, std::string>> out;
  std::vector<const ktf::Param*> shapes{&p};
  for (const auto& a : p.alternatives) shapes.push_back(&a);
  for (const ktf::Param* s : shapes) {
    const bool integral = s->type == ktf::ParamType::Int || s->type == ktf::ParamType::IntList ||
                          s->type == ktf::ParamType::Size2;
    const bool list = s->type == ktf::ParamType::IntList || s->type == ktf::ParamType::FloatList;
    auto wrap = [&](double v) {
      ktf::Json x = integral ? ktf::Json(static_cast<int64_t>(v)) : ktf::Json(v);
      return list ? ktf::Json::array({x}) : x;
    };
    const double step = integral ? 1.0 : 0.5;
    if (s->minimum)
      out.emplace_back(wrap(s->exclusive_minimum ? *s->minimum : *s->minimum - step),
                       "just below its declared minimum");
    if (s->maximum)
      out.emplace_back(wrap(s->exclusive_maximum ? *s->maximum : *s->maximum + step),
                       "just above its declared maximum");
    if (!s->choices.empty() && s->type == ktf::ParamType::String)
      out.emplace_back(ktf::Json("definitely-not-a-choice"), "outside its declared choices");
  }
  return out;
}

/// A convex quadratic sum((w - t)^2) in w, starting at w = 0.
struct Quadratic {
  torch::Tensor w = torch::zeros({4}, torch::device(g_device).requires_grad(true));
  torch::Tensor t = torch::tensor({1.0f, -2.0f, 0.5f, 3.0f}).to(g_device);
  torch::Tensor value() { return (w - t).pow(2).sum(); }
  double step(ktf::Optimizer& opt) {
    opt.zero_grad();
    value().backward();
    opt.step();
    return value().item<double>();
  }
};

/// The libtorch optimizer a component claims to be (by a torch.optim.* alias), built from the
/// component's resolved arguments, or nullptr when it names none.
std::shared_ptr<ktf::Optimizer> torch_reference(const ktf::Spec& spec, const ktf::Json& args,
                                                std::vector<torch::Tensor> params) {
  auto num = [&](const char* key, double fallback) {
    const ktf::Json* v = args.find(key);
    return v && v->is_number() ? v->as_number() : fallback;
  };
  auto flag = [&](const char* key) {
    const ktf::Json* v = args.find(key);
    return v && v->is_bool() && v->as_bool();
  };
  const double lr = num("learning_rate", 0.01);
  // Adam and AdamW take the same arguments; torch's default weight decay differs.
  auto adam_options = [&](auto options, double default_decay) {
    return options.betas({num("beta_1", 0.9), num("beta_2", 0.999)})
        .eps(num("epsilon", 1e-8))
        .weight_decay(num("weight_decay", default_decay))
        .amsgrad(flag("amsgrad"));
  };
  for (const auto& alias : spec.aliases) {
    namespace o = torch::optim;
    if (alias == "torch.optim.SGD")
      return std::make_shared<o::SGD>(params, o::SGDOptions(lr)
                                                  .momentum(num("momentum", 0))
                                                  .dampening(num("dampening", 0))
                                                  .weight_decay(num("weight_decay", 0))
                                                  .nesterov(flag("nesterov")));
    if (alias == "torch.optim.Adam")
      return std::make_shared<o::Adam>(params, adam_options(o::AdamOptions(lr), 0.0));
    if (alias == "torch.optim.AdamW")
      return std::make_shared<o::AdamW>(params, adam_options(o::AdamWOptions(lr), 0.01));
    if (alias == "torch.optim.RMSprop")
      return std::make_shared<o::RMSprop>(params, o::RMSpropOptions(lr)
                                                      .alpha(num("rho", 0.99))
                                                      .eps(num("epsilon", 1e-8))
                                                      .momentum(num("momentum", 0))
                                                      .centered(flag("centered")));
    if (alias == "torch.optim.Adagrad")
      return std::make_shared<o::Adagrad>(
          params, o::AdagradOptions(lr)
                      .initial_accumulator_value(num("initial_accumulator_value", 0))
                      .eps(num("epsilon", 1e-10)));
  }
  return nullptr;
}

void check_optimizer(const ktf::Spec& spec, ktf::BuildContext& ctx) {
  // Steps on a convex quadratic lower it: an optimizer that ascends, or does nothing, fails.
  Quadratic q;
  ctx.parameters = {q.w};
  auto opt = std::static_pointer_cast<ktf::Optimizer>(build_example(spec, ctx));
  const double start = q.value().item<double>();
  double value = start;
  for (int i = 0; i < 10; ++i) value = q.step(*opt);
  EXPECT_LT(value, start) << "10 steps on a convex quadratic did not lower it (from " << start
                          << " to " << value << "): does the optimizer descend the gradient?";
  // The step scales with the learning rate: 0 leaves the parameters alone, twice the rate moves
  // them further on the first step.
  auto first_step = [&](double scale) {
    Quadratic fresh;
    ktf::BuildContext c = ctx;
    c.parameters = {fresh.w};
    auto o = std::static_pointer_cast<ktf::Optimizer>(build_example(spec, c));
    for (auto& group : o->param_groups()) group.options().set_lr(group.options().get_lr() * scale);
    fresh.step(*o);
    return fresh.w.detach().norm().item<double>();
  };
  EXPECT_EQ(first_step(0.0), 0.0) << "with learning rate 0 a step changed the parameters";
  EXPECT_GT(first_step(2.0), first_step(1.0) * 1.2)
      << "doubling the learning rate did not make the first step larger";
  // An optimizer that claims a libtorch name (a torch.optim.* alias) takes the same first steps.
  ktf::Json resolved = ktf::resolve_component(ktf::Json::object({{spec.name, spec.example}}),
                                              spec.kind, g_registry, {});
  Quadratic ours, theirs;
  ktf::BuildContext c = ctx;
  c.parameters = {ours.w};
  auto mine = std::static_pointer_cast<ktf::Optimizer>(build_example(spec, c));
  auto reference = torch_reference(spec, resolved.at(spec.name), {theirs.w});
  if (reference) {
    for (int i = 0; i < 3; ++i) {
      ours.step(*mine);
      theirs.step(*reference);
      EXPECT_TRUE(torch::allclose(ours.w, theirs.w, 1e-5, 1e-7))
          << "step " << i + 1 << " differs from the libtorch optimizer its alias names: " << ours.w
          << " against " << theirs.w;
    }
  }
}

void check_loss(const ktf::Spec& spec, ktf::BuildContext& ctx) {
  auto loss = std::static_pointer_cast<ktf::Loss>(build_example(spec, ctx));
  auto [out, target] = output_and_target(spec, 6);
  out.requires_grad_(true);
  auto value = loss->compute(out, target);
  ASSERT_EQ(value.dim(), 0) << "a loss must be a scalar";
  EXPECT_TRUE(std::isfinite(value.item<double>()));
  value.backward();
  ASSERT_TRUE(out.grad().defined()) << "the loss has no gradient with respect to the output";
  // Gradients agree with central finite differences, in double precision.
  auto out64 = out.detach().to(torch::kDouble).requires_grad_(true);
  torch::Tensor grad;
  try {
    loss->compute(out64, target).backward();
    grad = out64.grad();
  } catch (const std::exception&) {
    grad = torch::Tensor();  // a loss that needs float inputs: checked in float below
  }
  const bool dbl = grad.defined();
  auto base = dbl ? out64.detach() : out.detach();
  if (!dbl) grad = out.grad();
  const double eps = dbl ? 1e-6 : 1e-2, tol = dbl ? 1e-4 : 5e-2;
  auto flat = base.flatten();
  for (int64_t i = 0; i < std::min<int64_t>(flat.numel(), 8); ++i) {
    const int64_t k = (i * 7) % flat.numel();
    auto plus = base.clone(), minus = base.clone();
    plus.view(-1)[k] += eps;
    minus.view(-1)[k] -= eps;
    torch::NoGradGuard no_grad;
    const double numeric =
        (loss->compute(plus, target).item<double>() - loss->compute(minus, target).item<double>()) /
        (2 * eps);
    const double analytic = grad.flatten()[k].item<double>();
    EXPECT_NEAR(analytic, numeric, tol * (1 + std::fabs(numeric)))
        << "gradient element " << k << " disagrees with finite differences";
  }
  // A perfect prediction costs less than a poor one.
  torch::NoGradGuard no_grad;
  torch::Tensor perfect, poor;
  if (spec.example_target.empty()) {
    perfect = 20 * torch::one_hot(target.to(torch::kLong), out.size(1)).to(torch::kFloat);
    poor = out.detach();  // random logits (or embeddings)
  } else {
    perfect = target.clone();
    poor = target + 3 * torch::randn_like(target);
  }
  const double good = loss->compute(perfect, target).item<double>();
  const double bad = loss->compute(poor, target).item<double>();
  EXPECT_LT(good, bad) << "the loss of a perfect prediction (" << good
                       << ") is not below that of a poor one (" << bad << ")";
}

void check_schedule(const ktf::Spec& spec, ktf::BuildContext& ctx) {
  // Over 20 epochs of 10 steps with a validation loss that never improves, a schedule's rate
  // changes somewhere (a schedule that never changes the rate is no schedule).
  auto lin = torch::nn::Linear(4, 2);
  ctx.optimizer =
      std::make_shared<torch::optim::SGD>(lin->parameters(), torch::optim::SGDOptions(0.1));
  ctx.steps_per_epoch = 10;
  auto schedule = std::static_pointer_cast<ktf::LrSchedule>(build_example(spec, ctx));
  std::set<double> rates{ctx.optimizer->param_groups()[0].options().get_lr()};
  for (int64_t epoch = 0, step = 0; epoch < 20; ++epoch) {
    for (int b = 0; b < 10; ++b) {
      schedule->on_batch_end(++step);
      rates.insert(ctx.optimizer->param_groups()[0].options().get_lr());
    }
    schedule->on_epoch_end(epoch, {{"loss", 1.0}, {"val_loss", 1.0}});
    rates.insert(ctx.optimizer->param_groups()[0].options().get_lr());
  }
  for (double lr : rates) EXPECT_TRUE(std::isfinite(lr) && lr >= 0) << "lr " << lr;
  EXPECT_GE(rates.size(), 2u) << "the learning rate never changed in 200 steps and 20 epochs";

  // Resumed from a checkpoint (its state, and the optimizer's learning rates as the optimizer's
  // own checkpoint restores them), a schedule goes on exactly as the saved one does.
  auto make = [&] {
    auto model = torch::nn::Linear(4, 2);
    ctx.optimizer =
        std::make_shared<torch::optim::SGD>(model->parameters(), torch::optim::SGDOptions(0.1));
    return std::make_pair(ctx.optimizer,
                          std::static_pointer_cast<ktf::LrSchedule>(build_example(spec, ctx)));
  };
  auto [opt_a, a] = make();
  int64_t step = 0;
  auto run = [&](ktf::Optimizer& opt, ktf::LrSchedule& sch, int64_t from, int64_t epochs) {
    std::vector<double> lrs;
    for (int64_t epoch = from; epoch < from + epochs; ++epoch) {
      for (int b = 0; b < 10; ++b)
        sch.on_batch_end(++step), lrs.push_back(opt.param_groups()[0].options().get_lr());
      sch.on_epoch_end(epoch, {{"loss", 1.0}, {"val_loss", 1.0}});
      lrs.push_back(opt.param_groups()[0].options().get_lr());
    }
    return lrs;
  };
  run(*opt_a, *a, 0, 3);
  ktf::State saved;
  a->save_state(saved);
  auto [opt_b, b] = make();
  opt_b->param_groups()[0].options().set_lr(opt_a->param_groups()[0].options().get_lr());
  b->load_state(saved.round_trip());
  const int64_t at = step;
  auto want = run(*opt_a, *a, 3, 5);
  step = at;
  auto got = run(*opt_b, *b, 3, 5);
  EXPECT_EQ(want, got) << "a schedule loaded with a saved state sets different learning rates "
                          "(its state is not saved: ktf::Stateful)";
}

void check_metric(const ktf::Spec& spec, ktf::BuildContext& ctx) {
  auto metric = std::static_pointer_cast<ktf::Metric>(build_example(spec, ctx));
  EXPECT_FALSE(metric->name().empty());
  auto [out, target] = output_and_target(spec, 32);
  torch::Tensor perfect =
      spec.example_target.empty()
          ? 20 * torch::one_hot(target.to(torch::kLong), out.size(1)).to(torch::kFloat)
          : target.clone();
  metric->reset();
  metric->update(perfect, target);
  const double best = metric->compute();
  metric->reset();
  metric->update(out, target);
  const double random = metric->compute();
  EXPECT_TRUE(std::isfinite(best) && std::isfinite(random));
  EXPECT_NE(best, random) << "a perfect and a random prediction give the same value " << best;
  // A half-right prediction scores between the two: the perfect one is the best value, in
  // whichever direction the metric improves.
  torch::Tensor half = perfect.clone();
  if (spec.example_target.empty()) {
    auto wrong = (target.to(torch::kLong) + 1) % out.size(1);
    half.slice(0, 0, 16) =
        20 * torch::one_hot(wrong.slice(0, 0, 16), out.size(1)).to(torch::kFloat);
  } else {
    half = target + 0.1 * (out - target);  // a tenth of the random prediction's error
  }
  metric->reset();
  metric->update(half, target);
  const double middle = metric->compute();
  EXPECT_TRUE((best >= middle && middle >= random) || (best <= middle && middle <= random))
      << "perfect " << best << ", half right " << middle << ", random " << random
      << ": the perfect prediction is not the best value";
  // reset() forgets: after it, the value is that of a fresh metric on the same batches.
  metric->reset();
  metric->update(out, target);
  auto fresh = std::static_pointer_cast<ktf::Metric>(build_example(spec, ctx));
  fresh->reset();
  fresh->update(out, target);
  EXPECT_DOUBLE_EQ(metric->compute(), fresh->compute()) << "reset() did not clear the state";
  EXPECT_DOUBLE_EQ(metric->compute(), random);

  // A checkpoint mid-epoch: a fresh metric loaded with the state of one that has seen half the
  // batches computes the same value, and the same after the other half.
  metric->reset();
  metric->update(out.slice(0, 0, 16), target.slice(0, 0, 16));
  ktf::State saved;
  metric->save_state(saved);
  auto loaded = std::static_pointer_cast<ktf::Metric>(build_example(spec, ctx));
  loaded->reset();
  loaded->load_state(saved.round_trip());
  EXPECT_DOUBLE_EQ(loaded->compute(), metric->compute())
      << "a metric loaded with a saved state computes a different value: its sums are not "
         "saved (ktf::Stateful)";
  metric->update(out.slice(0, 16), target.slice(0, 16));
  loaded->update(out.slice(0, 16), target.slice(0, 16));
  EXPECT_DOUBLE_EQ(loaded->compute(), metric->compute())
      << "a metric loaded with a saved state goes on differently";
}

/// A batch the tiny network can learn: the target is the argmax of a fixed linear map.
ktf::Batch learnable_batch() {
  auto gen = at::detail::createCPUGenerator(3);
  auto x = torch::randn({16, 1, 28, 28}, gen);
  auto w = torch::randn({784, 10}, gen);
  return {x.to(g_device), x.flatten(1).mm(w).argmax(1).to(g_device)};
}

double batch_loss(ktf::TrainContext& tc, const ktf::Batch& b) {
  torch::NoGradGuard no_grad;
  return tc.loss->compute(tc.model->forward(b.input), b.target).item<double>();
}

void check_train_step(const ktf::Spec& spec, ktf::BuildContext& ctx) {
  auto step = std::static_pointer_cast<ktf::TrainStep>(build_example(spec, ctx));
  auto tc = make_train_context(ctx);
  tc.train_data->start_epoch(0);
  for (int i = 0; i < 2; ++i) {
    auto batch = tc.train_data->next();
    batch->input = ktf::to_device(batch->input, g_device);
    batch->target = ktf::to_device(batch->target, g_device);
    auto result = step->step(tc, *batch);
    ASSERT_TRUE(result.loss.defined() && result.loss.numel() == 1)
        << "a train step must return a scalar loss";
    EXPECT_TRUE(std::isfinite(result.loss.item<double>()));
    for (const auto& [name, value] : result.values)
      EXPECT_TRUE(value.defined() && value.numel() == 1) << "value '" << name << "'";
  }
  // Steps on one learnable batch lower its loss: a step that does not apply its gradients fails.
  ktf::Batch b = learnable_batch();
  const double before = batch_loss(tc, b);
  for (int i = 0; i < 30; ++i) {
    tc.batch = i;
    ktf::Batch copy{b.input.clone(), b.target.clone()};
    step->step(tc, copy);
  }
  const double after = batch_loss(tc, b);
  EXPECT_LT(after, 0.9 * before) << "30 steps on one learnable batch took its loss from " << before
                                 << " to " << after << " only";
  auto fresh = std::static_pointer_cast<ktf::TrainStep>(build_example(spec, ctx));
  expect_state_round_trips(*step, *fresh, "train step");
}

void check_callback(const ktf::Spec& spec, ktf::BuildContext& ctx) {
  // The callback survives a two-epoch run with validation, driven through the SDK's protocol:
  // every hook, on_after_backward from backward_and_step, batch logs when it asks for them.
  auto cb = std::static_pointer_cast<ktf::Callback>(build_example(spec, ctx));
  auto tc = make_train_context(ctx);
  tc.callbacks = {cb};
  tc.num_epochs = 2;
  tc.steps_per_epoch = 2;
  cb->on_train_begin(tc);
  int64_t epochs = 0;
  for (int64_t epoch = 0; epoch < 2 && !tc.stop_training; ++epoch, ++epochs) {
    tc.epoch = epoch;
    cb->on_epoch_begin(tc, epoch);
    tc.train_data->start_epoch(epoch);
    for (int64_t b = 0; auto batch = tc.train_data->next(); ++b) {
      tc.batch = b;
      cb->on_batch_begin(tc, b);
      auto loss = tc.loss->compute(tc.forward(batch->input), batch->target);
      tc.backward_and_step(loss);
      ktf::Logs logs;
      if (cb->wants_batch_logs(tc, b)) logs = {{"loss", loss.item<double>()}, {"accuracy", 0.5}};
      cb->on_batch_end(tc, b, logs);
    }
    cb->on_epoch_end(tc, epoch,
                     {{"loss", 0.9 - 0.1 * static_cast<double>(epoch)},
                      {"accuracy", 0.5},
                      {"val_loss", 1.0},
                      {"val_accuracy", 0.5},
                      {"lr", 0.01}});
  }
  cb->on_train_end(tc, {{"loss", 0.8}});
  EXPECT_EQ(tc.global_step, 2 * epochs) << "the callback disturbed the optimizer steps";
  // Resumed: on_train_begin (ctx.resuming), then load_state, as the engine does.
  auto fresh = std::static_pointer_cast<ktf::Callback>(build_example(spec, ctx));
  tc.resuming = true;
  fresh->on_train_begin(tc);
  tc.resuming = false;
  expect_state_round_trips(*cb, *fresh, "callback");
}

void check_dataset(const ktf::Spec& spec, ktf::BuildContext& ctx) {
  // An error building the example is a failure, whatever it says.
  auto data = std::static_pointer_cast<ktf::Dataset>(build_example(spec, ctx));
  auto shape = data->input_shape();
  auto stream = data->train();
  ASSERT_TRUE(stream);
  stream->start_epoch(0);
  auto batch = stream->next();
  ASSERT_TRUE(batch.has_value()) << "the train stream is empty";
  ASSERT_EQ(batch->input.dim(), static_cast<int64_t>(shape.size()) + 1);
  for (size_t d = 0; d < shape.size(); ++d) EXPECT_EQ(batch->input.size(d + 1), shape[d]);
  EXPECT_EQ(batch->target.size(0), batch->input.size(0));
  // The same seed gives the same order: a second build's first batch is the same.
  auto again = std::static_pointer_cast<ktf::Dataset>(build_example(spec, ctx))->train();
  again->start_epoch(0);
  auto other = again->next();
  ASSERT_TRUE(other.has_value());
  EXPECT_TRUE(torch::equal(batch->input, other->input) &&
              torch::equal(batch->target, other->target))
      << "two builds with the same seed gave different first batches";
  // A stream loaded with a saved position yields the batch the saved one yields next.
  ktf::State position;
  stream->save_state(position);
  auto resumed = std::static_pointer_cast<ktf::Dataset>(build_example(spec, ctx))->train();
  resumed->load_state(position.round_trip());
  auto want = stream->next();
  auto got = resumed->next();
  ASSERT_EQ(want.has_value(), got.has_value()) << "a stream loaded with a saved state ended early";
  if (want) {
    EXPECT_TRUE(torch::equal(want->input, got->input) && torch::equal(want->target, got->target))
        << "a stream loaded with a saved position yields a different batch";
  }
}

/// A loop stopped at its `stop_at`-th safe point and resumed from what the engine would checkpoint
/// there (model, optimizer, RNG, the loop's and its streams' state) ends with the uninterrupted
/// run's weights, bit for bit.
void check_loop_resume(const ktf::Spec& spec, ktf::BuildContext& ctx, int stop_at) {
  SCOPED_TRACE("stopped at safe point " + std::to_string(stop_at));
  struct Stop {};
  auto fresh = [&] {
    torch::manual_seed(7);
    auto tc = make_train_context(ctx);
    auto loop = std::static_pointer_cast<ktf::TrainLoop>(build_example(spec, ctx));
    loop->prepare(tc);
    return std::make_pair(std::move(tc), loop);
  };
  auto [tc_a, a] = fresh();
  a->run(tc_a);
  auto [tc_b, b] = fresh();
  int points = 0;
  ktf::State saved;
  torch::Tensor optimizer_bytes;
  tc_b.safe_point_hook = [&](ktf::SafePoint) {
    if (++points < stop_at) return;
    ktf::save_module_state(saved.child("model"), *tc_b.model);
    optimizer_bytes = ktf::archive_bytes([&](auto& ar) { tc_b.optimizer->save(ar); });
    b->save_state(saved.child("loop"));
    tc_b.train_data->save_state(saved.child("train"));
    ktf::save_rng_state(saved.child("rng"));
    saved.set("epoch", tc_b.epoch);
    saved.set("step", tc_b.global_step);
    throw Stop{};
  };
  EXPECT_THROW(b->run(tc_b), Stop)
      << "the loop never reached " << stop_at << " safe points (ctx.safe_point)";
  if (points < stop_at) return;
  auto [tc_c, c] = fresh();
  const ktf::State state = saved.round_trip();
  bool restored = false;
  tc_c.resuming = true;
  tc_c.restore_hook = [&] {
    restored = true;
    ktf::load_module_state(state.child("model"), *tc_c.model);
    ktf::load_archive_bytes(optimizer_bytes, [&](auto& ar) { tc_c.optimizer->load(ar); });
    c->load_state(state.child("loop"));
    tc_c.train_data->load_state(state.child("train"));
    tc_c.epoch = state.at("epoch").as_int();
    tc_c.global_step = state.at("step").as_int();
    ktf::load_rng_state(state.child("rng"));
  };
  c->run(tc_c);
  EXPECT_TRUE(restored) << "the loop never called ctx.restore()";
  EXPECT_EQ(tc_c.global_step, tc_a.global_step)
      << "the resumed loop took a different number of steps";
  auto pa = tc_a.model->parameters(), pc = tc_c.model->parameters();
  for (size_t i = 0; i < pa.size(); ++i)
    EXPECT_TRUE(torch::equal(pa[i], pc[i]))
        << "a loop stopped at a safe point and resumed ends with different weights (parameter " << i
        << ")";
}

void check_component(const ktf::ComponentDef* def) {
  const ktf::Spec& spec = def->spec;
  SCOPED_TRACE(spec.name);
  // Spec completeness.
  EXPECT_FALSE(spec.summary.empty());
  for (const auto& p : spec.params) EXPECT_FALSE(p.doc.empty()) << "parameter " << p.name;
  EXPECT_EQ(spec.plugin, g_loaded->name);

  // Bad parameters raise ktf::Error with a path, never abort.
  ktf::Json unknown = spec.example;
  unknown.set("definitely_not_a_parameter", 1);
  try {
    ktf::resolve_component(ktf::Json::object({{spec.name, unknown}}), spec.kind, g_registry, {});
    ADD_FAILURE() << "an unknown parameter was accepted";
  } catch (const ktf::Error& e) {
    EXPECT_NE(std::string(e.what()).find("definitely_not_a_parameter"), std::string::npos)
        << e.what();
  }
  for (const auto& p : spec.params) {
    auto bad = wrong_value(p);
    if (!bad) continue;
    ktf::Json args = spec.example;
    args.set(p.name, *bad);
    EXPECT_THROW(
        ktf::resolve_component(ktf::Json::object({{spec.name, args}}), spec.kind, g_registry, {}),
        ktf::Error)
        << "parameter " << p.name << " accepted " << bad->dump();
  }
  // Every declared bound and choice is enforced just outside it, naming the parameter.
  for (const auto& p : spec.params) {
    for (const auto& [value, what] : out_of_bounds(p)) {
      ktf::Json args = spec.example;
      args.set(p.name, value);
      try {
        ktf::resolve_component(ktf::Json::object({{spec.name, args}}), spec.kind, g_registry, {});
        ADD_FAILURE() << "parameter " << p.name << " accepted " << value.dump() << ", " << what;
      } catch (const ktf::Error& e) {
        EXPECT_NE(std::string(e.what()).find(p.name), std::string::npos) << e.what();
      }
    }
  }

  ktf::BuildContext ctx = make_context(spec);
  torch::manual_seed(0);
  switch (spec.kind) {
    case ktf::Kind::Network: {
      ASSERT_FALSE(spec.example_input.empty()) << "networks must declare example_input";
      auto net = std::static_pointer_cast<ktf::Network>(build_example(spec, ctx));
      net->to(g_device);
      net->train();
      auto x = torch::randn(with_batch(2, spec.example_input), torch::device(g_device))
                   .requires_grad_(true);
      auto out = net->forward(x);
      ASSERT_TRUE(out.defined());
      EXPECT_EQ(out.size(0), 2);
      out.to(torch::kFloat).pow(2).mean().backward();
      bool any_grad = false;
      for (const auto& p : net->parameters())
        any_grad |= p.grad().defined() && p.grad().abs().sum().item<double>() > 0;
      if (net->parameters().empty()) {
        EXPECT_TRUE(x.grad().defined()) << "no gradient flowed back to the input";
      } else {
        EXPECT_TRUE(any_grad) << "no parameter received a gradient";
      }
      x = x.detach();
      // State round trip through save/load.
      net->eval();
      torch::NoGradGuard no_grad;
      auto before = net->forward(x);
      std::stringstream stream;
      torch::serialize::OutputArchive out_archive;
      net->save(out_archive);
      out_archive.save_to(stream);
      auto fresh = std::static_pointer_cast<ktf::Network>(build_example(spec, ctx));
      torch::serialize::InputArchive in_archive;
      in_archive.load_from(stream);
      fresh->load(in_archive);
      fresh->to(g_device);
      fresh->eval();
      EXPECT_TRUE(torch::allclose(before, fresh->forward(x), 1e-5, 1e-6))
          << "state round trip changed outputs";
      // The shape inferred for one example is the batch output's, less the batch dimension.
      auto one = ktf::infer_output_shape(*net, spec.example_input);
      EXPECT_EQ(one, std::vector<int64_t>(before.sizes().begin() + 1, before.sizes().end()));
      break;
    }
    case ktf::Kind::Loss: {
      check_loss(spec, ctx);
      auto a = std::static_pointer_cast<ktf::Loss>(build_example(spec, ctx));
      auto b = std::static_pointer_cast<ktf::Loss>(build_example(spec, ctx));
      expect_state_round_trips(*a, *b, "loss");
      break;
    }
    case ktf::Kind::Optimizer:
      check_optimizer(spec, ctx);
      break;
    case ktf::Kind::LrSchedule:
      check_schedule(spec, ctx);
      break;
    case ktf::Kind::Metric:
      check_metric(spec, ctx);
      break;
    case ktf::Kind::Dataset:
      check_dataset(spec, ctx);
      break;
    case ktf::Kind::Transform: {
      auto transform = std::static_pointer_cast<ktf::Transform>(build_example(spec, ctx));
      auto shape = with_batch(
          4, spec.example_input.empty() ? std::vector<int64_t>{1, 28, 28} : spec.example_input);
      torch::Generator gen = at::detail::createCPUGenerator(0);
      auto out = transform->apply({torch::rand(shape), torch::arange(4)}, gen);
      EXPECT_EQ(out.input.size(0), 4);
      EXPECT_EQ(out.target.size(0), 4);
      break;
    }
    case ktf::Kind::Callback:
      check_callback(spec, ctx);
      break;
    case ktf::Kind::TrainLoop: {
      auto loop = std::static_pointer_cast<ktf::TrainLoop>(build_example(spec, ctx));
      auto tc = make_train_context(ctx);
      loop->prepare(tc);
      auto before = tc.model->parameters()[0].clone();
      auto logs = loop->run(tc);
      EXPECT_FALSE(torch::equal(before, tc.model->parameters()[0])) << "training changed nothing";
      EXPECT_TRUE(ktf::find_log(logs, "loss").has_value()) << "final logs have no 'loss'";
      for (int stop_at : {1, 3}) check_loop_resume(spec, ctx, stop_at);  // mid-epoch, validation
      break;
    }
    case ktf::Kind::TrainStep:
      check_train_step(spec, ctx);
      break;
  }
}

class ComponentTest : public testing::Test {
 public:
  explicit ComponentTest(const ktf::ComponentDef* def) : def_(def) {}
  void TestBody() override { check_component(def_); }

 private:
  const ktf::ComponentDef* def_;
};

TEST(Descriptor, FilledAndMatchesHost) {
  ASSERT_NE(g_loaded, nullptr);
  const auto& host = ktf::host_descriptor();
  EXPECT_FALSE(g_loaded->name.empty());
  EXPECT_FALSE(g_loaded->version.empty());
  EXPECT_FALSE(g_loaded->description.empty());
  EXPECT_EQ(g_loaded->torch_version, host.torch_version);
  EXPECT_EQ(g_loaded->build_tag, host.build_tag);
  EXPECT_EQ(g_loaded->sdk_version.substr(0, g_loaded->sdk_version.find('.')),
            std::string(host.sdk_version).substr(0, std::string(host.sdk_version).find('.')));
  EXPECT_FALSE(g_loaded->components.empty()) << "the plugin registers nothing";
}

}  // namespace

int main(int argc, char** argv) {
  ktf::use_best_cpu_kernels(argc, argv);  // the kernels ktf-host runs on this CPU
  testing::InitGoogleTest(&argc, argv);
  std::vector<std::string> dependencies;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--with" && i + 1 < argc) {
      dependencies.push_back(argv[++i]);
    } else if (arg.rfind("--with=", 0) == 0) {
      dependencies.push_back(arg.substr(7));
    } else if (arg == "--device" && i + 1 < argc) {
      try {
        g_device = torch::Device(argv[++i]);
      } catch (const std::exception&) {
        std::cerr << "ktf-conformance: --device '" << argv[i] << "': expected cpu or cuda[:N]\n";
        return 2;
      }
    } else if (g_plugin_path.empty()) {
      g_plugin_path = arg;
    } else {
      std::cerr << "ktf-conformance: unexpected argument '" << arg << "'\n";
      return 2;
    }
  }
  if (g_plugin_path.empty()) {
    std::cerr << "usage: ktf-conformance PLUGIN.so [--with DEPENDENCY]... [gtest flags]\n";
    return 2;
  }
  // Nothing may register before the register call: opening the file must leave the registry
  // untouched (no static-constructor registration into the global registry).
  size_t before = ktf::Registry::global().list().size();
  ktf::PluginLoader loader(g_registry);
  try {
    g_plugin = loader.load(g_plugin_path);
    g_loaded = &g_plugin;
    // Dependencies after the plugin under test, skipping a plugin of the same name (a directory
    // of installed plugins may hold an older copy of it).
    loader.load_all(dependencies, /*skip_loaded_names=*/true);
  } catch (const ktf::Error& e) {
    std::cerr << "ktf-conformance: " << e.what() << "\n";
    return 3;
  }
  if (ktf::Registry::global().list().size() != before) {
    std::cerr << "ktf-conformance: plugin '" << g_plugin_path
              << "' registered components into the global registry while loading\n";
    return 1;
  }
  for (const ktf::ComponentDef* def : g_registry.list()) {
    if (def->spec.plugin != g_loaded->name) continue;  // a dependency's component
    std::string suite = std::string("Conformance_") + ktf::kind_name(def->spec.kind);
    std::string name = def->spec.name;
    for (auto& c : name)
      if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
    testing::RegisterTest(suite.c_str(), name.c_str(), nullptr, nullptr, __FILE__, __LINE__,
                          [def]() -> testing::Test* { return new ComponentTest(def); });
  }
  return RUN_ALL_TESTS();
}
