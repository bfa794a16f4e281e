// ktf/diff.h — what differs between two run directories (ktf-host --diff RUN_A RUN_B).
//
//   std::cout << ktf::diff_runs("runs/lr-1e-3", "runs/lr-5e-4");
//
// Side by side: the resolved configs (config.resolved.json) leaf by leaf at JSON Pointer paths, the
// plugins (plugins.json: versions and file hashes), each cycle's final metrics (the last epoch's
// record in metrics.jsonl) with B - A, and the --evaluate results (evaluation-cycle-<k>.json)
// where either run has them.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "ktf/config.h"
#include "ktf/json.h"

namespace ktf {

/// The report, one table per part. Throws ktf::Error (exit code 2) naming the directory or file
/// when a run directory, its config.resolved.json or a file it holds cannot be read.
std::string diff_runs(const std::filesystem::path& a, const std::filesystem::path& b);

/// Each cycle's end in a run directory's metrics.jsonl: by 1-based cycle, the last "epoch"
/// record and how many epoch records the cycle has; lines a crash cut short are left out and
/// counted. (--diff and --sweep read runs with it.)
struct FinalEpochs {
  std::map<int64_t, std::pair<Json, int64_t>> by_cycle;
  int64_t unreadable_lines = 0;
};
FinalEpochs read_final_epochs(const std::filesystem::path& run_dir);

/// The metrics.jsonl keys that time the training pass (train_seconds, time_data, ...) rather
/// than describe its result; samples_per_second is not one of them.
bool is_timing_key(const std::string& key);

/// A value as a table cell: a non-integral number with 6 significant digits, a string as it is,
/// anything else as JSON.
std::string table_cell(const Json& value);

/// The plugins whose version, file hash, SDK or libtorch version differ between two plugins.json
/// lists ("/<plugin name>/version" ...).
std::vector<JsonChange> plugin_changes(const Json& before, const Json& after);

}  // namespace ktf
