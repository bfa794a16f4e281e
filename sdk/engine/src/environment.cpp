// The runner: a short sequence over cycles that owns the run's state (cycle, epochs and steps of
// earlier cycles, the run directory, checkpoints, signals) and builds everything through the
// CycleBuilder. Exact resume: docs/reliability.md.
#include "ktf/environment.h"

#include <dlfcn.h>

#include <ATen/Parallel.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <thread>

#include "ktf/checkpoint.h"
#include "ktf/config.h"
#include "ktf/cycle.h"
#include "ktf/data.h"
#include "ktf/diff.h"
#include "ktf/distributed.h"
#include "ktf/network.h"
#include "ktf/process.h"
#include "ktf/state.h"
#include "ktf/train.h"

namespace ktf {
namespace fs = std::filesystem;
namespace {

/// The RNG seed of rank `rank` (rank 0 keeps `seed`): ranks draw different dropout masks.
uint64_t rank_seed(uint64_t seed, int rank) {
  return rank == 0 ? seed : seed + 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(rank);
}

/// Monotonic milliseconds (async-signal-safe).
int64_t now_ms() {
  struct timespec ts {};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

std::atomic<int64_t> g_first_signal_ms{0};

void on_signal(int sig) {
  if (sig == SIGUSR1) {
    request_checkpoint(true);
    return;
  }
  if (TrainContext::interrupted()) {
    // A second SIGINT/SIGTERM ends the process at once, unless it is the same stop delivered
    // again: `timeout` and `kill -- -PGID` signal the process and then its group, microseconds
    // apart.
    if (now_ms() - g_first_signal_ms.load() < 1000) return;
    const char msg[] = "ktf: second signal: exiting without a checkpoint\n";
    ssize_t ignored = ::write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)ignored;
    ::_exit(kExitInterrupted);
  }
  g_first_signal_ms.store(now_ms());
  request_interrupt(true);
}

/// After an interrupted run: a late SIGINT/SIGTERM (a supervisor's second try) still ends the
/// process with 130, the code of the stop that is already under way.
void on_late_signal(int) { ::_exit(kExitInterrupted); }

/// While a run trains: SIGINT/SIGTERM set the interrupt flag (the next safe point checkpoints and
/// stops), SIGUSR1 asks for a checkpoint, and SIGXFSZ (a file-size limit, `ulimit -f`) is ignored
/// so that the write fails with a message instead of killing the process. The old handlers come
/// back after.
class SignalScope {
 public:
  SignalScope() {
    request_interrupt(false);
    request_checkpoint(false);
    for (int sig : {SIGINT, SIGTERM, SIGUSR1, SIGXFSZ}) {
      struct sigaction sa {};
      sa.sa_handler = sig == SIGXFSZ ? SIG_IGN : on_signal;
      sigemptyset(&sa.sa_mask);
      sa.sa_flags = SA_RESTART;
      struct sigaction old {};
      ::sigaction(sig, &sa, &old);
      old_.push_back({sig, old});
    }
  }
  ~SignalScope() {
    for (auto& [sig, old] : old_) {
      if (TrainContext::interrupted() && (sig == SIGINT || sig == SIGTERM)) {
        struct sigaction sa {};
        sa.sa_handler = on_late_signal;
        sigemptyset(&sa.sa_mask);
        ::sigaction(sig, &sa, nullptr);
        continue;
      }
      ::sigaction(sig, &old, nullptr);
    }
  }
  SignalScope(const SignalScope&) = delete;
  SignalScope& operator=(const SignalScope&) = delete;

 private:
  std::vector<std::pair<int, struct sigaction>> old_;
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

std::string format_logs(const Logs& logs) {
  std::ostringstream out;
  for (size_t i = 0; i < logs.size(); ++i)
    out << (i ? " - " : "") << logs[i].first << ": " << std::setprecision(4) << std::fixed
        << logs[i].second.value();
  return out.str();
}

std::string shape_string(const torch::Tensor& t) { return shape_str(t.sizes().vec()); }

std::string checkpoint_name(const CheckpointInfo& info) {
  return info.manifest_file.stem().string();
}

/// "cycle 1, epoch 2, batch 45" of a checkpoint's position.
std::string position_text(const Json& position) {
  std::string where = position.find("where") ? position.at("where").as_string() : "";
  std::string text = "cycle " + std::to_string(position.at("cycle").as_int()) + ", epoch " +
                     std::to_string(position.at("epoch").as_int());
  if (where == "epoch end") return text + " end";
  if (where == "validation") return text + " (during validation)";
  return text + ", batch " + std::to_string(position.at("batch").as_int()) + " (step " +
         std::to_string(position.at("step").as_int()) + " of the cycle)";
}

/// The run directory and its files.
struct RunFiles {
  fs::path dir;
  std::shared_ptr<std::ofstream> log;
  std::shared_ptr<RunLog> metrics = std::make_shared<RunLog>();
  /// When the run in this directory first started (run.json): kept by resumes and by a fresh start
  /// in the directory of an attempt that died before its first checkpoint, so that the files named
  /// after it (TensorBoard's) are the same files.
  int64_t run_started = 0;

