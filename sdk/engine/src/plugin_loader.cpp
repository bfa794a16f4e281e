#include "ktf/plugin_loader.h"

#define BOOST_DLL_USE_STD_FS
#include <dlfcn.h>
#include <elf.h>
#include <grp.h>
#include <link.h>
#include <pwd.h>
#include <sys/stat.h>

#include <boost/dll/shared_library.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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

#if defined(__x86_64__)
constexpr uint16_t kHostMachine = EM_X86_64;
#elif defined(__aarch64__)
constexpr uint16_t kHostMachine = EM_AARCH64;
#else
constexpr uint16_t kHostMachine = EM_NONE;  // not checked
#endif

/// True when users other than the file's owner may write through the group bit: the group is not
/// the owner's own (a user-private group with no other member, as Debian's umask 002 gives), as
/// Debian's ssh decides for group-writable key files.
bool group_writable_by_others(const struct stat& st) {
  if (!(st.st_mode & S_IWGRP)) return false;
  const struct passwd* owner = ::getpwuid(st.st_uid);
  const struct group* group = ::getgrgid(st.st_gid);
  if (!owner || !group || owner->pw_gid != st.st_gid) return true;
  for (char** member = group->gr_mem; member && *member; ++member)
    if (std::strcmp(*member, owner->pw_name) != 0) return true;
  return false;
}

std::string octal_mode(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

/// What must hold before a file is handed to dlopen (which runs its code and maps it whole): a
/// regular file nobody else may rewrite, in a directory nobody else may swap it in, holding a
/// complete ELF shared object for this machine. dlopen of a file cut short dies of SIGBUS when
/// the loader touches a page past its end; the checks here turn that into a message.
void check_plugin_file(const std::filesystem::path& file, const std::string& path) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) throw PluginError(path, "open", "no such file");
  if (S_ISDIR(st.st_mode)) throw PluginError(path, "open", "is a directory");
  if (!S_ISREG(st.st_mode))
    throw PluginError(path, "open",
                      std::string("not a regular file (") +
                          (S_ISFIFO(st.st_mode)                         ? "a FIFO"
                           : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device"
                                                                        : "a socket") +
                          ")");
  // As ssh refuses a key file others may write: whoever can rewrite the plugin runs code as you.
  if ((st.st_mode & S_IWOTH) || group_writable_by_others(st))
    throw PluginError(path, "open",
                      "the file is writable by other users (mode " + octal_mode(st.st_mode) +
                          "): anyone who can write it can make ktf-host run their code; fix "
                          "with: chmod go-w '" +
                          file.string() + "'");
  const std::filesystem::path dir = file.parent_path().empty() ? "." : file.parent_path();
  struct stat ds {};
  if (::stat(dir.c_str(), &ds) == 0 &&
      (group_writable_by_others(ds) || ((ds.st_mode & S_IWOTH) && !(ds.st_mode & S_ISVTX))))
    throw PluginError(path, "open",
                      "its directory '" + dir.string() + "' is writable by other users (mode " +
                          octal_mode(ds.st_mode) +
                          "): anyone could put another file in its place; fix with: chmod go-w '" +
                          dir.string() + "'");
  const auto size = static_cast<uint64_t>(st.st_size);
  std::ifstream in(file, std::ios::binary);
  Elf64_Ehdr eh{};
  if (!in.read(reinterpret_cast<char*>(&eh), sizeof eh) ||
      std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0)
    throw PluginError(
        path, "open",
        "not an ELF shared library (" + std::to_string(size) + " bytes, no ELF header)");
  if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_type != ET_DYN ||
      (kHostMachine != EM_NONE && eh.e_machine != kHostMachine))
    throw PluginError(path, "open",
                      "not a 64-bit shared library for this machine (ELF type " +
                          std::to_string(eh.e_type) + ", machine " + std::to_string(eh.e_machine) +
                          ")");
  auto beyond = [&](uint64_t offset, uint64_t count, uint64_t entry) {
    return offset > size || count * entry > size - offset;
  };
  const std::string cut = "the file is cut short (" + std::to_string(size) + " bytes): its ";
  if (beyond(eh.e_phoff, eh.e_phnum, eh.e_phentsize) || eh.e_phentsize != sizeof(Elf64_Phdr))
    throw PluginError(path, "open", cut + "program headers end past it");
  if (eh.e_shnum && beyond(eh.e_shoff, eh.e_shnum, eh.e_shentsize))
    throw PluginError(path, "open", cut + "section headers end past it");
  in.seekg(static_cast<std::streamoff>(eh.e_phoff));
  for (uint16_t i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph{};
    if (!in.read(reinterpret_cast<char*>(&ph), sizeof ph))
      throw PluginError(path, "open", cut + "program headers cannot be read");
    if (ph.p_type == PT_LOAD && beyond(ph.p_offset, 1, ph.p_filesz))
      throw PluginError(path, "open",
                        cut + "segment " + std::to_string(i) + " needs " +
                            std::to_string(ph.p_offset + ph.p_filesz) + " bytes");
  }
}

}  // namespace

PluginError::PluginError(std::string path, std::string stage, std::string reason)
    : Error("plugin '" + path + "': " + stage + ": " + reason, {}, kExitPlugin),
      file_(std::move(path)),
      stage_(std::move(stage)),
      reason_(std::move(reason)) {}

const LoadedPlugin& PluginLoader::load(const std::filesystem::path& file) {
  const std::string path = file.string();
  check_plugin_file(file, path);
  // One real file is loaded once, whatever the links or paths that name it.
  std::error_code ec;
  const std::string real = std::filesystem::canonical(file, ec).string();
  for (const auto& p : plugins_) {
    std::error_code pec;
    if (!ec && std::filesystem::canonical(p.path, pec).string() == real && !pec) return p;
  }

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
  // The entry point must be a function: calling a data symbol of that name jumps into data.
  {
    void* address = ::dlsym(lib->native(), kEntryPoint);
    Dl_info info{};
    const ElfW(Sym)* symbol = nullptr;
    if (!address ||
        !::dladdr1(address, &info, reinterpret_cast<void**>(const_cast<ElfW(Sym)**>(&symbol)),
                   RTLD_DL_SYMENT) ||
        !symbol || ELF64_ST_TYPE(symbol->st_info) != STT_FUNC)
      throw PluginError(path, "entry",
                        std::string("'") + kEntryPoint +
                            "' is not a function (a data symbol of that name): not a ktf plugin "
                            "(build it with ktf_add_plugin() and KTF_PLUGIN(...))");
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
      // A directory named on purpose (--plugins) that holds no plugin is a mistake worth saying;
      // the default ones (KTF_PLUGIN_PATH, the installed directory) may be empty.
      if (files.empty() && !skip_loaded_names)
        throw PluginError(source, "open", "the directory holds no plugin (no *.so file in it)");
    } else {
      files.push_back(p);
    }
    for (const auto& f : files) {
      if (skip_loaded_names) {
        check_plugin_file(f, f.string());  // before the probe's dlopen runs anything of it
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
