// The workflow around training, through ktf-host: --diff compares two runs' resolved configs,
// plugins, final metrics and evaluations side by side; --predict runs a trained model on image
// files, IDX files and CSV/TFRecord files of its dataset's format as its dataset prepared its
// validation data; --sweep trains a grid of points, continues when interrupted and tables them
// best first. (--export-weights: tests/functional/interop_test.cpp.)
#include <gtest/gtest.h>
#include <ktf/example.h>
#include <ktf/files.h>
#include <ktf/image.h>
#include <ktf/json.h>
#include <ktf/tfrecord.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include "plugins_fixture.h"

namespace {

namespace fs = std::filesystem;

ktf::test::CommandResult host(const std::string& args) {
  return ktf::test::run_command(std::string("KTF_PLUGIN_PATH= ") + KTF_HOST + " --plugins " +
                                ktf::test::plugin_dir() + " " + args);
}

const char* const kTwoCycles = ktf::test::kTwoShortCycles;

/// The line of `text` that starts (after spaces) with `start`, or "".
std::string line_starting(const std::string& text, const std::string& start) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    auto first = line.find_first_not_of(' ');
    if (first != std::string::npos && line.compare(first, start.size(), start) == 0) return line;
  }
  return "";
}

class Diff : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = ktf::test::scratch_dir("workflow_diff");
    std::ofstream(dir_ + "/c.json") << kTwoCycles;
    auto a = host("-q -c " + dir_ + "/c.json -o " + dir_ + "/a");
    ASSERT_EQ(a.exit_code, 0) << a.output;
    auto b = host("-q -c " + dir_ + "/c.json -o " + dir_ + "/b" +
                  " --set /1/optimizer/ktf.optimizers.SGD/learning_rate=0.02");
    ASSERT_EQ(b.exit_code, 0) << b.output;
  }
  static std::string dir_;
};
std::string Diff::dir_;

TEST_F(Diff, NamesTheChangedValueByJsonPointerAndPutsTheFinalMetricsSideBySide) {
  auto r = host("--diff " + dir_ + "/a " + dir_ + "/b");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("A: " + dir_ + "/a\nB: " + dir_ + "/b\n"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("config (config.resolved.json): 1 difference\n"), std::string::npos)
      << r.output;
  const std::string changed = line_starting(r.output, "/1/optimizer/ktf.optimizers.SGD/");
  EXPECT_NE(changed.find("/1/optimizer/ktf.optimizers.SGD/learning_rate"), std::string::npos)
      << r.output;
  EXPECT_NE(changed.find(" 0.01 "), std::string::npos) << changed;
  EXPECT_EQ(changed.substr(changed.size() - 4), "0.02") << changed;
  EXPECT_NE(r.output.find("plugins (plugins.json): the same\n"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("cycle 1: A 1 epoch, B 1 epoch\n"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("cycle 2: A 1 epoch, B 1 epoch\n"), std::string::npos) << r.output;
  // Cycle 1 is the same config with the same seed: the same numbers, B - A = +0.
  const auto cycle2 = r.output.find("cycle 2:");
  const std::string first = r.output.substr(0, cycle2), second = r.output.substr(cycle2);
  for (const char* metric : {"loss ", "accuracy ", "val_loss ", "val_accuracy "}) {
    const std::string row = line_starting(first, metric);
    ASSERT_FALSE(row.empty()) << metric << " in\n" << r.output;
    EXPECT_EQ(row.substr(row.size() - 3), " +0") << row;
  }
  // Cycle 2 trained with twice the learning rate: its loss moved.
  const std::string lr = line_starting(second, "lr ");
  EXPECT_NE(lr.find("+0.01"), std::string::npos) << r.output;
  EXPECT_NE(line_starting(second, "loss ").substr(line_starting(second, "loss ").size() - 3), " +0")
      << r.output;
  EXPECT_FALSE(line_starting(r.output, "samples_per_second").empty()) << r.output;
  EXPECT_EQ(r.output.find("time_data"), std::string::npos) << r.output;  // timing is left out
}

TEST_F(Diff, ARunAgainstItselfIsTheSameAndEvaluationsAreCompared) {
  auto e = host("-q --evaluate " + dir_ + "/a");
  ASSERT_EQ(e.exit_code, 0) << e.output;
  auto r = host("--diff " + dir_ + "/a " + dir_ + "/a");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("config (config.resolved.json): the same\n"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("evaluation of cycle 2 (evaluation-cycle-2.json, --evaluate):\n"),
            std::string::npos)
      << r.output;
  const std::string examples = line_starting(r.output, "examples ");
  EXPECT_EQ(examples.substr(examples.size() - 3), " +0") << r.output;
  auto other = host("--diff " + dir_ + "/a " + dir_ + "/b");
  ASSERT_EQ(other.exit_code, 0) << other.output;
  const std::string row =
      line_starting(other.output.substr(other.output.find("evaluation of cycle 2")), "examples ");
  EXPECT_NE(row.find(" 32 "), std::string::npos) << other.output;  // A's 32 examples, B has none
  EXPECT_NE(row.find(" - "), std::string::npos) << other.output;
}

TEST_F(Diff, BadRunDirectoriesExit2NamingThem) {
  auto missing = host("--diff " + dir_ + "/a " + dir_ + "/nowhere");
  EXPECT_EQ(missing.exit_code, 2) << missing.output;
  EXPECT_NE(missing.output.find("--diff '" + dir_ + "/nowhere': not a directory"),
            std::string::npos)
      << missing.output;
  fs::create_directories(dir_ + "/empty");
  auto empty = host("--diff " + dir_ + "/empty " + dir_ + "/a");
  EXPECT_EQ(empty.exit_code, 2) << empty.output;
  EXPECT_NE(empty.output.find("' is not a ktf run directory (no config.resolved.json)"),
            std::string::npos)
      << empty.output;
  auto one = host("--diff " + dir_ + "/a");
  EXPECT_EQ(one.exit_code, 2) << one.output;
  EXPECT_NE(one.output.find("--diff takes two run directories, got 1"), std::string::npos)
      << one.output;
}

const char* const kFashionMnist = "/usr/share/datasets/fashion-mnist";
const std::vector<std::string> kFashionClasses = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                                  "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                                  "Bag",         "Ankle boot"};

/// A JSON value as the sweep's table writes it.
std::string cell_text(const ktf::Json& v) {
  if (v.is_number() && !v.is_int()) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6g", v.as_number());
    return buf;
  }
  return v.dump();
}

std::vector<std::vector<std::string>> read_csv(const std::string& path) {
  std::vector<std::vector<std::string>> rows;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> cells;
    std::istringstream fields(line);
    for (std::string cell; std::getline(fields, cell, ',');) cells.push_back(cell);
    rows.push_back(cells);
  }
  return rows;
}

