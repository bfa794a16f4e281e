// my.callbacks.GradientNorm: the global L2 norm of the gradients at every optimizer step, read in
// on_after_backward (where the SDK guarantees them intact, whatever the optimizer), averaged over
// each epoch and written to metrics.jsonl as {"phase": "grad_norm", "grad_norm": ..., "max": ...}.
// Its running sums are checkpoint state (save_state / load_state), so a run resumed mid-epoch
// reports the same epoch means as one never stopped.
#include <ktf/components.h>
#include <ktf/registry.h>
#include <ktf/train.h>

#include <algorithm>

#include "my_plugin.h"

namespace my_plugin {
namespace {

struct GradientNormOptions {
  bool log = false;  ///< also print the epoch's mean norm
};

class GradientNorm : public ktf::Callback {
 public:
  explicit GradientNorm(const GradientNormOptions& o) : log_(o.log) {}

  void on_epoch_begin(ktf::TrainContext&, int64_t) override {
    sum_ = torch::Tensor();
    max_ = torch::Tensor();
    steps_ = 0;
  }

  void on_after_backward(ktf::TrainContext& ctx, int64_t) override {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> squares;
    for (const auto& p : ctx.model->parameters())
      if (p.grad().defined()) squares.push_back(p.grad().pow(2).sum().to(torch::kDouble));
    if (squares.empty()) return;
    auto norm = torch::stack(squares).sum().sqrt();  // stays on the device: no sync per step
    sum_ = sum_.defined() ? sum_ + norm : norm;
    max_ = max_.defined() ? torch::maximum(max_, norm) : norm;
    ++steps_;
  }

  void save_state(ktf::State& state) override {
    state.set_tensor("sum", sum_);
    state.set_tensor("max", max_);
    state.set("steps", steps_);
  }
  void load_state(const ktf::State& state) override {
    sum_ = state.tensor("sum");
    max_ = state.tensor("max");
    steps_ = state.at("steps").as_int();
  }

  void on_epoch_end(ktf::TrainContext& ctx, int64_t epoch, const ktf::Logs&) override {
    if (steps_ == 0) return;
    const double mean = sum_.item<double>() / static_cast<double>(steps_);
    ctx.record(
        "grad_norm", epoch,
        {{"grad_norm", mean}, {"max", max_.item<double>()}, {"steps", ktf::LogValue(steps_)}});
    if (log_) ctx.log("gradient norm: mean " + std::to_string(mean));
  }

 private:
  bool log_;
  torch::Tensor sum_, max_;
  int64_t steps_ = 0;
};

}  // namespace

void register_gradient_norm(ktf::Registrar& r) {
  r.add(ktf::define<ktf::Callback, GradientNormOptions>(
            "my.callbacks.GradientNorm",
            "records the global gradient norm of every optimizer step, per epoch")
            .arg("log", &GradientNormOptions::log, "also print the epoch's mean norm")
            .example(ktf::Json::object({{"log", false}}))
            .build([](const GradientNormOptions& o, ktf::BuildContext&) {
              return std::make_shared<GradientNorm>(o);
            }));
}

}  // namespace my_plugin
