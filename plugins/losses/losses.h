// Registration functions of the losses plugin, one per component file, and the target-shape
// helper the element-wise losses share.
#pragma once

#include <ktf/error.h>
#include <ktf/registry.h>

#include <string>

namespace ktf::losses {
void register_cross_entropy(Registrar& r);
void register_binary_cross_entropy(Registrar& r);
void register_regression(Registrar& r);  // MSE, L1, Huber
void register_triplet_margin(Registrar& r);

/// `target` as a tensor of `output`'s shape and dtype for an element-wise loss. Equal shapes pass;
/// [N] against [N, 1] (either way round) is reshaped, as Keras does; anything else is a ktf::Error
/// naming the loss and both shapes.
inline torch::Tensor target_like(const torch::Tensor& output, const torch::Tensor& target,
                                 const std::string& loss) {
  torch::Tensor t = target;
  if (t.sizes() != output.sizes()) {
    if (t.dim() + 1 == output.dim() && output.size(-1) == 1 &&
        t.sizes() == output.sizes().slice(0, t.dim())) {
      t = t.unsqueeze(-1);
    } else if (output.dim() + 1 == t.dim() && t.size(-1) == 1 &&
               output.sizes() == t.sizes().slice(0, output.dim())) {
      t = t.squeeze(-1);
    } else {
      KTF_CHECK(false, loss, ": the target shape ", t.sizes(), " does not match the output shape ",
                output.sizes());
    }
  }
  return t.to(output.scalar_type());
}
}  // namespace ktf::losses
