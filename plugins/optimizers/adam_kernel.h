// One pass of Adam / AdamW over flat CPU buffers: see adam_kernel.cpp.
#pragma once

#include <torch/types.h>

namespace ktf::optimizers {

/// The scalars of one Adam step, as torch::optim::Adam / AdamW compute them.
struct AdamStepScalars {
  double beta1, beta2;
  double step_size;  ///< lr / (1 - beta1^t)
  double sqrt_c2;    ///< sqrt(1 - beta2^t)
  double eps;
  double weight_decay;  ///< Adam: added to the gradient as weight_decay * param; 0 for AdamW
  double param_decay;   ///< AdamW: the param is first multiplied by this (1 - lr * wd); else 1
};

/// Whether adam_update_cpu takes these buffers: contiguous float or double CPU tensors.
bool adam_kernel_applies(const torch::Tensor& param);

/// param, exp_avg, exp_avg_sq (and max_exp_avg_sq when defined: AMSGrad) updated in place with
/// the gradient `grad`, element by element in one pass; the arithmetic of torch's Adam, in the
/// same order, so results agree to rounding.
void adam_update_cpu(torch::Tensor& param, const torch::Tensor& grad, torch::Tensor& exp_avg,
                     torch::Tensor& exp_avg_sq, torch::Tensor& max_exp_avg_sq,
                     const AdamStepScalars& s);

}  // namespace ktf::optimizers
