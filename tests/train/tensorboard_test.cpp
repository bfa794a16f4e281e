// TensorBoard event files decode with the vendored protos and hold the logs.
#include <ktf/components.h>
#include <ktf/environment.h>
#include <ktf/tfrecord.h>

#include <algorithm>
#include <map>

#include "tensorboard/event.pb.h"
#include "train_fixtures.h"

namespace ktf::test {
namespace {
namespace fs = std::filesystem;

/// The one events file in `dir`, decoded.
std::vector<tensorflow::Event> read_events(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& f : fs::directory_iterator(dir))
    if (f.path().filename().string().rfind("events.out.tfevents.", 0) == 0)
      files.push_back(f.path());
  EXPECT_EQ(files.size(), 1u) << dir;
  std::vector<tensorflow::Event> events;
  if (files.empty()) return events;
  TFRecordReader reader(files[0].string());
  std::string record;
  while (reader.read(record)) {
    tensorflow::Event e;
    EXPECT_TRUE(e.ParseFromString(record));
    events.push_back(e);
  }
  return events;
}

/// tag -> [(step, value)] of the simple_value scalars.
std::map<std::string, std::vector<std::pair<int64_t, float>>> scalars(
    const std::vector<tensorflow::Event>& events) {
  std::map<std::string, std::vector<std::pair<int64_t, float>>> out;
  for (const auto& e : events)
    if (e.has_summary())
      for (const auto& v : e.summary().value())
        if (v.value_case() == tensorflow::Summary::Value::kSimpleValue)
          out[v.tag()].emplace_back(e.step(), v.simple_value());
  return out;
}

TEST(TensorBoard, EventFilesHoldTheLogs) {
  Harness h("tensorboard");
  h.add_metric(Json::parse(R"({"ktf.metrics.SparseCategoricalAccuracy": {}})"));
  auto loop = h.loop(Json::parse(R"({"ktf.train.KerasTrainLoop": {"num_epochs": 3, "callbacks": [
      {"tf.keras.callbacks.TensorBoard": {"log_dir": "tb", "histogram_freq": 2, "update_freq": 4,
                                          "profile_batch": [10, 20]}}]}})"));
  loop->run(h.ctx);
  auto epochs = h.epochs();
  ASSERT_EQ(epochs.size(), 3u);
  // profile_batch [10, 20]: batches 10 to 20 of the cycle's 24, across two epoch ends.
  EXPECT_NE(h.log.find("profiler: batches 10-20 of cycle 1: "), std::string::npos) << h.log;
  const fs::path profiles = fs::path(h.run_dir) / "tb" / "plugins" / "profile" / "cycle-1";
  std::vector<fs::path> traces;
  for (const auto& f : fs::directory_iterator(profiles)) traces.push_back(f.path());
  ASSERT_EQ(traces.size(), 1u);
  const std::string name = traces[0].filename().string();
  EXPECT_EQ(name.substr(name.size() - 14), ".pt.trace.json") << name;
  std::vector<std::string> steps;
  const Json trace = Json::parse_file(traces[0].string());
  for (const auto& e : trace.at("traceEvents").as_array())
    if (e.at("name").as_string().rfind("ProfilerStep#", 0) == 0)
      steps.push_back(e.at("name").as_string().substr(13));
  EXPECT_EQ(steps, (std::vector<std::string>{"10", "11", "12", "13", "14", "15", "16", "17", "18",
                                             "19", "20"}));

  auto train = read_events(fs::path(h.run_dir) / "tb" / "train");
  ASSERT_FALSE(train.empty());
  EXPECT_EQ(train[0].file_version(), "brain.Event:2");
  EXPECT_GT(train[0].wall_time(), 1.6e9);
  auto ts = scalars(train);
  for (const auto& [tag, key] : std::vector<std::pair<std::string, std::string>>{
           {"epoch_loss", "loss"}, {"epoch_accuracy", "accuracy"}, {"epoch_learning_rate", "lr"}}) {
    ASSERT_EQ(ts[tag].size(), 3u) << tag;
    for (int64_t e = 0; e < 3; ++e) {
      EXPECT_EQ(ts[tag][e].first, e) << tag;
      EXPECT_EQ(ts[tag][e].second, static_cast<float>(log_value(epochs[e].logs, key))) << tag;
    }
  }
  EXPECT_EQ(ts.count("epoch_val_loss"), 0u);
  // update_freq 4: batch-level scalars every 4 optimizer steps (24 steps in all).
  ASSERT_EQ(ts["batch_loss"].size(), 6u);
  EXPECT_EQ(ts["batch_loss"][0].first, 4);
  EXPECT_EQ(ts["batch_loss"][5].first, 24);

  auto valid = read_events(fs::path(h.run_dir) / "tb" / "validation");
  ASSERT_FALSE(valid.empty());
  EXPECT_EQ(valid[0].file_version(), "brain.Event:2");
  auto vs = scalars(valid);
  EXPECT_EQ(vs.size(), 2u);
  for (const auto& [tag, key] : std::vector<std::pair<std::string, std::string>>{
           {"epoch_loss", "val_loss"}, {"epoch_accuracy", "val_accuracy"}}) {
    ASSERT_EQ(vs[tag].size(), 3u) << tag;
    for (int64_t e = 0; e < 3; ++e) {
      EXPECT_EQ(vs[tag][e].first, e);
      EXPECT_EQ(vs[tag][e].second, static_cast<float>(log_value(epochs[e].logs, key))) << tag;
    }
  }

  // Histograms of every parameter at epochs 0 and 2 (histogram_freq 2).
  std::map<std::string, std::vector<int64_t>> histogram_steps;
  const tensorflow::HistogramProto* head_weight = nullptr;
  int64_t head_step = -1;
  for (const auto& e : train)
    for (const auto& v : e.summary().value())
      if (v.has_histo()) {
        histogram_steps[v.tag()].push_back(e.step());
        if (v.tag() == "head/weight") {
          head_weight = &v.histo();
          head_step = e.step();
        }
      }
  EXPECT_EQ(histogram_steps.size(), h.model->named_parameters().size());
  EXPECT_EQ(histogram_steps["base_model/layer1/resample/weight"], (std::vector<int64_t>{0, 2}));
  ASSERT_NE(head_weight, nullptr);
  EXPECT_EQ(head_step, 2);
  auto w = h.model->head->weight.detach().to(torch::kDouble);  // unchanged since epoch 2's end
  EXPECT_EQ(head_weight->num(), 16);
  EXPECT_DOUBLE_EQ(head_weight->min(), w.min().item<double>());
  EXPECT_DOUBLE_EQ(head_weight->max(), w.max().item<double>());
  EXPECT_NEAR(head_weight->sum(), w.sum().item<double>(), 1e-9);
  EXPECT_NEAR(head_weight->sum_squares(), w.square().sum().item<double>(), 1e-9);
  ASSERT_EQ(head_weight->bucket_size(), head_weight->bucket_limit_size());
  double counted = 0;
  for (double b : head_weight->bucket()) counted += b;
  EXPECT_EQ(counted, 16);
  EXPECT_DOUBLE_EQ(head_weight->bucket_limit(head_weight->bucket_limit_size() - 1),
                   head_weight->max());

  // write_graph (default true): the module structure as a text summary.
  bool structure = false;
  for (const auto& e : train)
    for (const auto& v : e.summary().value())
      if (v.tag() == "model_structure") {
        structure = true;
        EXPECT_EQ(v.metadata().plugin_data().plugin_name(), "text");
        ASSERT_EQ(v.tensor().string_val_size(), 1);
        EXPECT_NE(v.tensor().string_val(0).find("torch::nn::Linear"), std::string::npos);
      }
  EXPECT_TRUE(structure);
}

