// ktf.train.steps.Supervised: the standard optimisation step (forward, loss, and the SDK's
// backward/step service, which accumulates, clips and steps). KerasTrainLoop runs it;
// CustomTrainLoop runs it when no other train_step is given.
#include <ktf/components.h>
#include <ktf/registry.h>

#include "train.h"

namespace ktf::train {
namespace {

struct SupervisedOptions {
  std::optional<double> clip_grad_norm;  ///< clip the global L2 norm of the gradients; null = off
  int64_t grad_accumulation = 1;         ///< batches whose gradients are summed per optimizer step
};

class SupervisedStep : public TrainStep {
 public:
  explicit SupervisedStep(std::optional<StepSettings> settings) : settings_(std::move(settings)) {}

  StepResult step(TrainContext& ctx, Batch& batch) override {
    KTF_CHECK(ctx.model && ctx.loss && ctx.optimizer,
              "ktf.train.steps.Supervised needs a model, a loss and an optimizer");
    auto body = [&](const Batch& b) {
      auto output = ctx.forward(b.input);
      auto loss = ctx.loss->compute(output, b.target);
      if (settings_)
        ctx.backward_and_step(loss, *settings_);
      else
        ctx.backward_and_step(loss);
      return std::make_pair(loss.detach(), output.detach());
    };
    // CUDA graphs where they apply (the step is ktf's own: nothing in it reads the host).
    if (!settings_ || settings_->accumulation == 1)
      if (auto replayed = ctx.run_graphed(batch, body, /*built_in=*/true))
        return {replayed->first, replayed->second, {}};
    auto [loss, output] = body(batch);
    return {loss, output, {}};
  }

 private:
  std::optional<StepSettings> settings_;
};

}  // namespace

std::shared_ptr<TrainStep> make_supervised_step(std::optional<StepSettings> settings) {
  return std::make_shared<SupervisedStep>(std::move(settings));
}

void register_supervised_step(Registrar& r) {
  r.add(define<TrainStep, SupervisedOptions>(
            "ktf.train.steps.Supervised",
            "forward, loss, backward, optional gradient clipping, optimizer step")
            .arg("clip_grad_norm", &SupervisedOptions::clip_grad_norm,
                 "clip the global L2 norm of the gradients to this value; null = off")
            .above(0)
            .arg("grad_accumulation", &SupervisedOptions::grad_accumulation,
                 "batches whose gradients are summed per optimizer step")
            .min(1)
            .example(Json::object({{"clip_grad_norm", 5.0}}))
            .build([](const SupervisedOptions& o, BuildContext&) {
              return make_supervised_step(StepSettings{o.grad_accumulation, o.clip_grad_norm});
            }));
}

}  // namespace ktf::train
