// ktf/state.h — what a component saves into a checkpoint, and the crash-safe files of a run.
//
// Exact resume (docs/reliability.md): a checkpoint holds everything a run needs to continue as if
// it had not stopped. The engine saves the model, the optimizer, the RNGs and its own position;
// every other component saves and restores its own state through ktf::Stateful, which every
// component interface (BatchStream, Loss, Metric, LrSchedule, Callback, TrainLoop, TrainStep)
// derives from. The default saves nothing: right for a component whose behaviour depends only on
// its arguments and on what the TrainContext holds. A component that remembers something across
// batches (a metric's sums, a callback's best value, a step's own RNG) overrides both:
//
//   class BestTracker : public ktf::Callback {
//     void save_state(ktf::State& s) override { s.set_number("best", best_); s.set("wait", wait_);
//     } void load_state(const ktf::State& s) override {
//       best_ = s.number("best");
//       wait_ = s.at("wait").as_int();
//     }
//   };
//
// load_state() runs after on_train_begin() (so that what on_train_begin resets is then restored)
// and before the first batch of the resumed cycle. The conformance suite checks that a
// component's state round-trips: a fresh instance loaded with a saved state behaves as the saved
// one.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "ktf/json.h"

namespace ktf {

/// A component's checkpoint state: JSON values, tensors and nested states, by key.
class State {
 public:
  void set(const std::string& key, Json value);
  /// The value saved under `key`; throws ktf::Error naming the key when it is missing.
  const Json& at(const std::string& key) const;
  bool has(const std::string& key) const;
  /// A double saved exactly (also inf and nan, which JSON cannot hold).
  void set_number(const std::string& key, double value);
  double number(const std::string& key) const;
  /// A tensor (undefined allowed), saved with its device; a checkpoint loads it onto the same
  /// device.
  void set_tensor(const std::string& key, const torch::Tensor& value);
  torch::Tensor tensor(const std::string& key) const;
  bool has_tensor(const std::string& key) const;
  /// A nested state (created on first use).
  State& child(const std::string& key);
  const State& child(const std::string& key) const;
  bool has_child(const std::string& key) const;
  /// Keys of the nested states.
  std::vector<std::string> child_keys() const;
  bool empty() const;

  /// Serialisation into a checkpoint archive (the engine's).
  void write(torch::serialize::OutputArchive& archive) const;
  static State read(torch::serialize::InputArchive& archive);
  /// The state as a checkpoint file stores and reads it back (what a resumed run loads).
  State round_trip() const;
  /// The state as bytes (a libtorch archive), and back; from_bytes throws ktf::Error (exit code 1)
  /// on bytes that are not such a state.
  std::string to_bytes() const;
  static State from_bytes(const std::string& bytes);
  /// Adds `other` into this state: numbers and tensors under the same key are summed (an
  /// undefined tensor or a missing key counts as zero), nested states recursively; other values
  /// are kept. A distributed run sums metrics' states this way (every rank's sums into the job's).
  void add(const State& other);
  /// Same values, same tensors (dtype, shape and every element), same nested states.
  friend bool operator==(const State& a, const State& b);
  friend bool operator!=(const State& a, const State& b) { return !(a == b); }

 private:
  Json values_ = Json::object();
  std::map<std::string, torch::Tensor> tensors_;
  std::map<std::string, State> children_;
};

/// Implemented (through every component interface) by components with state of their own.
class Stateful {
 public:
  virtual ~Stateful() = default;
  /// Writes everything needed to continue exactly from here. Called at a checkpoint, between
  /// batches. The default (a stateless component) writes nothing.
  virtual void save_state(State& /*state*/) {}
  /// Restores what save_state() wrote, into a freshly built component of the same config.
  virtual void load_state(const State& /*state*/) {}
};

/// Saves a module's parameters and buffers by name, and copies them back into the existing
/// tensors (their storage is kept, so an optimizer's views stay valid). load_module_state throws
/// ktf::Error naming a missing or mis-shaped entry.
void save_module_state(State& state, torch::nn::Module& module);
void load_module_state(const State& state, torch::nn::Module& module);

/// The state of every random generator: libtorch's CPU generator (dropout, initialisation,
/// torch::rand in a plugin) and each visible CUDA device's.
void save_rng_state(State& state);
void load_rng_state(const State& state);

/// Writes `bytes` to `path` crash-safely: to a temporary file in the same directory, flushed to
/// disk, renamed over `path`, and the directory synced; a reader sees the old file or the new one,
/// never part of one. Throws ktf::Error (exit code 1) naming the path and the system's reason
/// ("No space left on device"), after removing the temporary file.
void write_file_atomic(const std::filesystem::path& path, const std::string& bytes);
/// Syncs a file's data to disk (ignored when it cannot be opened).
void sync_file(const std::filesystem::path& path);
/// Syncs a directory's entries to disk (after creating or renaming files in it).
void sync_directory(const std::filesystem::path& dir);
/// Checks that `dir` can be created and written (a test file is created, synced and removed).
/// Throws ktf::Error (exit code 1) naming the directory and the reason.
void check_writable_directory(const std::filesystem::path& dir);

/// An append-only file of a run (metrics.jsonl, a CSV log, TensorBoard events) that a resumed run
/// continues without a duplicate or missing line: save_state() flushes it to disk and records its
/// length; load_state() cuts the file opened again (open(path, !ctx.resuming) in on_train_begin)
/// back to that length, dropping what was written after the checkpoint, and appends from there.
/// Write errors (a full disk) throw ktf::Error naming the file.
class RunLog : public Stateful {
 public:
  RunLog() = default;
  ~RunLog() override;
  RunLog(const RunLog&) = delete;
  RunLog& operator=(const RunLog&) = delete;

  /// Opens `path` (creating its directory): emptied when `fresh`, else appended to.
  void open(const std::filesystem::path& path, bool fresh);
  bool is_open() const { return fd_ >= 0; }
  /// Appends `text` (buffered; written by flush(), save_state() and close()).
  void write(const std::string& text);
  /// Writes the buffer to the file.
  void flush();
  /// Writes the buffer and syncs the file to disk.
  void sync();
  void close();
  /// Bytes in the file, buffered ones included.
  int64_t size() const { return written_ + static_cast<int64_t>(buffer_.size()); }
  const std::filesystem::path& path() const { return path_; }

  void save_state(State& state) override;
  /// Cuts the open file back to the saved length. A file already shorter (a later cycle replaced
  /// it) is continued as it is, and shorter_than_checkpoint() says so.
  void load_state(const State& state) override;
  bool shorter_than_checkpoint() const { return shorter_; }

 private:
  bool shorter_ = false;
  std::filesystem::path path_;
  int fd_ = -1;
  int64_t written_ = 0;
  std::string buffer_;
};

}  // namespace ktf
