// Adam and AdamW (decoupled weight decay).
//
// When every parameter shares one dtype and device and is dense (the usual case), the optimizer is
// a FlatAdam: the parameters and their gradients become views of two flat buffers, so one update
// is about ten whole-buffer ops instead of about ten per parameter tensor, and on the CPU one pass
// of a fused loop (adam_kernel.cpp). It derives from
// torch::optim::Adam / AdamW (same options, same update formula, element for element) and
// implements ktf::FlatGradients, so the train step zeroes the gradient buffer in one op and
// backward accumulates into it. Like zero_grad(set_to_none=false) in PyTorch, a parameter that got
// no gradient in a step is updated with a zero gradient (torch's Adam would skip it).
// Anything that re-points a parameter or a gradient (torch::load, .to(device), set_to_none) is
// noticed at the next step and the parameter is copied back into the buffer. When the optimizer
// is destroyed (at the end of a cycle), every parameter gets its own storage back.
#include <ktf/components.h>
#include <ktf/registry.h>

#include <cmath>

#include "adam_kernel.h"
#include "optimizers.h"

namespace ktf::optimizers {
namespace {

/// Adam's and AdamW's arguments; they differ only in weight_decay's meaning and default.
template <bool Decoupled>
struct AdamOptionsT {
  double learning_rate = 0.001;  ///< step size
  double beta_1 = 0.9;           ///< decay rate of the first-moment estimate, in [0, 1)
  double beta_2 = 0.999;         ///< decay rate of the second-moment estimate, in [0, 1)
  double epsilon = 1e-7;         ///< added to the denominator (Keras default; torch uses 1e-8)
  /// Adam: L2 penalty on the gradient (default 0); AdamW: decoupled decay (default 0.004 as
  /// Keras; torch uses 0.01)
  double weight_decay = Decoupled ? 0.004 : 0.0;
  bool amsgrad = false;  ///< use the AMSGrad variant
  /// flat buffers (see the file comment): true, false, or null = auto (flat on a GPU, or when the
  /// parameter tensors average under 8192 elements)
  std::optional<bool> fused;
};
using AdamOptions = AdamOptionsT<false>;
using AdamWOptions = AdamOptionsT<true>;

template <bool Decoupled>
void check(const AdamOptionsT<Decoupled>& o) {
  KTF_CHECK(o.learning_rate >= 0, "learning_rate must be >= 0, got ", o.learning_rate);
  KTF_CHECK(o.beta_1 >= 0 && o.beta_1 < 1, "beta_1 must be in [0, 1), got ", o.beta_1);
  KTF_CHECK(o.beta_2 >= 0 && o.beta_2 < 1, "beta_2 must be in [0, 1), got ", o.beta_2);
  KTF_CHECK(o.epsilon >= 0, "epsilon must be >= 0, got ", o.epsilon);
  KTF_CHECK(o.weight_decay >= 0, "weight_decay must be >= 0, got ", o.weight_decay);
}

/// Whether `fused: null` flattens: per parameter tensor, flattening saves about seven ops (~2 us
/// each on a CPU) and costs two extra passes over its gradient (zeroing, then accumulating in
/// place instead of taking autograd's tensor). On the 2-core machine ResNet-18 (11.2M elements in
/// 62 tensors) ran about 6 % slower flat, the tiny MLP (25k in 4) about 6 % faster. On a GPU the
/// saved kernel launches always win.
bool flat_pays_off(const std::vector<torch::Tensor>& params) {
  int64_t total = 0;
  for (const auto& p : params) total += p.numel();
  return params.front().is_cuda() || total < 8192 * static_cast<int64_t>(params.size());
}

/// True when the parameters can share one flat buffer: one dtype and device, dense, no overlap.
bool flattenable(const std::vector<torch::Tensor>& params) {
  for (const auto& p : params)
    if (p.layout() != torch::kStrided || !p.is_non_overlapping_and_dense() ||
        p.scalar_type() != params.front().scalar_type() || p.device() != params.front().device())
      return false;
  return !params.empty();
}

/// Adam (Decoupled = false) or AdamW over flat buffers; see the file comment.
template <class Base, class Options, bool Decoupled>
class FlatAdam : public Base, public FlatGradients, public CapturableOptimizer {
 public:
  FlatAdam(const std::vector<torch::Tensor>& params, const Options& options)
      : Base(params, options), params_(params) {
    torch::NoGradGuard no_grad;
    int64_t total = 0;
    for (const auto& p : params_) {
      offsets_.push_back(total);
      total += p.numel();
    }
    auto opts = params_.front().options();
    flat_ = torch::empty({total}, opts);
    grad_ = torch::zeros({total}, opts);
    exp_avg_ = torch::zeros({total}, opts);
    exp_avg_sq_ = torch::zeros({total}, opts);
    for (size_t i = 0; i < params_.size(); ++i) {
      param_views_.push_back(view_of(flat_, i));
      grad_views_.push_back(view_of(grad_, i));
      adopt_param(i);
      params_[i].mutable_grad() = grad_views_[i];
    }
  }

