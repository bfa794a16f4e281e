// ktf/export_weights.h — a finished run's weights as a plain PyTorch state_dict
// (ktf-host --export-weights RUN_DIR [FILE]).
//
//   ktf::ExportOptions o;
//   o.run_dir = "runs/resnet-20261202-101500";
//   auto result = ktf::export_weights(o);   // result.output: weights/cycle-<k>.state_dict.pt
//
// The file is what Python's torch.save writes for a dict of tensors (torch::pickle_save): in
// Python, model.load_state_dict(torch.load(path)). Entries follow the model's modules in order,
// each module's parameters then its buffers, as torch.nn.Module.state_dict() orders them. Names
// are ktf's own, or those of the network's equivalent in another library where the network has
// one (ktf::ReferenceNames: torchvision's for ktf.networks.ResNet and MobileNetV2).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "ktf/registry.h"

namespace ktf {

struct ExportOptions {
  std::filesystem::path run_dir;
  std::filesystem::path output;  ///< default <run_dir>/weights/cycle-<k>.state_dict.pt
  int cycle = 0;                 ///< 1-based cycle whose weights to export; 0 = the last
  /// "auto": the equivalent's names when the network has one, else ktf's; "ktf": ktf's own;
  /// another value names the library whose names to use ("torchvision"), an error when the
  /// network has no equivalent there.
  std::string names = "auto";
  std::vector<std::string> overrides;  ///< POINTER=JSON applied to the resolved config
  bool quiet = false;
};

struct ExportResult {
  std::filesystem::path output;
  std::string reference;  ///< the equivalent whose names were used; "" = ktf's own
  int64_t tensors = 0;
};

/// Throws ktf::Error (exit code 2) naming the run directory or weights file when they are
/// missing or do not match the run's model, and for names the network has no equivalent for.
ExportResult export_weights(const ExportOptions& options, Registry& registry = Registry::global());

}  // namespace ktf
