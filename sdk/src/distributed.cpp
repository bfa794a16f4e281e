// Data-parallel training on c10d: the rendezvous from the standard environment, a Gloo process
// group (libtorch 1.13's ProcessGroupGloo is itself a ProcessGroup; libtorch 2.x wraps it as a
// Backend of a ProcessGroup), collectives and the Reducer.
#include "ktf/distributed.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <unordered_set>

#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <torch/csrc/autograd/functions/accumulate_grad.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/logger.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>
#if KTF_WITH_NCCL
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL 1
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace ktf {
namespace {

/// libtorch 2.x: ProcessGroupGloo is a c10d::Backend inside a c10d::ProcessGroup.
#define KTF_C10D_BACKENDS (TORCH_VERSION_MAJOR >= 2)

std::optional<std::string> variable(const EnvironmentVariables* env, const std::string& name) {
  if (env) {
    auto it = env->find(name);
    if (it == env->end() || it->second.empty()) return std::nullopt;
    return it->second;
  }
  const char* v = std::getenv(name.c_str());
  if (!v || !*v) return std::nullopt;
  return std::string(v);
}

int to_int(const std::string& name, const std::string& text, int min, int max) {
  size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || v < min || v > max)
    throw Error("environment variable " + name + "='" + text + "': expected an integer from " +
                std::to_string(min) + " to " + std::to_string(max));
  return static_cast<int>(v);
}

int int_variable(const EnvironmentVariables* env, const std::string& name, int fallback, int min,
                 int max) {
  auto v = variable(env, name);
  return v ? to_int(name, *v, min, max) : fallback;
}

/// Slurm's SLURM_TASKS_PER_NODE ("2(x3),1"): the tasks on the first node.
int tasks_on_first_node(const std::string& name, const std::string& text) {
  size_t end = 0;
  while (end < text.size() && std::isdigit(static_cast<unsigned char>(text[end]))) ++end;
  return to_int(name, text.substr(0, end), 1, 1 << 20);
}

bool is_loopback(const std::string& addr) {
  return addr == "localhost" || addr.rfind("127.", 0) == 0 || addr == "::1";
}

/// The local address this machine uses to reach `host` (a UDP socket's route; nothing is sent),
/// or "" when it cannot tell.
std::string local_address_towards(const std::string& host, int port) {
  in_addr target{};
  if (::inet_pton(AF_INET, host.c_str(), &target) != 1) {
    // A host name (Kubeflow's "<job>-master-0", a Slurm node): its first IPv4 address.
    addrinfo hints{};
    hints.ai_family = AF_INET;
    addrinfo* found = nullptr;
    if (::getaddrinfo(host.c_str(), nullptr, &hints, &found) != 0 || !found) return "";
    target = reinterpret_cast<sockaddr_in*>(found->ai_addr)->sin_addr;
    ::freeaddrinfo(found);
  }
  int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) return "";
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<uint16_t>(port));
  to.sin_addr = target;
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) == 0) {
    sockaddr_in mine{};
    socklen_t len = sizeof mine;
    char text[INET_ADDRSTRLEN] = {};
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&mine), &len) == 0 &&
        ::inet_ntop(AF_INET, &mine.sin_addr, text, sizeof text))
      out = text;
  }
  ::close(fd);
  return out;
}

std::shared_ptr<Communicator> g_communicator;

std::string seconds_text(std::chrono::milliseconds t) {
  std::ostringstream out;
  out << static_cast<double>(t.count()) / 1000.0;
  return out.str();
}

}  // namespace

std::string lost_rank_hint(std::chrono::milliseconds timeout) {
  return "another rank stopped or hung longer than the timeout of " + seconds_text(timeout) +
         " s, or the network failed";
}

bool is_communication_error(const std::string& message) {
  // libtorch 1.13's Gloo says "[../gloo/transport/tcp/pair.cc:589] Read error ...: Connection
  // reset by peer" or "Timed out waiting 3000ms for recv operation"; 2.x also "Application
  // timeout caused pair closure".
  for (const char* mark :
       {"gloo", "Gloo", "c10d", "onnection", "imed out", "imeout", "ocket", "peer", "pair closure"})
    if (message.find(mark) != std::string::npos) return true;
  return false;
}

