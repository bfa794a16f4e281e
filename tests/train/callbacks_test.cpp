// Callbacks: EarlyStopping, ModelCheckpoint, CSVLogger, JSONLogger, TerminateOnNaN,
// LearningRateLogger, ProgressBar.
#include <ktf/components.h>

#include <cmath>
#include <set>

#include "train_fixtures.h"

namespace ktf::test {
namespace {

std::shared_ptr<Callback> callback(Harness& h, const char* json) {
  return build<Callback>(Json::parse(json), &h.builder);
}

/// Feeds `values` of `key` as epoch logs; returns the epochs run before stop_training.
int64_t drive(Harness& h, Callback& cb, const std::string& key, const std::vector<double>& values) {
  h.ctx.stop_training = false;
  cb.on_train_begin(h.ctx);
  int64_t epoch = 0;
  for (; epoch < static_cast<int64_t>(values.size()); ++epoch) {
    h.ctx.epoch = epoch;
    cb.on_epoch_begin(h.ctx, epoch);
    cb.on_epoch_end(h.ctx, epoch, {{"loss", 1.0}, {key, values[epoch]}});
    if (h.ctx.stop_training) return epoch + 1;
  }
  cb.on_train_end(h.ctx, {});
  return epoch;
}

TEST(EarlyStopping, StopsWhenPatienceRunsOut) {
  Harness h("early_patience");
  auto cb = callback(h, R"({"tf.keras.callbacks.EarlyStopping": {"patience": 2}})");
  // best 0.9 at epoch 2; epochs 3 and 4 do not improve -> stop after epoch 4.
  EXPECT_EQ(drive(h, *cb, "val_loss", {1.0, 0.9, 0.95, 0.92, 0.91, 0.5}), 4);
  EXPECT_NE(h.log.find("Epoch 4: early stopping"), std::string::npos) << h.log;
  // The same callback restarts cleanly for the next run.
  EXPECT_EQ(drive(h, *cb, "val_loss", {1.0, 0.9, 0.8, 0.7}), 4);
}

TEST(EarlyStopping, MinDeltaAndModes) {
  Harness h("early_modes");
  auto delta =
      callback(h, R"({"ktf.callbacks.EarlyStopping": {"patience": 1, "min_delta": 0.05}})");
  // 0.97 is not 0.05 better than 1.0 -> stop at epoch 2.
  EXPECT_EQ(drive(h, *delta, "val_loss", {1.0, 0.97, 0.5}), 2);
  auto acc =
      callback(h, R"({"ktf.callbacks.EarlyStopping": {"monitor": "val_accuracy", "patience": 1}})");
  // auto mode maximises accuracy: 0.6, 0.7 improve, 0.65 does not.
  EXPECT_EQ(drive(h, *acc, "val_accuracy", {0.6, 0.7, 0.65, 0.9}), 3);
  auto forced = callback(h, R"({"ktf.callbacks.EarlyStopping": {"monitor": "val_accuracy",
                                  "mode": "min", "patience": 0}})");
  EXPECT_EQ(drive(h, *forced, "val_accuracy", {0.6, 0.7}), 2);
  auto baseline =
      callback(h, R"({"ktf.callbacks.EarlyStopping": {"patience": 2, "baseline": 0.5}})");
  // An epoch that does not beat the baseline does not reset the patience: without the baseline
  // this sequence would stop one epoch later.
  EXPECT_EQ(drive(h, *baseline, "val_loss", {1.0, 1.1, 1.2}), 2);
  auto plain = callback(h, R"({"ktf.callbacks.EarlyStopping": {"patience": 2}})");
  EXPECT_EQ(drive(h, *plain, "val_loss", {1.0, 1.1, 1.2}), 3);
}

