#include "ktf/train.h"

#include <ATen/autocast_mode.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cuda_support.h"
#include "ktf/distributed.h"
#include "ktf/process.h"

namespace ktf {
namespace {

std::atomic<bool> g_interrupted{false};
std::atomic<bool> g_checkpoint{false};
std::atomic<bool> g_bf16_warned{false};

/// libtorch 2.4 replaced autocast's per-device functions by ones taking the device type.
#define KTF_AUTOCAST_BY_DEVICE_TYPE \
  (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4))

/// libtorch's autocast to `dtype` (bfloat16, or float16 on CUDA) on `device` while in scope,
/// restoring the previous state after. Autocast keeps the low-precision copies of the weights it
/// made in a cache until the outermost scope ends; clearing it there means the next forward casts
/// the updated weights afresh.
class Autocast {
 public:
  Autocast(torch::Device device, at::ScalarType dtype) : type_(device.type()) {
#if KTF_AUTOCAST_BY_DEVICE_TYPE
    was_enabled_ = at::autocast::is_autocast_enabled(type_);
    was_dtype_ = at::autocast::get_autocast_dtype(type_);
    at::autocast::set_autocast_enabled(type_, true);
    at::autocast::set_autocast_dtype(type_, dtype);
#else
    if (type_ == torch::kCPU) {
      was_enabled_ = at::autocast::is_cpu_enabled();
      was_dtype_ = at::autocast::get_autocast_cpu_dtype();
      at::autocast::set_cpu_enabled(true);
      at::autocast::set_autocast_cpu_dtype(dtype);
    } else {
      was_enabled_ = at::autocast::is_enabled();
      was_dtype_ = at::autocast::get_autocast_gpu_dtype();
      at::autocast::set_enabled(true);
      at::autocast::set_autocast_gpu_dtype(dtype);
    }
#endif
    at::autocast::increment_nesting();
  }
  ~Autocast() {
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
#if KTF_AUTOCAST_BY_DEVICE_TYPE
    at::autocast::set_autocast_enabled(type_, was_enabled_);
    at::autocast::set_autocast_dtype(type_, was_dtype_);
#else
    if (type_ == torch::kCPU) {
      at::autocast::set_cpu_enabled(was_enabled_);
      at::autocast::set_autocast_cpu_dtype(was_dtype_);
    } else {
      at::autocast::set_enabled(was_enabled_);
      at::autocast::set_autocast_gpu_dtype(was_dtype_);
    }
#endif
  }
  Autocast(const Autocast&) = delete;
  Autocast& operator=(const Autocast&) = delete;

 private:
  torch::DeviceType type_;
  bool was_enabled_ = false;
  at::ScalarType was_dtype_ = at::kBFloat16;
};

}  // namespace

Precision parse_precision(const std::string& name) {
  if (name == "fp32") return Precision::FP32;
  if (name == "bf16") return Precision::BF16;
  if (name == "fp16") return Precision::FP16;
  throw Error("precision '" + name + "': expected fp32, bf16 or fp16");
}

const char* precision_name(Precision precision) {
  return precision == Precision::BF16 ? "bf16" : precision == Precision::FP16 ? "fp16" : "fp32";
}

// ---- GradScaler ---------------------------------------------------------------------------------

GradScaler::GradScaler(LossScaleOptions options) : options_(options), scale_(options.init_scale) {
  KTF_CHECK(std::isfinite(options_.init_scale) && options_.init_scale > 0,
            "loss scaling: init_scale must be a finite number > 0, got ", options_.init_scale);
  KTF_CHECK(std::isfinite(options_.growth_factor) && options_.growth_factor > 1,
            "loss scaling: growth_factor must be > 1, got ", options_.growth_factor);
  KTF_CHECK(options_.backoff_factor > 0 && options_.backoff_factor < 1,
            "loss scaling: backoff_factor must be in (0, 1), got ", options_.backoff_factor);
  KTF_CHECK(options_.growth_interval >= 1, "loss scaling: growth_interval must be >= 1, got ",
            options_.growth_interval);
}

torch::Tensor GradScaler::scale(const torch::Tensor& loss) const { return loss * scale_; }

