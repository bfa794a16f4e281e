// Interop with PyTorch in Python (Debian's python3-torch, which scripts/setup.sh installs for the
// tests): a ktf run's weights file loads with torch.jit.load, its state_dict goes into the
// equivalent torch.nn model with strict names and shapes, and that model gives the outputs ktf's
// --predict gives on the same examples. --export-weights writes a plain state_dict (torch.load),
// under torchvision's names for ResNet and MobileNetV2, which loads into torchvision's models
// (python3-torchvision) with the same outputs.
#include <gtest/gtest.h>
#include <ktf/json.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include "plugins_fixture.h"

namespace {

namespace fs = std::filesystem;

ktf::test::CommandResult host(const std::string& args) {
  return ktf::test::run_command(std::string("KTF_PLUGIN_PATH= ") + KTF_HOST + " --plugins " +
                                ktf::test::plugin_dir() + " " + args);
}

/// A float32 IDX file of `values` with dimensions `dims` (big-endian, as IDX is).
void write_idx_floats(const std::string& path, const std::vector<float>& values,
                      const std::vector<uint32_t>& dims) {
  std::ofstream out(path, std::ios::binary);
  const unsigned char magic[] = {0, 0, 0x0d, static_cast<unsigned char>(dims.size())};
  out.write(reinterpret_cast<const char*>(magic), 4);
  auto big_endian = [&](uint32_t d) {
    const unsigned char be[] = {static_cast<unsigned char>(d >> 24),
                                static_cast<unsigned char>(d >> 16),
                                static_cast<unsigned char>(d >> 8), static_cast<unsigned char>(d)};
    out.write(reinterpret_cast<const char*>(be), 4);
  };
  for (uint32_t d : dims) big_endian(d);
  for (float f : values) {
    uint32_t b;
    std::memcpy(&b, &f, 4);
    big_endian(b);
  }
}

/// `n` normally distributed values (seeded).
std::vector<float> normal_values(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0, 2);
  std::vector<float> x(n);
  for (auto& v : x) v = normal(rng);
  return x;
}

/// Checks that the "p ..." lines Python printed (one softmax row per example) equal the
/// probabilities in --predict's CSV (`k` classes per row, named "class <c>") within `tolerance`.
void expect_same_probabilities(const std::string& python_output, const std::string& csv_path,
                               size_t examples, int k, double tolerance) {
  std::vector<std::vector<double>> torch_p;
  std::istringstream lines(python_output);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("p ", 0) != 0) continue;
    std::istringstream f(line.substr(2));
    std::vector<double> row;
    for (double v; f >> v;) row.push_back(v);
    torch_p.push_back(row);
  }
  ASSERT_EQ(torch_p.size(), examples) << python_output;
  std::ifstream csv(csv_path);
  std::string line;
  std::getline(csv, line);  // header
  size_t rows = 0;
  for (; std::getline(csv, line); ++rows) {
    std::vector<std::string> cells;
    std::istringstream f(line);
    for (std::string c; std::getline(f, c, ',');) cells.push_back(c);
    ASSERT_EQ(cells.size(), static_cast<size_t>(2 + 2 * k)) << line;
    const auto i = static_cast<size_t>(std::stoll(cells[1]));
    ASSERT_LT(i, examples) << line;
    for (int c = 0; c < k; ++c) {
      const std::string name = cells[2 + 2 * c];  // "class <c>"
      const auto cls = static_cast<size_t>(std::stoi(name.substr(6)));
      ASSERT_LT(cls, torch_p[i].size()) << line;
      EXPECT_NEAR(std::stod(cells[3 + 2 * c]), torch_p[i][cls], tolerance)
          << "example " << i << ", " << name;
    }
  }
  EXPECT_EQ(rows, examples);
}

