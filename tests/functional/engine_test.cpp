// The engine end to end through ktf-host: every cycle is checked before the first trains, run-time
// errors name the cycle and the component and reach log.txt, null clears an inherited key,
// --dry-run runs the train step and callbacks, integers stay integers in metrics.jsonl, the
// schema has no empty parameter schema, docs/components.md is what the specs say, and the engine
// and host name no component.
#include <gtest/gtest.h>
#include <ktf/config.h>
#include <ktf/json.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "plugins_fixture.h"

namespace {

namespace fs = std::filesystem;
using ktf::Json;

ktf::test::CommandResult host(const std::string& args) {
  return ktf::test::run_command(std::string("KTF_PLUGIN_PATH= ") + KTF_HOST + " --plugins " +
                                ktf::test::plugin_dir() + " " + args);
}

std::string write_config(const std::string& name, const std::string& text) {
  std::string path = ktf::test::scratch_dir("engine_" + name) + "/" + name + ".json";
  std::ofstream(path) << text;
  return path;
}

std::string slurp(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

const char* const kTwoCycles = ktf::test::kTwoShortCycles;

Json two_cycles() { return Json::parse(kTwoCycles); }

TEST(EngineChecks, ALaterCycleOutOfRangeValueExits2BeforeCycle1Trains) {
  Json cfg = two_cycles();
  cfg.as_array()[1].set("train_loop",
                        Json::parse(R"({"ktf.train.KerasTrainLoop": {"valid_freq": 0}})"));
  std::string out = ktf::test::scratch_dir("engine_range_run");
  auto r = host("-c " + write_config("range", cfg.dump()) + " -o " + out);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_EQ(r.output,
            "ktf-host: cycle 2 \u203a train_loop \u203a ktf.train.KerasTrainLoop \u203a "
            "valid_freq: must be >= 1, got 0\n");
  EXPECT_FALSE(fs::exists(out + "/metrics.jsonl"));
}

TEST(EngineChecks, ChecksThatNeedTheModelRunForEveryCycleBeforeTraining) {
  // A freeze pattern that matches nothing in cycle 2 is found by building cycle 2 first.
  Json cfg = two_cycles();
  cfg.as_array()[1].set("train_loop", Json::parse(R"({"ktf.train.KerasTrainLoop":
      {"num_epochs": 1, "verbose": 0, "freeze_submodels": ["dense9"]}})"));
  std::string out = ktf::test::scratch_dir("engine_freeze_run");
  auto r = host("-c " + write_config("freeze", cfg.dump()) + " -o " + out);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("ktf-host: cycle 2 \u203a train_loop \u203a ktf.train.KerasTrainLoop: "
                          "freeze_submodels: 'dense9' matches no submodule of the model"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(slurp(out + "/metrics.jsonl"), "") << "cycle 1 trained";
  EXPECT_EQ(r.output.find("== cycle 1"), std::string::npos) << r.output;

  // A model that cannot take the dataset's examples is reported with both, before training.
  cfg = two_cycles();
  cfg.as_array()[1].set("model", Json::parse(R"({"ktf.networks.Sequential": {"layers": [
      {"tf.keras.layers.Dense": {"units": 4}}], "input_shape": [3]}})"));
  r = host("-c " + write_config("shape", cfg.dump()) + " -o " + out + "_shape");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("ktf-host: cycle 2 \u203a model \u203a ktf.networks.Sequential: the "
                          "model does not fit the dataset's examples of shape [8] (from "
                          "ktf.datasets.synthetic)"),
            std::string::npos)
      << r.output;
}

