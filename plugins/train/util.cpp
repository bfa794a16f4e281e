// Helpers shared by the train plugin's components.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>

#include <ktf/distributed.h>

#include "train.h"

namespace ktf::train {

std::filesystem::path resolve_run_path(const std::filesystem::path& run_dir,
                                       const std::string& path) {
  std::filesystem::path p(path);
  if (p.is_absolute() && !run_dir.empty()) {
    // Only rank 0 of a distributed job writes where the config says; the other ranks' files go
    // to their scratch run directory.
    if (const Communicator* comm = communicator(); comm && comm->rank() > 0)
      return run_dir / "absolute" / p.relative_path();
  }
  if (p.is_absolute() || run_dir.empty()) return p;
  return run_dir / p;
}

Monitor::Monitor(std::string key, const std::string& mode) : key_(std::move(key)) {
  KTF_CHECK(mode == "auto" || mode == "min" || mode == "max",
            "mode must be 'auto', 'min' or 'max', got '", mode, "'");
  KTF_CHECK(!key_.empty(), "monitor must name a log key, e.g. 'val_loss'");
  if (mode == "auto") {
    // As Keras: accuracy-like quantities improve upwards, everything else (losses) downwards.
    for (const char* up : {"acc", "auc", "precision", "recall", "f1"})
      if (key_.find(up) != std::string::npos) maximize_ = true;
  } else {
    maximize_ = mode == "max";
  }
}

bool Monitor::improved(double current, double reference, double min_delta) const {
  if (std::isnan(current)) return false;
  return maximize_ ? current - min_delta > reference : current + min_delta < reference;
}

double Monitor::worst() const {
  return maximize_ ? -std::numeric_limits<double>::infinity()
                   : std::numeric_limits<double>::infinity();
}

std::string format_double(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  char buf[32];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, value);
    if (std::strtod(buf, nullptr) == value) break;
  }
  return buf;
}

}  // namespace ktf::train
