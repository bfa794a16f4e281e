#pragma once

#include <ktf/registry.h>

namespace my_plugin {
void register_my_custom_model(ktf::Registrar& r);
void register_focal_loss(ktf::Registrar& r);
}  // namespace my_plugin
