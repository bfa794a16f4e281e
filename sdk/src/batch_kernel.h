// Conversion of raw uint8 batches to normalised floats in one pass: see batch_kernel.cpp.
#pragma once

#include <torch/types.h>

namespace ktf::detail {

/// x * a + b as float32 for a contiguous uint8 CPU tensor x, computed as x.to(kFloat32).mul_(a)
/// .add_(b) would (same rounding), in one pass and one allocation.
torch::Tensor affine_uint8_to_float(const torch::Tensor& x, double a, double b);

}  // namespace ktf::detail
