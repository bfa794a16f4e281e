// The plugin's entry point: ktf-host calls register_all after checking the descriptor.
#include <ktf/plugin.h>

#include "my_plugin.h"

namespace {
void register_all(ktf::Registrar& r) {
  my_plugin::register_my_custom_model(r);
  my_plugin::register_focal_loss(r);
  my_plugin::register_stripes(r);
  my_plugin::register_mixup_step(r);
  my_plugin::register_gradient_norm(r);
}
}  // namespace

KTF_PLUGIN("my_custom_model", "1.1.0",
           "MyCustomModel (conv features + a configurable head), a focal loss, a generated "
           "dataset, a mixup train step and a gradient-norm callback",
           register_all)
