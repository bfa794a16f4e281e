// Exact resume (issue 11, docs/reliability.md): runs killed with SIGKILL or stopped with SIGTERM at
// random moments, crashed while writing a checkpoint, or stopped on a NaN loss continue with
// --resume and end with weights bitwise equal to the uninterrupted run's; their logs have no
// duplicate or missing rows; changed configs are refused with a diff; a full disk or an unwritable
// directory gives a clear error and keeps the last checkpoint.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "ktf/json.h"
#include "ktf/tfrecord.h"
#include "plugins_fixture.h"

namespace {
namespace fs = std::filesystem;
using ktf::Json;

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

/// Two cycles on generated 12x12 images with augmentation (flips and crops on the prefetch
/// thread), dropout, a per-step schedule, every stateful callback, loss scaling (its state is
/// checkpointed) in cycle 1, and a checkpoint every 7 steps.
/// Cycle 2's CSVLogger replaces cycle 1's training.csv (a resume from cycle 1's last checkpoint
/// after cycle 2 began finds it shorter).
std::string config_text(int64_t examples) {
  return R"([
  {"datasets": {"ktf.datasets.synthetic": {"num_examples": )" +
         std::to_string(examples) + R"(, "num_valid": 512,
       "input_shape": [1, 12, 12], "num_classes": 4, "batch_size": 32, "prefetch": 2,
       "transforms": [{"ktf.transforms.RandomFlip": {}},
                      {"ktf.transforms.RandomCrop": {"padding": 2}}]}},
   "model": {"ktf.networks.MLP": {"hidden": [48], "num_outputs": 4, "dropout": 0.2}},
   "loss": {"ktf.losses.CrossEntropy": {}},
   "metrics": [{"ktf.metrics.SparseCategoricalAccuracy": {}}, {"ktf.metrics.ConfusionMatrix": {}}],
   "optimizer": {"ktf.optimizers.Adam": {"learning_rate": 0.003}},
   "lr_schedule": {"ktf.optimizers.schedules.CosineDecay": {"epochs": 3}},
   "train_loop": {"ktf.train.KerasTrainLoop": {"num_epochs": 3, "verbose": 0, "loss_scaling": true,
     "callbacks": [{"ktf.callbacks.CSVLogger": {}}, {"ktf.callbacks.JSONLogger": {}},
                   {"ktf.callbacks.EarlyStopping": {"patience": 5}},
                   {"ktf.callbacks.ModelCheckpoint": {"filepath": "best.pt", "save_best_only": true}},
                   {"ktf.callbacks.LearningRateLogger": {"logging_interval": "step", "every_n_steps": 50}},
                   {"ktf.callbacks.TensorBoard": {"log_dir": "tb", "update_freq": 40}}]}},
   "checkpoint": {"every_steps": 7}},
  {"optimizer": {"ktf.optimizers.SGD": {"learning_rate": 0.01, "momentum": 0.9}},
   "lr_schedule": null,
   "train_loop": {"ktf.train.KerasTrainLoop": {"num_epochs": 2, "verbose": 0,
     "callbacks": [{"ktf.callbacks.CSVLogger": {}},
                   {"ktf.callbacks.TensorBoard": {"log_dir": "tb"}}]}}}
])";
}

std::string host_command(const std::string& dir, const std::string& args) {
  return std::string("KTF_PLUGIN_PATH= ") + KTF_HOST + " --plugins " + KTF_TEST_PLUGIN_DIR +
         " -c " + dir + "/config.json --threads 1 -q " + args;
}

