// JPEG decoding with libjpeg (libjpeg62-turbo), for TFRecord "jpeg" features and image folders.
#pragma once

#include <torch/torch.h>

#include <string>
#include <string_view>

namespace ktf::datasets {

/// Decodes a JPEG image to uint8 [H, W, C]; `channels` 0 keeps the file's (1 or 3), 1 or 3
/// converts. A corrupt image throws ktf::Error "<context>: cannot decode JPEG (<reason>)".
torch::Tensor decode_jpeg(std::string_view data, const std::string& context, int channels = 0);

/// True when `data` starts with the JPEG magic bytes.
bool is_jpeg(std::string_view data);

}  // namespace ktf::datasets