bool GradScaler::unscale(const std::vector<torch::Tensor>& grads, double factor) {
  if (grads.empty()) return true;
  torch::NoGradGuard no_grad;
  const double inv = factor / scale_;
  if (grads.front().is_cuda()) {
    // libtorch's fused kernel (what PyTorch's GradScaler calls): one launch per tensor list.
    auto found = torch::zeros({1}, grads.front().options().dtype(torch::kFloat));
    auto inv_t = torch::full({1}, inv, found.options());
    at::_amp_foreach_non_finite_check_and_unscale_(grads, found, inv_t);
    return found.item<float>() == 0;
  }
  std::vector<torch::Tensor> ok;
  ok.reserve(grads.size());
  for (const auto& g : grads) {
    ok.push_back(g.isfinite().all());
    g.mul_(inv);
  }
  return torch::stack(ok).all().item<bool>();
}

void GradScaler::update(bool finite) {
  if (!finite) {
    scale_ *= options_.backoff_factor;
    growth_tracker_ = 0;
    ++skipped_;
    return;
  }
  if (++growth_tracker_ < options_.growth_interval) return;
  // As PyTorch: the scale stays where it is when growing it would overflow fp32.
  if (std::isfinite(static_cast<float>(scale_ * options_.growth_factor)))
    scale_ *= options_.growth_factor;
  growth_tracker_ = 0;
}

void GradScaler::save_state(State& state) {
  state.set_number("scale", scale_);
  state.set("growth_tracker", growth_tracker_);
  state.set("skipped_steps", skipped_);
}

void GradScaler::load_state(const State& state) {
  scale_ = state.number("scale");
  growth_tracker_ = state.at("growth_tracker").as_int();
  skipped_ = state.at("skipped_steps").as_int();
  KTF_CHECK_RUNTIME(std::isfinite(scale_) && scale_ > 0, "the saved loss scale is ", scale_);
}

void TrainContext::use_precision(const std::string& name, std::optional<bool> loss_scaling,
                                 const LossScaleOptions& scaling) {
  if (!precision_from_command_line) precision = parse_precision(name);
  if (precision == Precision::FP16 && !device.is_cuda())
    throw Error("precision fp16 needs a CUDA device (--device cuda), this cycle runs on " +
                device.str() + "; on a CPU use bf16");
  if (loss_scaling.value_or(precision == Precision::FP16)) {
    if (!scaler_) scaler_ = std::make_shared<GradScaler>(scaling);
  } else {
    scaler_.reset();
  }
  if (precision != Precision::BF16 || !device.is_cpu()) return;
  const std::string missing = cpu_info().bf16_missing();
  if (missing.empty() || g_bf16_warned.exchange(true)) return;
  const std::string line = "warning: precision bf16: this CPU lacks " + missing +
                           "; bf16 runs, but emulated: many times slower than fp32 (convolutions "
                           "most), so use fp32 on this CPU";
  std::cerr << ("ktf: " + line + "\n") << std::flush;  // one write: ranks share a terminal
  if (log_sink) log_sink(line);
}

void request_interrupt(bool value) { g_interrupted.store(value); }
void request_checkpoint(bool value) { g_checkpoint.store(value); }
bool checkpoint_requested() { return g_checkpoint.load(std::memory_order_relaxed); }
bool TrainContext::interrupted() { return g_interrupted.load(std::memory_order_relaxed); }

void TrainContext::log(const std::string& line) const {
  if (!quiet) std::cout << line << std::endl;
  if (log_sink) log_sink(line);
}

bool TrainContext::is_tty() const { return ::isatty(STDOUT_FILENO) == 1; }

void TrainContext::progress(const std::string& line, bool final) const {
  if (!quiet) {
    if (is_tty()) {
      std::cout << "\r\033[K" << line << (final ? "\n" : "") << std::flush;
    } else if (final) {
      std::cout << line << std::endl;
    }
  }
  if (final && log_sink) log_sink(line);
}

void TrainContext::record(const std::string& phase, int64_t ep, const Logs& logs) const {
  if (record_sink) record_sink(phase, ep, logs);
}

void TrainContext::restore() {
  if (restore_hook) restore_hook();
  resuming = false;
}

