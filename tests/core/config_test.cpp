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

TEST(Config, AnOmittedKeyIsInheritedNotReset) {
  // Cycle 1 changes the train loop and the optimizer from their defaults; cycle 2 omits both and
  // must train with cycle 1's values, not the defaults again.
  auto r = ktf::test::make_test_registry();
  Json cfg = Json::parse(kTwoCycles);
  cfg.as_array()[0].set("train_loop",
                        Json::parse(R"({"ktf.train.KerasTrainLoop": {"num_epochs": 3}})"));
  cfg.as_array()[0].set("optimizer",
                        Json::parse(R"({"ktf.optimizers.Adam": {"learning_rate": 0.5}})"));
  cfg.as_array()[1] = Json::parse(R"({"loss": {"test.Loss": {}}})");
  Json cycles = ktf::resolve_config(cfg, r);
  const Json& c2 = cycles.as_array()[1];
  EXPECT_EQ(c2.at("train_loop").at("ktf.train.KerasTrainLoop").at("num_epochs").as_int(), 3);
  EXPECT_DOUBLE_EQ(c2.at("optimizer").at("ktf.optimizers.Adam").at("learning_rate").as_number(),
                   0.5);
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

// ---- allowed values declared in the spec --------------------------------------------------------

struct ShapedOptions {
  double rate = 0.5;
  int64_t count = 1;
  std::vector<int64_t> sizes;
  ktf::Size2 kernel = 3;
  std::variant<std::string, ktf::Size2> padding = std::string("valid");
  std::variant<std::string, double> validation = std::string("none");
  std::optional<ktf::JsonObject> extra;
};

/// test.Shaped: one parameter of each constrained shape, in the test registry's company.
ktf::Registry shaped_registry() {
  ktf::Registry r = ktf::test::make_test_registry();
  ktf::Registrar s;
  s.add(ktf::define<ktf::Network, ShapedOptions>("test.Shaped", "constrained parameters")
            .arg("rate", &ShapedOptions::rate, "a rate")
            .min(0)
            .below(1)
            .arg("count", &ShapedOptions::count, "a count")
            .above(0)
            .arg("sizes", &ShapedOptions::sizes, "[h, w] or []")
            .min(1)
            .sizes({0, 2})
            .arg("kernel", &ShapedOptions::kernel, "kernel size")
            .min(1)
            .arg("padding", &ShapedOptions::padding, "padding")
            .choices({"same", "valid"})
            .min(0)
            .arg("validation", &ShapedOptions::validation, "held-out split")
            .choices({"none", "test"})
            .above(0)
            .below(1)
            .arg("extra", &ShapedOptions::extra, "free-form object")
            .build([](const ShapedOptions& o, ktf::BuildContext&) {
              ktf::test::NetOptions net;
              net.num_outputs = o.count;
              return std::make_shared<ktf::test::TestNet>(net);
            }));
  r.commit(s, "shaped", "");
  return r;
}

std::string shaped_error(const std::string& args) {
  Json cfg = Json::parse(kTwoCycles);
  cfg.as_array()[1].set("model", Json::parse(R"({"test.Shaped": )" + args + "}"));
  return error_of(cfg, shaped_registry());
}

TEST(ConfigValues, DeclaredRangesChoicesAndSizesAreCheckedForEveryCycle) {
  const std::string at = "cycle 2 \u203a model \u203a test.Shaped \u203a ";
  EXPECT_EQ(shaped_error(R"({"rate": 1})"), at + "rate: must be in [0, 1), got 1");
  EXPECT_EQ(shaped_error(R"({"rate": -0.5})"), at + "rate: must be in [0, 1), got -0.5");
  EXPECT_EQ(shaped_error(R"({"count": 0})"), at + "count: must be > 0, got 0");
  EXPECT_EQ(shaped_error(R"({"sizes": [3]})"),
            at + "sizes: must have length 0 or 2, got 1 element(s)");
  EXPECT_EQ(shaped_error(R"({"sizes": [3, 0]})"), at + "sizes \u203a [1]: must be >= 1, got 0");
  EXPECT_EQ(shaped_error(R"({"kernel": [3, 0]})"), at + "kernel \u203a [1]: must be >= 1, got 0");
  EXPECT_EQ(shaped_error(R"({"kernel": [3, 3, 3]})"),
            at + "kernel: expected an integer or [h, w], got array [3, 3, 3]");
  EXPECT_EQ(shaped_error(R"({"kernel": "3"})"),
            at + "kernel: expected an integer or [h, w], got string \"3\"");
  EXPECT_EQ(shaped_error(R"({"padding": "sme"})"),
            at + "padding: 'sme' is not one of 'same', 'valid' (did you mean 'same'?)");
  EXPECT_EQ(shaped_error(R"({"padding": -1})"), at + "padding: must be >= 0, got -1");
  EXPECT_EQ(shaped_error(R"({"padding": true})"),
            at + "padding: expected string or int|[h,w], got boolean true");
  EXPECT_EQ(shaped_error(R"({"validation": 1.5})"), at + "validation: must be in (0, 1), got 1.5");
  EXPECT_EQ(shaped_error(R"({"validation": "train"})"),
            at + "validation: 'train' is not one of 'none', 'test'");
  EXPECT_EQ(shaped_error(R"({"extra": [1]})"), at + "extra: expected an object, got array [1]");
  EXPECT_EQ(shaped_error(R"({"rate": 0.25, "count": 2, "sizes": [4, 5], "kernel": [1, 3],
                             "padding": [0, 1], "validation": 0.1, "extra": {"a": 1}})"),
            "no error");
}

