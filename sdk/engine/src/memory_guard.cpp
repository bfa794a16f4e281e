#include "memory_guard.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <torch/version.h>

#include <atomic>
#include <mutex>

#include "ktf/error.h"
#include "ktf/memory.h"

namespace ktf::detail {
namespace {

constexpr uint64_t kCheckedBytes = uint64_t{64} << 20;

std::atomic<int> building{0};

class CheckingAllocator final : public c10::Allocator {
 public:
  explicit CheckingAllocator(c10::Allocator* inner) : inner_(inner) {}

#if TORCH_VERSION_MAJOR >= 2
  c10::DataPtr allocate(size_t n) override {
    check(n);
    return inner_->allocate(n);
  }
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    inner_->copy_data(dest, src, count);
  }
  bool is_simple_data_ptr(const c10::DataPtr& data_ptr) const override {
    return inner_->is_simple_data_ptr(data_ptr);
  }
#else
  c10::DataPtr allocate(size_t n) const override {
    check(n);
    return inner_->allocate(n);
  }
#endif
  c10::DeleterFnPtr raw_deleter() const override { return inner_->raw_deleter(); }

 private:
  static void check(size_t n) {
    if (n < kCheckedBytes) return;
    auto available = available_memory();
    if (!available || n <= *available) return;
    const bool config = building.load() > 0;
    throw Error("a tensor of " + size_text(n) + " does not fit in the " + size_text(*available) +
                    " of memory this machine has available" +
                    (config ? " (make the data or the model smaller)" : ""),
                {}, config ? kExitConfig : kExitRuntime);
  }
  c10::Allocator* inner_;
};

}  // namespace

void install_memory_guard() {
  static std::once_flag once;
  std::call_once(once, [] {
    static CheckingAllocator guard(c10::GetCPUAllocator());
    c10::SetCPUAllocator(&guard, /*priority=*/1);
  });
}

BuildingScope::BuildingScope() { ++building; }
BuildingScope::~BuildingScope() { --building; }

}  // namespace ktf::detail