TEST(EngineErrors, TensorsLargerThanMemoryAreRefusedNamingTheComponentAndTheSizes) {
  // Synthetic data of 10^12 values per example: refused when its first tensor is allocated.
  Json cfg = two_cycles();
  cfg.as_array()[0].set("datasets", Json::parse(R"({"ktf.datasets.synthetic": {"num_examples": 2,
      "num_valid": 0, "input_shape": [1000000, 1000000]}})"));
  auto r = host("--dry-run -c " + write_config("data_bomb", cfg.dump()));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(std::regex_search(
      r.output, std::regex("ktf-host: cycle 1 \u203a datasets \u203a ktf.datasets.synthetic: a "
                           "tensor of 36.4 TiB does not fit in the [0-9.]+ [GMT]iB of memory "
                           "this machine has available \\(make the data or the model "
                           "smaller\\)\n")))
      << r.output;
  // A hidden layer of 10^11 units: its weight is refused, the model named.
  cfg = two_cycles();
  cfg.as_array()[0].set(
      "model",
      Json::parse(R"({"ktf.networks.MLP": {"num_outputs": 4, "hidden": [100000000000]}})"));
  r = host("--dry-run -c " + write_config("model_bomb", cfg.dump()));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(std::regex_search(
      r.output, std::regex("ktf-host: cycle 1 \u203a model \u203a ktf.networks.MLP: a tensor of "
                           "2.9 TiB does not fit in the [0-9.]+ [GMT]iB of memory")))
      << r.output;
}

TEST(EngineErrors, HugeValuesAreQuotedShortAndHugeNamesAnsweredAtOnce) {
  // A 50 MB string where a number belongs, and a 1 MB component name: one short line each.
  Json cfg = two_cycles();
  cfg.as_array()[1].set(
      "optimizer", Json::object({{"ktf.optimizers.SGD",
                                  Json::object({{"learning_rate", std::string(50 << 20, '7')}})}}));
  auto r = host("-c " + write_config("huge_value", cfg.dump()));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.output,
            "ktf-host: cycle 2 \u203a optimizer \u203a ktf.optimizers.SGD \u203a learning_rate: "
            "expected a number, got string \"777777777777777777777777777777777777...\n");
  cfg = two_cycles();
  const std::string name(1 << 20, 'q');
  cfg.as_array()[0].set("model", Json::object({{name, Json::object()}}));
  r = host("-c " + write_config("huge_name", cfg.dump()));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_LT(r.output.size(), 600u) << r.output.substr(0, 600);
  EXPECT_EQ(r.output.rfind("ktf-host: cycle 1 \u203a model: unknown network 'qqqq", 0), 0u)
      << r.output.substr(0, 300);
  EXPECT_NE(r.output.find("... (1048576 bytes)'"), std::string::npos) << r.output.substr(0, 600);
}

TEST(EngineErrors, ARunTimeErrorNamesTheCycleAndComponentAndReachesLogTxt) {
  // 4 classes in the data, 3 outputs: the loss fails on the first batch with a class >= 3.
  Json cfg = two_cycles();
  cfg.as_array()[0].set("model", Json::parse(R"({"ktf.networks.MLP": {"num_outputs": 3}})"));
  std::string out = ktf::test::scratch_dir("engine_runtime_run");
  auto r = host("-c " + write_config("runtime", cfg.dump()) + " -o " + out);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  const std::string prefix =
      "ktf-host: cycle 1 \u203a loss \u203a tf.keras.losses.SparseCategoricalCrossentropy: ";
  const std::string last_line = r.output.substr(r.output.rfind('\n', r.output.size() - 2) + 1);
  EXPECT_EQ(last_line.rfind(prefix, 0), 0u) << r.output;
  EXPECT_NE(last_line.find("out of bounds"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("(cycle 1, epoch 1, batch 1, step 0)"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("Exception raised from"), std::string::npos) << "a libtorch trace";
  EXPECT_NE(slurp(out + "/log.txt").find("error: " + prefix.substr(10)), std::string::npos)
      << slurp(out + "/log.txt");
}

TEST(EngineConfig, NullClearsAnInheritedOptionalKeyAndIsAnErrorForARequiredOne) {
  Json cfg = two_cycles();
  cfg.as_array()[1] = Json::parse(R"({"optimizer": null, "metrics": null})");
  std::string out = ktf::test::scratch_dir("engine_null_run");
  auto r = host("-c " + write_config("null", cfg.dump()) + " -o " + out + " --dry-run");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  Json resolved = Json::parse_file(out + "/config.resolved.json");
  const Json& c2 = resolved.as_array()[1];
  EXPECT_TRUE(c2.at("optimizer").find("ktf.optimizers.Adam")) << c2.dump();  // the default
  EXPECT_EQ(c2.at("metrics"), Json::array());

  cfg.as_array()[1] = Json::parse(R"({"model": null})");
  r = host("-c " + write_config("null_model", cfg.dump()) + " -o " + out + "_model");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_EQ(r.output.rfind("ktf-host: cycle 2: 'model' is null: it is required", 0), 0u)
      << r.output;
}

TEST(EngineDryRun, RunsTheConfiguredTrainStepAndCallbacksOnOneBatch) {
  Json cfg = two_cycles();
  cfg.as_array()[0].set("train_loop", Json::parse(R"({"ktf.train.KerasTrainLoop": {
      "num_epochs": 5, "verbose": 0, "callbacks": [{"ktf.callbacks.CSVLogger": {"filename": "log.csv"}}]}})"));
  std::string out = ktf::test::scratch_dir("engine_dry_run");
  auto r = host("-c " + write_config("dry", cfg.dump()) + " -o " + out + " --dry-run");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(
      r.output.find("cycle 1: dry run: train loop, train step and callbacks ran on one batch"),
      std::string::npos)
      << r.output;
  // The CSV logger ran: a header and one epoch's row (one epoch, one batch, not five epochs).
  std::string csv = slurp(out + "/log.csv");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 2) << csv;
  EXPECT_FALSE(fs::exists(out + "/weights/cycle-1.pt"));
}

