// ktf-host -c CONFIG --sweep PTR=[v1,v2,...] [--sweep PTR2=[...]]... [--sweep-jobs N] [-o DIR]:
// one training per point of the grid of every combination of the values, each a ktf-host of its
// own (the same command line with --set PTR=v for each axis, -o DIR/<point>, --resume auto) in its
// own run directory under the sweep directory, up to N at a time. DIR/sweep.json records the axes
// and each point's state; the same command again continues an interrupted sweep (points done are
// kept, the others resume from their checkpoints). At the end DIR/sweep.csv and DIR/sweep.md list
// the points best first with their values and final metrics.
#pragma once

#include <ktf/registry.h>

#include <string>
#include <vector>

namespace ktf::host {

struct SweepOptions {
  std::vector<std::string> axes;  ///< the --sweep values, "PTR=[...]"
  int jobs = 1;                   ///< trainings at a time
  std::string config_path;
  std::string output_dir;              ///< -o; default runs/<config>-sweep-<time>
  std::vector<std::string> overrides;  ///< --set, applied before the axes
  int threads = 0;                     ///< --threads as given (0: split the cores among jobs)
  bool quiet = false;
};

/// Runs the sweep; `argv` is ktf-host's command line, the points' is made from it. Returns the
/// exit code: 0 when every point trained, 1 when one failed, 2 for a bad --sweep or config, 130
/// when interrupted (SIGINT/SIGTERM reach every running point, which checkpoints).
int run_sweep(const SweepOptions& options, const ktf::Registry& registry, int argc, char** argv);

}  // namespace ktf::host
