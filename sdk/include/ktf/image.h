// ktf/image.h — PNG encoding and decoding, JPEG decoding, for datasets, viewers, --predict and
// TensorBoard image summaries.
//
//   torch::Tensor img = ktf::decode_png(bytes, "images/cat/001.png");  // uint8 [H, W, C]
//   std::string png = ktf::encode_png(img);
//
// Images are uint8 tensors in HWC layout (height, width, channels), channels 1 (gray), 2 (gray +
// alpha), 3 (RGB) or 4 (RGBA), as TensorFlow's tf.io.decode_png returns them.
#pragma once

#include <torch/torch.h>

#include <string>
#include <string_view>

namespace ktf {

/// The most bytes one decoded image may have (1 GiB, e.g. 16384 x 16384 RGB): a header declaring
/// more is refused before anything is allocated.
constexpr uint64_t kMaxDecodedImageBytes = uint64_t{1} << 30;

/// Decodes a PNG image to uint8 [H, W, C]. `channels` 0 keeps the file's channels; 1, 3 or 4
/// converts (gray, RGB, RGBA). A corrupt image throws ktf::Error "<context>: cannot decode PNG
/// (<reason>)"; so does one whose header declares more pixels than kMaxDecodedImageBytes or than
/// its compressed data can hold (deflate expands at most 1032 times).
torch::Tensor decode_png(std::string_view data, const std::string& context, int channels = 0);

/// Decodes a JPEG image to uint8 [H, W, C]; `channels` 0 keeps the file's (1 or 3), 1 or 3
/// converts. A corrupt image throws ktf::Error "<context>: cannot decode JPEG (<reason>)"; so does
/// one whose header declares more than kMaxDecodedImageBytes.
torch::Tensor decode_jpeg(std::string_view data, const std::string& context, int channels = 0);

/// True when `data` starts with the JPEG magic bytes.
bool is_jpeg(std::string_view data);

/// Decodes a PNG or JPEG image (by its magic bytes) to uint8 [H, W, C] with `channels` (0 keeps
/// the file's; JPEG has no alpha: 4 gives 3).
torch::Tensor decode_image(std::string_view data, const std::string& context, int channels = 0);

/// Encodes a uint8 [H, W, C] tensor (C = 1, 2, 3 or 4; [H, W] is gray) as PNG bytes.
std::string encode_png(const torch::Tensor& hwc_uint8);

/// Writes `encode_png(hwc_uint8)` to `path`; throws ktf::Error naming the path on failure.
void write_png(const std::string& path, const torch::Tensor& hwc_uint8);

}  // namespace ktf
