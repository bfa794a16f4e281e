#include "ktf/train.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

namespace ktf {
namespace {
std::atomic<bool> g_interrupted{false};
}  // namespace

void request_interrupt(bool value) { g_interrupted.store(value); }
bool TrainContext::interrupted() { return g_interrupted.load(std::memory_order_relaxed); }

void TrainContext::log(const std::string& line) const {
  if (!quiet) std::cout << line << std::endl;
  if (log_sink) log_sink(line);
}

bool TrainContext::is_tty() const { return ::isatty(STDOUT_FILENO) == 1; }

void TrainContext::progress(const std::string& line, bool final) const {
  if (!quiet) {
    if (is_tty()) {
      std::cout << "\r\033[K" << line << (final ? "\n" : "") << std::flush;
    } else if (final) {
      std::cout << line << std::endl;
    }
  }
  if (final && log_sink) log_sink(line);
}

void TrainContext::record(const std::string& phase, int64_t ep, const Logs& logs) const {
  if (record_sink) record_sink(phase, ep, logs);
}

void TrainContext::save_checkpoint(const std::string& tag) const {
  namespace fs = std::filesystem;
  fs::path dir = run_dir / "checkpoints";
  fs::create_directories(dir);
  fs::path tmp = dir / (tag + ".tmp");
  fs::path final_path = dir / (tag + ".pt");
  torch::serialize::OutputArchive archive;
  torch::serialize::OutputArchive model_archive;
  model->save(model_archive);
  archive.write("model", model_archive);
  if (optimizer) {
    torch::serialize::OutputArchive opt_archive;
    optimizer->save(opt_archive);
    archive.write("optimizer", opt_archive);
  }
  archive.write("cycle", torch::tensor(static_cast<int64_t>(cycle)));
  archive.write("epoch", torch::tensor(epoch));
  archive.write("global_step", torch::tensor(global_step));
  archive.save_to(tmp.string());
  fs::rename(tmp, final_path);  // atomic on one file system
}

double seconds_since_process_start() {
  std::ifstream stat("/proc/self/stat"), uptime("/proc/uptime");
  std::string text;
  if (!std::getline(stat, text)) return -1;
  // Field 22 (starttime, in clock ticks after boot) follows the parenthesised command name.
  auto close = text.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream fields(text.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22 && fields >> field; ++i) {
  }
  double up = 0;
  if (!(uptime >> up)) return -1;
  return up - std::stod(field) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

int64_t count_parameters(torch::nn::Module& module, bool trainable_only) {
  int64_t n = 0;
  for (const auto& p : module.parameters())
    if (!trainable_only || p.requires_grad()) n += p.numel();
  return n;
}

torch::Tensor to_device(const torch::Tensor& x, torch::Device device, torch::MemoryFormat format) {
  if (!x.defined()) return x;
  torch::Tensor y = x.device() == device ? x : x.to(device, /*non_blocking=*/true);
  if (format != torch::MemoryFormat::Contiguous && y.dim() == 4 && !y.is_contiguous(format))
    y = y.contiguous(format);
  return y;
}

namespace {

/// Converts every 4-D parameter and buffer of `model` to `format` (values unchanged).
void convert_4d(torch::nn::Module& model, torch::MemoryFormat format) {
  torch::NoGradGuard no_grad;
  for (auto& p : model.parameters())
    if (p.dim() == 4 && !p.is_contiguous(format)) p.set_data(p.data().contiguous(format));
  for (auto& b : model.buffers())
    if (b.dim() == 4 && !b.is_contiguous(format)) b.set_data(b.data().contiguous(format));
}

}  // namespace

torch::MemoryFormat choose_memory_format(Network& model, const std::string& mode) {
  if (mode != "channels_last" && mode != "contiguous")
    throw Error("memory format '" + mode + "': expected contiguous or channels_last");
  const auto format =
      mode == "channels_last" ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous;
  convert_4d(model, format);
  return format;
}

}  // namespace ktf
