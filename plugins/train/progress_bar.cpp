// ktf.callbacks.ProgressBar: Keras-style progress. On a terminal one line is rewritten a few
// times per second; elsewhere (logs, CI) a plain line is printed every `interval` seconds. Every
// epoch ends with one final line holding the epoch's logs and where its steps' time went
// (TrainContext::step_times); a line says "input-bound" while the data pipeline holds training
// back.
#include <ktf/components.h>
#include <ktf/registry.h>

#include <chrono>
#include <cmath>
#include <cstdio>

#include "loop.h"
#include "train.h"

namespace ktf::train {
namespace {

struct ProgressBarOptions {
  int64_t verbose = 1;     ///< 1 = progress bar, 2 = one line per epoch
  double interval = 10.0;  ///< seconds between plain progress lines when stdout is not a terminal
};

using Clock = std::chrono::steady_clock;

std::string format_value(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, std::fabs(v) >= 1e-3 || v == 0 ? "%.4f" : "%.4e", v);
  return buf;
}

std::string format_logs(const Logs& logs) {
  std::string out;
  for (const auto& [k, v] : logs) out += " - " + k + ": " + format_value(v);
  return out;
}

std::string format_seconds(double s) {
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%d:%02d:%02d", static_cast<int>(s / 3600),
                  static_cast<int>(std::fmod(s, 3600) / 60), static_cast<int>(std::fmod(s, 60)));
  else if (s >= 60)
    std::snprintf(buf, sizeof buf, "%d:%02d", static_cast<int>(s / 60),
                  static_cast<int>(std::fmod(s, 60)));
  else
    std::snprintf(buf, sizeof buf, "%.0fs", s);
  return buf;
}

class ProgressBar : public Callback {
 public:
  ProgressBar(int64_t verbose, double interval) : verbose_(verbose), interval_(interval) {
    KTF_CHECK(verbose == 1 || verbose == 2, "verbose must be 1 or 2, got ", verbose);
    KTF_CHECK(interval > 0, "interval must be > 0 seconds, got ", interval);
  }

  bool shows_progress() const override { return true; }
  void on_train_begin(TrainContext& ctx) override {
    tty_ = ctx.is_tty();
    steps_ = ctx.steps_per_epoch;
    epochs_ = ctx.num_epochs;
  }
  void on_epoch_begin(TrainContext&, int64_t) override {
    start_ = last_ = Clock::now();
    done_ = 0;
  }
  /// The batches done in the epoch (a resumed epoch counts on from there).
  void save_state(State& s) override { s.set("done", done_); }
  void load_state(const State& s) override {
    start_ = last_ = Clock::now();
    done_ = s.at("done").as_int();
  }
  bool wants_batch_logs(const TrainContext& ctx, int64_t) override {
    due_ = false;
    if (verbose_ != 1 || ctx.quiet) return false;
    double since = std::chrono::duration<double>(Clock::now() - last_).count();
    due_ = since >= (tty_ ? 0.25 : interval_);
    return due_;
  }
  void on_batch_end(TrainContext& ctx, int64_t batch, const Logs& logs) override {
    done_ = batch + 1;
    if (!due_ || logs.empty()) return;
    due_ = false;
    last_ = Clock::now();
    double elapsed = std::chrono::duration<double>(last_ - start_).count();
    std::string line = header(ctx) + " " + counter() + bar();
    if (steps_ > 0)
      line += " - ETA: " + format_seconds(elapsed / done_ * std::max<int64_t>(steps_ - done_, 0));
    line += format_logs(logs);
    if (ctx.step_times.input_bound()) line += " - input-bound";
    ctx.progress(line, !tty_);
  }
  void on_epoch_end(TrainContext& ctx, int64_t, const Logs& logs) override {
    double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
    char per_step[32];
    std::snprintf(per_step, sizeof per_step, "%.0fms/step",
                  done_ ? 1000 * elapsed / static_cast<double>(done_) : 0.0);
    std::string line = header(ctx) + " " + std::to_string(done_) + "/" + std::to_string(done_);
    if (verbose_ == 1) line += " [" + std::string(30, '=') + "]";
    line += " - " + format_seconds(elapsed) + " " + per_step + format_logs(logs);
    const std::string breakdown = ctx.step_times.summary();
    if (!breakdown.empty()) line += " - step: " + breakdown;
    ctx.progress(line, true);
  }

 private:
  std::string header(const TrainContext& ctx) const {
    return "Epoch " + std::to_string(ctx.epoch + 1) + "/" + std::to_string(epochs_);
  }
  std::string counter() const {
    return std::to_string(done_) + "/" + (steps_ > 0 ? std::to_string(steps_) : "?");
  }
  std::string bar() const {
    if (steps_ <= 0) return "";
    const int width = 30;
    int filled = static_cast<int>(width * std::min<int64_t>(done_, steps_) / steps_);
    std::string b(filled, '=');
    if (filled < width) b += '>' + std::string(width - filled - 1, '.');
    return " [" + b + "]";
  }

  int64_t verbose_;
  double interval_;
  bool tty_ = false;
  bool due_ = false;
  int64_t steps_ = -1, epochs_ = 0, done_ = 0;
  Clock::time_point start_ = Clock::now(), last_ = Clock::now();
};

}  // namespace

std::shared_ptr<Callback> make_progress_bar(int64_t verbose, double interval) {
  return std::make_shared<ProgressBar>(verbose, interval);
}

void register_progress_bar(Registrar& r) {
  r.add(
      define<Callback, ProgressBarOptions>(
          "ktf.callbacks.ProgressBar",
          "Keras-style progress: an updating line on a terminal, periodic lines elsewhere")
          .arg("verbose", &ProgressBarOptions::verbose, "1 = progress bar, 2 = one line per epoch")
          .min(1)
          .max(2)
          .arg("interval", &ProgressBarOptions::interval,
               "seconds between plain progress lines when stdout is not a terminal")
          .above(0)
          .example(Json::object({{"verbose", 1}}))
          .build([](const ProgressBarOptions& o, BuildContext&) {
            return make_progress_bar(o.verbose, o.interval);
          }));
}

}  // namespace ktf::train
