// ktf/plugin_loader.h — loading plugin files into a Registry.
//
//   ktf::PluginLoader loader(ktf::Registry::global());
//   loader.load_all({"build/plugins"});   // directories are scanned for *.so, sorted
//
// Each failure is a PluginError whose what() is "plugin '<path>': <stage>: <reason>" with stage
// one of open, entry, abi, register, duplicate; ktf-host prints it after "ktf-host: " and exits 3.
// Loaded libraries are never unloaded.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "ktf/error.h"
#include "ktf/registry.h"

namespace ktf {

class PluginError : public Error {
 public:
  PluginError(std::string path, std::string stage, std::string reason);
  const std::string& file() const { return file_; }
  const std::string& stage() const { return stage_; }
  const std::string& reason() const { return reason_; }

 private:
  std::string file_, stage_, reason_;
};

struct LoadedPlugin {
  std::string path;
  std::string name;
  std::string version;
  std::string description;
  std::string sdk_version;
  std::string torch_version;
  std::string build_tag;
  std::string hash;                     ///< FNV-1a 64 of the file, hex
  std::vector<std::string> components;  ///< "kind name" of everything it registered
};

class PluginLoader {
 public:
  explicit PluginLoader(Registry& registry) : registry_(registry) {}

  /// Loads one plugin file. Throws PluginError.
  const LoadedPlugin& load(const std::filesystem::path& file);
  /// Loads files and every *.so of directories (sorted). A plugin whose name is already loaded
  /// from an earlier source is skipped when `skip_loaded_names` (used for the default directory).
  void load_all(const std::vector<std::string>& sources, bool skip_loaded_names = false);
  const std::vector<LoadedPlugin>& plugins() const { return plugins_; }
  /// The plugins as JSON (written to the run directory as plugins.json).
  Json to_json() const;

 private:
  Registry& registry_;
  std::vector<LoadedPlugin> plugins_;
};

/// Plugin directory of the installed ktf this program belongs to (<prefix>/lib/ktf/plugins next
/// to <prefix>/bin), or "" when there is none; and the KTF_PLUGIN_PATH entries.
std::string installed_plugin_dir();
std::vector<std::string> plugin_path_from_env();

}  // namespace ktf
