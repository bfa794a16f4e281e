// Engine-internal: a CPU allocator in front of libtorch's that refuses a tensor larger than the
// memory this machine (or its cgroup) has available (ktf::available_memory()), with a ktf::Error
// naming both sizes, instead of letting the kernel's OOM killer end the process while the
// tensor's pages are touched.
#pragma once

namespace ktf::detail {

/// Puts the checking allocator in front of libtorch's CPU allocator (once per process). Tensors of
/// at least 64 MiB are compared with available_memory() when they are allocated.
void install_memory_guard();

/// While one lives, a refused allocation is a configuration error (exit 2: datasets and models
/// are being built, the config asked for too much); otherwise a run-time error (exit 1).
class BuildingScope {
 public:
  BuildingScope();
  ~BuildingScope();
  BuildingScope(const BuildingScope&) = delete;
  BuildingScope& operator=(const BuildingScope&) = delete;
};

}  // namespace ktf::detail