std::string WorldInfo::describe() const {
  if (!distributed()) return "one process";
  return "rank " + std::to_string(rank) + " of " + std::to_string(size) + " (" + source +
         ", local rank " + std::to_string(local_rank) + " of " + std::to_string(local_size) +
         ", rendezvous " + master_addr + ":" + std::to_string(master_port) +
         (restart_count > 0 ? ", restart " + std::to_string(restart_count) : "") + ")";
}

std::string first_slurm_host(const std::string& nodelist) {
  // The first entry at bracket depth 0, then the first value of its first bracket.
  int depth = 0;
  size_t end = 0;
  for (; end < nodelist.size(); ++end) {
    if (nodelist[end] == '[') ++depth;
    if (nodelist[end] == ']') --depth;
    if (nodelist[end] == ',' && depth == 0) break;
  }
  std::string entry = nodelist.substr(0, end);
  const size_t open = entry.find('[');
  if (open == std::string::npos) return entry;
  const size_t close = entry.find(']', open);
  if (close == std::string::npos) throw Error("SLURM_JOB_NODELIST='" + nodelist + "': no ']'");
  std::string range = entry.substr(open + 1, close - open - 1);
  range = range.substr(0, range.find_first_of(",-"));
  return entry.substr(0, open) + range + first_slurm_host(entry.substr(close + 1));
}

WorldInfo world_from_environment(const EnvironmentVariables* env) {
  WorldInfo w;
  constexpr int kMax = 1 << 20;
  auto port = [&] { return int_variable(env, "MASTER_PORT", 29500, 1, 65535); };
  if (variable(env, "RANK") && variable(env, "WORLD_SIZE")) {
    w.source = "torchrun";
    w.size = int_variable(env, "WORLD_SIZE", 1, 1, kMax);
    w.rank = int_variable(env, "RANK", 0, 0, w.size - 1);
    w.local_size = int_variable(env, "LOCAL_WORLD_SIZE", 1, 1, w.size);
    w.local_rank = int_variable(env, "LOCAL_RANK", 0, 0, w.local_size - 1);
    w.master_addr = variable(env, "MASTER_ADDR").value_or("127.0.0.1");
    w.master_port = port();
  } else if (variable(env, "SLURM_PROCID") && variable(env, "SLURM_STEP_NUM_TASKS")) {
    // A task of srun (the batch script itself, and salloc's shell, have no SLURM_STEP_NUM_TASKS:
    // a plain ktf-host there is one process).
    w.source = "slurm";
    w.size = int_variable(env, "SLURM_STEP_NUM_TASKS", 1, 1, kMax);
    w.rank = int_variable(env, "SLURM_PROCID", 0, 0, w.size - 1);
    if (auto step = variable(env, "SLURM_STEP_TASKS_PER_NODE"))
      w.local_size = tasks_on_first_node("SLURM_STEP_TASKS_PER_NODE", *step);
    else if (auto per = variable(env, "SLURM_NTASKS_PER_NODE"))
      w.local_size = tasks_on_first_node("SLURM_NTASKS_PER_NODE", *per);
    else if (auto tasks = variable(env, "SLURM_TASKS_PER_NODE"))
      w.local_size = tasks_on_first_node("SLURM_TASKS_PER_NODE", *tasks);
    w.local_size = std::min(w.local_size, w.size);
    w.local_rank = int_variable(env, "SLURM_LOCALID", 0, 0, kMax);
    if (w.local_rank >= w.local_size) w.local_size = w.local_rank + 1;
    if (auto addr = variable(env, "MASTER_ADDR"))
      w.master_addr = *addr;
    else if (auto step_nodes = variable(env, "SLURM_STEP_NODELIST"))
      w.master_addr = first_slurm_host(*step_nodes);
    else if (auto nodes = variable(env, "SLURM_JOB_NODELIST"))
      w.master_addr = first_slurm_host(*nodes);
    w.master_port = port();
  } else if (variable(env, "OMPI_COMM_WORLD_RANK") && variable(env, "OMPI_COMM_WORLD_SIZE")) {
    w.source = "openmpi";
    w.size = int_variable(env, "OMPI_COMM_WORLD_SIZE", 1, 1, kMax);
    w.rank = int_variable(env, "OMPI_COMM_WORLD_RANK", 0, 0, w.size - 1);
    w.local_size = int_variable(env, "OMPI_COMM_WORLD_LOCAL_SIZE", 1, 1, w.size);
    w.local_rank = int_variable(env, "OMPI_COMM_WORLD_LOCAL_RANK", 0, 0, w.local_size - 1);
    if (auto addr = variable(env, "MASTER_ADDR"))
      w.master_addr = *addr;
    else if (w.local_size < w.size && w.size > 1)
      throw Error(
          "Open MPI job over several machines: set MASTER_ADDR to the host of rank 0 (mpirun -x "
          "MASTER_ADDR=<host> -x MASTER_PORT=<port> ...)");
    w.master_port = port();
  } else {
    return WorldInfo{};
  }
  const std::string agent = variable(env, "TORCHELASTIC_USE_AGENT_STORE").value_or("");
  w.agent_store = agent == "True" || agent == "true" || agent == "1";
  w.restart_count = int_variable(env, "TORCHELASTIC_RESTART_COUNT",
                                 int_variable(env, "KTF_RESTART_COUNT", 0, 0, kMax), 0, kMax);
  if (w.size == 1) w.source.clear();
  return w;
}

