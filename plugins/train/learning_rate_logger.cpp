// ktf.callbacks.LearningRateLogger: records the learning rate of every optimizer parameter group
// to metrics.jsonl (phase "lr") per epoch or every N optimizer steps, and prints it per epoch.
// Reading the rate is host-side: it costs no device sync.
#include <ktf/components.h>
#include <ktf/registry.h>

#include "train.h"

namespace ktf::train {
namespace {

struct LearningRateLoggerOptions {
  std::string logging_interval = "epoch";  ///< "epoch" or "step"
  int64_t every_n_steps = 50;              ///< with "step": record every N optimizer steps
};

class LearningRateLogger : public Callback {
 public:
  explicit LearningRateLogger(const LearningRateLoggerOptions& o)
      : per_step_(o.logging_interval == "step"), every_(o.every_n_steps) {
    KTF_CHECK(o.logging_interval == "epoch" || o.logging_interval == "step",
              "logging_interval must be 'epoch' or 'step', got '", o.logging_interval, "'");
    KTF_CHECK(every_ >= 1, "every_n_steps must be >= 1, got ", every_);
  }

  void on_train_begin(TrainContext&) override { last_step_ = -1; }
  void save_state(State& s) override { s.set("last_step", last_step_); }
  void load_state(const State& s) override { last_step_ = s.at("last_step").as_int(); }

  void on_batch_end(TrainContext& ctx, int64_t, const Logs&) override {
    if (!per_step_ || ctx.global_step == last_step_ || ctx.global_step % every_ != 0) return;
    last_step_ = ctx.global_step;
    Logs logs = rates(ctx);
    logs.insert(logs.begin(), {"step", LogValue(ctx.global_step)});
    ctx.record("lr", ctx.epoch, logs);
  }

  void on_epoch_end(TrainContext& ctx, int64_t epoch, const Logs&) override {
    Logs logs = rates(ctx);
    std::string line = "Epoch " + std::to_string(epoch + 1) + ": learning rate";
    for (const auto& [k, v] : logs) line += " " + k + "=" + format_double(v);
    ctx.log(line);
    if (!per_step_) ctx.record("lr", epoch, logs);
  }

 private:
  /// "lr" for the first parameter group, "lr_group<i>" for the others.
  static Logs rates(const TrainContext& ctx) {
    Logs logs;
    if (!ctx.optimizer) return logs;
    const auto& groups = ctx.optimizer->param_groups();
    for (size_t i = 0; i < groups.size(); ++i)
      logs.emplace_back(i == 0 ? "lr" : "lr_group" + std::to_string(i),
                        groups[i].options().get_lr());
    return logs;
  }

  bool per_step_;
  int64_t every_;
  int64_t last_step_ = -1;
};

}  // namespace

void register_learning_rate_logger(Registrar& r) {
  r.add(define<Callback, LearningRateLoggerOptions>(
            "ktf.callbacks.LearningRateLogger",
            "records each parameter group's learning rate per epoch or every N steps")
            .arg("logging_interval", &LearningRateLoggerOptions::logging_interval,
                 "\"epoch\" or \"step\"", {"epoch", "step"})
            .arg("every_n_steps", &LearningRateLoggerOptions::every_n_steps,
                 "with logging_interval \"step\": record every N optimizer steps")
            .min(1)
            .example(Json::object({{"logging_interval", "epoch"}}))
            .build([](const LearningRateLoggerOptions& o, BuildContext&) {
              return std::make_shared<LearningRateLogger>(o);
            }));
}

}  // namespace ktf::train
