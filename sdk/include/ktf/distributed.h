// ktf/distributed.h — data-parallel training on libtorch's c10d (docs/distributed.md).
//
// A job of several processes ("ranks", on one machine or several) trains one model: every rank
// holds the whole model, reads its own shard of every epoch's data order, and averages its
// gradients with the others' during backward (c10d's Reducer, the bucketing engine behind
// PyTorch's DistributedDataParallel, over a Gloo process group). The engine sets it all up from
// the launcher's environment (torchrun, `ktf-host --nproc-per-node`, Slurm, Open MPI, Kubeflow):
// a train step, loop, metric or callback from a plugin gets it through the TrainContext without
// code of its own:
//
// - ctx.backward_and_step() averages the gradients across ranks (every built-in or plugin step);
// - datasets built on ktf::IndexedDataset (and the built-in TFRecord reader) read their shard;
// - ctx.all_reduce_sum() and ctx.all_reduce_metric() turn a rank's sums into the job's, so that a
//   loop reports global figures (the built-in loops do);
// - ctx.rank / ctx.world_size / ctx.is_main(): only rank 0 (is_main) writes the run directory;
//   the other ranks' components write into a scratch directory that is removed at exit.
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ktf/error.h"
#include "ktf/state.h"

namespace ktf {

/// This process's place in a job, from the environment its launcher set.
struct WorldInfo {
  int rank = 0;        ///< 0 .. size-1; rank 0 writes the run directory
  int size = 1;        ///< processes in the job; 1 = not distributed
  int local_rank = 0;  ///< index among the ranks on this machine
  int local_size = 1;  ///< ranks on this machine (intra-op threads default to cores / local_size)
  std::string master_addr = "127.0.0.1";  ///< where rank 0 (or torchrun's agent) serves the store
  int master_port = 29500;
  /// Which variables said so: "torchrun" (RANK, WORLD_SIZE...: torchrun, Kubeflow's PyTorchJob,
  /// ktf-host --nproc-per-node), "slurm", "openmpi", or "" (one process).
  std::string source;
  /// torchrun's agent already serves the TCPStore (TORCHELASTIC_USE_AGENT_STORE): every rank
  /// connects to it as a client.
  bool agent_store = false;
  /// Restarts of the job so far (TORCHELASTIC_RESTART_COUNT, KTF_RESTART_COUNT): each attempt
  /// uses its own keys in a store that outlives it.
  int restart_count = 0;
  bool distributed() const { return size > 1; }
  /// "rank 1 of 2 (torchrun, master 10.0.0.1:29500)".
  std::string describe() const;
};

/// An environment as name -> value (tests); the process's own environment when null.
using EnvironmentVariables = std::map<std::string, std::string>;

/// Reads the standard variables, first found wins: RANK + WORLD_SIZE (+ LOCAL_RANK,
/// LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT); Slurm's SLURM_PROCID + SLURM_STEP_NUM_TASKS (a
/// task of srun; + SLURM_LOCALID, SLURM_STEP_TASKS_PER_NODE, the first host of
/// SLURM_STEP_NODELIST or SLURM_JOB_NODELIST, MASTER_PORT); Open MPI's OMPI_COMM_WORLD_RANK +
/// OMPI_COMM_WORLD_SIZE (+ _LOCAL_RANK, _LOCAL_SIZE, MASTER_ADDR, which a job over several machines
/// must set). None set, or a size of 1: one process. Throws ktf::Error (exit code 2) naming a
/// variable that is not a number or out of range.
WorldInfo world_from_environment(const EnvironmentVariables* env = nullptr);

/// The first host of a Slurm node list: "node[01-04,07],gpu5" -> "node01".
std::string first_slurm_host(const std::string& nodelist);

/// Thrown when a collective fails: another rank died or hung past the timeout, or the network
/// failed. Exit code 1. The message names the operation and what c10d/Gloo said.
class DistributedError : public Error {
 public:
  explicit DistributedError(std::string message) : Error(std::move(message), {}, kExitRuntime) {}
};

/// Collectives over the job's c10d process group (Gloo, CPU tensors). One per process; the engine
/// makes it from the WorldInfo. Every call is collective: all ranks make the same calls in the
/// same order. A wait longer than the timeout throws DistributedError.
class Communicator {
 public:
  /// Meets the other ranks at the rendezvous (a c10d TCPStore at master_addr:master_port, served
  /// by rank 0 or torchrun's agent) and connects a Gloo group. Throws DistributedError when they
  /// do not all arrive within `timeout`.
  Communicator(const WorldInfo& world, std::chrono::milliseconds timeout);
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const;
  int size() const;
  const WorldInfo& world() const;
  std::chrono::milliseconds timeout() const;
  /// Collectives on tensors of `device`: on CUDA, with a libtorch that has NCCL (PyTorch 2.x's),
  /// an NCCL group joins the Gloo one and serves CUDA tensors (the gradient all-reduce, weight and
  /// buffer broadcasts) on the GPU; Gloo keeps the host's (bytes, counts). Elsewhere CUDA tensors
  /// go through the host and Gloo. Returns the backend that serves `device`'s tensors: "nccl" or
  /// "gloo". Every rank calls it once, before the first collective on such tensors.
  std::string use_device(torch::Device device);

