// Cross-checks against TensorFlow and TensorBoard themselves (PyPI's tensorflow-cpu in the tests'
// virtual environment, installed by scripts/setup.sh with KTF_SETUP_TESTS=1; tf_crosscheck.py is
// their side): random tf.train.Examples written by TensorFlow are read by ktf value for value,
// random Examples written by ktf are read by TensorFlow value for value, the shards of
// `ktf-host --convert` are parsed by tf.io.parse_single_example, TensorBoard reads every
// scalar of a run's event files as metrics.jsonl has it, and its hparams plugin reads the run's
// HParams session: the resolved config's values and each cycle's final logs; TensorBoard's
// PyTorch profiler plugin (torch-tb-profiler) reads the profiled batches' Chrome traces.
#include <gtest/gtest.h>
#include <ktf/example.h>
#include <ktf/json.h>
#include <ktf/tfrecord.h>
#include <zlib.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <sstream>

#include "plugins_fixture.h"

namespace ktf::test {
namespace {

namespace fs = std::filesystem;

CommandResult python(const std::string& args) {
  return run_command(std::string(KTF_TF_PYTHON) + " " + KTF_SOURCE_DIR +
                     "/tests/crosscheck/tf_crosscheck.py " + args);
}

std::string hex(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

uint32_t bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}

/// A feature as tf_crosscheck.py encodes it: {"kind": ..., "values": [...]}, exact.
Json encode(const Feature& f) {
  Json values = Json::array();
  const char* kind = "none";
  switch (f.kind) {
    case Feature::Bytes:
      kind = "bytes";
      for (const auto& v : f.bytes) values.as_array().push_back(Json(hex(v)));
      break;
    case Feature::Float:
      kind = "float";
      for (float v : f.floats) values.as_array().push_back(Json(static_cast<int64_t>(bits(v))));
      break;
    case Feature::Int64:
      kind = "int64";
      for (int64_t v : f.ints) values.as_array().push_back(Json(std::to_string(v)));
      break;
    case Feature::None:
      break;
  }
  return Json::object({{"kind", kind}, {"values", values}});
}

Json encode(const std::map<std::string, Feature>& example) {
  Json out = Json::object();
  for (const auto& [key, f] : example) out.set(key, encode(f));
  return out;
}

TEST(TensorFlowCrossCheck, ExamplesTensorFlowWroteAreReadValueForValue) {
  auto dir = scratch_dir("tf_written");
  auto w = python("write " + dir + " 7");
  ASSERT_EQ(w.exit_code, 0) << w.output;
  Json expected = Json::parse_file(dir + "/expected.json");
  ASSERT_EQ(expected.size(), 60u);
  for (const char* name : {"plain.tfrecord", "gzip.tfrecord"}) {
    TFRecordReader reader(dir + "/" + name);
    std::string record;
    size_t i = 0, features = 0;
    for (; reader.read(record); ++i) {
      ASSERT_LT(i, expected.size()) << name;
      auto example = parse_example(record, name);
      EXPECT_EQ(encode(example).dump(), expected.as_array()[i].dump()) << name << " record " << i;
      features += example.size();
    }
    EXPECT_EQ(i, expected.size()) << name;
    EXPECT_GT(features, 100u) << "the random examples hold features";
  }
}

/// Random features of every kind, with the edge values of each.
std::map<std::string, Feature> random_example(std::mt19937_64& rng) {
  std::map<std::string, Feature> out;
  const int n = static_cast<int>(rng() % 6);
  for (int k = 0; k < n; ++k) {
    const size_t len = std::vector<size_t>{0, 1, 3, 50}[rng() % 4];
    Feature f;
    switch (rng() % 4) {
      case 0: {
        std::vector<std::string> v(len);
        for (auto& s : v) {
          s.resize(rng() % 40);
          for (auto& c : s) c = static_cast<char>(rng());
        }
        f = Feature::bytes_list(v);
        break;
      }
      case 1: {
        std::vector<float> v(len);
        for (auto& x : v) {
          uint32_t b = static_cast<uint32_t>(rng());
          if (rng() % 8 == 0) b |= 0x7f800000u;  // infinities and NaNs too
          // A signalling NaN becomes quiet in Python's float (a double): keep NaNs quiet.
          if ((b & 0x7f800000u) == 0x7f800000u && (b & 0x007fffffu)) b |= 0x00400000u;
          std::memcpy(&x, &b, sizeof x);
        }
        f = Feature::float_list(v);
        break;
      }
      case 2: {
        std::vector<int64_t> v(len);
        for (auto& x : v) x = static_cast<int64_t>(rng());
        if (!v.empty()) v[0] = rng() % 2 ? INT64_MIN : INT64_MAX;
        f = Feature::int64_list(v);
        break;
      }
      default:
        break;  // present, no list: kind None
    }
    out["f" + std::to_string(rng() % 10)] = f;
  }
  return out;
}

TEST(TensorFlowCrossCheck, ExamplesKtfWroteAreReadByTensorFlowValueForValue) {
  auto dir = scratch_dir("ktf_written");
  std::mt19937_64 rng(11);
  Json expected = Json::array();
  {
    TFRecordWriter plain(dir + "/plain.tfrecord"), gzip(dir + "/gzip.tfrecord", true);
    for (int i = 0; i < 80; ++i) {
      auto example = random_example(rng);
      plain.write(serialize_example(example));
      gzip.write(serialize_example(example));
      expected.as_array().push_back(encode(example));
    }
  }
  std::ofstream(dir + "/expected.json") << expected.dump();
  auto r = python("read-records " + dir);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("ok: 80 records x 2 files"), std::string::npos) << r.output;
}

CommandResult host(const std::string& args) {
  return run_command(std::string("KTF_PLUGIN_PATH= ") + KTF_HOST + " --plugins " + plugin_dir() +
                     " " + args);
}

TEST(TensorFlowCrossCheck, ConvertedShardsParseInTensorFlow) {
  auto dir = scratch_dir("tf_shards");
  const std::string config = dir + "/c.json";
  std::ofstream(config) << R"([{"datasets": {"ktf.datasets.from_idx": {
      "train_images": "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz",
      "train_labels": "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz",
      "validation": 0.1, "seed": 3}},
    "model": {"ktf.networks.MLP": {"num_outputs": 10}}, "loss": {"ktf.losses.CrossEntropy": {}}}])";
  auto c = host("-c " + config + " --convert " + dir + "/shards --shards 3");
  ASSERT_EQ(c.exit_code, 0) << c.output;
  // What ktf stored: the same dataset's raw examples.
  auto r = python("read-shards " + dir + "/shards");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::map<std::string, std::vector<double>> got;
  std::istringstream lines(r.output);
  for (std::string split; lines >> split;) {
    double records, labels, pixels;
    lines >> records >> labels >> pixels;
    got[split] = {records, labels, pixels};
  }
  ASSERT_EQ(got.size(), 2u) << r.output;
  // The t10k files: 10000 images of 784 uint8 pixels; 10% held out.
  EXPECT_EQ(got["train"][0] + got["valid"][0], 10000) << r.output;
  EXPECT_EQ(got["valid"][0], 1000) << r.output;
  // Sums over both splits are those of the files (labels 0..9, 1000 of each: 45000).
  EXPECT_EQ(got["train"][1] + got["valid"][1], 45000) << r.output;
  // And the pixels: every byte after the IDX header, summed.
  gzFile gz = gzopen("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz", "rb");
  ASSERT_NE(gz, nullptr);
  std::string idx;
  char buf[1 << 16];
  for (int n; (n = gzread(gz, buf, sizeof buf)) > 0;) idx.append(buf, static_cast<size_t>(n));
  gzclose(gz);
  ASSERT_EQ(idx.size(), 16u + 10000u * 784u);
  double pixels = 0;
  for (size_t i = 16; i < idx.size(); ++i) pixels += static_cast<unsigned char>(idx[i]);
  EXPECT_EQ(got["train"][2] + got["valid"][2], pixels) << r.output;
}

