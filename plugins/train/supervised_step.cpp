// ktf.train.steps.Supervised: the standard optimisation step (forward, loss, backward, optional
// gradient-norm clipping, optimizer step every `grad_accumulation` batches). KerasTrainLoop runs
// it; CustomTrainLoop runs it when no other train_step is given.
#include <ktf/components.h>
#include <ktf/registry.h>

#include "train.h"

namespace ktf::train {
namespace {

struct SupervisedOptions {
  std::optional<double> clip_grad_norm;  ///< clip the global L2 norm of the gradients; null = off
  int64_t grad_accumulation = 1;         ///< batches whose gradients are summed per optimizer step
};

/// Parameters of every optimizer group that have a gradient.
std::vector<torch::Tensor> grads_of(Optimizer& optimizer) {
  std::vector<torch::Tensor> grads;
  for (auto& group : optimizer.param_groups())
    for (auto& p : group.params())
      if (p.grad().defined()) grads.push_back(p.grad());
  return grads;
}

/// Sets every gradient to undefined (zero_grad with set_to_none, on libtorch 1.13 and 2.x), or
/// zeroes an optimizer's own gradient storage in place (ktf::FlatGradients).
void clear_grads(Optimizer& optimizer) {
  if (auto* flat = dynamic_cast<FlatGradients*>(&optimizer)) return flat->zero_gradients();
  for (auto& group : optimizer.param_groups())
    for (auto& p : group.params()) p.mutable_grad() = torch::Tensor();
}

class SupervisedStep : public ReportingStep {
 public:
  SupervisedStep(std::optional<double> clip, int64_t accumulation)
      : clip_(clip), accumulation_(accumulation) {
    KTF_CHECK(!clip || *clip > 0, "clip_grad_norm must be > 0 or null, got ", clip.value_or(0));
    KTF_CHECK(accumulation >= 1, "grad_accumulation must be >= 1, got ", accumulation);
  }

  torch::Tensor step(TrainContext& ctx, Batch& batch) override {
    KTF_CHECK(ctx.model && ctx.loss && ctx.optimizer,
              "ktf.train.steps.Supervised needs a model, a loss and an optimizer");
    if (pending_ == 0) clear_grads(*ctx.optimizer);
    auto output = ctx.model->forward(batch.input);
    auto loss = ctx.loss->compute(output, batch.target);
    KTF_CHECK_RUNTIME(loss.numel() == 1, "the loss must be a scalar, got shape ", loss.sizes());
    (accumulation_ > 1 ? loss / static_cast<double>(accumulation_) : loss).backward();
    ++pending_;
    last_output = output.detach();
    last_stepped = pending_ >= accumulation_;
    if (last_stepped) apply(ctx, 1.0);
    return loss.detach();
  }

  bool finish_epoch(TrainContext& ctx) override {
    if (pending_ == 0) return false;
    // Gradients of a partial group were divided by grad_accumulation: rescale to their mean.
    apply(ctx, static_cast<double>(accumulation_) / static_cast<double>(pending_));
    return true;
  }

 private:
  void apply(TrainContext& ctx, double scale) {
    {
      torch::NoGradGuard no_grad;
      auto grads = grads_of(*ctx.optimizer);
      if (scale != 1.0)
        for (auto& g : grads) g.mul_(scale);
      if (clip_ && !grads.empty()) {
        // As torch.nn.utils.clip_grad_norm_, without reading the norm back to the host.
        std::vector<torch::Tensor> norms;
        for (auto& g : grads) norms.push_back(g.norm(2).to(torch::kFloat));
        auto total = torch::stack(norms).norm(2);
        auto coef = (*clip_ / (total + 1e-6)).clamp_max(1.0);
        for (auto& g : grads) g.mul_(coef.to(g.dtype()));
      }
    }
    ctx.optimizer->step();
    // Gradients are not kept past the step (memory), except in an optimizer's own storage.
    if (!dynamic_cast<FlatGradients*>(ctx.optimizer.get())) clear_grads(*ctx.optimizer);
    pending_ = 0;
  }

  std::optional<double> clip_;
  int64_t accumulation_;
  int64_t pending_ = 0;
};

}  // namespace

std::shared_ptr<ReportingStep> make_supervised_step(std::optional<double> clip_grad_norm,
                                                    int64_t grad_accumulation) {
  return std::make_shared<SupervisedStep>(clip_grad_norm, grad_accumulation);
}

void register_supervised_step(Registrar& r) {
  r.add(define<TrainStep, SupervisedOptions>(
            "ktf.train.steps.Supervised",
            "forward, loss, backward, optional gradient clipping, optimizer step")
            .arg("clip_grad_norm", &SupervisedOptions::clip_grad_norm,
                 "clip the global L2 norm of the gradients to this value; null = off")
            .arg("grad_accumulation", &SupervisedOptions::grad_accumulation,
                 "batches whose gradients are summed per optimizer step")
            .example(Json::object({{"clip_grad_norm", 5.0}}))
            .build([](const SupervisedOptions& o, BuildContext&) {
              return make_supervised_step(o.clip_grad_norm, o.grad_accumulation);
            }));
}

}  // namespace ktf::train