// A short Fashion-MNIST run (validated on the 10 000 test images), evaluated; the test images
// written out as PNG files.
class Predict : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = ktf::test::scratch_dir("workflow_predict");
    std::ofstream(dir_ + "/c.json") << R"([{
      "datasets": {"ktf.datasets.fashion.fashion_mnist.from_idx": {"batch_size": 64,
                                                                  "mean": [0.286], "std": [0.353]}},
      "model": {"ktf.networks.MLP": {"num_outputs": 10, "hidden": [64]}},
      "loss": {"ktf.losses.CrossEntropy": {}},
      "metrics": [{"ktf.metrics.SparseCategoricalAccuracy": {}}],
      "train_loop": {"ktf.train.KerasTrainLoop": {"num_epochs": 1, "steps_per_epoch": 150,
                                                  "num_valid_steps": 1, "verbose": 0}}}])";
    auto t = host("-q -c " + dir_ + "/c.json -o " + dir_ + "/run");
    ASSERT_EQ(t.exit_code, 0) << t.output;
    auto e = host("-q --evaluate " + dir_ + "/run");
    ASSERT_EQ(e.exit_code, 0) << e.output;
    images_ = ktf::read_idx(std::string(kFashionMnist) + "/t10k-images-idx3-ubyte.gz");
    labels_ = ktf::read_idx(std::string(kFashionMnist) + "/t10k-labels-idx1-ubyte.gz");
    ASSERT_EQ(images_.size(0), 10000);
    fs::create_directories(dir_ + "/png/part");
    for (int64_t i = 0; i < images_.size(0); ++i) {
      char name[32];
      std::snprintf(name, sizeof name, "/%05ld.png", static_cast<long>(i));
      // A folder inside the folder: inputs are searched recursively, in name order.
      ktf::write_png(dir_ + (i < 5000 ? "/png" : "/png/part") + name, images_[i].unsqueeze(2));
    }
  }
  static std::string dir_;
  static torch::Tensor images_, labels_;
};
std::string Predict::dir_;
torch::Tensor Predict::images_, Predict::labels_;