TEST(TensorFlowCrossCheck, TensorBoardReadsEveryScalarAsMetricsJsonlHasIt) {
  auto dir = scratch_dir("tf_events");
  const std::string config = dir + "/c.json";
  std::ofstream(config) << R"([{"datasets": {"ktf.datasets.synthetic": {"num_examples": 96,
      "num_valid": 32, "input_shape": [6], "num_classes": 3, "batch_size": 16}},
    "model": {"ktf.networks.MLP": {"num_outputs": 3, "hidden": [8]}},
    "loss": {"ktf.losses.CrossEntropy": {}},
    "metrics": [{"tf.keras.metrics.SparseCategoricalAccuracy": {}}],
    "train_loop": {"ktf.train.KerasTrainLoop": {"num_epochs": 3, "verbose": 0, "callbacks": [
        {"ktf.callbacks.TensorBoard": {"log_dir": "tb", "histogram_freq": 1}}]}}}])";
  const std::string run = dir + "/run";
  auto t = host("-c " + config + " -o " + run);
  ASSERT_EQ(t.exit_code, 0) << t.output;
  auto r = python("read-events " + run + "/tb");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::map<std::string, double> scalars;  // "<run> <tag> <step>" -> value
  std::istringstream lines(r.output);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream f(line);
    std::string which, tag;
    int64_t step;
    double value;
    if (f >> which >> tag >> step >> value)
      scalars[which + " " + tag + " " + std::to_string(step)] = value;
  }
  std::ifstream metrics(run + "/metrics.jsonl");
  int epochs = 0;
  for (std::string line; std::getline(metrics, line); ++epochs) {
    Json m = Json::parse(line);
    const std::string step = std::to_string(epochs);
    for (const auto& [key, v] : {std::pair<std::string, std::string>{"train epoch_loss", "loss"},
                                 {"validation epoch_loss", "val_loss"},
                                 {"train epoch_accuracy", "accuracy"},
                                 {"validation epoch_accuracy", "val_accuracy"}}) {
      auto it = scalars.find(key + " " + step);
      ASSERT_NE(it, scalars.end()) << key << " at step " << step << " not read by TensorBoard:\n"
                                   << r.output;
      EXPECT_FLOAT_EQ(static_cast<float>(it->second), static_cast<float>(m.at(v).as_number()))
          << key << " " << step;
    }
  }
  EXPECT_EQ(epochs, 3);
}