void TrainContext::safe_point(SafePoint where) {
  if (safe_point_hook) safe_point_hook(where);
}

// ---- CUDA graphs
// ---------------------------------------------------------------------------------

struct TrainContext::Graphs {
  bool decided = false;
  bool off = false;
  int warmed_up = 0;          ///< eager steps run on a side stream so far (3 before the capture)
  int64_t largest_batch = 0;  ///< the capture waits for a batch this large (not a short last one)
  bool captured = false;
  bool in_capture = false;  ///< body is running under capture (backward_and_step splits it)
  bool shape_logged = false;
  std::unique_ptr<detail::CudaGraph> backward, step;  ///< forward+loss+backward; clip+step
  Batch input;                 ///< the captured batch's tensors: every replay copies into them
  torch::Tensor loss, output;  ///< written by every replay
};

namespace {
constexpr int kGraphWarmupSteps = 3;

bool same_layout(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.defined() != b.defined()) return false;
  return !a.defined() || (a.sizes() == b.sizes() && a.strides() == b.strides() &&
                          a.scalar_type() == b.scalar_type() && a.device() == b.device());
}
}  // namespace

std::string TrainContext::graphs_off_reason(bool built_in) {
  if (!device.is_cuda()) return "the cycle runs on " + device.str();
  if (!detail::cuda_available()) return "this libtorch has no CUDA or no GPU is visible";
  if (!built_in && !cuda_graphs.value_or(false))
    return "the train step is a plugin's (cuda_graphs: true captures it, when nothing in it reads "
           "or sets host values per step)";
  if (communicator()) return "distributed training (the gradient all-reduce runs from hooks)";
  if (scaler_) return "loss scaling reads its overflow check on the host every step";
  if (step_settings.accumulation > 1) return "grad_accumulation > 1";
  auto* capturable = dynamic_cast<CapturableOptimizer*>(optimizer.get());
  if (!capturable || !capturable->make_capturable())
    return "the optimizer cannot be captured (the flat Adam and AdamW can: fused null or true)";
  capturable_ = capturable;
  return "";
}

std::optional<std::pair<torch::Tensor, torch::Tensor>> TrainContext::run_graphed(
    const Batch& batch, const StepBody& body, bool built_in) {
  if (cuda_graphs == false) return std::nullopt;
  if (!graphs_) graphs_ = std::make_shared<Graphs>();
  Graphs& g = *graphs_;
  if (g.off) return std::nullopt;
  if (!g.decided) {
    g.decided = true;
    const std::string reason = graphs_off_reason(built_in);
    if (!reason.empty()) {
      g.off = true;
      // Automatic graphs say why they are off only on a GPU, where they would matter.
      if (cuda_graphs == true || device.is_cuda()) log("cuda graphs: off: " + reason);
      return std::nullopt;
    }
  }
  const int64_t rows = batch.input.dim() > 0 ? batch.input.size(0) : 1;
  if (g.warmed_up < kGraphWarmupSteps || (!g.captured && rows < g.largest_batch)) {
    ++g.warmed_up;
    g.largest_batch = std::max(g.largest_batch, rows);
    detail::SideStream side(device);
    return body(batch);
  }
  if (!g.captured) {
    const int64_t step_before = global_step;
    g.input =
        Batch{batch.input.clone(), batch.target.defined() ? batch.target.clone() : torch::Tensor()};
    g.backward = std::make_unique<detail::CudaGraph>(device);
    g.step = std::make_unique<detail::CudaGraph>(device);
    std::pair<torch::Tensor, torch::Tensor> out;
    try {
      g.in_capture = true;
      g.backward->begin();
      out = body(g.input);
      KTF_CHECK_RUNTIME(g.step->capturing() && global_step == step_before + 1,
                        "the step did not run one optimizer step through backward_and_step()");
      g.step->end();
      g.in_capture = false;
      g.step->replay();
    } catch (const std::exception& e) {
      // libtorch's allocator and CUDA RNG do not recover from a capture cut short: the run stops
      // here, naming the way out, rather than go on in an undefined state.
      g.in_capture = false;
      g.backward->abort();
      g.step->abort();
      std::string msg = e.what();
      if (auto* c = dynamic_cast<const c10::Error*>(&e)) msg = c->what_without_backtrace();
      throw Error("cuda graphs: the capture of the train step failed (" +
                      msg.substr(0, msg.find('\n')) +
                      "): something in the step reads or sets the host during it; set the train "
                      "loop's \"cuda_graphs\": false",
                  {}, kExitRuntime);
    }
    g.captured = true;
    g.loss = out.first;
    g.output = out.second;
    log("cuda graphs: the train step is captured (batch " + c10::str(batch.input.sizes()) +
        "); later steps replay it");
  } else {
    if (!same_layout(batch.input, g.input.input) || !same_layout(batch.target, g.input.target)) {
      if (!g.shape_logged && (g.shape_logged = true))
        log("cuda graphs: a batch of shape " + c10::str(batch.input.sizes()) +
            " differs from the captured " + c10::str(g.input.input.sizes()) +
            "; such batches run eagerly");
      return std::nullopt;
    }
    {
      torch::NoGradGuard no_grad;
      g.input.input.copy_(batch.input, /*non_blocking=*/true);
      if (batch.target.defined()) g.input.target.copy_(batch.target, /*non_blocking=*/true);
    }
    g.backward->replay();
    for (auto& cb : callbacks) cb->on_after_backward(*this, this->batch);
    capturable_->before_replay();
    g.step->replay();
    ++global_step;
    if (lr_schedule) lr_schedule->on_batch_end(global_step);
  }
  note_loss(g.loss);
  return std::make_pair(g.loss.detach().clone(),
                        g.output.defined() ? g.output.detach().clone() : g.output);
}

