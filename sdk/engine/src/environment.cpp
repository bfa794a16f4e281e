// The runner: a short sequence over cycles that owns the run's state (cycle, epochs and steps of
// earlier cycles, the run directory, signals) and builds everything through the CycleBuilder.
#include "ktf/environment.h"

#include <ATen/Parallel.h>

#include <csignal>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <thread>

#include "ktf/config.h"
#include "ktf/cycle.h"
#include "ktf/network.h"
#include "ktf/train.h"

namespace ktf {
namespace fs = std::filesystem;
namespace {

void on_signal(int) {
  if (TrainContext::interrupted()) {
    std::signal(SIGINT, SIG_DFL);  // a second Ctrl-C ends the process at once
    std::signal(SIGTERM, SIG_DFL);
  }
  request_interrupt(true);
}

/// SIGINT/SIGTERM set the interrupt flag while a run trains; the old handlers come back after.
class SignalScope {
 public:
  SignalScope() {
    request_interrupt(false);
    old_int_ = std::signal(SIGINT, on_signal);
    old_term_ = std::signal(SIGTERM, on_signal);
  }
  ~SignalScope() {
    std::signal(SIGINT, old_int_);
    std::signal(SIGTERM, old_term_);
  }
  SignalScope(const SignalScope&) = delete;
  SignalScope& operator=(const SignalScope&) = delete;

 private:
  void (*old_int_)(int) = SIG_DFL;
  void (*old_term_)(int) = SIG_DFL;
};

fs::path default_run_dir(const std::string& config_name) {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  std::ostringstream name;
  name << config_name << "-" << std::put_time(&tm, "%Y%m%d-%H%M%S");
  fs::path base = fs::path("runs") / name.str();
  fs::path dir = base;
  for (int i = 2; fs::exists(dir); ++i) dir = base.string() + "-" + std::to_string(i);
  return dir;
}

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path);
  if (!out) throw Error("cannot write '" + path.string() + "'", {}, kExitRuntime);
  out << text << "\n";
}

std::string format_logs(const Logs& logs) {
  std::ostringstream out;
  for (size_t i = 0; i < logs.size(); ++i)
    out << (i ? " - " : "") << logs[i].first << ": " << std::setprecision(4) << std::fixed
        << logs[i].second.value();
  return out.str();
}

std::string shape_string(const torch::Tensor& t) { return shape_str(t.sizes().vec()); }

/// The run directory and its append-only files.
struct RunFiles {
  fs::path dir;
  std::shared_ptr<std::ofstream> log, metrics;

  RunFiles(fs::path run_dir, const Json& cycles, const Json& plugins) : dir(std::move(run_dir)) {
    std::error_code ec;
    fs::create_directories(dir / "weights", ec);
    if (ec)
      throw Error("cannot create run directory '" + dir.string() + "': " + ec.message(), {},
                  kExitRuntime);
    write_file(dir / "config.resolved.json", cycles.dump(2));
    write_file(dir / "plugins.json", plugins.dump(2));
    log = std::make_shared<std::ofstream>(dir / "log.txt", std::ios::app);
    metrics = std::make_shared<std::ofstream>(dir / "metrics.jsonl", std::ios::app);
  }
};

/// Runs the resolved cycles of one run.
class Runner {
 public:
  Runner(const RunOptions& options, const Registry& registry, const Json& cycles,
         torch::Device device, uint64_t seed, RunFiles& files)
      : options_(options),
        registry_(registry),
        cycles_(cycles),
        device_(device),
        seed_(seed),
        files_(files) {}

  RunResult run(int threads) {
    log("ktf: run directory " + files_.dir.string() + ", device " + device_.str() + ", " +
        std::to_string(threads) + " threads, seed " + std::to_string(seed_));
    try {
      CycleBuilder builder(registry_, settings());
      check_every_cycle(builder);
      for (size_t i = 0; i < cycles_.size(); ++i) run_cycle(builder, i);
    } catch (const Error& e) {
      if (e.exit_code() != kExitInterrupted) *files_.log << "error: " << e.what() << std::endl;
      throw;
    }
    return result_;
  }

