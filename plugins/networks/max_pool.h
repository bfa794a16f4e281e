// Max pooling over non-overlapping windows: see max_pool.cpp.
#pragma once

#include <torch/types.h>

#include <array>

namespace ktf::networks {

/// torch::max_pool2d(x, kernel, stride) (no padding, dilation 1, floor mode), differentiable (also
/// twice). Non-overlapping windows (stride = kernel) of a contiguous 4-D float CPU tensor at least
/// one window tall and wide run in max_pool.cpp's kernel; anything else in libtorch's.
torch::Tensor max_pool2d(const torch::Tensor& x, std::array<int64_t, 2> kernel,
                         std::array<int64_t, 2> stride);

}  // namespace ktf::networks
