// The SDK's CUDA pieces behind a plain interface (cuda_support.cpp holds the only CUDA includes):
// batches copied to the GPU on the prefetch thread's own stream, and the CUDA graphs a train step
// is captured in. Built without CUDA (KTF_WITH_CUDA 0), the functions throw and
// cuda_available() is false; callers check it first.
#pragma once

#include <torch/torch.h>

#include <memory>

#include "ktf/components.h"

namespace ktf::detail {

/// True when this libtorch has CUDA and a GPU is visible.
bool cuda_available();

/// Pins the batch's tensors and copies them to `device` without blocking, on a CUDA stream of the
/// calling thread's own; returns the event recorded after the copies.
std::shared_ptr<void> copy_batch_async(Batch& batch, torch::Device device);
/// Makes the current stream of the batch's device wait for the copy (no host wait) and tells the
/// caching allocator the tensors are used on that stream.
void wait_for_copy(const std::shared_ptr<void>& copied, Batch& batch);

/// While in scope, the current CUDA stream of `device` is a side stream that first waits for the
/// previous current stream; at the end, the previous one waits for the side stream. Eager warm-up
/// steps before a capture run like this, as PyTorch's CUDA graph recipe asks.
class SideStream {
 public:
  explicit SideStream(torch::Device device);
  ~SideStream();
  SideStream(const SideStream&) = delete;
  SideStream& operator=(const SideStream&) = delete;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// A CUDA graph (at::cuda::CUDAGraph): kernels launched on the device between begin() and end()
/// are recorded, not run; replay() runs them again with the same addresses.
class CudaGraph {
 public:
  explicit CudaGraph(torch::Device device);
  ~CudaGraph();
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;
  /// Starts capturing on a capture stream of its own; `share` (captured before) lends its memory
  /// pool, so this graph may read the tensors that one wrote.
  void begin(const CudaGraph* share = nullptr);
  void end();
  /// Ends a capture after an error (nothing is kept; libtorch's CUDA RNG may be left unusable,
  /// so the caller stops the run); never throws.
  void abort() noexcept;
  void replay();
  bool capturing() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ktf::detail
