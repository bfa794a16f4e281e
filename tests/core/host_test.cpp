// ktf-host's exit codes and one-line errors for broken plugins and bad command lines.
#include <gtest/gtest.h>
#include <ktf/build_info.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "plugins_fixture.h"

namespace {

std::string fixture(const std::string& name) {
  return std::string(KTF_FIXTURE_DIR) + "/libfixture_" + name + ".so";
}

ktf::test::CommandResult host(const std::string& args) {
  return ktf::test::run_command(std::string("KTF_PLUGIN_PATH= ") + KTF_HOST + " " + args);
}

TEST(Host, EachBrokenPluginExits3WithStageAndFile) {
  const std::pair<const char*, const char*> cases[] = {{"missing_entry", "entry"},
                                                       {"wrong_abi", "abi"},
                                                       {"unresolved_symbol", "open"},
                                                       {"throwing_register", "register"}};
  for (const auto& [name, stage] : cases) {
    auto r = host("--plugins " + fixture(name) + " --list");
    EXPECT_EQ(r.exit_code, 3) << name << ": " << r.output;
    EXPECT_EQ(r.output.rfind("ktf-host: plugin '" + fixture(name) + "': " + stage + ": ", 0), 0u)
        << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << "one line: " << r.output;
  }
  auto dup = host("--plugins " + fixture("duplicate_a") + " " + fixture("duplicate_b") + " --list");
  EXPECT_EQ(dup.exit_code, 3);
  EXPECT_EQ(dup.output.rfind("ktf-host: plugin '" + fixture("duplicate_b") + "': duplicate: ", 0),
            0u)
      << dup.output;
  std::string empty = ktf::test::scratch_dir("host_empty") + "/empty.so";
  std::ofstream(empty).close();
  auto e = host("--plugins " + empty + " --list");
  EXPECT_EQ(e.exit_code, 3);
  EXPECT_EQ(e.output.rfind("ktf-host: plugin '" + empty + "': open: ", 0), 0u) << e.output;
}

TEST(Host, ListAndDescribeShowPluginComponents) {
  auto list = host("--plugins " + fixture("good_plugin") + " --list loss");
  EXPECT_EQ(list.exit_code, 0) << list.output;
  EXPECT_NE(list.output.find("test.fixture.GoodLoss"), std::string::npos) << list.output;
  EXPECT_NE(list.output.find("[fixture_good]"), std::string::npos) << list.output;
  auto describe = host("--plugins " + fixture("good_plugin") + " --describe test.fixture.GoodLoss");
  EXPECT_EQ(describe.exit_code, 0);
  EXPECT_NE(
      describe.output.find("provided by: fixture_good 1.0.0 (" + fixture("good_plugin") + ")"),
      std::string::npos)
      << describe.output;
  auto unknown = host("--plugins " + fixture("good_plugin") + " --describe test.fixture.GodLoss");
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_EQ(unknown.output,
            "ktf-host: --describe 'test.fixture.GodLoss': no component has this name "
            "(did you mean 'test.fixture.GoodLoss'?)\n");
}

TEST(Host, BadCommandLineAndMissingConfigExit2) {
  auto r = host("--no-such-flag");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("unrecognised option '--no-such-flag'"), std::string::npos) << r.output;
  auto missing = host("--plugins " + fixture("good_plugin") + " -c /nonexistent/cfg.json");
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_EQ(missing.output, "ktf-host: cannot read config file '/nonexistent/cfg.json'\n");
  auto comma = ktf::test::scratch_dir("host_comma") + "/cfg.json";
  std::ofstream(comma) << "{\n  \"model\": {}\n  \"loss\" {}\n}\n";
  auto parse = host("--plugins " + fixture("good_plugin") + " -c " + comma);
  EXPECT_EQ(parse.exit_code, 2);
  EXPECT_NE(parse.output.find(comma + ":3:10: Expecting ':' delimiter"), std::string::npos)
      << parse.output;
}

TEST(Host, NumericOptionsOutOfRangeExit2NamingTheOption) {
  const std::pair<std::string, std::string> cases[] = {
      {"--threads -3", "ktf-host: --threads '-3': expected 0 (all cores) to 1024\n"},
      {"--threads 100000", "ktf-host: --threads '100000': expected 0 (all cores) to 1024\n"},
      {"--seed -1", "ktf-host: --seed '-1': expected an integer from 0 to 18446744073709551615\n"},
      {"--seed 18446744073709551616",
       "ktf-host: --seed '18446744073709551616': expected an integer from 0 to "
       "18446744073709551615\n"},
      {"--seed 12abc",
       "ktf-host: --seed '12abc': expected an integer from 0 to 18446744073709551615\n"},
      {"--shards 0", "ktf-host: --shards '0': expected 1 to 100000\n"},
      {"--nproc-per-node -2", "ktf-host: --nproc-per-node '-2': expected 0 to 1024\n"},
      {"--dist-timeout 0",
       "ktf-host: --dist-timeout '0.000000': expected seconds, more than 0 and at most a week "
       "(604800)\n"},
  };
  for (const auto& [args, message] : cases) {
    auto r = host("--plugins " + fixture("good_plugin") + " -c /nonexistent.json " + args);
    EXPECT_EQ(r.exit_code, 2) << args;
    EXPECT_EQ(r.output, message) << args;
  }
  // The largest seed is a seed.
  auto big = host("--plugins " + fixture("good_plugin") +
                  " --seed 18446744073709551615 -c /nonexistent/cfg.json");
  EXPECT_EQ(big.output, "ktf-host: cannot read config file '/nonexistent/cfg.json'\n");
}

TEST(Host, ALauncherWithoutItsHostLibraryExits3NamingWhereItLooked) {
  // A partial install: the launcher copied alone into a directory.
  const std::string dir = ktf::test::scratch_dir("host_alone");
  std::filesystem::copy_file(KTF_HOST, dir + "/ktf-host");
  auto r = ktf::test::run_command(dir + "/ktf-host -c /nonexistent.json");
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_EQ(r.output.rfind("ktf-host: cannot load the host library libktf_host_cli.so beside " +
                               dir + " or in " + dir + "/",
                           0),
            0u)
      << r.output;
  EXPECT_NE(r.output.find(": not found"), std::string::npos) << r.output;
}

TEST(Host, ACudaDeviceWithoutCudaExits2) {
  const std::string cfg = ktf::test::scratch_dir("host_cuda") + "/c.json";
  std::ofstream(cfg) << R"([{"datasets": {"ktf.datasets.synthetic": {"num_examples": 8,
      "num_valid": 0, "input_shape": [4], "batch_size": 4}},
      "model": {"ktf.networks.MLP": {"num_outputs": 10, "hidden": [4]}},
      "loss": {"ktf.losses.CrossEntropy": {}}}])";
  auto r = host("--plugins " + ktf::test::plugin_dir() + " --device cuda --dry-run -c " + cfg);
  if (torch::cuda::is_available()) {
    EXPECT_EQ(r.output.find("CUDA is not available"), std::string::npos) << r.output;
  } else {
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_EQ(r.output,
              "ktf-host: --device 'cuda': CUDA is not available (this libtorch is CPU-only or no "
              "GPU is visible)\n");
  }
}

TEST(Host, VersionNamesAbiAndLibtorch) {
  auto r = host("--version");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("plugin ABI " + std::to_string(KTF_ABI_VERSION) + ", libtorch "),
            std::string::npos)
      << r.output;
}

}  // namespace
