// Data-parallel building blocks (ktf/distributed.h): the rendezvous read from torchrun's, Slurm's
// and Open MPI's variables, summing states, and two ranks in two threads of this process meeting
// over a real c10d TCPStore and Gloo group: collectives, the Reducer's gradient averaging, and a
// lost rank ending a wait within the timeout.
#include <gtest/gtest.h>
#include <ktf/distributed.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <future>
#include <thread>

namespace {

using ktf::Communicator;
using ktf::EnvironmentVariables;
using ktf::WorldInfo;

WorldInfo world(const EnvironmentVariables& env) { return ktf::world_from_environment(&env); }

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ktf::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no ktf::Error thrown";
  return "";
}

TEST(WorldFromEnvironment, NoVariablesOrOneRankIsOneProcess) {
  EXPECT_FALSE(world({}).distributed());
  EXPECT_EQ(world({}).size, 1);
  auto one = world({{"RANK", "0"}, {"WORLD_SIZE", "1"}});
  EXPECT_FALSE(one.distributed());
  EXPECT_EQ(one.source, "");
}

TEST(WorldFromEnvironment, TorchrunAndKubeflowVariables) {
  auto w = world({{"RANK", "3"},
                  {"WORLD_SIZE", "4"},
                  {"LOCAL_RANK", "1"},
                  {"LOCAL_WORLD_SIZE", "2"},
                  {"MASTER_ADDR", "10.1.2.3"},
                  {"MASTER_PORT", "23456"},
                  {"TORCHELASTIC_USE_AGENT_STORE", "True"},
                  {"TORCHELASTIC_RESTART_COUNT", "2"}});
  EXPECT_TRUE(w.distributed());
  EXPECT_EQ(w.source, "torchrun");
  EXPECT_EQ(w.rank, 3);
  EXPECT_EQ(w.size, 4);
  EXPECT_EQ(w.local_rank, 1);
  EXPECT_EQ(w.local_size, 2);
  EXPECT_EQ(w.master_addr, "10.1.2.3");
  EXPECT_EQ(w.master_port, 23456);
  EXPECT_TRUE(w.agent_store);
  EXPECT_EQ(w.restart_count, 2);
  // Kubeflow's PyTorchJob: one process per pod, no LOCAL_* variables.
  auto pod = world({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "job-master-0"}});
  EXPECT_EQ(pod.local_rank, 0);
  EXPECT_EQ(pod.local_size, 1);
  EXPECT_EQ(pod.master_port, 29500);
  EXPECT_FALSE(pod.agent_store);
  EXPECT_EQ(pod.describe(),
            "rank 1 of 2 (torchrun, local rank 0 of 1, rendezvous job-master-0:29500)");
}

TEST(WorldFromEnvironment, SlurmVariablesAndTheFirstHostOfTheNodeList) {
  // The batch script itself (or salloc's shell): Slurm's variables without a job step.
  EXPECT_FALSE(world({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "8"}}).distributed());
  auto w = world({{"SLURM_PROCID", "5"},
                  {"SLURM_NTASKS", "8"},
                  {"SLURM_STEP_NUM_TASKS", "8"},
                  {"SLURM_LOCALID", "1"},
                  {"SLURM_TASKS_PER_NODE", "4(x2)"},
                  {"SLURM_JOB_NODELIST", "gpu[07-08,11],login1"}});
  EXPECT_EQ(w.source, "slurm");
  EXPECT_EQ(w.rank, 5);
  EXPECT_EQ(w.size, 8);
  EXPECT_EQ(w.local_rank, 1);
  EXPECT_EQ(w.local_size, 4);
  EXPECT_EQ(w.master_addr, "gpu07");
  EXPECT_EQ(w.master_port, 29500);
  EXPECT_EQ(ktf::first_slurm_host("node1,node2"), "node1");
  EXPECT_EQ(ktf::first_slurm_host("node[3-9]"), "node3");
  EXPECT_EQ(ktf::first_slurm_host("rack[2,4]-n[10-12],x"), "rack2-n10");
  // MASTER_ADDR wins over the node list.
  EXPECT_EQ(world({{"SLURM_PROCID", "0"},
                   {"SLURM_STEP_NUM_TASKS", "2"},
                   {"SLURM_JOB_NODELIST", "a[1-2]"},
                   {"MASTER_ADDR", "10.0.0.9"}})
                .master_addr,
            "10.0.0.9");
}

