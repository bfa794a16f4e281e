// Training from C++ without a plugin: register your own component in-process, then run a config,
// as the original tool's users wrote a few lines of Python with @ktf.train.export_config.
//
//   train_in_cpp PLUGIN_DIR OUTPUT_DIR
//
// The in-tree plugins provide the dataset, loss, optimizer and train loop; the model is defined
// right here.
#include <ktf/engine.h>
#include <ktf/plugin_loader.h>

#include <iostream>

namespace {

struct MyModelOptions {
  int64_t num_outputs = 10;  ///< classes
  int64_t hidden = 64;       ///< hidden units
};

struct MyModelImpl : ktf::Network {
  MyModelImpl(const MyModelOptions& o, const std::vector<int64_t>& input_shape) {
    int64_t in = 1;
    for (int64_t d : input_shape) in *= d;
    fc1 = register_module("fc1", torch::nn::Linear(in, o.hidden));
    fc2 = register_module("fc2", torch::nn::Linear(o.hidden, o.num_outputs));
  }
  torch::Tensor forward(torch::Tensor x) override { return fc2(torch::relu(fc1(x.flatten(1)))); }
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(MyModel);

}  // namespace

int main(int argc, char** argv) {
  // Where Debian's OpenBLAS runs kernels for an older CPU than this one, re-executes this program
  // once with the right ones (what ktf-host does before it loads libtorch). See
  // docs/performance.md.
  ktf::use_best_cpu_kernels(argc, argv);
  if (argc != 3) {
    std::cerr << "usage: train_in_cpp PLUGIN_DIR OUTPUT_DIR\n";
    return 2;
  }
  try {
    ktf::PluginLoader(ktf::Registry::global()).load_all({argv[1]});
    ktf::register_component(
        ktf::define<ktf::Network, MyModelOptions>("MyCustomModel", "a two-layer perceptron")
            .arg("num_outputs", &MyModelOptions::num_outputs, "number of classes")
            .arg("hidden", &MyModelOptions::hidden, "hidden units")
            .example(ktf::Json::object(), {1, 8, 8})
            .build([](const MyModelOptions& o, ktf::BuildContext& ctx) {
              return MyModel(o, ctx.input_shape).ptr();
            }));

    ktf::RunOptions options;
    options.output_dir = argv[2];
    options.seed = 1;
    auto result = ktf::Environment(options).run(ktf::Json::parse(R"([
      {
        "datasets": {"ktf.datasets.synthetic": {"num_examples": 2048, "num_valid": 512,
                                                "input_shape": [1, 8, 8], "num_classes": 4,
                                                "batch_size": 64}},
        "model": {"MyCustomModel": {"num_outputs": 4}},
        "loss": {"tf.keras.losses.SparseCategoricalCrossentropy": {"from_logits": true}},
        "metrics": [{"tf.keras.metrics.SparseCategoricalAccuracy": {}}],
        "optimizer": {"tf.keras.optimizers.Adam": {"learning_rate": 0.005}},
        "train_loop": {"ktf.train.KerasTrainLoop": {"num_epochs": 3, "verbose": 2}},
      }
    ])"));
    double accuracy = ktf::find_log(result.cycles.back().logs, "val_accuracy").value_or(0);
    std::cout << "final val_accuracy " << accuracy << "\n";
    return accuracy > 0.9 ? 0 : 1;
  } catch (const ktf::Error& e) {
    std::cerr << "train_in_cpp: " << e.what() << "\n";
    return e.exit_code();
  }
}