TEST(PyTorchInterop, WeightsLoadIntoTheEquivalentTorchNnModelAndGiveTheSameOutputs) {
  const std::string dir = ktf::test::scratch_dir("interop");
  std::ofstream(dir + "/c.json") << R"([{
    "datasets": {"ktf.datasets.synthetic": {"num_examples": 256, "num_valid": 64,
                                            "input_shape": [6], "num_classes": 4,
                                            "batch_size": 32}},
    "model": {"ktf.networks.MLP": {"num_outputs": 4, "hidden": [16, 8], "batchnorm": true}},
    "loss": {"ktf.losses.CrossEntropy": {}},
    "train_loop": {"ktf.train.KerasTrainLoop": {"num_epochs": 2, "verbose": 0}}}])";
  auto t = host("-q -c " + dir + "/c.json -o " + dir + "/run");
  ASSERT_EQ(t.exit_code, 0) << t.output;
  write_idx_floats(dir + "/x.idx", normal_values(20 * 6, 7), {20, 6});
  auto p = host("-q --predict " + dir + "/run " + dir + "/x.idx --top-k 4 --predictions " + dir +
                "/p.csv");
  ASSERT_EQ(p.exit_code, 0) << p.output;
  auto py = ktf::test::run_command("/usr/bin/python3 " + std::string(KTF_SOURCE_DIR) +
                                   "/tests/functional/torch_interop.py " + dir +
                                   "/run/weights/cycle-1.pt " + dir + "/x.idx 16,8 1 4");
  ASSERT_EQ(py.exit_code, 0) << py.output;
  // The state_dict names are the C++ module's, those of the torch.nn model above.
  EXPECT_NE(py.output.find("names bn1.bias bn1.num_batches_tracked bn1.running_mean "
                           "bn1.running_var bn1.weight bn2.bias"),
            std::string::npos)
      << py.output;
  expect_same_probabilities(py.output, dir + "/p.csv", 20, 4, 2e-6);
}

// ResNet and MobileNetV2 trained briefly, exported with torchvision's names (--export-weights),
// load with torch.load and strict names into the torchvision model the export names (changes to
// its stem included), and give --predict's probabilities.
struct TorchvisionCase {
  std::string name, network;
  std::vector<uint32_t> shape;  // one example's [C, H, W]
  std::string reference;        // what export must name as the equivalent
};

void PrintTo(const TorchvisionCase& c, std::ostream* os) { *os << c.name; }

class TorchvisionInterop : public ::testing::TestWithParam<TorchvisionCase> {};

TEST_P(TorchvisionInterop, ExportedStateDictLoadsIntoTorchvisionAndGivesTheSameOutputs) {
  const auto& c = GetParam();
  const std::string dir = ktf::test::scratch_dir("interop_" + c.name);
  std::ostringstream shape;
  shape << "[" << c.shape[0] << ", " << c.shape[1] << ", " << c.shape[2] << "]";
  std::ofstream(dir + "/c.json") << R"([{
    "datasets": {"ktf.datasets.synthetic": {"num_examples": 64, "num_valid": 16,
                                            "input_shape": )"
                                 << shape.str() << R"(, "num_classes": 10,
                                            "batch_size": 16}},
    "model": )" << c.network << R"(,
    "loss": {"ktf.losses.CrossEntropy": {}},
    "train_loop": {"ktf.train.KerasTrainLoop": {"num_epochs": 1, "verbose": 0}}}])";
  auto t = host("-q -c " + dir + "/c.json -o " + dir + "/run");
  ASSERT_EQ(t.exit_code, 0) << t.output;
  const uint32_t n = 6;
  write_idx_floats(dir + "/x.idx", normal_values(n * c.shape[0] * c.shape[1] * c.shape[2], 11),
                   {n, c.shape[0], c.shape[1], c.shape[2]});
  auto p = host("-q --predict " + dir + "/run " + dir + "/x.idx --top-k 10 --predictions " + dir +
                "/p.csv");
  ASSERT_EQ(p.exit_code, 0) << p.output;
  auto e = host("--export-weights " + dir + "/run " + dir + "/tv.pt");
  ASSERT_EQ(e.exit_code, 0) << e.output;
  const std::string under = " under " + c.reference + "'s names written to " + dir + "/tv.pt";
  ASSERT_NE(e.output.find(under), std::string::npos) << e.output;
  auto py = ktf::test::run_command("/usr/bin/python3 " + std::string(KTF_SOURCE_DIR) +
                                   "/tests/functional/torchvision_interop.py " + dir + "/tv.pt " +
                                   dir + "/x.idx '" + c.reference + "'");
  ASSERT_EQ(py.exit_code, 0) << py.output;
  // A plain dict, in torchvision's own state_dict order.
  EXPECT_NE(py.output.find("type dict tensors "), std::string::npos) << py.output;
  EXPECT_NE(py.output.find("order same"), std::string::npos) << py.output;
  expect_same_probabilities(py.output, dir + "/p.csv", n, 10, 1e-4);
}