TEST_F(Predict, PngFilesOfTheTestImagesGiveTheAccuracyAndPredictionsOfEvaluate) {
  auto r = host("--predict " + dir_ + "/run " + dir_ + "/png --top-k 3 --predictions " + dir_ +
                "/png.csv");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("predict: cycle 1, 10000 examples; predictions written to " + dir_ +
                          "/png.csv"),
            std::string::npos)
      << r.output;
  const auto rows = read_csv(dir_ + "/png.csv");
  ASSERT_EQ(rows.size(), 10001u);
  EXPECT_EQ(rows[0],
            (std::vector<std::string>{"input", "index", "class_1", "probability_1", "class_2",
                                      "probability_2", "class_3", "probability_3"}));
  const auto evaluated = read_csv(dir_ + "/run/predictions-cycle-1.csv");  // index,target,predicted
  ASSERT_EQ(evaluated.size(), 10001u);
  int64_t correct = 0, same = 0;
  for (size_t i = 1; i < rows.size(); ++i) {
    ASSERT_EQ(rows[i].size(), 8u) << i;
    char name[32];
    std::snprintf(name, sizeof name, "/%05ld.png", static_cast<long>(i - 1));
    EXPECT_EQ(rows[i][0], dir_ + (i - 1 < 5000 ? "/png" : "/png/part") + name);
    const auto it = std::find(kFashionClasses.begin(), kFashionClasses.end(), rows[i][2]);
    ASSERT_NE(it, kFashionClasses.end()) << rows[i][2];
    const int64_t predicted = it - kFashionClasses.begin();
    correct += predicted == labels_[static_cast<int64_t>(i - 1)].item<int64_t>();
    same += std::to_string(predicted) == evaluated[i][2];
    const double p1 = std::stod(rows[i][3]), p2 = std::stod(rows[i][5]), p3 = std::stod(rows[i][7]);
    EXPECT_TRUE(p1 >= p2 && p2 >= p3 && p1 + p2 + p3 <= 1 + 1e-5) << i;
  }
  const double accuracy =
      ktf::Json::parse_file(dir_ + "/run/evaluation-cycle-1.json").at("accuracy").as_number();
  EXPECT_GT(accuracy, 0.6);  // 150 steps of training
  EXPECT_EQ(correct, static_cast<int64_t>(std::llround(accuracy * 10000)));
  EXPECT_EQ(same, 10000);  // every example, not only the count
}

TEST_F(Predict, AnIdxFileGivesTheSamePredictionsAsItsImages) {
  auto r = host("-q --predict " + dir_ + "/run " + kFashionMnist +
                "/t10k-images-idx3-ubyte.gz --top-k 1 --predictions " + dir_ + "/idx.csv");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto idx = read_csv(dir_ + "/idx.csv");
  const auto evaluated = read_csv(dir_ + "/run/predictions-cycle-1.csv");
  ASSERT_EQ(idx.size(), 10001u);
  int64_t same = 0;
  for (size_t i = 1; i < idx.size(); ++i) {
    EXPECT_EQ(idx[i][1], std::to_string(i - 1));
    const auto it = std::find(kFashionClasses.begin(), kFashionClasses.end(), idx[i][2]);
    same += it != kFashionClasses.end() &&
            std::to_string(it - kFashionClasses.begin()) == evaluated[i][2];
  }
  EXPECT_EQ(same, 10000);
}

