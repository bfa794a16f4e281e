// ktf/plugin.h — the plugin contract: one exported function returning a versioned descriptor.
//
// A plugin is a MODULE library built with ktf_add_plugin(). Its only exported symbol is
// `ktf_plugin_descriptor`, emitted by KTF_PLUGIN. Nothing registers in static constructors: the
// host opens the file, checks the descriptor against its own (ABI number, libtorch version, C++
// ABI flag, CUDA or not), then calls the register function into a staging Registrar.
//
//   namespace {
//   void register_all(ktf::Registrar& r) {
//     register_my_model(r);  // each defined at the end of its own .cpp
//     register_my_loss(r);
//   }
//   }  // namespace
//   KTF_PLUGIN("my_plugin", "1.0.0", "MyCustomModel and its loss", register_all)
#pragma once

#include <cstdint>
#include <exception>
#include <string>

#include "ktf/build_info.h"
#include "ktf/registry.h"

namespace ktf {

/// What a plugin tells the host about itself. Layout is fixed for a given KTF_ABI_VERSION; the
/// first two fields never move so any host can read the ABI number of any plugin.
struct PluginDescriptor {
  uint32_t abi_version;
  uint32_t descriptor_size;
  const char* sdk_version;    ///< KTF_SDK_VERSION the plugin was built against
  const char* torch_version;  ///< libtorch "major.minor" it was built against
  const char* build_tag;      ///< compiler, C++ ABI flag, CUDA or not
  int cxx11_abi;              ///< _GLIBCXX_USE_CXX11_ABI: must match the host
  int with_cuda;              ///< built against a CUDA libtorch: must match the host
  const char* name;
  const char* version;
  const char* description;
  /// Registers every component into `registrar`. Never throws: on failure returns false and
  /// writes the reason into `error`.
  bool (*register_components)(Registrar& registrar, std::string& error) noexcept;
};

namespace detail {
template <class F>
bool call_register(F&& fn, Registrar& registrar, std::string& error) noexcept {
  try {
    fn(registrar);
    return true;
  } catch (const std::exception& e) {
    error = e.what();
  } catch (...) {
    error = "unknown exception";
  }
  return false;
}
}  // namespace detail

/// The descriptor of the host (or any code built against this SDK), for comparisons.
const PluginDescriptor& host_descriptor();

}  // namespace ktf

/// Emits the plugin entry point. REGISTER_FN is a function `void(ktf::Registrar&)`.
#define KTF_PLUGIN(NAME, VERSION, DESCRIPTION, REGISTER_FN)                        \
  extern "C" __attribute__((visibility("default"))) const ::ktf::PluginDescriptor* \
  ktf_plugin_descriptor() noexcept {                                               \
    static const ::ktf::PluginDescriptor descriptor{                               \
        KTF_ABI_VERSION,                                                           \
        static_cast<uint32_t>(sizeof(::ktf::PluginDescriptor)),                    \
        KTF_SDK_VERSION,                                                           \
        KTF_TORCH_VERSION_STRING,                                                  \
        KTF_BUILD_TAG,                                                             \
        KTF_CXX11_ABI,                                                             \
        KTF_WITH_CUDA,                                                             \
        NAME,                                                                      \
        VERSION,                                                                   \
        DESCRIPTION,                                                               \
        [](::ktf::Registrar& registrar, std::string& error) noexcept -> bool {     \
          return ::ktf::detail::call_register(REGISTER_FN, registrar, error);      \
        }};                                                                        \
    return &descriptor;                                                            \
  }
