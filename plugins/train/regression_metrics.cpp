// Regression metrics: ktf.metrics.MAE and ktf.metrics.MSE (mean over every element of every
// example). Sums stay on the device in double precision; compute() reads them back once.
#include <ktf/components.h>
#include <ktf/registry.h>

#include "train.h"

namespace ktf::train {
namespace {

struct RegressionOptions {
  std::string name = "";  ///< log key; empty = "mae" / "mse"
};

class MeanError : public Metric {
 public:
  MeanError(std::string name, bool squared) : name_(std::move(name)), squared_(squared) {}
  std::string name() const override { return name_; }
  void reset() override {
    sum_ = torch::Tensor();
    count_ = 0;
  }
  void update(const torch::Tensor& output, const torch::Tensor& target) override {
    torch::NoGradGuard no_grad;
    KTF_CHECK(output.numel() == target.numel(), squared_ ? "MSE" : "MAE",
              ": output and target must have the same number of elements, got ", output.sizes(),
              " and ", target.sizes());
    auto diff = output.to(torch::kDouble) -
                target.reshape(output.sizes()).to(output.device(), torch::kDouble);
    auto batch = squared_ ? diff.square().sum() : diff.abs().sum();
    sum_ = sum_.defined() ? sum_ + batch : batch;
    count_ += output.numel();
  }
  double compute() override {
    return count_ ? sum_.item<double>() / static_cast<double>(count_) : 0.0;
  }
  void save_state(State& s) override {
    s.set_tensor("sum", sum_);
    s.set("count", count_);
  }
  void load_state(const State& s) override {
    sum_ = s.tensor("sum");
    count_ = s.at("count").as_int();
  }

 private:
  std::string name_;
  bool squared_;
  torch::Tensor sum_;
  int64_t count_ = 0;
};

}  // namespace

void register_regression_metrics(Registrar& r) {
  r.add(define<Metric, RegressionOptions>("ktf.metrics.MAE", "mean absolute error")
            .alias("tf.keras.metrics.MeanAbsoluteError")
            .arg("name", &RegressionOptions::name, "log key; empty = \"mae\"")
            .example(Json::object())
            .example_target({3})
            .build([](const RegressionOptions& o, BuildContext&) {
              return std::make_shared<MeanError>(o.name.empty() ? "mae" : o.name, false);
            }));
  r.add(define<Metric, RegressionOptions>("ktf.metrics.MSE", "mean squared error")
            .alias("tf.keras.metrics.MeanSquaredError")
            .arg("name", &RegressionOptions::name, "log key; empty = \"mse\"")
            .example(Json::object())
            .example_target({3})
            .build([](const RegressionOptions& o, BuildContext&) {
              return std::make_shared<MeanError>(o.name.empty() ? "mse" : o.name, true);
            }));
}

}  // namespace ktf::train
