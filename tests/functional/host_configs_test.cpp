// ktf-host end to end with the in-tree plugins: config errors exit 2 before training, the JSON
// Schema accepts every shipped config and rejects broken ones, --dry-run, every config in configs/
// trains (shortened), and Ctrl-C writes a checkpoint and exits 130.
#include <gtest/gtest.h>
#include <ktf/json.h>
#include <rapidjson/document.h>
#include <rapidjson/schema.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "plugins_fixture.h"

namespace {

namespace fs = std::filesystem;
using ktf::Json;

std::string host_command(const std::string& args) {
  return std::string("KTF_PLUGIN_PATH= ") + KTF_HOST + " --plugins " + ktf::test::plugin_dir() +
         " " + args;
}
ktf::test::CommandResult host(const std::string& args) {
  return ktf::test::run_command(host_command(args));
}

std::string write_config(const std::string& name, const std::string& text) {
  std::string path = ktf::test::scratch_dir("cfg_" + name) + "/" + name + ".json";
  std::ofstream(path) << text;
  return path;
}

std::vector<fs::path> shipped_configs() {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(std::string(KTF_SOURCE_DIR) + "/configs"))
    if (e.path().extension() == ".json") out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

const char* kBase = R"([
  { "datasets": {"ktf.datasets.synthetic": {"num_examples": 256, "num_valid": 64, "input_shape": [3, 40, 40]}},
    "model": {"ktf.models.OneHeadNet": {"base_model": {"tf.keras.applications.MobileNetV2": {"alpha": 0.35}}, "num_outputs": 10}},
    "loss": {"tf.keras.losses.SparseCategoricalCrossentropy": {"from_logits": true}},
  },
  { "model": {"ktf.models.OneHeadNet": {"base_model": {"tf.keras.applications.MobileNetV2": {"alpah": 0.35}}, "num_outputs": 10}} },
])";

TEST(HostConfigErrors, NestedTypoUnknownNameWrongTypeMissingCommaExit2BeforeTraining) {
  auto typo = host("-c " + write_config("typo", kBase));
  EXPECT_EQ(typo.exit_code, 2);
  EXPECT_EQ(typo.output,
            "ktf-host: cycle 2 \u203a model \u203a ktf.models.OneHeadNet \u203a base_model \u203a "
            "tf.keras.applications.MobileNetV2 \u203a alpah: unknown parameter (did you mean "
            "'alpha'?)\n");

  std::string unknown_text = kBase;
  unknown_text.replace(unknown_text.find("ktf.models.OneHeadNet"), 21, "ktf.models.OneHedNet");
  auto unknown = host("-c " + write_config("unknown", unknown_text));
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_EQ(unknown.output.rfind("ktf-host: cycle 1 \u203a model: unknown network "
                                 "'ktf.models.OneHedNet' (did you mean 'ktf.models.OneHeadNet'",
                                 0),
            0u)
      << unknown.output;

  std::string wrong_text = kBase;
  wrong_text.replace(wrong_text.find("\"num_examples\": 256"), 19, "\"num_examples\": \"256\"");
  auto wrong = host("-c " + write_config("wrong", wrong_text));
  EXPECT_EQ(wrong.exit_code, 2);
  EXPECT_EQ(wrong.output,
            "ktf-host: cycle 1 \u203a datasets \u203a ktf.datasets.synthetic \u203a num_examples: "
            "expected an integer, got string \"256\"\n");

  // A comma missing at a line's end is Hjson, which ktf reads; a colon missing is an error.
  std::string comma_text = kBase;
  comma_text.replace(comma_text.find("\"model\": "), 9, "\"model\" ");
  auto comma_path = write_config("comma", comma_text);
  auto comma = host("-c " + comma_path);
  EXPECT_EQ(comma.exit_code, 2);
  EXPECT_NE(comma.output.find(comma_path + ":3:13: Expecting ':' delimiter"), std::string::npos)
      << comma.output;
  for (const auto* r : {&typo, &unknown, &wrong, &comma})
    EXPECT_EQ(r->output.find("== cycle"), std::string::npos) << "training started: " << r->output;
}