// ---- Communicator ------------------------------------------------------------------------------

struct Communicator::Impl {
  WorldInfo world;
  std::chrono::milliseconds timeout{};
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroup> group;
  decltype(group->barrier()) async_work;
  torch::Tensor async_tensor;
  bool nccl = false;  ///< CUDA tensors go to an NCCL backend (else through the host to Gloo)
#if KTF_WITH_NCCL && KTF_C10D_BACKENDS
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl_group;
#endif

  /// Runs a collective; its failure becomes a DistributedError naming `what`.
  template <class F>
  decltype(auto) run(const char* what, F&& fn) {
    try {
      return fn();
    } catch (const DistributedError&) {
      throw;
    } catch (const std::exception& e) {
      std::string msg = e.what();
      if (auto* c = dynamic_cast<const c10::Error*>(&e)) msg = c->what_without_backtrace();
      const auto nl = msg.find('\n');
      if (nl != std::string::npos) msg.resize(nl);
      throw DistributedError("distributed " + std::string(what) + " failed on rank " +
                             std::to_string(world.rank) + " of " + std::to_string(world.size) +
                             ": " + msg + " (" + lost_rank_hint(timeout) + ")");
    }
  }
  template <class W>
  void wait(const W& work) {
    work->wait();
  }
};

Communicator::Communicator(const WorldInfo& world, std::chrono::milliseconds timeout)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.world = world;
  m.timeout = timeout;
  m.run("rendezvous", [&] {
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<uint16_t>(world.master_port);
    opts.isServer = !world.agent_store && world.rank == 0;
    if (!world.agent_store) opts.numWorkers = static_cast<size_t>(world.size);
    opts.waitWorkers = !world.agent_store;
    opts.timeout = timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(world.master_addr, opts);
    m.store = c10::make_intrusive<c10d::PrefixStore>(
        "ktf/" + std::to_string(world.restart_count) + "/", tcp);
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    // The address Gloo listens on: GLOO_SOCKET_IFNAME's interface (as PyTorch), loopback for a
    // job on one machine, else the address that routes to the rendezvous host.
    if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname) {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    } else {
      std::string addr = is_loopback(world.master_addr)
                             ? "127.0.0.1"
                             : local_address_towards(world.master_addr, world.master_port);
      options->devices.push_back(addr.empty()
                                     ? c10d::ProcessGroupGloo::createDefaultDevice()
                                     : c10d::ProcessGroupGloo::createDeviceForHostname(addr));
    }
    auto gloo =
        c10::make_intrusive<c10d::ProcessGroupGloo>(m.store, world.rank, world.size, options);
#if KTF_C10D_BACKENDS
    m.group = c10::make_intrusive<c10d::ProcessGroup>(m.store, world.rank, world.size);
    m.group->setDefaultBackend(c10d::ProcessGroup::BackendType::GLOO);
    m.group->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::BackendType::GLOO, gloo);
#else
    m.group = gloo;
#endif
    return 0;
  });
  barrier();
}

Communicator::~Communicator() {
#if KTF_WITH_NCCL && KTF_C10D_BACKENDS
  // As torch.distributed.destroy_process_group: NCCL's communicators and watchdog end here.
  if (impl_ && impl_->nccl_group) try {
      impl_->nccl_group->shutdown();
    } catch (...) {
    }
#endif
}

