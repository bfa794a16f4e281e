// Registration functions of the datasets plugin, one per component file.
#pragma once

#include <ktf/registry.h>

namespace ktf::datasets {
void register_idx(Registrar& r);
void register_synthetic(Registrar& r);
void register_tfrecord(Registrar& r);
void register_csv(Registrar& r);
void register_image_folder(Registrar& r);
void register_transforms(Registrar& r);
}  // namespace ktf::datasets
