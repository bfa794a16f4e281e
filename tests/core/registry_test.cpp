#include <gtest/gtest.h>
#include <ktf/config.h>
#include <ktf/registry.h>

#include "test_components.h"

namespace {

using ktf::Json;

TEST(Registry, SpecIsDerivedFromOptionsStruct) {
  auto r = ktf::test::make_test_registry();
  const ktf::ComponentDef* def = r.find(ktf::Kind::Network, "test.Net");
  ASSERT_NE(def, nullptr);
  const auto& params = def->spec.params;
  ASSERT_EQ(params.size(), 5u);
  EXPECT_EQ(params[0].name, "num_outputs");
  EXPECT_TRUE(params[0].required);
  EXPECT_EQ(params[0].type, ktf::ParamType::Int);
  EXPECT_EQ(params[1].default_value, Json::array({8}));
  EXPECT_EQ(params[1].type, ktf::ParamType::IntList);
  EXPECT_EQ(params[2].type, ktf::ParamType::Float);
  EXPECT_EQ(params[3].choices, (std::vector<std::string>{"relu", "gelu"}));
  EXPECT_EQ(params[4].type, ktf::ParamType::Component);
  EXPECT_EQ(params[4].component_kind, ktf::Kind::Network);
  EXPECT_TRUE(params[4].nullable);
  EXPECT_EQ(def->spec.plugin, "test");
}

TEST(Registry, AliasesResolveToTheSameComponent) {
  auto r = ktf::test::make_test_registry();
  EXPECT_EQ(r.find(ktf::Kind::Loss, "tf.keras.losses.TestLoss"),
            r.find(ktf::Kind::Loss, "test.Loss"));
  EXPECT_EQ(r.find(ktf::Kind::Network, "test.Loss"), nullptr);
}

TEST(Registry, RejectsSpecsWithoutDocsAndDuplicates) {
  struct O {
    int64_t x = 1;
  };
  ktf::Registrar s;
  try {
    s.add(ktf::define<ktf::Loss, O>("t.NoDoc", "summary")
              .arg("x", &O::x, "")
              .build([](const O&, ktf::BuildContext&) { return std::shared_ptr<ktf::Loss>(); }));
    FAIL();
  } catch (const ktf::Error& e) {
    EXPECT_STREQ(e.what(), "loss 't.NoDoc': parameter 'x' has no doc");
  }
  auto r = ktf::test::make_test_registry();
  ktf::Registrar again;
  again.add(ktf::define<ktf::Loss>("tf.keras.losses.TestLoss", "clash")
                .build([](const ktf::NoOptions&, ktf::BuildContext&) {
                  return std::make_shared<ktf::test::TestLoss>();
                }));
  try {
    r.commit(again, "other", "/x/other.so");
    FAIL();
  } catch (const ktf::DuplicateError& e) {
    EXPECT_STREQ(e.what(),
                 "loss 'tf.keras.losses.TestLoss' is already registered by plugin 'test'");
  }
}

TEST(Registry, BuildsNestedComponentsAndPrefixesErrors) {
  auto r = ktf::test::make_test_registry();
  ktf::BuildContext ctx(r);
  Json cfg = ktf::resolve_component(
      Json::parse(
          R"({"test.Net": {"num_outputs": 3, "base_model": {"test.Net": {"num_outputs": 2}}}})"),
      ktf::Kind::Network, r, {"model"});
  auto [name, args] = ktf::split_component(cfg);
  auto net = std::static_pointer_cast<ktf::Network>(
      ctx.build_any(ktf::Kind::Network, name, args, {"model", name}));
  EXPECT_EQ(net->forward(torch::zeros({2, 4})).sizes(), (std::vector<int64_t>{2, 3}));

  struct O {
    double rate = 0.5;
  };
  ktf::register_component(ktf::define<ktf::Loss, O>("t.Checked", "checks its argument")
                              .arg("rate", &O::rate, "a rate in [0, 1)")
                              .build([](const O& o, ktf::BuildContext&) {
                                KTF_CHECK(o.rate >= 0 && o.rate < 1, "rate must be in [0, 1), got ",
                                          o.rate);
                                return std::make_shared<ktf::test::TestLoss>();
                              }),
                          r);
  try {
    ctx.build_any(ktf::Kind::Loss, "t.Checked", Json::object({{"rate", 2.0}}),
                  {"cycle 1", "loss", "t.Checked"});
    FAIL();
  } catch (const ktf::Error& e) {
    EXPECT_STREQ(e.what(), "cycle 1 \u203a loss \u203a t.Checked: rate must be in [0, 1), got 2");
  }
}

TEST(Registry, ClosestNamesPreferDottedSuffixMatches) {
  std::vector<std::string> names{"ktf.networks.MobileNetV2", "ktf.networks.MLP",
                                 "ktf.networks.ResNet"};
  EXPECT_EQ(ktf::closest_names("MobileNetV3", names, 1).front(), "ktf.networks.MobileNetV2");
  EXPECT_EQ(ktf::closest_names("ktf.networks.ResNte", names, 1).front(), "ktf.networks.ResNet");
  EXPECT_TRUE(ktf::closest_names("zzzzzzzz", names, 3, true).empty());
}

TEST(Registry, ConstraintsMustFitTheParameterAndItsDefault) {
  struct O {
    std::string name = "x";
    bool flag = false;
    int64_t count = 0;
  };
  auto what = [](auto&& make) {
    try {
      make();
    } catch (const ktf::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(what([] { ktf::define<ktf::Loss, O>("t.A", "a").arg("name", &O::name, "n").min(3); }),
            "'t.A' parameter 'name': a numeric bound does not apply to a parameter of type string");
  EXPECT_EQ(
      what([] { ktf::define<ktf::Loss, O>("t.B", "b").arg("flag", &O::flag, "f").choices({"x"}); }),
      "'t.B' parameter 'flag': choices does not apply to a parameter of type bool");
  EXPECT_EQ(
      what([] { ktf::define<ktf::Loss, O>("t.C", "c").arg("count", &O::count, "c").sizes({2}); }),
      "'t.C' parameter 'count': sizes() does not apply to a parameter of type int");
  ktf::Registrar staged;
  EXPECT_EQ(what([&] {
              staged.add(ktf::define<ktf::Loss, O>("t.D", "d")
                             .arg("count", &O::count, "a count")
                             .min(1)
                             .build([](const O&, ktf::BuildContext&) {
                               return std::make_shared<ktf::test::TestLoss>();
                             }));
            }),
            "loss 't.D': the default of parameter 'count' (0) breaks its declared values: must be "
            ">= 1, got 0");
}

}  // namespace
