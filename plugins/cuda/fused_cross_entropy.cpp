// ktf_cuda: a plugin with its own CUDA kernel. ktf.losses.FusedCrossEntropy is softmax
// cross-entropy with label smoothing on class-index targets, as ktf.losses.CrossEntropy (same
// value, same gradient; no class weights, no ignored index), computed on a GPU by two kernels of
// fused_cross_entropy.cu (one for the forward pass, one for backward) and a mean, instead of the
// half-dozen libtorch launches of log_softmax, gather, the smoothing sum and the mean. On the CPU
// it computes the same formula with libtorch ops, so a config that names it runs anywhere. Built
// only where CMake finds nvcc and libtorch has CUDA (plugins/cuda/CMakeLists.txt); docs/plugins.md
// shows the same layout out of tree.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <ktf/components.h>
#include <ktf/plugin.h>
#include <ktf/registry.h>
#include <torch/torch.h>

#include "fused_cross_entropy_kernels.h"

namespace ktf::cuda_plugin {
namespace {

void check_cuda(int code, const char* what) {
  KTF_CHECK_RUNTIME(code == 0, "FusedCrossEntropy: ", what,
                    " kernel: ", cuda_kernels::error_text(code));
}

/// The autograd function over the two kernels (CUDA tensors only).
class FusedFunction : public torch::autograd::Function<FusedFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& logits,
                               const torch::Tensor& targets, double smoothing) {
    const c10::cuda::CUDAGuard guard(logits.device());
    KTF_CHECK(targets.device() == logits.device(), "FusedCrossEntropy: targets on ",
              targets.device().str(), ", logits on ", logits.device().str());
    auto x = logits.to(torch::kFloat).contiguous();
    auto t = targets.to(torch::kLong).contiguous();
    const int64_t n = x.size(0), c = x.size(1);
    auto lse = torch::empty({n}, x.options());
    auto rows = torch::empty({n}, x.options());
    check_cuda(cuda_kernels::fused_cross_entropy_forward(
                   x.data_ptr<float>(), t.data_ptr<int64_t>(), n, c, static_cast<float>(smoothing),
                   lse.data_ptr<float>(), rows.data_ptr<float>(),
                   c10::cuda::getCurrentCUDAStream(x.device().index()).stream()),
               "forward");
    auto loss = rows.mean();  // a fixed-order reduction: the same bits every run (NaN when empty)
    ctx->save_for_backward({x, t, lse});
    ctx->saved_data["smoothing"] = smoothing;
    ctx->saved_data["dtype"] = static_cast<int64_t>(logits.scalar_type());
    return loss;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const c10::cuda::CUDAGuard guard(x.device());
    auto grad_loss = grad_outputs[0].to(torch::kFloat).contiguous();
    auto grad = torch::empty_like(x);
    check_cuda(
        cuda_kernels::fused_cross_entropy_backward(
            x.data_ptr<float>(), saved[1].data_ptr<int64_t>(), saved[2].data_ptr<float>(),
            grad_loss.data_ptr<float>(), x.size(0), x.size(1),
            static_cast<float>(ctx->saved_data["smoothing"].toDouble()), grad.data_ptr<float>(),
            c10::cuda::getCurrentCUDAStream(x.device().index()).stream()),
        "backward");
    const auto dtype = static_cast<torch::ScalarType>(ctx->saved_data["dtype"].toInt());
    return {grad.to(dtype), torch::Tensor(), torch::Tensor()};
  }
};

struct Options {
  double label_smoothing = 0.0;  ///< weight of the uniform distribution in the target
};

}  // namespace

/// The reference: the same value through libtorch ops (what the CPU path computes, and what the
/// GPU test and benchmark compare the kernels with).
torch::Tensor reference_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets,
                                      double smoothing) {
  auto log_probs = torch::log_softmax(
      logits.scalar_type() == torch::kDouble ? logits : logits.to(torch::kFloat), 1);
  auto nll = -log_probs.gather(1, targets.to(torch::kLong).unsqueeze(1)).squeeze(1);
  auto smooth = -log_probs.mean(1);
  return ((1 - smoothing) * nll + smoothing * smooth).mean();
}

torch::Tensor fused_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets,
                                  double smoothing) {
  KTF_CHECK(logits.dim() == 2, "expected output [batch, classes], got ", logits.sizes());
  auto t = targets.dim() == 2 && targets.size(1) == 1 ? targets.squeeze(1) : targets;
  KTF_CHECK(t.dim() == 1 && t.size(0) == logits.size(0), "expected class-index targets [",
            logits.size(0), "], got ", targets.sizes());
  // The kernels compute in float: double logits (a gradient check) take the reference path.
  if (!logits.is_cuda() || logits.scalar_type() == torch::kDouble)
    return reference_cross_entropy(logits, t, smoothing);
  return FusedFunction::apply(logits, t, smoothing);
}

namespace {

class FusedCrossEntropy : public Loss {
 public:
  explicit FusedCrossEntropy(const Options& o) : o_(o) {}
  torch::Tensor compute(const torch::Tensor& output, const torch::Tensor& target) override {
    return fused_cross_entropy(output, target, o_.label_smoothing);
  }

 private:
  Options o_;
};

void register_all(Registrar& r) {
  r.add(define<Loss, Options>("ktf.losses.FusedCrossEntropy",
                              "softmax cross-entropy with label smoothing on class indices, as "
                              "ktf.losses.CrossEntropy, in two CUDA kernels on a GPU")
            .arg("label_smoothing", &Options::label_smoothing,
                 "weight of the uniform distribution mixed into the target, in [0, 1)")
            .min(0)
            .below(1)
            .example(Json::object({{"label_smoothing", 0.1}}))
            .build([](const Options& o, BuildContext&) {
              return std::make_shared<FusedCrossEntropy>(o);
            }));
}

}  // namespace
}  // namespace ktf::cuda_plugin

KTF_PLUGIN("ktf_cuda", KTF_SDK_VERSION,
           "CUDA kernels: ktf.losses.FusedCrossEntropy (softmax cross-entropy with label "
           "smoothing)",
           ktf::cuda_plugin::register_all)
