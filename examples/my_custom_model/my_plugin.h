// The example plugin's registration functions, one per component file.
#pragma once

#include <ktf/registry.h>

namespace my_plugin {
void register_my_custom_model(ktf::Registrar& r);  // a network with a nested head component
void register_focal_loss(ktf::Registrar& r);       // a loss
void register_stripes(ktf::Registrar& r);          // a generated dataset on ktf::IndexedDataset
void register_mixup_step(ktf::Registrar& r);       // a train step reporting an extra value
void register_gradient_norm(ktf::Registrar& r);    // a callback reading gradients
}  // namespace my_plugin