TEST(TensorFlowCrossCheck, TensorBoardReadsTheHParamsSessionWithTheConfigAndFinalMetrics) {
  auto dir = scratch_dir("tf_hparams");
  const std::string config = dir + "/c.json";
  std::ofstream(config) << R"([{"datasets": {"ktf.datasets.synthetic": {"num_examples": 64,
      "num_valid": 32, "input_shape": [6], "num_classes": 3, "batch_size": 16}},
    "model": {"ktf.networks.MLP": {"num_outputs": 3, "hidden": [8]}},
    "loss": {"ktf.losses.CrossEntropy": {}},
    "metrics": [{"tf.keras.metrics.SparseCategoricalAccuracy": {}}],
    "train_loop": {"ktf.train.KerasTrainLoop": {"num_epochs": 2, "verbose": 0, "callbacks": [
        {"ktf.callbacks.TensorBoard": {"log_dir": "tb"}}]}}},
    {"optimizer": {"ktf.optimizers.SGD": {"learning_rate": 0.01}}}])";
  const std::string run = dir + "/run";
  auto t = host("-c " + config + " -o " + run);
  ASSERT_EQ(t.exit_code, 0) << t.output;
  auto r = python("read-hparams " + run + "/tb");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::map<std::string, std::pair<std::string, Json>> hparams;  // name -> kind, value
  std::map<std::string, double> finals;                         // "<tag> <step>" -> value
  int starts = 0;
  std::string end;
  std::istringstream lines(r.output);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream f(line);
    std::string what;
    f >> what;
    if (what == "start") {
      ++starts;
    } else if (what == "hparam") {
      std::string name, kind, value;
      f >> name >> kind;
      std::getline(f, value);
      hparams[name] = {kind, Json::parse(value)};
    } else if (what == "end") {
      std::string which;
      f >> which >> end;
      EXPECT_EQ(which, ".") << line;
    } else if (what == "final") {
      std::string which, tag;
      int64_t step;
      double value;
      f >> which >> tag >> step >> value;
      EXPECT_EQ(which, ".") << line;
      finals[tag + " " + std::to_string(step)] = value;
    }
  }
  EXPECT_EQ(starts, 1) << r.output;
  EXPECT_EQ(end, "1") << "STATUS_SUCCESS\n" << r.output;
  // Every value of the resolved config but its nulls, by JSON Pointer, of its JSON type.
  const Json resolved = Json::parse_file(run + "/config.resolved.json");
  size_t leaves = 0;
  std::function<void(const Json&, const std::string&)> visit = [&](const Json& v,
                                                                   const std::string& at) {
    if (v.is_object() && v.size() > 0) {
      for (const auto& [k, x] : v.as_object()) visit(x, at + "/" + k);  // no '/' or '~' in keys
      return;
    }
    if (v.is_array() && v.size() > 0) {
      for (size_t i = 0; i < v.size(); ++i) visit(v.as_array()[i], at + "/" + std::to_string(i));
      return;
    }
    if (v.is_null()) return;
    ++leaves;
    auto it = hparams.find(at);
    ASSERT_NE(it, hparams.end()) << at << " not read by TensorBoard:\n" << r.output;
    if (v.is_number()) {
      EXPECT_EQ(it->second.first, "number_value") << at;
      EXPECT_EQ(it->second.second.as_number(), v.as_number()) << at;
    } else if (v.is_bool()) {
      EXPECT_EQ(it->second.first, "bool_value") << at;
      EXPECT_EQ(it->second.second, v) << at;
    } else if (v.is_string()) {
      EXPECT_EQ(it->second.first, "string_value") << at;
      EXPECT_EQ(it->second.second, v) << at;
    }
  };
  visit(resolved, "");
  EXPECT_EQ(hparams.size(), leaves) << r.output;
  EXPECT_EQ(hparams.at("/1/optimizer/ktf.optimizers.SGD/learning_rate").second.as_number(), 0.01);
  // Each cycle's final logs at the run's epoch count: metrics.jsonl's last record of the cycle.
  std::map<int64_t, Json> last;
  std::ifstream metrics(run + "/metrics.jsonl");
  int64_t epochs = 0, cycle_end[3] = {0, 0, 0};
  for (std::string line; std::getline(metrics, line);) {
    Json m = Json::parse(line);
    last[m.at("cycle").as_int()] = m;
    cycle_end[m.at("cycle").as_int()] = epochs++;
  }
  ASSERT_EQ(last.size(), 2u);
  for (int64_t c = 1; c <= 2; ++c)
    for (const char* key : {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}) {
      auto it = finals.find(std::string("final_") + key + " " + std::to_string(cycle_end[c]));
      ASSERT_NE(it, finals.end()) << "final_" << key << " of cycle " << c << ":\n" << r.output;
      EXPECT_FLOAT_EQ(static_cast<float>(it->second),
                      static_cast<float>(last[c].at(key).as_number()))
          << key << " of cycle " << c;
    }
}

