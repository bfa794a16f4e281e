// The losses plugin: every loss a config can name under "loss".
#include <ktf/plugin.h>

#include "losses.h"

namespace {
void register_all(ktf::Registrar& r) {
  ktf::losses::register_cross_entropy(r);
  ktf::losses::register_binary_cross_entropy(r);
  ktf::losses::register_regression(r);
  ktf::losses::register_triplet_margin(r);
}
}  // namespace

KTF_PLUGIN("ktf_losses", KTF_SDK_VERSION, "Losses: cross-entropy, BCE, MSE, L1, Huber, triplet",
           register_all)
