// ktf.train.CustomTrainLoop: the KerasTrainLoop machinery (epochs, validation, logs, callbacks,
// freezing) around a train_step component that does each batch's optimisation itself.
#include <ktf/components.h>
#include <ktf/registry.h>

#include "loop.h"

namespace ktf::train {

void register_custom_train_loop(Registrar& r) {
  auto d = define<TrainLoop, LoopOptions>(
      "ktf.train.CustomTrainLoop",
      "epochs, validation, logs and callbacks around a custom train_step component");
  common_loop_args(d)
      .arg("train_step", &LoopOptions::train_step,
           "the step run on each batch; null = ktf.train.steps.Supervised")
      .example(Json::object(
          {{"num_epochs", 1},
           {"verbose", 0},
           {"train_step", Json::object({{"ktf.train.steps.Supervised", Json::object()}})}}));
  r.add(d.build([](const LoopOptions& o, BuildContext& ctx) {
    std::shared_ptr<TrainStep> step =
        o.train_step.empty() ? make_supervised_step(StepSettings{}) : ctx.build(o.train_step);
    return std::make_shared<LoopRunner>(o, ctx, step);
  }));
}

}  // namespace ktf::train