  /// Checks that the directory and its subdirectories can be written before anything trains; a
  /// resumed run appends to metrics.jsonl (cut back to the checkpoint's length later).
  RunFiles(fs::path run_dir, bool resuming) : dir(std::move(run_dir)) {
    // An unusable run directory (-o) is a bad command line: exit code 2, before anything runs.
    try {
      check_writable_directory(dir);
      check_writable_directory(dir / "weights");
      check_writable_directory(dir / "checkpoints");
    } catch (const Error& e) {
      throw Error(e.what(), {}, kExitConfig);
    }
    log = std::make_shared<std::ofstream>(dir / "log.txt", std::ios::app);
    if (!*log) throw Error("cannot write '" + (dir / "log.txt").string() + "'", {}, kExitRuntime);
    metrics->open(dir / "metrics.jsonl", /*fresh=*/!resuming);
    const fs::path run_json = dir / "run.json";
    std::error_code ec;
    if (fs::exists(run_json, ec)) {
      try {
        run_started = Json::parse_file(run_json.string()).at("run_started").as_int();
      } catch (const Error&) {
        run_started = 0;  // unreadable: a new identity
      }
    }
    if (run_started <= 0) {
      run_started = static_cast<int64_t>(std::time(nullptr));
      write_file_atomic(run_json, Json::object({{"run_started", run_started}}).dump(2) + "\n");
    }
  }
  void write_config(const Json& cycles, const Json& plugins) const {
    write_file_atomic(dir / "config.resolved.json", cycles.dump(2) + "\n");
    write_file_atomic(dir / "plugins.json", plugins.dump(2) + "\n");
  }
};

/// What a resumed run starts from.
struct Resume {
  CheckpointInfo info;
  State state;
};

/// Lines said before the run directory's log is open (checkpoints passed over, a fresh start),
/// logged by the Runner first.
using Notes = std::vector<std::string>;

/// The CPU's kernels, for the log: OpenBLAS's (or MKL's) and oneDNN's.
std::string cpu_kernels_text() {
  std::string blas = blas_kernels_note();
  if (blas.empty())
    blas = std::string("BLAS: ") + (at::hasMKL() ? "MKL (inside libtorch)" : "not OpenBLAS") +
           " on this CPU (" + cpu_info().model_name + ", " + cpu_info().isa() + ")";
  // oneDNN 2.x's dnnl_cpu_isa_t values (Debian's libtorch links libdnnl.so.2 dynamically).
  using IsaFn = int (*)();
  if (auto fn = reinterpret_cast<IsaFn>(dlsym(RTLD_DEFAULT, "dnnl_get_effective_cpu_isa"))) {
    static const std::map<int, const char*> names = {{0x1, "sse41"},
                                                     {0x3, "avx"},
                                                     {0x7, "avx2"},
                                                     {0x407, "avx2_vnni"},
                                                     {0x27, "avx512_core"},
                                                     {0x67, "avx512_core_vnni"},
                                                     {0xe7, "avx512_core_bf16"},
                                                     {0x3e7, "avx512_core_amx"}};
    const int isa = fn();
    auto it = names.find(isa);
    blas += "; oneDNN ISA " + (it != names.end() ? std::string(it->second) : std::to_string(isa));
  }
  return blas;
}

/// The arguments of a resolved cycle's train loop, or nullptr.
Json* loop_args(Json& cycle) {
  Json* loop = cycle.find("train_loop");
  if (!loop || !loop->is_object() || loop->size() != 1) return nullptr;
  Json& args = loop->as_object().begin()->second;
  return args.is_object() ? &args : nullptr;
}

/// --precision: sets the "precision" argument of every cycle's train loop that has one.
void set_loop_precision(Json& cycles, const std::string& precision) {
  parse_precision(precision);  // a bad value is a command-line error (exit 2)
  for (Json& cycle : cycles.as_array())
    if (Json* args = loop_args(cycle); args && args->find("precision"))
      args->set("precision", precision);
}

/// True when some cycle's train loop has a "precision" argument (the built-in loops do).
bool any_loop_takes_precision(Json& cycles) {
  for (Json& cycle : cycles.as_array())
    if (Json* args = loop_args(cycle); args && args->find("precision")) return true;
  return false;
}

/// Runs the resolved cycles of one run.
class Runner {
  int64_t run_started_;  ///< first member: initialised before the others use it
  Notes notes_;

 public:
  Runner(const RunOptions& options, const Registry& registry, const Json& cycles,
         torch::Device device, uint64_t seed, RunFiles& files, std::optional<Resume> resume,
         Notes notes, Communicator* comm)
      : run_started_(files.run_started),
        notes_(std::move(notes)),
        options_(options),
        registry_(registry),
        cycles_(cycles),
        device_(device),
        seed_(seed),
        files_(files),
        store_(files.dir),
        resume_(std::move(resume)),
        comm_(comm),
        rank_(comm ? comm->rank() : 0),
        world_(comm ? comm->size() : 1) {}