INSTANTIATE_TEST_SUITE_P(
    Networks, TorchvisionInterop,
    ::testing::Values(
        TorchvisionCase{"resnet18_small_input",
                        R"({"ktf.networks.ResNet": {"depth": 18, "small_input": true}})",
                        {1, 16, 16},
                        "torchvision.models.resnet18(num_classes=10) with model.conv1 = "
                        "torch.nn.Conv2d(1, 64, 3, 1, 1, bias=False) and model.maxpool = "
                        "torch.nn.Identity()"},
        TorchvisionCase{"mobilenet_v2",
                        R"({"ktf.networks.MobileNetV2": {}})",
                        {3, 32, 32},
                        "torchvision.models.mobilenet_v2(num_classes=10)"}),
    [](const ::testing::TestParamInfo<TorchvisionCase>& info) { return info.param.name; });

TEST(ExportWeights, KtfNamesByDefaultWhereThereIsNoEquivalentAndClearErrors) {
  const std::string dir = ktf::test::scratch_dir("export_weights");
  std::ofstream(dir + "/c.json") << R"([{
    "datasets": {"ktf.datasets.synthetic": {"num_examples": 64, "num_valid": 16,
                                            "input_shape": [6], "num_classes": 4,
                                            "batch_size": 16}},
    "model": {"ktf.networks.MLP": {"num_outputs": 4, "hidden": [8]}},
    "loss": {"ktf.losses.CrossEntropy": {}},
    "train_loop": {"ktf.train.KerasTrainLoop": {"num_epochs": 1, "verbose": 0}}}])";
  auto t = host("-q -c " + dir + "/c.json -o " + dir + "/run");
  ASSERT_EQ(t.exit_code, 0) << t.output;
  auto e = host("--export-weights " + dir + "/run");
  ASSERT_EQ(e.exit_code, 0) << e.output;
  EXPECT_NE(e.output.find("export: cycle 1, 4 tensors of ktf.networks.MLP under ktf's names "
                          "written to " +
                          dir + "/run/weights/cycle-1.state_dict.pt"),
            std::string::npos)
      << e.output;
  auto py = ktf::test::run_command(
      "/usr/bin/python3 -c \"import torch; s = torch.load('" + dir +
      "/run/weights/cycle-1.state_dict.pt'); print(type(s).__name__, list(s), "
      "list(s['dense1.weight'].shape))\"");
  ASSERT_EQ(py.exit_code, 0) << py.output;
  EXPECT_NE(py.output.find("dict ['dense1.weight', 'dense1.bias', 'head.weight', 'head.bias'] "
                           "[8, 6]"),
            std::string::npos)
      << py.output;
  for (const auto& [args, message] : std::vector<std::pair<std::string, std::string>>{
           {dir + "/run --export-names torchvision",
            "--export-names torchvision: ktf.networks.MLP has no equivalent in another library"},
           {dir + "/nowhere", "is not a ktf run directory"},
           {dir + "/run a.pt b.pt",
            "--export-weights takes a run directory and optionally the output file"}}) {
    auto r = host("--export-weights " + args);
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(message), std::string::npos) << r.output;
  }
}

}  // namespace
