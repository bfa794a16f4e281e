// PNG (libpng's simplified API) and JPEG (libjpeg-turbo) decoders as ktf.datasets.image_folder
// uses them. The first byte picks the channels asked for; the rest is the file.
#include <ktf/image.h>

#include "fuzz_common.h"

KTF_FUZZ_TARGET(fuzz_image)(const uint8_t* data, size_t size) {
  using namespace ktf;
  if (size < 1) return 0;
  static const int kChannels[] = {0, 1, 3, 4};
  const int channels = kChannels[data[0] & 3];
  std::string_view file(reinterpret_cast<const char*>(data) + 1, size - 1);
  fuzz::expect_clean([&] {
    torch::Tensor image;
    if (is_jpeg(file))
      image = decode_jpeg(file, "image", channels == 4 ? 3 : channels);
    else
      image = decode_png(file, "image", channels);
    if (image.dim() != 3 || image.scalar_type() != torch::kUInt8) std::abort();
    if (channels && image.size(2) != (channels == 4 && is_jpeg(file) ? 3 : channels)) std::abort();
  });
  return 0;
}
