// ktf/checkpoint.h — a run's checkpoints: when to write them, how they are written so that a
// checkpoint is complete or absent, and how the newest complete one is found.
//
// <run>/checkpoints/ckpt-<sequence>.pt holds the state (a libtorch archive of ktf::State: model,
// optimizer, RNGs, the run's position and every component's state); ckpt-<sequence>.json, its
// manifest, is written after it (each file to a temporary name, synced, renamed, the directory
// synced) and holds the state file's size and CRC-32C. A checkpoint whose manifest is missing,
// unreadable or does not match its state file is never chosen. See docs/reliability.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <set>
#include <string>

#include "ktf/json.h"
#include "ktf/spec.h"
#include "ktf/state.h"

namespace ktf {

/// When a cycle writes checkpoints: the cycle key "checkpoint" (inherited like any cycle key).
struct CheckpointPolicy {
  std::optional<int64_t> every_steps;   ///< after every N optimizer steps of the run
  std::optional<double> every_minutes;  ///< at the first step after T minutes since the last one
  bool every_epoch = true;              ///< after every epoch
  int64_t keep = 3;                     ///< complete checkpoints kept (older ones are removed)
  bool stop_on_nonfinite = true;        ///< stop on a NaN or Inf loss, keeping the last good one

  /// The spec of the "checkpoint" cycle key (bounds, defaults, docs).
  static const Spec& spec();
  /// From the resolved "checkpoint" object of a cycle.
  static CheckpointPolicy from_json(const Json& resolved);
};

struct CheckpointInfo {
  int64_t sequence = 0;
  std::filesystem::path state_file, manifest_file;
  Json manifest;  ///< {"sequence", "file", "bytes", "crc32c", "reason", "written", "position"}
};

/// The checkpoints/ directory of a run.
class CheckpointStore {
 public:
  explicit CheckpointStore(std::filesystem::path run_dir);

  /// The newest complete checkpoint. Incomplete or damaged ones are skipped; `log` hears why.
  std::optional<CheckpointInfo> newest(
      const std::function<void(const std::string&)>& log = {}) const;
  /// Every checkpoint file present (complete or not).
  bool holds_any() const;
  /// newest() and its state, the file read once.
  std::optional<std::pair<CheckpointInfo, State>> load_newest(
      const std::function<void(const std::string&)>& log = {}) const;
  /// Reads a checkpoint's state (checked against its manifest again).
  State read(const CheckpointInfo& info) const;
  /// Writes `state` as the next checkpoint, then removes the oldest beyond `keep`.
  CheckpointInfo write(const State& state, const std::string& reason, Json position, int64_t keep);
  /// Moves every checkpoint file to checkpoints/skipped/ (a fresh start in a directory whose
  /// checkpoints are all unusable; nothing is deleted).
  void clear();
  /// Moves the files of checkpoints newer than `sequence` (incomplete or damaged ones a resume
  /// from `sequence` passed over) to checkpoints/skipped/.
  void discard_after(int64_t sequence);
  const std::filesystem::path& dir() const { return dir_; }

 private:
  std::optional<CheckpointInfo> check(const std::filesystem::path& manifest,
                                      std::string& why) const;
  /// newest(), leaving the chosen checkpoint's verified bytes in `data`.
  std::optional<CheckpointInfo> find_newest(const std::function<void(const std::string&)>& log,
                                            std::string& data) const;
  State parse(const CheckpointInfo& info, const std::string& data) const;
  void set_aside(const std::filesystem::path& file) const;
  std::filesystem::path dir_;
  int64_t next_ = 0;  ///< the sequence number of the next write (0 = not known yet)
  /// Checkpoints known complete: written by this store, or checked against their CRC by newest().
  mutable std::set<int64_t> verified_;
};

/// A module's or optimizer's libtorch archive as bytes (and back), to keep in a State.
torch::Tensor archive_bytes(const std::function<void(torch::serialize::OutputArchive&)>& save);
void load_archive_bytes(const torch::Tensor& bytes,
                        const std::function<void(torch::serialize::InputArchive&)>& load);

}  // namespace ktf
