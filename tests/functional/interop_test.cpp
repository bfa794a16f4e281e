// Interop with PyTorch in Python (Debian's python3-torch, which scripts/setup.sh installs for the
// tests): a ktf run's weights file loads with torch.jit.load, its state_dict goes into the
// equivalent torch.nn model with strict names and shapes, and that model gives the outputs ktf's
// --predict gives on the same examples.
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

/// A float32 IDX file of `rows` x `cols` values (big-endian, as IDX is).
void write_idx_floats(const std::string& path, const std::vector<float>& values, uint32_t rows,
                      uint32_t cols) {
  std::ofstream out(path, std::ios::binary);
  const unsigned char magic[] = {0, 0, 0x0d, 2};
  out.write(reinterpret_cast<const char*>(magic), 4);
  for (uint32_t d : {rows, cols}) {
    const unsigned char be[] = {static_cast<unsigned char>(d >> 24),
                                static_cast<unsigned char>(d >> 16),
                                static_cast<unsigned char>(d >> 8), static_cast<unsigned char>(d)};
    out.write(reinterpret_cast<const char*>(be), 4);
  }
  for (float f : values) {
    uint32_t b;
    std::memcpy(&b, &f, 4);
    const unsigned char be[] = {static_cast<unsigned char>(b >> 24),
                                static_cast<unsigned char>(b >> 16),
                                static_cast<unsigned char>(b >> 8), static_cast<unsigned char>(b)};
    out.write(reinterpret_cast<const char*>(be), 4);
  }
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
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0, 2);
  std::vector<float> x(20 * 6);
  for (auto& v : x) v = normal(rng);
  write_idx_floats(dir + "/x.idx", x, 20, 6);
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
  std::vector<std::vector<double>> torch_p;
  std::istringstream lines(py.output);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("p ", 0) != 0) continue;
    std::istringstream f(line.substr(2));
    std::vector<double> row;
    for (double v; f >> v;) row.push_back(v);
    torch_p.push_back(row);
  }
  ASSERT_EQ(torch_p.size(), 20u) << py.output;
  std::ifstream csv(dir + "/p.csv");
  std::string line;
  std::getline(csv, line);  // header
  int rows = 0;
  for (; std::getline(csv, line); ++rows) {
    std::vector<std::string> cells;
    std::istringstream f(line);
    for (std::string c; std::getline(f, c, ',');) cells.push_back(c);
    ASSERT_EQ(cells.size(), 10u) << line;
    const int64_t i = std::stoll(cells[1]);
    for (int k = 0; k < 4; ++k) {
      const std::string name = cells[2 + 2 * k];  // "class <c>"
      const int c = std::stoi(name.substr(6));
      EXPECT_NEAR(std::stod(cells[3 + 2 * k]), torch_p[static_cast<size_t>(i)][c], 2e-6)
          << "example " << i << ", " << name;
    }
  }
  EXPECT_EQ(rows, 20);
}

}  // namespace