TEST(TensorBoard, ALaterCycleContinuesTheStepsOfTheEarlierOnes) {
  Harness h("tensorboard_cycles");
  h.ctx.epochs_before = 3;  // as the Environment sets them for a second cycle
  h.ctx.steps_before = 24;
  auto loop = h.loop(Json::parse(R"({"ktf.train.KerasTrainLoop": {"num_epochs": 2, "callbacks": [
      {"tf.keras.callbacks.TensorBoard": {"log_dir": "tb", "histogram_freq": 1, "update_freq": 4}}]}})"));
  loop->run(h.ctx);
  auto train = read_events(fs::path(h.run_dir) / "tb" / "train");
  auto ts = scalars(train);
  ASSERT_EQ(ts["epoch_loss"].size(), 2u);
  EXPECT_EQ(ts["epoch_loss"][0].first, 3);
  EXPECT_EQ(ts["epoch_loss"][1].first, 4);
  ASSERT_EQ(ts["batch_loss"].size(), 4u);  // 16 steps in this cycle, every 4th
  EXPECT_EQ(ts["batch_loss"][0].first, 28);
  EXPECT_EQ(ts["batch_loss"][3].first, 40);
  std::vector<int64_t> histogram_steps;
  for (const auto& e : train)
    for (const auto& v : e.summary().value())
      if (v.has_histo() && v.tag() == "head/weight") histogram_steps.push_back(e.step());
  EXPECT_EQ(histogram_steps, (std::vector<int64_t>{3, 4}));
  auto vs = scalars(read_events(fs::path(h.run_dir) / "tb" / "validation"));
  ASSERT_EQ(vs["epoch_loss"].size(), 2u);
  EXPECT_EQ(vs["epoch_loss"][0].first, 3);
}