  /// Gives every parameter still in the buffer its own storage back, so that a later optimizer
  /// (the next cycle's) and saved weights do not carry this buffer along.
  ~FlatAdam() override {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < params_.size(); ++i) {
      if (is_view(params_[i], param_views_[i])) params_[i].set_data(params_[i].detach().clone());
      if (is_view(params_[i].grad(), grad_views_[i])) params_[i].mutable_grad() = torch::Tensor();
    }
  }

  void zero_gradients() override {
    grad_.zero_();
    for (size_t i = 0; i < params_.size(); ++i) params_[i].mutable_grad() = grad_views_[i];
  }

  bool make_capturable() override {
    if (!flat_.is_cuda()) return false;
    if (!steps_t_.defined()) {
      auto opts = flat_.options().dtype(torch::kDouble);
      steps_t_ = torch::full({}, static_cast<double>(steps_), opts);
      lr_t_ = torch::empty({}, opts);
      auto& o = static_cast<Options&>(this->param_groups().front().options());
      if (o.amsgrad() && !max_exp_avg_sq_.defined())
        max_exp_avg_sq_ = torch::zeros_like(exp_avg_sq_);
    }
    before_replay();
    return true;
  }

  void before_replay() override {
    if (lr_t_.defined()) lr_t_.fill_(this->param_groups().front().options().get_lr());
  }

  torch::Tensor step(torch::optim::Optimizer::LossClosure closure = nullptr) override {
    torch::Tensor loss;
    if (closure) {
      torch::AutoGradMode enable(true);
      loss = closure();
    }
    torch::NoGradGuard no_grad;
    sync();
    auto& o = static_cast<Options&>(this->param_groups().front().options());
    if (steps_t_.defined()) {
      device_step(o);
      return loss;
    }
    ++steps_;
    const double beta1 = std::get<0>(o.betas()), beta2 = std::get<1>(o.betas());
    const double correction1 = 1 - std::pow(beta1, static_cast<double>(steps_));
    const double correction2 = 1 - std::pow(beta2, static_cast<double>(steps_));
    if (o.amsgrad() && !max_exp_avg_sq_.defined()) max_exp_avg_sq_ = torch::zeros_like(exp_avg_sq_);
    if (adam_kernel_applies(flat_)) {
      const double wd = o.weight_decay();
      adam_update_cpu(flat_, grad_, exp_avg_, exp_avg_sq_, max_exp_avg_sq_,
                      {beta1, beta2, o.lr() / correction1, std::sqrt(correction2), o.eps(),
                       Decoupled ? 0.0 : wd, Decoupled ? 1 - o.lr() * wd : 1.0});
      return loss;
    }
    if (Decoupled && o.weight_decay() != 0) flat_.mul_(1 - o.lr() * o.weight_decay());
    const torch::Tensor second = update_moments(o, beta1, beta2);
    auto denom = (second.sqrt() / std::sqrt(correction2)).add_(o.eps());
    flat_.addcdiv_(exp_avg_, denom, -o.lr() / correction1);
    return loss;
  }

  void save(torch::serialize::OutputArchive& archive) const override {
    Base::save(archive);
    const int64_t steps = steps_t_.defined() ? steps_t_.item<int64_t>() : steps_;
    archive.write("ktf_flat_steps", torch::tensor(steps, torch::kLong));
    archive.write("ktf_flat_exp_avg", exp_avg_);
    archive.write("ktf_flat_exp_avg_sq", exp_avg_sq_);
    if (max_exp_avg_sq_.defined()) archive.write("ktf_flat_max_exp_avg_sq", max_exp_avg_sq_);
  }