TEST(EarlyStopping, RestoresBestWeights) {
  Harness h("early_restore");
  auto cb = callback(
      h, R"({"ktf.callbacks.EarlyStopping": {"patience": 1, "restore_best_weights": true}})");
  cb->on_train_begin(h.ctx);
  std::vector<double> losses{1.0, 0.5, 0.7};
  torch::Tensor best;
  for (int64_t e = 0; e < 3; ++e) {
    {
      torch::NoGradGuard g;
      h.model->head->weight.fill_(static_cast<double>(e));
    }
    if (e == 1) best = h.model->head->weight.detach().clone();
    cb->on_epoch_end(h.ctx, e, {{"val_loss", losses[e]}});
  }
  EXPECT_TRUE(h.ctx.stop_training);
  EXPECT_TRUE(torch::equal(h.model->head->weight, best));
}

TEST(EarlyStopping, StopsTheLoop) {
  Harness h("early_in_loop");
  // Training loss falls every epoch, so in "max" mode it never improves after epoch 1.
  auto loop = h.loop(Json::parse(R"({"ktf.train.KerasTrainLoop": {"num_epochs": 10, "callbacks": [
      {"ktf.callbacks.EarlyStopping": {"monitor": "loss", "mode": "max", "patience": 2}}]}})"));
  loop->run(h.ctx);
  EXPECT_EQ(h.epochs().size(), 3u);
}

TEST(ModelCheckpoint, SaveBestOnlyWritesOnImprovement) {
  Harness h("checkpoint_best");
  auto cb = callback(h, R"({"tf.keras.callbacks.ModelCheckpoint": {
      "filepath": "ckpt/model-{epoch:02d}-{val_loss:.2f}.pt", "save_best_only": true}})");
  drive(h, *cb, "val_loss", {1.0, 0.8, 0.9, 0.7, 0.75});
  std::set<std::string> files;
  for (const auto& f :
       std::filesystem::directory_iterator(std::filesystem::path(h.run_dir) / "ckpt"))
    files.insert(f.path().filename().string());
  EXPECT_EQ(files,
            (std::set<std::string>{"model-01-1.00.pt", "model-02-0.80.pt", "model-04-0.70.pt"}));
  // The file holds the model: load it into a fresh one.
  auto fresh = std::make_shared<ToyNet>();
  auto as_module = std::static_pointer_cast<torch::nn::Module>(fresh);
  torch::load(as_module, (std::filesystem::path(h.run_dir) / "ckpt" / "model-04-0.70.pt").string());
  EXPECT_TRUE(torch::equal(fresh->head->weight, h.model->head->weight));
}

TEST(ModelCheckpoint, EveryEpochAndMaxMode) {
  Harness h("checkpoint_all");
  auto all = callback(h, R"({"ktf.callbacks.ModelCheckpoint": {"filepath": "all/e{epoch}.pt"}})");
  drive(h, *all, "val_loss", {1.0, 2.0, 3.0});
  for (const char* f : {"e1.pt", "e2.pt", "e3.pt"})
    EXPECT_TRUE(std::filesystem::exists(std::filesystem::path(h.run_dir) / "all" / f)) << f;
  auto best = callback(h, R"({"ktf.callbacks.ModelCheckpoint": {"filepath": "best-{epoch}.pt",
      "monitor": "val_accuracy", "save_best_only": true, "verbose": 1}})");
  drive(h, *best, "val_accuracy", {0.5, 0.4, 0.6});  // auto mode maximises accuracy
  EXPECT_TRUE(std::filesystem::exists(std::filesystem::path(h.run_dir) / "best-1.pt"));
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::path(h.run_dir) / "best-2.pt"));
  EXPECT_TRUE(std::filesystem::exists(std::filesystem::path(h.run_dir) / "best-3.pt"));
  EXPECT_NE(h.log.find("Epoch 2: val_accuracy did not improve from 0.5"), std::string::npos)
      << h.log;
  EXPECT_NE(h.log.find("Epoch 3: val_accuracy improved from 0.5 to 0.6, saving model to "),
            std::string::npos)
      << h.log;
}

