// The datasets plugin: dataset readers (IDX, TFRecord, image folders, CSV, synthetic) and the
// batch transforms used for augmentation.
#include <ktf/plugin.h>

#include "datasets.h"

namespace {
void register_all(ktf::Registrar& r) {
  ktf::datasets::register_idx(r);
  ktf::datasets::register_synthetic(r);
  ktf::datasets::register_tfrecord(r);
  ktf::datasets::register_csv(r);
  ktf::datasets::register_image_folder(r);
  ktf::datasets::register_transforms(r);
}
}  // namespace

KTF_PLUGIN("ktf_datasets", KTF_SDK_VERSION,
           "Datasets: IDX (Fashion-MNIST, MNIST), TFRecord, image folders, CSV, synthetic; "
           "batch transforms",
           register_all)