  void load(torch::serialize::InputArchive& archive) override {
    Base::load(archive);
    torch::Tensor steps, m, v, vmax;
    KTF_CHECK(archive.try_read("ktf_flat_steps", steps) &&
                  archive.try_read("ktf_flat_exp_avg", m) &&
                  archive.try_read("ktf_flat_exp_avg_sq", v),
              "the optimizer state was not saved by ktf's flat Adam");
    KTF_CHECK(m.numel() == exp_avg_.numel(), "the saved optimizer state has ", m.numel(),
              " elements, the parameters ", exp_avg_.numel());
    torch::NoGradGuard no_grad;
    steps_ = steps.item<int64_t>();
    if (steps_t_.defined()) steps_t_.fill_(static_cast<double>(steps_));
    exp_avg_.copy_(m);
    exp_avg_sq_.copy_(v);
    if (archive.try_read("ktf_flat_max_exp_avg_sq", vmax))
      max_exp_avg_sq_ = vmax.to(exp_avg_.options());
  }

 private:
  /// Parameter i's slice of `buffer`, with the parameter's shape and strides. It shares the
  /// buffer's storage without being an autograd view, so libtorch's zero_grad() (detach_) works.
  torch::Tensor view_of(const torch::Tensor& buffer, size_t i) const {
    const auto& p = params_[i];
    torch::Tensor slice = torch::empty({0}, buffer.options());
    slice.set_(buffer.storage(), offsets_[i], p.sizes(), p.strides());
    return slice;
  }
  bool is_view(const torch::Tensor& t, const torch::Tensor& view) const {
    return t.defined() && t.data_ptr() == view.data_ptr() && t.strides() == view.strides();
  }
  /// Copies parameter i into the buffer and makes it a view of it.
  void adopt_param(size_t i) {
    param_views_[i].copy_(params_[i].detach());
    params_[i].set_data(param_views_[i]);
  }
  /// Adam's first and second moments from the gradient (with Adam's L2 term, not AdamW's decay);
  /// returns the second moment the step divides by (AMSGrad's running maximum of it).
  torch::Tensor update_moments(const Options& o, double beta1, double beta2) {
    torch::Tensor g = grad_;
    if (!Decoupled && o.weight_decay() != 0) g = g.add(flat_, o.weight_decay());
    exp_avg_.mul_(beta1).add_(g, 1 - beta1);
    exp_avg_sq_.mul_(beta2).addcmul_(g, g, 1 - beta2);
    if (!o.amsgrad()) return exp_avg_sq_;
    torch::max_out(max_exp_avg_sq_, max_exp_avg_sq_, exp_avg_sq_);
    return max_exp_avg_sq_;
  }

  /// The update with the step count and learning rate in device tensors (capturable, as PyTorch's
  /// Adam(capturable=True)): the same formula, its scalars computed on the device. Everything it
  /// allocates is freed at the end, so a captured graph holds no stale temporary.
  void device_step(Options& o) {
    const double beta1 = std::get<0>(o.betas()), beta2 = std::get<1>(o.betas());
    steps_t_.add_(1);
    auto correction1 = 1 - torch::pow(beta1, steps_t_);
    auto correction2_sqrt = (1 - torch::pow(beta2, steps_t_)).sqrt();
    auto step_size = (lr_t_ / correction1).to(flat_.scalar_type());
    if (Decoupled && o.weight_decay() != 0)
      flat_.mul_((1 - lr_t_ * o.weight_decay()).to(flat_.scalar_type()));
    const torch::Tensor second = update_moments(o, beta1, beta2);
    auto denom = (second.sqrt() / correction2_sqrt.to(flat_.scalar_type())).add_(o.eps());
    flat_.sub_(exp_avg_ / denom * step_size);
  }

  /// Puts back into the buffers any parameter or gradient that was re-pointed since last step.
  void sync() {
    for (size_t i = 0; i < params_.size(); ++i) {
      auto& p = params_[i];
      if (!is_view(p, param_views_[i])) {
        KTF_CHECK_RUNTIME(p.sizes() == param_views_[i].sizes() && p.device() == flat_.device() &&
                              p.scalar_type() == flat_.scalar_type(),
                          "a parameter of the flat Adam changed shape, device or dtype");
        adopt_param(i);
      }
      auto& g = p.mutable_grad();
      if (is_view(g, grad_views_[i])) continue;
      if (g.defined())
        grad_views_[i].copy_(g);
      else
        grad_views_[i].zero_();
      g = grad_views_[i];
    }
  }