/// Starts `command` (a host_command) as a process of its own (the shell execs it, so signals
/// reach ktf-host itself); returns its pid.
pid_t spawn(const std::string& command, bool own_group = false) {
  const std::string prefix = "KTF_PLUGIN_PATH= ";
  const std::string line =
      "exec " + (command.rfind(prefix, 0) == 0 ? command.substr(prefix.size()) : command) +
      " >/dev/null 2>&1";
  pid_t pid = ::fork();
  if (pid == 0) {
    ::unsetenv("KTF_PLUGIN_PATH");
    if (own_group) ::setpgid(0, 0);
    ::execl("/bin/sh", "sh", "-c", line.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return pid;
}

/// Waits for `pid`: its exit code, or 128 + the signal that ended it.
int wait_for(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

/// metrics.jsonl without the wall-clock keys (those differ between any two runs).
std::vector<std::string> metric_rows(const fs::path& run) {
  std::vector<std::string> rows;
  std::istringstream in(read_file(run / "metrics.jsonl"));
  for (std::string line; std::getline(in, line);) {
    Json row = Json::parse(line);
    for (const char* k : {"train_seconds", "samples_per_second", "first_step_after_start"})
      row.erase(k);
    std::vector<std::string> parts;  // the step-time breakdown, time_data ...
    for (const auto& [k, v] : row.as_object())
      if (k.rfind("time_", 0) == 0) parts.push_back(k);
    for (const auto& k : parts) row.erase(k);
    rows.push_back(row.dump());
  }
  return rows;
}

/// Records of every TensorBoard event file under `dir` (their wall times differ between runs,
/// their number and sizes may not).
std::vector<size_t> event_records(const fs::path& dir) {
  std::vector<size_t> sizes;
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.path().filename().string().find("tfevents") != std::string::npos)
      files.push_back(e.path());
  std::sort(files.begin(), files.end(), [&](const fs::path& a, const fs::path& b) {
    return fs::relative(a, dir).parent_path().string() + a.filename().string().substr(30) <
           fs::relative(b, dir).parent_path().string() + b.filename().string().substr(30);
  });
  for (const auto& f : files) {
    ktf::TFRecordReader reader(f.string());
    std::string record;
    size_t n = 0;
    while (reader.read(record)) sizes.push_back(record.size()), ++n;
    sizes.push_back(1000000 + n);  // a file boundary
  }
  return sizes;
}

class Resume : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ktf::test::scratch_dir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::ofstream(dir_ + "/config.json") << config_text(examples_);
  }
  /// The uninterrupted reference run (once per test), and its wall time.
  double reference() {
    const auto t0 = std::chrono::steady_clock::now();
    auto r = ktf::test::run_command(host_command(dir_, "-o " + dir_ + "/ref"));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  /// Everything a resumed run must reproduce: weights bitwise, logs row for row.
  void expect_same_as_reference(const std::string& run, const std::string& what) {
    const fs::path ref = dir_ + "/ref", got = dir_ + "/" + run;
    for (const char* f : {"weights/cycle-1.pt", "weights/cycle-2.pt", "best.pt"})
      EXPECT_TRUE(read_file(ref / f) == read_file(got / f)) << what << ": " << f << " differs";
    EXPECT_EQ(metric_rows(ref), metric_rows(got)) << what;
    for (const char* f : {"training.csv", "training.jsonl", "confusion_matrix.jsonl"})
      EXPECT_EQ(read_file(ref / f), read_file(got / f)) << what << ": " << f;
    EXPECT_EQ(event_records(ref / "tb"), event_records(got / "tb")) << what;
  }
  std::string dir_;
  int64_t examples_ = 12000;
};

TEST_F(Resume, SigkillAtRandomMomentsEndsBitwiseEqual) {
  const double seconds = reference();
  std::random_device device;
  const unsigned seed = device();
  std::mt19937 rng(seed);
  int kills = 0, runs = 0;
  while (kills < 24) {
    const std::string run = "killed" + std::to_string(++runs);
    const std::string cmd = host_command(dir_, "--resume auto -o " + dir_ + "/" + run);
    // Lives up to 60 % of a whole run: some die while starting, most after some progress, many
    // while writing one of the frequent checkpoints.
    std::uniform_real_distribution<double> delay(0.0, 0.6 * seconds);
    for (int attempt = 0;; ++attempt) {
      ASSERT_LT(attempt, 400) << "no progress (seed " << seed << ")";
      pid_t pid = spawn(cmd);
      std::this_thread::sleep_for(std::chrono::duration<double>(delay(rng)));
      ::kill(pid, SIGKILL);
      const int code = wait_for(pid);
      if (code == 128 + SIGKILL) {
        ++kills;
        continue;
      }
      ASSERT_EQ(code, 0) << "attempt " << attempt << " of " << run << " (seed " << seed << ")";
      break;
    }
    expect_same_as_reference(run, run + " (seed " + std::to_string(seed) + ")");
  }
  EXPECT_GE(kills, 20);
}

TEST_F(Resume, WeightAveragesResumeBitwiseAfterSigtermAndSigkill) {
  // Cycle 1 with an EMA of the weights, cycle 2 with SWA: the averages are checkpointed, and a
  // SIGTERM inside validation (the model then holds the averages) resumes with the raw weights.
  std::string text = config_text(examples_);
  const std::string cycle1 = R"("num_epochs": 3, "verbose": 0, "loss_scaling": true,)";
  const std::string cycle2 = R"("num_epochs": 2, "verbose": 0,)";
  ASSERT_NE(text.find(cycle1), std::string::npos);
  ASSERT_NE(text.find(cycle2), std::string::npos);
  text.replace(text.find(cycle1), cycle1.size(),
               cycle1 + R"( "ema": {"decay": 0.99, "warmup": true},)");
  text.replace(text.find(cycle2), cycle2.size(), cycle2 + R"( "swa": {"start_epoch": 1},)");
  std::ofstream(dir_ + "/config.json") << text;
  const double seconds = reference();
  const fs::path ref = dir_ + "/ref";
  for (const char* f : {"weights/cycle-1.raw.pt", "weights/cycle-2.raw.pt"})
    ASSERT_TRUE(fs::exists(ref / f)) << f;
  EXPECT_NE(read_file(ref / "weights/cycle-1.pt"), read_file(ref / "weights/cycle-1.raw.pt"));
  const unsigned seed = std::random_device{}();
  std::mt19937 rng(seed);
  int stops = 0, kills = 0, runs = 0;
  while (stops < 4 || kills < 8) {
    const bool term = stops < 4;
    const std::string run = (term ? "termed" : "killed") + std::to_string(++runs);
    const std::string cmd = host_command(dir_, "--resume auto -o " + dir_ + "/" + run);
    std::uniform_real_distribution<double> delay(term ? 0.3 : 0.0, 0.3 + 0.6 * seconds);
    for (int attempt = 0;; ++attempt) {
      ASSERT_LT(attempt, 200) << "no progress (seed " << seed << ")";
      pid_t pid = spawn(cmd);
      std::this_thread::sleep_for(std::chrono::duration<double>(delay(rng)));
      ::kill(pid, term ? SIGTERM : SIGKILL);
      const int code = wait_for(pid);
      if (code == 0) break;
      ASSERT_TRUE(code == 130 || code == 128 + SIGTERM || code == 128 + SIGKILL)
          << code << " (seed " << seed << ")";
      stops += code == 130;
      kills += code == 128 + SIGKILL;
    }
    const std::string what = run + " (seed " + std::to_string(seed) + ")";
    expect_same_as_reference(run, what);
    for (const char* f : {"weights/cycle-1.raw.pt", "weights/cycle-2.raw.pt"})
      EXPECT_TRUE(read_file(ref / f) == read_file(dir_ + "/" + run + "/" + f))
          << what << ": " << f << " differs";
  }
}

TEST_F(Resume, SigtermCheckpointsExits130AndResumesBitwise) {
  const double seconds = reference();
  std::mt19937 rng(std::random_device{}());
  std::uniform_real_distribution<double> delay(0.3, 0.3 + seconds / 2);
  int stops = 0, runs = 0;
  while (stops < 6) {
    const std::string run = "termed" + std::to_string(++runs);
    const std::string cmd = host_command(dir_, "--resume auto -o " + dir_ + "/" + run);
    for (int attempt = 0;; ++attempt) {
      ASSERT_LT(attempt, 100);
      pid_t pid = spawn(cmd);
      std::this_thread::sleep_for(std::chrono::duration<double>(delay(rng)));
      ::kill(pid, SIGTERM);
      const int code = wait_for(pid);
      if (code == 0) break;
      // Stopped cleanly (after a checkpoint), or before training began (the default action).
      ASSERT_TRUE(code == 130 || code == 128 + SIGTERM) << code;
      stops += code == 130;
    }
    const std::string log = read_file(dir_ + "/" + run + "/log.txt");
    if (log.find("resuming from checkpoint") != std::string::npos) {
      EXPECT_NE(log.find(" (signal): "), std::string::npos) << log;
    }
    expect_same_as_reference(run, "SIGTERM, " + run);
  }
}

TEST_F(Resume, ACrashWhileWritingACheckpointFallsBackToTheLastCompleteOne) {
  reference();
  // Checkpoint 9: killed with its state file half written; checkpoint 12: killed with the state
  // written but no manifest. Then checkpoint 20's state file is damaged after the fact.
  const std::string out = dir_ + "/crashed";
  for (const char* stage : {"9:partial", "12:state"}) {
    auto r = ktf::test::run_command("KTF_CRASH_AT_CHECKPOINT=" + std::string(stage) + " " +
                                    host_command(dir_, "--resume auto -o " + out));
    EXPECT_EQ(r.exit_code, 128 + SIGKILL) << stage << ": " << r.output;
  }
  EXPECT_TRUE(fs::exists(out + "/checkpoints/ckpt-00000012.pt"));
  EXPECT_FALSE(fs::exists(out + "/checkpoints/ckpt-00000012.json"));
  auto r = ktf::test::run_command("KTF_CRASH_AT_CHECKPOINT=21:state " +
                                  host_command(dir_, "--resume auto -o " + out));
  EXPECT_EQ(r.exit_code, 128 + SIGKILL);
  {
    const std::string path = out + "/checkpoints/ckpt-00000020.pt";
    std::string bytes = read_file(path);
    bytes[bytes.size() / 2] ^= 0x01;  // one bit flipped: the CRC-32C no longer matches
    std::ofstream(path, std::ios::binary) << bytes;
  }
  auto last = ktf::test::run_command(host_command(dir_, "--resume auto -o " + out));
  EXPECT_EQ(last.exit_code, 0) << last.output;
  EXPECT_NE(last.output.find("checkpoint ckpt-00000021 skipped: its manifest"), std::string::npos)
      << last.output;
  EXPECT_NE(last.output.find("checkpoint ckpt-00000020 skipped: its state file fails its CRC-32C"),
            std::string::npos)
      << last.output;
  EXPECT_NE(read_file(out + "/log.txt").find("resuming from checkpoint ckpt-00000019"),
            std::string::npos);
  expect_same_as_reference("crashed", "crashes while writing");
  // Only the last `keep` (3) checkpoints stay.
  int manifests = 0;
  for (const auto& e : fs::directory_iterator(out + "/checkpoints"))
    manifests += e.path().extension() == ".json";
  EXPECT_EQ(manifests, 3);
}

TEST_F(Resume, AChangedConfigIsRefusedWithItsDifferences) {
  const std::string out = dir_ + "/changed";
  auto r =
      ktf::test::run_command("KTF_CRASH_AT_CHECKPOINT=30:state " + host_command(dir_, "-o " + out));
  ASSERT_EQ(r.exit_code, 128 + SIGKILL) << r.output;
  // A fresh run into a directory that holds a run is refused.
  auto again = ktf::test::run_command(host_command(dir_, "-o " + out));
  EXPECT_EQ(again.exit_code, 2);
  EXPECT_NE(
      again.output.find("already holds a run with checkpoints: continue it with --resume " + out),
      std::string::npos)
      << again.output;
  auto changed = ktf::test::run_command(host_command(
      dir_, "--resume " + out + " --set /0/optimizer/ktf.optimizers.Adam/learning_rate=0.01"));
  EXPECT_EQ(changed.exit_code, 2) << changed.output;
  EXPECT_NE(changed.output.find("the config differs from the run's (config.resolved.json):\n  "
                                "/0/optimizer/ktf.optimizers.Adam/learning_rate: 0.003 -> 0.01\n"),
            std::string::npos)
      << changed.output;
  EXPECT_NE(changed.output.find("pass --allow-config-change"), std::string::npos);
  auto seed = ktf::test::run_command(host_command(dir_, "--resume " + out + " --seed 5"));
  EXPECT_EQ(seed.exit_code, 2);
  EXPECT_NE(seed.output.find("(--seed): 0 -> 5"), std::string::npos) << seed.output;
  // A plugin whose file changed since the run started is reported the same way.
  {
    Json plugins = Json::parse_file(out + "/plugins.json");
    Json& first = plugins.as_array().front();
    const std::string name = first.at("name").as_string();
    const std::string hash = first.at("fnv1a64").dump();
    first.set("fnv1a64", "0000000000000000");
    std::ofstream(out + "/plugins.json") << plugins.dump(2);
    auto plugin = ktf::test::run_command(host_command(dir_, "--resume " + out));
    EXPECT_EQ(plugin.exit_code, 2) << plugin.output;
    EXPECT_NE(
        plugin.output.find("the plugins differ from the run's (plugins.json; name/field):\n  /" +
                           name + "/fnv1a64: \"0000000000000000\" -> " + hash),
        std::string::npos)
        << plugin.output;
    first.set("fnv1a64", Json::parse(hash));
    std::ofstream(out + "/plugins.json") << plugins.dump(2);
  }
  // An alias for the canonical name is the same component.
  auto alias = ktf::test::run_command(host_command(
      dir_, "--resume " + out +
                " --set '/0/optimizer={\"tf.keras.optimizers.Adam\": "
                "{\"learning_rate\": 0.003}}' --set /0/checkpoint/every_steps=1000000"));
  EXPECT_EQ(alias.exit_code, 0) << alias.output;
  EXPECT_NE(
      alias.output.find("ktf: checkpoint settings changed:\n  /0/checkpoint/every_steps: 7 -> "
                        "1000000"),
      std::string::npos)
      << alias.output;
  // Checkpoint settings may change (and are kept); the stored config is used without -c, with
  // the run's thread count.
  fs::remove_all(out + "/weights");  // a resume of the finished run writes the last ones again
  auto ok = ktf::test::run_command(std::string("KTF_PLUGIN_PATH= ") + KTF_HOST + " --plugins " +
                                   KTF_TEST_PLUGIN_DIR + " -q --resume " + out +
                                   " --set /0/checkpoint/every_steps=50");
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_EQ(read_file(out + "/log.txt").find("warning: the run was checkpointed with"),
            std::string::npos)
      << "the resume did not keep the run's --threads 1";
  EXPECT_NE(read_file(out + "/config.resolved.json").find("\"every_steps\": 50"),
            std::string::npos);
  reference();
  EXPECT_TRUE(read_file(out + "/weights/cycle-2.pt") == read_file(dir_ + "/ref/weights/cycle-2.pt"))
      << "resumed from the stored config";
}

TEST_F(Resume, AutoStartsFreshWithoutACheckpointAndAnExplicitResumeNeedsOne) {
  auto none = ktf::test::run_command(host_command(dir_, "--resume " + dir_ + "/missing"));
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_NE(none.output.find("no such run directory"), std::string::npos) << none.output;
  fs::create_directories(dir_ + "/empty");
  auto empty = ktf::test::run_command(host_command(dir_, "--resume " + dir_ + "/empty"));
  EXPECT_EQ(empty.exit_code, 2);
  EXPECT_NE(empty.output.find(
                "': it holds no complete checkpoint (--resume auto starts a fresh run there"),
            std::string::npos)
      << empty.output;
  auto fresh = ktf::test::run_command(host_command(dir_, "--resume auto -o " + dir_ + "/empty"));
  EXPECT_EQ(fresh.exit_code, 0) << fresh.output;
  reference();
  expect_same_as_reference("empty", "--resume auto in an empty directory");
  auto no_dir = ktf::test::run_command(host_command(dir_, "--resume auto"));
  EXPECT_EQ(no_dir.exit_code, 2);
  EXPECT_NE(no_dir.output.find("--resume auto needs --output-dir DIR"), std::string::npos);
}

TEST_F(Resume, SigusrWritesACheckpointAndTrainingGoesOn) {
  const std::string out = dir_ + "/usr1";
  pid_t pid = spawn(host_command(dir_,
                                 "--set /0/checkpoint/every_steps=null --set "
                                 "/0/train_loop/ktf.train.KerasTrainLoop/num_epochs=6 -o " +
                                     out));
  // Once the first epoch is recorded, training is under way.
  for (int i = 0; i < 600 && read_file(out + "/metrics.jsonl").empty(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ::kill(pid, SIGUSR1);
  EXPECT_EQ(wait_for(pid), 0);
  const std::string log = read_file(out + "/log.txt");
  EXPECT_NE(log.find("(SIGUSR1)"), std::string::npos) << log;
}

TEST_F(Resume, ASignalToTheProcessAndThenItsGroupIsOneStop) {
  // GNU timeout and `kill -- -PGID` deliver SIGTERM to the process and then to its group.
  const std::string out = dir_ + "/group";
  pid_t pid = spawn(host_command(dir_,
                                 "--set /0/checkpoint/every_steps=null --set "
                                 "/0/train_loop/ktf.train.KerasTrainLoop/num_epochs=6 -o " +
                                     out),
                    /*own_group=*/true);
  for (int i = 0; i < 600 && read_file(out + "/metrics.jsonl").empty(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ::kill(pid, SIGTERM);
  ::kill(-pid, SIGTERM);
  EXPECT_EQ(wait_for(pid), 130);
  const std::string log = read_file(out + "/log.txt");
  EXPECT_NE(log.find(" (signal): "), std::string::npos) << log;
}

TEST_F(Resume, ANonFiniteLossStopsNamingTheStepAndTheLastGoodCheckpoint) {
  const std::string out = dir_ + "/nan";
  // A huge learning rate after epoch 1 (cycle 1's schedule and epoch-end checkpoint run first).
  auto r = ktf::test::run_command(
      host_command(dir_, "-o " + out +
                             " --set /0/checkpoint/every_steps=null --set /1/optimizer="
                             "'{\"ktf.optimizers.SGD\": {\"learning_rate\": 1e30}}'"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("the loss is "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("training stopped before this step changed the weights"),
            std::string::npos);
  EXPECT_NE(r.output.find("(cycle 2, epoch 1, batch "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("the last checkpoint is ckpt-00000003 (cycle 1, epoch 3 end): continue "
                          "from it with --resume " +
                          out + " -c FIXED_CONFIG --allow-config-change"),
            std::string::npos)
      << r.output;
  EXPECT_FALSE(fs::exists(out + "/weights/cycle-2.pt"));
  // Fixed (the learning rate the reference uses), the run continues from the last good checkpoint.
  auto fixed = ktf::test::run_command(host_command(dir_, "--resume " + out +
                                                             " --allow-config-change --set "
                                                             "/0/checkpoint/every_steps=null"));
  EXPECT_EQ(fixed.exit_code, 0) << fixed.output;
  EXPECT_NE(fixed.output.find("resuming with changes (--allow-config-change)"), std::string::npos);
  reference();
  EXPECT_TRUE(read_file(out + "/weights/cycle-2.pt") ==
              read_file(dir_ + "/ref/weights/cycle-2.pt"));
}

TEST_F(Resume, UnwritableDirectoriesAndAFullDiskGiveAClearErrorAndKeepTheCheckpoint) {
  std::ofstream(dir_ + "/a_file") << "x";
  auto bad = ktf::test::run_command(host_command(dir_, "-o " + dir_ + "/a_file/run"));
  EXPECT_EQ(bad.exit_code, 2) << bad.output;  // a bad -o: the command line's fault
  EXPECT_NE(bad.output.find("cannot create directory '" + dir_ + "/a_file/run'"), std::string::npos)
      << bad.output;
  EXPECT_EQ(std::count(bad.output.begin(), bad.output.end(), '\n'), 1) << bad.output;

  const std::string out = dir_ + "/full";
  auto first =
      ktf::test::run_command("KTF_CRASH_AT_CHECKPOINT=40:state " + host_command(dir_, "-o " + out));
  ASSERT_EQ(first.exit_code, 128 + SIGKILL);
  const std::string before = read_file(out + "/checkpoints/ckpt-00000039.pt");
  // A file-size limit below one checkpoint: the next checkpoint cannot be written.
  auto full = ktf::test::run_command("ulimit -f 64; " + host_command(dir_, "--resume " + out));
  EXPECT_EQ(full.exit_code, 1) << full.output;
  EXPECT_NE(full.output.find("cannot write '" + out +
                             "/checkpoints/ckpt-00000040.pt': File too "
                             "large"),
            std::string::npos)
      << full.output;
  EXPECT_TRUE(read_file(out + "/checkpoints/ckpt-00000039.pt") == before);
  auto resumed = ktf::test::run_command(host_command(dir_, "--resume " + out));
  EXPECT_EQ(resumed.exit_code, 0) << resumed.output;
  reference();
  expect_same_as_reference("full", "after a full disk");
}

// The shipped two-cycle config on the real Fashion-MNIST files (MobileNetV2; cycle 2 freezes the
// base and lowers the rate), with augmentation added, cut to 40 steps an epoch: crashed in cycle 1
// mid-epoch, at cycle 1's last epoch and in cycle 2, it ends with the uninterrupted run's weights.
TEST(ResumeShipped, TwoCycleFashionMnistConfigWithAugmentationEndsBitwiseEqual) {
  const std::string dir = ktf::test::scratch_dir("resume_shipped");
  const std::string loop = "/train_loop/ktf.train.KerasTrainLoop/";
  const std::string cmd =
      std::string("KTF_PLUGIN_PATH= ") + KTF_HOST + " --plugins " + KTF_TEST_PLUGIN_DIR + " -c " +
      KTF_SOURCE_DIR + "/configs/fashion_mnist_two_cycles.json -q --set /0" + loop +
      "steps_per_epoch=40 --set /0" + loop + "num_valid_steps=5 --set /1" + loop +
      "steps_per_epoch=40 --set /1" + loop +
      "num_valid_steps=5 --set /0/checkpoint/every_steps=10 --set "
      "'/0/datasets/ktf.datasets.fashion.fashion_mnist.from_idx/transforms=[{\"ktf.transforms."
      "RandomCrop\": {\"padding\": 4}}, {\"ktf.transforms.RandomFlip\": {}}]' ";
  auto ref = ktf::test::run_command(cmd + "-o " + dir + "/ref");
  ASSERT_EQ(ref.exit_code, 0) << ref.output;
  for (const char* crash : {"3:state", "14:partial", "17:state"}) {
    auto r = ktf::test::run_command(std::string("KTF_CRASH_AT_CHECKPOINT=") + crash + " " + cmd +
                                    "--resume auto -o " + dir + "/run");
    EXPECT_EQ(r.exit_code, 128 + SIGKILL) << crash << ": " << r.output;
  }
  auto last = ktf::test::run_command(cmd + "--resume auto -o " + dir + "/run");
  ASSERT_EQ(last.exit_code, 0) << last.output;
  const std::string log = read_file(dir + "/run/log.txt");
  EXPECT_NE(log.find("resuming from checkpoint ckpt-00000016 (cycle 2, epoch 1"), std::string::npos)
      << log;
  for (const char* f : {"weights/cycle-1.pt", "weights/cycle-2.pt"})
    EXPECT_TRUE(read_file(dir + "/ref/" + f) == read_file(dir + "/run/" + f)) << f;
  EXPECT_EQ(metric_rows(dir + "/ref"), metric_rows(dir + "/run"));
  EXPECT_EQ(event_records(dir + "/ref/tensorboard"), event_records(dir + "/run/tensorboard"));
}

// A TFRecord stream with a small shuffle buffer, two files interleaved, file order shuffled per
// epoch and augmentation: crashed mid-epoch twice, the resumed run rebuilds the shuffle buffer
// and ends with the uninterrupted run's weights.
TEST(ResumeStreaming, TfrecordShuffleBufferIsRestoredExactly) {
  const std::string dir = ktf::test::scratch_dir("resume_tfrecord");
  const std::string host =
      std::string("KTF_PLUGIN_PATH= ") + KTF_HOST + " --plugins " + KTF_TEST_PLUGIN_DIR;
  std::ofstream(dir + "/convert.json") << R"([{"datasets": {"ktf.datasets.synthetic": {
      "num_examples": 3000, "num_valid": 300, "input_shape": [1, 12, 12], "num_classes": 4}},
      "model": {"ktf.networks.MLP": {"num_outputs": 4}}, "loss": {"ktf.losses.CrossEntropy": {}}}])";
  auto conv =
      ktf::test::run_command(host + " -c " + dir + "/convert.json --convert " + dir + "/records");
  ASSERT_EQ(conv.exit_code, 0) << conv.output;
  std::ofstream(dir + "/config.json") << R"([{"datasets": {"ktf.datasets.from_tfrecord": {
      "files": [")" + dir + R"(/records/train-*"], "validation_files": [")" +
                                             dir + R"(/records/valid-*"],
      "shuffle_buffer": 300, "interleave": 2, "shuffle_files": true, "batch_size": 32,
      "transforms": [{"ktf.transforms.RandomFlip": {}}]}},
    "model": {"ktf.networks.MLP": {"hidden": [32], "num_outputs": 4, "dropout": 0.1}},
    "loss": {"ktf.losses.CrossEntropy": {}},
    "metrics": [{"ktf.metrics.SparseCategoricalAccuracy": {}}],
    "train_loop": {"ktf.train.KerasTrainLoop": {"num_epochs": 3, "verbose": 0}},
    "checkpoint": {"every_steps": 13}}])";
  const std::string cmd = host + " -c " + dir + "/config.json --threads 1 -q ";
  auto ref = ktf::test::run_command(cmd + "-o " + dir + "/ref");
  ASSERT_EQ(ref.exit_code, 0) << ref.output;
  for (const char* crash : {"4:state", "11:partial"}) {
    auto r = ktf::test::run_command(std::string("KTF_CRASH_AT_CHECKPOINT=") + crash + " " + cmd +
                                    "--resume auto -o " + dir + "/run");
    EXPECT_EQ(r.exit_code, 128 + SIGKILL) << crash << ": " << r.output;
  }
  auto last = ktf::test::run_command(cmd + "--resume auto -o " + dir + "/run");
  ASSERT_EQ(last.exit_code, 0) << last.output;
  EXPECT_NE(read_file(dir + "/run/log.txt").find("resuming from checkpoint ckpt-00000010"),
            std::string::npos);
  EXPECT_TRUE(read_file(dir + "/ref/weights/cycle-1.pt") ==
              read_file(dir + "/run/weights/cycle-1.pt"));
  EXPECT_EQ(metric_rows(dir + "/ref"), metric_rows(dir + "/run"));
}

}  // namespace
