// Small in-process components for config-engine tests (no plugin needed).
#pragma once

#include <ktf/registry.h>

namespace ktf::test {

struct NetOptions {
  int64_t num_outputs = 0;
  std::vector<int64_t> hidden{8};
  double alpha = 1.0;
  std::string activation = "relu";
  std::optional<Ref<Network>> base_model;
};
struct TestNet : Network {
  explicit TestNet(const NetOptions& o)
      : fc(register_module("fc", torch::nn::Linear(4, o.num_outputs))) {}
  torch::Tensor forward(torch::Tensor x) override { return fc(x); }
  torch::nn::Linear fc;
};
struct TestLoss : Loss {
  torch::Tensor compute(const torch::Tensor& o, const torch::Tensor&) override { return o.sum(); }
};
struct LrOptions {
  double learning_rate = 0.001;
};
struct LoopOptions {
  int64_t num_epochs = 1;
  std::vector<Ref<Callback>> callbacks;
};
struct DataOptions {
  std::string data_dir = "/data";
  int64_t batch_size = 32;
};

/// A registry with test.Net, test.Loss (alias tf.keras.losses.TestLoss), test.Data, and an
/// optimizer and a loop declared as the cycle defaults.
inline Registry make_test_registry() {
  Registry r;
  Registrar s;
  s.add(
      define<Network, NetOptions>("test.Net", "test network")
          .required("num_outputs", &NetOptions::num_outputs, "number of outputs")
          .arg("hidden", &NetOptions::hidden, "hidden sizes")
          .arg("alpha", &NetOptions::alpha, "width multiplier")
          .arg("activation", &NetOptions::activation, "activation", {"relu", "gelu"})
          .arg("base_model", &NetOptions::base_model, "a nested network")
          .example(Json::object({{"num_outputs", 2}}), {4})
          .build([](const NetOptions& o, BuildContext&) { return std::make_shared<TestNet>(o); }));
  s.add(define<Loss>("test.Loss", "test loss")
            .alias("tf.keras.losses.TestLoss")
            .build([](const NoOptions&, BuildContext&) { return std::make_shared<TestLoss>(); }));
  s.add(define<Optimizer, LrOptions>("ktf.optimizers.Adam", "test optimizer")
            .arg("learning_rate", &LrOptions::learning_rate, "step size")
            .build([](const LrOptions& o, BuildContext& ctx) {
              return std::make_shared<torch::optim::SGD>(ctx.parameters,
                                                         torch::optim::SGDOptions(o.learning_rate));
            }));
  s.add(define<TrainLoop, LoopOptions>("ktf.train.KerasTrainLoop", "test loop")
            .arg("num_epochs", &LoopOptions::num_epochs, "epochs")
            .arg("callbacks", &LoopOptions::callbacks, "callbacks")
            .build([](const LoopOptions&, BuildContext&) -> std::shared_ptr<TrainLoop> {
              return nullptr;
            }));
  s.add(define<Dataset, DataOptions>("test.Data", "test data")
            .arg("data_dir", &DataOptions::data_dir, "where the data is")
            .arg("batch_size", &DataOptions::batch_size, "examples per batch")
            .build([](const DataOptions&, BuildContext&) -> std::shared_ptr<Dataset> {
              return nullptr;
            }));
  s.add_cycle_default("optimizer", Json::object({{"ktf.optimizers.Adam", Json::object()}}));
  s.add_cycle_default("train_loop", Json::object({{"ktf.train.KerasTrainLoop", Json::object()}}));
  r.commit(s, "test", "");
  return r;
}

}  // namespace ktf::test