  RunResult run(int threads) {
    log("ktf: run directory " + files_.dir.string() + ", device " + device_.str() + ", " +
        std::to_string(threads) + " threads, seed " + std::to_string(seed_));
    // NCCL for the GPU's tensors where libtorch has it (every rank, before any collective on them).
    const bool nccl = comm_ && comm_->use_device(device_) == "nccl";
    if (comm_)
      log("ktf: distributed: " + std::to_string(world_) + " ranks (c10d, " +
          (nccl ? "NCCL for CUDA tensors, Gloo for the host's" : "Gloo") + "), this is " +
          comm_->world().describe() + "; timeout " +
          std::to_string(comm_->timeout().count() / 1000) + " s");
    if (device_.is_cpu()) log("ktf: " + cpu_kernels_text());
    for (const auto& note : notes_) {  // warnings: on stderr also with --quiet, and in log.txt
      std::cerr << "ktf: " << note << (note.back() == '\n' ? "" : "\n");
      *files_.log << "ktf: " << note << std::endl;
    }
    size_t first = 0;
    try {
      if (resume_) {
        const State& run = resume_->state.child("run");
        first = static_cast<size_t>(run.at("cycle").as_int());
        state_.epochs_before = run.at("epochs_before").as_int();
        state_.steps_before = run.at("steps_before").as_int();
        run_started_ = run.at("run_started").as_int();
        const int64_t saved_threads = run.at("threads").as_int();
        last_checkpoint_ = resume_->info;
        log("ktf: resuming from checkpoint " + checkpoint_name(resume_->info) + " (" +
            position_text(resume_->info.manifest.at("position")) + "; written " +
            resume_->info.manifest.at("written").as_string() + ", " +
            resume_->info.manifest.at("reason").as_string() + ")");
        if (saved_threads != threads)
          log("ktf: warning: the run was checkpointed with " + std::to_string(saved_threads) +
              " threads and continues with " + std::to_string(threads) +
              ": results may differ in the last bits from an uninterrupted run (--threads " +
              std::to_string(saved_threads) + " keeps them equal)");
        files_.metrics->load_state(resume_->state.child("metrics_log"));
        if (files_.metrics->shorter_than_checkpoint())
          log("ktf: warning: metrics.jsonl is shorter than at the checkpoint (was it edited?); "
              "continuing it as it is");
      }
      CycleBuilder builder(registry_, settings());
      check_every_cycle(builder);
      for (size_t i = 0; i < first; ++i) result_.cycles.push_back({{}, weights_path(i)});
      for (size_t i = first; i < cycles_.size(); ++i) run_cycle(builder, i);
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

  fs::path weights_path(size_t i) const {
    return files_.dir / "weights" / ("cycle-" + std::to_string(i + 1) + ".pt");
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
    tc.run_started = run_started_;
    tc.rank = rank_;
    tc.world_size = world_;
    if (!options_.precision.empty()) {
      tc.precision_from_command_line = true;
      tc.precision = parse_precision(options_.precision);
      tc.use_precision(options_.precision);  // fp16 off CUDA: exit 2 before anything runs
    }
    auto log_file = files_.log;
    tc.log_sink = [log_file](const std::string& line) { *log_file << line << std::endl; };
    auto metrics = files_.metrics;
    const int64_t cycle_number = cycle.index + 1;
    tc.record_sink = [this, metrics, cycle_number](const std::string& phase, int64_t epoch,
                                                   const Logs& logs) {
      if (phase == "epoch") ++state_.epochs_in_cycle;
      Json line = Json::object({{"cycle", cycle_number}, {"epoch", epoch + 1}, {"phase", phase}});
      for (const auto& [k, v] : logs) line.set(k, v.to_json());
      metrics->write(line.dump() + "\n");
      metrics->flush();
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

  // ---- checkpoints ----------------------------------------------------------------------------

  /// The engine's side of TrainContext::safe_point(): checkpoint when the policy or a signal says
  /// so, then stop on SIGINT/SIGTERM.
  void safe_point(TrainContext& tc, const Cycle& cycle, SafePoint where) {
    if (tc.resuming)
      throw Error(
          "the train loop reached a safe point before calling ctx.restore(), so this "
          "cycle cannot resume (see ktf/train.h)",
          cycle.path("train_loop"), kExitRuntime);
    bool interrupt = false, requested = false, minutes_due = false;
    if (comm_) {
      // Ranks validate different numbers of batches: a distributed job acts at its epoch end.
      if (where == SafePoint::Validation) return;
      agree(tc, where);
      interrupt = agreed_.interrupt;
      requested = agreed_.requested;
      minutes_due = agreed_.minutes_due;
    } else {
      interrupt = TrainContext::interrupted();
      requested = checkpoint_requested();
      minutes_due = timer_due();
    }
    // Inside an accumulation group the gradients are half-summed: not a point to save.
    if (where == SafePoint::Step && tc.pending_backwards() > 0) return;
    if (!tc.device.is_cpu() && (where != SafePoint::Step || ++steps_since_check_ >= 100)) {
      steps_since_check_ = 0;
      tc.check_finite();
    }
    std::string reason;
    if (interrupt)
      reason = "signal";
    else if (requested)
      reason = "SIGUSR1";
    else if (where == SafePoint::EpochEnd && policy_.every_epoch)
      reason = "epoch end";
    else if (where == SafePoint::Step && policy_.every_steps &&
             (state_.steps_before + tc.global_step) % *policy_.every_steps == 0)
      reason = "every " + std::to_string(*policy_.every_steps) + " steps";
    else if (where == SafePoint::Step && minutes_due)
      reason = "every " + Json(*policy_.every_minutes).dump() + " minutes";
    if (reason.empty()) return;
    if (requested) request_checkpoint(false);
    agreed_.requested = agreed_.minutes_due = false;  // acted on
    const auto info = write_checkpoint(tc, cycle, where, reason);
    if (interrupt || requested)
      log(cycle.label + ": checkpoint " + checkpoint_name(info) + " written (" +
          position_text(info.manifest.at("position")) + ")");
    if (interrupt) throw interrupted_after(info);
  }

  /// The job's decisions at a safe point, the same on every rank (agreed_): whether some rank was
  /// signalled (SIGINT/SIGTERM, SIGUSR1), whether rank 0's clock says a timed checkpoint is due,
  /// and whether some rank's callback asked to stop training (TerminateOnNaN on its own batch):
  /// every rank stops at the same step. At a step the flags of the previous step's safe point are
  /// read (their sum ran during this step), so no step waits for the network; at an epoch end they
  /// are summed there. A flag is sent once; what it asks stays agreed until acted on.
  void agree(TrainContext& tc, SafePoint where) {
    const bool interrupt = TrainContext::interrupted();
    const bool requested = checkpoint_requested();
    if (requested) request_checkpoint(false);  // sent: the agreed flag carries it now
    const bool due = rank_ == 0 && !timer_sent_ && timer_due();
    if (due) timer_sent_ = true;
    stop_asked_ = stop_asked_ || tc.stop_training;
    auto mine = torch::tensor(
        {interrupt ? 1.0 : 0.0, requested ? 1.0 : 0.0, due ? 1.0 : 0.0, stop_asked_ ? 1.0 : 0.0},
        torch::kDouble);
    torch::Tensor sum = torch::zeros({4}, torch::kDouble);
    if (comm_->async_sum_pending()) sum += comm_->finish_async_sum();
    if (where == SafePoint::Step) {
      comm_->start_async_sum(mine);
    } else {
      std::vector<torch::Tensor> now{mine};
      comm_->all_reduce_sum(now);
      sum += now[0];
    }
    agreed_.interrupt = agreed_.interrupt || sum[0].item<double>() > 0;
    agreed_.requested = agreed_.requested || sum[1].item<double>() > 0;
    agreed_.minutes_due = agreed_.minutes_due || sum[2].item<double>() > 0;
    tc.stop_training = sum[3].item<double>() > 0;    // the job's, not this rank's alone
    if (agreed_.interrupt) request_interrupt(true);  // a signalled rank stops the job
  }

  /// checkpoint.every_minutes: T minutes have passed since the last checkpoint.
  bool timer_due() const {
    return policy_.every_minutes && std::chrono::duration<double, std::ratio<60>>(
                                        std::chrono::steady_clock::now() - last_write_)
                                            .count() >= *policy_.every_minutes;
  }

  /// Rank 0 tells where the checkpoint is; the other ranks that rank 0 wrote it.
  Interrupted interrupted_after(const CheckpointInfo& info) const {
    if (rank_ > 0)
      return Interrupted("interrupted (rank " + std::to_string(rank_) +
                         "): rank 0 wrote the job's checkpoint");
    return Interrupted("interrupted: checkpoint " + checkpoint_name(info) +
                       " written; continue with --resume " + files_.dir.string());
  }

  CheckpointInfo write_checkpoint(TrainContext& tc, const Cycle& cycle, SafePoint where,
                                  const std::string& reason) {
    tc.check_finite();  // never save the weights of a non-finite step
    const auto started = std::chrono::steady_clock::now();
    const char* where_text = where == SafePoint::Step         ? "step"
                             : where == SafePoint::Validation ? "validation"
                                                              : "epoch end";
    State root;
    State& run = root.child("run");
    run.set("cycle", static_cast<int64_t>(state_.cycle));
    run.set("epochs_before", state_.epochs_before);
    run.set("steps_before", state_.steps_before);
    run.set("epochs_in_cycle", state_.epochs_in_cycle);
    run.set("epoch", tc.epoch);
    run.set("batch", tc.batch);
    run.set("global_step", tc.global_step);
    run.set("stop_training", tc.stop_training);
    run.set("seed", std::to_string(seed_));
    run.set("precision", options_.precision);  // --precision; loops without the argument use it
    run.set("threads", static_cast<int64_t>(at::get_num_threads()));
    run.set("run_started", run_started_);
    run.set("where", where_text);
    run.set("world_size", static_cast<int64_t>(world_));
    // What differs between ranks (their streams' and metrics' sums, the loop's running sums,
    // their RNGs) is every rank's own; rank 0 keeps the others' in its checkpoint.
    State own;
    each_component(tc, cycle,
                   [&](const std::vector<std::string>& path, Stateful& c, const std::string& key) {
                     with_context(path, [&] { c.save_state(own.child(key)); });
                   });
    save_rng_state(own.child("rng"));
    if (comm_) {
      const auto all = comm_->gather_bytes(rank_ == 0 ? std::string() : own.to_bytes(), 0);
      if (rank_ > 0) {
        last_write_ = std::chrono::steady_clock::now();
        timer_sent_ = false;
        CheckpointInfo info;
        info.manifest = Json::object({{"position", checkpoint_position(tc, where_text)}});
        return info;
      }
      for (size_t r = 1; r < all.size(); ++r) {
        auto bytes = torch::empty({static_cast<int64_t>(all[r].size())}, torch::kUInt8);
        std::memcpy(bytes.data_ptr(), all[r].data(), all[r].size());
        root.set_tensor("rank/" + std::to_string(r), bytes);
      }
    }
    save_module_state(root.child("model"), *cycle.model);
    root.set_tensor("optimizer", archive_bytes([&](torch::serialize::OutputArchive& a) {
                      cycle.optimizer->save(a);
                    }));
    for (const auto& key : own.child_keys()) root.child(key) = own.child(key);
    files_.metrics->save_state(root.child("metrics_log"));
    Json position = checkpoint_position(tc, where_text);
    CheckpointInfo info = store_.write(root, reason, position, policy_.keep);
    last_checkpoint_ = info;
    last_write_ = std::chrono::steady_clock::now();
    timer_sent_ = false;
    std::ostringstream line;
    line << "checkpoint " << checkpoint_name(info) << " (" << reason
         << "): " << position_text(position) << ", " << std::fixed << std::setprecision(1)
         << static_cast<double>(info.manifest.at("bytes").as_int()) / 1e6 << " MB in "
         << std::setprecision(2) << std::chrono::duration<double>(last_write_ - started).count()
         << " s";
    *files_.log << line.str() << std::endl;
    return info;
  }

  Json checkpoint_position(const TrainContext& tc, const char* where_text) const {
    return Json::object({{"cycle", static_cast<int64_t>(state_.cycle + 1)},
                         {"epoch", tc.epoch + 1},
                         {"batch", tc.batch + 1},
                         {"step", tc.global_step},
                         {"run_step", state_.steps_before + tc.global_step},
                         {"where", where_text}});
  }

  /// Every component with checkpoint state, with its config path and its key in the checkpoint.
  template <class F>
  void each_component(TrainContext& tc, const Cycle& cycle, F&& fn) {
    fn(cycle.path("train_loop"), *cycle.loop, "loop");
    fn(cycle.path("datasets"), *tc.train_data, "train_data");
    if (tc.valid_data) fn(cycle.path("datasets"), *tc.valid_data, "valid_data");
    fn(cycle.path("loss"), *tc.loss, "loss");
    if (tc.lr_schedule) fn(cycle.path("lr_schedule"), *tc.lr_schedule, "lr_schedule");
    if (GradScaler* scaler = tc.loss_scaler()) fn(cycle.path("train_loop"), *scaler, "loss_scaler");
    for (size_t i = 0; i < tc.metrics.size(); ++i)
      fn({cycle.label, "metrics"}, *tc.metrics[i], "metric/" + std::to_string(i));
    for (size_t i = 0; i < tc.callbacks.size(); ++i)
      fn(cycle.path("train_loop"), *tc.callbacks[i], "callback/" + std::to_string(i));
  }

  /// The engine's side of TrainContext::restore() in the resumed cycle.
  void restore(TrainContext& tc, const Cycle& cycle) {
    const State& root = resume_->state;
    const State& run = root.child("run");
    const std::string source = "checkpoint " + checkpoint_name(resume_->info);
    // A rank's own part, when the checkpoint was written by a job of as many ranks; else (from an
    // epoch end, where no rank's sums carry over) rank 0's.
    const int64_t saved_world = run.has("world_size") ? run.at("world_size").as_int() : 1;
    const std::string rank_key = "rank/" + std::to_string(rank_);
    State rank_state;
    const bool own_part = rank_ > 0 && saved_world == world_ && root.has_tensor(rank_key);
    if (own_part) {
      const torch::Tensor bytes = root.tensor(rank_key).contiguous();
      rank_state = State::from_bytes(std::string(static_cast<const char*>(bytes.data_ptr()),
                                                 static_cast<size_t>(bytes.numel())));
    }
    const State& own = own_part ? rank_state : root;
    with_context({source, "model"}, [&] { load_module_state(root.child("model"), *cycle.model); });
    with_context({source, "optimizer"}, [&] {
      load_archive_bytes(root.tensor("optimizer"),
                         [&](torch::serialize::InputArchive& a) { cycle.optimizer->load(a); });
    });
    each_component(
        tc, cycle, [&](const std::vector<std::string>& path, Stateful& c, const std::string& key) {
          if (!own.has_child(key))
            throw Error(source + " has no state for '" + key +
                            "': the cycle's components differ from the checkpointed run's",
                        path, kExitRuntime);
          with_context(path, [&] { c.load_state(own.child(key)); });
        });
    tc.epoch = run.at("epoch").as_int();
    tc.batch = run.at("batch").as_int();
    tc.global_step = run.at("global_step").as_int();
    tc.stop_training = run.at("stop_training").as_bool();
    state_.epochs_in_cycle = run.at("epochs_in_cycle").as_int();
    load_rng_state(own.child("rng"));  // last: nothing above may draw from it
    if (rank_ > 0 && !own_part) torch::manual_seed(rank_seed(seed_ + tc.global_step, rank_));
    log(cycle.label + ": resumed at " + position_text(resume_->info.manifest.at("position")));
  }

  /// After a distributed cycle: every rank must hold rank 0's parameters (the gradients were
  /// averaged, every rank stepped the same optimizer); a difference is a bug worth stopping for.
  void check_identical_weights(const Cycle& cycle) {
    std::ostringstream mine;
    mine << std::hex << std::setw(16) << std::setfill('0')
         << tensors_checksum(cycle.model->parameters());
    const auto all = comm_->all_gather_bytes(mine.str());
    std::string differ;
    for (size_t r = 1; r < all.size(); ++r)
      if (all[r] != all[0]) differ += (differ.empty() ? "" : ", ") + std::to_string(r);
    if (differ.empty()) {
      log(cycle.label + ": parameters identical on all " + std::to_string(world_) +
          " ranks (checksum " + all[0] + ")");
      return;
    }
    // Ranks whose reductions ran in another order (other thread counts: a clipped norm's last
    // bits) drift apart; rank 0's weights are the run's, and the next cycle starts from them.
    const std::string line = "warning: " + cycle.label + ": the parameters of rank(s) " + differ +
                             " differ from rank 0's after training (checksum " + all[0] +
                             " on rank 0); rank 0's are saved";
    std::cerr << "ktf: " << line << std::endl;
    *files_.log << "ktf: " << line << std::endl;
  }

  /// A signal that arrived while no cycle trains (building, between cycles): stop without a new
  /// checkpoint (the last one, if any, is where the run stands).
  void stop_if_interrupted(const std::string& when) {
    if (!TrainContext::interrupted()) return;
    throw Interrupted("interrupted " + when + "; " +
                      (last_checkpoint_ ? "continue with --resume " + files_.dir.string()
                                        : std::string("nothing was trained, nothing saved")));
  }

  void run_cycle(CycleBuilder& builder, size_t i) {
    const std::string label = "cycle " + std::to_string(i + 1);
    stop_if_interrupted("before " + label + " started");
    const bool resuming =
        resume_ && i == static_cast<size_t>(resume_->state.child("run").at("cycle").as_int());
    log("== " + label + " of " + std::to_string(cycles_.size()) + (resuming ? " (resumed)" : "") +
        " ==");
    Cycle cycle = builder.build(cycles_, i, BuildStage::Training);
    stop_if_interrupted("while " + label + " was built");
    log_model(cycle);
    if (comm_) {
      // Every rank starts the cycle from rank 0's weights; the ranks then draw their own dropout
      // masks (rank 0 keeps the run's RNG stream, as alone).
      std::vector<torch::Tensor> tensors = cycle.model->parameters();
      for (auto& b : cycle.model->buffers()) tensors.push_back(b);
      comm_->broadcast(tensors);
      if (rank_ > 0) torch::manual_seed(rank_seed(seed_ + i, rank_));
    }
    state_.cycle = i;
    state_.epochs_in_cycle = 0;
    stop_asked_ = false;
    policy_ = CheckpointPolicy::from_json(cycle.config.at("checkpoint"));
    TrainContext tc = context_for(cycle);
    tc.stop_on_nonfinite = policy_.stop_on_nonfinite;
    if (options_.dry_run) {
      dry_run(cycle, tc);
      result_.cycles.push_back({});
      return;
    }
    tc.resuming = resuming;
    tc.restore_hook = [&] {
      if (tc.resuming) restore(tc, cycle);
    };
    tc.safe_point_hook = [&](SafePoint where) { safe_point(tc, cycle, where); };
    last_write_ = std::chrono::steady_clock::now();
    Logs logs;
    try {
      logs = with_context(cycle.path("train_loop"), [&] { return cycle.loop->run(tc); });
    } catch (const Error& e) {
      if (e.exit_code() != kExitRuntime) throw;
      std::string hint;
      if (last_checkpoint_)
        hint = "; the last checkpoint is " + checkpoint_name(*last_checkpoint_) + " (" +
               position_text(last_checkpoint_->manifest.at("position")) +
               "): continue from it with --resume " + files_.dir.string() +
               (tc.saw_nonfinite_loss() ? " -c FIXED_CONFIG --allow-config-change" : "");
      throw Error(e.message() + " (cycle " + std::to_string(i + 1) + ", epoch " +
                      std::to_string(tc.epoch + 1) + ", batch " + std::to_string(tc.batch + 1) +
                      ", step " + std::to_string(tc.global_step) + ")" + hint,
                  e.path(), e.exit_code());
    }
    if (tc.resuming)
      throw Error(
          "the train loop never called ctx.restore(), so this cycle cannot resume (see "
          "ktf/train.h)",
          cycle.path("train_loop"), kExitRuntime);
    resume_.reset();  // the state has been loaded; later cycles start fresh
    tc.check_finite();
    state_.epochs_before += state_.epochs_in_cycle;
    state_.steps_before += tc.global_step;
    bool interrupt = TrainContext::interrupted();
    if (comm_) {
      agree(tc, SafePoint::EpochEnd);
      interrupt = agreed_.interrupt;
    }
    CycleResult cr;
    cr.logs = logs;
    cr.weights = weights_path(i);
    if (rank_ == 0) {
      std::ostringstream weights;
      torch::save(std::static_pointer_cast<torch::nn::Module>(cycle.model), weights);
      write_file_atomic(cr.weights, weights.str());
    }
    result_.cycles.push_back(cr);
    if (comm_) check_identical_weights(cycle);
    if (interrupt && i + 1 < cycles_.size()) {
      // After the loop's last safe point: a checkpoint of the finished cycle (a resume runs its
      // on_train_end again and goes on with the next cycle).
      const auto info = write_checkpoint(tc, cycle, SafePoint::EpochEnd, "signal");
      log(label + ": interrupted at the end of the cycle; weights saved to " + cr.weights.string() +
          ", checkpoint " + checkpoint_name(info));
      throw interrupted_after(info);
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
  CheckpointStore store_;
  std::optional<Resume> resume_;
  Communicator* comm_;  ///< null alone
  int rank_, world_;
  /// What the ranks agreed at safe points and not yet acted on (agree()).
  struct Agreed {
    bool interrupt = false, requested = false, minutes_due = false;
  } agreed_;
  bool timer_sent_ = false;  ///< rank 0 sent "a timed checkpoint is due" since the last write
  bool stop_asked_ = false;  ///< this rank's loop was asked to stop in this cycle
  std::optional<CheckpointInfo> last_checkpoint_;
  CheckpointPolicy policy_;
  std::chrono::steady_clock::time_point last_write_ = std::chrono::steady_clock::now();
  int64_t steps_since_check_ = 0;
  /// Where the run is: the one place its position lives (within a cycle, the TrainContext holds
  /// the epoch and step, the loop and the streams their position, libtorch's generator the RNG).
  struct RunState {
    size_t cycle = 0;             ///< the cycle being trained (0-based)
    int64_t epochs_before = 0;    ///< epochs of the finished cycles
    int64_t steps_before = 0;     ///< optimizer steps of the finished cycles
    int64_t epochs_in_cycle = 0;  ///< epochs recorded in the running cycle
  } state_;
  RunResult result_;
};

/// `config` with every component named by its canonical name (an alias written in one config and
/// the canonical name in the other are the same component).
Json canonical_names(const Json& config, const Registry& registry) {
  if (config.is_array()) {
    Json::Array out;
    for (const auto& v : config.as_array()) out.push_back(canonical_names(v, registry));
    return Json(std::move(out));
  }
  if (!config.is_object()) return config;
  Json out = Json::object();
  for (const auto& [key, value] : config.as_object()) {
    std::string name = key;
    if (config.size() == 1 && value.is_object()) {
      auto defs = registry.find_any(key);
      if (defs.size() == 1) name = defs.front()->spec.name;
    }
    out.set(name, canonical_names(value, registry));
  }
  return out;
}

/// What a run starts from, decided before anything trains (by rank 0 in a distributed job).
struct Plan {
  fs::path run_dir;
  std::optional<Resume> resume;
  Json cycles;
  uint64_t seed = 0;
  bool write_config = false;
  Notes notes;
};

/// The run directory, the checkpoint to resume from, the resolved cycles and the seed; every
/// check of the command line against the run directory. `world_size`: ranks of this job.
Plan make_plan(RunOptions& options_, const Registry& registry_, Json config, int world_size) {
  Notes notes;
  fs::path run_dir = options_.output_dir;
  std::optional<Resume> resume;
  const bool auto_resume = options_.resume == "auto";
  if (!options_.resume.empty()) {
    if (!auto_resume) run_dir = options_.resume;
    if (run_dir.empty())
      throw Error("--resume auto needs --output-dir DIR: the directory a restart finds the run in");
    std::error_code ec;
    if (!auto_resume && !fs::is_directory(run_dir, ec))
      throw Error("--resume '" + run_dir.string() + "': no such run directory");
    auto found = CheckpointStore(run_dir).load_newest(
        [&](const std::string& line) { notes.push_back(line); });
    if (found) {
      resume = Resume{std::move(found->first), std::move(found->second)};
    } else if (!auto_resume) {
      throw Error("--resume '" + run_dir.string() +
                  "': it holds no complete checkpoint (--resume auto starts a fresh run there "
                  "instead)");
    }
  }
  Json stored;
  if (resume) {
    const fs::path stored_path = run_dir / "config.resolved.json";
    std::error_code ec;
    if (!fs::exists(stored_path, ec))
      throw Error("--resume '" + run_dir.string() + "': config.resolved.json is missing");
    stored = Json::parse_file(stored_path.string());
    if (config.is_null()) config = stored;
  }
  if (config.is_null()) throw Error("no config given (-c CONFIG)");
  for (const auto& o : options_.overrides) apply_override(config, o);
  // Every value of every cycle is checked against the specs before anything is built.
  Json cycles = resolve_config(config, registry_);
  if (!options_.precision.empty()) set_loop_precision(cycles, options_.precision);
  uint64_t seed = options_.seed.value_or(0);
  bool write_config = !resume;
  if (resume) {
    std::vector<JsonChange> changes;
    const auto all =
        json_diff(canonical_names(stored, registry_), canonical_names(cycles, registry_));
    for (auto& c : all) {
      // Checkpoint settings may change on a resume (they do not change the training).
      const auto slash = c.pointer.find('/', 1);
      if (slash != std::string::npos && c.pointer.compare(slash, 11, "/checkpoint") == 0 &&
          (c.pointer.size() == slash + 11 || c.pointer[slash + 11] == '/'))
        continue;
      changes.push_back(c);
    }
    if (!all.empty() && changes.empty()) {
      notes.push_back("checkpoint settings changed:\n" + format_changes(all));
      write_config = true;
    }
    const uint64_t saved_seed = std::stoull(resume->state.child("run").at("seed").as_string());
    auto seed_json = [](uint64_t v) {
      return v <= static_cast<uint64_t>(INT64_MAX) ? Json(static_cast<int64_t>(v))
                                                   : Json(std::to_string(v));
    };
    if (options_.seed && *options_.seed != saved_seed)
      changes.push_back({"(--seed)", seed_json(saved_seed), seed_json(*options_.seed)});
    seed = saved_seed;
    // --precision is in the config of loops that take "precision" (compared above); for loops
    // without the argument only the checkpoint holds it.
    if (!any_loop_takes_precision(cycles)) {
      const State& saved_run = resume->state.child("run");
      const std::string saved =
          saved_run.has("precision") ? saved_run.at("precision").as_string() : "";
      auto effective = [](const std::string& p) { return p.empty() ? std::string("fp32") : p; };
      if (!options_.precision.empty() && effective(options_.precision) != effective(saved))
        changes.push_back({"(--precision)", Json(effective(saved)), Json(options_.precision)});
      if (options_.precision.empty()) options_.precision = saved;
    }
    auto plugins =
        plugin_changes(Json::parse_file((run_dir / "plugins.json").string()), options_.plugins);
    std::string text;
    if (!changes.empty())
      text +=
          "the config differs from the run's (config.resolved.json):\n" + format_changes(changes);
    if (!plugins.empty())
      text += "the plugins differ from the run's (plugins.json; name/field):\n" +
              format_changes(plugins);
    if (!text.empty()) {
      if (!options_.allow_config_change)
        throw Error("cannot resume '" + run_dir.string() + "': " + text +
                    "pass --allow-config-change to resume anyway (the result then need not equal "
                    "an uninterrupted run)");
      notes.push_back("resuming with changes (--allow-config-change): " + text);
      write_config = true;
    }
  } else if (!run_dir.empty() && CheckpointStore(run_dir).holds_any()) {
    if (!auto_resume)
      throw Error("'" + run_dir.string() +
                  "' already holds a run with checkpoints: continue it with --resume " +
                  run_dir.string() + " (or --resume auto), or choose another --output-dir");
    notes.push_back("'" + run_dir.string() +
                    "' holds no complete checkpoint: starting a fresh run there (unusable "
                    "checkpoint files moved to checkpoints/skipped/)");
    CheckpointStore(run_dir).clear();
  }
  if (resume) {
    const State& saved = resume->state.child("run");
    const int64_t saved_world = saved.has("world_size") ? saved.at("world_size").as_int() : 1;
    const Json& position = resume->info.manifest.at("position");
    const bool epoch_end =
        position.find("where") && position.at("where").as_string() == "epoch end";
    if (saved_world != world_size && !epoch_end)
      throw Error("cannot resume '" + run_dir.string() + "' with " + std::to_string(world_size) +
                  " rank(s): its checkpoint " + checkpoint_name(resume->info) + " (" +
                  position_text(position) + ") was written by a job of " +
                  std::to_string(saved_world) +
                  " rank(s) inside an epoch, whose data order is split among that many ranks; "
                  "resume it with " +
                  std::to_string(saved_world) +
                  " rank(s), or from a checkpoint at an epoch end (checkpoint.every_epoch)");
    if (saved_world != world_size)
      notes.push_back("the run was checkpointed by " + std::to_string(saved_world) +
                      " rank(s) and continues with " + std::to_string(world_size) +
                      " from an epoch end: the next epochs' data order is split " +
                      std::to_string(world_size) + " ways (the global batch changes with it)");
  }
  Plan plan;
  plan.run_dir = run_dir;
  plan.resume = std::move(resume);
  plan.cycles = std::move(cycles);
  plan.seed = seed;
  plan.write_config = write_config;
  plan.notes = std::move(notes);
  return plan;
}

/// Rank 0's plan (or its error) for every rank: the resolved cycles, the seed, --precision as the
/// checkpoint set it, and the checkpoint's state itself (a run directory need not be shared).
void share_plan(Communicator& comm, Plan& plan, RunOptions& options, const Error* failure) {
  Json head = Json::object({{"ok", failure == nullptr}});
  if (failure) {
    head.set("message", failure->what());
    head.set("code", static_cast<int64_t>(failure->exit_code()));
  } else {
    head.set("cycles", plan.cycles);
    head.set("seed", std::to_string(plan.seed));
    head.set("precision", options.precision);
    head.set("resume", plan.resume.has_value());
    if (plan.resume) {
      head.set("manifest", plan.resume->info.manifest);
      head.set("sequence", plan.resume->info.sequence);
      head.set("manifest_file", plan.resume->info.manifest_file.string());
    }
  }
  const Json got =
      Json::parse(comm.broadcast_bytes(comm.rank() == 0 ? head.dump() : ""), "rank 0's plan");
  if (!got.at("ok").as_bool()) {
    if (comm.rank() == 0) return;
    throw Error("rank 0 stopped the job before training: " + got.at("message").as_string(), {},
                static_cast<int>(got.at("code").as_int()));
  }
  const std::string state =
      comm.broadcast_bytes(comm.rank() == 0 && plan.resume ? plan.resume->state.to_bytes() : "");
  if (comm.rank() == 0) return;
  plan.cycles = got.at("cycles");
  plan.seed = std::stoull(got.at("seed").as_string());
  options.precision = got.at("precision").as_string();
  if (got.at("resume").as_bool()) {
    Resume r;
    r.info.manifest = got.at("manifest");
    r.info.sequence = got.at("sequence").as_int();
    r.info.manifest_file = got.at("manifest_file").as_string();
    r.state = State::from_bytes(state);
    plan.resume = std::move(r);
  }
}

/// A scratch run directory for a rank other than 0, removed when the run ends. Those of ranks that
/// were killed (their process is gone) are removed when the next one is made.
struct ScratchDir {
  fs::path dir;
  explicit ScratchDir(int rank) {
    if (rank == 0) return;
    std::error_code ec;
    fs::path tmp = fs::temp_directory_path(ec);
    if (ec) tmp = "/tmp";
    for (const auto& e : fs::directory_iterator(tmp, ec)) {
      const std::string name = e.path().filename().string();
      const auto dash = name.rfind('-');
      if (name.rfind("ktf-rank", 0) != 0 || dash == std::string::npos) continue;
      const long pid = std::strtol(name.c_str() + dash + 1, nullptr, 10);
      if (pid <= 0 || ::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
      std::error_code ignored;
      fs::remove_all(e.path(), ignored);
    }
    dir = tmp / ("ktf-rank" + std::to_string(rank) + "-" + std::to_string(::getpid()));
  }
  ~ScratchDir() {
    std::error_code ec;
    if (!dir.empty()) fs::remove_all(dir, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
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
  const WorldInfo world = options_.world ? *options_.world : world_from_environment();
  std::shared_ptr<Communicator> comm;
  // Alone again after a run that ended well; after a failure the group stays (a collective may
  // still wait on a lost rank: the process exits instead of tearing it down).
  struct Alone {
    bool ok = false;
    ~Alone() {
      set_data_shard({});
      set_batch_device(torch::kCPU);
      if (ok) set_communicator(nullptr);
    }
  } alone;
  if (world.distributed()) {
    comm = std::make_shared<Communicator>(
        world, std::chrono::milliseconds(static_cast<int64_t>(options_.dist_timeout * 1000)));
    set_communicator(comm);
    set_data_shard({world.rank, world.size});
  }
  const bool main_rank = world.rank == 0;
  Plan plan;
  if (main_rank) {
    try {
      plan = make_plan(options_, registry_, std::move(config), world.size);
    } catch (const Error& e) {
      if (comm) share_plan(*comm, plan, options_, &e);
      throw;
    }
  }
  if (comm) share_plan(*comm, plan, options_, nullptr);
  RunOptions options = options_;
  if (!main_rank) options.quiet = true;  // rank 0 speaks for the job
  std::optional<Resume>& resume = plan.resume;
  torch::Device device = this->device();
  // Ranks on one machine with GPUs: one GPU each, by local rank ("cuda" or "auto" given).
  if (world.distributed() && device.is_cuda() && !device.has_index() &&
      world.local_rank < static_cast<int>(torch::cuda::device_count()))
    device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(world.local_rank));
  set_batch_device(device);  // streams copy their batches to a GPU from their prefetch thread
  // A resume keeps the run's thread count unless --threads says otherwise (bitwise equality);
  // ranks on one machine share its cores.
  const int threads = configure_threads(
      options.threads == 0 && resume
          ? static_cast<int>(resume->state.child("run").at("threads").as_int())
      : options.threads == 0 && world.local_size > 1
          ? std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / world.local_size)
          : options.threads);
  torch::manual_seed(plan.seed);
  SignalScope signals;  // before the first file is written (SIGXFSZ)
  ScratchDir scratch(world.rank);
  fs::path dir = main_rank ? plan.run_dir : scratch.dir;
  if (main_rank) {
    if (resume) CheckpointStore(dir).discard_after(resume->info.sequence);
    if (dir.empty()) dir = default_run_dir(options.config_name);
  }
  RunFiles files(dir, resume.has_value());
  if (plan.write_config && main_rank) files.write_config(plan.cycles, options.plugins);
  try {
    RunResult result = Runner(options, registry_, plan.cycles, device, plan.seed, files,
                              std::move(resume), std::move(plan.notes), comm.get())
                           .run(threads);
    result.run_dir = main_rank ? files.dir : plan.run_dir;
    if (comm) comm->barrier();  // every rank is done before any leaves
    alone.ok = true;
    return result;
  } catch (const c10::Error& e) {
    *files.log << "error: " << e.what_without_backtrace() << std::endl;
    throw Error(e.what_without_backtrace(), {}, kExitRuntime);
  }
}

}  // namespace ktf
