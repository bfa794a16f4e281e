// Max pooling over non-overlapping windows: see max_pool.cpp.
#pragma once

#include <torch/types.h>

#include <array>

namespace ktf::networks {

/// Whether window_max_pool computes torch::max_pool2d(x, kernel, stride) (no padding, dilation 1,
/// floor mode): stride equal to the kernel, a contiguous 4-D float CPU tensor at least one window
/// tall and wide.
bool window_max_pool_applies(const torch::Tensor& x, std::array<int64_t, 2> kernel,
                             std::array<int64_t, 2> stride);

/// torch::max_pool2d(x, kernel, kernel), differentiable (also twice), for the cases above.
torch::Tensor window_max_pool(const torch::Tensor& x, std::array<int64_t, 2> kernel);

}  // namespace ktf::networks
