// ktf-bench-cuda-loss: checks the CUDA kernel plugin's loss against libtorch's and times both.
// Loads the plugins of PLUGIN_DIR, builds ktf.losses.FusedCrossEntropy (plugins/cuda) and the
// reference ktf.losses.CrossEntropy with the same label smoothing, and for each [batch, classes]
// shape compares the loss and the logits' gradient (max abs difference), then times forward +
// backward of each (CUDA events, after a warm-up).
//
//   ktf-bench-cuda-loss PLUGIN_DIR [ITERATIONS]
//
// Prints one JSON line per shape; exits 1 when a difference exceeds the tolerance (1e-5 relative
// to the largest value), 2 without a GPU or the plugin.
#include <ktf/environment.h>
#include <ktf/plugin_loader.h>

#include <chrono>
#include <iostream>

namespace {

struct Timed {
  torch::Tensor loss, grad;
  double ms = 0;
};

Timed run(ktf::Loss& loss, const torch::Tensor& logits, const torch::Tensor& target, int iters) {
  auto x = logits.detach().requires_grad_(true);
  auto once = [&] {
    x.mutable_grad() = torch::Tensor();
    auto l = loss.compute(x, target);
    l.backward();
    return l;
  };
  for (int i = 0; i < 10; ++i) once();
  torch::cuda::synchronize();
  const auto start = std::chrono::steady_clock::now();
  torch::Tensor l;
  for (int i = 0; i < iters; ++i) l = once();
  torch::cuda::synchronize();
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return {l.detach(), x.grad().detach().clone(), ms / iters};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: ktf-bench-cuda-loss PLUGIN_DIR [ITERATIONS]\n";
    return 2;
  }
  const int iters = argc > 2 ? std::stoi(argv[2]) : 200;
  try {
    if (!torch::cuda::is_available()) {
      std::cerr << "ktf-bench-cuda-loss: no GPU is visible\n";
      return 2;
    }
    auto& registry = ktf::Registry::global();
    ktf::PluginLoader(registry).load_all({argv[1]});
    ktf::BuildContext ctx(registry);
    ctx.device = torch::kCUDA;
    const double smoothing = 0.1;
    const auto args = ktf::Json::object({{"label_smoothing", smoothing}});
    auto fused = ctx.build(ktf::Ref<ktf::Loss>{"ktf.losses.FusedCrossEntropy", args, {}});
    auto reference = ctx.build(ktf::Ref<ktf::Loss>{"ktf.losses.CrossEntropy", args, {}});
    torch::manual_seed(0);
    bool ok = true;
    for (auto [n, c] : {std::pair<int64_t, int64_t>{256, 10}, {4096, 10}, {1024, 1000}}) {
      auto logits = torch::randn({n, c}, torch::device(torch::kCUDA)) * 3;
      auto target = torch::randint(0, c, {n}, torch::device(torch::kCUDA).dtype(torch::kLong));
      const Timed a = run(*fused, logits, target, iters);
      const Timed b = run(*reference, logits, target, iters);
      const double loss_diff = (a.loss - b.loss).abs().item<double>();
      const double grad_diff = (a.grad - b.grad).abs().max().item<double>();
      const double tol_loss = 1e-5 * std::max(1.0, b.loss.abs().item<double>());
      const double tol_grad = 1e-5 * std::max(1e-3, b.grad.abs().max().item<double>());
      const bool equal = loss_diff <= tol_loss && grad_diff <= tol_grad;
      ok &= equal;
      std::cout << ktf::Json::object({{"batch", n},
                                      {"classes", c},
                                      {"loss_abs_diff", loss_diff},
                                      {"grad_max_abs_diff", grad_diff},
                                      {"equal_within_tolerance", equal},
                                      {"fused_ms", a.ms},
                                      {"reference_ms", b.ms},
                                      {"speedup", b.ms / a.ms}})
                       .dump()
                << std::endl;
    }
    return ok ? 0 : 1;
  } catch (const ktf::Error& e) {
    std::cerr << "ktf-bench-cuda-loss: " << e.what() << "\n";
    return e.exit_code();
  }
}
