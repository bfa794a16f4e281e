// ktf.models.MultiHeadNet output helpers (header-only, so other plugins and tests can use them
// without linking to the networks plugin).
//
// A MultiHeadNet built with "heads": [10, 4] returns one tensor [N, 14]: the outputs of head 0 in
// columns 0..9, then those of head 1 in columns 10..13. split_heads() cuts it back:
//
//   auto sizes = ktf::networks::head_sizes(*model);        // {10, 4}
//   auto outs = ktf::networks::split_heads(output, sizes);  // {[N, 10], [N, 4]}
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace ktf::networks {

/// The output size of each head of a MultiHeadNet (its "heads" submodule holds one Linear per
/// head); empty when `model` has no "heads" submodule.
inline std::vector<int64_t> head_sizes(const torch::nn::Module& model) {
  std::vector<int64_t> sizes;
  for (const auto& item : model.named_children()) {
    if (item.key() != "heads") continue;
    for (const auto& head : item.value()->children()) {
      auto params = head->named_parameters(/*recurse=*/false);
      if (auto* w = params.find("weight")) sizes.push_back(w->size(0));
    }
  }
  return sizes;
}

/// Cuts a concatenated multi-head output [N, sum(sizes)] into one tensor per head (views).
inline std::vector<torch::Tensor> split_heads(const torch::Tensor& output,
                                              const std::vector<int64_t>& sizes) {
  std::vector<torch::Tensor> out;
  int64_t offset = 0;
  for (int64_t size : sizes) {
    out.push_back(output.narrow(1, offset, size));
    offset += size;
  }
  TORCH_CHECK(offset == output.size(1), "split_heads: the heads total ", offset,
              " outputs but the output has ", output.size(1));
  return out;
}

}  // namespace ktf::networks
