// my.train.MixupStep: mixup (Zhang et al. 2018) as a train step. Each batch is blended with a
// shuffled copy of itself, lambda ~ Beta(alpha, alpha); the loss blends both targets' losses. The
// step goes through the SDK's backward/step service (accumulation, clipping, the after-backward
// hook, the schedule) and reports lambda, which the loop logs ("lambda" in metrics.jsonl).
#include <ktf/components.h>
#include <ktf/registry.h>
#include <ktf/train.h>

#include <random>

#include "my_plugin.h"

namespace my_plugin {
namespace {

struct MixupOptions {
  double alpha = 0.2;  ///< Beta(alpha, alpha) concentration; small values keep lambda near 0 or 1
};

class MixupStep : public ktf::TrainStep {
 public:
  explicit MixupStep(const MixupOptions& o) : alpha_(o.alpha) {}

  ktf::StepResult step(ktf::TrainContext& ctx, ktf::Batch& batch) override {
    // Lambda and the pairing are functions of (seed, cycle, step): repeatable runs.
    std::mt19937_64 rng(ctx.seed * 1000003u + static_cast<uint64_t>(ctx.cycle) * 7919u +
                        static_cast<uint64_t>(ctx.global_step));
    std::gamma_distribution<double> gamma(alpha_, 1.0);
    const double a = gamma(rng), b = gamma(rng);
    const double lam = a + b > 0 ? a / (a + b) : 1.0;
    const int64_t n = batch.input.size(0);
    auto perm =
        torch::arange(n, torch::TensorOptions().dtype(torch::kLong))
            .roll(static_cast<int64_t>(rng() % static_cast<uint64_t>(std::max<int64_t>(n, 1))));
    perm = perm.to(batch.input.device());
    auto mixed = lam * batch.input + (1 - lam) * batch.input.index_select(0, perm);
    auto output = ctx.forward(mixed);
    auto loss = lam * ctx.loss->compute(output, batch.target) +
                (1 - lam) * ctx.loss->compute(output, batch.target.index_select(0, perm));
    ctx.backward_and_step(loss);
    return ktf::StepResult{loss.detach(), output.detach()}.add("lambda", lam);
  }

 private:
  double alpha_;
};

}  // namespace

void register_mixup_step(ktf::Registrar& r) {
  r.add(ktf::define<ktf::TrainStep, MixupOptions>(
            "my.train.MixupStep", "mixup: trains on blends of example pairs and their targets")
            .arg("alpha", &MixupOptions::alpha, "Beta(alpha, alpha) concentration of lambda")
            .above(0)
            .example(ktf::Json::object({{"alpha", 0.2}}))
            .build([](const MixupOptions& o, ktf::BuildContext&) {
              return std::make_shared<MixupStep>(o);
            }));
}

}  // namespace my_plugin