bool schema_accepts(const std::string& schema, const Json& doc) {
  rapidjson::Document sd, d;
  sd.Parse(schema.c_str());
  d.Parse(doc.dump().c_str());
  rapidjson::SchemaDocument sdoc(sd);
  rapidjson::SchemaValidator validator(sdoc);
  return d.Accept(validator);
}

TEST(HostSchema, AcceptsShippedConfigsAndRejectsBrokenOnes) {
  auto schema = host("--schema");
  ASSERT_EQ(schema.exit_code, 0) << schema.output;
  rapidjson::Document sd;
  ASSERT_FALSE(sd.Parse(schema.output.c_str()).HasParseError());
  auto configs = shipped_configs();
  ASSERT_GE(configs.size(), 4u);
  for (const auto& path : configs)
    EXPECT_TRUE(schema_accepts(schema.output, Json::parse_file(path.string()))) << path;
  EXPECT_TRUE(schema_accepts(
      schema.output, Json::parse(R"([{"model": {"ktf.networks.MLP": {"num_outputs": 3}}}])")));
  Json typo = Json::parse(kBase);
  EXPECT_FALSE(schema_accepts(schema.output, typo));  // 'alpah'
  EXPECT_FALSE(
      schema_accepts(schema.output, Json::parse(R"([{"model": {"ktf.networks.MPL": {}}}])")));
  EXPECT_FALSE(schema_accepts(
      schema.output, Json::parse(R"([{"model": {"ktf.networks.MLP": {"num_outputs": "3"}}}])")));
  EXPECT_FALSE(
      schema_accepts(schema.output, Json::parse(R"([{"model": {"ktf.networks.MLP": {}}}])")));
  EXPECT_FALSE(schema_accepts(schema.output, Json::parse(R"([{"modle": {}}])")));
}

