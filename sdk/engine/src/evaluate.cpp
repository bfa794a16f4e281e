#include "ktf/evaluate.h"

#include <fstream>
#include <iomanip>
#include <iostream>

#include "ktf/config.h"
#include "ktf/cycle.h"
#include "ktf/environment.h"
#include "ktf/network.h"
#include "ktf/train.h"

namespace ktf {
namespace fs = std::filesystem;

TrainedCycle load_trained_cycle(const fs::path& run_dir, int cycle,
                                const std::vector<std::string>& overrides,
                                const std::string& device_name, int threads,
                                const std::string& memory_format, Registry& registry) {
  fs::path config_path = run_dir / "config.resolved.json";
  if (!fs::exists(config_path))
    throw Error("'" + run_dir.string() + "' is not a ktf run directory (no config.resolved.json)");
  Json config = Json::parse_file(config_path.string());
  for (const auto& o : overrides) apply_override(config, o);
  Json cycles = resolve_config(config, registry);
  int n = static_cast<int>(cycles.size());
  int k = cycle == 0 ? n : cycle;
  if (k < 1 || k > n)
    throw Error("--cycle " + std::to_string(cycle) + ": the run has " + std::to_string(n) +
                " cycle(s)");
  fs::path weights = run_dir / "weights" / ("cycle-" + std::to_string(k) + ".pt");
  if (!fs::exists(weights))
    throw Error("no weights for cycle " + std::to_string(k) + ": '" + weights.string() +
                "' does not exist");
  const torch::Device device = resolve_device(device_name);
  configure_threads(threads);
  BuildSettings settings;
  settings.device = device;
  settings.run_dir = run_dir;
  settings.memory_format = memory_format;
  CycleBuilder builder(registry, settings);
  TrainedCycle out{builder.build(cycles, static_cast<size_t>(k - 1), BuildStage::Evaluation), k,
                   weights, device, torch::MemoryFormat::Contiguous};
  auto model = out.cycle.model;
  // libtorch's load takes each tensor's shape from the file: compare with the model the config
  // builds, so weights of another model are refused, naming the first tensor that differs.
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
  for (const auto& p : model->named_parameters())
    shapes.emplace_back(p.key(), p.value().sizes().vec());
  for (const auto& b : model->named_buffers())
    shapes.emplace_back(b.key(), b.value().sizes().vec());
  try {
    auto module = std::static_pointer_cast<torch::nn::Module>(model);
    torch::load(module, weights.string());
  } catch (const c10::Error& e) {
    std::string msg = e.what_without_backtrace();
    throw Error("cannot load weights '" + weights.string() +
                "' into the model built from the run's config: " + msg.substr(0, msg.find('\n')));
  }
  auto params = model->named_parameters();
  auto buffers = model->named_buffers();
  for (const auto& [name, before] : shapes) {
    const torch::Tensor* t = params.find(name);
    if (!t) t = buffers.find(name);
    if (t && t->sizes().vec() != before)
      throw Error("weights '" + weights.string() +
                  "' do not match the model built from the run's "
                  "config: '" +
                  name + "' has shape " + shape_str(t->sizes().vec()) + " in the file and " +
                  shape_str(before) + " in the model");
  }
  model->to(device);
  out.format = choose_memory_format(*model, memory_format);
  model->eval();
  return out;
}

EvaluateResult evaluate(const EvaluateOptions& options, Registry& registry) {
  TrainedCycle trained =
      load_trained_cycle(options.run_dir, options.cycle, options.overrides, options.device,
                         options.threads, options.memory_format, registry);
  const Cycle& built = trained.cycle;
  const int k = trained.k;
  const fs::path& weights = trained.weights;
  const torch::Device device = trained.device;
  const auto format = trained.format;
  const std::string& label = built.label;
  auto dataset = built.dataset;
  auto model = built.model;
  auto loss = built.loss;
  auto& metrics = built.metrics;

  auto stream = dataset->valid();
  if (!stream) throw Error("the dataset has no validation split to evaluate", {label, "datasets"});

  EvaluateResult result;
  result.predictions = options.predictions.empty()
                           ? options.run_dir / ("predictions-cycle-" + std::to_string(k) + ".csv")
                           : options.predictions;
  std::ofstream csv(result.predictions);
  if (!csv) throw Error("cannot write '" + result.predictions.string() + "'", {}, kExitRuntime);
  csv << std::setprecision(6);

  for (auto& m : metrics) m->reset();
  torch::Tensor loss_sum =
      torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble).device(device));
  bool header = false;
  torch::InferenceMode guard;
  stream->start_epoch(0);
  while (auto batch = stream->next()) {
    auto x = to_device(batch->input, device, format), y = to_device(batch->target, device);
    auto out = model->forward(x);
    int64_t bs = x.size(0);
    loss_sum += loss->compute(out, y).to(torch::kDouble) * bs;
    for (auto& m : metrics) m->update(out, y);
    auto out_cpu = out.to(torch::kCPU).to(torch::kFloat).reshape({bs, -1});
    auto y_cpu = y.to(torch::kCPU).reshape({bs, -1}).to(torch::kDouble);
    bool classes = out.dim() == 2 && y.dim() == 1;
    auto scores = classes ? torch::softmax(out_cpu, 1) : out_cpu;
    if (!header) {
      csv << "index,target";
      if (classes) csv << ",predicted";
      for (int64_t c = 0; c < scores.size(1); ++c) csv << (classes ? ",p" : ",out") << c;
      csv << "\n";
      header = true;
    }
    auto pred = classes ? scores.argmax(1) : torch::Tensor();
    auto s = scores.accessor<float, 2>();
    auto t = y_cpu.accessor<double, 2>();
    for (int64_t i = 0; i < bs; ++i) {
      csv << result.examples + i << ",";
      for (int64_t j = 0; j < t.size(1); ++j) csv << (j ? " " : "") << t[i][j];
      if (classes) csv << "," << pred[i].item<int64_t>();
      for (int64_t c = 0; c < s.size(1); ++c) csv << "," << s[i][c];
      csv << "\n";
    }
    result.examples += bs;
  }
  if (result.examples == 0) throw Error("the validation split is empty", {label, "datasets"});
  result.logs.emplace_back("loss", loss_sum.item<double>() / static_cast<double>(result.examples));
  for (auto& m : metrics) result.logs.emplace_back(m->name(), m->compute());

  Json summary =
      Json::object({{"cycle", k}, {"weights", weights.string()}, {"examples", result.examples}});
  for (const auto& [key, v] : result.logs) summary.set(key, v.to_json());
  std::ofstream(options.run_dir / ("evaluation-cycle-" + std::to_string(k) + ".json"))
      << summary.dump(2) << "\n";
  if (!options.quiet) {
    std::cout << "evaluate: cycle " << k << ", " << result.examples << " examples";
    for (const auto& [key, v] : result.logs)
      std::cout << " - " << key << ": " << std::fixed << std::setprecision(4) << v.value();
    std::cout << "\nevaluate: predictions written to " << result.predictions.string() << std::endl;
  }
  return result;
}

}  // namespace ktf
