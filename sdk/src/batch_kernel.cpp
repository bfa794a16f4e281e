// Conversion of raw uint8 batches to normalised floats in one pass.
//
// Image datasets keep their decoded pixels as uint8 (a quarter of the memory) and convert each
// batch: as three libtorch ops (to float, multiply, add) that was three passes, two of them split
// across threads, ~15 us for a 64-image Fashion-MNIST batch, a twentieth of the tiny MLP's step.
#include "batch_kernel.h"

#include <ATen/Parallel.h>

namespace ktf::detail {

torch::Tensor affine_uint8_to_float(const torch::Tensor& x, double a, double b) {
  TORCH_CHECK(x.scalar_type() == torch::kByte && x.is_cpu() && x.is_contiguous(),
              "affine_uint8_to_float expects a contiguous uint8 CPU tensor");
  auto out = torch::empty(x.sizes(), x.options().dtype(torch::kFloat32));
  const uint8_t* in = x.data_ptr<uint8_t>();
  float* o = out.data_ptr<float>();
  const float fa = static_cast<float>(a), fb = static_cast<float>(b);
  at::parallel_for(0, x.numel(), 65536, [=](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float scaled = static_cast<float>(in[i]) * fa;  // rounded, as mul_ rounds
      o[i] = scaled + fb;
    }
  });
  return out;
}

}  // namespace ktf::detail
