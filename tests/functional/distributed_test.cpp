// Data-parallel training end to end (docs/distributed.md): ktf-host's ranks on Fashion-MNIST,
// started by `ktf-host --nproc-per-node`, by Debian's torchrun and by hand in two network
// namespaces joined by a veth pair. Two ranks of batch 32 end with the weights of one rank of
// batch 64; a killed rank is restarted and the job resumes to the uninterrupted job's weights; a
// hung rank stops the job within the timeout; a resume with another number of ranks is refused
// inside an epoch and allowed at its end.
#include <gtest/gtest.h>
#include <ktf/components.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "plugins_fixture.h"

namespace {

namespace fs = std::filesystem;

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

const char* kModel = R"({"ktf.networks.MLP": {"num_outputs": 10, "hidden": [64, 32]}})";

/// Fashion-MNIST, an MLP and Adam; `batch` per rank, `steps` per epoch.
std::string config(int batch, int steps, int epochs) {
  return R"([{"datasets": {"ktf.datasets.fashion.fashion_mnist.from_idx": {"batch_size": )" +
         std::to_string(batch) + R"(, "mean": [0.286], "std": [0.353]}},
  "model": )" +
         std::string(kModel) +
         R"(,
  "loss": {"tf.keras.losses.SparseCategoricalCrossentropy": {"from_logits": true}},
  "metrics": [{"tf.keras.metrics.SparseCategoricalAccuracy": {}}],
  "optimizer": {"tf.keras.optimizers.Adam": {"learning_rate": 0.002}},
  "train_loop": {"ktf.train.KerasTrainLoop": {"num_epochs": )" +
         std::to_string(epochs) + R"(, "steps_per_epoch": )" + std::to_string(steps) +
         R"(, "num_valid_steps": 8, "verbose": 0}},
  "checkpoint": {"every_steps": 10}}])";
}

