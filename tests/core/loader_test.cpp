#include <gtest/gtest.h>
#include <ktf/plugin_loader.h>

#include <fstream>

#include "plugins_fixture.h"

namespace {

std::string fixture(const std::string& name) {
  return std::string(KTF_FIXTURE_DIR) + "/libfixture_" + name + ".so";
}

/// Loads `path` into a fresh registry; returns the PluginError it raised.
ktf::PluginError load_error(const std::string& path, ktf::Registry& registry) {
  ktf::PluginLoader loader(registry);
  try {
    loader.load(path);
  } catch (const ktf::PluginError& e) {
    return e;
  }
  ADD_FAILURE() << path << " loaded without error";
  return ktf::PluginError(path, "none", "none");
}

void expect_stage(const std::string& path, const std::string& stage,
                  const std::string& reason_part) {
  ktf::Registry registry;
  auto e = load_error(path, registry);
  EXPECT_EQ(e.stage(), stage) << e.what();
  EXPECT_EQ(e.file(), path);
  EXPECT_EQ(std::string(e.what()).rfind("plugin '" + path + "': " + stage + ": ", 0), 0u)
      << e.what();
  EXPECT_NE(e.reason().find(reason_part), std::string::npos) << e.what();
  EXPECT_EQ(e.exit_code(), 3);
  EXPECT_TRUE(registry.list().empty()) << "a failed plugin left components behind";
}

TEST(Loader, NameIsUnknownBeforeLoadingAndResolvableAfter) {
  ktf::Registry registry;
  EXPECT_EQ(registry.find(ktf::Kind::Loss, "test.fixture.GoodLoss"), nullptr);
  ktf::PluginLoader loader(registry);
  const auto& info = loader.load(fixture("good_plugin"));
  EXPECT_EQ(info.name, "fixture_good");
  EXPECT_EQ(info.version, "1.0.0");
  EXPECT_EQ(info.components, std::vector<std::string>{"loss test.fixture.GoodLoss"});
  const auto* def = registry.find(ktf::Kind::Loss, "test.fixture.GoodLoss");
  ASSERT_NE(def, nullptr);
  EXPECT_EQ(def->spec.plugin, "fixture_good");
  EXPECT_EQ(def->spec.plugin_path, fixture("good_plugin"));
  ktf::BuildContext ctx(registry);
  auto loss = std::static_pointer_cast<ktf::Loss>(
      ctx.build_any(ktf::Kind::Loss, "test.fixture.GoodLoss", ktf::Json::object(), {}));
  EXPECT_EQ(loss->compute(torch::ones({2, 2}), torch::zeros({2})).item<float>(), 0.0f);
  // The same plugin twice is refused.
  try {
    loader.load(fixture("good_plugin"));
    FAIL();
  } catch (const ktf::PluginError& e) {
    EXPECT_EQ(e.stage(), "duplicate");
  }
}

TEST(Loader, MissingEntryPoint) {
  expect_stage(fixture("missing_entry"), "entry", "no 'ktf_plugin_descriptor' symbol");
}

TEST(Loader, WrongAbiNamesBothVersions) {
  expect_stage(fixture("wrong_abi"), "abi", "plugin ABI 999, host ABI 7");
}

TEST(Loader, UnresolvedSymbolFailsAtOpen) {
  expect_stage(fixture("unresolved_symbol"), "open", "ktf_fixture_function_that_does_not_exist");
}

TEST(Loader, RegistrationThatThrows) {
  expect_stage(fixture("throwing_register"), "register", "fixture registration failure: bad table");
}

TEST(Loader, DuplicateNameAcrossPlugins) {
  ktf::Registry registry;
  ktf::PluginLoader loader(registry);
  loader.load(fixture("duplicate_a"));
  try {
    loader.load(fixture("duplicate_b"));
    FAIL();
  } catch (const ktf::PluginError& e) {
    EXPECT_EQ(e.stage(), "duplicate");
    EXPECT_EQ(e.file(), fixture("duplicate_b"));
    EXPECT_EQ(e.reason(),
              "loss 'test.fixture.DuplicateLoss' is already registered by plugin "
              "'fixture_duplicate_a' (" +
                  fixture("duplicate_a") + ")");
  }
  EXPECT_EQ(registry.list().size(), 1u);
}

TEST(Loader, NonPluginSharedLibrary) {
  expect_stage("/usr/lib/x86_64-linux-gnu/libz.so.1", "entry", "not a ktf plugin");
}

TEST(Loader, EmptyFileNamedSo) {
  std::string path = ktf::test::scratch_dir("loader_empty") + "/empty.so";
  std::ofstream(path).close();
  expect_stage(path, "open", "file too short");
}

TEST(Loader, MissingFile) { expect_stage("/nonexistent/libnothing.so", "open", "no such file"); }

}  // namespace
