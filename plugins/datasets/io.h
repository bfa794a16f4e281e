// File helpers of the datasets plugin: whole-file reads (GZIP transparently), globbing, IDX.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

namespace ktf::datasets {

/// The bytes of `path`, decompressed when it is a GZIP file. Errors name the file: missing,
/// unreadable, or corrupt/truncated compressed data.
std::string read_file(const std::string& path, const std::string& what);

/// Files matching each pattern (glob(3)), sorted per pattern, duplicates removed. A pattern that
/// matches nothing throws ktf::Error naming `arg` and the pattern.
std::vector<std::string> expand_globs(const std::vector<std::string>& patterns,
                                      const std::string& arg);

/// Reads an IDX file (MNIST format, raw or .gz) into a tensor of its dtype and dimensions.
/// Errors name the file: wrong magic, unknown type, truncated data, trailing bytes.
torch::Tensor read_idx(const std::string& path);

}  // namespace ktf::datasets