TEST_F(Predict, BadInputsExit2NamingThem) {
  std::ofstream(dir_ + "/notes.txt") << "not an image";
  for (const auto& [args, message] : std::vector<std::pair<std::string, std::string>>{
           {dir_ + "/run", "--predict takes a run directory and at least one input"},
           {dir_ + "/run " + dir_ + "/notes.txt",
            "--predict '" + dir_ + "/notes.txt': not a PNG or JPEG image"},
           {dir_ + "/run " + dir_ + "/none.png", "--predict '" + dir_ + "/none.png': no such file"},
           {dir_ + "/run " + dir_ + "/run/weights", "the folder holds no PNG or JPEG image"},
           {dir_ + "/nowhere " + dir_ + "/png", "is not a ktf run directory"}}) {
    auto r = host("--predict " + args);
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(message), std::string::npos) << r.output;
  }
  // An IDX file of 3 examples of 5 values: not the run's 1 x 28 x 28.
  {
    std::ofstream idx(dir_ + "/small-ubyte", std::ios::binary);
    const char header[] = {0, 0, 8, 2, 0, 0, 0, 3, 0, 0, 0, 5};
    idx.write(header, sizeof header);
    idx << std::string(15, '\x7f');
  }
  auto small = host("--predict " + dir_ + "/run " + dir_ + "/small-ubyte");
  EXPECT_EQ(small.exit_code, 2) << small.output;
  EXPECT_NE(small.output.find("--predict '" + dir_ +
                              "/small-ubyte': its examples have shape [5], the run's have [1, 28, "
                              "28] (784 values)"),
            std::string::npos)
      << small.output;
  // A PNG that is not one: the file is named.
  std::ofstream(dir_ + "/broken.png") << "\x89PNG garbage";
  auto r = host("--predict " + dir_ + "/run " + dir_ + "/broken.png");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--predict '" + dir_ + "/broken.png': cannot decode PNG"),
            std::string::npos)
      << r.output;
}

/// The class names of --predict's first column (`class_1`) mapped to indices in `names`, per row
/// (the header left out); -1 where the name is not one of them.
std::vector<int64_t> top_classes(const std::vector<std::vector<std::string>>& rows,
                                 const std::vector<std::string>& names) {
  std::vector<int64_t> out;
  for (size_t i = 1; i < rows.size(); ++i) {
    const auto it =
        rows[i].size() > 2 ? std::find(names.begin(), names.end(), rows[i][2]) : names.end();
    out.push_back(it == names.end() ? -1 : it - names.begin());
  }
  return out;
}

/// --evaluate's predicted class per example (predictions-cycle-1.csv: index,target,predicted).
std::vector<int64_t> evaluated_classes(const std::string& run) {
  std::vector<int64_t> out;
  const auto rows = read_csv(run + "/predictions-cycle-1.csv");
  for (size_t i = 1; i < rows.size(); ++i) out.push_back(std::stoll(rows[i].at(2)));
  return out;
}

/// Trains an MLP with 3 outputs on `datasets` (a config's "datasets" value) for 2 epochs into
/// dir/run, evaluates it and returns --evaluate's predicted class per validation example.
std::vector<int64_t> train_and_evaluate(const std::string& dir, const std::string& datasets) {
  std::ofstream(dir + "/c.json") << R"([{"datasets": )" << datasets << R"(,
    "model": {"ktf.networks.MLP": {"num_outputs": 3, "hidden": [16]}},
    "loss": {"ktf.losses.CrossEntropy": {}},
    "train_loop": {"ktf.train.KerasTrainLoop": {"num_epochs": 2, "verbose": 0}}}])";
  auto t = host("-q -c " + dir + "/c.json -o " + dir + "/run");
  EXPECT_EQ(t.exit_code, 0) << t.output;
  auto e = host("-q --evaluate " + dir + "/run");
  EXPECT_EQ(e.exit_code, 0) << e.output;
  return evaluated_classes(dir + "/run");
}

