// Test support: loads the in-tree plugins (built into KTF_TEST_PLUGIN_DIR) once per process into
// the global registry, so tests build components by config name exactly as ktf-host does.
#pragma once

#include "paths.h"

#include <ktf/json.h>
#include <ktf/plugin_loader.h>
#include <ktf/registry.h>

#include <memory>
#include <string>

namespace ktf::test {

/// The global registry with every in-tree plugin loaded.
Registry& plugins();
/// Directory of the built plugins.
std::string plugin_dir();
/// Builds a component of `kind` from {"<name>": {<args>}} (validated and defaults filled first).
std::shared_ptr<void> build(Kind kind, const Json& component, BuildContext* ctx = nullptr);
template <class Base>
std::shared_ptr<Base> build(const Json& component, BuildContext* ctx = nullptr) {
  return std::static_pointer_cast<Base>(build(KindOf<Base>::value, component, ctx));
}
/// Path of the Fashion-MNIST directory from Debian's dataset-fashion-mnist.
inline std::string fashion_mnist_dir() { return "/usr/share/datasets/fashion-mnist"; }
/// Result of running a shell command.
struct CommandResult {
  int exit_code = -1;
  std::string output;  ///< stdout and stderr together
};
/// Runs `command` with /bin/sh, capturing stdout and stderr.
CommandResult run_command(const std::string& command);

/// A fresh empty directory under the build tree's test scratch area.
std::string scratch_dir(const std::string& name);

/// A small synthetic classification run for ktf-host tests: 2 cycles of one short epoch each
/// (128 examples of 8 features, 4 classes, an MLP); cycle 2 trains with SGD at 0.01.
inline const char* const kTwoShortCycles = R"([
  { "datasets": {"ktf.datasets.synthetic": {"num_examples": 128, "num_valid": 32, "num_classes": 4,
                                            "input_shape": [8], "batch_size": 32}},
    "model": {"ktf.networks.MLP": {"num_outputs": 4, "hidden": [16]}},
    "loss": {"tf.keras.losses.SparseCategoricalCrossentropy": {"from_logits": true}},
    "metrics": [{"tf.keras.metrics.SparseCategoricalAccuracy": {}}],
    "train_loop": {"ktf.train.KerasTrainLoop": {"num_epochs": 1, "verbose": 0}},
  },
  { "optimizer": {"ktf.optimizers.SGD": {"learning_rate": 0.01}} },
])";

}  // namespace ktf::test