TEST(TensorBoard, TwoCycleRunWritesOneContinuousCurve) {
  // The Environment numbers the second cycle's epochs after the first's, in a second file.
  std::string run_dir = scratch_dir("train/tensorboard_env");
  RunOptions options;
  options.quiet = true;
  options.threads = 1;
  options.output_dir = run_dir;
  Environment env(options, plugins());
  env.run(Json::parse(R"([
    {"datasets": {"ktf.datasets.synthetic": {"num_examples": 64, "num_valid": 32,
                                             "input_shape": [4], "num_classes": 2, "batch_size": 16}},
     "model": {"ktf.networks.MLP": {"num_outputs": 2, "hidden": [4]}},
     "loss": {"ktf.losses.CrossEntropy": {"from_logits": true}},
     "train_loop": {"ktf.train.KerasTrainLoop": {"num_epochs": 3, "verbose": 0, "callbacks": [
         {"tf.keras.callbacks.TensorBoard": {"log_dir": "tb", "update_freq": 2}}]}}},
    {"train_loop": {"ktf.train.KerasTrainLoop": {"num_epochs": 2, "verbose": 0, "callbacks": [
         {"tf.keras.callbacks.TensorBoard": {"log_dir": "tb", "update_freq": 2}}]}}}
  ])"));
  std::vector<fs::path> files;
  for (const auto& f : fs::directory_iterator(fs::path(run_dir) / "tb" / "train"))
    files.push_back(f.path());
  ASSERT_EQ(files.size(), 2u);
  std::vector<int64_t> epoch_steps, batch_steps;
  for (const auto& file : files) {
    TFRecordReader reader(file.string());
    std::string record;
    while (reader.read(record)) {
      tensorflow::Event e;
      ASSERT_TRUE(e.ParseFromString(record));
      for (const auto& v : e.summary().value()) {
        if (v.tag() == "epoch_loss") epoch_steps.push_back(e.step());
        if (v.tag() == "batch_loss") batch_steps.push_back(e.step());
      }
    }
  }
  std::sort(epoch_steps.begin(), epoch_steps.end());
  std::sort(batch_steps.begin(), batch_steps.end());
  EXPECT_EQ(epoch_steps, (std::vector<int64_t>{0, 1, 2, 3, 4}));
  // 4 steps per epoch, 20 in all, written every 2nd.
  EXPECT_EQ(batch_steps, (std::vector<int64_t>{2, 4, 6, 8, 10, 12, 14, 16, 18, 20}));
}

TEST(TensorBoard, WritesInputImages) {
  Harness h("tensorboard_images");
  auto x = torch::rand({5, 1, 6, 4});
  h.ctx.valid_data = std::make_shared<TensorStream>(x, torch::zeros({5}, torch::kLong), 5);
  auto cb = build<Callback>(Json::parse(R"({"ktf.callbacks.TensorBoard": {
      "log_dir": "tb", "write_images": true, "max_images": 2, "write_graph": false}})"),
                            &h.builder);
  cb->on_train_begin(h.ctx);
  cb->on_train_end(h.ctx, {});
  auto events = read_events(fs::path(h.run_dir) / "tb" / "train");
  std::vector<std::string> tags;
  for (const auto& e : events)
    for (const auto& v : e.summary().value())
      if (v.has_image()) {
        tags.push_back(v.tag());
        EXPECT_EQ(v.image().height(), 6);
        EXPECT_EQ(v.image().width(), 4);
        EXPECT_EQ(v.image().colorspace(), 1);
        EXPECT_EQ(v.image().encoded_image_string().substr(0, 4), "\x89PNG");
      }
  EXPECT_EQ(tags, (std::vector<std::string>{"input_images/image/0", "input_images/image/1"}));
}

TEST(TensorBoard, BadProfileBatchIsAnError) {
  Harness h("tensorboard_bad_profile");
  for (const auto& [value, message] : std::vector<std::pair<std::string, std::string>>{
           {R"("2,x")",
            R"(profile_batch must be N, [first, last] or "first,last", got string "2,x")"},
           {"[5, 2]", R"(with 1 <= first <= last (0 = none), got array [5, 2])"}}) {
    try {
      build<Callback>(
          Json::parse(R"({"ktf.callbacks.TensorBoard": {"profile_batch": )" + value + "}}"),
          &h.builder);
      ADD_FAILURE() << value << ": no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
    }
  }
  // 0, "0,0" and [] profile nothing.
  for (const char* none : {"0", R"("0,0")", "[]"})
    EXPECT_NO_THROW(build<Callback>(
        Json::parse(std::string(R"({"ktf.callbacks.TensorBoard": {"profile_batch": )") + none +
                    "}}"),
        &h.builder))
        << none;
}

TEST(TensorBoard, BadUpdateFreqIsAnError) {
  Harness h("tensorboard_bad");
  try {
    build<Callback>(Json::parse(R"({"ktf.callbacks.TensorBoard": {"update_freq": "often"}})"),
                    &h.builder);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(
                  "ktf.callbacks.TensorBoard \u203a update_freq: 'often' is not one of 'epoch', "
                  "'batch'"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace ktf::test
