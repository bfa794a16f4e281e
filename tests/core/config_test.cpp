#include <gtest/gtest.h>
#include <ktf/config.h>
#include <rapidjson/document.h>
#include <rapidjson/schema.h>

#include "test_components.h"

namespace {

using ktf::Json;

const char* kTwoCycles = R"([
  { "datasets": {"test.Data": {"batch_size": 16}},
    "model": {"test.Net": {"num_outputs": 10, "base_model": {"test.Net": {"num_outputs": 4}}}},
    "loss": {"tf.keras.losses.TestLoss": {}},
  },
  { "optimizer": {"ktf.optimizers.Adam": {"learning_rate": 0.0005}} },
])";

std::string error_of(const Json& config, const ktf::Registry& r) {
  try {
    ktf::resolve_config(config, r);
  } catch (const ktf::Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(Config, InheritsOmittedKeysAndFillsDefaults) {
  auto r = ktf::test::make_test_registry();
  Json cycles = ktf::resolve_config(Json::parse(kTwoCycles), r);
  ASSERT_EQ(cycles.size(), 2u);
  const Json& c1 = cycles.as_array()[0];
  const Json& c2 = cycles.as_array()[1];
  EXPECT_EQ(c2.at("model"), c1.at("model"));
  EXPECT_EQ(c2.at("datasets").at("test.Data").at("data_dir").as_string(), "/data");
  EXPECT_EQ(c1.at("model").at("test.Net").at("hidden"), Json::array({8}));
  EXPECT_DOUBLE_EQ(c1.at("optimizer").at("ktf.optimizers.Adam").at("learning_rate").as_number(),
                   0.001);
  EXPECT_DOUBLE_EQ(c2.at("optimizer").at("ktf.optimizers.Adam").at("learning_rate").as_number(),
                   0.0005);
  EXPECT_EQ(c1.at("train_loop").at("ktf.train.KerasTrainLoop").at("num_epochs").as_int(), 1);
  EXPECT_TRUE(c1.at("lr_schedule").is_null());
  EXPECT_EQ(c1.at("metrics"), Json::array());
}

TEST(Config, NestedTypoNamesFullPathAndSuggests) {
  auto r = ktf::test::make_test_registry();
  Json cfg = Json::parse(kTwoCycles);
  cfg.as_array()[1].set(
      "model",
      Json::parse(
          R"({"test.Net": {"num_outputs": 10, "base_model": {"test.Net": {"num_outputs": 4, "alpah": 0.5}}}})"));
  EXPECT_EQ(error_of(cfg, r),
            "cycle 2 \u203a model \u203a test.Net \u203a base_model \u203a test.Net \u203a alpah: "
            "unknown parameter (did you mean 'alpha'?)");
}

TEST(Config, UnknownComponentListsClosestNames) {
  auto r = ktf::test::make_test_registry();
  Json cfg = Json::parse(kTwoCycles);
  cfg.as_array()[0].set("model", Json::parse(R"({"test.Nte": {"num_outputs": 10}})"));
  EXPECT_EQ(error_of(cfg, r),
            "cycle 1 \u203a model: unknown network 'test.Nte' (did you mean 'test.Net'?)");
  cfg.as_array()[0].set("model", Json::parse(R"({"test.Loss": {}})"));
  EXPECT_EQ(error_of(cfg, r),
            "cycle 1 \u203a model: unknown network 'test.Loss' ('test.Loss' is a loss)");
}

TEST(Config, WrongTypeSaysExpectedAndGot) {
  auto r = ktf::test::make_test_registry();
  Json cfg = Json::parse(kTwoCycles);
  cfg.as_array()[0].set("model", Json::parse(R"({"test.Net": {"num_outputs": "ten"}})"));
  EXPECT_EQ(error_of(cfg, r),
            "cycle 1 \u203a model \u203a test.Net \u203a num_outputs: expected an integer, got "
            "string \"ten\"");
  cfg.as_array()[0].set("model",
                        Json::parse(R"({"test.Net": {"num_outputs": 2, "hidden": [1, "x"]}})"));
  EXPECT_EQ(error_of(cfg, r),
            "cycle 1 \u203a model \u203a test.Net \u203a hidden \u203a [1]: expected an integer, "
            "got string \"x\"");
  cfg.as_array()[0].set("model",
                        Json::parse(R"({"test.Net": {"num_outputs": 2, "activation": "rleu"}})"));
  EXPECT_EQ(error_of(cfg, r),
            "cycle 1 \u203a model \u203a test.Net \u203a activation: 'rleu' is not one of 'relu', "
            "'gelu' (did you mean 'relu'?)");
}

TEST(Config, MissingRequiredAndMissingKeysAreNamed) {
  auto r = ktf::test::make_test_registry();
  Json cfg = Json::parse(kTwoCycles);
  cfg.as_array()[0].set("model", Json::parse(R"({"test.Net": {}})"));
  EXPECT_EQ(error_of(cfg, r),
            "cycle 1 \u203a model \u203a test.Net: missing required parameter 'num_outputs' "
            "(number of outputs)");
  Json no_model = Json::parse(R"({"datasets": {"test.Data": {}}, "loss": {"test.Loss": {}}})");
  EXPECT_EQ(error_of(no_model, r),
            "cycle 1: missing 'model': the network to train; persists across cycles");
  Json typo_key = Json::parse(R"({"modle": {}})");
  EXPECT_EQ(error_of(typo_key, r),
            "cycle 1 \u203a modle: unknown cycle key (did you mean 'model'?)");
}

TEST(Config, OverridesByJsonPointer) {
  Json cfg = Json::parse(kTwoCycles);
  ktf::apply_override(cfg, "/1/optimizer/ktf.optimizers.Adam/learning_rate=0.0001");
  ktf::apply_override(cfg, "/0/model/test.Net/activation=gelu");
  ktf::apply_override(cfg, "/0/train_loop/ktf.train.KerasTrainLoop/num_epochs=3");
  ktf::apply_override(cfg, "/-={\"loss\": {\"test.Loss\": {}}}");
  EXPECT_DOUBLE_EQ(
      cfg.as_array()[1].at("optimizer").at("ktf.optimizers.Adam").at("learning_rate").as_number(),
      0.0001);
  EXPECT_EQ(cfg.as_array()[0].at("model").at("test.Net").at("activation").as_string(), "gelu");
  EXPECT_EQ(
      cfg.as_array()[0].at("train_loop").at("ktf.train.KerasTrainLoop").at("num_epochs").as_int(),
      3);
  EXPECT_EQ(cfg.size(), 3u);
  try {
    ktf::apply_override(cfg, "/7/loss=1");
    FAIL();
  } catch (const ktf::Error& e) {
    EXPECT_STREQ(e.what(),
                 "--set '/7/loss': index 7 is past the end of the list at '/' (3 elements)");
  }
  EXPECT_THROW(ktf::apply_override(cfg, "no-equals-sign"), ktf::Error);
  EXPECT_THROW(ktf::apply_override(cfg, "/0/model/test.Net/num_outputs/x=1"), ktf::Error);
}

bool schema_accepts(const Json& schema, const Json& doc, std::string* why = nullptr) {
  rapidjson::Document sd, d;
  sd.Parse(schema.dump().c_str());
  d.Parse(doc.dump().c_str());
  rapidjson::SchemaDocument sdoc(sd);
  rapidjson::SchemaValidator validator(sdoc);
  bool ok = d.Accept(validator);
  if (!ok && why) *why = validator.GetInvalidSchemaKeyword();
  return ok;
}

TEST(Config, SchemaAcceptsValidAndRejectsBrokenConfigs) {
  auto r = ktf::test::make_test_registry();
  Json schema = ktf::json_schema(r);
  std::string why;
  EXPECT_TRUE(schema_accepts(schema, Json::parse(kTwoCycles), &why)) << why;
  Json typo = Json::parse(kTwoCycles);
  typo.as_array()[0].set("model", Json::parse(R"({"test.Net": {"num_outputs": 10, "alpah": 1}})"));
  EXPECT_FALSE(schema_accepts(schema, typo));
  Json wrong_type = Json::parse(kTwoCycles);
  wrong_type.as_array()[0].set("model", Json::parse(R"({"test.Net": {"num_outputs": "ten"}})"));
  EXPECT_FALSE(schema_accepts(schema, wrong_type));
  Json unknown = Json::parse(kTwoCycles);
  unknown.as_array()[0].set("loss", Json::parse(R"({"test.Lost": {}})"));
  EXPECT_FALSE(schema_accepts(schema, unknown));
  Json missing = Json::parse(kTwoCycles);
  missing.as_array()[0].set("model", Json::parse(R"({"test.Net": {}})"));
  EXPECT_FALSE(schema_accepts(schema, missing));
}

}  // namespace
