// File helpers of the datasets plugin: globbing, label checks; whole-file reads and IDX (the
// SDK's).
#pragma once

#include <ktf/files.h>
#include <torch/torch.h>

#include <string>
#include <vector>

namespace ktf::datasets {

// Whole-file reads and IDX are the SDK's (ktf/files.h): --predict reads inputs with them too.
using ktf::read_file;
using ktf::read_idx;

/// Files matching each pattern (glob(3)), sorted per pattern, duplicates removed. A pattern that
/// matches nothing throws ktf::Error naming `arg` and the pattern.
std::vector<std::string> expand_globs(const std::vector<std::string>& patterns,
                                      const std::string& arg);

/// Where labels [N] stop being class indices: the first entry that is negative, at least
/// num_classes (when num_classes > 0) or, with num_classes 0 (classes counted from the labels),
/// at least kMaxInferredClasses. Returns -1 when every label is a class index.
int64_t first_bad_label(const torch::Tensor& labels, int64_t num_classes);
constexpr int64_t kMaxInferredClasses = int64_t{1} << 24;

/// "label 12 ... is not a class index from 0 to 9 (num_classes 10)": the text after the label
/// and its position, for a label first_bad_label() found.
std::string not_a_class_index(int64_t label, int64_t num_classes);

}  // namespace ktf::datasets
