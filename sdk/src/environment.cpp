#include "ktf/environment.h"

#include <ATen/Parallel.h>

#include <chrono>
#include <csignal>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <thread>

#include "ktf/config.h"
#include "ktf/train.h"

namespace ktf {
namespace fs = std::filesystem;
namespace {

void on_signal(int) {
  if (TrainContext::interrupted()) {
    std::signal(SIGINT, SIG_DFL);  // a second Ctrl-C ends the process at once
    std::signal(SIGTERM, SIG_DFL);
  }
  request_interrupt(true);
}

std::string shape_string(const torch::Tensor& t) {
  std::ostringstream out;
  out << "[";
  for (int64_t i = 0; i < t.dim(); ++i) out << (i ? ", " : "") << t.size(i);
  out << "]";
  return out.str();
}

fs::path default_run_dir(const std::string& config_name) {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  std::ostringstream name;
  name << config_name << "-" << std::put_time(&tm, "%Y%m%d-%H%M%S");
  fs::path base = fs::path("runs") / name.str();
  fs::path dir = base;
  for (int i = 2; fs::exists(dir); ++i) dir = base.string() + "-" + std::to_string(i);
  return dir;
}

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path);
  if (!out) throw Error("cannot write '" + path.string() + "'", {}, kExitRuntime);
  out << text << "\n";
}

std::string format_logs(const Logs& logs) {
  std::ostringstream out;
  for (size_t i = 0; i < logs.size(); ++i)
    out << (i ? " - " : "") << logs[i].first << ": " << std::setprecision(4) << std::fixed
        << logs[i].second;
  return out.str();
}

/// Copies tensors that match by name and shape from `from` into `to`; returns (copied, total).
std::pair<size_t, size_t> carry_weights(torch::nn::Module& from, torch::nn::Module& to) {
  torch::NoGradGuard no_grad;
  auto src_params = from.named_parameters(true);
  auto src_buffers = from.named_buffers(true);
  size_t copied = 0, total = 0;
  auto copy_matching = [&](auto dst_items, auto& src) {
    for (auto& item : dst_items) {
      ++total;
      if (const torch::Tensor* s = src.find(item.key())) {
        if (s->sizes() == item.value().sizes()) {
          item.value().copy_(*s);
          ++copied;
        }
      }
    }
  };
  copy_matching(to.named_parameters(true), src_params);
  copy_matching(to.named_buffers(true), src_buffers);
  return {copied, total};
}

}  // namespace

int configure_threads(int threads) {
  int n = threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency());
  if (n <= 0) n = 1;
  at::set_num_threads(n);
  return n;
}

Environment::Environment(RunOptions options, Registry& registry)
    : options_(std::move(options)), registry_(registry) {}

torch::Device Environment::device() const {
  const std::string& d = options_.device;
  if (d == "auto") return torch::cuda::is_available() ? torch::Device(torch::kCUDA) : torch::kCPU;
  torch::Device device = torch::kCPU;
  try {
    device = torch::Device(d);
  } catch (const c10::Error&) {
    throw Error("--device '" + d + "': expected auto, cpu, cuda or cuda:N");
  }
  if (device.is_cuda()) {
    if (!torch::cuda::is_available())
      throw Error("--device '" + d +
                  "': CUDA is not available (this libtorch is CPU-only or no GPU is visible)");
    if (device.has_index() && device.index() >= static_cast<int>(torch::cuda::device_count()))
      throw Error("--device '" + d + "': only " + std::to_string(torch::cuda::device_count()) +
                  " CUDA device(s) visible");
  } else if (!device.is_cpu()) {
    throw Error("--device '" + d + "': expected auto, cpu, cuda or cuda:N");
  }
  return device;
}