TEST(HostDryRun, BuildsEveryCycleAndRunsOneBatch) {
  std::string out = ktf::test::scratch_dir("dry_run");
  auto r = host("-c " + std::string(KTF_SOURCE_DIR) +
                "/configs/fashion_mnist_two_cycles.json --dry-run -o " + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("cycle 1: dry run: input [64, 3, 40, 40] -> output [64, 10]"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("cycle 2: dry run: input [64, 3, 40, 40] -> output [64, 10]"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("frozen parameters: base_model."), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(out + "/weights/cycle-1.pt"));
  EXPECT_TRUE(fs::exists(out + "/config.resolved.json"));
}

/// Shortens every cycle that names a KerasTrainLoop.
std::string shortening_overrides(const fs::path& config) {
  Json cycles = Json::parse_file(config.string());
  if (cycles.is_object()) cycles = Json::array({cycles});
  std::string out;
  for (size_t i = 0; i < cycles.size(); ++i) {
    const Json* loop = cycles.as_array()[i].find("train_loop");
    if (!loop || !loop->find("ktf.train.KerasTrainLoop")) continue;
    std::string base = " --set /" + std::to_string(i) + "/train_loop/ktf.train.KerasTrainLoop/";
    out += base + "num_epochs=1" + base + "steps_per_epoch=12" + base + "num_valid_steps=3" + base +
           "verbose=2";
  }
  return out;
}

TEST(HostConfigs, EveryShippedConfigTrainsShortened) {
  for (const auto& path : shipped_configs()) {
    SCOPED_TRACE(path.string());
    std::string out = ktf::test::scratch_dir("shipped_" + path.stem().string());
    auto r = host("-c " + path.string() + " -o " + out + shortening_overrides(path));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    Json cycles = Json::parse_file(out + "/config.resolved.json");
    for (size_t k = 1; k <= cycles.size(); ++k)
      EXPECT_TRUE(fs::exists(out + "/weights/cycle-" + std::to_string(k) + ".pt")) << k;
    std::ifstream metrics(out + "/metrics.jsonl");
    std::string line;
    int lines = 0;
    while (std::getline(metrics, line)) {
      Json m = Json::parse(line);
      EXPECT_TRUE(m.find("loss")) << line;
      EXPECT_TRUE(m.find("val_loss")) << line;
      ++lines;
    }
    EXPECT_EQ(lines, static_cast<int>(cycles.size()));
    if (cycles.size() > 1) {
      EXPECT_NE(r.output.find("cycle 2: model carried over from cycle 1"), std::string::npos)
          << r.output;
    }
  }
}

/// Per cycle: {loss, val_loss} of a run's metrics.jsonl.
std::vector<std::pair<double, double>> losses_of(const std::string& run_dir) {
  std::ifstream metrics(run_dir + "/metrics.jsonl");
  std::vector<std::pair<double, double>> out;
  for (std::string line; std::getline(metrics, line);) {
    Json m = Json::parse(line);
    out.emplace_back(m.at("loss").as_number(), m.at("val_loss").as_number());
  }
  return out;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

/// OpenBLAS's generic kernels (Prescott, what Debian's OpenBLAS falls back to on CPUs newer than
/// itself) and the ones ktf-host chooses for this CPU give the same training, up to rounding, on
/// every shipped network; and bf16 trains each of them to nearly the fp32 losses.
/// Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), from /proc/cpuinfo's flags.
bool native_bf16() {
  const std::string info = read_text("/proc/cpuinfo");
  return info.find(" avx512_bf16") != std::string::npos ||
         info.find(" amx_bf16") != std::string::npos;
}

TEST(HostConfigs, GenericAndChosenKernelsAndBf16AgreeOnEveryShippedConfig) {
  // Without native bf16, libtorch emulates it: a ResNet step takes a minute on 2 cores (an AVX2
  // EPYC), so every leg runs 2 steps instead of 12, and the warning that says so is checked.
  const bool native = native_bf16();
  if (!native) std::printf("no native bf16 on this CPU: 2 training steps per config\n");
  for (const auto& path : shipped_configs()) {
    SCOPED_TRACE(path.string());
    const std::string name = path.stem().string();
    std::string shorten = shortening_overrides(path);
    if (!native)
      for (size_t at = shorten.find("steps_per_epoch=12"); at != std::string::npos;
           at = shorten.find("steps_per_epoch=12", at))
        shorten.replace(at, 18, "steps_per_epoch=2");
    const std::string args = "-c " + path.string() + shorten + " --threads 2";
    const std::string generic = ktf::test::scratch_dir("kernels_generic_" + name);
    const std::string chosen = ktf::test::scratch_dir("kernels_chosen_" + name);
    const std::string bf16 = ktf::test::scratch_dir("kernels_bf16_" + name);
    auto r = ktf::test::run_command("OPENBLAS_CORETYPE=Prescott " +
                                    host_command(args + " -o " + generic));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = ktf::test::run_command("env -u OPENBLAS_CORETYPE " + host_command(args + " -o " + chosen));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = ktf::test::run_command("env -u OPENBLAS_CORETYPE " +
                               host_command(args + " --precision bf16 -o " + bf16));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    if (sizeof(KTF_TORCH_BLAS_SONAME) > 1) {  // Debian: libtorch's matrix products in OpenBLAS
      EXPECT_NE(read_text(generic + "/log.txt")
                    .find("ktf: OpenBLAS kernels Prescott, from "
                          "OPENBLAS_CORETYPE=Prescott"),
                std::string::npos);
      EXPECT_EQ(read_text(chosen + "/log.txt").find("OpenBLAS kernels Prescott"),
                std::string::npos);
    } else {  // PyTorch's wheels: MKL inside libtorch, OPENBLAS_CORETYPE changes nothing
      EXPECT_NE(read_text(generic + "/log.txt").find("ktf: BLAS: MKL (inside libtorch)"),
                std::string::npos);
    }
    EXPECT_EQ(r.output.find("warning: precision bf16: this CPU lacks") == std::string::npos, native)
        << r.output;
    const auto a = losses_of(generic), b = losses_of(chosen), c = losses_of(bf16);
    ASSERT_EQ(a.size(), b.size());
    ASSERT_EQ(a.size(), c.size());
    for (size_t i = 0; i < a.size(); ++i) {
      SCOPED_TRACE("cycle " + std::to_string(i + 1));
      EXPECT_NEAR(a[i].first, b[i].first, 5e-3 * std::abs(a[i].first));
      EXPECT_NEAR(a[i].second, b[i].second, 5e-3 * std::abs(a[i].second));
      EXPECT_NEAR(c[i].first, b[i].first, 0.05 * std::abs(b[i].first));
      EXPECT_NEAR(c[i].second, b[i].second, 0.08 * std::abs(b[i].second));
      EXPECT_NE(c[i].first, b[i].first) << "bf16 gave fp32's loss exactly: autocast did not run";
    }
    std::printf("%s: loss generic/chosen/bf16:", name.c_str());
    for (size_t i = 0; i < a.size(); ++i)
      std::printf(" [%.6f %.6f %.6f | val %.6f %.6f %.6f]", a[i].first, b[i].first, c[i].first,
                  a[i].second, b[i].second, c[i].second);
    std::printf("\n");
  }
}

TEST(HostPrecision, CommandLinePrecisionIsStoredAndAChangeOnResumeIsRefused) {
  const std::string out = ktf::test::scratch_dir("precision_cli") + "/run";
  const std::string config = " -c " + std::string(KTF_SOURCE_DIR) + "/bench/configs/tiny.json" +
                             " --set /0/train_loop/ktf.train.KerasTrainLoop/steps_per_epoch=3";
  auto r = host(config + " --precision bf16 -q -o " + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  Json stored = Json::parse_file(out + "/config.resolved.json");
  EXPECT_EQ(stored.as_array()[0]
                .at("train_loop")
                .at("ktf.train.KerasTrainLoop")
                .at("precision")
                .as_string(),
            "bf16");
  auto changed = host("--resume " + out + " --precision fp32");
  EXPECT_EQ(changed.exit_code, 2) << changed.output;
  EXPECT_NE(
      changed.output.find("/0/train_loop/ktf.train.KerasTrainLoop/precision: \"bf16\" -> \"fp32\""),
      std::string::npos)
      << changed.output;
  auto bad = host(config + " --precision fp8 -o " + out + "-bad");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_EQ(bad.output, "ktf-host: precision 'fp8': expected fp32, bf16 or fp16\n");
  // fp16 is for GPUs: refused on the CPU before any step, with exit code 2.
  auto cpu = host(config + " --precision fp16 -o " + out + "-fp16");
  EXPECT_EQ(cpu.exit_code, 2) << cpu.output;
  EXPECT_NE(cpu.output.find("ktf-host: precision fp16 needs a CUDA device (--device cuda), this "
                            "cycle runs on cpu; on a CPU use bf16\n"),
            std::string::npos)
      << cpu.output;
  EXPECT_FALSE(std::filesystem::exists(out + "-fp16/weights/cycle-1.pt")) << "it trained";
}

TEST(HostConfigs, OriginalToolsMinimalConfigTrains) {
  // The original README's first config, word for word except the dataset: affNIST is not
  // packaged, so Fashion-MNIST stands in. OneHeadNet gets its default base, the optimizer and the
  // train loop their defaults; --set only shortens the run.
  std::string config = write_config("original_minimal", R"([
    {
        "datasets": { "ktf.datasets.fashion.fashion_mnist.from_idx": {} },
        "model": { "ktf.models.OneHeadNet": { "num_outputs": 10 } },
        "loss": { "tf.keras.losses.SparseCategoricalCrossentropy": { "from_logits": true } },
    }
])");
  std::string out = ktf::test::scratch_dir("original_minimal_run");
  const std::string loop = " --set /0/train_loop/ktf.train.KerasTrainLoop/";
  auto r = host("-c " + config + " -o " + out + loop + "num_epochs=1" + loop +
                "steps_per_epoch=150" + loop + "num_valid_steps=20" + loop + "verbose=2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream metrics(out + "/metrics.jsonl");
  std::string line;
  ASSERT_TRUE(std::getline(metrics, line)) << r.output;
  Json m = Json::parse(line);
  ASSERT_TRUE(m.find("val_loss")) << line;
  // Chance level is ln(10) = 2.30; the compact CNN learns well below it in 150 steps.
  EXPECT_LT(m.at("val_loss").as_number(), 1.0) << line;
}

TEST(HostMemoryFormat, ChannelsLastTrainsAndEvaluatesAndABadFormatIsAnError) {
  std::string out = ktf::test::scratch_dir("channels_last");
  const std::string config = std::string(KTF_SOURCE_DIR) + "/configs/fashion_mnist_cnn.json";
  const std::string loop = " --set /0/train_loop/ktf.train.KerasTrainLoop/";
  auto r = host("-c " + config + " -o " + out + " --memory-format channels_last" + loop +
                "num_epochs=1" + loop + "steps_per_epoch=150" + loop + "num_valid_steps=20" + loop +
                "verbose=2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("cycle 1: 4-D inputs and weights are channels_last (NHWC)"),
            std::string::npos)
      << r.output;
  std::ifstream metrics(out + "/metrics.jsonl");
  std::string line;
  ASSERT_TRUE(std::getline(metrics, line));
  EXPECT_GT(Json::parse(line).at("val_accuracy").as_number(), 0.6) << line;
  auto e = host("--evaluate " + out + " --memory-format channels_last");
  EXPECT_EQ(e.exit_code, 0) << e.output;
  EXPECT_NE(e.output.find("10000 examples"), std::string::npos) << e.output;

  auto bad = host("-c " + config + " -o " + out + "_bad --memory-format nhwc");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("memory format 'nhwc': expected contiguous or channels_last"),
            std::string::npos)
      << bad.output;
}

TEST(HostInterrupt, SigintWritesCheckpointAndExits130) {
  std::string out = ktf::test::scratch_dir("interrupt");
  std::string cmd = host_command(
      "-c " + std::string(KTF_SOURCE_DIR) + "/configs/fashion_mnist_mlp.json -o " + out +
      " --set /0/train_loop/ktf.train.KerasTrainLoop/verbose=2 > " + out + "/out.txt 2>&1");
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    setpgid(0, 0);
    execl("/bin/sh", "sh", "-c", ("exec env " + cmd).c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  // Wait until training has started, then interrupt.
  for (int i = 0; i < 300 && !fs::exists(out + "/log.txt"); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::this_thread::sleep_for(std::chrono::seconds(3));
  kill(pid, SIGINT);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 130);
  std::ifstream text(out + "/out.txt");
  std::string printed((std::istreambuf_iterator<char>(text)), std::istreambuf_iterator<char>());
  const std::string said = "ktf-host: interrupted: checkpoint ckpt-";
  const auto at = printed.find(said);
  ASSERT_NE(at, std::string::npos) << printed;
  const std::string name = printed.substr(at + said.size() - 5, 13);
  EXPECT_TRUE(fs::exists(out + "/checkpoints/" + name + ".json")) << name;
  EXPECT_NE(printed.find(name + " written; continue with --resume " + out), std::string::npos)
      << printed;
  EXPECT_FALSE(fs::exists(out + "/weights/cycle-1.pt")) << "the cycle did not finish";
}

}  // namespace
