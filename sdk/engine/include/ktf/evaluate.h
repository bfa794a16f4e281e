// ktf/evaluate.h — scoring a finished run's weights on a dataset.
//
//   ktf::EvaluateOptions o;
//   o.run_dir = "runs/fashion_mnist_cnn-20261126-101500";
//   auto result = ktf::evaluate(o);   // the last cycle's model, dataset, loss and metrics
//   // result.logs: {"loss", ...metrics}; result.predictions: per-example CSV
//
// The run's config.resolved.json says what to build; weights/cycle-<k>.pt gives the weights.
// The validation split of the cycle's dataset is evaluated in full, in order.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "ktf/components.h"
#include "ktf/cycle.h"
#include "ktf/registry.h"

namespace ktf {

struct EvaluateOptions {
  std::filesystem::path run_dir;
  int cycle = 0;  ///< 1-based cycle whose weights to load; 0 = the last
  std::string device = "auto";
  int threads = 0;
  std::string memory_format = "contiguous";  ///< or "channels_last" (choose_memory_format)
  std::filesystem::path predictions;   ///< CSV path; default <run_dir>/predictions-cycle-<k>.csv
  std::vector<std::string> overrides;  ///< POINTER=JSON applied to the resolved config
  bool quiet = false;
};

struct EvaluateResult {
  Logs logs;  ///< "loss" and each metric, over the whole split
  int64_t examples = 0;
  std::filesystem::path predictions;
};

/// A finished run's cycle rebuilt from its config.resolved.json (with `overrides`), the cycle's
/// weights (cycle `cycle`, 1-based; 0 = the last) loaded into its model and checked against it
/// (the first tensor whose shape differs is named), the model on the device in eval mode.
struct TrainedCycle {
  Cycle cycle;
  int k = 0;  ///< the 1-based cycle
  std::filesystem::path weights;
  torch::Device device = torch::kCPU;
  torch::MemoryFormat format = torch::MemoryFormat::Contiguous;  ///< of the model's 4-D inputs
};
TrainedCycle load_trained_cycle(const std::filesystem::path& run_dir, int cycle,
                                const std::vector<std::string>& overrides,
                                const std::string& device, int threads,
                                const std::string& memory_format, Registry& registry);

/// Throws ktf::Error naming the run directory or weights file when they are missing.
EvaluateResult evaluate(const EvaluateOptions& options, Registry& registry = Registry::global());

}  // namespace ktf