 private:
  /// Quiet while every cycle is checked; check_every_cycle() turns the log on for training.
  BuildSettings settings() const {
    return {device_,        seed_,
            files_.dir,     options_.memory_format,
            /*quiet=*/true, [this](const std::string& line) { log(line); }};
  }

  void log(const std::string& line) const {
    if (!options_.quiet) std::cout << line << std::endl;
    *files_.log << line << std::endl;
  }

  /// Builds every cycle before the first one trains, so that a bad value or a freeze pattern that
  /// matches nothing in cycle 3 is reported before cycle 1 runs. Datasets built here are reused;
  /// the models are thrown away and the RNG reseeded, so training starts as if unchecked.
  void check_every_cycle(CycleBuilder& builder) {
    for (size_t i = 0; i < cycles_.size(); ++i) builder.build(cycles_, i, BuildStage::Training);
    builder.forget_model();
    builder.set_quiet(false);
    torch::manual_seed(seed_);
  }

  TrainContext context_for(const Cycle& cycle) {
    TrainContext tc = cycle.train_context(options_.dry_run ? 1 : -1);
    tc.quiet = options_.quiet;
    tc.run_dir = files_.dir;
    tc.device = device_;
    tc.seed = seed_;
    tc.num_cycles = static_cast<int>(cycles_.size());
    tc.epochs_before = state_.epochs_before;
    tc.steps_before = state_.steps_before;
    auto log_file = files_.log;
    tc.log_sink = [log_file](const std::string& line) { *log_file << line << std::endl; };
    auto metrics = files_.metrics;
    const int64_t cycle_number = cycle.index + 1;
    tc.record_sink = [this, metrics, cycle_number](const std::string& phase, int64_t epoch,
                                                   const Logs& logs) {
      if (phase == "epoch") ++state_.epochs_in_cycle;
      Json line = Json::object({{"cycle", cycle_number}, {"epoch", epoch + 1}, {"phase", phase}});
      for (const auto& [k, v] : logs) line.set(k, v.to_json());
      *metrics << line.dump() << std::endl;
    };
    return tc;
  }

  void log_model(const Cycle& cycle) {
    int64_t total = count_parameters(*cycle.model),
            trainable = count_parameters(*cycle.model, true);
    log(cycle.label + ": model " + cycle.model_path.back() + ": " + std::to_string(total) +
        " parameters, " + std::to_string(trainable) + " trainable, " +
        std::to_string(total - trainable) + " frozen; output " + shape_str(cycle.output_shape) +
        " per example");
  }

  /// --dry-run: one batch forward and backward for the shapes, then the configured train loop,
  /// step and callbacks on one batch per split.
  void dry_run(const Cycle& cycle, TrainContext& tc) {
    tc.train_data->start_epoch(0);
    auto batch = tc.train_data->next();
    if (!batch) throw Error("the training data is empty", {cycle.label, "datasets"});
    cycle.model->train();
    auto x = to_device(batch->input, device_, cycle.input_format);
    auto y = to_device(batch->target, device_);
    auto out = tc.forward(x);
    auto l = cycle.loss->compute(out, y);
    l.backward();
    std::ostringstream frozen;
    for (const auto& p : cycle.model->named_parameters())
      if (!p.value().requires_grad()) frozen << (frozen.tellp() ? ", " : "") << p.key();
    log(cycle.label + ": dry run: input " + shape_string(x) + " -> output " + shape_string(out) +
        ", loss " + std::to_string(l.item<double>()));
    log(cycle.label + ": frozen parameters: " + (frozen.str().empty() ? "none" : frozen.str()));
    cycle.model->zero_grad();
    with_context(cycle.path("train_loop"), [&] { cycle.loop->run(tc); });
    log(cycle.label + ": dry run: train loop, train step and callbacks ran on one batch");
  }