TEST(WorldFromEnvironment, OpenMpiVariablesNeedMasterAddrAcrossMachines) {
  auto local = world({{"OMPI_COMM_WORLD_RANK", "1"},
                      {"OMPI_COMM_WORLD_SIZE", "2"},
                      {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                      {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}});
  EXPECT_EQ(local.source, "openmpi");
  EXPECT_EQ(local.rank, 1);
  EXPECT_EQ(local.master_addr, "127.0.0.1");
  const std::string e = error_of([] {
    world({{"OMPI_COMM_WORLD_RANK", "1"},
           {"OMPI_COMM_WORLD_SIZE", "4"},
           {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
           {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}});
  });
  EXPECT_NE(e.find("set MASTER_ADDR to the host of rank 0"), std::string::npos) << e;
}

TEST(WorldFromEnvironment, BadValuesNameTheVariable) {
  EXPECT_EQ(error_of([] {
              world({{"RANK", "two"}, {"WORLD_SIZE", "4"}});
            }),
            "environment variable RANK='two': expected an integer from 0 to 3");
  EXPECT_EQ(error_of([] {
              world({{"RANK", "4"}, {"WORLD_SIZE", "4"}});
            }),
            "environment variable RANK='4': expected an integer from 0 to 3");
  EXPECT_EQ(error_of([] {
              world({{"RANK", "0"}, {"WORLD_SIZE", "0"}});
            }),
            "environment variable WORLD_SIZE='0': expected an integer from 1 to 1048576");
  EXPECT_EQ(error_of([] {
              world({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "70000"}});
            }),
            "environment variable MASTER_PORT='70000': expected an integer from 1 to 65535");
  try {
    world({{"RANK", "x"}, {"WORLD_SIZE", "2"}});
  } catch (const ktf::Error& e) {
    EXPECT_EQ(e.exit_code(), ktf::kExitConfig);
  }
}

TEST(StateAdd, SumsNumbersAndTensorsRecursivelyAndKeepsOtherValues) {
  ktf::State a, b;
  a.set("total", 3);
  a.set_number("mean", 0.5);
  a.set("name", "acc");
  a.set_tensor("hits", torch::tensor({1, 2}));
  a.set_tensor("empty", torch::Tensor());
  a.child("inner").set_tensor("counts", torch::ones({2, 2}));
  b.set("total", 4);
  b.set_number("mean", 0.25);
  b.set("name", "acc");
  b.set_tensor("hits", torch::tensor({10, 20}));
  b.set_tensor("empty", torch::tensor({7.0}));
  b.child("inner").set_tensor("counts", torch::ones({2, 2}));
  a.add(b);
  EXPECT_EQ(a.at("total").as_int(), 7);
  EXPECT_DOUBLE_EQ(a.number("mean"), 0.75);
  EXPECT_EQ(a.at("name").as_string(), "acc");
  EXPECT_TRUE(torch::equal(a.tensor("hits"), torch::tensor({11, 22})));
  EXPECT_TRUE(torch::equal(a.tensor("empty"), torch::tensor({7.0})));  // undefined counts as 0
  EXPECT_TRUE(torch::equal(a.child("inner").tensor("counts"), 2 * torch::ones({2, 2})));
  ktf::State c;
  c.set_tensor("hits", torch::ones({3}));
  EXPECT_NE(error_of([&] { a.add(c); }).find("state tensor 'hits': shapes"), std::string::npos);
  EXPECT_EQ(ktf::State::from_bytes(a.to_bytes()), a);
  EXPECT_NE(error_of([] { ktf::State::from_bytes("not an archive"); }).find("not a ktf state"),
            std::string::npos);
}

TEST(CommunicationErrors, GlooMessagesOfBothLibtorchesAreTheNetworksOthersAreTheModels) {
  for (const char* msg :
       {"[./gloo/transport/tcp/pair.cc:589] Read error [127.0.0.1]:20887: Connection reset by peer",
        "[./gloo/transport/tcp/unbound_buffer.cc:81] Timed out waiting 5000ms for recv operation",
        "Application timeout caused pair closure"})
    EXPECT_TRUE(ktf::is_communication_error(msg)) << msg;
  for (const char* msg : {"mat1 and mat2 shapes cannot be multiplied (32x784 and 10x64)",
                          "Expected all tensors to be on the same device"})
    EXPECT_FALSE(ktf::is_communication_error(msg)) << msg;
  EXPECT_EQ(ktf::lost_rank_hint(std::chrono::milliseconds(2500)),
            "another rank stopped or hung longer than the timeout of 2.5 s, or the network failed");
}

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  const int port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

WorldInfo rank_of_two(int rank, int port) {
  WorldInfo w;
  w.rank = rank;
  w.size = 2;
  w.source = "test";
  w.master_addr = "127.0.0.1";
  w.master_port = port;
  return w;
}

/// Runs `body(comm)` as rank 0 and rank 1 of one job, each in its own thread.
void two_ranks(const std::function<void(Communicator&)>& body,
               std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  const int port = free_port();
  auto rank = [&](int r) {
    Communicator comm(rank_of_two(r, port), timeout);
    body(comm);
  };
  auto other = std::async(std::launch::async, rank, 1);
  rank(0);
  other.get();
}

TEST(Communicator, CollectivesOfTwoRanks) {
  two_ranks([](Communicator& comm) {
    const int r = comm.rank();
    EXPECT_EQ(comm.size(), 2);
    std::vector<torch::Tensor> sums{torch::full({3}, r + 1.0), torch::tensor({int64_t{r}}),
                                    torch::full({2, 2}, 2.0 * r)};
    comm.all_reduce_sum(sums);
    EXPECT_TRUE(torch::equal(sums[0], torch::full({3}, 3.0)));
    EXPECT_TRUE(torch::equal(sums[1], torch::tensor({int64_t{1}})));
    EXPECT_TRUE(torch::equal(sums[2], torch::full({2, 2}, 2.0)));
    std::vector<torch::Tensor> b{torch::full({4}, r == 0 ? 5.0f : -1.0f)};
    comm.broadcast(b);
    EXPECT_TRUE(torch::equal(b[0], torch::full({4}, 5.0f)));
    auto all = comm.all_gather_bytes(std::string(static_cast<size_t>(r * 3 + 1), 'a' + r));
    EXPECT_EQ(all, (std::vector<std::string>{"a", "bbbb"}));
    EXPECT_EQ(comm.broadcast_bytes(r == 0 ? std::string("from rank 0\0!", 13) : "", 0),
              std::string("from rank 0\0!", 13));
    comm.start_async_sum(torch::tensor({1.0, r * 1.0}));
    EXPECT_TRUE(comm.async_sum_pending());
    EXPECT_TRUE(torch::equal(comm.finish_async_sum(), torch::tensor({2.0, 1.0})));
    EXPECT_FALSE(comm.async_sum_pending());
  });
}

TEST(GradientSync, BackwardAveragesTheGradientsOfBothRanks) {
  // Two ranks with the same weights and different inputs: after backward each holds the mean of
  // the two ranks' gradients, as one process with both inputs in its batch.
  torch::manual_seed(3);
  const auto w0 = torch::randn({4, 3}), x0 = torch::randn({5, 3}), x1 = torch::randn({5, 3});
  auto grad_of = [&](const torch::Tensor& x) {
    auto w = w0.clone().requires_grad_(true);
    torch::mm(x, w.t()).pow(2).mean().backward();
    return w.grad().clone();
  };
  const auto expected = (grad_of(x0) + grad_of(x1)) / 2;
  two_ranks([&](Communicator& comm) {
    auto w = w0.clone().requires_grad_(true);
    auto unused = torch::zeros({2}, torch::requires_grad());
    for (int step = 0; step < 3; ++step) {  // the second step runs with rebuilt buckets
      w.mutable_grad() = torch::Tensor();
      auto loss = torch::mm(comm.rank() == 0 ? x0 : x1, w.t()).pow(2).mean();
      auto reached = ktf::parameters_reached(loss, {w, unused});
      ASSERT_EQ(reached.size(), 1u);
      static thread_local std::unique_ptr<ktf::GradientSync> sync;
      if (!sync) sync = std::make_unique<ktf::GradientSync>(comm, reached);
      sync->prepare_for_backward();
      loss.backward();
      EXPECT_TRUE(torch::allclose(w.grad(), expected, 1e-6, 1e-7)) << "step " << step;
    }
  });
}

TEST(Communicator, ALostRankEndsTheWaitWithinTheTimeout) {
  const auto timeout = std::chrono::milliseconds(1500);
  const int port = free_port();
  std::promise<void> joined;
  auto quitter = std::async(std::launch::async, [&] {
    Communicator comm(rank_of_two(1, port), timeout);
    joined.set_value();
    std::this_thread::sleep_for(std::chrono::milliseconds(3000));  // never joins the all-reduce
  });
  Communicator comm(rank_of_two(0, port), timeout);
  joined.get_future().wait();
  const auto start = std::chrono::steady_clock::now();
  std::vector<torch::Tensor> t{torch::ones({1})};
  const std::string e = error_of([&] { comm.all_reduce_sum(t); });
  const double waited =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_NE(e.find("distributed all-reduce failed on rank 0 of 2"), std::string::npos) << e;
  EXPECT_NE(e.find("timeout of 1.5 s"), std::string::npos) << e;
  EXPECT_LT(waited, 3.0);
  EXPECT_GT(waited, 1.0);
  quitter.get();
}

TEST(Communicator, ARendezvousNobodyServesFailsWithinTheTimeout) {
  const auto start = std::chrono::steady_clock::now();
  const std::string e = error_of(
      [&] { Communicator comm(rank_of_two(1, free_port()), std::chrono::milliseconds(1500)); });
  EXPECT_NE(e.find("distributed rendezvous failed on rank 1 of 2"), std::string::npos) << e;
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 10.0);
}

}  // namespace