// A CSV run (generated blobs, class names as labels): --predict reads CSV files with the run's
// feature columns, by name, in any order, with or without the label column.
TEST(PredictCsv, CsvFilesGiveTheValidationPredictionsOfEvaluateAndMissingColumnsAreNamed) {
  const std::string dir = ktf::test::scratch_dir("workflow_predict_csv");
  const std::vector<std::string> names = {"cat", "dog", "emu"};
  auto write = [&](const std::string& path, int rows, bool label_column, bool reordered) {
    std::ofstream out(path);
    out << (reordered      ? "f3,f1,id,f0,f2"
            : label_column ? "f0,f1,f2,f3,label"
                           : "f0,f1,f2,f3")
        << "\n";
    std::mt19937 local(static_cast<unsigned>(rows));  // the same rows for every layout
    for (int r = 0; r < rows; ++r) {
      const int c = r % 3;
      double f[4];
      for (int j = 0; j < 4; ++j)
        f[j] = (j == c ? 2.0 : 0.0) + std::normal_distribution<double>(0, 1)(local);
      if (reordered)
        out << f[3] << "," << f[1] << ",row" << r << "," << f[0] << "," << f[2] << "\n";
      else
        out << f[0] << "," << f[1] << "," << f[2] << "," << f[3]
            << (label_column ? "," + names[static_cast<size_t>(c)] : "") << "\n";
    }
  };
  write(dir + "/train.csv", 300, true, false);
  write(dir + "/valid.csv", 90, true, false);
  write(dir + "/nolabel.csv", 90, false, false);
  write(dir + "/reordered.csv", 90, false, true);
  const auto evaluated = train_and_evaluate(
      dir, R"({"ktf.datasets.csv": {"file": ")" + dir + R"(/train.csv", "validation_file": ")" +
               dir + R"(/valid.csv", "label_column": "label", "batch_size": 32}})");
  ASSERT_EQ(evaluated.size(), 90u);
  for (const std::string file : {"valid", "nolabel", "reordered"}) {
    auto r = host("-q --predict " + dir + "/run " + dir + "/" + file + ".csv --top-k 2 " +
                  "--predictions " + dir + "/" + file + ".out.csv");
    ASSERT_EQ(r.exit_code, 0) << file << "\n" << r.output;
    const auto rows = read_csv(dir + "/" + file + ".out.csv");
    ASSERT_EQ(rows.size(), 91u) << file;
    EXPECT_EQ(rows[1][0], dir + "/" + file + ".csv");
    EXPECT_EQ(rows[90][1], "89");
    EXPECT_EQ(top_classes(rows, names), evaluated) << file;
  }
  std::ofstream(dir + "/short.csv") << "f0,f1,f3\n1,2,3\n";
  std::ofstream(dir + "/bad.csv") << "f0,f1,f2,f3\n1,2,x,3\n";
  std::ofstream(dir + "/x.tfrecord") << "";
  for (const auto& [file, message] : std::vector<std::pair<std::string, std::string>>{
           {"short.csv", "CSV file '" + dir +
                             "/short.csv' has no column 'f2' (the run's feature columns are f0, "
                             "f1, f2, f3)"},
           {"bad.csv", "CSV file '" + dir + "/bad.csv': line 2, column 'f2': 'x' is not a number"},
           {"x.tfrecord", "--predict '" + dir +
                              "/x.tfrecord': a TFRecord file, but the run's dataset reads no "
                              "TFRecord files (it reads CSV files, "}}) {
    auto r = host("--predict " + dir + "/run " + dir + "/" + file);
    EXPECT_EQ(r.exit_code, 2) << file << "\n" << r.output;
    EXPECT_NE(r.output.find(message), std::string::npos) << r.output;
  }
}

// A TFRecord run (8x8 uint8 images, PNG-encoded): --predict reads TFRecord files through the
// run's feature spec, with or without the label feature.
TEST(PredictTFRecord, RecordsGiveTheValidationPredictionsOfEvaluate) {
  const std::string dir = ktf::test::scratch_dir("workflow_predict_tfrecord");
  auto write = [&](const std::string& path, int records, bool labels) {
    ktf::TFRecordWriter w(path);
    std::mt19937 local(static_cast<unsigned>(records));
    for (int r = 0; r < records; ++r) {
      const int c = r % 3;
      auto image = torch::empty({8, 8, 1}, torch::kUInt8);
      auto* p = image.data_ptr<uint8_t>();
      for (int i = 0; i < 64; ++i)
        p[i] = static_cast<uint8_t>((i / 8 == c * 3 ? 200 : 20) + local() % 40);
      std::map<std::string, ktf::Feature> f{
          {"image", ktf::Feature::bytes_list({ktf::encode_png(image)})}};
      if (labels) f["label"] = ktf::Feature::int64_list({c});
      w.write(ktf::serialize_example(f));
    }
  };
  fs::create_directories(dir + "/data");
  write(dir + "/data/train.tfrecord", 240, true);
  write(dir + "/data/valid.tfrecord", 60, true);
  write(dir + "/unlabelled.tfrecord", 60, false);
  std::ofstream(dir + "/data/features.json") << R"({"features": {
      "image": {"dtype": "uint8", "shape": [8, 8, 1], "encoding": "png"},
      "label": {"dtype": "int64"}}, "num_classes": 3, "class_names": ["a", "b", "c"]})";
  const auto evaluated =
      train_and_evaluate(dir, R"({"ktf.datasets.from_tfrecord": {"files": [")" + dir +
                                  R"(/data/train.tfrecord"], "validation_files": [")" + dir +
                                  R"(/data/valid.tfrecord"], "batch_size": 16}})");
  ASSERT_EQ(evaluated.size(), 60u);
  for (const std::string file : {"data/valid", "unlabelled"}) {
    auto r = host("-q --predict " + dir + "/run " + dir + "/" + file + ".tfrecord --predictions " +
                  dir + "/out.csv");
    ASSERT_EQ(r.exit_code, 0) << file << "\n" << r.output;
    const auto rows = read_csv(dir + "/out.csv");
    ASSERT_EQ(rows.size(), 61u) << file;
    EXPECT_EQ(top_classes(rows, {"a", "b", "c"}), evaluated) << file;
  }
  // A record without the input feature is named with its file and index.
  {
    ktf::TFRecordWriter w(dir + "/noimage.tfrecord");
    w.write(ktf::serialize_example({{"label", ktf::Feature::int64_list({1})}}));
  }
  auto r = host("--predict " + dir + "/run " + dir + "/noimage.tfrecord");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("TFRecord file '" + dir +
                          "/noimage.tfrecord': record 0: feature 'image' absent (the record has: "
                          "label)"),
            std::string::npos)
      << r.output;
}

