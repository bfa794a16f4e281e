// The launchers of fused_cross_entropy.cu, callable from C++ compiled without nvcc. Each returns
// a cudaError_t (0 = success); `stream` is a cudaStream_t. All pointers are device pointers of
// contiguous tensors: logits [n, c] float, targets [n] int64, row_lse and row_loss [n],
// grad_loss one float, grad [n, c].
#pragma once

#include <cstdint>

namespace ktf::cuda_kernels {

/// row_loss = each row's label-smoothed cross-entropy; row_lse its log-sum-exp (for backward).
int fused_cross_entropy_forward(const float* logits, const int64_t* targets, int64_t n, int64_t c,
                                float smoothing, float* row_lse, float* row_loss, void* stream);
/// grad = grad_loss / n * (softmax(logits) - smoothed one-hot target).
int fused_cross_entropy_backward(const float* logits, const int64_t* targets, const float* row_lse,
                                 const float* grad_loss, int64_t n, int64_t c, float smoothing,
                                 float* grad, void* stream);
const char* error_text(int code);

}  // namespace ktf::cuda_kernels
