// IDX reader through ktf.datasets.from_idx: the input is split into an images file and a labels
// file (fuzz_common.h split()), built as a dataset and read for two batches.
#include "fuzz_common.h"

KTF_FUZZ_TARGET(fuzz_idx)(const uint8_t* data, size_t size) {
  using namespace ktf;
  auto [images, labels] = fuzz::split({reinterpret_cast<const char*>(data), size});
  auto ip = fuzz::write_file("images.idx", images);
  auto lp = fuzz::write_file("labels.idx", labels);
  fuzz::expect_clean([&] {
    fuzz::build_and_read(
        "ktf.datasets.from_idx",
        Json::object({{"train_images", ip}, {"train_labels", lp}, {"batch_size", 4}}));
  });
  return 0;
}