TEST(ConfigValues, ResolvedValuesKeepTheirShapeAndTheSchemaCarriesTheBounds) {
  auto r = shaped_registry();
  Json cfg = Json::parse(kTwoCycles);
  cfg.as_array()[0].set("model", Json::parse(R"({"test.Shaped": {"padding": 2}})"));
  Json cycles = ktf::resolve_config(cfg, r);
  const Json& args = cycles.as_array()[0].at("model").at("test.Shaped");
  EXPECT_EQ(args.at("kernel"), Json(3));
  EXPECT_EQ(args.at("padding"), Json(2));
  EXPECT_EQ(args.at("validation"), Json("none"));
  Json schema = ktf::json_schema(r);
  const Json& params =
      schema.at("definitions").at("network").at("properties").at("test.Shaped").at("properties");
  EXPECT_EQ(params.at("rate").at("minimum"), Json(0.0));
  EXPECT_EQ(params.at("rate").at("exclusiveMaximum"), Json(true));
  EXPECT_TRUE(params.at("kernel").find("oneOf"));
  EXPECT_TRUE(params.at("extra").find("oneOf"));  // object or null
  std::string why;
  Json good = Json::parse(kTwoCycles);
  good.as_array()[0].set("model",
                         Json::parse(R"({"test.Shaped": {"kernel": [1, 3], "padding": "same"}})"));
  EXPECT_TRUE(schema_accepts(schema, good, &why)) << why;
  // Each alternative of a variant takes only the constraints of its type.
  good.as_array()[0].set("model",
                         Json::parse(R"({"test.Shaped": {"padding": 2, "validation": 0.1}})"));
  EXPECT_TRUE(schema_accepts(schema, good, &why)) << why;
  Json bad = Json::parse(kTwoCycles);
  bad.as_array()[0].set("model", Json::parse(R"({"test.Shaped": {"rate": 1}})"));
  EXPECT_FALSE(schema_accepts(schema, bad));
}

TEST(ConfigDefaults, OmittedKeysTakeThePluginDeclaredDefaults) {
  // Without a declared default there is nothing to fall back on: the message says so.
  ktf::Registry bare;
  ktf::Registrar s;
  s.add(ktf::define<ktf::Network, ktf::test::NetOptions>("test.Net", "net")
            .required("num_outputs", &ktf::test::NetOptions::num_outputs, "outputs")
            .build([](const ktf::test::NetOptions& o, ktf::BuildContext&) {
              return std::make_shared<ktf::test::TestNet>(o);
            }));
  s.add(ktf::define<ktf::Loss>("test.Loss", "loss")
            .build([](const ktf::NoOptions&, ktf::BuildContext&) {
              return std::make_shared<ktf::test::TestLoss>();
            }));
  s.add(ktf::define<ktf::Dataset>("test.Data", "data")
            .build([](const ktf::NoOptions&, ktf::BuildContext&) -> std::shared_ptr<ktf::Dataset> {
              return nullptr;
            }));
  bare.commit(s, "bare", "");
  Json cfg = Json::parse(R"({"datasets": {"test.Data": {}}, "model": {"test.Net":
      {"num_outputs": 2}}, "loss": {"test.Loss": {}}})");
  EXPECT_EQ(error_of(cfg, bare),
            "cycle 1: no 'optimizer' given, and no loaded plugin declares a default for it (load "
            "the plugin that provides optimizers, or give one)");

  // A second plugin cannot declare a default for the same key, nor one it does not register.
  auto r = ktf::test::make_test_registry();
  ktf::Registrar again;
  again.add(
      ktf::define<ktf::Optimizer, ktf::test::LrOptions>("other.SGD", "sgd")
          .build([](const ktf::test::LrOptions&,
                    ktf::BuildContext&) -> std::shared_ptr<ktf::Optimizer> { return nullptr; }));
  again.add_cycle_default("optimizer", Json::object({{"other.SGD", Json::object()}}));
  try {
    r.commit(again, "other", "/x/libother.so");
    FAIL() << "a second default was accepted";
  } catch (const ktf::DuplicateError& e) {
    EXPECT_STREQ(e.what(),
                 "cycle key 'optimizer' already has a default, declared by plugin 'test'");
  }
  EXPECT_FALSE(r.find(ktf::Kind::Optimizer, "other.SGD")) << "commit was not all-or-nothing";
  ktf::Registrar foreign;
  try {
    foreign.add_cycle_default("optimizer", Json::object({{"ktf.optimizers.Adam", Json::object()}}));
    FAIL() << "a default naming another plugin's component was accepted";
  } catch (const ktf::Error& e) {
    EXPECT_NE(std::string(e.what()).find("which this plugin does not register"), std::string::npos);
  }
}

}  // namespace
