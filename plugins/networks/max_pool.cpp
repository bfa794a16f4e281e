// Max pooling over non-overlapping windows (stride = kernel, no padding) of contiguous NCHW float
// (and, through a float copy, bfloat16) tensors on the CPU: the pooling of nearly every CNN (2x2,
// stride 2).
//
// libtorch 1.13's NCHW max_pool2d kernel is scalar, writes 64-bit indices and zero-fills the whole
// input gradient before scattering into it; on the benchmark CNN it took ~2 ms a call, more than
// the convolution it follows. Here the forward pass keeps a one-byte window position per output (or
// nothing when no gradient is needed) and the backward pass writes every input gradient element
// exactly once. Values, the chosen position (first maximum in row-major window order, NaN wins)
// and gradients equal torch::max_pool2d's; tests/networks/layers_test.cpp compares them.
#include "max_pool.h"

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>

#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#define KTF_POOL_SSE 1
#endif

namespace ktf::networks {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

struct Geometry {
  int64_t planes, h, w, kh, kw, oh, ow;
};

Geometry geometry(c10::IntArrayRef shape, int64_t kh, int64_t kw) {
  return {shape[0] * shape[1], shape[2], shape[3], kh, kw, shape[2] / kh, shape[3] / kw};
}

/// Planes per parallel task: about 16k input elements, so small tensors stay on one thread.
int64_t grain(const Geometry& g) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, g.h * g.w));
}

/// torch's rule: a later element wins when it is greater or NaN. Evaluated without branches (`|`,
/// not `||`), so the selects below compile to blends: on data, which element wins is random.
inline bool wins(float v, float m) { return (v > m) | (v != v); }

#ifdef KTF_POOL_SSE
/// 2x2 windows, 4 at a time, of rows r0 and r1 into o (and positions into k unless null), with
/// the scalar loop's rule; returns how many outputs it wrote (the rest are left to that loop).
/// SSE2, which every x86-64 CPU has; the work is bound by memory, not by vector width.
int64_t forward_2x2_sse(const float* r0, const float* r1, float* o, uint8_t* k, int64_t ow) {
  int64_t x = 0;
  for (; x + 4 <= ow; x += 4) {
    const __m128 a0 = _mm_loadu_ps(r0 + 2 * x), a1 = _mm_loadu_ps(r0 + 2 * x + 4);
    const __m128 b0 = _mm_loadu_ps(r1 + 2 * x), b1 = _mm_loadu_ps(r1 + 2 * x + 4);
    const __m128 cand[4] = {_mm_shuffle_ps(a0, a1, 0x88), _mm_shuffle_ps(a0, a1, 0xDD),
                            _mm_shuffle_ps(b0, b1, 0x88), _mm_shuffle_ps(b0, b1, 0xDD)};
    __m128 m = cand[0], at = _mm_setzero_ps();
    for (int i = 1; i < 4; ++i) {
      const __m128 w = _mm_or_ps(_mm_cmpgt_ps(cand[i], m), _mm_cmpunord_ps(cand[i], cand[i]));
      m = _mm_or_ps(_mm_and_ps(w, cand[i]), _mm_andnot_ps(w, m));
      at = _mm_or_ps(_mm_and_ps(w, _mm_set1_ps(static_cast<float>(i))), _mm_andnot_ps(w, at));
    }
    _mm_storeu_ps(o + x, m);
    if (k) {
      const __m128i words = _mm_packs_epi32(_mm_cvttps_epi32(at), _mm_setzero_si128());
      const int bytes = _mm_cvtsi128_si32(_mm_packus_epi16(words, words));
      std::memcpy(k + x, &bytes, 4);
    }
  }
  return x;
}

/// The backward of forward_2x2_sse: rows r0 and r1 of the input gradient, 4 windows at a time.
int64_t backward_2x2_sse(const float* gr, const uint8_t* k, float* r0, float* r1, int64_t ow) {
  int64_t x = 0;
  const __m128i zero = _mm_setzero_si128();
  for (; x + 4 <= ow; x += 4) {
    const __m128 g = _mm_loadu_ps(gr + x);
    int bytes;
    std::memcpy(&bytes, k + x, 4);
    const __m128i at = _mm_unpacklo_epi16(_mm_unpacklo_epi8(_mm_cvtsi32_si128(bytes), zero), zero);
    __m128 part[4];
    for (int i = 0; i < 4; ++i)
      part[i] = _mm_and_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(at, _mm_set1_epi32(i))), g);
    _mm_storeu_ps(r0 + 2 * x, _mm_unpacklo_ps(part[0], part[1]));
    _mm_storeu_ps(r0 + 2 * x + 4, _mm_unpackhi_ps(part[0], part[1]));
    _mm_storeu_ps(r1 + 2 * x, _mm_unpacklo_ps(part[2], part[3]));
    _mm_storeu_ps(r1 + 2 * x + 4, _mm_unpackhi_ps(part[2], part[3]));
  }
  return x;
}
#endif