int Communicator::rank() const { return impl_->world.rank; }
int Communicator::size() const { return impl_->world.size; }
const WorldInfo& Communicator::world() const { return impl_->world; }
std::chrono::milliseconds Communicator::timeout() const { return impl_->timeout; }

std::string Communicator::use_device(torch::Device device) {
  if (!device.is_cuda()) return "gloo";
#if KTF_WITH_NCCL && KTF_C10D_BACKENDS
  if (!impl_->nccl)
    impl_->run("NCCL group", [&] {
      auto options = c10d::ProcessGroupNCCL::Options::create();
      options->timeout = impl_->timeout;
      auto store = c10::make_intrusive<c10d::PrefixStore>("nccl/", impl_->store);
      auto nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, impl_->world.rank,
                                                              impl_->world.size, options);
      impl_->group->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::NCCL, nccl);
      return 0;
    });
  impl_->nccl = true;
  return "nccl";
#else
  return "gloo";
#endif
}

namespace {

/// The tensors flattened into one buffer per dtype and device (one collective each), and copied
/// back. The buffer stays on the GPU for CUDA tensors when `on_device` (NCCL), else is on the host.
template <class F>
void coalesced(std::vector<torch::Tensor>& tensors, bool on_device, F&& op) {
  std::map<std::pair<int, bool>, std::vector<size_t>> groups;
  for (size_t i = 0; i < tensors.size(); ++i)
    if (tensors[i].defined() && tensors[i].numel() > 0)
      groups[{static_cast<int>(tensors[i].scalar_type()), on_device && tensors[i].is_cuda()}]
          .push_back(i);
  for (auto& [key, indices] : groups) {
    std::vector<torch::Tensor> flat;
    for (size_t i : indices)
      flat.push_back(key.second ? tensors[i].detach().reshape({-1})
                                : tensors[i].detach().to(torch::kCPU).reshape({-1}));
    torch::Tensor buffer = flat.size() == 1 ? flat[0].clone() : torch::cat(flat);
    op(buffer);
    int64_t offset = 0;
    torch::NoGradGuard no_grad;
    for (size_t i : indices) {
      const int64_t n = tensors[i].numel();
      tensors[i].copy_(buffer.slice(0, offset, offset + n).view(tensors[i].sizes()));
      offset += n;
    }
  }
}

}  // namespace

void Communicator::all_reduce_sum(std::vector<torch::Tensor>& tensors) {
  impl_->run("all-reduce", [&] {
    coalesced(tensors, impl_->nccl, [&](torch::Tensor& buffer) {
      std::vector<at::Tensor> io{buffer};
      impl_->wait(impl_->group->allreduce(io));
    });
    return 0;
  });
}

void Communicator::broadcast(std::vector<torch::Tensor>& tensors, int root) {
  impl_->run("broadcast", [&] {
    coalesced(tensors, impl_->nccl, [&](torch::Tensor& buffer) {
      std::vector<at::Tensor> io{buffer};
      c10d::BroadcastOptions opts;
      opts.rootRank = root;
      impl_->wait(impl_->group->broadcast(io, opts));
    });
    return 0;
  });
}

std::vector<std::string> Communicator::all_gather_bytes(const std::string& bytes) {
  return impl_->run("all-gather", [&] {
    const int n = size();
    auto gather = [&](const torch::Tensor& mine) {
      std::vector<std::vector<at::Tensor>> out(1);
      for (int r = 0; r < n; ++r) out[0].push_back(torch::empty_like(mine));
      std::vector<at::Tensor> in{mine};
      impl_->wait(impl_->group->allgather(out, in));
      return out[0];
    };
    auto sizes = gather(torch::tensor({static_cast<int64_t>(bytes.size())}, torch::kLong));
    int64_t longest = 1;
    for (auto& s : sizes) longest = std::max(longest, s.item<int64_t>());
    auto mine = torch::zeros({longest}, torch::kUInt8);
    std::memcpy(mine.data_ptr(), bytes.data(), bytes.size());
    auto all = gather(mine);
    std::vector<std::string> result;
    for (int r = 0; r < n; ++r)
      result.emplace_back(static_cast<const char*>(all[r].data_ptr()),
                          static_cast<size_t>(sizes[r].item<int64_t>()));
    return result;
  });
}

