// The optimizers plugin: optimizers (config key "optimizer") and learning-rate schedules
// (config key "lr_schedule").
#include <ktf/plugin.h>

#include "optimizers.h"

namespace {
void register_all(ktf::Registrar& r) {
  using namespace ktf::optimizers;
  register_sgd(r);
  register_adam(r);
  register_rmsprop(r);
  register_adagrad(r);
  register_step_decay(r);
  register_exponential_decay(r);
  register_cosine_decay(r);
  register_one_cycle(r);
  register_reduce_on_plateau(r);
  // What a cycle uses when no cycle of its config names an optimizer.
  r.add_cycle_default("optimizer",
                      ktf::Json::object({{"ktf.optimizers.Adam", ktf::Json::object()}}));
}
}  // namespace

KTF_PLUGIN("ktf_optimizers", KTF_SDK_VERSION,
           "Optimizers (SGD, Adam, AdamW, RMSprop, Adagrad) and learning-rate schedules",
           register_all)
