// The CUDA kernels of ktf.losses.FusedCrossEntropy: softmax cross-entropy with label smoothing,
// one warp per row. Forward: each row's log-sum-exp and loss (the caller takes their mean, in a
// fixed order: no atomics, the same bits every run); backward: the gradient softmax - target from
// the saved log-sum-exp. Plain CUDA: no libtorch header (the C++ side passes pointers and the
// stream).
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "fused_cross_entropy_kernels.h"

namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 4;

__device__ float warp_max(float v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__device__ float warp_sum(float v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__global__ void forward_kernel(const float* __restrict__ logits,
                               const int64_t* __restrict__ targets, int64_t n, int64_t c,
                               float smoothing, float* __restrict__ row_lse,
                               float* __restrict__ row_loss) {
  const int lane = threadIdx.x % kWarp;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  if (row >= n) return;  // whole warps leave together: the shuffles stay full
  const float* x = logits + row * c;
  float m = -INFINITY;
  for (int64_t j = lane; j < c; j += kWarp) m = fmaxf(m, x[j]);
  m = warp_max(m);
  // Sums of exp(x - m) and of x - m: relative to the row's maximum, so that logits sharing a
  // large offset lose nothing to cancellation.
  float s = 0.f, sum_xm = 0.f;
  for (int64_t j = lane; j < c; j += kWarp) {
    s += expf(x[j] - m);
    sum_xm += x[j] - m;
  }
  s = warp_sum(s);
  sum_xm = warp_sum(sum_xm);
  if (lane != 0) return;
  const float log_s = logf(s);
  row_lse[row] = m + log_s;
  const int64_t t = targets[row];
  // A class index out of range gives NaN (the loss's non-finite check stops the run).
  const float xt_m = (t >= 0 && t < c) ? x[t] - m : NAN;
  // -sum_j q_j log p_j with q = (1 - eps) onehot(t) + eps / C and log p_j = (x_j - m) - log s.
  row_loss[row] = log_s - (1.f - smoothing) * xt_m - smoothing / static_cast<float>(c) * sum_xm;
}

__global__ void backward_kernel(const float* __restrict__ logits,
                                const int64_t* __restrict__ targets,
                                const float* __restrict__ row_lse,
                                const float* __restrict__ grad_loss, int64_t n, int64_t c,
                                float smoothing, float inv_n, float* __restrict__ grad) {
  const int lane = threadIdx.x % kWarp;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  if (row >= n) return;
  const float* x = logits + row * c;
  float* g = grad + row * c;
  const float lse = row_lse[row];
  const float scale = grad_loss[0] * inv_n;
  const int64_t t = targets[row];
  const float uniform = smoothing / static_cast<float>(c);
  for (int64_t j = lane; j < c; j += kWarp) {
    const float q = uniform + (j == t ? 1.f - smoothing : 0.f);
    g[j] = (expf(x[j] - lse) - q) * scale;
  }
}

unsigned blocks_for(int64_t n) {
  return static_cast<unsigned>((n + kWarpsPerBlock - 1) / kWarpsPerBlock);
}

}  // namespace

namespace ktf::cuda_kernels {

int fused_cross_entropy_forward(const float* logits, const int64_t* targets, int64_t n, int64_t c,
                                float smoothing, float* row_lse, float* row_loss, void* stream) {
  if (n == 0) return 0;
  forward_kernel<<<blocks_for(n), kWarp * kWarpsPerBlock, 0, static_cast<cudaStream_t>(stream)>>>(
      logits, targets, n, c, smoothing, row_lse, row_loss);
  return static_cast<int>(cudaGetLastError());
}

int fused_cross_entropy_backward(const float* logits, const int64_t* targets, const float* row_lse,
                                 const float* grad_loss, int64_t n, int64_t c, float smoothing,
                                 float* grad, void* stream) {
  if (n == 0) return 0;
  backward_kernel<<<blocks_for(n), kWarp * kWarpsPerBlock, 0, static_cast<cudaStream_t>(stream)>>>(
      logits, targets, row_lse, grad_loss, n, c, smoothing, 1.f / static_cast<float>(n), grad);
  return static_cast<int>(cudaGetLastError());
}

const char* error_text(int code) { return cudaGetErrorString(static_cast<cudaError_t>(code)); }

}  // namespace ktf::cuda_kernels