RunResult Environment::run(Json config) {
  for (const auto& o : options_.overrides) apply_override(config, o);
  // Everything is validated before any data is read or any weight allocated.
  Json cycles = resolve_config(config, registry_);
  torch::Device device = this->device();
  int threads = configure_threads(options_.threads);
  uint64_t seed = options_.seed.value_or(0);
  torch::manual_seed(seed);

  RunResult result;
  result.run_dir =
      options_.output_dir.empty() ? default_run_dir(options_.config_name) : options_.output_dir;
  std::error_code ec;
  fs::create_directories(result.run_dir / "weights", ec);
  if (ec)
    throw Error("cannot create run directory '" + result.run_dir.string() + "': " + ec.message(),
                {}, kExitRuntime);
  write_file(result.run_dir / "config.resolved.json", cycles.dump(2));
  write_file(result.run_dir / "plugins.json", options_.plugins.dump(2));
  auto log_file = std::make_shared<std::ofstream>(result.run_dir / "log.txt", std::ios::app);
  auto metrics_file =
      std::make_shared<std::ofstream>(result.run_dir / "metrics.jsonl", std::ios::app);

  request_interrupt(false);
  auto old_int = std::signal(SIGINT, on_signal);
  auto old_term = std::signal(SIGTERM, on_signal);
  struct RestoreSignals {
    decltype(old_int) i, t;
    ~RestoreSignals() {
      std::signal(SIGINT, i);
      std::signal(SIGTERM, t);
    }
  } restore{old_int, old_term};

  TrainContext base;
  base.quiet = options_.quiet;
  base.run_dir = result.run_dir;
  base.device = device;
  base.seed = seed;
  base.num_cycles = static_cast<int>(cycles.size());
  base.log_sink = [log_file](const std::string& line) { *log_file << line << std::endl; };
  base.log("ktf: run directory " + result.run_dir.string() + ", device " + device.str() + ", " +
           std::to_string(threads) + " threads, seed " + std::to_string(seed));

  std::shared_ptr<Network> model;
  Json model_cfg, dataset_cfg;
  std::shared_ptr<Dataset> dataset;
  const auto& list = cycles.as_array();
  try {
    for (size_t i = 0; i < list.size(); ++i) {
      const Json& cycle = list[i];
      const std::string label = "cycle " + std::to_string(i + 1);
      BuildContext ctx(registry_);
      ctx.device = device;
      ctx.seed = seed + i;
      ctx.run_dir = result.run_dir;
      auto build = [&](const char* key, Kind kind, const Json& component,
                       std::vector<std::string> prefix = {}) {
        auto [name, args] = split_component(component);
        std::vector<std::string> path{label, key};
        path.insert(path.end(), prefix.begin(), prefix.end());
        path.push_back(name);
        return ctx.build_any(kind, name, args, path);
      };

      TrainContext tc = base;
      tc.cycle = static_cast<int>(i);
      tc.builder = &ctx;
      int64_t epochs_run = 0;
      tc.record_sink = [metrics_file, i, &epochs_run](const std::string& phase, int64_t epoch,
                                                      const Logs& logs) {
        if (phase == "epoch") ++epochs_run;
        Json line = Json::object(
            {{"cycle", static_cast<int64_t>(i + 1)}, {"epoch", epoch + 1}, {"phase", phase}});
        for (const auto& [k, v] : logs) line.set(k, v);
        *metrics_file << line.dump() << std::endl;
      };
      tc.log("== " + label + " of " + std::to_string(list.size()) + " ==");

      if (!dataset || cycle.at("datasets") != dataset_cfg) {
        auto start = std::chrono::steady_clock::now();
        dataset = std::static_pointer_cast<Dataset>(
            build("datasets", Kind::Dataset, cycle.at("datasets")));
        dataset_cfg = cycle.at("datasets");
        std::ostringstream took;
        took << std::fixed << std::setprecision(3)
             << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        tc.log(label + ": dataset built in " + took.str() + " s");
      }
      ctx.input_shape = dataset->input_shape();
      ctx.num_classes = dataset->num_classes();

      if (!model || cycle.at("model") != model_cfg) {
        auto fresh =
            std::static_pointer_cast<Network>(build("model", Kind::Network, cycle.at("model")));
        if (model) {
          auto [copied, total] = carry_weights(*model, *fresh);
          tc.log(label + ": model config changed; carried over " + std::to_string(copied) + " of " +
                 std::to_string(total) + " tensors (matched by name and shape)");
        }
        model = fresh;
        model_cfg = cycle.at("model");
      } else if (i > 0) {
        tc.log(label + ": model carried over from cycle " + std::to_string(i) +
               " with its trained weights");
      }
      model->to(device);
      tc.input_format = choose_memory_format(*model, options_.memory_format);
      if (tc.input_format == torch::MemoryFormat::ChannelsLast && i == 0)
        tc.log(label + ": 4-D inputs and weights are channels_last (NHWC)");

      auto loss = std::static_pointer_cast<Loss>(build("loss", Kind::Loss, cycle.at("loss")));
      loss->to(device);
      std::vector<std::shared_ptr<Metric>> metrics;
      const auto& mlist = cycle.at("metrics").as_array();
      for (size_t m = 0; m < mlist.size(); ++m)
        metrics.push_back(std::static_pointer_cast<Metric>(
            build("metrics", Kind::Metric, mlist[m], {"[" + std::to_string(m) + "]"})));
      auto loop = std::static_pointer_cast<TrainLoop>(
          build("train_loop", Kind::TrainLoop, cycle.at("train_loop")));
      for (const auto& key : registry_.cycle_keys()) {
        const Json* v = cycle.find(key.name);
        if (!v || v->is_null()) continue;
        auto& built = tc.extras[key.name];
        if (key.is_list) {
          for (size_t m = 0; m < v->size(); ++m)
            built.push_back(build(key.name.c_str(), key.kind, v->as_array()[m],
                                  {"[" + std::to_string(m) + "]"}));
        } else {
          built.push_back(build(key.name.c_str(), key.kind, *v));
        }
      }

      tc.model = model;
      tc.dataset = dataset;
      tc.train_data = dataset->train();
      tc.valid_data = dataset->valid();
      tc.loss = loss;
      tc.metrics = metrics;
      loop->prepare(tc);  // freezing decides which parameters the optimizer gets

      for (auto& p : model->parameters())
        if (p.requires_grad()) ctx.parameters.push_back(p);
      tc.optimizer = std::static_pointer_cast<Optimizer>(
          build("optimizer", Kind::Optimizer, cycle.at("optimizer")));
      ctx.optimizer = tc.optimizer;
      ctx.steps_per_epoch = tc.train_data->num_batches();
      if (!cycle.at("lr_schedule").is_null())
        tc.lr_schedule = std::static_pointer_cast<LrSchedule>(
            build("lr_schedule", Kind::LrSchedule, cycle.at("lr_schedule")));

      int64_t total = count_parameters(*model), trainable = count_parameters(*model, true);
      tc.log(label + ": model " + split_component(model_cfg).first + ": " + std::to_string(total) +
             " parameters, " + std::to_string(trainable) + " trainable, " +
             std::to_string(total - trainable) + " frozen");

      if (options_.dry_run) {
        tc.train_data->start_epoch(0);
        auto batch = tc.train_data->next();
        if (!batch) throw Error("the training data is empty", {label, "datasets"});
        model->train();
        auto x = to_device(batch->input, device, tc.input_format);
        auto y = to_device(batch->target, device);
        auto out = model->forward(x);
        auto l = loss->compute(out, y);
        l.backward();
        std::ostringstream frozen;
        for (const auto& p : model->named_parameters())
          if (!p.value().requires_grad()) frozen << (frozen.tellp() ? ", " : "") << p.key();
        tc.log(label + ": dry run: input " + shape_string(x) + " -> output " + shape_string(out) +
               ", loss " + std::to_string(l.item<double>()));
        tc.log(label + ": frozen parameters: " + (frozen.str().empty() ? "none" : frozen.str()));
        model->zero_grad();
        result.cycles.push_back({});
        continue;
      }

      Logs logs = loop->run(tc);
      base.epochs_before += epochs_run;
      base.steps_before += tc.global_step;
      CycleResult cr;
      cr.logs = logs;
      cr.weights = result.run_dir / "weights" / ("cycle-" + std::to_string(i + 1) + ".pt");
      torch::save(std::static_pointer_cast<torch::nn::Module>(model), cr.weights.string());
      result.cycles.push_back(cr);
      if (TrainContext::interrupted()) {
        tc.save_checkpoint("interrupted");
        tc.log(label + ": interrupted; weights saved to " + cr.weights.string() +
               " and a checkpoint to " + (result.run_dir / "checkpoints").string());
        throw Interrupted();
      }
      tc.log(label + ": done" + (logs.empty() ? "" : " - " + format_logs(logs)) +
             "; weights saved to " + cr.weights.string());
    }
  } catch (const Error&) {
    throw;
  } catch (const c10::Error& e) {
    throw Error(e.what_without_backtrace(), {}, kExitRuntime);
  }
  return result;
}

}  // namespace ktf
