#include "plugins_fixture.h"

#include <ktf/config.h>

#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <mutex>

namespace ktf::test {

std::string plugin_dir() { return KTF_TEST_PLUGIN_DIR; }

Registry& plugins() {
  static std::once_flag once;
  std::call_once(once, [] {
    static PluginLoader loader(Registry::global());
    loader.load_all({plugin_dir()});
  });
  return Registry::global();
}

std::shared_ptr<void> build(Kind kind, const Json& component, BuildContext* ctx) {
  Registry& registry = plugins();
  Json resolved = resolve_component(component, kind, registry, {});
  auto [name, args] = split_component(resolved);
  if (ctx) return ctx->build_any(kind, name, args, {name});
  BuildContext local(registry);
  return local.build_any(kind, name, args, {name});
}

CommandResult run_command(const std::string& command) {
  CommandResult result;
  std::string full = command + " 2>&1";
  FILE* pipe = ::popen(full.c_str(), "r");
  if (!pipe) return result;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) result.output.append(buf, n);
  int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

std::string scratch_dir(const std::string& name) {
  auto dir = std::filesystem::path(KTF_TEST_SCRATCH_DIR) / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

}  // namespace ktf::test