void forward_kernel(const float* in, float* out, uint8_t* pos, const Geometry& g) {
  at::parallel_for(0, g.planes, grain(g), [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const float* ip = in + p * g.h * g.w;
      float* op = out + p * g.oh * g.ow;
      uint8_t* pp = pos ? pos + p * g.oh * g.ow : nullptr;
      for (int64_t y = 0; y < g.oh; ++y) {
        const float* r0 = ip + y * g.kh * g.w;
        float* o = op + y * g.ow;
        uint8_t* k = pp ? pp + y * g.ow : nullptr;
        int64_t x = 0;
#ifdef KTF_POOL_SSE
        if (g.kh == 2 && g.kw == 2) x = forward_2x2_sse(r0, r0 + g.w, o, k, g.ow);
#endif
        for (; x < g.ow; ++x) {
          float m = r0[x * g.kw];
          uint8_t at = 0;
          for (int64_t i = 0; i < g.kh; ++i)
            for (int64_t j = 0; j < g.kw; ++j) {
              const float v = r0[i * g.w + x * g.kw + j];
              const bool w = wins(v, m);
              m = w ? v : m;
              at = w ? static_cast<uint8_t>(i * g.kw + j) : at;
            }
          o[x] = m;
          if (k) k[x] = at;
        }
      }
    }
  });
}

/// grad_in[window position pos] = grad_out, every other element (the rest of each window and the
/// rows/columns no window covers) 0; each element is written once.
void backward_kernel(const float* go, const uint8_t* pos, float* gi, const Geometry& g) {
  at::parallel_for(0, g.planes, grain(g), [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const float* gp = go + p * g.oh * g.ow;
      const uint8_t* pp = pos + p * g.oh * g.ow;
      float* ip = gi + p * g.h * g.w;
      for (int64_t y = 0; y < g.oh; ++y) {
        float* r0 = ip + y * g.kh * g.w;
        const float* gr = gp + y * g.ow;
        const uint8_t* k = pp + y * g.ow;
        int64_t x = 0;
#ifdef KTF_POOL_SSE
        if (g.kh == 2 && g.kw == 2) x = backward_2x2_sse(gr, k, r0, r0 + g.w, g.ow);
#endif
        // The windows left, and the columns no window covers: zeros, then each window's one value.
        for (int64_t i = 0; i < g.kh; ++i)
          std::fill(r0 + i * g.w + x * g.kw, r0 + (i + 1) * g.w, 0.f);
        for (; x < g.ow; ++x) r0[x * g.kw + (k[x] / g.kw) * g.w + k[x] % g.kw] = gr[x];
      }
      std::fill(ip + g.oh * g.kh * g.w, ip + g.h * g.w, 0.f);
    }
  });
}

struct WindowMaxPool : torch::autograd::Function<WindowMaxPool> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, int64_t kh,
                               int64_t kw) {
    const Geometry g = geometry(x.sizes(), kh, kw);
    auto out = torch::empty({x.size(0), x.size(1), g.oh, g.ow}, x.options());
    torch::Tensor pos;
    if (x.requires_grad()) pos = torch::empty(out.sizes(), x.options().dtype(torch::kUInt8));
    forward_kernel(x.data_ptr<float>(), out.data_ptr<float>(),
                   pos.defined() ? pos.data_ptr<uint8_t>() : nullptr, g);
    ctx->save_for_backward({pos});
    ctx->saved_data["kh"] = kh;
    ctx->saved_data["kw"] = kw;
    ctx->saved_data["shape"] = x.sizes().vec();
    return out;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto pos = ctx->get_saved_variables()[0];
    const int64_t kh = ctx->saved_data["kh"].toInt(), kw = ctx->saved_data["kw"].toInt();
    const auto shape = ctx->saved_data["shape"].toIntVector();
    const auto grad = grads[0].contiguous();
    const Geometry g = geometry(shape, kh, kw);
    if (!grad.requires_grad()) {
      auto gi = torch::empty(shape, grad.options());
      backward_kernel(grad.data_ptr<float>(), pos.data_ptr<uint8_t>(), gi.data_ptr<float>(), g);
      return {gi, torch::Tensor(), torch::Tensor()};
    }
    // Double backward (create_graph): the same result from differentiable ops, a 0/1 mask of the
    // chosen positions times the output gradient repeated over each window.
    auto ones = torch::ones_like(grad).detach();
    auto mask = torch::empty(shape, grad.options().requires_grad(false));
    backward_kernel(ones.data_ptr<float>(), pos.data_ptr<uint8_t>(), mask.data_ptr<float>(), g);
    auto spread = grad.unsqueeze(3)
                      .unsqueeze(5)
                      .expand({shape[0], shape[1], g.oh, kh, g.ow, kw})
                      .reshape({shape[0], shape[1], g.oh * kh, g.ow * kw});
    spread = torch::constant_pad_nd(spread, {0, g.w - g.ow * kw, 0, g.h - g.oh * kh});
    return {spread * mask, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor max_pool2d(const torch::Tensor& x, std::array<int64_t, 2> kernel,
                         std::array<int64_t, 2> stride) {
  const bool bf16 = x.scalar_type() == torch::kBFloat16;
  if (kernel == stride && kernel[0] * kernel[1] <= 256 && x.dim() == 4 && x.is_cpu() &&
      (x.scalar_type() == torch::kFloat || bf16) && x.is_contiguous() && x.size(2) >= kernel[0] &&
      x.size(3) >= kernel[1]) {
    // bf16 (autocast): libtorch 1.13's bf16 pooling is the same scalar kernel; pooling the fp32
    // copy is exact (every bf16 value is a float, the maximum is one of them) and faster.
    if (bf16) return WindowMaxPool::apply(x.to(torch::kFloat), kernel[0], kernel[1]).to(x.dtype());
    return WindowMaxPool::apply(x, kernel[0], kernel[1]);
  }
  return torch::max_pool2d(x, kernel, stride);
}

}  // namespace ktf::networks