  std::vector<torch::Tensor> params_;
  std::vector<int64_t> offsets_;
  torch::Tensor flat_, grad_, exp_avg_, exp_avg_sq_, max_exp_avg_sq_;
  std::vector<torch::Tensor> param_views_, grad_views_;
  int64_t steps_ = 0;
  /// Capturable mode (make_capturable): the step count and learning rate on the device.
  torch::Tensor steps_t_, lr_t_;
};

/// Adam (Decoupled = false) or AdamW from the Keras-named options: flat when the parameters allow.
template <bool Decoupled>
std::shared_ptr<Optimizer> make(const AdamOptionsT<Decoupled>& o, BuildContext& ctx) {
  using Torch = std::conditional_t<Decoupled, torch::optim::AdamW, torch::optim::Adam>;
  using TorchOptions =
      std::conditional_t<Decoupled, torch::optim::AdamWOptions, torch::optim::AdamOptions>;
  check(o);
  const auto& params = trainable_parameters(ctx);
  auto options = TorchOptions(o.learning_rate)
                     .betas({o.beta_1, o.beta_2})
                     .eps(o.epsilon)
                     .weight_decay(o.weight_decay)
                     .amsgrad(o.amsgrad);
  return torch_call([&]() -> std::shared_ptr<Optimizer> {
    KTF_CHECK(!o.fused || !*o.fused || flattenable(params),
              "fused: true needs parameters of one dtype and device, dense");
    if (o.fused ? *o.fused : flattenable(params) && flat_pays_off(params))
      return std::make_shared<FlatAdam<Torch, TorchOptions, Decoupled>>(params, options);
    return std::make_shared<Torch>(params, options);
  });
}

/// The arguments Adam and AdamW share; only weight_decay's meaning differs.
template <class Options>
Definition<Optimizer, Options> adam_args(Definition<Optimizer, Options> d,
                                         const std::string& weight_decay_doc) {
  return d.arg("learning_rate", &Options::learning_rate, "step size, >= 0 (default 0.001)")
      .min(0)
      .arg("beta_1", &Options::beta_1,
           "decay rate of the first-moment estimate, in [0, 1) (default 0.9)")
      .min(0)
      .below(1)
      .arg("beta_2", &Options::beta_2,
           "decay rate of the second-moment estimate, in [0, 1) (default 0.999)")
      .min(0)
      .below(1)
      .arg("epsilon", &Options::epsilon,
           "added to the denominator for stability, >= 0 (default 1e-7 as Keras; torch uses 1e-8)")
      .min(0)
      .arg("weight_decay", &Options::weight_decay, weight_decay_doc)
      .min(0)
      .arg("amsgrad", &Options::amsgrad, "use the AMSGrad variant (default false)")
      .arg("fused", &Options::fused,
           "keep parameters and gradients in flat buffers (fewer, larger ops): true, false, or "
           "null = auto: on a GPU, or on a CPU when the parameter tensors average under 8192 "
           "elements");
}

}  // namespace

void register_adam(Registrar& r) {
  r.add(adam_args(define<Optimizer, AdamOptions>("ktf.optimizers.Adam",
                                                 "Adam: adaptive moment estimation (Kingma & Ba)")
                      .alias("tf.keras.optimizers.Adam")
                      .alias("torch.optim.Adam"),
                  "L2 penalty added to the gradient as in torch.optim.Adam, >= 0 (default 0); for "
                  "decoupled decay (Keras >= 2.11 semantics) use ktf.optimizers.AdamW")
            .example(Json::object({{"learning_rate", 0.001}}))
            .build(make<false>));
  r.add(adam_args(define<Optimizer, AdamWOptions>(
                      "ktf.optimizers.AdamW",
                      "AdamW: Adam with decoupled weight decay (Loshchilov & Hutter)")
                      .alias("tf.keras.optimizers.AdamW")
                      .alias("torch.optim.AdamW"),
                  "decoupled decay: w -= learning_rate * weight_decay * w each step, >= 0 "
                  "(default 0.004 as Keras; torch uses 0.01)")
            .example(Json::object({{"learning_rate", 0.001}, {"weight_decay", 0.01}}))
            .build(make<true>));
}

}  // namespace ktf::optimizers
