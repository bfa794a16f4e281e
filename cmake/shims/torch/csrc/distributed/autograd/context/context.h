// Used only where libtorch's headers lack this file: Debian's libtorch-dev 1.13 ships c10d's
// reducer.hpp but not the distributed-autograd header it includes. The Reducer's declaration needs
// two names from it: the gradient-callback type (which it checks against its own with a
// static_assert) and the pointer type of a shared_ptr member. Both are declared here with the
// types libtorch gives them, so the Reducer's layout is unchanged; nothing here is defined or
// called by ktf.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>

namespace torch {
namespace distributed {
namespace autograd {

class DistAutogradContext {
 public:
  using GradCallback = std::function<bool(at::Tensor&)>;
};
using ContextPtr = std::shared_ptr<DistAutogradContext>;

}  // namespace autograd
}  // namespace distributed
}  // namespace torch
