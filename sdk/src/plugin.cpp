#include "ktf/plugin.h"

namespace ktf {

const PluginDescriptor& host_descriptor() {
  static const PluginDescriptor d{KTF_ABI_VERSION, static_cast<uint32_t>(sizeof(PluginDescriptor)),
                                  KTF_SDK_VERSION, KTF_TORCH_VERSION_STRING,
                                  KTF_BUILD_TAG,   KTF_CXX11_ABI,
                                  KTF_WITH_CUDA,   "ktf-host",
                                  KTF_SDK_VERSION, "ktf host",
                                  nullptr};
  return d;
}

}  // namespace ktf
