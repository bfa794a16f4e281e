// The networks plugin: networks, reusable network components (layers, blocks) and model
// containers a config can name under "model".
#include <ktf/plugin.h>

#include "networks.h"

namespace {
void register_all(ktf::Registrar& r) {
  ktf::networks::register_layers(r);
  ktf::networks::register_sequential(r);
  ktf::networks::register_mlp(r);
  ktf::networks::register_resnet(r);
  ktf::networks::register_mobilenet_v2(r);
  ktf::networks::register_heads(r);
}
}  // namespace

KTF_PLUGIN(
    "ktf_networks", KTF_SDK_VERSION,
    "Networks: MLP, Sequential (ktf.layers.*), ResNet, MobileNetV2, OneHeadNet, MultiHeadNet",
    register_all)
