// Registration functions of the losses plugin, one per component file.
#pragma once

#include <ktf/registry.h>

namespace ktf::losses {
void register_cross_entropy(Registrar& r);
}  // namespace ktf::losses
