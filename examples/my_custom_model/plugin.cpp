// The plugin's entry point: ktf-host calls register_all after checking the descriptor.
#include <ktf/plugin.h>

#include "my_plugin.h"

namespace {
void register_all(ktf::Registrar& r) {
  my_plugin::register_my_custom_model(r);
  my_plugin::register_focal_loss(r);
}
}  // namespace

KTF_PLUGIN("my_custom_model", "1.0.0", "MyCustomModel (a small CNN) and a focal loss", register_all)
