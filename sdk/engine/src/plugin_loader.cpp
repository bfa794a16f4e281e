#include "ktf/plugin_loader.h"

#define BOOST_DLL_USE_STD_FS
#include <dlfcn.h>
#include <boost/dll/shared_library.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <set>

#include "ktf/plugin.h"

#ifndef KTF_INSTALL_LIBDIR
#define KTF_INSTALL_LIBDIR "lib"
#endif

namespace ktf {
namespace {

constexpr const char* kEntryPoint = "ktf_plugin_descriptor";

// Libraries stay loaded for the life of the process: objects they made may outlive any registry.
std::vector<std::unique_ptr<boost::dll::shared_library>>& loaded_libraries() {
  static auto* libs = new std::vector<std::unique_ptr<boost::dll::shared_library>>();
  return *libs;
}

std::string file_hash(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  uint64_t h = 1469598103934665603ull;
  char buf[1 << 16];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    for (std::streamsize i = 0; i < in.gcount(); ++i) {
      h ^= static_cast<unsigned char>(buf[i]);
      h *= 1099511628211ull;
    }
  }
  char out[17];
  std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(h));
  return out;
}

std::string str(const char* s) { return s ? s : ""; }

}  // namespace

PluginError::PluginError(std::string path, std::string stage, std::string reason)
    : Error("plugin '" + path + "': " + stage + ": " + reason, {}, kExitPlugin),
      file_(std::move(path)),
      stage_(std::move(stage)),
      reason_(std::move(reason)) {}

const LoadedPlugin& PluginLoader::load(const std::filesystem::path& file) {
  const std::string path = file.string();
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) throw PluginError(path, "open", "no such file");
  if (std::filesystem::is_directory(file, ec)) throw PluginError(path, "open", "is a directory");

  auto lib = std::make_unique<boost::dll::shared_library>();
  boost::dll::fs::error_code load_ec;
  lib->load(file, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local, load_ec);
  if (load_ec || !lib->is_loaded()) {
    // dlerror() has the loader's own words (unresolved symbol, not an ELF file, too short...).
    std::string reason = load_ec.message();
    if (const char* why = ::dlerror()) reason = why;
    throw PluginError(path, "open", reason);
  }
  if (!lib->has(kEntryPoint)) {
    throw PluginError(path, "entry",
                      std::string("no '") + kEntryPoint +
                          "' symbol: not a ktf plugin (build it with ktf_add_plugin() and "
                          "KTF_PLUGIN(...))");
  }
  using EntryFn = const PluginDescriptor*() noexcept;
  const PluginDescriptor* d = lib->get<EntryFn>(kEntryPoint)();
  if (!d) throw PluginError(path, "entry", std::string(kEntryPoint) + "() returned null");

  const PluginDescriptor& host = host_descriptor();
  if (d->abi_version != host.abi_version) {
    throw PluginError(path, "abi",
                      "plugin ABI " + std::to_string(d->abi_version) + ", host ABI " +
                          std::to_string(host.abi_version) + " (rebuild the plugin against ktf " +
                          host.sdk_version + ")");
  }
  if (d->descriptor_size != host.descriptor_size) {
    throw PluginError(path, "abi",
                      "descriptor size " + std::to_string(d->descriptor_size) + ", host expects " +
                          std::to_string(host.descriptor_size));
  }
  if (str(d->torch_version) != host.torch_version) {
    throw PluginError(path, "abi",
                      "plugin built against libtorch " + str(d->torch_version) +
                          ", host uses libtorch " + host.torch_version);
  }
  if (d->cxx11_abi != host.cxx11_abi || d->with_cuda != host.with_cuda) {
    throw PluginError(path, "abi",
                      "plugin build '" + str(d->build_tag) + "', host build '" + host.build_tag +
                          "' (C++ ABI flag and CUDA must match)");
  }
  std::string sdk = str(d->sdk_version);
  std::string host_sdk = host.sdk_version;
  if (sdk.substr(0, sdk.find('.')) != host_sdk.substr(0, host_sdk.find('.'))) {
    throw PluginError(path, "abi",
                      "plugin built against ktf SDK " + sdk + ", host SDK " + host_sdk);
  }
  if (!d->register_components) throw PluginError(path, "entry", "no register function");
  std::string name = str(d->name);
  if (name.empty()) throw PluginError(path, "entry", "the descriptor has no plugin name");
  for (const auto& p : plugins_) {
    if (p.name == name)
      throw PluginError(path, "duplicate",
                        "plugin '" + name + "' is already loaded from '" + p.path + "'");
  }

  Registrar staged;
  std::string error;
  if (!d->register_components(staged, error)) throw PluginError(path, "register", error);
  try {
    registry_.commit(staged, name, path);
  } catch (const DuplicateError& e) {
    throw PluginError(path, "duplicate", e.message());
  }

  LoadedPlugin info;
  info.path = path;
  info.name = name;
  info.version = str(d->version);
  info.description = str(d->description);
  info.sdk_version = sdk;
  info.torch_version = str(d->torch_version);
  info.build_tag = str(d->build_tag);
  info.hash = file_hash(file);
  for (const auto& c : staged.components())
    info.components.push_back(std::string(kind_name(c.spec.kind)) + " " + c.spec.name);
  loaded_libraries().push_back(std::move(lib));
  plugins_.push_back(std::move(info));
  return plugins_.back();
}

