// ktf.train.KerasTrainLoop: Keras's model.fit() — epochs of the standard supervised step with
// validation, logs and callbacks. Also what a cycle runs when its config names no train_loop.
#include <ktf/components.h>
#include <ktf/registry.h>

#include "loop.h"

namespace ktf::train {

void register_keras_train_loop(Registrar& r) {
  auto d = define<TrainLoop, LoopOptions>(
      "ktf.train.KerasTrainLoop",
      "trains like Keras model.fit: epochs, validation, logs, callbacks, freezing");
  common_loop_args(d)
      .arg("clip_grad_norm", &LoopOptions::clip_grad_norm,
           "clip the global L2 norm of the gradients to this value; null = off")
      .above(0)
      .arg("grad_accumulation", &LoopOptions::grad_accumulation,
           "batches whose gradients are summed per optimizer step")
      .min(1)
      .example(Json::object({{"num_epochs", 1}, {"verbose", 0}}));
  r.add(d.build([](const LoopOptions& o, BuildContext& ctx) {
    auto step = make_supervised_step(std::nullopt);  // the loop's StepSettings
    return std::make_shared<LoopRunner>(o, ctx, step);
  }));
}

}  // namespace ktf::train