TEST(ModelCheckpoint, BadPatternsAreErrors) {
  Harness h("checkpoint_bad");
  EXPECT_THROW(
      callback(h, R"({"ktf.callbacks.ModelCheckpoint": {"filepath": "m-{epoch:02x}.pt"}})"), Error);
  auto cb = callback(h, R"({"ktf.callbacks.ModelCheckpoint": {"filepath": "m-{val_acc:.2f}.pt"}})");
  try {
    drive(h, *cb, "val_loss", {1.0});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("names '{val_acc}', which is not in the logs"),
              std::string::npos)
        << e.what();
  }
}

TEST(Loggers, CsvAndJsonLinesMatchTheLogs) {
  Harness h("loggers");
  h.add_metric(Json::parse(R"({"ktf.metrics.SparseCategoricalAccuracy": {}})"));
  auto loop = h.loop(Json::parse(R"({"ktf.train.KerasTrainLoop": {"num_epochs": 3, "valid_freq": 2,
      "callbacks": [{"tf.keras.callbacks.CSVLogger": {"filename": "logs/train.csv"}},
                    {"ktf.callbacks.JSONLogger": {"filename": "train.jsonl"}}]}})"));
  loop->run(h.ctx);
  auto epochs = h.epochs();
  ASSERT_EQ(epochs.size(), 3u);

  auto csv = split_lines(read_text(std::filesystem::path(h.run_dir) / "logs" / "train.csv"));
  ASSERT_EQ(csv.size(), 4u);
  EXPECT_EQ(csv[0], "epoch,accuracy,loss,lr,val_accuracy,val_loss");
  for (size_t e = 0; e < 3; ++e) {
    std::vector<std::string> cells;
    std::stringstream row(csv[e + 1]);
    for (std::string cell; std::getline(row, cell, ',');) cells.push_back(cell);
    ASSERT_EQ(cells.size(), 6u) << csv[e + 1];
    EXPECT_EQ(cells[0], std::to_string(e));
    const char* keys[] = {"accuracy", "loss", "lr", "val_accuracy", "val_loss"};
    for (size_t k = 0; k < 5; ++k) {
      auto v = find_log(epochs[e].logs, keys[k]);
      if (v)
        EXPECT_EQ(std::strtod(cells[k + 1].c_str(), nullptr), *v) << keys[k] << " epoch " << e;
      else
        EXPECT_EQ(cells[k + 1], "NA") << keys[k] << " epoch " << e;
    }
  }
  EXPECT_EQ(csv[1].substr(csv[1].size() - 6), ",NA,NA");  // no validation after epoch 1

  auto jsonl = split_lines(read_text(std::filesystem::path(h.run_dir) / "train.jsonl"));
  ASSERT_EQ(jsonl.size(), 3u);
  for (size_t e = 0; e < 3; ++e) {
    Json line = Json::parse(jsonl[e]);
    EXPECT_EQ(line.at("epoch").as_int(), static_cast<int64_t>(e + 1));
    EXPECT_EQ(line.at("cycle").as_int(), 1);
    // metrics.jsonl records add the pass's timing (train_seconds, time_data, ...) to the callback
    // logs.
    Logs logged;
    for (const auto& [k, v] : epochs[e].logs)
      if (k.rfind("train_", 0) != 0 && k.rfind("time_", 0) != 0 && k != "samples_per_second" &&
          k != "first_step_after_start")
        logged.emplace_back(k, v);
    EXPECT_EQ(line.size(), 2 + logged.size());
    for (const auto& [k, v] : logged) EXPECT_EQ(line.at(k).as_number(), v) << k;
  }
}

// A loss that turns NaN at its third call.
struct NaNAtThirdCall : Loss {
  int calls = 0;
  torch::Tensor compute(const torch::Tensor& out, const torch::Tensor& target) override {
    auto l = torch::nn::functional::cross_entropy(out, target);
    return ++calls >= 3 ? l * std::nan("") : l;
  }
};

