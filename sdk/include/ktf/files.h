// ktf/files.h — reading data files for datasets and ktf-host --predict: whole files (GZIP
// decompressed transparently, never more than memory holds) and IDX (the MNIST format).
#pragma once

#include <torch/torch.h>

#include <string>

namespace ktf {

/// The bytes of `path`, decompressed when it is a GZIP file. Errors name the file ("<what>
/// '<path>' ..."): missing, a directory, unreadable, larger than the memory available, or
/// corrupt/truncated compressed data.
std::string read_file(const std::string& path, const std::string& what);

/// Reads an IDX file (MNIST format, raw or .gz) into a tensor of its dtype and dimensions.
/// Errors name the file: wrong magic, unknown type, truncated data, trailing bytes, a dimension
/// of 0, dimensions whose product overflows.
torch::Tensor read_idx(const std::string& path);

/// `text` as one CSV field (RFC 4180): as it is, or quoted with its quotes doubled when it holds a
/// comma, a quote or a line break.
std::string csv_field(const std::string& text);

}  // namespace ktf