class Distributed : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ktf::test::scratch_dir(std::string("distributed_") +
                                  ::testing::UnitTest::GetInstance()->current_test_info()->name());
  }

  std::string write_config(const std::string& name, const std::string& text) {
    const std::string path = dir_ + "/" + name + ".json";
    std::ofstream(path) << text;
    return path;
  }
  std::string host(const std::string& args) const {
    return std::string(KTF_HOST) + " --plugins " + KTF_TEST_PLUGIN_DIR + " --threads 1 " + args;
  }
  ktf::test::CommandResult run(const std::string& args) const {
    return ktf::test::run_command("KTF_PLUGIN_PATH= " + host(args));
  }
  /// Starts `command` with its output in `log`; returns its pid.
  static pid_t spawn(const std::string& command, const std::string& log) {
    const std::string line = "exec " + command + " >" + log + " 2>&1";
    pid_t pid = ::fork();
    if (pid == 0) {
      ::unsetenv("KTF_PLUGIN_PATH");
      ::execl("/bin/sh", "sh", "-c", line.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    return pid;
  }
  static int wait_for(pid_t pid) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  /// Waits until `file` holds `text` (the test fails after 120 s).
  static bool wait_until(const std::function<bool()>& ready) {
    for (int i = 0; i < 1200; ++i) {
      if (ready()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }
  static bool has_checkpoint(const std::string& run) {
    std::error_code ec;
    if (!fs::is_directory(run + "/checkpoints", ec)) return false;
    for (const auto& e : fs::directory_iterator(run + "/checkpoints", ec))
      if (e.path().extension() == ".json") return true;
    return false;
  }
  /// The launcher's rank pids ("started 2 ranks (pids A B)").
  static std::vector<pid_t> rank_pids(const std::string& log) {
    std::smatch m;
    const std::string text = read_file(log);
    std::vector<pid_t> pids;
    if (std::regex_search(text, m, std::regex("started 2 ranks \\(pids ([0-9]+) ([0-9]+)\\)")))
      pids = {std::stoi(m[1]), std::stoi(m[2])};
    return pids;
  }

  /// The largest difference between two runs' final weights (loaded into the config's model).
  static double max_difference(const std::string& a, const std::string& b) {
    auto load = [](const std::string& path) {
      ktf::Json model = ktf::Json::parse(kModel);
      model["ktf.networks.MLP"].set("input_shape", ktf::Json::array({1, 28, 28}));
      auto net = ktf::test::build<ktf::Network>(model);
      torch::serialize::InputArchive archive;
      archive.load_from(path);
      net->load(archive);
      return net;
    };
    auto x = load(a), y = load(b);
    double worst = 0;
    auto px = x->named_parameters(), py = y->named_parameters();
    for (const auto& item : px)
      worst = std::max(worst, (item.value() - py[item.key()]).abs().max().item<double>());
    return worst;
  }

  std::string dir_;
};

TEST_F(Distributed, TwoRanksOfBatch32EndWithTheWeightsOfOneRankOfBatch64) {
  const std::string two = write_config("two", config(32, 60, 1));
  const std::string one = write_config("one", config(64, 60, 1));
  auto r1 = run("-c " + one + " -o " + dir_ + "/one");
  ASSERT_EQ(r1.exit_code, 0) << r1.output;
  const std::string tmp = dir_ + "/tmp";
  fs::create_directories(tmp);
  auto r2 = ktf::test::run_command("KTF_PLUGIN_PATH= TMPDIR=" + tmp + " " +
                                   host("--nproc-per-node 2 -c " + two + " -o " + dir_ + "/two"));
  ASSERT_EQ(r2.exit_code, 0) << r2.output;
  EXPECT_NE(r2.output.find("started 2 ranks"), std::string::npos) << r2.output;
  EXPECT_NE(r2.output.find("parameters identical on all 2 ranks"), std::string::npos) << r2.output;
  const double diff =
      max_difference(dir_ + "/one/weights/cycle-1.pt", dir_ + "/two/weights/cycle-1.pt");
  EXPECT_LT(diff, 1e-5) << "two ranks of 32 against one of 64";
  // The comparison has teeth: one rank of batch 32 (half the data per step) ends elsewhere.
  auto half = run("-c " + two + " -o " + dir_ + "/half");
  ASSERT_EQ(half.exit_code, 0) << half.output;
  EXPECT_GT(max_difference(dir_ + "/one/weights/cycle-1.pt", dir_ + "/half/weights/cycle-1.pt"),
            1e-3);
  // The logs report the job's figures: the same loss and accuracy as the single process.
  auto line = [](const std::string& out) {
    std::smatch m;
    std::regex_search(out, m,
                      std::regex("done - (loss: [0-9.]+ - accuracy: [0-9.]+ - "
                                 "val_loss: [0-9.]+ - val_accuracy: [0-9.]+)"));
    return m.size() > 1 ? m[1].str() : std::string("(no summary)");
  };
  EXPECT_EQ(line(r2.output), line(r1.output));
  // Only rank 0 writes the run directory; the other rank's scratch directory is gone.
  EXPECT_TRUE(fs::exists(dir_ + "/two/metrics.jsonl"));
  EXPECT_TRUE(fs::is_empty(tmp)) << fs::directory_iterator(tmp)->path();
}

TEST_F(Distributed, TorchrunStartsTheSameJob) {
  ASSERT_TRUE(fs::exists(KTF_TORCHRUN))
      << KTF_TORCHRUN << " is missing (python3-torch, or the PyTorch wheel's virtual environment, "
      << "installed by scripts/setup.sh)";
  const std::string cfg = write_config("cfg", config(32, 30, 1));
  auto a = run("--nproc-per-node 2 -c " + cfg + " -o " + dir_ + "/builtin");
  ASSERT_EQ(a.exit_code, 0) << a.output;
  // Debian's torchrun 1.13 needs --redirects/--tee on Python 3.11 (an IntFlag change).
  auto b =
      ktf::test::run_command(std::string("KTF_PLUGIN_PATH= ") + KTF_TORCHRUN +
                             " --standalone --nproc_per_node=2 --redirects 2 --tee 2 --no_python " +
                             host("-c " + cfg + " -o " + dir_ + "/torchrun"));
  ASSERT_EQ(b.exit_code, 0) << b.output;
  EXPECT_NE(b.output.find("this is rank 0 of 2 (torchrun"), std::string::npos) << b.output;
  EXPECT_TRUE(read_file(dir_ + "/builtin/weights/cycle-1.pt") ==
              read_file(dir_ + "/torchrun/weights/cycle-1.pt"));
}

TEST_F(Distributed, AKilledRankIsRestartedAndTheJobEndsWithTheUninterruptedWeights) {
  const std::string cfg = write_config("cfg", config(32, 150, 2));
  auto ref = run("--nproc-per-node 2 -c " + cfg + " -o " + dir_ + "/ref");
  ASSERT_EQ(ref.exit_code, 0) << ref.output;
  const std::string out = dir_ + "/run", log = dir_ + "/run.log";
  pid_t job = spawn(
      host("--nproc-per-node 2 --max-restarts 1 -c " + cfg + " -o " + out + " --resume auto"), log);
  ASSERT_TRUE(wait_until([&] { return has_checkpoint(out) && rank_pids(log).size() == 2; }))
      << read_file(log);
  ASSERT_EQ(::kill(rank_pids(log)[1], SIGKILL), 0);
  EXPECT_EQ(wait_for(job), 0) << read_file(log);
  const std::string text = read_file(log);
  EXPECT_NE(text.find("rank 1 (pid"), std::string::npos) << text;
  EXPECT_NE(text.find("was killed by signal 9"), std::string::npos) << text;
  EXPECT_NE(text.find("restarting the job (restart 1 of 1)"), std::string::npos) << text;
  EXPECT_NE(text.find("ktf: resuming from checkpoint"), std::string::npos) << text;
  EXPECT_TRUE(read_file(out + "/weights/cycle-1.pt") == read_file(dir_ + "/ref/weights/cycle-1.pt"))
      << "the restarted job's weights differ from the uninterrupted job's";
}

/// The pid of the process whose command line holds `marker` and whose environment has RANK=`rank`
/// (a rank started by torchrun, which does not print its ranks' pids), or 0.
pid_t rank_process(const std::string& marker, int rank) {
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline = read_file(e.path() / "cmdline"), env = read_file(e.path() / "environ");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (cmdline.find("ktf-host") == std::string::npos || cmdline.find(marker) == std::string::npos)
      continue;
    const std::string want = "RANK=" + std::to_string(rank);
    if (env.rfind(want + '\0', 0) == 0 || env.find('\0' + want + '\0') != std::string::npos)
      return static_cast<pid_t>(std::stol(name));
  }
  return 0;
}

TEST_F(Distributed, TorchrunRestartsTheJobAfterAKilledRankAndItResumes) {
  ASSERT_TRUE(fs::exists(KTF_TORCHRUN)) << KTF_TORCHRUN << " is missing";
  const std::string cfg = write_config("cfg", config(32, 150, 2));
  auto ref = run("--nproc-per-node 2 -c " + cfg + " -o " + dir_ + "/ref");
  ASSERT_EQ(ref.exit_code, 0) << ref.output;
  const std::string out = dir_ + "/run", log = dir_ + "/run.log";
  pid_t job = spawn(std::string(KTF_TORCHRUN) +
                        " --standalone --nproc_per_node=2 --max_restarts 1 --redirects 2 --tee 2 "
                        "--no_python " +
                        host("-c " + cfg + " -o " + out + " --resume auto"),
                    log);
  pid_t victim = 0;
  ASSERT_TRUE(wait_until([&] {
    return has_checkpoint(out) && (victim = rank_process(" -o " + out + " ", 1)) > 0;
  })) << read_file(log);
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  EXPECT_EQ(wait_for(job), 0) << read_file(log);
  const std::string text = read_file(log);
  EXPECT_NE(text.find("restart 1)"), std::string::npos) << text;
  EXPECT_NE(text.find("ktf: resuming from checkpoint"), std::string::npos) << text;
  EXPECT_TRUE(read_file(out + "/weights/cycle-1.pt") == read_file(dir_ + "/ref/weights/cycle-1.pt"))
      << "the restarted job's weights differ from the uninterrupted job's";
}

TEST_F(Distributed, AHungRankStopsTheJobWithAnErrorWithinTheTimeout) {
  const std::string cfg = write_config("cfg", config(32, 100000, 1));
  const std::string out = dir_ + "/run", log = dir_ + "/run.log";
  pid_t job = spawn(host("--nproc-per-node 2 --dist-timeout 3 -c " + cfg + " -o " + out), log);
  ASSERT_TRUE(wait_until([&] { return has_checkpoint(out) && rank_pids(log).size() == 2; }))
      << read_file(log);
  const pid_t hung = rank_pids(log)[1];
  ASSERT_EQ(::kill(hung, SIGSTOP), 0);
  const auto stopped = std::chrono::steady_clock::now();
  ASSERT_TRUE(
      wait_until([&] { return read_file(log).find("ktf-host (rank 0):") != std::string::npos; }));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - stopped).count();
  EXPECT_EQ(wait_for(job), 1);
  const std::string text = read_file(log);
  EXPECT_LT(seconds, 3 + 5.0) << text;  // the timeout, plus the step that was under way
  EXPECT_NE(text.find("failed on rank 0 of 2"), std::string::npos) << text;
  EXPECT_NE(text.find("timeout of 3 s"), std::string::npos) << text;
  EXPECT_NE(text.find("the last checkpoint is ckpt-"), std::string::npos) << text;
  EXPECT_NE(text.find("did not stop within"), std::string::npos) << text;  // killed after
  ::kill(hung, SIGKILL);
}

TEST_F(Distributed, AnotherNumberOfRanksResumesOnlyFromAnEpochEnd) {
  const std::string cfg = write_config("cfg", config(32, 400, 2));
  const std::string out = dir_ + "/run", log = dir_ + "/run.log";
  pid_t job = spawn(host("--nproc-per-node 2 -c " + cfg + " -o " + out), log);
  ASSERT_TRUE(wait_until([&] { return has_checkpoint(out) && rank_pids(log).size() == 2; }));
  ::kill(job, SIGINT);  // the launcher passes it to both ranks: one agreed checkpoint
  EXPECT_EQ(wait_for(job), 130) << read_file(log);
  EXPECT_NE(read_file(log).find("interrupted: checkpoint ckpt-"), std::string::npos)
      << read_file(log);
  EXPECT_NE(read_file(log).find("interrupted (rank 1): rank 0 wrote the job's checkpoint"),
            std::string::npos)
      << read_file(log);
  auto alone = run("-c " + cfg + " --resume " + out);
  EXPECT_EQ(alone.exit_code, 2) << alone.output;
  EXPECT_NE(alone.output.find("was written by a job of 2 rank(s) inside an epoch"),
            std::string::npos)
      << alone.output;
  auto again = run("--nproc-per-node 2 -c " + cfg + " --resume " + out);
  EXPECT_EQ(again.exit_code, 0) << again.output;

  // A checkpoint at an epoch end continues with another number of ranks.
  const std::string one_epoch = write_config("one", config(32, 40, 1));
  auto first = run("-c " + one_epoch + " -o " + dir_ + "/grow");
  ASSERT_EQ(first.exit_code, 0) << first.output;
  auto grown = run("--nproc-per-node 2 -c " + write_config("two", config(32, 40, 2)) +
                   " --resume " + dir_ + "/grow --allow-config-change");
  EXPECT_EQ(grown.exit_code, 0) << grown.output;
  EXPECT_NE(grown.output.find("checkpointed by 1 rank(s) and continues with 2"), std::string::npos)
      << grown.output;
  EXPECT_NE(grown.output.find("resumed at cycle 1, epoch 1 end"), std::string::npos)
      << grown.output;
}

TEST_F(Distributed, AConfigErrorOnRankZeroStopsEveryRankWithExitCode2) {
  auto r = run("--nproc-per-node 2 -c " + write_config("cfg", config(32, 10, 1)) +
               " --set /0/model/ktf.networks.MLP/hidden=-3 -o " + dir_ + "/run");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("ktf-host (rank 0): cycle 1 \u203a model \u203a ktf.networks.MLP \u203a "
                          "hidden: expected a list of integers, got integer -3"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("ktf-host (rank 1): rank 0 stopped the job before training"),
            std::string::npos)
      << r.output;
  auto inside =
      ktf::test::run_command("RANK=0 WORLD_SIZE=2 " + host("--nproc-per-node 2 -c x.json"));
  EXPECT_EQ(inside.exit_code, 2);
  EXPECT_NE(inside.output.find("already a rank of a job"), std::string::npos) << inside.output;
}

/// Two "machines": rank 0 and rank 1 in network namespaces of their own, joined by a veth pair,
/// each with its own address (the rendezvous and Gloo use only these).
class TwoNamespaces : public Distributed {
 protected:
  void SetUp() override {
    Distributed::SetUp();
    if (const char* no = std::getenv("KTF_TEST_NO_NETNS"); no && std::string(no) == "1")
      GTEST_SKIP() << "KTF_TEST_NO_NETNS=1: the two-namespace test is switched off";
    const std::string setup =
        "set -e; ip netns add ktfdp-a; ip netns add ktfdp-b; "
        "ip link add ktfdp-va type veth peer name ktfdp-vb; "
        "ip link set ktfdp-va netns ktfdp-a; ip link set ktfdp-vb netns ktfdp-b; "
        "ip -n ktfdp-a addr add 10.203.0.1/24 dev ktfdp-va; "
        "ip -n ktfdp-b addr add 10.203.0.2/24 dev ktfdp-vb; "
        "ip -n ktfdp-a link set ktfdp-va up; ip -n ktfdp-b link set ktfdp-vb up; "
        "ip -n ktfdp-a link set lo up; ip -n ktfdp-b link set lo up";
    TearDownNamespaces();
    auto r = ktf::test::run_command(setup);
    ASSERT_EQ(r.exit_code, 0)
        << "cannot create two network namespaces (needs root and iproute2; set "
           "KTF_TEST_NO_NETNS=1 to switch this test off): "
        << r.output;
    ready_ = true;
  }
  void TearDown() override {
    if (ready_) TearDownNamespaces();
  }
  static void TearDownNamespaces() {
    ktf::test::run_command(
        "ip netns del ktfdp-a 2>/dev/null; ip netns del ktfdp-b 2>/dev/null; "
        "true");
  }
  bool ready_ = false;
};

TEST_F(TwoNamespaces, RanksOnTwoAddressesEndWithTheWeightsOfOneRankOfBatch64) {
  const std::string two = write_config("two", config(32, 40, 1));
  auto one = run("-c " + write_config("one", config(64, 40, 1)) + " -o " + dir_ + "/one");
  ASSERT_EQ(one.exit_code, 0) << one.output;
  auto rank = [&](int r, const char* ns) {
    return "ip netns exec " + std::string(ns) + " env RANK=" + std::to_string(r) +
           " WORLD_SIZE=2 MASTER_ADDR=10.203.0.1 MASTER_PORT=29517 " +
           host("--dist-timeout 60 -c " + two + " -o " + dir_ + "/two");
  };
  pid_t r1 = spawn(rank(1, "ktfdp-b"), dir_ + "/rank1.log");
  pid_t r0 = spawn(rank(0, "ktfdp-a"), dir_ + "/rank0.log");
  EXPECT_EQ(wait_for(r0), 0) << read_file(dir_ + "/rank0.log");
  EXPECT_EQ(wait_for(r1), 0) << read_file(dir_ + "/rank1.log");
  const std::string log = read_file(dir_ + "/rank0.log");
  EXPECT_NE(log.find("rendezvous 10.203.0.1:29517"), std::string::npos) << log;
  EXPECT_NE(log.find("parameters identical on all 2 ranks"), std::string::npos) << log;
  EXPECT_LT(max_difference(dir_ + "/one/weights/cycle-1.pt", dir_ + "/two/weights/cycle-1.pt"),
            1e-5);
}

}  // namespace