void PluginLoader::load_all(const std::vector<std::string>& sources, bool skip_loaded_names) {
  for (const auto& source : sources) {
    std::filesystem::path p(source);
    std::error_code ec;
    std::vector<std::filesystem::path> files;
    if (std::filesystem::is_directory(p, ec)) {
      for (const auto& entry : std::filesystem::directory_iterator(p, ec))
        if (entry.path().extension() == ".so") files.push_back(entry.path());
      std::sort(files.begin(), files.end());
    } else {
      files.push_back(p);
    }
    for (const auto& f : files) {
      if (skip_loaded_names) {
        // Default directories: skip a plugin already loaded from an explicit source (an installed
        // copy of a plugin being developed from its build tree).
        boost::dll::fs::error_code lec;
        boost::dll::shared_library probe(f, boost::dll::load_mode::rtld_now, lec);
        if (!lec && probe.has(kEntryPoint)) {
          using EntryFn = const PluginDescriptor*() noexcept;
          const PluginDescriptor* d = probe.get<EntryFn>(kEntryPoint)();
          if (d && d->abi_version == KTF_ABI_VERSION &&
              std::any_of(plugins_.begin(), plugins_.end(),
                          [&](const LoadedPlugin& lp) { return lp.name == str(d->name); })) {
            loaded_libraries().push_back(
                std::make_unique<boost::dll::shared_library>(std::move(probe)));
            continue;
          }
        }
        if (!lec)
          loaded_libraries().push_back(
              std::make_unique<boost::dll::shared_library>(std::move(probe)));
      }
      load(f);
    }
  }
}

Json PluginLoader::to_json() const {
  Json::Array out;
  for (const auto& p : plugins_) {
    Json::Array comps;
    for (const auto& c : p.components) comps.push_back(c);
    out.push_back(Json::object({{"name", p.name},
                                {"version", p.version},
                                {"path", std::filesystem::absolute(p.path).string()},
                                {"fnv1a64", p.hash},
                                {"sdk_version", p.sdk_version},
                                {"torch_version", p.torch_version},
                                {"build_tag", p.build_tag},
                                {"components", Json(std::move(comps))}}));
  }
  return Json(std::move(out));
}

std::string installed_plugin_dir() {
  // <prefix>/bin/ktf-host -> <prefix>/<libdir>/ktf/plugins, wherever the prefix was installed.
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "";
  auto dir = exe.parent_path().parent_path() / KTF_INSTALL_LIBDIR / "ktf" / "plugins";
  return std::filesystem::is_directory(dir, ec) ? dir.string() : "";
}

std::vector<std::string> plugin_path_from_env() {
  std::vector<std::string> out;
  const char* env = std::getenv("KTF_PLUGIN_PATH");
  if (!env) return out;
  std::string s = env;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t next = s.find(':', pos);
    std::string part = s.substr(pos, next == std::string::npos ? std::string::npos : next - pos);
    if (!part.empty()) out.push_back(part);
    if (next == std::string::npos) break;
    pos = next + 1;
  }
  return out;
}

}  // namespace ktf