// The MLP config shortened (one epoch of 30 batches, 5 validation batches): a 2 x 2 sweep of the
// learning rate and the batch size.
std::string sweep_command(const std::string& out, const std::string& extra = "") {
  return "-c " + std::string(KTF_SOURCE_DIR) + "/configs/fashion_mnist_mlp.json" +
         " --set /0/train_loop/ktf.train.KerasTrainLoop/num_epochs=1" +
         " --set /0/train_loop/ktf.train.KerasTrainLoop/steps_per_epoch=30" +
         " --set /0/train_loop/ktf.train.KerasTrainLoop/num_valid_steps=5" +
         " --set /0/train_loop/ktf.train.KerasTrainLoop/verbose=0" +
         " --sweep '/0/optimizer/tf.keras.optimizers.Adam/learning_rate=[0.001, 0.003]'" +
         " --sweep '/0/datasets/ktf.datasets.fashion.fashion_mnist.from_idx/batch_size=[32,64]'" +
         " -o " + out + " " + extra;
}

TEST(Sweep, ATwoByTwoGridTrainsFourRunsAndTablesThemBestFirst) {
  const std::string out = ktf::test::scratch_dir("workflow_sweep");
  fs::remove_all(out);
  auto r = host(sweep_command(out, "--sweep-jobs 2"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("sweep: 4 points in " + out + ", 2 at a time"), std::string::npos)
      << r.output;
  const auto rows = read_csv(out + "/sweep.csv");
  ASSERT_EQ(rows.size(), 5u) << r.output;
  const auto& h = rows[0];
  ASSERT_GE(h.size(), 6u);
  EXPECT_EQ(h[2], "/0/optimizer/tf.keras.optimizers.Adam/learning_rate");
  EXPECT_EQ(h[3], "/0/datasets/ktf.datasets.fashion.fashion_mnist.from_idx/batch_size");
  EXPECT_EQ(h[4], "status");
  const auto col = std::find(h.begin(), h.end(), "val_accuracy") - h.begin();
  ASSERT_LT(col, static_cast<long>(h.size())) << "no val_accuracy column";
  std::set<std::string> points;
  double previous = 2;
  for (size_t i = 1; i < rows.size(); ++i) {
    EXPECT_EQ(rows[i][0], std::to_string(i));  // rank
    EXPECT_EQ(rows[i][4], "done");
    points.insert(rows[i][2] + " " + rows[i][3]);
    const double acc = std::stod(rows[i][col]);
    EXPECT_LE(acc, previous);  // best first
    previous = acc;
    // Each point is a run of its own with its values in the resolved config.
    const fs::path run = fs::path(out) / rows[i].back();
    ASSERT_TRUE(fs::exists(run / "weights" / "cycle-1.pt")) << run;
    const ktf::Json cfg = ktf::Json::parse_file((run / "config.resolved.json").string());
    EXPECT_EQ(
        cell_text(
            cfg.as_array()[0].at("optimizer").at("tf.keras.optimizers.Adam").at("learning_rate")),
        rows[i][2]);
  }
  EXPECT_EQ(points, (std::set<std::string>{"0.001 32", "0.001 64", "0.003 32", "0.003 64"}));
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n') >= 8, true) << r.output;
  std::ifstream md(out + "/sweep.md");
  int md_rows = 0;
  for (std::string line; std::getline(md, line);) md_rows += line.rfind("| ", 0) == 0;
  EXPECT_EQ(md_rows, 5);  // the header and 4 points

  // Continued: a point marked pending trains again, the others are kept.
  ktf::Json manifest = ktf::Json::parse_file(out + "/sweep.json");
  auto& p3 = manifest["points"].as_array()[2];
  const std::string again = p3.at("dir").as_string();
  p3.set("status", "pending");
  std::ofstream(out + "/sweep.json") << manifest.dump(2);
  fs::remove_all(fs::path(out) / again);
  auto c = host(sweep_command(out));
  ASSERT_EQ(c.exit_code, 0) << c.output;
  EXPECT_NE(c.output.find("(3 done before)"), std::string::npos) << c.output;
  EXPECT_NE(c.output.find("sweep: point 3/4 " + again + ": done"), std::string::npos) << c.output;
  EXPECT_EQ(c.output.find("sweep: point 1/4"), std::string::npos) << c.output;
  EXPECT_EQ(read_csv(out + "/sweep.csv").size(), 5u);
}

TEST(Sweep, AnInterruptedSweepStopsItsPointsAndContinues) {
  const std::string out = ktf::test::scratch_dir("workflow_sweep_stop");
  fs::remove_all(out);
  // SIGTERM once the first point is done, however fast the machine: the running point stops,
  // the sweep exits 130.
  const std::string script = ktf::test::scratch_dir("workflow_sweep_stop_script") + "/stop.sh";
  std::ofstream(script) << "KTF_PLUGIN_PATH= " << KTF_HOST << " --plugins "
                        << ktf::test::plugin_dir() << " " << sweep_command(out) << " &\n"
                        << "pid=$!\n"
                        << "for i in $(seq 1200); do grep -q '\"done\"' " << out
                        << "/sweep.json 2>/dev/null && break; sleep 0.05; done\n"
                        << "kill -TERM $pid\nwait $pid\n";
  auto stopped = ktf::test::run_command("sh " + script);
  EXPECT_EQ(stopped.exit_code, 130) << stopped.output;
  EXPECT_NE(stopped.output.find("sweep interrupted: run the same command again to continue it"),
            std::string::npos)
      << stopped.output;
  int pending = 0;
  const ktf::Json manifest = ktf::Json::parse_file(out + "/sweep.json");
  for (const auto& p : manifest.at("points").as_array())
    pending += p.at("status") == ktf::Json("pending");
  EXPECT_GE(pending, 1);
  auto r = host(sweep_command(out));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto rows = read_csv(out + "/sweep.csv");
  ASSERT_EQ(rows.size(), 5u) << r.output;
  for (size_t i = 1; i < rows.size(); ++i) EXPECT_EQ(rows[i][4], "done");
}

TEST(Sweep, BadAxesAndPointsExit2BeforeAnythingTrains) {
  const std::string out = ktf::test::scratch_dir("workflow_sweep_bad");
  const std::string cfg = "-c " + std::string(KTF_SOURCE_DIR) + "/configs/fashion_mnist_mlp.json";
  for (const auto& [sweep, message] : std::vector<std::pair<std::string, std::string>>{
           {"'/0/loss=3'",
            "--sweep '/0/loss=3': the values must be a non-empty JSON list, got integer 3"},
           {"learning_rate", "expected POINTER=[v1, v2, ...]"},
           {"'/0/optimizer/tf.keras.optimizers.Adam/learnin_rate=[0.1]'",
            "--sweep point 1 (learnin_rate=0.1): "}}) {
    auto r = host(cfg + " --sweep " + sweep + " -o " + out);
    EXPECT_EQ(r.exit_code, 2) << sweep << "\n" << r.output;
    EXPECT_NE(r.output.find(message), std::string::npos) << r.output;
  }
  EXPECT_FALSE(fs::exists(out + "/sweep.json"));
  // A directory holding a sweep of another grid is not reused.
  const std::string other = ktf::test::scratch_dir("workflow_sweep_other");
  std::ofstream(other + "/sweep.json") << R"({"axes": [], "points": []})";
  auto r = host(cfg + " --sweep '/0/optimizer/tf.keras.optimizers.Adam/learning_rate=[0.1]' -o " +
                other);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("'" + other + "' holds another sweep (its sweep.json has other axes: []"),
            std::string::npos)
      << r.output;
}

}  // namespace