  void run_cycle(CycleBuilder& builder, size_t i) {
    const std::string label = "cycle " + std::to_string(i + 1);
    log("== " + label + " of " + std::to_string(cycles_.size()) + " ==");
    Cycle cycle = builder.build(cycles_, i, BuildStage::Training);
    log_model(cycle);
    state_.cycle = i;
    state_.epochs_in_cycle = 0;
    TrainContext tc = context_for(cycle);
    if (options_.dry_run) {
      dry_run(cycle, tc);
      result_.cycles.push_back({});
      return;
    }
    Logs logs;
    try {
      logs = with_context(cycle.path("train_loop"), [&] { return cycle.loop->run(tc); });
    } catch (const Error& e) {
      if (e.exit_code() != kExitRuntime) throw;
      throw Error(e.message() + " (epoch " + std::to_string(tc.epoch + 1) + ", batch " +
                      std::to_string(tc.batch + 1) + ")",
                  e.path(), e.exit_code());
    }
    state_.epochs_before += state_.epochs_in_cycle;
    state_.steps_before += tc.global_step;
    CycleResult cr;
    cr.logs = logs;
    cr.weights = files_.dir / "weights" / ("cycle-" + std::to_string(i + 1) + ".pt");
    torch::save(std::static_pointer_cast<torch::nn::Module>(cycle.model), cr.weights.string());
    result_.cycles.push_back(cr);
    if (TrainContext::interrupted()) {
      tc.save_checkpoint("interrupted");
      log(label + ": interrupted; weights saved to " + cr.weights.string() +
          " and a checkpoint to " + (files_.dir / "checkpoints").string());
      throw Interrupted();
    }
    log(label + ": done" + (logs.empty() ? "" : " - " + format_logs(logs)) + "; weights saved to " +
        cr.weights.string());
  }

  const RunOptions& options_;
  const Registry& registry_;
  const Json& cycles_;
  torch::Device device_;
  uint64_t seed_;
  RunFiles& files_;
  /// Where the run is: the one place its position lives (within a cycle, the TrainContext holds
  /// the epoch and step, the streams their data position, libtorch's generator the RNG).
  struct RunState {
    size_t cycle = 0;             ///< the cycle being trained (0-based)
    int64_t epochs_before = 0;    ///< epochs of the finished cycles
    int64_t steps_before = 0;     ///< optimizer steps of the finished cycles
    int64_t epochs_in_cycle = 0;  ///< epochs recorded in the running cycle
  } state_;
  RunResult result_;
};

}  // namespace

int configure_threads(int threads) {
  int n = threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency());
  if (n <= 0) n = 1;
  at::set_num_threads(n);
  return n;
}

torch::Device resolve_device(const std::string& d) {
  if (d == "auto") return torch::cuda::is_available() ? torch::Device(torch::kCUDA) : torch::kCPU;
  torch::Device device = torch::kCPU;
  try {
    device = torch::Device(d);
  } catch (const c10::Error&) {
    throw Error("--device '" + d + "': expected auto, cpu, cuda or cuda:N");
  }
  if (device.is_cuda()) {
    if (!torch::cuda::is_available())
      throw Error("--device '" + d +
                  "': CUDA is not available (this libtorch is CPU-only or no GPU is visible)");
    if (device.has_index() && device.index() >= static_cast<int>(torch::cuda::device_count()))
      throw Error("--device '" + d + "': only " + std::to_string(torch::cuda::device_count()) +
                  " CUDA device(s) visible");
  } else if (!device.is_cpu()) {
    throw Error("--device '" + d + "': expected auto, cpu, cuda or cuda:N");
  }
  return device;
}

Environment::Environment(RunOptions options, Registry& registry)
    : options_(std::move(options)), registry_(registry) {}

torch::Device Environment::device() const { return resolve_device(options_.device); }

RunResult Environment::run(Json config) {
  for (const auto& o : options_.overrides) apply_override(config, o);
  // Every value of every cycle is checked against the specs before anything is built.
  const Json cycles = resolve_config(config, registry_);
  const torch::Device device = this->device();
  const int threads = configure_threads(options_.threads);
  const uint64_t seed = options_.seed.value_or(0);
  torch::manual_seed(seed);
  RunFiles files(
      options_.output_dir.empty() ? default_run_dir(options_.config_name) : options_.output_dir,
      cycles, options_.plugins);
  SignalScope signals;
  try {
    RunResult result = Runner(options_, registry_, cycles, device, seed, files).run(threads);
    result.run_dir = files.dir;
    return result;
  } catch (const c10::Error& e) {
    *files.log << "error: " << e.what_without_backtrace() << std::endl;
    throw Error(e.what_without_backtrace(), {}, kExitRuntime);
  }
}

}  // namespace ktf