TEST(TensorFlowCrossCheck, TensorBoardsPyTorchProfilerPluginReadsTheProfiledBatches) {
  auto dir = scratch_dir("tf_profile");
  const std::string config = dir + "/c.json";
  // 8 training batches an epoch; TensorBoard profiles batches 2-3, the Profiler 7-10, across the
  // end of epoch 1 (its validation is left out).
  std::ofstream(config) << R"([{"datasets": {"ktf.datasets.synthetic": {"num_examples": 128,
      "num_valid": 32, "input_shape": [6], "num_classes": 3, "batch_size": 16}},
    "model": {"ktf.networks.MLP": {"num_outputs": 3, "hidden": [8]}},
    "loss": {"ktf.losses.CrossEntropy": {}},
    "train_loop": {"ktf.train.KerasTrainLoop": {"num_epochs": 2, "verbose": 0, "callbacks": [
        {"ktf.callbacks.TensorBoard": {"log_dir": "tb", "profile_batch": "2,3"}},
        {"ktf.callbacks.Profiler": {"batches": [7, 10], "log_dir": "prof"}}]}}}])";
  const std::string run = dir + "/run";
  auto t = host("-c " + config + " -o " + run);
  ASSERT_EQ(t.exit_code, 0) << t.output;
  EXPECT_NE(t.output.find("profiler: batches 2-3 of cycle 1: "), std::string::npos) << t.output;
  EXPECT_NE(t.output.find("profiler: batches 7-10 of cycle 1: "), std::string::npos) << t.output;
  for (const auto& [log_dir, steps] :
       {std::pair<std::string, std::string>{"tb", "2,3"}, {"prof", "7,8,9,10"}}) {
    const fs::path profile_dir = fs::path(run) / log_dir / "plugins" / "profile" / "cycle-1";
    std::vector<fs::path> traces;
    for (const auto& f : fs::directory_iterator(profile_dir)) traces.push_back(f.path());
    ASSERT_EQ(traces.size(), 1u) << profile_dir;
    // Chrome trace JSON: a traceEvents list of complete ("X") events with microsecond times.
    Json trace = Json::parse_file(traces[0].string());
    ASSERT_TRUE(trace.at("traceEvents").is_array());
    int ops = 0;
    for (const auto& e : trace.at("traceEvents").as_array())
      if (e.at("ph").as_string() == "X") {
        EXPECT_GE(e.at("dur").as_number(), 0);
        EXPECT_GT(e.at("ts").as_number(), 1.7e15);  // wall-clock microseconds, after 2023
        ops += e.at("cat").as_string() == "cpu_op";
      }
    EXPECT_GT(ops, 20) << traces[0];
    auto r = python("read-profile " + (fs::path(run) / log_dir).string());
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("run plugins/profile/cycle-1 profiles 1 views overall,operator"),
              std::string::npos)
        << r.output;
    EXPECT_NE(r.output.find(" steps " + steps + "\n"), std::string::npos) << r.output;
    // The MLP's forward, backward and the optimizer's operators, as the plugin groups them.
    for (const char* op : {" aten::addmm ", " aten::relu ", " AddmmBackward0 ", " aten::add_ "})
      EXPECT_NE(r.output.find(op), std::string::npos) << op << " in\n" << r.output;
  }
}

}  // namespace
}  // namespace ktf::test