std::vector<std::string> Communicator::gather_bytes(const std::string& bytes, int root) {
  return impl_->run("gather", [&] {
    const int n = size();
    // The sizes everywhere (small), the bytes only on the root.
    std::vector<std::vector<at::Tensor>> sizes(1);
    for (int r = 0; r < n; ++r) sizes[0].push_back(torch::empty({1}, torch::kLong));
    std::vector<at::Tensor> mine_size{
        torch::tensor({static_cast<int64_t>(bytes.size())}, torch::kLong)};
    impl_->wait(impl_->group->allgather(sizes, mine_size));
    int64_t longest = 1;
    for (auto& s : sizes[0]) longest = std::max(longest, s.item<int64_t>());
    auto mine = torch::zeros({longest}, torch::kUInt8);
    std::memcpy(mine.data_ptr(), bytes.data(), bytes.size());
    std::vector<std::vector<at::Tensor>> out;
    if (rank() == root) {
      out.resize(1);
      for (int r = 0; r < n; ++r) out[0].push_back(torch::empty({longest}, torch::kUInt8));
    }
    std::vector<at::Tensor> in{mine};
    c10d::GatherOptions opts;
    opts.rootRank = root;
    impl_->wait(impl_->group->gather(out, in, opts));
    std::vector<std::string> result;
    if (rank() == root)
      for (int r = 0; r < n; ++r)
        result.emplace_back(static_cast<const char*>(out[0][r].data_ptr()),
                            static_cast<size_t>(sizes[0][r].item<int64_t>()));
    return result;
  });
}

std::string Communicator::broadcast_bytes(const std::string& bytes, int root) {
  std::vector<torch::Tensor> length{
      torch::tensor({static_cast<int64_t>(bytes.size())}, torch::kLong)};
  broadcast(length, root);
  const int64_t n = length[0].item<int64_t>();
  if (n == 0) return "";
  std::vector<torch::Tensor> data{torch::empty({n}, torch::kUInt8)};
  if (rank() == root) std::memcpy(data[0].data_ptr(), bytes.data(), bytes.size());
  broadcast(data, root);
  return std::string(static_cast<const char*>(data[0].data_ptr()), static_cast<size_t>(n));
}

void Communicator::barrier() {
  // An all-reduce of one number: a barrier that the Gloo timeout bounds on every libtorch.
  std::vector<torch::Tensor> one{torch::ones({1}, torch::kLong)};
  all_reduce_sum(one);
}

void Communicator::start_async_sum(torch::Tensor tensor) {
  KTF_CHECK_RUNTIME(!impl_->async_work, "start_async_sum: one is already pending");
  impl_->async_tensor = tensor.detach().to(torch::kCPU).contiguous().clone();
  impl_->run("all-reduce", [&] {
    std::vector<at::Tensor> io{impl_->async_tensor};
    impl_->async_work = impl_->group->allreduce(io);
    return 0;
  });
}

torch::Tensor Communicator::finish_async_sum() {
  KTF_CHECK_RUNTIME(impl_->async_work, "finish_async_sum: none is pending");
  auto work = std::move(impl_->async_work);
  impl_->async_work = {};
  impl_->run("all-reduce", [&] {
    impl_->wait(work);
    return 0;
  });
  return impl_->async_tensor;
}

bool Communicator::async_sum_pending() const { return static_cast<bool>(impl_->async_work); }

Communicator* communicator() { return g_communicator.get(); }
void set_communicator(std::shared_ptr<Communicator> comm) { g_communicator = std::move(comm); }

// ---- gradients ---------------------------------------------------------------------------------

struct GradientSync::Impl {
  std::shared_ptr<c10d::Reducer> reducer;
  std::shared_ptr<c10d::Logger> logger;
  Communicator* comm = nullptr;
};

