#include <gtest/gtest.h>
#include <ktf/build_info.h>
#include <ktf/plugin_loader.h>

#include <sys/stat.h>

#include <filesystem>
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
  // The same file again is the plugin already loaded; another file of the same plugin is refused.
  EXPECT_EQ(&loader.load(fixture("good_plugin")), &loader.plugins().front());
  EXPECT_EQ(registry.list().size(), 1u);
  const std::string copy = ktf::test::scratch_dir("loader_copy") + "/libcopy.so";
  std::filesystem::copy_file(fixture("good_plugin"), copy);
  try {
    loader.load(copy);
    FAIL();
  } catch (const ktf::PluginError& e) {
    EXPECT_EQ(e.stage(), "duplicate");
  }
}

TEST(Loader, MissingEntryPoint) {
  expect_stage(fixture("missing_entry"), "entry", "no 'ktf_plugin_descriptor' symbol");
}

TEST(Loader, WrongAbiNamesBothVersions) {
  expect_stage(fixture("wrong_abi"), "abi",
               "plugin ABI 999, host ABI " + std::to_string(KTF_ABI_VERSION));
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
  expect_stage(path, "open", "not an ELF shared library (0 bytes, no ELF header)");
}

TEST(Loader, MissingFile) { expect_stage("/nonexistent/libnothing.so", "open", "no such file"); }

/// A copy of the good fixture plugin in a fresh directory, for the file checks below.
std::string copy_of_good_plugin(const std::string& dir_name) {
  const std::string dir = ktf::test::scratch_dir(dir_name);
  const std::string path = dir + "/libcopy.so";
  std::filesystem::copy_file(fixture("good_plugin"), path);
  std::filesystem::permissions(path, std::filesystem::perms(0755));
  return path;
}

TEST(Loader, AFileCutShortIsRefusedBeforeDlopen) {
  // dlopen of a truncated library dies of SIGBUS when it touches a page past the end.
  const std::string path = copy_of_good_plugin("loader_cut");
  std::filesystem::resize_file(path, std::filesystem::file_size(path) / 2);
  expect_stage(path, "open", "the file is cut short (");
  std::ofstream(path, std::ios::trunc) << "#!/bin/sh\necho not a library\n";
  expect_stage(path, "open", "not an ELF shared library");
}

TEST(Loader, PluginsOthersMayWriteAreRefusedWithTheFix) {
  const std::string path = copy_of_good_plugin("loader_modes");
  std::filesystem::permissions(path, std::filesystem::perms(0666));
  expect_stage(path, "open",
               "the file is writable by other users (mode 0666): anyone who can write it can "
               "make ktf-host run their code; fix with: chmod go-w '" +
                   path + "'");
  std::filesystem::permissions(path, std::filesystem::perms(0755));
  const std::string dir = std::filesystem::path(path).parent_path().string();
  std::filesystem::permissions(dir, std::filesystem::perms(0777));
  expect_stage(path, "open", "its directory '" + dir + "' is writable by other users (mode 0777)");
  std::filesystem::permissions(dir, std::filesystem::perms(01777));  // sticky, as /tmp: others
  ktf::Registry registry;                                            // cannot replace the file
  ktf::PluginLoader(registry).load(path);
  EXPECT_EQ(registry.list().size(), 1u);
  std::filesystem::permissions(dir, std::filesystem::perms(0755));
}

TEST(Loader, AFifoADataDescriptorAndAnEmptyDirectoryAreRefused) {
  const std::string dir = ktf::test::scratch_dir("loader_special");
  const std::string fifo = dir + "/libfifo.so";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
  expect_stage(fifo, "open", "not a regular file (a FIFO)");  // and no hang
  expect_stage(fixture("data_descriptor"), "entry",
               "'ktf_plugin_descriptor' is not a function (a data symbol of that name)");
  const std::string empty = ktf::test::scratch_dir("loader_empty_dir");
  ktf::Registry registry;
  try {
    ktf::PluginLoader(registry).load_all({empty});
    ADD_FAILURE() << "an empty --plugins directory was accepted";
  } catch (const ktf::PluginError& e) {
    EXPECT_EQ(std::string(e.what()),
              "plugin '" + empty + "': open: the directory holds no plugin (no *.so file in it)");
  }
  // Default directories may be empty.
  ktf::PluginLoader(registry).load_all({empty}, /*skip_loaded_names=*/true);
}

TEST(Loader, OneFileThroughLinksIsLoadedOnce) {
  const std::string path = copy_of_good_plugin("loader_links");
  const std::string link = std::filesystem::path(path).parent_path().string() + "/liblink.so";
  std::filesystem::create_symlink(path, link);
  ktf::Registry registry;
  ktf::PluginLoader loader(registry);
  loader.load_all({path, link, std::filesystem::path(path).parent_path().string()});
  EXPECT_EQ(loader.plugins().size(), 1u);
  EXPECT_EQ(registry.list().size(), 1u);
}

}  // namespace