void TrainContext::note_loss(const torch::Tensor& loss) {
  if (!stop_on_nonfinite || (graphs_ && graphs_->in_capture)) return;
  if (loss.device().is_cpu()) {
    const double value = loss.detach().item<double>();
    if (!std::isfinite(value) && (saw_nonfinite_ = true))
      throw Error("the loss is " + std::string(std::isnan(value) ? "nan" : "inf") +
                      ": training stopped before this step changed the weights (the check is "
                      "checkpoint.stop_on_nonfinite)",
                  {}, kExitRuntime);
    return;
  }
  torch::NoGradGuard no_grad;
  auto bad = loss.detach().isfinite().logical_not().reshape({});
  nonfinite_ = nonfinite_.defined() ? nonfinite_.logical_or(bad) : bad;
}

void TrainContext::check_finite() {
  if (!nonfinite_.defined()) return;
  const bool bad = nonfinite_.item<bool>();
  nonfinite_ = torch::Tensor();
  if (bad && (saw_nonfinite_ = true))
    throw Error(
        "the loss was nan or inf in a step since the last check (the check is "
        "checkpoint.stop_on_nonfinite); the weights of this point are not saved",
        {}, kExitRuntime);
}

StepResult& StepResult::add(const std::string& name, const torch::Tensor& value) {
  values.emplace_back(name, value.detach());
  return *this;
}

StepResult& StepResult::add(const std::string& name, double value) {
  values.emplace_back(name, torch::tensor(value, torch::kDouble));
  return *this;
}

namespace detail {
void rethrow_with_context(const std::vector<std::string>& path) {
  try {
    throw;
  } catch (const Error& e) {
    if (!e.path().empty() || e.exit_code() == kExitInterrupted) throw;
    throw e.with_prefix(path);
  } catch (const c10::Error& e) {
    throw Error(e.what_without_backtrace(), path, kExitRuntime);
  } catch (const std::exception& e) {
    throw Error(e.what(), path, kExitRuntime);
  }
}
}  // namespace detail

void clear_gradients(Optimizer& optimizer) {
  if (auto* flat = dynamic_cast<FlatGradients*>(&optimizer)) return flat->zero_gradients();
  for (auto& group : optimizer.param_groups())
    for (auto& p : group.params()) p.mutable_grad() = torch::Tensor();
}

void TrainContext::all_reduce_sum(std::vector<torch::Tensor>& tensors) const {
  if (auto* comm = communicator()) comm->all_reduce_sum(tensors);
}