GradientSync::GradientSync(Communicator& comm, std::vector<torch::Tensor> params)
    : impl_(std::make_unique<Impl>()), params_(std::move(params)) {
  KTF_CHECK_RUNTIME(!params_.empty(), "distributed training: the model has no trainable parameter");
  impl_->comm = &comm;
  constexpr int64_t kBucketBytes = 25 * 1024 * 1024, kFirstBucketBytes = 1024 * 1024;
  const std::vector<bool> sparse(params_.size(), false);
  comm.impl().run("gradient buckets", [&] {
    // Buckets in the reverse order of the parameters (about the order backward produces their
    // gradients), the first of kFirstBucketBytes, the others of kBucketBytes. They are never
    // rebuilt (PyTorch's DDP rebuilds them after its first step in the observed order): a resumed
    // job then sums every gradient in the same chunks as an uninterrupted one, bit for bit.
    auto [indices, limits] = c10d::compute_bucket_assignment_by_size(
        params_, {static_cast<size_t>(kFirstBucketBytes), static_cast<size_t>(kBucketBytes)},
        sparse);
    std::reverse(indices.begin(), indices.end());
    std::reverse(limits.begin(), limits.end());
#if KTF_C10D_BACKENDS
    impl_->reducer = std::make_shared<c10d::Reducer>(
        params_, indices, comm.impl().group, sparse, kBucketBytes,
        /*find_unused_parameters=*/false, /*gradient_as_bucket_view=*/false,
        std::unordered_map<size_t, std::string>{}, kFirstBucketBytes,
        /*skip_all_reduce_unused_params=*/false, /*use_python_reducer=*/false,
        std::vector<int64_t>{});
#else
    impl_->reducer = std::make_shared<c10d::Reducer>(
        params_, indices, limits, comm.impl().group, sparse, kBucketBytes,
        /*find_unused_parameters=*/false, /*gradient_as_bucket_view=*/false,
        std::unordered_map<size_t, std::string>{}, kFirstBucketBytes);
#endif
    impl_->logger = std::make_shared<c10d::Logger>(impl_->reducer);
    impl_->reducer->set_logger(impl_->logger);
    return 0;
  });
}

GradientSync::~GradientSync() = default;

void GradientSync::prepare_for_backward() {
  try {
    impl_->reducer->prepare_for_forward();
    impl_->reducer->prepare_for_backward({});
  } catch (const c10::Error& e) {
    const std::string msg = e.what_without_backtrace();
    if (msg.find("finished reduction in the prior iteration") != std::string::npos)
      throw Error("distributed training on rank " + std::to_string(impl_->comm->rank()) +
                      ": a parameter that got a gradient at the first step got none at the "
                      "last one (the model's graph changes between steps), which the gradient "
                      "all-reduce does not support (docs/distributed.md)",
                  {}, kExitRuntime);
    impl_->comm->impl().run("gradient all-reduce", [&]() -> int { throw; });
  }
}

std::vector<torch::Tensor> parameters_reached(const torch::Tensor& loss,
                                              const std::vector<torch::Tensor>& params) {
  std::unordered_set<const void*> reached;
  std::vector<torch::autograd::Node*> todo;
  std::unordered_set<torch::autograd::Node*> seen;
  if (auto fn = loss.grad_fn()) todo.push_back(fn.get());
  while (!todo.empty()) {
    auto* node = todo.back();
    todo.pop_back();
    if (!seen.insert(node).second) continue;
    if (auto* acc = dynamic_cast<torch::autograd::AccumulateGrad*>(node))
      reached.insert(acc->variable.unsafeGetTensorImpl());
    for (const auto& edge : node->next_edges())
      if (edge.function) todo.push_back(edge.function.get());
  }
  std::vector<torch::Tensor> out;
  for (const auto& p : params)
    if (reached.count(p.unsafeGetTensorImpl())) out.push_back(p);
  return out;
}

State all_reduce_state(Communicator& comm, const State& state) {
  const auto all = comm.all_gather_bytes(state.to_bytes());
  State sum = State::from_bytes(all[0]);
  for (size_t r = 1; r < all.size(); ++r) sum.add(State::from_bytes(all[r]));
  return sum;
}

uint64_t tensors_checksum(const std::vector<torch::Tensor>& tensors) {
  uint64_t h = 1469598103934665603ULL;
  for (const auto& t : tensors) {
    if (!t.defined()) continue;
    auto c = t.detach().to(torch::kCPU).contiguous();
    const auto* p = static_cast<const unsigned char*>(c.data_ptr());
    const size_t n = static_cast<size_t>(c.numel()) * c.element_size();
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ULL;
  }
  return h;
}

}  // namespace ktf
