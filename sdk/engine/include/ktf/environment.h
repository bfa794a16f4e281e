// ktf/environment.h — runs a list of train cycles, in-process (the engine's runner).
//
// What ktf-host does, available to a user's own main() (the original tool's
// `ktf.train.Environment().run([...])`):
//
//   ktf::register_component(ktf::define<ktf::Network, MyOptions>("MyCustomModel", "...")
//                               .build(...));
//   ktf::RunOptions options;
//   options.output_dir = "runs/my_model";
//   ktf::Environment(options).run(ktf::Json::parse(R"([{"model": {"MyCustomModel": {}}, ...}])"));
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "ktf/components.h"
#include "ktf/distributed.h"
#include "ktf/json.h"
#include "ktf/registry.h"

namespace ktf {

struct RunOptions {
  std::string device = "auto";               ///< auto | cpu | cuda | cuda:N
  int threads = 0;                           ///< intra-op threads; 0 = all cores
  std::string memory_format = "contiguous";  ///< or "channels_last" (choose_memory_format)
  std::optional<uint64_t> seed;              ///< default 0
  std::filesystem::path output_dir;          ///< default runs/<config>-<time>
  bool dry_run = false;
  bool quiet = false;
  std::vector<std::string> overrides;  ///< "POINTER=JSON", applied before validation
  std::string config_name = "config";  ///< used for the default output dir
  Json plugins = Json::array();        ///< written to plugins.json
  /// "" = a fresh run; a run directory = continue it from its newest complete checkpoint, with
  /// its stored config unless one is given; "auto" = resume output_dir when it holds a complete
  /// checkpoint, else start fresh there (one command line for a first start and every restart).
  std::string resume;
  /// Resume even though the config (or --seed) or the plugins differ from the run's; the
  /// differences are printed either way.
  bool allow_config_change = false;
  /// --precision: "" keeps the loops' own "precision"; "fp32" or "bf16" sets it in every cycle's
  /// train loop (before the config is stored, so a resume compares it like any config value),
  /// and is TrainContext::precision for loops that have no such argument.
  std::string precision;
  /// This process's place in a distributed job; default: from the launcher's environment
  /// (world_from_environment: torchrun, ktf-host --nproc-per-node, Slurm, Open MPI, Kubeflow).
  std::optional<WorldInfo> world;
  /// Seconds any rank waits for the others (the rendezvous, a collective) before it stops the
  /// job with an error: a rank that died or hangs ends the job within this bound.
  double dist_timeout = 300;
};

struct CycleResult {
  Logs logs;
  std::filesystem::path weights;
};

struct RunResult {
  std::filesystem::path run_dir;
  std::vector<CycleResult> cycles;
};

/// Thrown when training stopped on SIGINT or SIGTERM after writing a checkpoint. Exit code 130.
class Interrupted : public Error {
 public:
  explicit Interrupted(std::string message = "interrupted")
      : Error(std::move(message), {}, kExitInterrupted) {}
};

class Environment {
 public:
  explicit Environment(RunOptions options = {}, Registry& registry = Registry::global());

  /// Validates the whole config, builds every cycle once to check it, then builds and trains each
  /// cycle (from the checkpoint when resuming). Throws ktf::Error; a failed run's log.txt ends
  /// with the error. `config` may be null when resuming a run directory (its stored config).
  RunResult run(Json config);
  /// The device `options.device` resolves to.
  torch::Device device() const;

 private:
  RunOptions options_;
  Registry& registry_;
};

/// Sets libtorch's intra-op threads (0 = all cores) and returns the number set.
int configure_threads(int threads);

/// The device "auto", "cpu", "cuda" or "cuda:N" names here. Throws ktf::Error when unavailable.
torch::Device resolve_device(const std::string& device);

}  // namespace ktf
