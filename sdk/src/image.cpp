#include "ktf/image.h"

#include <png.h>

#include <cstring>
#include <fstream>

#include "ktf/error.h"

namespace ktf {
namespace {

png_uint_32 format_for_channels(int channels) {
  switch (channels) {
    case 1:
      return PNG_FORMAT_GRAY;
    case 2:
      return PNG_FORMAT_GA;
    case 3:
      return PNG_FORMAT_RGB;
    default:
      return PNG_FORMAT_RGBA;
  }
}

}  // namespace

torch::Tensor decode_png(std::string_view data, const std::string& context, int channels) {
  KTF_CHECK(channels >= 0 && channels <= 4, "decode_png: channels must be 0, 1, 2, 3 or 4, got ",
            channels);
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  auto fail = [&](const char* what) {
    std::string reason = image.message[0] ? image.message : what;
    png_image_free(&image);
    throw Error(context + ": cannot decode PNG (" + reason + ")");
  };
  if (!png_image_begin_read_from_memory(&image, data.data(), data.size())) fail("not a PNG");
  if (channels == 0) channels = static_cast<int>(PNG_IMAGE_SAMPLE_CHANNELS(image.format));
  // Checked before allocating: a 100-byte file may declare 1000000 x 1000000 pixels.
  const uint64_t pixels = uint64_t{image.width} * image.height;
  const uint64_t stored = pixels * PNG_IMAGE_SAMPLE_CHANNELS(image.format) *
                          PNG_IMAGE_SAMPLE_COMPONENT_SIZE(image.format);
  if (pixels * static_cast<uint64_t>(channels) > kMaxDecodedImageBytes) {
    png_image_free(&image);
    throw Error(context + ": cannot decode PNG (" + std::to_string(image.width) + " x " +
                std::to_string(image.height) + " pixels: more than the " +
                std::to_string(kMaxDecodedImageBytes >> 20) + " MiB an image may decode to)");
  }
  if (stored / 1032 > data.size() + 1024) {
    png_image_free(&image);
    throw Error(context + ": cannot decode PNG (the header declares " +
                std::to_string(image.width) + " x " + std::to_string(image.height) +
                " pixels, more than its " + std::to_string(data.size()) + " bytes can hold)");
  }
  image.format = format_for_channels(channels);
  auto out = torch::empty(
      {static_cast<int64_t>(image.height), static_cast<int64_t>(image.width), channels},
      torch::kUInt8);
  if (!png_image_finish_read(&image, nullptr, out.data_ptr<uint8_t>(), 0, nullptr))
    fail("corrupt image data");
  png_image_free(&image);
  return out;
}

std::string encode_png(const torch::Tensor& hwc_uint8) {
  auto img = hwc_uint8;
  if (img.dim() == 2) img = img.unsqueeze(2);
  KTF_CHECK(
      img.dim() == 3 && img.scalar_type() == torch::kUInt8 && img.size(2) >= 1 && img.size(2) <= 4,
      "encode_png: expected a uint8 [H, W, C] tensor with C in 1..4, got ", img.sizes(), " ",
      img.scalar_type());
  img = img.to(torch::kCPU).contiguous();
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(img.size(1));
  image.height = static_cast<png_uint_32>(img.size(0));
  image.format = format_for_channels(static_cast<int>(img.size(2)));
  png_alloc_size_t size = 0;
  if (!png_image_write_to_memory(&image, nullptr, &size, 0, img.data_ptr<uint8_t>(), 0, nullptr))
    throw Error(std::string("encode_png: ") + image.message, {}, kExitRuntime);
  std::string out(size, '\0');
  if (!png_image_write_to_memory(&image, out.data(), &size, 0, img.data_ptr<uint8_t>(), 0, nullptr))
    throw Error(std::string("encode_png: ") + image.message, {}, kExitRuntime);
  out.resize(size);
  png_image_free(&image);
  return out;
}

void write_png(const std::string& path, const torch::Tensor& hwc_uint8) {
  std::string png = encode_png(hwc_uint8);
  std::ofstream file(path, std::ios::binary);
  file.write(png.data(), static_cast<std::streamsize>(png.size()));
  file.close();
  if (!file) throw Error("cannot write PNG file '" + path + "'", {}, kExitRuntime);
}

}  // namespace ktf
