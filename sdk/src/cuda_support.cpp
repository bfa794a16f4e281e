// CUDA pieces of the SDK (see cuda_support.h). The only file that includes CUDA headers.
#include "cuda_support.h"

#include "ktf/error.h"

#if KTF_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include <optional>
#endif

namespace ktf::detail {

#if KTF_WITH_CUDA

namespace {

c10::DeviceIndex index_of(torch::Device device) {
  return device.has_index() ? device.index() : c10::cuda::current_device();
}

}  // namespace

bool cuda_available() { return torch::cuda::is_available(); }

std::shared_ptr<void> copy_batch_async(Batch& batch, torch::Device device) {
  const c10::DeviceIndex index = index_of(device);
  const torch::Device target(torch::kCUDA, index);
  // One copy stream per prefetch thread and device, made once.
  // From the high-priority pool: never one of the (low-priority) side or capture streams.
  thread_local std::optional<c10::cuda::CUDAStream> stream;
  if (!stream || stream->device_index() != index)
    stream = c10::cuda::getStreamFromPool(/*isHighPriority=*/true, index);
  c10::cuda::CUDAStreamGuard on_stream(*stream);
  for (torch::Tensor* t : {&batch.input, &batch.target}) {
    if (!t->defined() || t->device() == target) continue;
    torch::Tensor host = t->is_pinned() ? *t : t->pin_memory();
    *t = host.to(target, /*non_blocking=*/true);
  }
  auto event = std::make_shared<at::cuda::CUDAEvent>();
  event->record(*stream);
  return event;
}

void wait_for_copy(const std::shared_ptr<void>& copied, Batch& batch) {
  auto* event = static_cast<at::cuda::CUDAEvent*>(copied.get());
  for (torch::Tensor* t : {&batch.input, &batch.target}) {
    if (!t->defined() || !t->is_cuda()) continue;
    auto current = c10::cuda::getCurrentCUDAStream(t->device().index());
    event->block(current);
    // Allocated on the copy stream, used on this one: the allocator must not hand the memory to
    // the copy stream again before this stream is done with it.
    t->record_stream(current);
  }
}

struct SideStream::Impl {
  c10::cuda::CUDAStream previous;
  c10::cuda::CUDAStream side;
  std::optional<c10::cuda::CUDAStreamGuard> guard;
  Impl(c10::cuda::CUDAStream p, c10::cuda::CUDAStream s) : previous(p), side(s) {}
};

SideStream::SideStream(torch::Device device) {
  const c10::DeviceIndex index = index_of(device);
  auto previous = c10::cuda::getCurrentCUDAStream(index);
  impl_ = std::make_unique<Impl>(previous, c10::cuda::getStreamFromPool(false, index));
  at::cuda::CUDAEvent ready;
  ready.record(previous);
  ready.block(impl_->side);
  impl_->guard.emplace(impl_->side);
}

SideStream::~SideStream() {
  impl_->guard.reset();
  at::cuda::CUDAEvent done;
  done.record(impl_->side);
  done.block(impl_->previous);
}

struct CudaGraph::Impl {
  c10::DeviceIndex index = 0;
  at::cuda::CUDAGraph graph;
  at::cuda::MempoolId_t pool{0, 0};                 // shared by the graphs of one step
  std::optional<c10::cuda::CUDAStreamGuard> guard;  // the capture stream while capturing
};

CudaGraph::CudaGraph(torch::Device device) : impl_(std::make_unique<Impl>()) {
  impl_->index = index_of(device);
}

CudaGraph::~CudaGraph() { abort(); }

void CudaGraph::begin(const CudaGraph* share) {
  KTF_CHECK_RUNTIME(!impl_->guard, "CUDA graph: a capture is already running");
  // As torch.cuda.graph: finish queued work, then capture on a stream of its own.
  c10::cuda::device_synchronize();
  impl_->guard.emplace(c10::cuda::getStreamFromPool(false, impl_->index));
  impl_->pool = share ? share->impl_->pool : at::cuda::graph_pool_handle();
  try {
    // Thread-local capture: the prefetch thread's pinning and copies (other threads) go on; the
    // kernels autograd's engine launches onto the capture stream are still recorded.
    impl_->graph.capture_begin(impl_->pool, cudaStreamCaptureModeThreadLocal);
  } catch (...) {
    impl_->guard.reset();
    throw;
  }
}

void CudaGraph::end() {
  KTF_CHECK_RUNTIME(impl_->guard, "CUDA graph: no capture is running");
  try {
    impl_->graph.capture_end();
  } catch (...) {
    impl_->guard.reset();
    throw;
  }
  impl_->guard.reset();
}

void CudaGraph::abort() noexcept {
  if (!impl_->guard) return;
  try {
    impl_->graph.capture_end();  // a capture still valid ends with libtorch's own clean-up
  } catch (...) {
    try {
      // An invalidated one: leave capture mode on the stream, and stop allocating to the pool.
      cudaGraph_t partial = nullptr;
      if (cudaStreamEndCapture(impl_->guard->current_stream().stream(), &partial) == cudaSuccess &&
          partial)
        cudaGraphDestroy(partial);
      (void)cudaGetLastError();
      c10::cuda::CUDACachingAllocator::endAllocateToPool(impl_->index, impl_->pool);
    } catch (...) {
    }
  }
  impl_->guard.reset();
}

void CudaGraph::replay() { impl_->graph.replay(); }

bool CudaGraph::capturing() const { return static_cast<bool>(impl_->guard); }

#else  // no CUDA in this libtorch

namespace {
[[noreturn]] void no_cuda() {
  throw Error("this build of ktf has no CUDA (its libtorch is CPU-only)", {}, kExitRuntime);
}
}  // namespace

bool cuda_available() { return false; }
std::shared_ptr<void> copy_batch_async(Batch&, torch::Device) { no_cuda(); }
void wait_for_copy(const std::shared_ptr<void>&, Batch&) { no_cuda(); }
struct SideStream::Impl {};
SideStream::SideStream(torch::Device) { no_cuda(); }
SideStream::~SideStream() = default;
struct CudaGraph::Impl {};
CudaGraph::CudaGraph(torch::Device) { no_cuda(); }
CudaGraph::~CudaGraph() = default;
void CudaGraph::begin(const CudaGraph*) { no_cuda(); }
void CudaGraph::end() { no_cuda(); }
void CudaGraph::abort() noexcept {}
void CudaGraph::replay() { no_cuda(); }
bool CudaGraph::capturing() const { return false; }

#endif

}  // namespace ktf::detail