  /// Sums each tensor across ranks, in place (same shapes and dtypes on every rank).
  void all_reduce_sum(std::vector<torch::Tensor>& tensors);
  /// Copies rank `root`'s tensors into every rank's, in place.
  void broadcast(std::vector<torch::Tensor>& tensors, int root = 0);
  /// Every rank's bytes, by rank.
  std::vector<std::string> all_gather_bytes(const std::string& bytes);
  /// Every rank's bytes, by rank, on rank `root` (empty elsewhere): only the root holds them all.
  std::vector<std::string> gather_bytes(const std::string& bytes, int root = 0);
  /// Rank `root`'s bytes on every rank.
  std::string broadcast_bytes(const std::string& bytes, int root = 0);
  void barrier();
  /// Starts summing `tensor` across ranks without waiting; finish_async_sum() waits and returns
  /// it (one at a time).
  void start_async_sum(torch::Tensor tensor);
  torch::Tensor finish_async_sum();
  bool async_sum_pending() const;

  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

/// "another rank stopped or hung longer than the timeout of 3 s, or the network failed".
std::string lost_rank_hint(std::chrono::milliseconds timeout);
/// True for an error message from c10d or Gloo (a lost connection, a timeout), false for others
/// (an autograd or shape error), which keep their own message.
bool is_communication_error(const std::string& message);

/// The process's communicator, or null when it runs alone.
Communicator* communicator();
/// Set by the engine when the job is distributed (null: alone again).
void set_communicator(std::shared_ptr<Communicator> comm);

/// Gradient averaging across ranks during backward: c10d's Reducer over `params` (those that
/// receive gradients), in buckets (25 MiB; 1 MiB for the first, in the reverse order of `params`)
/// whose all-reduce starts as soon as backward has produced their gradients, overlapping the rest
/// of backward.
class GradientSync {
 public:
  GradientSync(Communicator& comm, std::vector<torch::Tensor> params);
  ~GradientSync();
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;
  /// Before a backward whose gradients are to be averaged (the last of an accumulation group).
  void prepare_for_backward();
  /// The parameters it averages.
  const std::vector<torch::Tensor>& parameters() const { return params_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::vector<torch::Tensor> params_;
};

/// The trainable parameters the graph of `loss` reaches (those backward gives gradients), in
/// the order of `params`.
std::vector<torch::Tensor> parameters_reached(const torch::Tensor& loss,
                                              const std::vector<torch::Tensor>& params);

/// A state summed across ranks (metrics' sums): every rank's state is gathered and added up
/// (State::add), and every rank gets the sum.
State all_reduce_state(Communicator& comm, const State& state);

/// A 64-bit checksum of the tensors' bytes (identical weights on every rank give identical sums).
uint64_t tensors_checksum(const std::vector<torch::Tensor>& tensors);

}  // namespace ktf
