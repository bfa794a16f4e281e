// ktf/cycle.h — the cycle builder: the one place that turns a resolved cycle into objects.
//
// Training, --dry-run, the pre-flight check of every cycle, --evaluate, --convert and --view all
// build through it, so the build order lives here once:
//
//   dataset -> model (carried over, or rebuilt with matching tensors copied) -> loss, metrics ->
//   train loop and plugin cycle keys -> prepare (freezing) -> optimizer -> lr schedule
//
//   ktf::CycleBuilder builder(registry, {device, seed, run_dir, "contiguous"});
//   ktf::Cycle c = builder.build(cycles, 0, ktf::BuildStage::Evaluation);  // dataset, model, loss
//
// Datasets are cached by configuration and reused by later builds; the model of the previous
// build carries over to the next cycle when its configuration is unchanged.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ktf/components.h"
#include "ktf/json.h"
#include "ktf/registry.h"
#include "ktf/train.h"

namespace ktf {

/// How far CycleBuilder::build goes; each stage includes the ones before it.
enum class BuildStage {
  Data,        ///< the dataset
  Evaluation,  ///< + model, loss, metrics
  Training     ///< + train loop, plugin cycle keys, freezing, optimizer, lr schedule
};

struct BuildSettings {
  torch::Device device = torch::kCPU;
  uint64_t seed = 0;  ///< cycle k (0-based) builds with seed + k
  std::filesystem::path run_dir;
  std::string memory_format = "contiguous";
  bool quiet = true;  ///< no log lines from the build (the pre-flight check)
  std::function<void(const std::string&)> log;  ///< where build log lines go when not quiet
};

/// The objects of one cycle, as far as the stage it was built to.
struct Cycle {
  int index = 0;      ///< 0-based
  std::string label;  ///< "cycle 1"
  Json config;        ///< the resolved cycle
  std::shared_ptr<Dataset> dataset;
  std::shared_ptr<Network> model;
  std::vector<std::string> model_path;  ///< "cycle 1 › model › <name>"
  torch::MemoryFormat input_format = torch::MemoryFormat::Contiguous;
  std::vector<int64_t> output_shape;  ///< the model's output for one example
  std::shared_ptr<Loss> loss;
  std::vector<std::shared_ptr<Metric>> metrics;
  std::shared_ptr<TrainLoop> loop;
  std::map<std::string, std::vector<std::shared_ptr<void>>> extras;
  std::shared_ptr<Optimizer> optimizer;
  std::shared_ptr<LrSchedule> lr_schedule;
  /// Builds nested components with the cycle's context (TrainContext::builder points here).
  std::shared_ptr<BuildContext> builder;

  /// A TrainContext over these objects. Its streams are guarded so their errors name the dataset,
  /// and with `batch_limit` >= 0 yield at most that many batches per epoch (--dry-run).
  TrainContext train_context(int64_t batch_limit = -1) const;
  /// Path of a cycle key's component: {"cycle 1", key, "<name>"}.
  std::vector<std::string> path(const std::string& key) const;
};

class CycleBuilder {
 public:
  CycleBuilder(const Registry& registry, BuildSettings settings);

  /// Builds cycle `index` (0-based) of the resolved `cycles` up to `stage`. Throws ktf::Error with
  /// the component's config path.
  Cycle build(const Json& cycles, size_t index, BuildStage stage);
  /// Forgets the carried model (the next build makes a fresh one); datasets stay cached.
  void forget_model() { model_.reset(), model_config_ = Json(); }
  /// Whether builds log (the pre-flight check builds quietly, training reuses its datasets).
  void set_quiet(bool quiet) { settings_.quiet = quiet; }

 private:
  std::shared_ptr<void> build_component(Cycle& cycle, const std::string& key, Kind kind,
                                        const Json& component, const std::string& index = "");
  void build_model(Cycle& cycle);
  void log(const std::string& line) const;

  const Registry& registry_;
  BuildSettings settings_;
  struct CachedDataset {
    std::shared_ptr<Dataset> dataset;
    std::string seconds;     ///< how long building it took
    bool announced = false;  ///< its build time was logged
  };
  std::map<std::string, CachedDataset> datasets_;  // by config text
  std::shared_ptr<Network> model_;
  Json model_config_;
};

/// Copies tensors that match by name and shape from `from` into `to`; returns (copied, total).
std::pair<size_t, size_t> carry_weights(torch::nn::Module& from, torch::nn::Module& to);

/// The dataset of cycle `cycle` (1-based) of a config, overrides applied, for --convert and
/// --view: the config is validated, only the dataset is built.
std::shared_ptr<Dataset> build_cycle_dataset(const Json& config,
                                             const std::vector<std::string>& overrides,
                                             const Registry& registry, int cycle = 1);

}  // namespace ktf