TEST(TerminateOnNaN, StopsAtTheFirstNaNBatch) {
  Harness h("nan");
  h.ctx.loss = std::make_shared<NaNAtThirdCall>();
  h.ctx.stop_on_nonfinite = false;  // the engine's own check (checkpoint.stop_on_nonfinite) off
  auto loop = h.loop(Json::parse(R"({"ktf.train.KerasTrainLoop": {"num_epochs": 5,
      "callbacks": [{"tf.keras.callbacks.TerminateOnNaN": {}}]}})"));
  Logs logs = loop->run(h.ctx);
  EXPECT_EQ(h.ctx.global_step, 3);
  EXPECT_EQ(h.epochs().size(), 1u);
  EXPECT_TRUE(std::isnan(log_value(logs, "loss")));
  EXPECT_NE(h.log.find("Batch 3: invalid loss (nan), terminating training"), std::string::npos)
      << h.log;
}

TEST(NonFiniteLoss, TheBackwardServiceStopsBeforeTheStepThatWouldApplyIt) {
  Harness h("nan_engine");
  h.ctx.loss = std::make_shared<NaNAtThirdCall>();
  auto loop = h.loop(Json::parse(R"({"ktf.train.KerasTrainLoop": {"num_epochs": 5}})"));
  try {
    loop->run(h.ctx);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "the loss is nan: training stopped before this step changed the weights (the check "
              "is checkpoint.stop_on_nonfinite)");
    EXPECT_EQ(e.exit_code(), kExitRuntime);
  }
  EXPECT_EQ(h.ctx.global_step, 2);
  for (const auto& p : h.model->parameters()) EXPECT_TRUE(torch::isfinite(p).all().item<bool>());
}

TEST(LearningRateLogger, RecordsEachGroupPerStep) {
  Harness h("lr_logger");
  auto loop = h.loop(Json::parse(R"({"ktf.train.KerasTrainLoop": {"num_epochs": 2, "callbacks": [
      {"ktf.callbacks.LearningRateLogger": {"logging_interval": "step", "every_n_steps": 4}}]}})"));
  loop->run(h.ctx);
  std::vector<double> steps;
  for (const auto& r : h.records)
    if (r.phase == "lr") {
      steps.push_back(log_value(r.logs, "step"));
      EXPECT_DOUBLE_EQ(log_value(r.logs, "lr"), 0.1);
    }
  EXPECT_EQ(steps, (std::vector<double>{4, 8, 12, 16}));
  EXPECT_NE(h.log.find("Epoch 2: learning rate lr=0.1"), std::string::npos) << h.log;
}

TEST(ProgressBar, OneLinePerEpochWithVerbose2) {
  Harness h("progress");
  h.ctx.quiet = false;  // lines go to stdout and, final ones, to the log sink
  auto loop =
      h.loop(Json::parse(R"({"ktf.train.KerasTrainLoop": {"num_epochs": 2, "verbose": 2}})"));
  loop->run(h.ctx);
  auto lines = split_lines(h.log);
  ASSERT_EQ(lines.size(), 2u) << h.log;
  EXPECT_EQ(lines[0].rfind("Epoch 1/2 8/8 - ", 0), 0u) << lines[0];
  EXPECT_NE(lines[1].find(" - loss: "), std::string::npos) << lines[1];
  EXPECT_NE(lines[1].find(" - val_loss: "), std::string::npos) << lines[1];
  EXPECT_NE(lines[1].find(" - lr: 0.1000"), std::string::npos) << lines[1];
}

TEST(ProgressBar, SilentWithVerbose0) {
  Harness h("progress_silent");
  h.ctx.quiet = false;
  auto loop =
      h.loop(Json::parse(R"({"ktf.train.KerasTrainLoop": {"num_epochs": 1, "verbose": 0}})"));
  loop->run(h.ctx);
  EXPECT_EQ(h.log, "");
}

}  // namespace
}  // namespace ktf::test