TEST(EngineEvaluate, ReportsTheMetricsTheRunEndedWith) {
  // --evaluate rebuilds the last cycle through the same builder, loads its weights and scores the
  // same validation split in order: the figures equal the run's last validation.
  std::string out = ktf::test::scratch_dir("engine_evaluate_run");
  auto r = host("-c " + write_config("evaluate", kTwoCycles) + " -o " + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream metrics(out + "/metrics.jsonl");
  Json last;
  for (std::string line; std::getline(metrics, line);) last = Json::parse(line);
  auto e = host("--evaluate " + out + " --quiet");
  ASSERT_EQ(e.exit_code, 0) << e.output;
  Json eval = Json::parse_file(out + "/evaluation-cycle-2.json");
  EXPECT_EQ(eval.at("examples").as_int(), 32);
  EXPECT_NEAR(eval.at("accuracy").as_number(), last.at("val_accuracy").as_number(), 1e-12);
  EXPECT_NEAR(eval.at("loss").as_number(), last.at("val_loss").as_number(), 1e-6);

  // Weights of another model (hidden [24], not [16]) in the run: refused, naming the first tensor.
  std::string other = kTwoCycles;
  other.replace(other.find("\"hidden\": [16]"), 14, "\"hidden\": [24]");
  const std::string out2 = ktf::test::scratch_dir("engine_evaluate_other");
  ASSERT_EQ(host("-c " + write_config("evaluate_other", other) + " -o " + out2).exit_code, 0);
  fs::copy_file(out2 + "/weights/cycle-2.pt", out + "/weights/cycle-2.pt",
                fs::copy_options::overwrite_existing);
  auto wrong = host("--evaluate " + out + " --quiet");
  EXPECT_EQ(wrong.exit_code, 2) << wrong.output;
  EXPECT_NE(wrong.output.find("weights '" + out +
                              "/weights/cycle-2.pt' do not match the model built from the run's "
                              "config: '"),
            std::string::npos)
      << wrong.output;
  EXPECT_NE(wrong.output.find("in the file and [16"), std::string::npos) << wrong.output;
}

TEST(EngineLogs, IntegersStayIntegersInMetricsJsonl) {
  std::string out = ktf::test::scratch_dir("engine_ints_run");
  auto r = host("-c " + write_config("ints", kTwoCycles) + " -o " + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream metrics(out + "/metrics.jsonl");
  std::string line;
  int lines = 0;
  while (std::getline(metrics, line)) {
    Json m = Json::parse(line);
    EXPECT_TRUE(m.at("train_samples").is_int()) << line;
    EXPECT_EQ(m.at("train_samples").as_int(), 128) << line;
    EXPECT_TRUE(m.at("train_steps").is_int()) << line;
    EXPECT_FALSE(m.at("loss").is_int()) << line;
    EXPECT_EQ(line.find("e+"), std::string::npos) << line;
    ++lines;
  }
  EXPECT_EQ(lines, 2);
}

/// Every parameter schema says what it accepts: a type, a $ref, a oneOf or an enum.
void expect_no_empty_schema(const Json& params, const std::string& where) {
  for (const auto& [name, schema] : params.as_object()) {
    bool typed =
        schema.find("type") || schema.find("$ref") || schema.find("oneOf") || schema.find("enum");
    EXPECT_TRUE(typed) << where << " \u203a " << name << ": " << schema.dump();
  }
}

TEST(EngineSchema, NoParameterHasAnEmptySchema) {
  auto r = host("--schema");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  Json schema = Json::parse(r.output);
  int params = 0;
  for (const auto& [kind, def] : schema.at("definitions").as_object()) {
    if (kind == "cycle") continue;
    for (const auto& [name, component] : def.at("properties").as_object()) {
      expect_no_empty_schema(component.at("properties"), name);
      params += static_cast<int>(component.at("properties").size());
    }
  }
  EXPECT_GT(params, 200);
}

TEST(EngineDocs, ComponentReferenceIsGeneratedFromTheSpecs) {
  // docs/components.md: the plugins every build has; docs/components-cuda.md: the CUDA kernel
  // plugin (plugins/cuda), which only builds against a CUDA libtorch, compared where it is built.
  std::string every;
  fs::path cuda_plugin;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(ktf::test::plugin_dir()))
    if (e.path().extension() == ".so") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    if (f.filename() == "libktf_cuda.so")
      cuda_plugin = f;
    else
      every += " --plugins " + f.string();
  }
  auto reference = [](const std::string& plugins) {
    return ktf::test::run_command(std::string("KTF_PLUGIN_PATH= ") + KTF_HOST + plugins +
                                  " --reference");
  };
  auto r = reference(every);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string committed = slurp(std::string(KTF_SOURCE_DIR) + "/docs/components.md");
  EXPECT_TRUE(r.output == committed)
      << "docs/components.md is out of date: regenerate it with\n  build/ktf-host --plugins "
         "build/plugins --reference > docs/components.md";
  EXPECT_NE(committed.find("| `dropout` | float | `0.0` | in [0, 1) |"), std::string::npos);
  const std::string cuda_doc = slurp(std::string(KTF_SOURCE_DIR) + "/docs/components-cuda.md");
  EXPECT_NE(cuda_doc.find("ktf.losses.FusedCrossEntropy"), std::string::npos);
  if (!cuda_plugin.empty()) {
    auto c = reference(" --plugins " + cuda_plugin.string());
    ASSERT_EQ(c.exit_code, 0) << c.output;
    EXPECT_TRUE(c.output == cuda_doc)
        << "docs/components-cuda.md is out of date: regenerate it with\n  build-torch2/ktf-host "
           "--plugins build-torch2/plugins/libktf_cuda.so --reference > docs/components-cuda.md";
  }
}

TEST(EngineSources, TheEngineAndTheHostNameNoComponent) {
  // Every registered name and alias, as a string literal in the code (comments may show examples)
  // of the engine, the SDK and the host: none may appear (defaults come from the plugins).
  std::vector<std::string> names;
  for (const auto* def : ktf::test::plugins().list()) {
    names.push_back(def->spec.name);
    for (const auto& a : def->spec.aliases) names.push_back(a);
  }
  ASSERT_GT(names.size(), 50u);
  int files = 0;
  for (const char* dir :
       {"sdk/src", "sdk/engine/src", "sdk/include", "sdk/engine/include", "host"}) {
    for (const auto& e :
         fs::recursive_directory_iterator(std::string(KTF_SOURCE_DIR) + "/" + dir)) {
      if (!e.is_regular_file()) continue;
      std::istringstream lines(slurp(e.path()));
      std::string text;
      for (std::string line; std::getline(lines, line);)
        text += line.substr(0, line.find("//")) + "\n";
      ++files;
      for (const auto& n : names)
        EXPECT_EQ(text.find("\"" + n + "\""), std::string::npos) << e.path() << " names " << n;
    }
  }
  EXPECT_GT(files, 30);
}

}  // namespace