void TrainContext::all_reduce_metric(Metric& metric) const {
  Communicator* comm = communicator();
  if (!comm) return;
  State mine;
  metric.save_state(mine);
  metric.load_state(all_reduce_state(*comm, mine));
}

void TrainContext::broadcast_buffers() {
  Communicator* comm = communicator();
  if (!comm || !model) return;
  auto buffers = model->buffers();
  if (!buffers.empty()) comm->broadcast(buffers);
}

TimedPart::TimedPart(StepTimes& times, double StepTimes::*part, torch::Device device, bool on)
    : times_(times), part_(part), device_(device), on_(on && times.active) {
  if (on_) start_ = std::chrono::steady_clock::now();
}

TimedPart::~TimedPart() {
  if (!on_) return;
  if (times_.synchronize) synchronize_device(device_);
  times_.*part_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void StepTimes::start_step(torch::Device device, int64_t index) {
  active = !device.is_cuda() || index % 16 == 0;
  synchronize = device.is_cuda() && active;
  if (!active) return;
  if (synchronize) synchronize_device(device);  // the earlier steps' kernels are not this one's
  step_started = std::chrono::steady_clock::now();
}

void StepTimes::end_step(torch::Device device) {
  if (!active) return;
  if (synchronize) synchronize_device(device);
  total += std::chrono::duration<double>(std::chrono::steady_clock::now() - step_started).count();
  ++steps;
  active = false;
}

double StepTimes::other() const {
  return std::max(0.0, total - data - forward - backward - optimizer - callbacks);
}

std::vector<std::pair<std::string, double>> StepTimes::parts(double seconds) const {
  if (steps == 0 || !(total > 0)) return {};
  const double scale = seconds / total;
  return {{"data", data * scale},           {"forward", forward * scale},
          {"backward", backward * scale},   {"optimizer", optimizer * scale},
          {"callbacks", callbacks * scale}, {"other", other() * scale}};
}

std::string StepTimes::summary() const {
  std::string out;
  for (const auto& [name, fraction] : parts(1.0)) {
    char percent[16];
    std::snprintf(percent, sizeof percent, "%.0f%%", 100 * fraction);
    out += (out.empty() ? "" : " · ") + name + " " + percent;
  }
  if (input_bound()) out += " (input-bound)";
  return out;
}

bool StepTimes::input_bound() const { return steps > 0 && total > 0 && data >= 0.2 * total; }

void synchronize_device(torch::Device device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

torch::Tensor TrainContext::forward(const torch::Tensor& input) {
  KTF_CHECK_RUNTIME(model, "the train context has no model");
  TimedPart timer(step_times, &StepTimes::forward, device,
                  model->is_training() && torch::GradMode::is_enabled());
  // As PyTorch's DDP: rank 0's buffers (BatchNorm's running statistics) before every training
  // forward, so that every rank's model is rank 0's.
  if (communicator() && model->is_training()) broadcast_buffers();
  if (precision == Precision::FP32)
    return with_context(model_path, [&] { return model->forward(input); });
  return with_context(model_path, [&] {
    torch::Tensor out;
    {
      Autocast autocast(device, precision == Precision::FP16 ? at::kHalf : at::kBFloat16);
      out = model->forward(input);
    }
    return out.scalar_type() == torch::kBFloat16 || out.scalar_type() == torch::kHalf
               ? out.to(torch::kFloat)
               : out;
  });
}

bool TrainContext::backward_and_step(const torch::Tensor& loss) {
  return backward_and_step(loss, step_settings);
}

bool TrainContext::backward_and_step(const torch::Tensor& loss, const StepSettings& settings) {
  KTF_CHECK(settings.accumulation >= 1, "grad_accumulation must be >= 1, got ",
            settings.accumulation);
  KTF_CHECK(!settings.clip_grad_norm || *settings.clip_grad_norm > 0,
            "clip_grad_norm must be > 0 or null, got ", settings.clip_grad_norm.value_or(0));
  KTF_CHECK_RUNTIME(optimizer, "backward_and_step: the train context has no optimizer");
  KTF_CHECK_RUNTIME(loss.defined() && loss.numel() == 1, "the loss must be a scalar, got shape ",
                    loss.defined() ? loss.sizes() : torch::IntArrayRef{});
  note_loss(loss);
  if (pending_ == 0) {
    clear_gradients(*optimizer);
    active_ = settings;
  }
  {
    TimedPart timer(step_times, &StepTimes::backward, device);
    torch::Tensor scaled = scaler_ ? scaler_->scale(loss) : loss;
    backward(active_.accumulation > 1 ? scaled / static_cast<double>(active_.accumulation) : scaled,
             pending_ + 1 >= active_.accumulation);
  }
  ++pending_;
  if (pending_ < active_.accumulation) return false;
  apply_gradients(active_, 1.0);
  return true;
}

void TrainContext::backward(const torch::Tensor& loss, bool sync) {
  Communicator* comm = communicator();
  if (!comm) return loss.backward();
  if (sync) {
    if (!sync_) {
      // The Reducer expects a gradient for each of its parameters at every step: it gets those
      // the loss reaches (a parameter no step uses, such as an unused head, is left out).
      std::vector<torch::Tensor> params;
      for (auto& group : optimizer->param_groups())
        for (auto& p : group.params())
          if (p.requires_grad()) params.push_back(p);
      auto reached = parameters_reached(loss, params);
      // Every rank must average the same tensors: a graph that depends on the data would pair
      // one rank's gradients with another's of other parameters.
      std::string mine;
      for (const auto& p : params)
        mine += std::any_of(reached.begin(), reached.end(),
                            [&](const torch::Tensor& r) { return r.is_same(p); })
                    ? '1'
                    : '0';
      const auto all = comm->all_gather_bytes(mine);
      for (size_t r = 1; r < all.size(); ++r)
        if (all[r] != all[0])
          throw Error("distributed training: the loss of rank " + std::to_string(r) +
                          " reaches other parameters than rank 0's (" +
                          std::to_string(std::count(all[r].begin(), all[r].end(), '1')) +
                          " against " +
                          std::to_string(std::count(all[0].begin(), all[0].end(), '1')) + " of " +
                          std::to_string(params.size()) +
                          " tensors): a model whose graph depends on the data cannot average "
                          "its gradients (docs/distributed.md)",
                      {}, kExitRuntime);
      if (reached.size() < params.size() && is_main())
        log("distributed: " + std::to_string(params.size() - reached.size()) + " of " +
            std::to_string(params.size()) +
            " trainable parameter tensors get no gradient from the loss; their gradients are "
            "not averaged");
      sync_ = std::make_shared<GradientSync>(*comm, std::move(reached));
    }
    sync_->prepare_for_backward();
  }
  try {
    loss.backward();
  } catch (const std::exception& e) {
    if (!sync) throw;
    std::string msg = e.what();
    if (auto* c = dynamic_cast<const c10::Error*>(&e)) msg = c->what_without_backtrace();
    msg = msg.substr(0, msg.find('\n'));
    const std::string where =
        " on rank " + std::to_string(comm->rank()) + " of " + std::to_string(comm->size());
    if (!is_communication_error(msg)) throw;  // an error of the model's own
    throw DistributedError("backward with the gradient all-reduce failed" + where + ": " + msg +
                           " (" + lost_rank_hint(comm->timeout()) + ")");
  }
}

bool TrainContext::finish_accumulation() {
  if (pending_ == 0) return false;
  if (Communicator* comm = communicator()) {
    // The backwards of a partial group did not communicate: average its gradients now.
    std::vector<torch::Tensor> grads;
    for (auto& group : optimizer->param_groups())
      for (auto& p : group.params())
        if (p.grad().defined()) grads.push_back(p.grad());
    comm->all_reduce_sum(grads);
    torch::NoGradGuard no_grad;
    for (auto& g : grads) g.div_(static_cast<double>(comm->size()));
  }
  // Gradients of a partial group were divided by the full count: rescale them to their mean.
  apply_gradients(active_,
                  static_cast<double>(active_.accumulation) / static_cast<double>(pending_));
  return true;
}

void TrainContext::apply_gradients(const StepSettings& settings, double scale) {
  TimedPart timer(step_times, &StepTimes::optimizer, device);
  pending_ = 0;
  std::vector<torch::Tensor> grads;
  for (auto& group : optimizer->param_groups())
    for (auto& p : group.params())
      if (p.grad().defined()) grads.push_back(p.grad());
  bool finite = true;
  if (scaler_) {
    finite = scaler_->unscale(grads, scale);
  } else if (scale != 1.0) {
    torch::NoGradGuard no_grad;
    for (auto& g : grads) g.mul_(scale);
  }
  const bool capturing = graphs_ && graphs_->in_capture;
  if (capturing) {
    // Under capture: the backward graph ends here and runs once, so that on_after_backward sees
    // this step's gradients; the clipping and the optimizer step go into the second graph.
    graphs_->backward->end();
    graphs_->backward->replay();
  }
  if (!callbacks.empty()) {
    // The hooks count as callbacks, not as the optimizer's time.
    const double before = step_times.callbacks;
    {
      TimedPart hooks(step_times, &StepTimes::callbacks, device);
      for (auto& cb : callbacks) cb->on_after_backward(*this, batch);
    }
    step_times.optimizer -= step_times.callbacks - before;
  }
  if (capturable_) capturable_->before_replay();
  if (capturing) graphs_->step->begin(graphs_->backward.get());
  if (scaler_) scaler_->update(finite);
  if (!finite) {
    // The scale was too large for these gradients: no update, a smaller scale next time.
    ++global_step;
    if (lr_schedule) lr_schedule->on_batch_end(global_step);
    clear_gradients(*optimizer);
    return;
  }
  if (settings.clip_grad_norm && !grads.empty()) {
    // As torch.nn.utils.clip_grad_norm_, without reading the norm back to the host.
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> norms;
    for (auto& g : grads) norms.push_back(g.norm(2).to(torch::kFloat));
    auto total = torch::stack(norms).norm(2);
    auto coef = (*settings.clip_grad_norm / (total + 1e-6)).clamp_max(1.0);
    for (auto& g : grads) g.mul_(coef.to(g.dtype()));
  }
  optimizer->step();
  ++global_step;
  if (lr_schedule) lr_schedule->on_batch_end(global_step);
  // Gradients are not kept past the step (memory), except in an optimizer's own storage.
  if (!dynamic_cast<FlatGradients*>(optimizer.get())) clear_gradients(*optimizer);
}

double seconds_since_process_start() {
  std::ifstream stat("/proc/self/stat"), uptime("/proc/uptime");
  std::string text;
  if (!std::getline(stat, text)) return -1;
  // Field 22 (starttime, in clock ticks after boot) follows the parenthesised command name.
  auto close = text.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream fields(text.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22 && fields >> field; ++i) {
  }
  double up = 0;
  if (!(uptime >> up)) return -1;
  return up - std::stod(field) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

int64_t count_parameters(torch::nn::Module& module, bool trainable_only) {
  int64_t n = 0;
  for (const auto& p : module.parameters())
    if (!trainable_only || p.requires_grad()) n += p.numel();
  return n;
}

torch::Tensor to_device(const torch::Tensor& x, torch::Device device, torch::MemoryFormat format) {
  if (!x.defined()) return x;
  torch::Tensor y = x.device() == device ? x : x.to(device, /*non_blocking=*/true);
  if (format != torch::MemoryFormat::Contiguous && y.dim() == 4 && !y.is_contiguous(format))
    y = y.contiguous(format);
  return y;
}

namespace {

/// Converts every 4-D parameter and buffer of `model` to `format` (values unchanged).
void convert_4d(torch::nn::Module& model, torch::MemoryFormat format) {
  torch::NoGradGuard no_grad;
  for (auto& p : model.parameters())
    if (p.dim() == 4 && !p.is_contiguous(format)) p.set_data(p.data().contiguous(format));
  for (auto& b : model.buffers())
    if (b.dim() == 4 && !b.is_contiguous(format)) b.set_data(b.data().contiguous(format));
}

}  // namespace

torch::MemoryFormat choose_memory_format(Network& model, const std::string& mode) {
  if (mode != "channels_last" && mode != "contiguous")
    throw Error("memory format '" + mode + "': expected contiguous or channels_last");
  const auto format =
      mode == "channels_last" ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous;
  convert_4d(model, format);
  return format;
}

}  // namespace ktf
